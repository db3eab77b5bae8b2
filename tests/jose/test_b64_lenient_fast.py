"""The one-pass lenient base64 decoder (issue 14) decides exactly as the checked one: same bytes for every
input it accepts, the same error (message and code) for every input it refuses."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.jose import JoseError
from affidavit.jose.b64 import _b64decode_lenient_checked, b64decode_lenient


def _result(fn: object, text: object) -> object:
    try:
        return fn(text, "field")  # type: ignore[operator]
    except JoseError as exc:
        return ("error", exc.message, exc.code)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ABCDab09+/-_=$ \n\u00e9", max_size=16) | st.binary(max_size=4) | st.none())
def test_fast_path_equals_the_checked_decoder(text: object) -> None:
    assert _result(b64decode_lenient, text) == _result(_b64decode_lenient_checked, text)


@given(st.binary(max_size=64))
def test_every_encoding_clients_send_decodes(data: bytes) -> None:
    std, url = base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()
    for text in (std, url, std.rstrip("="), url.rstrip("=")):
        assert b64decode_lenient(text, "field") == data


@settings(max_examples=1500, deadline=None)
@given(st.binary(min_size=40, max_size=700), st.integers(0, 10_000), st.sampled_from("A+/-_=$\n\u00e9"),
       st.booleans(), st.integers(0, 3))
def test_long_texts_decide_as_the_checked_decoder(
    data: bytes, where: int, char: str, url: bool, strip: int
) -> None:
    """The SIMD decoder's long-input paths too: valid encodings and ones with a character replaced
    anywhere (or padding cut) decide exactly as the checked decoder."""
    text = (base64.urlsafe_b64encode(data) if url else base64.b64encode(data)).decode()
    for candidate in (text, text[:len(text) - strip] if strip else text,
                      text[:where % len(text)] + char + text[where % len(text) + 1:]):
        assert _result(b64decode_lenient, candidate) == _result(_b64decode_lenient_checked, candidate)
