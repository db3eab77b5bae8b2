"""Parsing PCS responses: exact signed bytes, URL-encoded issuer-chain headers, CRL encodings."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from affidavit.collateral import CollateralError
from affidavit.collateral.items import PCK_CRL, QE_IDENTITY, ROOT_CA_CRL, TCB_INFO, CollateralSet
from affidavit.collateral.pcs import (
    crl_der,
    issuer_chain,
    parse_crl_response,
    parse_signed_response,
    signed_field,
)
from tests.collateral.fake_pcs import pcs_body


def test_signed_field_slices_the_exact_bytes(standard: dict[str, Any]) -> None:
    # Whitespace and key order differ from a re-serialisation: the slice must still be byte-exact.
    sig, tcb = standard["tcb_info_signature"], standard["tcb_info"]
    body = ' {\n  "signature" : "' + sig + '",\t"tcbInfo":' + tcb + " }\r\n"
    assert signed_field(body.encode(), "tcbInfo") == (tcb, sig)
    assert json.dumps(json.loads(tcb)) != tcb  # a re-serialisation would not match


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"tcbInfo":{}}',
        b'{"tcbInfo":[],"signature":"00"}',
        b'{"tcbInfo":{},"signature":1}',
        b'{"tcbInfo":{},"signature":"00",}',
        b'{"tcbInfo":{},"tcbInfo":{},"signature":"00"}',
        b'{"tcbInfo":{},"signature":"00"} trailing',
        b'{"tcbInfo":{} "signature":"00"}',
        b"\xff\xfe",
    ],
)
def test_signed_field_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(CollateralError) as err:
        signed_field(body, "tcbInfo")
    assert err.value.code == "collateral_invalid"


def test_response_round_trip_matches_the_offline_form(standard: dict[str, Any]) -> None:
    expected = CollateralSet.from_json(standard)
    tcb_body = pcs_body("tcbInfo", standard["tcb_info"], standard["tcb_info_signature"])
    qe_body = pcs_body("enclaveIdentity", standard["qe_identity"], standard["qe_identity_signature"])
    tcb = parse_signed_response(
        TCB_INFO, tcb_body, {"tcb-info-issuer-chain": quote(standard["tcb_info_issuer_chain"], safe="")}
    )
    qe = parse_signed_response(
        QE_IDENTITY,
        qe_body,
        {"SGX-Enclave-Identity-Issuer-Chain": quote(standard["qe_identity_issuer_chain"], safe="")},
    )
    pck_der = bytes.fromhex(standard["pck_crl"])
    pem = x509.load_der_x509_crl(pck_der).public_bytes(Encoding.PEM)
    chain_header = {"SGX-PCK-CRL-Issuer-Chain": quote(standard["pck_crl_issuer_chain"])}
    for body in (pck_der, pem, standard["pck_crl"].encode()):  # DER, PEM, PCCS's hex
        assert parse_crl_response(PCK_CRL, body, chain_header) == expected.pck_crl
    assert tcb == expected.tcb_info
    assert qe == expected.qe_identity
    assert parse_crl_response(ROOT_CA_CRL, bytes.fromhex(standard["root_ca_crl"]), {}) == expected.root_ca_crl


def test_v3_api_tcb_header_name_is_accepted(standard: dict[str, Any]) -> None:
    chain = issuer_chain(
        {"SGX-TCB-Info-Issuer-Chain": quote(standard["tcb_info_issuer_chain"])},
        ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"),
    )
    assert chain == standard["tcb_info_issuer_chain"]


@pytest.mark.parametrize("headers", [{}, {"SGX-PCK-CRL-Issuer-Chain": "not%20a%20chain"}])
def test_missing_or_bad_chain_header(headers: dict[str, str]) -> None:
    with pytest.raises(CollateralError):
        issuer_chain(headers, ("SGX-PCK-CRL-Issuer-Chain",))


def test_crl_der_rejects_non_crl() -> None:
    with pytest.raises(CollateralError):
        crl_der(b"hello")
    with pytest.raises(CollateralError):
        parse_crl_response(ROOT_CA_CRL, b"\x30\x03\x02\x01\x01", {})


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(
    _json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


@given(st.binary(max_size=300), st.dictionaries(st.text(max_size=30), st.text(max_size=200), max_size=3))
def test_any_response_parses_or_raises_collateral_error(body: bytes, headers: dict[str, str]) -> None:
    for kind in (TCB_INFO, QE_IDENTITY):
        try:
            parse_signed_response(kind, body, headers)
        except CollateralError:
            pass
    for kind in (PCK_CRL, ROOT_CA_CRL):
        try:
            parse_crl_response(kind, body, headers)
        except CollateralError:
            pass


@given(
    st.dictionaries(st.sampled_from(["tcbInfo", "signature", "enclaveIdentity", "x"]), _json, max_size=4),
    st.sampled_from(["", " ", "\n\t"]),
)
def test_structured_responses_parse_or_raise_collateral_error(obj: dict[str, Any], ws: str) -> None:
    body = json.dumps(obj, separators=("," + ws, ":" + ws)).encode()
    for kind, field in ((TCB_INFO, "tcbInfo"), (QE_IDENTITY, "enclaveIdentity")):
        try:
            text, sig = signed_field(body, field)
        except CollateralError:
            continue
        assert json.loads(text) == obj[field] and sig == obj["signature"]
        try:
            parse_signed_response(kind, body, {})
        except CollateralError:
            pass


@given(st.text(max_size=400))
def test_any_chain_header_parses_or_raises_collateral_error(value: str) -> None:
    try:
        issuer_chain({"SGX-PCK-CRL-Issuer-Chain": value}, ("SGX-PCK-CRL-Issuer-Chain",))
    except CollateralError:
        pass


_dates = st.sampled_from(["2025-05-27T19:31:07Z", "2025-05-27", "not a date", "2025-05-27T19:31:07+02:00"])
_doc = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["SGX", "TDX", "QE", "TD_QE", "QVE"]) | _json,
        "fmspc": st.sampled_from(["00906ED50000", "00906ed5000", "zz906ED50000"]) | _json,
        "issueDate": _dates | _json,
        "nextUpdate": _dates | _json,
        "tcbEvaluationDataNumber": st.integers(-2, 20) | _json,
    },
)


@given(_doc, st.sampled_from(["00" * 64, "00" * 63, "zz"]))
def test_signed_documents_parse_or_raise_collateral_error(doc: dict[str, Any], sig: str) -> None:
    from affidavit.collateral.items import signed_item

    for kind in (TCB_INFO, QE_IDENTITY):
        try:
            item = signed_item(kind, json.dumps(doc), sig, "")
        except CollateralError:
            continue
        assert item.issue_date.tzinfo is not None and item.number >= 0
