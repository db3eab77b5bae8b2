"""The collateral grace period: it stretches TCB Info, QE identity and CRL nextUpdate, nothing else."""

from __future__ import annotations

import datetime as dt

import pytest

from affidavit.evidence.dcap import (
    DcapVerifier,
    EvidenceError,
    SgxCollateral,
    TrustAnchors,
    load_collateral,
    verify_quote,
)
from affidavit.simulate import SimulatedPlatform
from tests.evidence.dcap.conftest import vector_cases

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
EXPIRED_CODES = {"crl_expired", "collateral_expired"}
MOBILECOIN = next(c for c in vector_cases() if c.set.startswith("mobilecoin"))


@pytest.fixture(scope="module")
def platform() -> SimulatedPlatform:
    return SimulatedPlatform.create(seed=b"grace", now=NOW, tee="sgx", ca="processor")


@pytest.fixture(scope="module")
def verifier(platform: SimulatedPlatform) -> DcapVerifier:
    return DcapVerifier(TrustAnchors.from_pem(platform.root_pem))


@pytest.fixture(scope="module")
def quote(platform: SimulatedPlatform) -> bytes:
    return platform.sgx_quote(mrenclave=bytes(32), mrsigner=bytes(32), report_data=bytes(64))


@pytest.fixture(scope="module")
def stale(platform: SimulatedPlatform) -> SgxCollateral:
    """TCB Info, QE identity and both CRLs one day past their nextUpdate at NOW."""
    collateral = load_collateral(platform.collateral(now=NOW - 30 * DAY, valid_for=30 * DAY))
    assert collateral.tcb_info.next_update == NOW - DAY
    return collateral


def _rejected(
    verifier: DcapVerifier,
    quote: bytes,
    collateral: SgxCollateral,
    at: dt.datetime,
    grace: dt.timedelta,
    codes: set[str],
) -> EvidenceError:
    with pytest.raises(EvidenceError) as info:
        verifier.verify(quote, collateral, at, collateral_grace=grace)
    assert info.value.code in codes, info.value
    return info.value


def test_stale_collateral_is_rejected_without_grace(
    verifier: DcapVerifier, quote: bytes, stale: SgxCollateral
) -> None:
    _rejected(verifier, quote, stale, NOW, dt.timedelta(0), EXPIRED_CODES)
    with pytest.raises(EvidenceError):
        verifier.verify(quote, stale, NOW)  # the default is strict


def test_stale_collateral_within_grace_is_accepted_and_flagged(
    verifier: DcapVerifier, quote: bytes, stale: SgxCollateral
) -> None:
    result = verifier.verify(quote, stale, NOW, collateral_grace=2 * DAY)
    assert result.tcb_status == "UpToDate"
    assert result.collateral_expired is True
    assert result.claims["x-ms-sgx-collateral-expired"] is True
    assert result.to_dict()["collateral_expired"] is True
    one_shot = verify_quote(quote, stale, verifier.trust, NOW, collateral_grace=2 * DAY)
    assert one_shot.collateral_expired and one_shot.claims == result.claims


def test_grace_too_short_is_rejected_and_says_so(
    verifier: DcapVerifier, quote: bytes, stale: SgxCollateral
) -> None:
    error = _rejected(verifier, quote, stale, NOW, dt.timedelta(hours=12), EXPIRED_CODES)
    assert "grace period" in error.message


def test_cached_lenient_result_does_not_leak_into_strict_calls(
    verifier: DcapVerifier, quote: bytes, stale: SgxCollateral
) -> None:
    assert verifier.verify(quote, stale, NOW, collateral_grace=2 * DAY).collateral_expired
    _rejected(verifier, quote, stale, NOW, dt.timedelta(0), EXPIRED_CODES)
    assert verifier.verify(quote, stale, NOW, collateral_grace=2 * DAY).collateral_expired
    _rejected(verifier, quote, stale, NOW + 2 * DAY, 2 * DAY, EXPIRED_CODES)


def test_fresh_collateral_is_not_flagged(
    platform: SimulatedPlatform, verifier: DcapVerifier, quote: bytes
) -> None:
    result = verifier.verify(
        quote, load_collateral(platform.collateral(now=NOW)), NOW, collateral_grace=2 * DAY
    )
    assert result.collateral_expired is False
    assert "x-ms-sgx-collateral-expired" not in result.claims


def test_certificates_and_lower_bounds_stay_strict(
    platform: SimulatedPlatform, verifier: DcapVerifier, quote: bytes
) -> None:
    huge = dt.timedelta(days=365 * 40)
    # The PCK certificate (7 years) expires long before the grace period would.
    fresh = load_collateral(platform.collateral(now=NOW))
    _rejected(verifier, quote, fresh, NOW + 8 * 365 * DAY, huge, {"certificate_expired"})
    # Collateral issued in the future is not made valid by any grace.
    future = load_collateral(platform.collateral(now=NOW + 10 * DAY))
    _rejected(verifier, quote, future, NOW, huge, EXPIRED_CODES)


def test_negative_grace_is_refused(verifier: DcapVerifier, quote: bytes, stale: SgxCollateral) -> None:
    _rejected(verifier, quote, stale, NOW, -DAY, {"invalid_time"})


def test_real_stale_pck_crl_within_grace() -> None:
    """MobileCoin's vector: the PCK CRL was 59 days past nextUpdate; QvE would report the TCB status."""
    case, expected = MOBILECOIN, MOBILECOIN.expected
    verifier = DcapVerifier()
    error = _rejected(verifier, case.quote(), case.collateral(), case.at, dt.timedelta(0), {"crl_expired"})
    assert "PCK CRL" in error.message
    _rejected(verifier, case.quote(), case.collateral(), case.at, 58 * DAY, {"crl_expired"})
    result = verifier.verify(case.quote(), case.collateral(), case.at, collateral_grace=60 * DAY)
    assert result.tcb_status == expected["tcb_status_if_crl_freshness_ignored"]
    assert list(result.advisory_ids) == expected["advisory_ids_if_crl_freshness_ignored"]
    assert result.qe_tcb_status == expected["qe_tcb_status"]
    assert result.collateral_expired is True
    assert result.claims["x-ms-sgx-collateral-expired"] is True
