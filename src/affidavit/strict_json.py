"""The one JSON reader for untrusted text: tokens, claims, request bodies, evidence, protocol messages.

Duplicate members are refused (:class:`DuplicateMember`): Python keeps the last, other parsers the first,
so ``{"quote": A, "quote": B}`` would let a proxy or a relying party see other data than we verified.
Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` and turns ``1e999`` into ``inf``;
none of these is JSON (RFC 8259 §6) and each compares in surprising ways (``exp: NaN`` is never "in the
past", ``svn: NaN >= 3`` is false but ``not (NaN < 3)`` is true). :func:`loads` refuses them with
:class:`NonFiniteNumber`, a ``ValueError`` like every other malformed-JSON error, so callers' existing
``except ValueError`` clauses map it to their layer's typed error.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NonFiniteNumber(ValueError):
    """The text holds NaN, Infinity or a number too large for a finite float."""


class DuplicateMember(ValueError):
    """An object names the same member twice."""


def _constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{text[:40]} is not a finite number")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the rare case pays for finding the name
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(f"duplicate member {name[:40]!r}")
            seen.add(name)
    return obj


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads`` without NaN/Infinity or duplicate members; raises ``ValueError``
    (``json.JSONDecodeError``, :class:`NonFiniteNumber`, :class:`DuplicateMember`), ``UnicodeDecodeError``
    or ``RecursionError`` for bad input."""
    return json.loads(data, parse_constant=_constant, parse_float=_float, object_pairs_hook=_object)
