"""Single-byte tampering of real quotes and collateral is always rejected.

Every byte of the signed region, both signatures, the attestation key and the QE report is flipped in
turn; one shared verifier keeps collateral and chain checks cached, so each attempt costs about one
ECDSA verification.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from affidavit.evidence.dcap import DcapVerifier, EvidenceError, load_collateral, parse_quote
from tests.evidence.dcap.conftest import Case, vector_cases

_BY_NAME = {c.id: c for c in vector_cases()}
SGX = _BY_NAME["phala-sgx-v3-00a067110000-2025-06/sgx-v3-configuration-and-sw-hardening-needed"]
TDX = _BY_NAME["phala-tdx-v4-b0c06f000000-2025-06/tdx-v4-uptodate"]
TD15 = _BY_NAME["tdx-v5-90c06f000000-2026-02/tdx-v5-td15-uptodate"]


def _regions(data: bytes) -> dict[str, range]:
    q = parse_quote(data)
    signed = len(q.signed_region)
    sig = signed + 4
    key = sig + 64
    qe = data.index(q.qe_report.raw, key)
    qe_sig = qe + 384
    return {
        "signed region": range(0, signed),
        "quote signature": range(sig, sig + 64),
        "attestation key": range(key, key + 64),
        "QE report": range(qe, qe + 384),
        "QE report signature": range(qe_sig, qe_sig + 64),
        "QE auth data": range(qe_sig + 66, qe_sig + 66 + len(q.qe_auth_data)),
    }


@pytest.mark.parametrize("case", [SGX, TDX, TD15], ids=["sgx-v3", "tdx-v4", "tdx-v5"])
def test_every_single_byte_flip_is_rejected(case: Case, verifier: DcapVerifier) -> None:
    data = case.quote()
    collateral = case.collateral()
    verifier.verify(data, collateral, case.at)  # the untouched quote verifies
    accepted = []
    codes: set[str] = set()
    for region, offsets in _regions(data).items():
        for i in offsets:
            bad = bytearray(data)
            bad[i] ^= 0xFF
            try:
                verifier.verify(bytes(bad), collateral, case.at)
            except EvidenceError as exc:
                codes.add(exc.code)
            else:
                accepted.append((region, i))
    assert accepted == []
    assert {"quote_signature_invalid", "qe_report_signature_invalid", "qe_report_data_mismatch"} <= codes
    # The untouched quote still verifies after all that (no poisoned cache entries).
    assert verifier.verify(data, collateral, case.at).tcb_status == case.expected["tcb_status"]


def _flip_in_json_text(text: str, needle: str) -> str:
    i = text.index(needle)
    digit = text[i + len(needle)]
    return text[: i + len(needle)] + ("1" if digit != "1" else "2") + text[i + len(needle) + 1 :]


@pytest.mark.parametrize("case", [SGX, TDX], ids=["sgx", "tdx"])
@pytest.mark.parametrize(
    "field,needle",
    [("tcb_info", '"pcesvn":'), ("tcb_info", '"tcbEvaluationDataNumber":'), ("qe_identity", '"isvsvn":')],
)
def test_tampered_signed_collateral_is_rejected(case: Case, field: str, needle: str) -> None:
    doc = json.loads(case.collateral_path.read_text())
    doc[field] = _flip_in_json_text(doc[field], needle)
    with pytest.raises(EvidenceError) as info:
        DcapVerifier().verify(case.quote(), load_collateral(doc), case.at)
    assert info.value.code == "collateral_signature_invalid"


@pytest.mark.parametrize("field", ["tcb_info_signature", "qe_identity_signature"])
@pytest.mark.parametrize("pos", [0, 31, 32, 63])
def test_tampered_collateral_signature_is_rejected(field: str, pos: int) -> None:
    doc = json.loads(SGX.collateral_path.read_text())
    sig = bytearray(bytes.fromhex(doc[field]))
    sig[pos] ^= 0x01
    doc[field] = sig.hex()
    with pytest.raises(EvidenceError) as info:
        DcapVerifier().verify(SGX.quote(), load_collateral(doc), SGX.at)
    assert info.value.code == "collateral_signature_invalid"


@pytest.mark.parametrize("field", ["pck_crl", "root_ca_crl"])
def test_tampered_crl_is_rejected(field: str) -> None:
    doc = json.loads(SGX.collateral_path.read_text())
    der = bytearray(bytes.fromhex(doc[field]))
    der[-10] ^= 0x01  # inside the signature value
    doc[field] = der.hex()
    with pytest.raises(EvidenceError) as info:
        DcapVerifier().verify(SGX.quote(), load_collateral(doc), SGX.at)
    assert info.value.code in {"crl_invalid", "collateral_malformed"}


def test_collateral_for_another_platform_is_rejected() -> None:
    with pytest.raises(EvidenceError) as info:
        DcapVerifier().verify(SGX.quote(), TDX.collateral(), SGX.at)
    assert info.value.code in {"crl_mismatch", "tcb_info_mismatch"}


def test_tdx_collateral_with_sgx_tcb_info_is_rejected() -> None:
    """A TDX quote checked against SGX-kind documents fails on the kind, not later."""
    q = TDX.quote()
    doc = json.loads(TDX.collateral_path.read_text())
    sgx_doc = json.loads(SGX.collateral_path.read_text())
    doc["qe_identity"], doc["qe_identity_signature"] = (
        sgx_doc["qe_identity"],
        sgx_doc["qe_identity_signature"],
    )
    doc["qe_identity_issuer_chain"] = sgx_doc["qe_identity_issuer_chain"]
    with pytest.raises(EvidenceError) as info:
        DcapVerifier().verify(q, load_collateral(doc), datetime.fromisoformat("2025-07-01T00:00:00Z"))
    assert info.value.code == "qe_identity_mismatch"
