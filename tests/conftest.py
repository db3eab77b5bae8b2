"""Shared test fixtures: where the real vectors live, free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("AFFIDAVIT_VECTORS", ROOT.parent / "shared" / "vectors")).resolve()


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS} (set AFFIDAVIT_VECTORS)")
    return VECTORS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

# Property tests run on a loaded 2-core CI machine: no per-example deadline, bounded example counts.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "affidavit", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "affidavit"))
