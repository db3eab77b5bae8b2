"""The evidence layer's one DER reader: any bytes give TLVs or a `DerError`, never another exception; what it
accepts re-encodes to the same bytes (definite, minimal lengths only); it agrees with `cryptography` on real
certificates."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence import EvidenceError, der
from tests.evidence.dcap.conftest import vector_cases


def _encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + value


tlv_tags = st.integers(0, 0xFF).filter(lambda t: t & 0x1F != 0x1F)
tlv_lists = st.lists(st.tuples(tlv_tags, st.binary(max_size=300)), max_size=6)


@given(st.binary(max_size=400))
def test_read_tlvs_of_any_bytes_is_tlvs_or_the_typed_error(data: bytes) -> None:
    try:
        tlvs = der.read_tlvs(data)
    except der.DerError as exc:
        assert exc.code == "der_malformed" and isinstance(exc, EvidenceError)
        return
    assert b"".join(_encode(tag, value) for tag, value in tlvs) == data  # minimal lengths only


@given(st.binary(max_size=400), st.integers(0, 0xFF))
def test_read_one_and_first_element_of_any_bytes(data: bytes, tag: int) -> None:
    for call in (der.read_one, der.first_element):
        try:
            call(data, tag)
        except der.DerError:
            pass


@given(st.binary(max_size=200), st.integers(0, 200), st.integers(0, 200))
def test_span_stays_inside_its_container(data: bytes, pos: int, end: int) -> None:
    end = min(end, len(data))
    try:
        tag, start, stop = der.span(data, pos, end)
    except der.DerError:
        return
    assert pos + 2 <= start <= stop <= end and tag == data[pos]


@given(tlv_lists)
def test_encoded_tlvs_read_back(tlvs: list[tuple[int, bytes]]) -> None:
    data = b"".join(_encode(tag, value) for tag, value in tlvs)
    assert der.read_tlvs(data) == tlvs
    if tlvs:
        assert der.first_element(data, tlvs[0][0]) == _encode(*tlvs[0])


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_integers_read_back(n: int) -> None:
    value = n.to_bytes(((~n if n < 0 else n).bit_length() + 8) // 8, "big", signed=True)
    assert der.decode_integer(value, "n") == n


@given(st.binary(max_size=12))
def test_decode_integer_and_boolean_of_any_bytes(value: bytes) -> None:
    for call in (der.decode_integer, der.decode_boolean):
        try:
            call(value, "x")
        except der.DerError:
            pass


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x81\x05hello",  # long form for a short length
        b"\x30\x82\x00\x80" + b"\0" * 128,  # leading zero length byte
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x1f\x01\x00",  # multi-byte tag
        b"\x30\x05abc",  # runs past the end
        b"\x30",  # truncated header
    ],
)
def test_non_der_is_refused(data: bytes) -> None:
    with pytest.raises(der.DerError):
        der.read_tlvs(data)


def test_real_certificates_split_as_cryptography_reads_them() -> None:
    certs: list[x509.Certificate] = []
    for case in vector_cases():
        c = case.collateral()
        certs += [*c.tcb_info_issuer_chain, *c.pck_crl_issuer_chain]
    assert certs
    for cert in certs:
        data = cert.public_bytes(Encoding.DER)
        body = der.read_one(data, der.TAG_SEQUENCE)[1]
        tbs, algorithm, signature = der.read_tlvs(body)
        assert _encode(*tbs) == cert.tbs_certificate_bytes == der.first_element(body, der.TAG_SEQUENCE)
        assert signature[0] == der.TAG_BIT_STRING and signature[1][1:] == cert.signature
        assert algorithm[0] == der.TAG_SEQUENCE
