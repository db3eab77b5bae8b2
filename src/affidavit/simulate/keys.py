"""Deterministic P-256 keys and signatures, so a seed reproduces a whole simulated PKI byte for byte."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# Order of the P-256 group.
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def derive_bytes(seed: bytes, label: str, size: int = 32) -> bytes:
    """Pseudo-random bytes bound to (seed, label); one label per key, serial or identifier."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hmac.new(seed, f"{label}/{counter}".encode(), hashlib.sha256).digest()
        counter += 1
    return out[:size]


def derive_key(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(derive_bytes(seed, f"key:{label}", 48), "big") % (_N - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def derive_serial(seed: bytes, label: str) -> int:
    """A positive 20-byte certificate serial, like Intel's."""
    return int.from_bytes(derive_bytes(seed, f"serial:{label}", 20), "big") >> 1 or 1


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 as quotes and collateral carry it: raw big-endian r||s, 64 bytes (RFC 6979 k)."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 64-byte x||y form quotes use for the attestation key."""
    numbers = key.public_key().public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
