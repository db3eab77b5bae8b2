"""Property tests: any input to the parsers and the verifier yields a result or an EvidenceError."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence import openenclave
from affidavit.evidence.dcap import (
    DcapVerifier,
    EvidenceError,
    Quote,
    TrustAnchors,
    load_collateral,
    parse_enclave_identity,
    parse_quote,
    parse_tcb_info,
    platform_of,
)
from affidavit.evidence.dcap.pck import parse_pck_extension
from tests.evidence.dcap.conftest import vector_cases

_CASES = {c.id: c for c in vector_cases()}
SGX = _CASES["phala-sgx-v3-00a067110000-2025-06/sgx-v3-configuration-and-sw-hardening-needed"]
TD15 = _CASES["tdx-v5-90c06f000000-2026-02/tdx-v5-td15-uptodate"]
QUOTES = [SGX.quote(), TD15.quote()]
COLLATERAL = [SGX.collateral(), TD15.collateral()]
AT = [SGX.at, TD15.at]
VERIFIER = DcapVerifier(TrustAnchors.intel())
TCB_TEXT = json.loads(TD15.collateral_path.read_text())["tcb_info"]
QE_TEXT = json.loads(TD15.collateral_path.read_text())["qe_identity"]


def _typed(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except EvidenceError as exc:
        assert exc.code and exc.message
        return exc


@given(st.binary(max_size=6000))
def test_random_bytes_parse_or_fail_typed(data: bytes) -> None:
    result = _typed(parse_quote, data)
    assert isinstance(result, Quote | EvidenceError)
    _typed(openenclave.parse, data)
    _typed(parse_pck_extension, data)


@st.composite
def mutated_quote(draw: st.DrawFn) -> tuple[int, bytes]:
    which = draw(st.integers(0, 1))
    data = bytearray(QUOTES[which])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "field"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:  # overwrite a length/type field with an extreme little-endian value
            width = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from([0, 1, 5, 6, 0xFFFF, 0xFFFFFFFF, len(data)]))
            data[pos : pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        if not data:
            break
    return which, bytes(data)


@given(mutated_quote())
def test_mutated_quotes_verify_or_fail_typed(arg: tuple[int, bytes]) -> None:
    which, data = arg
    result = _typed(VERIFIER.verify, data, COLLATERAL[which], AT[which])
    if not isinstance(result, EvidenceError):
        # Only bytes outside the signed structures (padding, PEM whitespace) may change unnoticed.
        q, orig = result.quote, parse_quote(QUOTES[which])
        assert q.signed_region == orig.signed_region and q.signature == orig.signature
        assert q.attestation_key == orig.attestation_key and q.qe_report == orig.qe_report
        assert q.qe_report_signature == orig.qe_report_signature and q.qe_auth_data == orig.qe_auth_data
    _typed(platform_of, data)


@given(st.text(max_size=300))
def test_random_collateral_text(text: str) -> None:
    _typed(load_collateral, text)
    _typed(TrustAnchors.from_pem, text)


@given(st.integers(0, len(TCB_TEXT) - 1), st.sampled_from(['"', "{", "]", "0", "x", ",", "-", "9", " "]))
def test_mutated_tcb_info_json(pos: int, ch: str) -> None:
    _typed(parse_tcb_info, (TCB_TEXT[:pos] + ch + TCB_TEXT[pos + 1 :]).encode())
    _typed(
        parse_enclave_identity,
        (QE_TEXT[: pos % len(QE_TEXT)] + ch + QE_TEXT[pos % len(QE_TEXT) + 1 :]).encode(),
    )


@given(
    st.dictionaries(
        st.sampled_from(["tcb_info", "pck_crl", "qe_identity", "root_ca_crl"]), st.text(max_size=40)
    )
)
def test_collateral_fields_replaced(fields: dict[str, str]) -> None:
    doc = {**json.loads(SGX.collateral_path.read_text()), **fields}
    result = _typed(load_collateral, doc)
    if not isinstance(result, EvidenceError):
        _typed(VERIFIER.verify, QUOTES[0], result, AT[0])


OE_REPORT = (
    SGX.quote_path.parent.parent / "azure-maa-openenclave-claims" / "maa2022_oe_report.bin"
).read_bytes()


@given(st.integers(0, 40), st.integers(0, 255), st.integers(-20, 20))
def test_mutated_oe_header(pos: int, value: int, cut: int) -> None:
    data = bytearray(OE_REPORT)
    data[pos] = value
    data = data[: len(data) + cut] if cut < 0 else data + bytes(cut)
    result = _typed(openenclave.unwrap, bytes(data))
    if not isinstance(result, EvidenceError):
        _typed(parse_quote, result)
