"""Token signing keys: an RSA key with a self-signed certificate (for ``x5c``), and the published key ring.

The ``kid`` is base64url (unpadded) of SHA-256 over the certificate's DER. It is stable for a key's whole
life, derivable by anyone holding the certificate, and unique per key because each certificate carries a
random serial. MAA's own derivation is opaque (maa-api §12.1); the SDK only compares ``kid`` as a string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from affidavit.tokens.b64 import b64std_encode, b64url_encode
from affidavit.tokens.errors import TokenError

ALLOWED_BITS = (2048, 3072, 4096)
# Certificates are back-dated so a verifier whose clock lags ours still finds them valid.
CERT_BACKDATE = timedelta(days=1)
CERT_VALIDITY = timedelta(days=365 * 30)
# Attestation tokens live 8 hours (maa-api §6.2): a retired key must stay published at least that long.
DEFAULT_MAX_TOKEN_LIFETIME = timedelta(hours=8)
_CN_MAX = 64  # X.520 upper bound for commonName


def kid_for(cert_der: bytes) -> str:
    return b64url_encode(hashlib.sha256(cert_der).digest())


@dataclass(frozen=True, eq=False)
class SigningKey:
    """An RSA token-signing key; equality is by ``kid``."""

    kid: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    created_at: datetime

    @classmethod
    def generate(cls, issuer: str, bits: int = 2048, *, now: datetime) -> SigningKey:
        """A fresh key whose self-signed certificate names the issuer (CN, and a URI SAN)."""
        if bits not in ALLOWED_BITS:
            raise TokenError(f"RSA key size must be one of {ALLOWED_BITS}, not {bits}", code="bad_key")
        if not issuer:
            raise TokenError("issuer must not be empty", code="bad_key")
        now = _utc(now)
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[:_CN_MAX])])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CERT_BACKDATE)
            .not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        try:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(issuer)]), critical=False
            )
        except ValueError:  # not a URI cryptography accepts; the CN still names it
            pass
        cert = builder.sign(key, hashes.SHA256())
        return cls(kid_for(cert.public_bytes(serialization.Encoding.DER)), key, cert, now)

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 private key PEM followed by the certificate PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ) + self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_pem(cls, data: bytes, *, created_at: datetime | None = None) -> SigningKey:
        """Read :meth:`to_pem` output. Without ``created_at`` the certificate's start (plus the backdating)
        stands in for it."""
        try:
            # OpenSSL's RSA key check costs ~0.5 s for 3072 bits; a test signature checked against the
            # certificate's public key (below) catches a broken or mismatched key for a few milliseconds.
            key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
            cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE-----"):])
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise TokenError(f"signing key PEM is unreadable: {exc}", code="bad_key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TokenError("signing key must be RSA", code="bad_key")
        public = cert.public_key()
        mine = key.public_key().public_numbers()
        if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != mine:
            raise TokenError("signing key and certificate do not match", code="bad_key")
        probe = b"affidavit signing key self-test"
        try:
            public.verify(key.sign(probe, padding.PKCS1v15(), hashes.SHA256()), probe, padding.PKCS1v15(),
                          hashes.SHA256())
        except (InvalidSignature, ValueError) as exc:
            raise TokenError(f"signing key fails its self-test: {exc!r}", code="bad_key") from None
        when = created_at if created_at is not None else cert.not_valid_before_utc + CERT_BACKDATE
        return cls(kid_for(cert.public_bytes(serialization.Encoding.DER)), key, cert, _utc(when))

    @cached_property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @cached_property
    def jwk(self) -> dict[str, object]:
        """The public JWK as ``/certs`` lists it (``x5c`` is what the SDK uses; ``n``/``e`` serve PyJWT)."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "alg": "RS256",
            "e": b64url_encode(_uint(numbers.e)),
            "kid": self.kid,
            "kty": "RSA",
            "n": b64url_encode(_uint(numbers.n)),
            "use": "sig",
            "x5c": [b64std_encode(self.certificate_der)],
        }

    @property
    def bits(self) -> int:
        return self.private_key.key_size

    def sign(self, data: bytes) -> bytes:
        """RS256: RSASSA-PKCS1-v1_5 with SHA-256."""
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningKey) and other.kid == self.kid

    def __hash__(self) -> int:
        return hash(self.kid)


@dataclass(frozen=True)
class RetiredKey:
    key: SigningKey
    retired_at: datetime


@dataclass(frozen=True)
class KeyRing:
    """The current signing key and the retired keys still published.

    A retired key may have signed a token a moment before retirement, so it stays in ``/certs`` until
    ``retired_at + max_token_lifetime``; after that no token it signed can still be valid and it is dropped.
    """

    current: SigningKey
    retired: tuple[RetiredKey, ...] = ()
    max_token_lifetime: timedelta = field(default=DEFAULT_MAX_TOKEN_LIFETIME)

    def published(self, now: datetime) -> list[SigningKey]:
        """Keys for ``/certs`` at ``now``: the current one first, then retired ones, newest first."""
        live = [r for r in self.retired if not self._expired(r, now)]
        live.sort(key=lambda r: r.retired_at, reverse=True)
        return [self.current] + [r.key for r in live]

    def rotate(self, new: SigningKey, *, now: datetime) -> KeyRing:
        """``new`` becomes current; the old current key retires at ``now``; expired keys drop out."""
        if new == self.current or any(r.key == new for r in self.retired):
            raise TokenError(f"key {new.kid} is already in the ring", code="bad_key")
        retired = (RetiredKey(self.current, _utc(now)),) + self.retired
        return KeyRing(new, retired, self.max_token_lifetime).prune(now)

    def prune(self, now: datetime) -> KeyRing:
        kept = tuple(r for r in self.retired if not self._expired(r, now))
        return KeyRing(self.current, kept, self.max_token_lifetime)

    def find(self, kid: str) -> SigningKey | None:
        if self.current.kid == kid:
            return self.current
        return next((r.key for r in self.retired if r.key.kid == kid), None)

    def _expired(self, r: RetiredKey, now: datetime) -> bool:
        return _utc(now) >= r.retired_at + self.max_token_lifetime


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return when.astimezone(UTC)
