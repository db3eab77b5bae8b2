"""What the uncached path no longer repeats must still be checked where it matters: names cut from DER agree
with `cryptography`, a signature remembered within a call never vouches for a different certificate, and the
root is trusted by its key alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence import der as sgx_der
from affidavit.evidence.dcap import DcapVerifier, EvidenceError, TrustAnchors, load_collateral, parse_quote
from affidavit.evidence.dcap.names import cert_names, common_name, crl_issuer
from affidavit.evidence.dcap.pki import crl_tbs
from affidavit.simulate import SimulatedPlatform
from tests.evidence.dcap.conftest import vector_cases

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _content(name: x509.Name) -> bytes:
    return sgx_der.read_one(name.public_bytes(), sgx_der.TAG_SEQUENCE)[1]


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _real_certificates_and_crls() -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    certs: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    for case in vector_cases():
        c = case.collateral()
        certs += [*c.tcb_info_issuer_chain, *c.qe_identity_issuer_chain, *c.pck_crl_issuer_chain]
        certs += x509.load_pem_x509_certificates(parse_quote(case.quote()).pck_chain_pem)
        crls += [c.pck_crl, c.root_ca_crl]
    return certs, crls


def test_names_from_der_agree_with_cryptography() -> None:
    certs, crls = _real_certificates_and_crls()
    assert len(certs) > 50
    for cert in certs:
        names = cert_names(cert, "pck_chain_malformed", "test")
        assert names.subject == _content(cert.subject)
        assert names.issuer == _content(cert.issuer)
        assert names.tbs == cert.tbs_certificate_bytes
        assert common_name(names.subject) == _cn(cert.subject) != ""
    for crl in crls:
        assert crl_issuer(crl.tbs_certlist_bytes, "collateral_malformed", "test") == _content(crl.issuer)
        assert crl_tbs(crl.public_bytes(Encoding.DER), "test") == crl.tbs_certlist_bytes


@given(st.binary(max_size=300))
def test_common_name_of_any_bytes_is_a_string(data: bytes) -> None:
    assert isinstance(common_name(data), str)


@given(st.binary(max_size=300))
def test_crl_tbs_of_any_bytes_is_bytes_or_the_typed_error(data: bytes) -> None:
    try:
        assert isinstance(crl_tbs(data, "fuzz"), bytes)
    except EvidenceError as exc:
        assert exc.code == "collateral_malformed"


@given(st.binary(max_size=300))
def test_crl_issuer_of_any_bytes_is_bytes_or_the_typed_error(data: bytes) -> None:
    try:
        assert isinstance(crl_issuer(data, "collateral_malformed", "fuzz"), bytes)
    except EvidenceError as exc:
        assert exc.code == "collateral_malformed"


# -- simulated platform: tampering with one copy of a repeated certificate ----------------------------


@pytest.fixture(scope="module")
def platform() -> SimulatedPlatform:
    return SimulatedPlatform.create(seed=b"shortcuts", now=NOW, tee="sgx", ca="processor")


def _flip_signature(pem: str, index: int) -> str:
    """The chain with certificate ``index``'s signature altered (its TBS, and so its DER, stays valid)."""
    certs = x509.load_pem_x509_certificates(pem.encode())
    raw = bytearray(certs[index].public_bytes(Encoding.DER))
    raw[-3] ^= 0x01  # inside the INTEGER s of the ECDSA signature
    certs[index] = x509.load_der_x509_certificate(bytes(raw))
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def _alter_tbs(pem: str, index: int) -> str:
    """The chain with a byte of certificate ``index``'s serial number changed, signature bytes kept."""
    certs = x509.load_pem_x509_certificates(pem.encode())
    raw = bytearray(certs[index].public_bytes(Encoding.DER))
    serial = certs[index].serial_number.to_bytes(20, "big").lstrip(b"\0")
    at = bytes(raw).index(serial)
    raw[at + len(serial) - 1] ^= 0x01
    certs[index] = x509.load_der_x509_certificate(bytes(raw))
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def _verify(platform: SimulatedPlatform, collateral: dict[str, Any]) -> str:
    verifier = DcapVerifier(TrustAnchors.from_pem(platform.root_pem))
    quote = platform.sgx_quote(mrenclave=bytes(32), mrsigner=bytes(32), report_data=bytes(64))
    return verifier.verify(quote, load_collateral(collateral), NOW).tcb_status


def test_pck_ca_is_checked_again_when_its_copy_differs(platform: SimulatedPlatform) -> None:
    """The PCK CA verified in the quote's chain does not vouch for a differently signed copy in the PCK
    CRL issuer chain (the memo is keyed by TBS, signature and signer key)."""
    collateral = platform.collateral(now=NOW)
    assert _verify(platform, collateral) == "UpToDate"
    collateral["pck_crl_issuer_chain"] = _flip_signature(collateral["pck_crl_issuer_chain"], 0)
    with pytest.raises(EvidenceError) as info:
        _verify(platform, collateral)
    assert info.value.code == "collateral_chain_untrusted"


def test_tcb_signer_is_checked_in_each_chain(platform: SimulatedPlatform) -> None:
    collateral = platform.collateral(now=NOW)
    collateral["qe_identity_issuer_chain"] = _flip_signature(collateral["qe_identity_issuer_chain"], 0)
    with pytest.raises(EvidenceError) as info:
        _verify(platform, collateral)
    assert info.value.code == "collateral_chain_untrusted"


def test_a_root_that_is_not_the_pinned_certificate_must_be_self_signed(platform: SimulatedPlatform) -> None:
    """Trust is the root's key, but a root edition other than the pinned certificate is accepted only when
    the trusted key signed it (the collateral gate always checked that; the verifier now does too, so a
    chain cannot bring its own validity window for the root)."""
    collateral = platform.collateral(now=NOW)
    collateral["tcb_info_issuer_chain"] = _flip_signature(collateral["tcb_info_issuer_chain"], 1)
    with pytest.raises(EvidenceError) as info:
        _verify(platform, collateral)
    assert info.value.code == "collateral_chain_untrusted"
    # Trusted by key alone (no pinned certificate), the genuine root's self-signature is verified.
    verifier = DcapVerifier(TrustAnchors(TrustAnchors.from_pem(platform.root_pem).keys))
    quote = platform.sgx_quote(mrenclave=bytes(32), mrsigner=bytes(32), report_data=bytes(64))
    assert verifier.verify(quote, load_collateral(platform.collateral(now=NOW)), NOW).tcb_status == "UpToDate"


def test_same_signature_bytes_on_another_certificate_are_not_reused(platform: SimulatedPlatform) -> None:
    """Names and keys remembered within a pass are looked up by signature but confirmed by content."""
    collateral = platform.collateral(now=NOW)
    collateral["qe_identity_issuer_chain"] = _alter_tbs(collateral["qe_identity_issuer_chain"], 0)
    with pytest.raises(EvidenceError) as info:
        _verify(platform, collateral)
    assert info.value.code == "collateral_chain_untrusted"


def test_pck_ca_kind_is_an_exact_name_everywhere() -> None:
    """One place decides which PCK CA is which, by exact name: the verifier used to accept any CA whose
    name merely contained "Processor" or "Platform", while collateral matched exact names."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from affidavit.evidence import EvidenceError
    from affidavit.evidence.dcap.names import pck_ca_kind
    from affidavit.evidence.dcap.pki import ca_type

    assert pck_ca_kind("Intel SGX PCK Processor CA") == "processor"
    assert pck_ca_kind("Intel SGX PCK Platform CA") == "platform"
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def ca(cn: str) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .sign(key, hashes.SHA256()))

    assert ca_type(ca("Intel SGX PCK Platform CA")) == "platform"
    for cn in ("Evil Processor CA", "Intel SGX PCK Platform CA 2"):
        with pytest.raises(EvidenceError) as err:
            ca_type(ca(cn))
        assert err.value.code == "pck_chain_malformed"
