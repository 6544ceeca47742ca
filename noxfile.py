"""Developer tasks. ``nox -s check`` is what CI runs (in the current environment)."""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"

PY = "3.11"


@nox.session(venv_backend="none")
def check(session: nox.Session) -> None:
    """Lint, format check, type check, the docs build and the test suite, in the current
    environment."""
    py = sys.executable  # the environment nox runs in (CI's .venv)
    session.run(py, "-m", "ruff", "check", ".")
    session.run(py, "-m", "ruff", "format", "--check", ".")
    session.run(py, "-m", "mypy", "labric")
    session.run(py, "-m", "labric._blocking.generate", "--check")
    session.run(py, DOCS_BUILD, "--strict", env=DOCS_ENV)
    # The slowest tests are listed, so CI's log shows where its time goes.
    session.run(py, "-m", "pytest", "-q", "--durations=15", *session.posargs)


#: Builds the reference site from the README and the docstrings (see its docstring).
DOCS_BUILD = ".docs/build.py"
#: MkDocs 1.x prints a notice about its successor on every build; the build's own output is enough.
DOCS_ENV = {"NO_MKDOCS_2_WARNING": "1"}


@nox.session(python=PY)
def docs(session: nox.Session) -> None:
    """The reference site (MkDocs + mkdocstrings), strict: a broken link or reference fails.

    ``nox -s docs`` writes it to ``build/site``; ``nox -s docs -- --site-dir DIR`` elsewhere.
    """
    session.install("-e", ".[docs]")
    session.run("python", DOCS_BUILD, "--strict", *session.posargs, env=DOCS_ENV)


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The test suite in a fresh virtualenv."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (with Pillow, whose types the image server code uses)."""
    session.install("-e", ".[lint,images]")
    session.run("mypy", "labric")


@nox.session(python=PY)
def generate(session: nox.Session) -> None:
    """Regenerate the sync facade (labric/_sync/) from the async classes."""
    session.install("-e", ".")
    session.install("ruff")
    session.run("python", "-m", "labric._blocking.generate", *session.posargs)


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Run the benchmarks against a local server (results in .bench-data/)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PY)
def schemathesis(session: nox.Session) -> None:
    """Schemathesis against a live local server, at a larger setting than the suite's.

    ``LABRIC_SCHEMATHESIS_EXAMPLES`` sets the examples per operation (default here 200) and
    ``LABRIC_SCHEMATHESIS_BUDGET`` the seconds they may take (default here an hour, the suite's
    two minutes); each run draws fresh inputs (the suite's run is derandomised) and runs 800
    stateful scenarios. Extra arguments go to pytest, e.g. ``nox -s schemathesis -- -x``.
    """
    import os

    session.install("-e", ".[test]")
    examples = os.environ.get("LABRIC_SCHEMATHESIS_EXAMPLES", "200")
    session.run(
        "pytest",
        "-q",
        "tests/openapi/test_schemathesis.py",
        *session.posargs,
        env={
            "LABRIC_SCHEMATHESIS_EXAMPLES": examples,
            "LABRIC_SCHEMATHESIS_RANDOM": "1",
            "LABRIC_SCHEMATHESIS_COVERAGE": "1",
            "LABRIC_SCHEMATHESIS_BUDGET": os.environ.get("LABRIC_SCHEMATHESIS_BUDGET", "3600"),
            "LABRIC_SCHEMATHESIS_SCENARIOS": os.environ.get("LABRIC_SCHEMATHESIS_SCENARIOS", "800"),
        },
    )


OFFICIAL_CLIENT = "labric==0.14.17"


@nox.session(python=PY)
def compat(session: nox.Session) -> None:
    """Check the official client (PyPI labric 0.14.17) against the local server.

    The official package is also imported as ``labric``, so it gets its own virtualenv,
    ``.venv-official`` (or ``$LABRIC_OFFICIAL_VENV``), created or refreshed here.
    """
    import os
    from pathlib import Path

    venv = Path(os.environ.get("LABRIC_OFFICIAL_VENV") or ".venv-official").resolve()
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        session.run("python", "-m", "venv", str(venv))
    session.run(
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--upgrade",
        OFFICIAL_CLIENT,
        "httpx",
        external=True,
    )
    session.install("-e", ".[test]")
    session.run(
        "pytest", "-q", "tests/compat", *session.posargs, env={"LABRIC_OFFICIAL_VENV": str(venv)}
    )


@nox.session(venv_backend="none")
def soak(session: nox.Session) -> None:
    """The fault soak, large: ``nox -s soak`` (1,000 files), ``nox -s soak -- --files 5000``.

    Runs in the current environment, like ``check``; CI runs the small soak in the test suite
    (``tests/reliability/test_soak.py``).
    """
    session.run(sys.executable, "-m", "benchmarks.soak", *session.posargs)
