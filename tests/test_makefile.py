"""``make run`` installs only the runtime (no test packages, no test Debian packages) and, after ``make
test``'s full install, starts without installing anything; ``make test`` still installs everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT


def _copy(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(ROOT / "scripts" / "system-deps.sh", tmp_path / "scripts" / "system-deps.sh")
    return tmp_path


def _make(cwd: Path, *args: str) -> str:
    p = subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_make_run_installs_the_runtime_only(tmp_path: Path) -> None:
    plan = _make(_copy(tmp_path), "-n", "run")
    assert "system-deps.sh --runtime" in plan and "pip install --progress-bar on -e ." in plan
    assert "[test" not in plan and "bench" not in plan and "-q" not in plan.split("pip install")[1]
    full = _make(tmp_path, "-n", "test")
    assert "bash scripts/system-deps.sh\n" in full and "'.[test,bench]'" in full and "pytest" in full


def test_make_run_after_make_test_installs_nothing(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    bin_dir = d / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "affidavit"  # stands in for the installed command
    fake.write_text('#!/bin/sh\necho "affidavit $*"\n')
    fake.chmod(0o755)
    later = time.time() + 5
    (d / ".venv" / ".installed").touch()
    os.utime(d / ".venv" / ".installed", (later, later))  # the full install is newer than pyproject.toml
    out = _make(d, "run")
    assert "affidavit serve --data-dir var" in out and "pip" not in out and "system-deps" not in out
    assert (d / ".venv" / ".runtime-installed").exists()


def test_system_deps_runtime_mode_needs_only_python_venv() -> None:
    text = (ROOT / "scripts" / "system-deps.sh").read_text()
    assert "packages=(python3-venv)" in text and '"--runtime"' in text
    assert (ROOT / "README.md").read_text().splitlines()[2:5] == [
        "```sh",
        "make run     # set everything up and start Affidavit with embedded defaults",
        "make test    # set everything up; ruff, import-linter (layers), mypy, the whole suite, coverage",
    ]
