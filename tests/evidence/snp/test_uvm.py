"""UVM endorsements (sev-snp.md §5.4) on the real ACI one: decoded, compared with the report's
MEASUREMENT, exposed as Affidavit claims that say the COSE signature is not verified; any bytes give a
result or `SnpError`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence.snp import SnpError
from affidavit.evidence.snp.maa import build_document, parse_document, uvm_claims
from affidavit.evidence.snp.uvm import MAX_ENDORSEMENT_BYTES, parse_uvm_endorsement
from tests.evidence.snp.conftest import SNP

ACI = SNP / "aci-milan-v2"
UVM = (ACI / "body.uvm_reference_info.bin").read_bytes()
REPORT = (ACI / "snp_report.bin").read_bytes()
P = "x-affidavit-sevsnp-uvm-"


def test_real_aci_endorsement_is_decoded_and_matches_the_report() -> None:
    uvm = parse_uvm_endorsement(UVM)
    assert uvm.feed == "ContainerPlat-AMD-UVM" and uvm.issuer and uvm.issuer.startswith("did:x509:0:")
    evidence = parse_document(build_document(REPORT, None, (UVM,)))
    assert evidence.endorsements == (uvm,)
    claims = uvm_claims(evidence)
    assert claims[P + "launchmeasurement"] == evidence.report.measurement.hex()
    assert claims[P + "measurement-matches"] is True
    assert claims[P + "signature-verified"] is False  # documented: the COSE signature is not checked
    assert claims[P + "guestsvn"] == "22"


def test_another_reports_measurement_does_not_match() -> None:
    other = SNP / "trustee-milan-v2-vcek"
    report = next(p for p in other.iterdir() if p.suffix == ".bin" and p.stat().st_size == 1184)
    claims = uvm_claims(parse_document(build_document(report.read_bytes(), None, (UVM,))))
    assert claims[P + "measurement-matches"] is False


def test_no_endorsement_no_claims() -> None:
    assert uvm_claims(parse_document(build_document(REPORT))) == {}


@pytest.mark.parametrize("cut", [1, 10, len(UVM) // 2, len(UVM) - 1])
def test_truncated_endorsement_is_refused(cut: int) -> None:
    with pytest.raises(SnpError) as caught:
        parse_uvm_endorsement(UVM[:cut])
    assert caught.value.code == "snp_endorsement_malformed"


def test_oversized_endorsement_is_refused() -> None:
    with pytest.raises(SnpError):
        parse_uvm_endorsement(UVM + bytes(MAX_ENDORSEMENT_BYTES))


@given(st.binary(max_size=2048))
def test_any_bytes_give_a_result_or_snp_error(data: bytes) -> None:
    try:
        parse_uvm_endorsement(data)
    except SnpError:
        pass


@given(st.lists(st.tuples(st.integers(0, len(UVM) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_edited_endorsement_gives_a_result_or_snp_error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(UVM)
    for pos, value in edits:
        data[pos] = value
    try:
        parse_uvm_endorsement(bytes(data))
    except SnpError:
        pass


@pytest.mark.parametrize(
    "data",
    [
        bytes([0xA1, 0xC1, 0x80, 0x00]),  # {tag 1([]): 0}: a map key that holds a list
        bytes([0x84, 0x44, 0xA1, 0xC1, 0x80, 0x00, 0xA0, 0x40, 0x40]),  # the same in the protected header
        bytes([0xA1, 0xC1, 0xA0, 0x00]),  # {tag 1({}): 0}
    ],
)
def test_a_map_key_holding_a_container_is_refused(data: bytes) -> None:
    with pytest.raises(SnpError) as caught:
        parse_uvm_endorsement(data)
    assert caught.value.code == "snp_endorsement_malformed"
