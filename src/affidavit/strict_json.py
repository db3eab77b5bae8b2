"""The one JSON reader for untrusted text: tokens, claims, request bodies, protocol messages.

Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` and turns ``1e999`` into ``inf``;
none of these is JSON (RFC 8259 §6) and each compares in surprising ways (``exp: NaN`` is never "in the
past", ``svn: NaN >= 3`` is false but ``not (NaN < 3)`` is true). :func:`loads` refuses them with
:class:`NonFiniteNumber`, a ``ValueError`` like every other malformed-JSON error, so callers' existing
``except ValueError`` clauses map it to their layer's typed error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any


class NonFiniteNumber(ValueError):
    """The text holds NaN, Infinity or a number too large for a finite float."""


def _constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{text[:40]} is not a finite number")
    return value


PairsHook = Callable[[list[tuple[str, Any]]], Any]


def loads(data: str | bytes | bytearray, *, object_pairs_hook: PairsHook | None = None) -> Any:
    """``json.loads`` without NaN/Infinity; raises ``ValueError`` (``json.JSONDecodeError``,
    :class:`NonFiniteNumber`), ``UnicodeDecodeError`` or ``RecursionError`` for bad input."""
    return json.loads(data, parse_constant=_constant, parse_float=_float, object_pairs_hook=object_pairs_hook)
