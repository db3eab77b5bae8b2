"""Shared test fixtures: where the real vectors live, a port that refuses connections, which tests are
slow, the hypothesis profiles."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("AFFIDAVIT_VECTORS", ROOT.parent / "shared" / "vectors")).resolve()


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS} (set AFFIDAVIT_VECTORS)")
    return VECTORS


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port on which every connection is refused while the block runs: bound (so no other
    process can take it) but not listening. Servers in tests bind port 0 themselves and report the port
    they got; there is no "free port" to hand to a subprocess, since another process could take it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])

# Property tests run on a loaded 2-core CI machine: no per-example deadline, bounded example counts.
# "affidavit" (the default, `make test` and CI): 150 examples where a test sets no count of its own.
# "fast" (`make test-fast`, the lane while working): 50, which still finds the shallow mistakes; a test's
# own @settings(max_examples=...) wins over either profile.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "affidavit", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("fast", parent=settings.get_profile("affidavit"), max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "affidavit"))


# The slow system tests (servers in subprocesses, several workers, PostgreSQL, swtpm, the demo program):
# `make test-fast` leaves them out (`-m "not slow"`); `make test` and CI run them. Listed here, in one
# place, by node id prefix.
SLOW_TESTS = (
    "tests/cli/test_serve.py",
    "tests/cli/test_attest_tpm.py",
    "tests/service/test_oidc.py::test_sdk_with_oidc_bearer",
    "tests/service/test_sdk.py",
    "tests/service/test_service.py::test_several_workers_share_the_key",
    "tests/service/test_service.py::test_postgres_two_servers_one_database",
    "tests/service/test_workers.py",
    "tests/store/test_keys_and_certs.py::test_servers_starting_together_in_separate_processes_share_one_key",
    "tests/test_workflow_e2e.py::test_the_demo_program_runs_to_completion_and_stops_everything",
    "tests/test_workflow_e2e.py::test_ctrl_c_stops_the_service_and_swtpm",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)


_SERVE_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "affidavit.access", "affidavit.audit")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``affidavit serve`` run in-process (uvicorn.Config) installs handlers on the stderr of the moment,
    pytest's capture, which is closed after the test; later log lines would then print "Logging error"
    tracebacks into other tests' output. Put the loggers back as they were."""
    import logging

    saved = []
    for name in _SERVE_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, list(lg.handlers), lg.level, lg.propagate))
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
