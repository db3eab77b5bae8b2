"""Issue 10 point 6: every certificate loaded from untrusted input fails as its layer's typed error.

``cryptography.x509.InvalidVersion`` is not a ``ValueError``; before ``affidavit.x509load`` a PCK chain in a
quote, a TPM ``aik_cert``, a management ``x5c`` and a JWKS ``x5c`` with a bad version byte each escaped
as that exception (a 500 in the service). Each place is also fuzzed with mutated and random bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit import x509load
from affidavit.errors import AffidavitError
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import parse_quote, platform_of
from affidavit.evidence.dcap.pki import load_pck_chain
from affidavit.evidence.tpm import TpmEvidence, TpmTrust, verify_tpm
from affidavit.evidence.tpm.aik import load_certificate as load_ak_certificate
from affidavit.jose import b64url
from affidavit.relying_party import keys_from_jwks
from affidavit.service import ServiceConfig, create_app
from affidavit.tokens import TokenError, parse_jws, verify_jws
from tests.service.helpers import ADMIN_TOKEN, AsgiClient, make_signer

SIGNER = make_signer("x509load test")
GOOD_DER = SIGNER.cert.public_bytes(Encoding.DER)
_V3 = bytes.fromhex("a003020102")


def bad_version(der: bytes, version: int = 7) -> bytes:
    """``der`` with its version field set to an X.509 version that does not exist."""
    at = der.index(_V3)
    return der[:at] + bytes.fromhex(f"a00302010{version}") + der[at + len(_V3):]


def test_bad_version_is_not_a_value_error_in_cryptography() -> None:
    with pytest.raises(x509.InvalidVersion) as info:
        x509.load_der_x509_certificate(bad_version(GOOD_DER))
    assert not isinstance(info.value, ValueError)  # why one helper is needed


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()


class _Err(AffidavitError):
    code = "test_bad_cert"


def test_helper_maps_every_failure() -> None:
    for data in (bad_version(GOOD_DER), b"", b"\x30\x03\x02\x01\x00", GOOD_DER[:-1]):
        with pytest.raises(_Err):
            x509load.load_der_certificate(data, _Err)
        with pytest.raises(_Err):
            x509load.load_certificates(_pem(data), _Err)
    assert x509load.load_certificate(_pem(GOOD_DER), _Err).public_bytes(Encoding.DER) == GOOD_DER
    with pytest.raises(_Err, match="more than"):
        x509load.load_pem_certificates(_pem(GOOD_DER) * 4, _Err, limit=3)


mutated_der = st.builds(
    lambda at, value: GOOD_DER[:at % len(GOOD_DER)] + bytes([value]) + GOOD_DER[at % len(GOOD_DER) + 1:],
    st.integers(min_value=0), st.integers(0, 255),
)
cert_bytes = st.one_of(st.binary(max_size=200), mutated_der, st.just(bad_version(GOOD_DER)),
                       st.just(bad_version(GOOD_DER, 3)))


# -- the PCK chain inside a DCAP quote ---------------------------------------------------------------------

def _quote_with_chain(pem: bytes) -> bytes:
    from tests.evidence.dcap.test_bad_input import SGX, _replace_cert_data

    return _replace_cert_data(SGX.quote(), pem)


def _sgx_leaf_der() -> bytes:
    from tests.evidence.dcap.test_bad_input import SGX

    pem = parse_quote(SGX.quote()).pck_chain_pem
    return x509.load_pem_x509_certificates(pem)[0].public_bytes(Encoding.DER)


def test_pck_chain_with_a_bad_version_is_pck_chain_malformed() -> None:
    from tests.evidence.dcap.test_bad_input import SGX

    chain = x509.load_pem_x509_certificates(parse_quote(SGX.quote()).pck_chain_pem)
    rest = b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:])
    quote = _quote_with_chain(_pem(bad_version(_sgx_leaf_der())) + rest)
    with pytest.raises(EvidenceError) as info:
        platform_of(quote)
    assert info.value.code == "pck_chain_malformed"


@given(cert_bytes)
def test_pck_chain_fuzz(der: bytes) -> None:
    try:
        load_pck_chain(_pem(der) * 3)
    except EvidenceError as exc:
        assert exc.code == "pck_chain_malformed"


# -- the TPM aik_cert ----------------------------------------------------------------------------------

def _tpm(cert: bytes) -> TpmEvidence:
    return TpmEvidence(quote=b"\xff\x54\x43\x47", signature=b"", pcrs={}, ak_public=None, ak_certificate=cert)


def test_tpm_aik_cert_with_a_bad_version_is_a_tpm_error() -> None:
    with pytest.raises(EvidenceError) as info:
        verify_tpm(_tpm(bad_version(GOOD_DER)), b"n", TpmTrust(), datetime.now(UTC))
    assert info.value.code == "tpm_aik_untrusted"
    with pytest.raises(EvidenceError):
        load_ak_certificate(_pem(bad_version(GOOD_DER)))


@given(cert_bytes)
def test_tpm_aik_cert_fuzz(der: bytes) -> None:
    try:
        verify_tpm(_tpm(der), b"n", TpmTrust(), datetime.now(UTC))
    except EvidenceError:
        pass


# -- management x5c (policy and certificate JWS) -------------------------------------------------------

def _jws_with_x5c(der: bytes, sdk_form: bool = True) -> str:
    x5c = [base64.b64encode(der).decode()]
    header = {"alg": "RSA256", "jwk": {"x5c": x5c}} if sdk_form else {"alg": "RS256", "x5c": x5c}
    body = {"AttestationPolicy": b64url(b"version=1.0; authorizationrules{=> permit();};")}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}.{b64url(b'sig')}"


def test_management_x5c_with_a_bad_version_is_bad_certificate() -> None:
    for sdk_form in (True, False):
        with pytest.raises(TokenError) as info:
            verify_jws(parse_jws(_jws_with_x5c(bad_version(GOOD_DER), sdk_form)), now=datetime.now(UTC))
        assert info.value.code == "bad_certificate"


@given(cert_bytes)
def test_management_x5c_fuzz(der: bytes) -> None:
    try:
        verify_jws(parse_jws(_jws_with_x5c(der)), now=datetime.now(UTC))
    except TokenError:
        pass


def test_service_answers_400_for_a_bad_version_signer(tmp_path: Path) -> None:
    client = AsgiClient(create_app(ServiceConfig(data_dir=tmp_path, admin_token=ADMIN_TOKEN)))
    try:
        r = client.request("PUT", "/policies/SgxEnclave?api-version=2022-08-01",
                           content=_jws_with_x5c(bad_version(GOOD_DER)),
                           headers={"Content-Type": "text/plain", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    finally:
        client.close()
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter"


# -- a relying party's JWKS x5c ------------------------------------------------------------------------

def test_jwks_x5c_with_a_bad_version_is_skipped_or_typed() -> None:
    entry = {"kid": "k", "kty": "RSA", "x5c": [base64.b64encode(bad_version(GOOD_DER)).decode()]}
    from affidavit.jose import JoseError, public_key_from_jwk  # what keys_from_jwks reads each key with

    with pytest.raises(JoseError):
        public_key_from_jwk(entry, "JWKS key", use_x5c=True)
    assert keys_from_jwks({"keys": [entry]}) == {}  # an unusable key is not trusted


@given(cert_bytes)
def test_jwks_x5c_fuzz(der: bytes) -> None:
    keys_from_jwks({"keys": [{"kid": "k", "x5c": [base64.b64encode(der).decode()]}]})


# -- collateral issuer chains (from PCS responses) -----------------------------------------------------

@given(cert_bytes)
def test_collateral_chain_fuzz(der: bytes) -> None:
    from affidavit.collateral import CollateralError
    from affidavit.collateral.pcs import issuer_chain

    try:
        issuer_chain({"SGX-TCB-Info-Issuer-Chain": _pem(der).decode()}, ("SGX-TCB-Info-Issuer-Chain",))
    except CollateralError:
        pass




@pytest.fixture(scope="module")
def tpm_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiClient]:
    client = AsgiClient(create_app(ServiceConfig(data_dir=tmp_path_factory.mktemp("x509-tpm"),
                                                 admin_token=ADMIN_TOKEN)))
    yield client
    client.close()


_REQUEST_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _tpm_post(client: AsgiClient, message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    inner = json.dumps({"payload": message}).encode()
    r = client.post("/attest/Tpm?api-version=2022-08-01", json={"data": b64url(inner)})
    body = r.json()
    if r.status_code != 200:
        return r.status_code, body
    return 200, json.loads(base64.urlsafe_b64decode(body["data"] + "=" * (-len(body["data"]) % 4)))["payload"]


def _aik_cert_status(client: AsgiClient, cert: bytes) -> tuple[int, dict[str, Any]]:
    from affidavit.client.tpm import rsa_jwk, sign_request

    _, init = _tpm_post(client, {"type": "aikcert"})
    evidence = {"aik_cert": b64url(cert), "quote": b64url(b"\xffTCG\x80\x18"), "signature": b64url(b"\x00"),
                "pcrs": [{"algorithm": 11, "values": []}]}
    att_data = {"service_context": init["service_context"],
                "request_key": {"jwk": rsa_jwk(_REQUEST_KEY.public_key())},
                "tpm_att_data": {"current_attestation": evidence}}
    jws = sign_request({"att_type": "basic", "att_data": att_data}, _REQUEST_KEY)
    return _tpm_post(client, {"request": jws})


def test_service_answers_400_for_a_bad_version_aik_cert(tpm_client: AsgiClient) -> None:
    status, body = _aik_cert_status(tpm_client, bad_version(GOOD_DER))
    assert status == 400 and body["error"]["code"] == "InvalidParameter"
    assert "AK certificate" in body["error"]["message"]


@settings(max_examples=40)
@given(cert_bytes)
def test_service_tpm_aik_cert_fuzz(tpm_client: AsgiClient, der: bytes) -> None:
    status, body = _aik_cert_status(tpm_client, der)
    assert status == 400 and set(body["error"]) == {"code", "message"}


# -- PEM with each certificate's DER (the PCK chain) ---------------------------------------------------


def _with_der(data: bytes) -> list[bytes] | str:
    try:
        return [der for _, der in x509load.load_pem_certificates_der(data, ValueError, touch=False)]
    except ValueError:
        return "refused"


def _by_cryptography(data: bytes) -> list[bytes] | str:
    try:
        certs = x509load.load_pem_certificates(data, ValueError, touch=False)
    except ValueError:
        return "refused"
    return [c.public_bytes(Encoding.DER) for c in certs]


def test_pem_with_der_decides_as_cryptography_on_every_byte_change() -> None:
    """Canonical PEM is decoded without `cryptography`'s PEM reader; any byte change either keeps it
    canonical (and decodes to what that reader gives) or goes to that reader."""
    from tests.evidence.dcap.test_bad_input import SGX

    pem = parse_quote(SGX.quote()).pck_chain_pem
    assert x509load._canonical_pem_ders(pem) is not None  # Intel's chain takes the canonical path
    assert _with_der(pem) == _by_cryptography(pem)
    for i in range(len(pem)):
        for bit in (0x01, 0x20):
            changed = bytearray(pem)
            changed[i] ^= bit
            assert _with_der(bytes(changed)) == _by_cryptography(bytes(changed)), i


def test_pem_in_other_layouts_goes_to_cryptography() -> None:
    der = GOOD_DER
    text = base64.b64encode(der)

    def pem(width: int, newline: bytes = b"\n") -> bytes:
        lines = [text[i : i + width] for i in range(0, len(text), width)]
        body = b"".join(line + newline for line in lines)
        return b"-----BEGIN CERTIFICATE-----" + newline + body + b"-----END CERTIFICATE-----" + newline

    assert x509load._canonical_pem_ders(pem(64)) == [der]
    assert x509load._canonical_pem_ders(pem(64).rstrip(b"\n")) == [der]
    for other in (pem(76), pem(32), pem(64, b"\r\n"), pem(64).replace(b"\n-----END", b"\n\n-----END")):
        assert x509load._canonical_pem_ders(other) is None
        assert _with_der(other) == _by_cryptography(other)


def test_certificate_warnings_are_ignored_without_touching_the_global_filters(vectors: Path) -> None:
    """cryptography warns about VCEKs (serial number 0, sev-snp.md §3.1). The loaders used to silence it
    with ``warnings.catch_warnings()``, which swaps the process-wide filter list: threads verifying at once
    restored each other's copies, leaving the filters changed after the run or raising the warning as an
    error inside another thread's load (under ``-W error`` or a filter like it, a valid VCEK refused)."""
    import sys
    import threading
    import warnings

    from affidavit.evidence.snp.certs import cn
    from affidavit.evidence.snp.certs import load_certificate as load_vek

    der = (vectors / "snp" / "trustee-genoa-v3-e2e" / "vcek.der").read_bytes()
    long_name = _long_name_certificate()  # "Attribute's length must be <= 64" (a UserWarning)
    errors: list[BaseException] = []

    def load_many() -> None:
        try:
            for _ in range(300):
                cn(x509load.load_der_certificate(der, ValueError))
                load_vek(der)
                x509load.load_der_certificate(long_name, ValueError)
        except BaseException as exc:  # noqa: BLE001 -- collected for the assertion below
            errors.append(exc)

    interval = sys.getswitchinterval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what `-W error` installs, behind the package's own filter
        x509load.ignore_certificate_warnings()
        before = list(warnings.filters)
        sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
        try:
            threads = [threading.Thread(target=load_many) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)
        after = list(warnings.filters)
    assert errors == []
    assert after == before


def _long_name_certificate() -> bytes:
    """A self-signed certificate whose CN is longer than RFC 5280's 64 characters, as GCE's AK
    certificates have long name attributes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.warns(UserWarning, match="Attribute's length"):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x" * 80, _validate=False)])
    when = datetime(2026, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(when).not_valid_after(when).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)
