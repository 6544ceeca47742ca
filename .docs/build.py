"""Build the reference site with MkDocs from the README and the docstrings.

The README is the single hand-written source: this script cuts it into pages at its headings
(getting started, the tour, the command line, the local server, the routes, the architecture,
development) and adds API reference pages that mkdocstrings renders from the package's
docstrings. Nothing it writes is kept in git; ``nox -s docs`` runs it with ``--strict``, so a
broken link or reference fails the build.

Usage: ``python .docs/build.py [--strict] [--site-dir DIR] [--pages-only DIR]``
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REPOSITORY = "https://github.com/labric/labric-python"

# (file, title, README headings whose sections make the page, in order)
GUIDE_PAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("getting-started.md", "Getting started", ("Quick start against a local server",)),
    (
        "tour.md",
        "Tour",
        # "*": every other section of the README's tour, in its order
        ("*",),
    ),
    ("cli.md", "Command line", ("Command line",)),
    (
        "local-server.md",
        "The local server",
        ("The local server", "Compatibility with the official client"),
    ),
    ("routes.md", "Routes", ("Routes",)),
    ("architecture.md", "Architecture", ("Architecture",)),
    ("development.md", "Development", ("Development", "Benchmarks")),
)

HEADING = re.compile(r"^(#{2,3}) (.+)$")
FENCE = re.compile(r"^```")


def sections(text: str) -> tuple[str, list[tuple[str, int, str]]]:
    """Split the README into its preamble and ``(heading, level, body)`` in order (fences kept)."""
    preamble: list[str] = []
    found: list[tuple[str, int, list[str]]] = []
    current: list[str] = preamble
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            body: list[str] = []
            found.append((match.group(2).strip(), len(match.group(1)), body))
            current = body
            continue
        current.append(line)
    return "\n".join(preamble), [(h, lvl, "\n".join(b).strip("\n")) for h, lvl, b in found]


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") + ".md"


def source_link(match: re.Match[str]) -> str:
    """A README link to a file of the repository, pointed at the repository (not the site)."""
    label, target = match.group(1), match.group(2)
    if re.match(r"^[a-z]+:", target) or target.startswith("#"):
        return match.group(0)
    return f"[{label}]({REPOSITORY}/blob/main/{target})"


def guide_pages() -> dict[str, tuple[str, str]]:
    """Every guide page as ``{file: (title, markdown)}``, in navigation order.

    The pages of :data:`GUIDE_PAGES` come first. Every other README section lands somewhere too,
    so a section added to the README is never left out of the site: a ``###`` section on the
    page of the ``##`` section it belongs to (the tour's on the tour page), a ``##`` section on
    a page of its own.
    """
    preamble, found = sections(README.read_text(encoding="utf-8"))
    names = [name for name, _, _ in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"README headings used twice: {sorted(duplicates)}")
    body = {name: text for name, _, text in found}
    parent: dict[str, str] = {}
    top = ""
    for name, level, _ in found:
        if level == 2:
            top = name
        else:
            parent[name] = top

    placed: dict[str, list[str]] = {}  # file -> headings, in README order within the page
    titles: dict[str, str] = {}
    page_of: dict[str, str] = {}
    for filename, title, heads in GUIDE_PAGES:
        missing = [h for h in heads if h != "*" and h not in body]
        if missing:
            raise SystemExit(f"README has no section {missing} (needed by {filename})")
        placed[filename] = [h for h in heads if h != "*"]
        titles[filename] = title
        page_of.update({h: filename for h in heads if h != "*"})
    page_of.setdefault("Tour", next(f for f, _, heads in GUIDE_PAGES if "*" in heads))
    for name, level, _ in found:
        if name in page_of or name == "What you get":
            continue
        if level == 2:
            filename = slug(name)
            placed[filename], titles[filename] = [name], name
        else:
            filename = page_of.get(parent[name]) or slug(parent[name])
            placed.setdefault(filename, []).append(name)
            titles.setdefault(filename, parent[name])
        page_of[name] = filename

    intro = preamble.split("\n", 1)[1] if preamble.startswith("# ") else preamble
    pages = {
        "index.md": ("Home", f"# labric\n{intro}\n\n## What you get\n\n{body['What you get']}\n")
    }
    for filename, heads in placed.items():
        title = titles[filename]
        parts = [f"# {title}\n"]
        for name in heads:
            if name != title:
                parts.append(f"## {name}\n")
            parts.append(body[name] + "\n")
        text = "\n".join(parts)
        pages[filename] = (title, re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", source_link, text))
    return pages


def public_classes(module_file: Path) -> list[str]:
    """Names of the public classes a module defines (by parsing it: nothing is imported)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_")
    ]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def reference_pages() -> dict[str, str]:
    """API reference pages: one directive per object, rendered by mkdocstrings."""
    resources = sorted(
        p for p in (ROOT / "labric/resources").glob("*.py") if not p.name.startswith("_")
    )
    models = sorted(p for p in (ROOT / "labric/models").glob("*.py") if not p.name.startswith("_"))

    def directives(paths: list[Path]) -> str:
        out: list[str] = []
        for path in paths:
            for name in public_classes(path):
                out.append(f"::: {module_name(path)}.{name}\n")
        return "\n".join(out)

    sync_resources = [
        ROOT / "labric/_sync" / p.name
        for p in resources
        if (ROOT / "labric/_sync" / p.name).exists()
    ]
    return {
        "reference/async.md": (
            "# AsyncLabric\n\nThe implementation. Every resource below hangs off a client as an "
            "attribute (`client.files`, `client.jobs`, ...).\n\n"
            "::: labric._client.AsyncLabric\n\n## Resources\n\n" + directives(resources)
        ),
        "reference/sync.md": (
            "# Labric\n\nThe blocking twin, generated from the async classes: the same names "
            "without `await`.\n\n::: labric._sync.Labric\n\n## Resources\n\n"
            + directives(sync_resources)
            + "\n::: labric._blocking.pager.SyncPager\n"
        ),
        "reference/configuration.md": (
            "# Configuration\n\n::: labric._core.config\n\n::: labric._core.pagination.AsyncPager\n"
        ),
        "reference/models.md": "# Models\n\n" + directives(models),
        "reference/errors.md": "# Errors\n\n::: labric.errors\n",
        "reference/local-server.md": "# LocalServer\n\n::: labric.server.local\n",
        "reference/fsspec.md": "# labric:// (fsspec)\n\n::: labric.fsspec.filesystem\n",
    }


def mkdocs_config(
    docs_dir: Path, site_dir: Path, guide_titles: dict[str, str], pages: dict[str, str]
) -> dict[str, object]:
    guide = [{title: name} for name, title in guide_titles.items() if name != "index.md"]
    reference = [
        {"AsyncLabric": "reference/async.md"},
        {"Labric": "reference/sync.md"},
        {"Configuration": "reference/configuration.md"},
        {"Models": "reference/models.md"},
        {"Errors": "reference/errors.md"},
        {"LocalServer": "reference/local-server.md"},
        {"labric:// (fsspec)": "reference/fsspec.md"},
    ]
    missing = {v for entry in guide + reference for v in entry.values()} - set(pages)
    if missing:
        raise SystemExit(f"navigation names pages that were not written: {sorted(missing)}")
    return {
        "site_name": "labric",
        "site_description": "The Python SDK for the Labric API, with a local Labric server.",
        "repo_url": REPOSITORY,
        "docs_dir": str(docs_dir),
        "site_dir": str(site_dir),
        "theme": {"name": "material", "features": ["navigation.sections", "content.code.copy"]},
        "markdown_extensions": [
            "admonition",
            "tables",
            {"toc": {"permalink": True}},
            "pymdownx.superfences",
        ],
        "plugins": [
            "search",
            {
                "mkdocstrings": {
                    "handlers": {
                        "python": {
                            "paths": [str(ROOT)],
                            "options": {
                                "docstring_style": "google",
                                "show_source": False,
                                "show_root_heading": True,
                                "show_root_full_path": False,
                                "members_order": "source",
                                "filters": ["!^_"],
                                "merge_init_into_class": True,
                                "separate_signature": True,
                                "show_signature_annotations": True,
                            },
                        }
                    }
                }
            },
        ],
        "validation": {
            "links": {
                "not_found": "warn",
                "absolute_links": "warn",
                "unrecognized_links": "warn",
                "anchors": "warn",
            }
        },
        "nav": [{"Home": "index.md"}, {"Guide": guide}, {"Reference": reference}],
    }


def write_pages(docs_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Write every page; return the guide's ``{file: title}`` and every ``{file: markdown}``."""
    guide = guide_pages()
    pages = {name: text for name, (_, text) in guide.items()} | reference_pages()
    for name, text in pages.items():
        target = docs_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return {name: title for name, (title, _) in guide.items()}, pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--strict", action="store_true", help="fail on any warning")
    parser.add_argument("--site-dir", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--pages-only", type=Path, help="write the Markdown pages there and stop")
    args = parser.parse_args(argv)
    if args.pages_only:
        _, pages = write_pages(args.pages_only)
        print("\n".join(sorted(pages)))
        return 0
    with tempfile.TemporaryDirectory(prefix="labric-docs-") as tmp:
        docs_dir = Path(tmp) / "pages"
        titles, pages = write_pages(docs_dir)
        config = Path(tmp) / "mkdocs.yml"
        # JSON is YAML: no YAML writer needed.
        site_config = mkdocs_config(docs_dir, args.site_dir.resolve(), titles, pages)
        config.write_text(json.dumps(site_config))
        command = [sys.executable, "-m", "mkdocs", "build", "--clean", "-f", str(config)]
        if args.strict:
            command.append("--strict")
        result = subprocess.run(command, check=False)
        if result.returncode == 0:
            print(f"built {len(pages)} pages into {args.site_dir}:")
            print("\n".join(f"  {name}" for name in sorted(pages)))
        return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
