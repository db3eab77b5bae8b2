"""Every case of ../shared/vectors/snp/*/expected.json: verdict, reason kind, claims, time windows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from affidavit.evidence.snp import AmdTrust, SnpError, SnpVerifier, parse_report, verify_report
from tests.evidence.snp.conftest import CASES, NEGATIVE, POSITIVE, Case, parse_time

# The oracle's reason texts -> our stable codes.
REASON_CODES = {
    "report signature does not verify": "snp_signature_invalid",
    "no ASK/ASVK among the CA certificates": "snp_chain_untrusted",
    "but REPORTED_TCB": "snp_tcb_mismatch",
    "hwID": "snp_chip_id_mismatch",
    "not valid at": "snp_certificate_not_valid",
}


def reason_codes(reasons: list[str]) -> set[str]:
    codes = {code for r in reasons for key, code in REASON_CODES.items() if key in r}
    assert len(codes) >= 1, reasons
    return codes


def test_every_set_is_covered() -> None:
    assert len(CASES) >= 16
    sets = {c.set for c in CASES}
    assert sets >= {"oak-turin-v5", "oak-genoa-v5", "aci-milan-v2", "trustee-milan-v3-vlek-aws"}


@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_positive_case_verifies_with_its_claims(case: Case) -> None:
    trust = AmdTrust.from_pem(case.ark)
    result = verify_report(case.report, case.vek, case.chain, trust, case.now)
    assert result.product == case.raw["chain"]["product"]
    assert result.signing_key == case.raw["vek_type"]
    expected = {k: v for k, v in case.raw["claims"]["maa_style_claims"].items() if not k.startswith("_")}
    for name, value in expected.items():
        assert result.claims[name] == value, name
        assert type(result.claims[name]) is type(value), name
    assert set(result.claims) == set(expected)
    claims = case.raw["claims"]
    assert result.report.version == claims["version"]
    assert result.reported_tcb.raw.hex() == claims["reported_tcb"]["raw"]
    assert result.reported_tcb.to_dict() == claims["reported_tcb"]
    assert result.report.chip_id.hex() == claims["chip_id"]
    assert result.platform_claims["x-affidavit-sevsnp-product"] == claims["product"]


@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_positive_case_verifies_with_shipped_roots(case: Case) -> None:
    """The package's AMD roots are the vectors' roots; the shipped ASK/ASVK stand in for a missing chain."""
    result = verify_report(case.report, case.vek, None, None, case.now)
    assert result.product == case.raw["chain"]["product"]


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: c.id)
def test_negative_case_fails_for_its_reason(case: Case) -> None:
    trust = AmdTrust.from_pem(case.ark)
    with pytest.raises(SnpError) as info:
        verify_report(case.report, case.vek, case.chain, trust, case.now)
    assert info.value.code in reason_codes(case.expected["reasons"])


@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_time_cases_fail_outside_the_certificate_window(case: Case) -> None:
    trust = AmdTrust.from_pem(case.ark)
    window = case.raw["certificate_validity_window"]
    assert case.raw["time_negative_cases"]
    for neg in case.raw["time_negative_cases"]:
        with pytest.raises(SnpError) as info:
            verify_report(case.report, case.vek, case.chain, trust, parse_time(neg["verify_at"]))
        assert info.value.code == "snp_certificate_not_valid"
    # The edges themselves are inside; one second beyond is outside.
    verify_report(case.report, case.vek, case.chain, trust, parse_time(window["not_before"]))
    verify_report(case.report, case.vek, case.chain, trust, parse_time(window["not_after"]))
    verifier = SnpVerifier(trust)
    verifier.verify(case.report, case.vek, case.chain, case.now)
    with pytest.raises(SnpError, match="not valid at"):  # a cached chain is still time-checked
        late = parse_time(window["not_after"]) + timedelta(seconds=1)
        verifier.verify(case.report, case.vek, case.chain, late)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_report_file_parses_as_the_oracle_did(case: Case) -> None:
    data = case.report
    report = parse_report(data)
    parsed = case.raw.get("claims")
    if parsed is None:
        return
    assert report.version == parsed["version"]
    assert report.vmpl == parsed["vmpl"]
    assert f"0x{report.policy:016x}" == parsed["policy"]
    assert f"0x{report.platform_info:016x}" == parsed["platform_info"]
    assert report.signing_key == parsed["signing_key"]
    assert report.measurement.hex() == parsed["measurement"]
    assert report.report_id_ma.hex() == parsed["report_id_ma"]
    assert report.cpuid_fam_id == parsed.get("cpuid_fam_id")
    assert report.cpuid_product == (parsed["product"] if report.version >= 3 else None)
    assert report.debug == parsed["policy_debug_allowed"]
    if report.version >= 5:
        assert f"0x{report.launch_mit_vector:016x}" == parsed["launch_mit_vector"]
    for which in ("current", "committed", "launch"):
        assert report.tcb(which, parsed["product"]).to_dict() == parsed[f"{which}_tcb"]


def test_unsigned_tail_is_refused_strictly() -> None:
    """Bytes 0x330..0x49F are not signed; the oracle accepts flips there, a strict verifier refuses them."""
    case = POSITIVE[0]
    for offset in (0x330, 0x3E8, 0x49F):
        data = bytearray(case.report)
        data[offset] ^= 1
        with pytest.raises(SnpError) as info:
            verify_report(bytes(data), case.vek, case.chain, None, case.now)
        assert info.value.code == "snp_report_malformed"
