"""Strict base64 helpers for JOSE (base64url, no padding) and x5c (standard base64 of DER)."""

from __future__ import annotations

import base64
import binascii
import re

from affidavit.jose import b64url
from affidavit.tokens.errors import TokenError

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_B64STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")


# Canonical base64url without padding: what the SDK re-encodes before checking a signature.
b64url_encode = b64url


def b64url_decode(text: str, *, what: str = "segment") -> bytes:
    """Decode base64url, padded or not; anything outside the alphabet is a ``bad_base64`` TokenError."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise TokenError(f"{what} is not base64url", code="bad_base64")
    body = text.rstrip("=")
    if len(body) % 4 == 1 or (text != body and len(text) % 4 != 0):
        raise TokenError(f"{what} has an impossible base64url length", code="bad_base64")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TokenError(f"{what} is not base64url: {exc}", code="bad_base64") from None


def b64std_encode(data: bytes) -> str:
    """Standard padded base64, as RFC 7517 requires for ``x5c`` entries."""
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str, *, what: str = "value") -> bytes:
    """Decode standard base64 (padding required, as RFC 7517 has it for ``x5c``)."""
    if not isinstance(text, str) or not _B64STD.fullmatch(text) or len(text) % 4 != 0:
        raise TokenError(f"{what} is not standard base64", code="bad_base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TokenError(f"{what} is not standard base64: {exc}", code="bad_base64") from None
