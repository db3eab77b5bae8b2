"""Trust in the attestation key: an AK certificate chaining to configured CAs, or a registered AK key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from affidavit import x509load
from affidavit.bounded import BoundedDict
from affidavit.evidence.tpm.errors import TpmAkError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
MAX_CHAIN = 6


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certificate(data: bytes) -> x509.Certificate:
    """DER or PEM (the first certificate). Lenient on name lengths: the GCE AK certificate's issuer CN
    exceeds 64 characters. Any parse failure is a :class:`TpmAkError` (``affidavit.x509load``)."""
    return load_certificates(data, "the AK certificate")[0]


def load_certificates(data: bytes, what: str = "AK certificates") -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or a single DER certificate."""
    return x509load.load_certificates(data, TpmAkError, what)


@dataclass(frozen=True)
class TpmTrust:
    """What the operator trusts for TPM evidence: AK-issuing CAs and AK keys registered in advance."""

    aik_roots: tuple[x509.Certificate, ...] = ()
    aik_intermediates: tuple[x509.Certificate, ...] = ()
    registered_aks: frozenset[bytes] = field(default_factory=frozenset)  # SubjectPublicKeyInfo DER

    @classmethod
    def from_pem(
        cls,
        roots: bytes = b"",
        intermediates: bytes = b"",
        registered_aks: Iterable[PublicKey | bytes] = (),
    ) -> TpmTrust:
        """``registered_aks``: public keys, or PEM/DER SubjectPublicKeyInfo bytes."""
        keys: set[bytes] = set()
        for k in registered_aks:
            key: object = k
            if isinstance(k, bytes):
                key = (
                    serialization.load_pem_public_key(k)
                    if k.lstrip().startswith(b"-----BEGIN")
                    else serialization.load_der_public_key(k)
                )
            keys.add(spki_der(key))  # type: ignore[arg-type]
        return cls(
            tuple(load_certificates(roots)) if roots else (),
            tuple(load_certificates(intermediates)) if intermediates else (),
            frozenset(keys),
        )


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:  # over-long name attributes (GCE) warn: x509load silences it
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def verify_ak_certificate(
    cert: x509.Certificate,
    trust: TpmTrust,
    now: datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> tuple[datetime, datetime]:
    """Chain ``cert`` to one of ``trust.aik_roots`` (signatures, validity at ``now``, CA flags).

    Returns the window in which every certificate on the chain is valid (for caching the result).
    """
    if not trust.aik_roots:
        raise TpmAkError("no AK certificate authorities are configured")
    if not _valid_at(cert, now):
        raise TpmAkError(f"the AK certificate is not valid at {now.isoformat()}")
    roots = {spki_der(r.public_key()) for r in trust.aik_roots}  # type: ignore[arg-type]
    pool = list(intermediates) + list(trust.aik_intermediates) + list(trust.aik_roots)
    current = cert
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    for _ in range(MAX_CHAIN):
        for issuer in pool:
            if issuer is current or not _issued_by(current, issuer):
                continue
            if not _is_ca(issuer) or not _valid_at(issuer, now):
                continue
            start, end = max(start, issuer.not_valid_before_utc), min(end, issuer.not_valid_after_utc)
            if spki_der(issuer.public_key()) in roots:  # type: ignore[arg-type]
                return start, end
            current = issuer
            break
        else:
            raise TpmAkError("the AK certificate does not chain to a configured CA")
    raise TpmAkError("the AK certificate chain is too long")


class ChainCache:
    """Caller-owned memo of verified AK certificate chains: (trust, certificate, intermediates) ->
    the window in which the whole chain is valid. Bounded; the oldest entry goes first."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._windows: BoundedDict[tuple[TpmTrust, bytes, tuple[bytes, ...]], tuple[datetime, datetime]] = (
            BoundedDict(max_entries)
        )

    def verify(
        self, cert_der: bytes, intermediates_der: tuple[bytes, ...], trust: TpmTrust, now: datetime
    ) -> None:
        key = (trust, cert_der, intermediates_der)
        window = self._windows.get(key)
        if window is not None and window[0] <= now <= window[1]:
            return
        window = verify_ak_certificate(
            load_certificate(cert_der), trust, now, [load_certificate(d) for d in intermediates_der]
        )
        self._windows.put(key, window)
