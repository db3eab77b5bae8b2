"""tests/ mirrors src/affidavit/: a test lives in the directory of the package it tests (tests/cli/ for the
commands, tests/evidence/dcap/ for evidence.dcap, ...), so a reader finds a module's tests at the same path.
Tests of top-level modules sit in tests/ itself."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

TESTS = ROOT / "tests"
SRC = ROOT / "src" / "affidavit"
# Directories that test no single package. Keep this short: a new entry needs a reason.
CROSS_CUTTING: frozenset[str] = frozenset()


def _python_dirs(tests: Path = TESTS) -> list[Path]:
    """Every directory under ``tests`` that holds Python files (data directories such as tests/policy/data
    and caches are not test packages)."""
    return sorted(
        d for d in tests.rglob("*")
        if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py"))
    )


def strays(tests: Path, src: Path) -> list[str]:
    """The test directories under ``tests`` with no package at the same path under ``src``."""
    found = []
    for d in _python_dirs(tests):
        rel = d.relative_to(tests).as_posix()
        if rel not in CROSS_CUTTING and not (src / rel / "__init__.py").is_file():
            found.append(f"tests/{rel}")
    return found


def test_every_test_directory_mirrors_a_source_package() -> None:
    found = strays(TESTS, SRC)
    assert not found, f"test directories with no matching package under src/affidavit/: {found}"


def test_a_directory_without_a_package_is_found(tmp_path: Path) -> None:
    for rel in ("src/cli", "src/evidence/dcap", "tests/cli", "tests/evidence/dcap", "tests/evidence/dcapx",
                "tests/policy/data"):
        (tmp_path / rel).mkdir(parents=True)
    for rel in ("src/cli", "src/evidence/dcap", "src/evidence"):
        (tmp_path / rel / "__init__.py").touch()
    for rel in ("tests/cli/test_a.py", "tests/evidence/dcap/test_b.py", "tests/evidence/dcapx/test_c.py"):
        (tmp_path / rel).touch()
    (tmp_path / "tests/policy/data/d.policy").touch()  # a data directory is no test package
    assert strays(tmp_path / "tests", tmp_path / "src") == ["tests/evidence/dcapx"]


def test_every_test_directory_is_a_package() -> None:
    """Two test files of one name in two directories collide unless each directory is a package."""
    missing = [f"tests/{d.relative_to(TESTS).as_posix()}" for d in _python_dirs()
               if not (d / "__init__.py").is_file()]
    assert not missing, f"test directories without __init__.py: {missing}"


def test_cli_tests_live_under_tests_cli() -> None:
    """A test module named for the CLI (``test_cli*.py``) belongs in tests/cli/, beside the others."""
    misplaced = [p.relative_to(ROOT).as_posix() for p in TESTS.rglob("test_cli*.py")
                 if p.parent != TESTS / "cli"]
    assert not misplaced, f"CLI tests outside tests/cli/: {misplaced}"
