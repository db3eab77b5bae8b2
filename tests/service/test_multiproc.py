"""Each serve run's metrics directory is private and leaves PROMETHEUS_MULTIPROC_DIR as it found it."""

from __future__ import annotations

from pathlib import Path

import pytest

from affidavit.service.multiproc import MULTIPROC_ENV, multiprocess_directory, remove_multiprocess_directory


def test_a_run_restores_the_variable_it_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    first = multiprocess_directory()
    remove_multiprocess_directory(first)
    assert not first.exists()
    import os

    assert MULTIPROC_ENV not in os.environ  # a later run or child process never gets a deleted directory
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))  # the operator's parent directory
    second = multiprocess_directory()
    assert second.parent == tmp_path and os.environ[MULTIPROC_ENV] == str(second)
    remove_multiprocess_directory(second)
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)
