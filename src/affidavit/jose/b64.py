"""base64 for JOSE: base64url without padding (RFC 7515 §2) and standard base64 for ``x5c`` (RFC 7517).

Decoding is strict about the alphabet and the length: a padded base64url segment is accepted only with
correct padding (some SDKs pad), anything else is ``bad_base64``.
"""

from __future__ import annotations

import base64
import binascii
import re

import pybase64

from affidavit.jose.errors import JoseError

_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_B64STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64ANY = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2), as every JOSE segment and MAA byte claim is written.
    pybase64's SIMD codec: a token's payload in a quarter of binascii's time."""
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object, *, what: str = "segment") -> bytes:
    """Decode base64url, unpadded or correctly padded; anything else is a ``bad_base64`` JoseError."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise JoseError(f"{what} is not base64url", code="bad_base64")
    body = text.rstrip("=")
    if len(body) % 4 == 1 or (text != body and len(text) % 4 != 0):
        raise JoseError(f"{what} has an impossible base64url length", code="bad_base64")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JoseError(f"{what} is not base64url: {exc}", code="bad_base64") from None


def b64std_encode(data: bytes) -> str:
    """Standard padded base64, as RFC 7517 requires for ``x5c`` entries."""
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: object, *, what: str = "value") -> bytes:
    """Decode standard base64 (padding required, as RFC 7517 has it for ``x5c``)."""
    if not isinstance(text, str) or not _B64STD.fullmatch(text) or len(text) % 4 != 0:
        raise JoseError(f"{what} is not standard base64", code="bad_base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JoseError(f"{what} is not standard base64: {exc}", code="bad_base64") from None


def b64decode_lenient(text: object, what: str) -> bytes:
    """base64url or standard base64, padded or not: what MAA's clients send in request *fields* (msrest
    sends url-safe without padding, Windows standard base64). Never for JOSE segments.

    One decoding pass for well-formed input (pybase64's validating SIMD decoder checks the alphabet and
    the padding itself, a tenth of ``a2b_base64``'s 28 us for a quote); anything it refuses is decided,
    with its message, by the checks below."""
    if type(text) is str and text.isascii():
        raw = text.encode("ascii")
        core = raw.rstrip(b"=")
        if len(raw) - len(core) <= 2 and len(core) % 4 != 1:
            padded = core + b"=" * (-len(core) % 4)
            try:
                if b"+" not in padded and b"/" not in padded:  # base64url (msrest)
                    return pybase64.b64decode(padded, altchars=b"-_", validate=True)
                if b"-" in padded or b"_" in padded:  # both alphabets in one text, as the checks accept
                    padded = padded.translate(_TO_STANDARD)
                return pybase64.b64decode(padded, validate=True)
            except (binascii.Error, ValueError):
                pass
    return _b64decode_lenient_checked(text, what)


def _b64decode_lenient_checked(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not _B64ANY.fullmatch(text):
        raise JoseError(f"{what} is not a base64 string", code="bad_base64")
    core = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(core) % 4 == 1:
        raise JoseError(f"{what} is not valid base64 (bad length)", code="bad_base64")
    try:
        return base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise JoseError(f"{what} is not valid base64", code="bad_base64") from None
