"""JOSE headers, payloads and JWKs read through :mod:`affidavit.strict_json` (duplicate members and
``NaN``/``Infinity`` refused: two parsers that disagree on ``{"alg":"none","alg":"RS256"}`` is how signature
checks get bypassed), its errors as the JOSE layer's ``bad_json``."""

from __future__ import annotations

from typing import Any

from affidavit import strict_json
from affidavit.jose.errors import JoseError


def loads(data: bytes | str, what: str) -> Any:
    """Any JSON value, strictly; ``bad_json`` otherwise."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return strict_json.loads(text)  # the one refusal of duplicates and NaN/Infinity
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JoseError(f"{what} is not valid JSON: {exc}", code="bad_json") from None


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object, strictly; ``bad_json`` otherwise."""
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise JoseError(f"{what} must be a JSON object", code="bad_json")
    return obj
