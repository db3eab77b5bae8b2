"""The one JOSE package: base64url, strict JSON, JWK, compact JWS, signature checks.

One strictness for every layer: duplicate JSON members and ``NaN`` refused (:mod:`.strict_json`), an
``alg`` allow-list per use (:mod:`.jws`), RSA keys 2048..8192 bits and EC on P-256/384/521 (:mod:`.jwk`).
Errors are :class:`JoseError` with stable codes; each user re-raises them as its own layer's error.
MAA's non-standard policy JWS shapes (``RSA256``, ``jwk.x5c``) are handled at their edge
(``affidavit.tokens.jws``). Why not PyJWT, joserfc or jwcrypto: ``docs/architecture.md`` ("JOSE").
"""

from affidavit.jose.b64 import b64std_decode, b64std_encode, b64url, b64url_decode
from affidavit.jose.errors import JoseError
from affidavit.jose.jwk import (
    PublicKey,
    canonical_jwk,
    check_key,
    public_jwk,
    public_key_from_jwk,
    public_members,
)
from affidavit.jose.jws import (
    POLICY_ALGS,
    TOKEN_ALGS,
    TPM_REQUEST_ALGS,
    CompactJws,
    parse_compact,
    sign_compact,
    verify_signature,
)
from affidavit.jose.strict_json import loads, loads_object
from affidavit.jose.verify import ALGORITHMS, HASHES, signature_ok

__all__ = [
    "ALGORITHMS",
    "HASHES",
    "POLICY_ALGS",
    "TOKEN_ALGS",
    "TPM_REQUEST_ALGS",
    "CompactJws",
    "JoseError",
    "PublicKey",
    "b64std_decode",
    "b64std_encode",
    "b64url",
    "b64url_decode",
    "canonical_jwk",
    "check_key",
    "loads",
    "loads_object",
    "parse_compact",
    "public_jwk",
    "public_key_from_jwk",
    "public_members",
    "sign_compact",
    "signature_ok",
    "verify_signature",
]
