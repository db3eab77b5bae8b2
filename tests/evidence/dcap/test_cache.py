"""A DcapVerifier checks each collateral set and each PCK chain once, and re-checks time every call."""

from __future__ import annotations

from datetime import timedelta

import pytest

from affidavit.evidence.dcap import DcapVerifier, EvidenceError, verify_quote
from affidavit.evidence.dcap import verifier as verifier_module
from tests.evidence.dcap.conftest import vector_cases

_CASES = {c.id: c for c in vector_cases()}
DEBUG = _CASES["azure-dcsv2-sgx-00906ed50000-2025-05/intelsdk-debug-standard-eval17"]
RELEASE = _CASES["azure-dcsv2-sgx-00906ed50000-2025-05/intelsdk-release-standard-eval17"]  # same platform
OTHER = _CASES["azure-dcsv2-sgx-00906ed50000-2025-05/maa2022-standard-eval17"]  # another platform


def test_collateral_and_chains_are_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"collateral": 0, "chain": 0}

    def counting(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapped(*args):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return fn(*args)

        return wrapped

    monkeypatch.setattr(
        verifier_module, "verify_collateral", counting("collateral", verifier_module.verify_collateral)
    )
    monkeypatch.setattr(
        verifier_module, "verify_pck_chain", counting("chain", verifier_module.verify_pck_chain)
    )
    v = DcapVerifier()
    collateral = DEBUG.collateral()
    for _ in range(3):
        for case in (DEBUG, RELEASE, OTHER):
            result = v.verify(case.quote(), collateral, case.at)
            assert result.tcb_status == case.expected["tcb_status"]
    assert calls == {"collateral": 1, "chain": 2}
    # Cached checks never stand in for the time check.
    with pytest.raises(EvidenceError) as info:
        v.verify(DEBUG.quote(), collateral, DEBUG.at + timedelta(days=365))
    assert info.value.code in {"crl_expired", "collateral_expired"}
    # A second, equal collateral object shares the cache entry (keyed by content digest).
    v.verify(RELEASE.quote(), RELEASE.collateral(), RELEASE.at)
    assert calls["collateral"] == 1


def test_uncached_function_form_agrees() -> None:
    cached = DcapVerifier().verify(DEBUG.quote(), DEBUG.collateral(), DEBUG.at)
    one_shot = verify_quote(DEBUG.quote(), DEBUG.collateral(), None, DEBUG.at)
    assert (cached.tcb_status, cached.advisory_ids, cached.claims, cached.collateral_hashes) == (
        one_shot.tcb_status,
        one_shot.advisory_ids,
        one_shot.claims,
        one_shot.collateral_hashes,
    )
    assert one_shot.claims["x-ms-sgx-is-debuggable"] is True
    assert one_shot.to_dict()["status"] == one_shot.tcb_status
