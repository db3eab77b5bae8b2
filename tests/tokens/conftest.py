"""Keys and certificates shared by the token tests (generated once: RSA generation is the slow part)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from affidavit.tokens import SigningKey

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://affidavit.test:8443"


@dataclass(frozen=True)
class Pki:
    """A policy-management CA, a signer it issued, a self-signed signer, and an expired signer."""

    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    leaf_key: rsa.RSAPrivateKey
    leaf: x509.Certificate
    self_key: rsa.RSAPrivateKey
    self_cert: x509.Certificate
    expired: x509.Certificate
    ec_key: ec.EllipticCurvePrivateKey
    ec_cert: x509.Certificate


def make_cert(
    subject: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    issuer: str | None = None,
    issuer_key: rsa.RSAPrivateKey | None = None,
    ca: bool = False,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    iname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(iname)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate(ISSUER, now=NOW)


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return SigningKey.generate(ISSUER, now=NOW + timedelta(hours=1))


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    self_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert("Policy CA", ca_key, ca=True)
    leaf = make_cert("Policy signer", leaf_key, issuer="Policy CA", issuer_key=ca_key)
    return Pki(
        ca_key=ca_key,
        ca=ca,
        leaf_key=leaf_key,
        leaf=leaf,
        self_key=self_key,
        self_cert=make_cert("Self signer", self_key),
        expired=make_cert(
            "Old signer", self_key, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1)
        ),
        ec_key=ec_key,
        ec_cert=make_cert("EC signer", ec_key),
    )
