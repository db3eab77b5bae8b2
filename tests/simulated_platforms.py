"""Simulated SGX and TDX platforms as session fixtures: keys and certificates are made once per session."""

from __future__ import annotations

import datetime as dt

import pytest

from affidavit.evidence.dcap import DcapVerifier, SgxCollateral, TrustAnchors, load_collateral
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


@pytest.fixture(scope="session")
def sgx_verifier(sgx_platform: SimulatedPlatform) -> DcapVerifier:
    """One verifier for the session, as the service keeps one: its caches must not hide later checks."""
    return DcapVerifier(TrustAnchors.from_pem(sgx_platform.root_pem))


@pytest.fixture(scope="session")
def tdx_verifier(tdx_platform: SimulatedPlatform) -> DcapVerifier:
    return DcapVerifier(TrustAnchors.from_pem(tdx_platform.root_pem))


@pytest.fixture(scope="session")
def sgx_collateral(sgx_platform: SimulatedPlatform) -> SgxCollateral:
    return load_collateral(sgx_platform.collateral(now=NOW))


@pytest.fixture(scope="session")
def tdx_collateral(tdx_platform: SimulatedPlatform) -> SgxCollateral:
    return load_collateral(tdx_platform.collateral(now=NOW))
