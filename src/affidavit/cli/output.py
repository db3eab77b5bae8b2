"""Output helpers shared by CLI commands: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def print_json(obj: Any, out: TextIO | None = None) -> None:
    json.dump(obj, out or sys.stdout, indent=2, sort_keys=True, default=str)
    (out or sys.stdout).write("\n")


def cell(value: Any) -> str:
    """A value as people read it: JSON's spellings (true, false), ``-`` for nothing; never Python's."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print rows as an aligned plain-text table (no colours, safe to pipe)."""
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def print_fields(fields: Iterable[tuple[str, Any]], out: TextIO | None = None) -> None:
    """Print key/value pairs, keys aligned."""
    out = out or sys.stdout
    items = list(fields)
    width = max((len(k) for k, _ in items), default=0)
    for k, v in items:
        out.write(f"{k.ljust(width)}  {cell(v)}\n")
