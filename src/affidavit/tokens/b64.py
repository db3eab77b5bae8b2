"""The JOSE package's base64 (``affidavit.jose.b64``) failing as ``TokenError`` (``bad_base64``)."""

from __future__ import annotations

from affidavit.jose import b64 as _b64
from affidavit.jose import b64url
from affidavit.tokens.errors import from_jose

# Canonical base64url without padding: what the SDK re-encodes before checking a signature.
b64url_encode = b64url
b64std_encode = _b64.b64std_encode


def b64url_decode(text: str, *, what: str = "segment") -> bytes:
    """Decode base64url, padded or not; anything outside the alphabet is a ``bad_base64`` TokenError."""
    with from_jose():
        return _b64.b64url_decode(text, what=what)


def b64std_decode(text: str, *, what: str = "value") -> bytes:
    """Decode standard base64 (padding required, as RFC 7517 has it for ``x5c``)."""
    with from_jose():
        return _b64.b64std_decode(text, what=what)
