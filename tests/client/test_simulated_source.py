"""SimulatedSource: quotes from the simulated enclave/TD verify (only) against the simulated root."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from affidavit.client import ClientError
from affidavit.client.sources import SimulatedSource, report_data_for
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sgx() -> SimulatedSource:
    return SimulatedSource.sgx(seed="simulated-source", now=NOW, isv_svn=3)


def test_sgx_quote_binds_report_data_and_verifies_against_the_simulated_root(sgx: SimulatedSource) -> None:
    rd = report_data_for(b"enclave public key")
    quote = sgx.get_quote(rd)
    result = DcapVerifier(TrustAnchors.from_pem(sgx.root_pem)).verify(
        quote, load_collateral(sgx.collateral()), NOW
    )
    assert sgx.tee == "sgx" and result.tee == "sgx" and result.tcb_status == "UpToDate"
    assert bytes(result.report_data) == rd
    assert result.claims["x-ms-sgx-svn"] == 3 and result.claims["x-ms-sgx-is-debuggable"] is False
    assert result.claims["x-ms-sgx-mrenclave"] == sgx.enclave.mrenclave.hex()


def test_debug_enclave_is_reported_as_debuggable(sgx: SimulatedSource) -> None:
    debug = SimulatedSource(dataclasses.replace(sgx.enclave, debug=True))
    result = DcapVerifier(TrustAnchors.from_pem(debug.root_pem)).verify(
        debug.get_quote(bytes(64)), load_collateral(debug.collateral()), NOW
    )
    assert result.claims["x-ms-sgx-is-debuggable"] is True


def test_quotes_are_not_trusted_under_the_intel_root(sgx: SimulatedSource) -> None:
    with pytest.raises(EvidenceError):
        DcapVerifier(TrustAnchors.intel()).verify(
            sgx.get_quote(bytes(64)), load_collateral(sgx.collateral()), NOW
        )


def test_tdx_quote_verifies() -> None:
    td = SimulatedSource.tdx(seed="simulated-source-td", now=NOW)
    rd = report_data_for(b"td key")
    result = DcapVerifier(TrustAnchors.from_pem(td.root_pem)).verify(
        td.get_quote(rd), load_collateral(td.collateral()), NOW
    )
    assert td.tee == "tdx" and result.tee == "tdx" and bytes(result.report_data) == rd


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_report_data_must_be_64_bytes(sgx: SimulatedSource, size: int) -> None:
    with pytest.raises(ClientError) as info:
        sgx.get_quote(bytes(size))
    assert info.value.code == "bad_report_data"
