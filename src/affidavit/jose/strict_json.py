"""The one JSON reading of JOSE headers, payloads and JWKs: duplicate members and non-JSON constants
(``NaN``, ``Infinity``) are refused. Two parsers that disagree on ``{"alg":"none","alg":"RS256"}`` is how
signature checks get bypassed, so every layer reads JOSE JSON through here."""

from __future__ import annotations

import json
from typing import Any

from affidavit.jose.errors import JoseError


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate member {k!r}")
        obj[k] = v
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str, what: str) -> Any:
    """Any JSON value, strictly; ``bad_json`` otherwise."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JoseError(f"{what} is not valid JSON: {exc}", code="bad_json") from None


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object, strictly; ``bad_json`` otherwise."""
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise JoseError(f"{what} must be a JSON object", code="bad_json")
    return obj
