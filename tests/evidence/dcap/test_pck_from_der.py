"""The uncached path reads the PCK certificate's SGX extension, names and SPKI from the signed DER instead
of `cryptography`'s objects: both readings agree on every real certificate, and any bytes give a result or
the typed error."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import parse_quote
from affidavit.evidence.dcap.names import cert_names
from affidavit.evidence.dcap.pck import pck_extension_in, pck_extension_of
from tests.evidence.dcap.conftest import vector_cases


def test_extension_and_spki_from_der_agree_with_cryptography() -> None:
    seen = 0
    for case in vector_cases():
        chain = x509.load_pem_x509_certificates(parse_quote(case.quote()).pck_chain_pem)
        names = cert_names(chain[0], "pck_chain_malformed", "PCK certificate")
        assert pck_extension_in(names.extensions) == pck_extension_of(chain[0])
        for cert in chain:
            spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            assert cert_names(cert, "pck_chain_malformed", "c").spki == spki
        seen += 1
    assert seen > 5


@given(st.binary(max_size=400))
def test_extensions_of_any_bytes_give_the_typed_error(data: bytes) -> None:
    try:
        pck_extension_in(data)
    except EvidenceError as exc:
        assert exc.code == "pck_extension_invalid"


def test_a_duplicated_extension_is_refused() -> None:
    case = next(iter(vector_cases()))
    leaf = x509.load_pem_x509_certificates(parse_quote(case.quote()).pck_chain_pem)[0]
    ext = cert_names(leaf, "pck_chain_malformed", "PCK certificate").extensions
    from affidavit.evidence import der

    entries = der.read_one(ext, der.TAG_SEQUENCE)[1]
    first = der.read_tlvs(entries)[0]
    doubled = der.encode(der.TAG_SEQUENCE, entries + der.encode(*first))
    try:
        pck_extension_in(doubled)
    except EvidenceError as exc:
        assert exc.code == "pck_extension_invalid" and "duplicate" in exc.message
    else:
        raise AssertionError("a duplicated extension was accepted")
