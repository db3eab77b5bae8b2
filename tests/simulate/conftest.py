"""Simulated platforms shared by the simulate tests: keys and certificates are made once per session."""

from __future__ import annotations

import datetime as dt

import pytest

from affidavit.simulate import SimulatedPlatform

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def now() -> dt.datetime:
    return NOW


@pytest.fixture(scope="session")
def sgx_platform() -> SimulatedPlatform:
    """An SGX platform certified by the Processor CA (no Platform-CA-only extension fields)."""
    return SimulatedPlatform.create(
        seed=b"sgx-processor", now=NOW, tee="sgx", ca="processor", fmspc="00906ED50000"
    )


@pytest.fixture(scope="session")
def tdx_platform() -> SimulatedPlatform:
    """A TDX platform certified by the Platform CA, TDX module 1.x."""
    return SimulatedPlatform.create(
        seed=b"tdx-platform", now=NOW, tee="tdx", ca="platform", fmspc="90C06F000000"
    )
