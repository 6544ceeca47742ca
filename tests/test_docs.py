"""The reference site's pages come from the README: nothing in it is left out of the site, and
the site's code blocks are the README's, which ``test_readme*.py`` run. ``nox -s docs`` (and
``nox -s check``) build the site itself with ``--strict``."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / ".docs" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_readme_section_and_block_is_on_a_page(tmp_path: Path) -> None:
    build = load_builder()
    _, pages = build.write_pages(tmp_path)
    site = "\n".join(pages.values())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#{2,3} (.+)$", re.sub(r"```.*?```", "", readme, flags=re.S), re.M)
    assert headings
    for heading in headings:
        assert re.search(rf"^#+ {re.escape(heading.strip())}$", site, re.M), heading
    for block in re.findall(r"```\w*\n.*?```", readme, re.S):
        assert block in site
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.md")}
    assert written == set(pages)


def test_a_new_readme_section_gets_a_page(tmp_path: Path) -> None:
    build = load_builder()
    readme = tmp_path / "README.md"
    readme.write_text(
        (ROOT / "README.md").read_text(encoding="utf-8")
        + "\n## Web things\n\nText.\n\n### Deeper\n\nMore.\n"
    )
    build.README = readme
    guide = build.guide_pages()
    title, text = guide["web-things.md"]
    assert title == "Web things"
    assert "## Deeper" in text
    assert "More." in text


def test_reference_pages_name_every_public_resource_and_model() -> None:
    build = load_builder()
    pages = build.reference_pages()
    for module in (ROOT / "labric" / "resources").glob("[!_]*.py"):
        for name in build.public_classes(module):
            assert f"::: labric.resources.{module.stem}.{name}" in pages["reference/async.md"]
    for module in (ROOT / "labric" / "models").glob("[!_]*.py"):
        for name in build.public_classes(module):
            assert f"::: labric.models.{module.stem}.{name}" in pages["reference/models.md"]
