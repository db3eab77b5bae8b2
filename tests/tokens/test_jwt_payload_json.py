"""Token payloads written with orjson (issue 14) are byte for byte what ``json.dumps(sort_keys=True)``
writes for every claim set without floats, and refuse what json refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.tokens import TokenError
from affidavit.tokens.jwt import _json

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
claims = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=8), claims, max_size=6))
def test_payload_bytes_equal_json(obj: dict[str, Any]) -> None:
    expected = json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("ascii")
    assert _json(obj) == expected


@pytest.mark.parametrize("bad", [{"a": float("nan")}, {"a": float("inf")}, {"a": object()}, {"a": {1, 2}}])
def test_unserializable_claims_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(TokenError) as info:
        _json(bad)
    assert info.value.code == "unserializable_claims"
