"""Every real case in ../shared/vectors/sgx/*/expected.json: status and advisories, or the failure."""

from __future__ import annotations

import pytest

from affidavit.evidence.dcap import DcapVerifier, EvidenceError
from tests.evidence.dcap.conftest import Case, vector_cases

CASES = vector_cases()

# What a failing case must fail with, by the upstream description of the failure.
_FAILURE_CODES = {"TCB level not supported": "tcb_not_supported", "CRL expired": "crl_expired"}


def test_all_26_cases_are_present() -> None:
    assert len(CASES) == 26


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vector_case(case: Case, verifier: DcapVerifier) -> None:
    expected = case.expected
    if expected["verifies"]:
        result = verifier.verify(case.quote(), case.collateral(), case.at)
        assert result.tcb_status == expected["tcb_status"]
        assert list(result.advisory_ids) == expected["advisory_ids"]
        if "qe_tcb_status" in expected:
            assert result.qe_tcb_status == expected["qe_tcb_status"]
        if "tdx_module" in expected:
            assert expected["tdx_module"].split()[1] == result.tdx_module_tcb_status
        if "is_debuggable" in expected:
            assert result.claims["x-ms-sgx-is-debuggable"] is expected["is_debuggable"]
    else:
        with pytest.raises(EvidenceError) as info:
            verifier.verify(case.quote(), case.collateral(), case.at)
        code = next(v for k, v in _FAILURE_CODES.items() if k in expected["error"])
        assert info.value.code == code
