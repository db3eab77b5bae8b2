"""JWT issuance: RS256 (or ES256) tokens as MAA signs them, and unsecured (``alg: none``) draft-policy tokens.

Both use MAA's header layout (maa-api §6.1): compact JSON, keys sorted, ``{"alg","jku","kid","typ"}``.
Segments are canonical base64url without padding, because the SDK re-encodes the decoded bytes before it
checks a signature (§5.3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from affidavit.tokens.b64 import b64url_encode
from affidavit.tokens.errors import TokenError
from affidavit.tokens.keys import SigningKey

# orjson for the common case (about five times faster than json here). What it would write differently from
# ``json.dumps(sort_keys=True, ensure_ascii=True, allow_nan=False)`` goes to json itself: these options make
# it refuse subclasses, dataclasses and datetimes (json's TypeError stays the error), integers beyond 64 bits
# raise, non-ASCII output (json escapes it as \uXXXX) and ``null`` (orjson writes NaN so, json refuses it)
# are rechecked. Floats keep their value but may be spelled differently (``1e-7`` for json's ``1e-07``).
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def _json(obj: Mapping[str, Any]) -> bytes:
    try:
        out = orjson.dumps(obj, option=_ORJSON_OPTIONS)
        if out.isascii() and b"null" not in out:  # null: orjson writes NaN so, json refuses it
            return out
    except (TypeError, orjson.JSONEncodeError):
        pass
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


_HEADERS: dict[tuple[str, str | None, str | None], str] = {}  # encoded headers: a server has very few


def encoded_header(alg: str, jku: str | None, kid: str | None) -> str:
    """The base64url JWS header segment, computed once per (alg, jku, kid)."""
    key = (alg, jku, kid)
    head = _HEADERS.get(key)
    if head is None:
        head = b64url_encode(_json(_header(alg, jku, kid)))
        if len(_HEADERS) >= 64:
            _HEADERS.clear()
        _HEADERS[key] = head
    return head


def signing_input(claims: Mapping[str, Any], key: SigningKey, *, jku: str | None) -> str:
    """``header.payload`` of the token ``encode_jwt`` makes: what ``key`` signs (a caller may sign it
    elsewhere, e.g. in a worker thread, and finish with :func:`with_signature`)."""
    return encoded_header(key.algorithm, jku, key.kid) + "." + b64url_encode(_json(claims))


def with_signature(signing_input: str, signature: bytes) -> str:
    return signing_input + "." + b64url_encode(signature)


def encode_jwt(claims: Mapping[str, Any], key: SigningKey, *, jku: str | None) -> str:
    """Sign ``claims`` with ``key`` (its algorithm: RS256 or ES256). ``jku`` is the issuer's ``/certs`` URL,
    or None to omit it."""
    text = signing_input(claims, key, jku=jku)
    return with_signature(text, key.sign(text.encode("ascii")))


def unsecured_jwt(claims: Mapping[str, Any], *, jku: str | None = None, kid: str | None = None) -> str:
    """An ``alg: none`` token with an empty signature segment (``h.p.``), as MAA issues for draft policies."""
    return encoded_header("none", jku, kid) + "." + b64url_encode(_json(claims)) + "."
