"""The shipped Intel trust anchor pins both editions of the SGX Root CA certificate (one key): a chain
root byte-equal to a pinned certificate needs no self-signature check, any other must carry one."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.evidence.dcap.trust import TrustAnchors


def test_intel_anchor_pins_both_root_editions_of_one_key() -> None:
    trust = TrustAnchors.intel()
    assert len(trust.keys) == 1 and len(trust.certificates) == 2
    for der in trust.certificates:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(cert)  # genuine: self-signed by the one trusted key
        assert cert.public_key() == next(iter(trust.keys.values()))
        assert cert.public_bytes(Encoding.DER) == der


def test_merged_anchors_keep_their_pinned_certificates() -> None:
    intel = TrustAnchors.intel()
    keys_only = TrustAnchors(intel.keys)
    assert keys_only.certificates == frozenset()
    assert keys_only.merged(intel).certificates == intel.certificates
