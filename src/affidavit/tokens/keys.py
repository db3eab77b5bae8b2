"""Token signing keys: a key with a self-signed certificate (for ``x5c``), and the published key ring.

A key signs RS256 (RSA, the default: the Azure SDK 1.0.0 verifies nothing else) or ES256 (ECDSA P-256, for
relying parties that do not use the SDK: about ten times cheaper to sign). The private key is either held
in memory (:class:`SoftwareSigner`, kept encrypted in the database) or never leaves a PKCS#11 token
(``affidavit.store.pkcs11``); both sit behind :class:`KeySigner`. A key this process cannot sign with
(another server's HSM key, a key that is only published) has ``signer`` None.

The ``kid`` is base64url (unpadded) of SHA-256 over the certificate's DER. It is stable for a key's whole
life, derivable by anyone holding the certificate, and unique per key because each certificate carries a
random serial. MAA's own derivation is opaque (maa-api §12.1); the SDK only compares ``kid`` as a string.

Key states (publish before use): *next* keys are already in ``/certs`` but sign nothing until their
``current_at``; the *current* key signs; *retired* keys stay published until every token they signed has
expired (``retired_at + max_token_lifetime``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

from affidavit.jose import signature_ok
from affidavit.tokens.b64 import b64std_encode, b64url_encode
from affidavit.tokens.errors import TokenError

Algorithm = Literal["RS256", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256")
DEFAULT_ALGORITHM: Algorithm = "RS256"
ALLOWED_BITS = (2048, 3072, 4096)
# Certificates are back-dated so a verifier whose clock lags ours still finds them valid.
CERT_BACKDATE = timedelta(days=1)
CERT_VALIDITY = timedelta(days=365 * 30)
# Attestation tokens live 8 hours (maa-api §6.2): a retired key must stay published at least that long.
DEFAULT_MAX_TOKEN_LIFETIME = timedelta(hours=8)
_CN_MAX = 64  # X.520 upper bound for commonName
_P256_BYTES = 32

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def kid_for(cert_der: bytes) -> str:
    return b64url_encode(hashlib.sha256(cert_der).digest())


def algorithm_of(public: object) -> Algorithm:
    """The JWS algorithm a public key signs with; anything but RSA or EC P-256 is refused."""
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size not in ALLOWED_BITS:
            raise TokenError(f"RSA key size must be one of {ALLOWED_BITS}, not {public.key_size}",
                             code="bad_key")
        return "RS256"
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ES256"
    raise TokenError("signing keys must be RSA (RS256) or EC P-256 (ES256)", code="bad_key")


class KeySigner(Protocol):
    """Makes JWS signatures (RS256: PKCS#1 v1.5 bytes; ES256: raw ``r || s``) with a private key that may
    live anywhere; ``location`` says where (``database`` or a PKCS#11 URI)."""

    @property
    def location(self) -> str: ...

    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class SoftwareSigner:
    """A private key in this process's memory (at rest it is encrypted, see ``affidavit.store``)."""

    private_key: PrivateKey
    location: str = "database"

    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, _PKCS1, _SHA256)
        return ecdsa_raw(self.private_key.sign(data, _ECDSA_SHA256))


_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)


def ecdsa_raw(der_signature: bytes) -> bytes:
    """A DER ECDSA-Sig-Value as JWS writes it (RFC 7518 §3.4: ``r || s``, 32 bytes each for P-256)."""
    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def _certificate_builder(issuer: str, public: PublicKey, now: datetime) -> x509.CertificateBuilder:
    """The self-signed certificate of a token-signing key: names the issuer (CN, and a URI SAN)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[:_CN_MAX])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    try:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(issuer)]), critical=False
        )
    except ValueError:  # not a URI cryptography accepts; the CN still names it
        pass
    return builder


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def external_certificate(issuer: str, signer: KeySigner, *, now: datetime) -> x509.Certificate:
    """The key's self-signed certificate, its TBS signed by ``signer`` (for keys that never leave an HSM).

    ``cryptography`` signs certificates only with keys it holds, so the TBS is built with the signer's
    public key and signed once with a throwaway key of the same family (which fixes the signature
    algorithm in the TBS); the throwaway signature is then replaced by the signer's own and the result
    checked against the certificate's public key.
    """
    public = signer.public_key()
    alg = algorithm_of(public)
    throwaway: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024) if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    draft = _certificate_builder(issuer, public, _utc(now)).sign(throwaway, hashes.SHA256())
    tbs = draft.tbs_certificate_bytes
    outer = draft.public_bytes(serialization.Encoding.DER)
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    header = 2 + (outer[1] & 0x7F if outer[1] & 0x80 else 0)
    start = header + len(tbs)
    if outer[header:start] != tbs or outer[start] != 0x30 or outer[start + 1] & 0x80:
        raise TokenError("unexpected certificate encoding", code="bad_key")
    algorithm_id = outer[start:start + 2 + outer[start + 1]]
    signature = signer.sign(tbs)
    if alg == "ES256":
        if len(signature) != 2 * _P256_BYTES:
            raise TokenError("the token returned a malformed ECDSA signature", code="bad_key")
        signature = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                         int.from_bytes(signature[32:], "big"))
    der = _der(0x30, tbs + algorithm_id + _der(0x03, b"\x00" + signature))
    cert = x509.load_der_x509_certificate(der)
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise TokenError(f"the key's signature over its certificate does not verify: {exc!r}",
                         code="bad_key") from None
    return cert


@dataclass(frozen=True, eq=False)
class SigningKey:
    """A token-signing key; equality is by ``kid``. ``signer`` None: published only, this process cannot
    sign with it."""

    kid: str
    certificate: x509.Certificate
    created_at: datetime
    signer: KeySigner | None = None

    @classmethod
    def generate(
        cls, issuer: str, bits: int = 2048, *, now: datetime, algorithm: Algorithm = DEFAULT_ALGORITHM
    ) -> SigningKey:
        """A fresh software key (RSA of ``bits`` for RS256, P-256 for ES256) and its certificate."""
        if algorithm not in ALGORITHMS:
            raise TokenError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}", code="bad_key")
        if algorithm == "RS256" and bits not in ALLOWED_BITS:
            raise TokenError(f"RSA key size must be one of {ALLOWED_BITS}, not {bits}", code="bad_key")
        if not issuer:
            raise TokenError("issuer must not be empty", code="bad_key")
        now = _utc(now)
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=bits) if algorithm == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        cert = _certificate_builder(issuer, key.public_key(), now).sign(key, hashes.SHA256())
        return cls.from_certificate(cert, SoftwareSigner(key), created_at=now)

    @classmethod
    def for_signer(cls, issuer: str, signer: KeySigner, *, now: datetime) -> SigningKey:
        """A key whose private half stays with ``signer`` (an HSM): the signer signs its certificate."""
        if not issuer:
            raise TokenError("issuer must not be empty", code="bad_key")
        return cls.from_certificate(external_certificate(issuer, signer, now=now), signer, created_at=now)

    @classmethod
    def from_certificate(
        cls,
        cert: x509.Certificate | bytes,
        signer: KeySigner | None = None,
        *,
        created_at: datetime | None = None,
    ) -> SigningKey:
        """The key of ``cert`` (DER or parsed); a ``signer`` must hold that certificate's key (a test
        signature, checked against the certificate, proves it for a few milliseconds)."""
        if isinstance(cert, bytes):
            try:
                cert = x509.load_der_x509_certificate(cert)
            except ValueError as exc:
                raise TokenError(f"signing key certificate is unreadable: {exc}", code="bad_key") from None
        try:
            public = cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise TokenError(f"signing key certificate has an unreadable key: {exc}",
                code="bad_key") from None
        alg = algorithm_of(public)
        key = cls(kid_for(cert.public_bytes(serialization.Encoding.DER)), cert,
                  _utc(created_at if created_at is not None else cert.not_valid_before_utc + CERT_BACKDATE),
                  signer)
        if signer is not None:
            probe = b"affidavit signing key self-test"
            if not signature_ok(alg, public, probe, signer.sign(probe)):
                raise TokenError("signing key and certificate do not match", code="bad_key")
        return key

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 private key PEM followed by the certificate PEM (export of a software key;
        the store never writes this form)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ) + self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_pem(cls, data: bytes, *, created_at: datetime | None = None) -> SigningKey:
        """Read :meth:`to_pem` output (also databases written before keys were encrypted)."""
        try:
            # OpenSSL's RSA key check costs ~0.5 s for 3072 bits; from_certificate's test signature
            # catches a broken or mismatched key for a few milliseconds.
            key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
            cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE-----"):])
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise TokenError(f"signing key PEM is unreadable: {exc}", code="bad_key") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise TokenError("signing key must be RSA or EC P-256", code="bad_key")
        return cls.from_certificate(cert, SoftwareSigner(key), created_at=created_at)

    @property
    def private_key(self) -> PrivateKey:
        """The in-memory private key; a :class:`TokenError` for keys that live in an HSM."""
        if not isinstance(self.signer, SoftwareSigner):
            raise TokenError(f"key {self.kid} has no private key in this process", code="no_private_key")
        return self.signer.private_key

    @property
    def location(self) -> str:
        return self.signer.location if self.signer is not None else "unknown"

    @cached_property
    def public_key(self) -> PublicKey:
        public = self.certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)  # from_certificate checked
        return public

    @cached_property
    def algorithm(self) -> Algorithm:
        return algorithm_of(self.public_key)

    @cached_property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @cached_property
    def jwk(self) -> dict[str, object]:
        """The public JWK as ``/certs`` lists it (``x5c`` is what the SDK uses; the rest serves PyJWT)."""
        public = self.public_key
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            material: dict[str, object] = {
                "e": b64url_encode(_uint(numbers.e)), "kty": "RSA", "n": b64url_encode(_uint(numbers.n)),
            }
        else:
            point = public.public_numbers()
            material = {
                "crv": "P-256", "kty": "EC",
                "x": b64url_encode(point.x.to_bytes(_P256_BYTES, "big")),
                "y": b64url_encode(point.y.to_bytes(_P256_BYTES, "big")),
            }
        return {"alg": self.algorithm, **material, "kid": self.kid, "use": "sig",
                "x5c": [b64std_encode(self.certificate_der)]}

    @property
    def bits(self) -> int:
        return self.public_key.key_size

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of ``data`` (:attr:`algorithm`)."""
        if self.signer is None:
            raise TokenError(f"key {self.kid} is only published here; it cannot sign", code="no_private_key")
        return self.signer.sign(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningKey) and other.kid == self.kid

    def __hash__(self) -> int:
        return hash(self.kid)


@dataclass(frozen=True)
class RetiredKey:
    key: SigningKey
    retired_at: datetime


@dataclass(frozen=True)
class NextKey:
    """A key published ahead of use: it becomes current at ``current_at``."""

    key: SigningKey
    current_at: datetime


@dataclass(frozen=True)
class KeyRing:
    """The current signing key, the next keys already published, and the retired keys still published.

    A retired key may have signed a token a moment before retirement, so it stays in ``/certs`` until
    ``retired_at + max_token_lifetime``; after that no token it signed can still be valid and it is dropped.
    A ring is a view at one moment: :attr:`valid_until` is when a next key takes over (reload by then).
    """

    current: SigningKey
    retired: tuple[RetiredKey, ...] = ()
    max_token_lifetime: timedelta = field(default=DEFAULT_MAX_TOKEN_LIFETIME)
    next: tuple[NextKey, ...] = ()

    @property
    def valid_until(self) -> datetime | None:
        return min((n.current_at for n in self.next), default=None)

    def published(self, now: datetime) -> list[SigningKey]:
        """Keys for ``/certs`` at ``now``: the current one first, then next keys, then retired ones (newest
        first)."""
        live = [r for r in self.retired if not self._expired(r, now)]
        live.sort(key=lambda r: r.retired_at, reverse=True)
        return [self.current] + [n.key for n in self.next] + [r.key for r in live]

    def rotate(self, new: SigningKey, *, now: datetime) -> KeyRing:
        """``new`` becomes current; the old current key retires at ``now``; expired keys drop out."""
        if self.find(new.kid) is not None:
            raise TokenError(f"key {new.kid} is already in the ring", code="bad_key")
        retired = (RetiredKey(self.current, _utc(now)),) + self.retired
        return KeyRing(new, retired, self.max_token_lifetime, self.next).prune(now)

    def prune(self, now: datetime) -> KeyRing:
        kept = tuple(r for r in self.retired if not self._expired(r, now))
        return KeyRing(self.current, kept, self.max_token_lifetime, self.next)

    def find(self, kid: str) -> SigningKey | None:
        if self.current.kid == kid:
            return self.current
        keys = [n.key for n in self.next] + [r.key for r in self.retired]
        return next((k for k in keys if k.kid == kid), None)

    def _expired(self, r: RetiredKey, now: datetime) -> bool:
        return _utc(now) >= r.retired_at + self.max_token_lifetime


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return when.astimezone(UTC)


