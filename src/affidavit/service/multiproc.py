"""The directory prometheus-client's multiprocess mode shares between workers, one fresh one per serve run.

Kept apart from ``metrics`` on purpose: ``prometheus_client`` decides at import time whether it writes
samples to files, so the variable must be set before anything imports it (``affidavit serve`` calls
:func:`multiprocess_directory` before any worker, or the in-process server, loads the app).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_directory() -> Path:
    """A fresh private directory for this run's worker samples, exported as ``PROMETHEUS_MULTIPROC_DIR``
    (made inside the directory the operator set there, if any). A new directory per run means counters
    start at zero with the service, and no stale files of an earlier run are summed in."""
    parent = os.environ.get(MULTIPROC_ENV) or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="affidavit-metrics-", dir=parent))
    path.chmod(0o700)
    _PREVIOUS[path] = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def remove_multiprocess_directory(path: Path) -> None:
    """Remove the run's directory and give ``PROMETHEUS_MULTIPROC_DIR`` back its value from before the
    run (the operator's parent directory, or unset), so a process that runs ``serve`` more than once (the
    tests) never hands a deleted directory to a later run or to a program it starts."""
    shutil.rmtree(path, ignore_errors=True)
    previous = _PREVIOUS.pop(path, None)
    if os.environ.get(MULTIPROC_ENV) == str(path):
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous


# What PROMETHEUS_MULTIPROC_DIR was before each live run's directory replaced it.
_PREVIOUS: dict[Path, str | None] = {}
