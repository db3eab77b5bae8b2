"""JWT issuance: RS256 (or ES256) tokens as MAA signs them, and unsecured (``alg: none``) draft-policy tokens.

Both use MAA's header layout (maa-api §6.1): compact JSON, keys sorted, ``{"alg","jku","kid","typ"}``.
Segments are canonical base64url without padding, because the SDK re-encodes the decoded bytes before it
checks a signature (§5.3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from affidavit.tokens.b64 import b64url_encode
from affidavit.tokens.errors import TokenError
from affidavit.tokens.keys import SigningKey


def _json(obj: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise TokenError(f"claims are not JSON-serializable: {exc}", code="unserializable_claims") from None


def _header(alg: str, jku: str | None, kid: str | None) -> dict[str, str]:
    header = {"alg": alg, "typ": "JWT"}
    if jku is not None:
        header["jku"] = jku
    if kid is not None:
        header["kid"] = kid
    return header


def encode_jwt(claims: Mapping[str, Any], key: SigningKey, *, jku: str | None) -> str:
    """Sign ``claims`` with ``key`` (its algorithm: RS256 or ES256). ``jku`` is the issuer's ``/certs`` URL,
    or None to omit it."""
    signing_input = (
        b64url_encode(_json(_header(key.algorithm, jku, key.kid))) + "." + b64url_encode(_json(claims))
    )
    return signing_input + "." + b64url_encode(key.sign(signing_input.encode("ascii")))


def unsecured_jwt(claims: Mapping[str, Any], *, jku: str | None = None, kid: str | None = None) -> str:
    """An ``alg: none`` token with an empty signature segment (``h.p.``), as MAA issues for draft policies."""
    return b64url_encode(_json(_header("none", jku, kid))) + "." + b64url_encode(_json(claims)) + "."
