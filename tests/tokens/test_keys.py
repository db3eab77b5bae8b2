from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from affidavit.tokens import KeyRing, SigningKey, TokenError, jwks

from .conftest import ISSUER, NOW


def test_generated_key_certificate(signing_key: SigningKey) -> None:
    cert = signing_key.certificate
    assert signing_key.bits == 2048
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ISSUER
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ISSUER]
    assert cert.not_valid_before_utc <= NOW <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW > timedelta(days=365 * 20)
    cert.verify_directly_issued_by(cert)  # self-signed
    der = cert.public_bytes(Encoding.DER)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert signing_key.kid == expected


def test_long_issuer_still_gets_a_certificate() -> None:
    issuer = "https://" + "a" * 80 + ".example.com/attest"
    key = SigningKey.generate(issuer, now=NOW)
    san = key.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [issuer]


def test_pem_round_trip(signing_key: SigningKey) -> None:
    again = SigningKey.from_pem(signing_key.to_pem(), created_at=signing_key.created_at)
    assert again.kid == signing_key.kid
    assert again.created_at == signing_key.created_at
    assert again.jwk == signing_key.jwk
    # without created_at, the certificate's start (undoing the backdating) stands in for it
    assert abs(SigningKey.from_pem(signing_key.to_pem()).created_at - NOW) < timedelta(seconds=1)


def test_pem_with_foreign_certificate_is_rejected(signing_key: SigningKey, other_key: SigningKey) -> None:
    key_part = signing_key.to_pem().split(b"-----BEGIN CERTIFICATE-----")[0]
    cert_part = other_key.certificate.public_bytes(Encoding.PEM)
    with pytest.raises(TokenError) as err:
        SigningKey.from_pem(key_part + cert_part)
    assert err.value.code == "bad_key"
    with pytest.raises(TokenError):
        SigningKey.from_pem(b"not a pem")


def test_bad_sizes_rejected() -> None:
    with pytest.raises(TokenError):
        SigningKey.generate(ISSUER, bits=1024, now=NOW)


def test_jwks_entry(signing_key: SigningKey) -> None:
    (entry,) = jwks([signing_key])["keys"]
    assert entry["kid"] == signing_key.kid and entry["kty"] == "RSA" and entry["use"] == "sig"
    assert entry["alg"] == "RS256"
    assert base64.b64decode(entry["x5c"][0], validate=True) == signing_key.certificate_der
    n = int.from_bytes(base64.urlsafe_b64decode(entry["n"] + "=" * (-len(entry["n"]) % 4)), "big")
    assert n == signing_key.private_key.public_key().public_numbers().n


def test_rotation_keeps_old_key_published_then_drops_it(
    signing_key: SigningKey, other_key: SigningKey
) -> None:
    ring = KeyRing(signing_key, max_token_lifetime=timedelta(hours=8))
    assert ring.published(NOW) == [signing_key]
    rotated_at = NOW + timedelta(hours=1)
    ring = ring.rotate(other_key, now=rotated_at)
    assert ring.current == other_key
    assert [k.kid for k in ring.published(rotated_at)] == [other_key.kid, signing_key.kid]
    almost = rotated_at + timedelta(hours=8) - timedelta(seconds=1)
    assert [k.kid for k in ring.published(almost)] == [other_key.kid, signing_key.kid]
    assert ring.find(signing_key.kid) == signing_key
    gone = rotated_at + timedelta(hours=8)
    assert ring.published(gone) == [other_key]
    assert ring.prune(gone).retired == ()
    # rotating back to a key still in the ring is refused
    with pytest.raises(TokenError):
        ring.rotate(signing_key, now=almost)


def test_rotation_prunes_expired_keys(signing_key: SigningKey, other_key: SigningKey) -> None:
    third = SigningKey.generate(ISSUER, now=NOW)
    ring = KeyRing(signing_key).rotate(other_key, now=NOW)
    ring = ring.rotate(third, now=NOW + timedelta(hours=9))
    assert [r.key for r in ring.retired] == [other_key]
