"""A test Intel SGX PKI: root CA, PCK Processor/Platform CAs, TCB signing certificate, PCK certificates, CRLs.

Names and extensions follow Intel's certificates (sgx-dcap.md §1) so that a verifier exercises the same
code paths; the organisation name says it is simulated, and nothing chains to Intel's real root, so a
verifier accepts this PKI only when its root key is configured as a trust anchor.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from affidavit.evidence.dcap.names import PCK_CA_NAMES
from affidavit.simulate.keys import derive_key, derive_serial
from affidavit.simulate.pck_extension import SGX_EXTENSION_OID, PckExtension

CaKind = Literal["processor", "platform"]
Seed = bytes | str | int | None

ORGANIZATION = "Affidavit Simulated Intel PKI (not Intel)"
ROOT_CN = "Intel SGX Root CA"
PCK_CA_CN: dict[str, str] = dict(PCK_CA_NAMES)  # kind -> the CA's common name
TCB_SIGNING_CN = "Intel SGX TCB Signing"
PCK_CN = "Intel SGX PCK Certificate"
_CRL_BASE = "https://simulated-pcs.invalid/sgx/certification/v4"

YEAR = dt.timedelta(days=365)


def normalize_seed(seed: Seed) -> bytes:
    """Any seed form to bytes; ``None`` draws a fresh random seed."""
    if seed is None:
        return os.urandom(32)
    if isinstance(seed, int):
        return seed.to_bytes((seed.bit_length() + 8) // 8, "big", signed=True)
    return seed.encode() if isinstance(seed, str) else bytes(seed)


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def to_utc_seconds(now: dt.datetime) -> dt.datetime:
    """X.509 and PCS timestamps have whole seconds; naive datetimes are taken as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    """A key and the certificate for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def serial(self) -> int:
        return self.cert.serial_number


@dataclass
class _CertSpec:
    subject: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    ca_path_length: int | None  # None: end entity
    crl_url: str
    extra: list[x509.ExtensionType] = field(default_factory=list)


def _build(spec: _CertSpec, key: ec.EllipticCurvePrivateKey, issuer: Issued | None) -> x509.Certificate:
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else name(spec.subject)
    is_ca = spec.ca_path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(spec.subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(spec.crl_url)], None, None, None)]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=not is_ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=spec.ca_path_length), critical=True)
    )
    for ext in spec.extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signer_key, hashes.SHA256(), ecdsa_deterministic=True)


class SimulatedPki:
    """Root CA, both PCK CAs and the TCB signing certificate, all derived from one seed."""

    def __init__(self, seed: bytes, now: dt.datetime) -> None:
        self.seed = seed
        self.created = to_utc_seconds(now)
        start = self.created - YEAR
        root_crl_url = f"{_CRL_BASE}/rootcacrl"
        root_key = derive_key(seed, "root")
        root_spec = _CertSpec(ROOT_CN, derive_serial(seed, "root"), start, start + 30 * YEAR, 1, root_crl_url)
        self.root = Issued(root_key, _build(root_spec, root_key, None))
        self.pck_cas: dict[str, Issued] = {}
        for kind, common_name in PCK_CA_CN.items():
            key = derive_key(seed, f"pck-ca-{kind}")
            spec = _CertSpec(
                common_name, derive_serial(seed, f"pck-ca-{kind}"), start, start + 15 * YEAR, 0, root_crl_url
            )
            self.pck_cas[kind] = Issued(key, _build(spec, key, self.root))
        tcb_key = derive_key(seed, "tcb-signing")
        tcb_spec = _CertSpec(
            TCB_SIGNING_CN, derive_serial(seed, "tcb-signing"), start, start + 8 * YEAR, None, root_crl_url
        )
        self.tcb_signing = Issued(tcb_key, _build(tcb_spec, tcb_key, self.root))

    @classmethod
    def create(cls, *, seed: Seed = None, now: dt.datetime | None = None) -> SimulatedPki:
        """A PKI whose certificates are valid from a year before ``now`` (default: the wall clock)."""
        return cls(normalize_seed(seed), now or dt.datetime.now(dt.UTC))

    @property
    def root_pem(self) -> bytes:
        return self.root.pem

    @property
    def root_der(self) -> bytes:
        return self.root.cert.public_bytes(serialization.Encoding.DER)

    def pck_ca(self, ca: CaKind) -> Issued:
        if ca not in self.pck_cas:
            raise ValueError(f"ca must be 'processor' or 'platform', not {ca!r}")
        return self.pck_cas[ca]

    def issue_pck(self, ca: CaKind, extension: PckExtension, label: str, now: dt.datetime) -> Issued:
        """A PCK certificate (7 years, like Intel's) for the key derived from ``label``."""
        start = to_utc_seconds(now) - dt.timedelta(days=30)
        key = derive_key(self.seed, f"pck:{label}")
        spec = _CertSpec(
            PCK_CN,
            derive_serial(self.seed, f"pck:{label}"),
            start,
            start + 7 * YEAR,
            None,
            f"{_CRL_BASE}/pckcrl?ca={ca}&encoding=der",
            [x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), extension.to_der())],
        )
        return Issued(key, _build(spec, key, self.pck_ca(ca)))

    def root_crl(
        self, this_update: dt.datetime, next_update: dt.datetime, revoked: Iterable[int] = ()
    ) -> bytes:
        """The Root CA CRL (DER); ``revoked`` may list the PCK CAs' or the TCB signing cert's serials."""
        return _crl(self.root, this_update, next_update, revoked)

    def pck_crl(
        self, ca: CaKind, this_update: dt.datetime, next_update: dt.datetime, revoked: Iterable[int] = ()
    ) -> bytes:
        """The PCK CRL of one PCK CA (DER), listing revoked PCK certificate serials."""
        return _crl(self.pck_ca(ca), this_update, next_update, revoked)


def _crl(issuer: Issued, this_update: dt.datetime, next_update: dt.datetime, revoked: Iterable[int]) -> bytes:
    this_update, next_update = to_utc_seconds(this_update), to_utc_seconds(next_update)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    for serial in sorted(set(revoked)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this_update).build()
        )
    crl = builder.sign(issuer.key, hashes.SHA256(), ecdsa_deterministic=True)
    return crl.public_bytes(serialization.Encoding.DER)
