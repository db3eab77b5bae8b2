"""The one JSON reading of JOSE headers, payloads and JWKs: duplicate members and non-JSON constants
(``NaN``, ``Infinity``) are refused. Two parsers that disagree on ``{"alg":"none","alg":"RS256"}`` is how
signature checks get bypassed, so every layer reads JOSE JSON through here."""

from __future__ import annotations

from typing import Any

from affidavit import strict_json
from affidavit.jose.errors import JoseError


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate member {k!r}")
        obj[k] = v
    return obj


def loads(data: bytes | str, what: str) -> Any:
    """Any JSON value, strictly; ``bad_json`` otherwise."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        # the one NaN/Infinity refusal (affidavit.strict_json), plus duplicate members
        return strict_json.loads(text, object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JoseError(f"{what} is not valid JSON: {exc}", code="bad_json") from None


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object, strictly; ``bad_json`` otherwise."""
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise JoseError(f"{what} must be a JSON object", code="bad_json")
    return obj
