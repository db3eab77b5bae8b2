"""JWS signature checks for RFC 7518's RS*, PS* and ES* (256/384/512).

PSS accepts any salt length on verification: clients differ (hash length per RFC 7518, maximum per
Windows' defaults) and the salt length adds no security to verification. An ES algorithm names its curve
(RFC 7518 §3.4: ES256 P-256, ES384 P-384, ES512 P-521) and its signature is the raw ``r || s`` of that
curve's size: ES256 on another curve is not ES256.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
ALGORITHMS = frozenset(f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in HASHES)
ES_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "256": ec.SECP256R1, "384": ec.SECP384R1, "512": ec.SECP521R1,
}


def signature_ok(alg: str, key: object, signing_input: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``alg``'s signature of ``signing_input`` by ``key``; False otherwise,
    including an algorithm that does not fit the key (an ES alg on another curve) or is not one of
    :data:`ALGORITHMS`."""
    if alg not in ALGORITHMS:
        return False
    family, hash_cls = alg[:2], HASHES[alg[2:]]
    try:
        if family in ("RS", "PS") and isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=padding.PSS.AUTO)
                if family == "PS"
                else padding.PKCS1v15()
            )
            key.verify(signature, signing_input, pad, hash_cls())
            return True
        if family == "ES" and isinstance(key, ec.EllipticCurvePublicKey):
            if type(key.curve) is not ES_CURVES[alg[2:]]:
                return False
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hash_cls()))
            return True
    except InvalidSignature:
        return False
    return False
