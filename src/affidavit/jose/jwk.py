"""JWK <-> public keys, with the one key policy: RSA 2048..8192 bits with a sane exponent, EC on P-256,
P-384 or P-521. Anything else is ``bad_key``, whichever layer reads the key (relying party JWKS, TPM
request keys, policy signer certificates)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from affidavit import x509load
from affidavit.jose.b64 import b64std_decode, b64url, b64url_decode
from affidavit.jose.errors import JoseError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1(),
}
_CURVE_NAMES = {type(c): name for name, c in CURVES.items()}
PUBLIC_MEMBERS = ("kty", "n", "e", "crv", "x", "y", "kid", "alg", "use")


def check_key(key: object, what: str = "key") -> PublicKey:
    """``key`` if the key policy allows it; ``bad_key`` otherwise."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise JoseError(
                f"{what} is RSA-{key.key_size}; {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted",
                code="bad_key",
            )
        if numbers.e < 3 or numbers.e % 2 == 0 or numbers.e.bit_length() > 64:
            raise JoseError(f"{what} has an unacceptable RSA exponent", code="bad_key")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if type(key.curve) not in _CURVE_NAMES:
            raise JoseError(f"{what} uses the unsupported curve {key.curve.name}", code="bad_key")
        return key
    raise JoseError(f"{what} is neither an RSA nor an EC key", code="bad_key")


def _int(jwk: Mapping[str, Any], member: str, what: str) -> int:
    value = jwk.get(member)
    if not isinstance(value, str) or not value:
        raise JoseError(f"{what} lacks {member!r}", code="bad_key")
    try:
        return int.from_bytes(b64url_decode(value, what=f"{what}.{member}"), "big")
    except JoseError as exc:
        raise JoseError(exc.message, code="bad_key") from None


def certificate_key(der_b64: object, what: str = "x5c certificate") -> PublicKey:
    """The public key of an ``x5c`` entry (standard base64 of DER), under the key policy."""
    def fail(message: str) -> JoseError:
        return JoseError(f"{what} is not a DER certificate with a readable key", code="bad_key")

    try:
        der = b64std_decode(der_b64, what=what)
    except JoseError:
        raise fail("") from None
    cert = x509load.load_der_certificate(der, fail, what)  # the one certificate loader
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise fail("") from None
    return check_key(key, what)


def public_key_from_jwk(jwk: object, what: str = "jwk", *, use_x5c: bool = False) -> PublicKey:
    """An RSA or EC public key from a JWK (with ``use_x5c``, from its ``x5c[0]`` certificate when present,
    as MAA's JWKS carries it)."""
    if not isinstance(jwk, Mapping):
        raise JoseError(f"{what} must be a JWK object", code="bad_key")
    x5c = jwk.get("x5c")
    if use_x5c and isinstance(x5c, list) and x5c:
        return certificate_key(x5c[0], f"{what}.x5c[0]")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            key: object = rsa.RSAPublicNumbers(_int(jwk, "e", what), _int(jwk, "n", what)).public_key()
        elif kty == "EC":
            crv = jwk.get("crv")
            curve = CURVES.get(crv) if isinstance(crv, str) else None
            if curve is None:
                raise JoseError(f"{what} has an unsupported curve {crv!r}", code="bad_key")
            x, y = _int(jwk, "x", what), _int(jwk, "y", what)
            key = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        else:
            raise JoseError(f"{what} has unsupported kty {kty!r}", code="bad_key")
    except ValueError:
        raise JoseError(f"{what} is not a valid {kty} key", code="bad_key") from None
    return check_key(key, what)


def _uint(n: int, size: int | None = None) -> bytes:
    return n.to_bytes(size or (n.bit_length() + 7) // 8 or 1, "big")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members of a public key: ``{e, kty, n}`` or ``{crv, kty, x, y}``."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"e": b64url(_uint(numbers.e)), "kty": "RSA", "n": b64url(_uint(numbers.n))}
    size = (key.curve.key_size + 7) // 8
    point = key.public_numbers()
    return {"crv": _CURVE_NAMES[type(key.curve)], "kty": "EC", "x": b64url(_uint(point.x, size)),
            "y": b64url(_uint(point.y, size))}


def public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Only a JWK's public members: what a token may repeat (a client might send its private ``d``)."""
    return {k: jwk[k] for k in PUBLIC_MEMBERS if k in jwk}


def canonical_jwk(jwk: Mapping[str, Any]) -> str:
    """A JWK as compact JSON with sorted members (ASCII): the text MAA's TPM protocol hashes into the
    quote's qualifying data (``tpm_quote`` binding), on the client and the service alike."""
    return json.dumps(jwk, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
