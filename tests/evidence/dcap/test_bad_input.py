"""Malformed quotes, collateral and trust anchors fail with a stable code and a precise message."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta

import pytest

from affidavit.evidence.dcap import (
    DcapVerifier,
    EvidenceError,
    TrustAnchors,
    load_collateral,
    parse_quote,
    platform_of,
)
from affidavit.evidence.dcap.pck import parse_pck_extension
from tests.evidence.dcap.conftest import vector_cases

_BY_NAME = {c.id: c for c in vector_cases()}
SGX = _BY_NAME["phala-sgx-v3-00a067110000-2025-06/sgx-v3-configuration-and-sw-hardening-needed"]
TDX = _BY_NAME["phala-tdx-v4-b0c06f000000-2025-06/tdx-v4-uptodate"]


def _code(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(EvidenceError) as info:
        fn(*args)
    assert info.value.message
    return info.value.code


def test_every_truncation_is_rejected() -> None:
    data = SGX.quote()
    end = len(parse_quote(data).raw)
    for n in range(end):
        assert _code(parse_quote, data[:n]) in {"quote_truncated"}, n


def test_trailing_zero_padding_is_tolerated(verifier: DcapVerifier) -> None:
    data = SGX.quote() + bytes(3000)
    assert verifier.verify(data, SGX.collateral(), SGX.at).tcb_status == SGX.expected["tcb_status"]


def test_oversized_quote() -> None:
    assert _code(parse_quote, SGX.quote() + bytes(70_000)) == "quote_oversized"


@pytest.mark.parametrize(
    "offset,value,code",
    [
        (0, 2, "unsupported_quote_version"),
        (0, 6, "unsupported_quote_version"),
        (2, 3, "unsupported_key_type"),
        (2, 1, "unsupported_key_type"),
    ],
)
def test_header_fields(offset: int, value: int, code: str) -> None:
    data = bytearray(SGX.quote())
    struct.pack_into("<H", data, offset, value)
    with pytest.raises(EvidenceError) as info:
        parse_quote(bytes(data))
    assert info.value.code == code
    assert str(value) in info.value.message or "P384" in info.value.message


def test_unknown_tee_type_and_vendor() -> None:
    data = bytearray(TDX.quote())
    struct.pack_into("<I", data, 4, 0x42)
    assert _code(parse_quote, bytes(data)) == "unsupported_tee_type"
    data = bytearray(SGX.quote())
    data[12] ^= 1
    assert _code(parse_quote, bytes(data)) == "unsupported_qe_vendor"


def test_garbage() -> None:
    assert _code(parse_quote, b"") == "quote_truncated"
    assert _code(parse_quote, b"\xff" * 5000) == "unsupported_quote_version"
    assert _code(parse_quote, "not bytes") == "quote_malformed"  # type: ignore[arg-type]


def _replace_cert_data(data: bytes, new: bytes) -> bytes:
    q = parse_quote(data)
    start = data.index(q.cert_data)
    size_at = start - 4
    out = bytearray(data[:size_at] + struct.pack("<I", len(new)) + new)
    sig_len_at = len(q.signed_region)
    struct.pack_into("<I", out, sig_len_at, len(out) - sig_len_at - 4)
    return bytes(out)


def test_malformed_pem_chain(verifier: DcapVerifier) -> None:
    bad = _replace_cert_data(
        SGX.quote(), b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    assert _code(verifier.verify, bad, SGX.collateral(), SGX.at) == "pck_chain_malformed"
    assert _code(platform_of, bad) == "pck_chain_malformed"


def test_chain_with_two_certificates(verifier: DcapVerifier) -> None:
    pem = parse_quote(SGX.quote()).pck_chain_pem
    two = pem[: pem.rindex(b"-----BEGIN CERTIFICATE-----")]
    assert _code(verifier.verify, _replace_cert_data(SGX.quote(), two), SGX.collateral(), SGX.at) == (
        "pck_chain_malformed"
    )


def test_untrusted_root() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    v = DcapVerifier(TrustAnchors.from_pem(pem))
    assert _code(v.verify, SGX.quote(), SGX.collateral(), SGX.at) == "pck_chain_untrusted"


def test_trust_anchor_inputs() -> None:
    assert _code(TrustAnchors.from_pem, b"garbage") == "trust_anchor_invalid"
    assert len(TrustAnchors.intel().keys) == 1


def test_time_outside_every_window(verifier: DcapVerifier) -> None:
    assert _code(verifier.verify, SGX.quote(), SGX.collateral(), SGX.at + timedelta(days=60)) in {
        "crl_expired",
        "collateral_expired",
    }
    assert _code(verifier.verify, SGX.quote(), SGX.collateral(), datetime(2019, 1, 1, tzinfo=UTC)) == (
        "certificate_expired"
    )
    assert _code(verifier.verify, SGX.quote(), SGX.collateral(), datetime(2025, 7, 1)) == "invalid_time"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: "not json",
        lambda d: "[]",
        lambda d: {k: v for k, v in d.items() if k != "pck_crl"},
        lambda d: {**d, "pck_crl": 5},
        lambda d: {**d, "pck_crl": "zz"},
        lambda d: {**d, "root_ca_crl": "00"},
        lambda d: {**d, "tcb_info": "{"},
        lambda d: {**d, "tcb_info": "[1]"},
        lambda d: {**d, "tcb_info": d["tcb_info"].replace('"version":3', '"version":7')},
        lambda d: {**d, "tcb_info": d["tcb_info"].replace('"fmspc":"', '"fmspc":"0')},
        lambda d: {**d, "qe_identity": d["qe_identity"].replace('"isvprodid":1', '"isvprodid":"1"')},
        lambda d: {**d, "tcb_info_signature": "abcd"},
        lambda d: {
            **d,
            "tcb_info_issuer_chain": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        },
        lambda d: {**d, "qe_identity_issuer_chain": ""},
    ],
)
def test_malformed_collateral(mutate) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(SGX.collateral_path.read_text())
    bad = mutate(doc)
    with pytest.raises(EvidenceError) as info:
        load_collateral(bad if isinstance(bad, str) else json.dumps(bad))
    assert info.value.code == "collateral_malformed"


def test_short_issuer_chain_is_untrusted() -> None:
    doc = json.loads(SGX.collateral_path.read_text())
    pem = doc["tcb_info_issuer_chain"]
    doc["tcb_info_issuer_chain"] = pem[: pem.index("-----END CERTIFICATE-----") + 26]
    assert (
        _code(DcapVerifier().verify, SGX.quote(), load_collateral(doc), SGX.at)
        == "collateral_chain_untrusted"
    )


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",
        b"\x30\x80\x00\x00",
        b"\x30\x81\x01\x00",
        b"\x04\x00",
        b"\x30\x00",
        b"\x30\x03\x30\x01\x06",
    ],
)
def test_malformed_pck_extension(der: bytes) -> None:
    assert _code(parse_pck_extension, der) == "pck_extension_invalid"
