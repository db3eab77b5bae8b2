"""Trust anchors: the root public keys a DCAP chain must end in.

Trust rests on the root's public key (its SubjectPublicKeyInfo), not on one certificate edition: Intel
re-issued the SGX Root CA with the same key, and quotes in the wild embed either edition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from affidavit import x509load
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap.names import Names, cert_names

INTEL_ROOT_PEM = "intel_sgx_root_ca.pem"


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class TrustAnchors:
    """Root public keys, keyed by DER SubjectPublicKeyInfo; ``certificates``: the DER of the root
    certificates they were read from (pinned: a chain root equal to one needs no self-signature check)."""

    keys: dict[bytes, ec.EllipticCurvePublicKey]
    certificates: frozenset[bytes] = frozenset()

    def __hash__(self) -> int:
        return hash(frozenset(self.keys))

    @cached_property
    def pinned(self) -> dict[bytes, Names]:
        """Each pinned certificate's names, by its DER: a chain root byte-equal to one is that certificate
        (no self-signature to check), and its names are read once per trust, not once per chain."""
        out = {}
        for der in self.certificates:
            cert = x509.load_der_x509_certificate(der)
            out[der] = cert_names(cert, "trust_anchor_invalid", "pinned root certificate", der)
        return out

    @classmethod
    def intel(cls) -> TrustAnchors:
        """The Intel SGX Root CA shipped in this package (both editions Intel issued with its one key)."""
        data = resources.files("affidavit.evidence.dcap").joinpath(INTEL_ROOT_PEM).read_bytes()
        return cls.from_pem(data)

    @classmethod
    def from_pem(cls, data: bytes | str) -> TrustAnchors:
        """Roots from PEM certificates (any number, concatenated) or PEM public keys."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        if isinstance(data, str):
            data = data.encode()
        from cryptography.hazmat.primitives.serialization import Encoding

        keys: dict[bytes, ec.EllipticCurvePublicKey] = {}
        pinned: set[bytes] = set()
        try:
            pubs: list[object]
            if b"-----BEGIN CERTIFICATE-----" in data:
                certs = x509load.load_pem_certificates(data, ValueError, "trust anchor")
                pubs = [c.public_key() for c in certs]
                pinned = {c.public_bytes(Encoding.DER) for c in certs}
            else:
                pubs = [load_pem_public_key(data)]
        except (ValueError, TypeError) as exc:
            raise EvidenceError(
                f"trust anchor is not a PEM certificate or key: {exc}", code="trust_anchor_invalid"
            ) from None
        for pub in pubs:
            if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
                raise EvidenceError("trust anchor key must be ECDSA P-256", code="trust_anchor_invalid")
            keys[spki(pub)] = pub
        if not keys:
            raise EvidenceError("no trust anchor in PEM input", code="trust_anchor_invalid")
        return cls(keys, frozenset(pinned))

    def merged(self, other: TrustAnchors) -> TrustAnchors:
        return TrustAnchors({**self.keys, **other.keys}, self.certificates | other.certificates)

    def find(self, key: ec.EllipticCurvePublicKey | object) -> ec.EllipticCurvePublicKey | None:
        """The anchor equal to ``key``, if any."""
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return None
        return self.keys.get(spki(key))
