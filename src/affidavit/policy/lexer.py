"""Tokens of the claim-rule language.

Strings may span lines (a published policy with a stray U+201D shows MAA's strings running on); only
``\\"`` and ``\\\\`` are escapes, anything else after a backslash is rejected rather than guessed.
Numbers are decimal digits, with one ``.`` only in the version number.
"""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import dataclass

from affidavit.policy.errors import PolicyParsingError

MAX_POLICY_CHARS = 1 << 20

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*(?:"|\Z))
  | (?P<number>[0-9]+(?:\.[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|=>|&&|[=<>!:,.;()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident", "string", "number", "op", "eof", "error"
    text: str  # the source text (for strings: the decoded value)
    pos: int
    detail: str = ""  # for "error": what is wrong (reported when the parser reaches it)


class Positions:
    """Maps offsets to 1-based (line, column); columns count characters, tabs as one."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, pos)
        return line, pos - self._starts[line - 1] + 1


def _bad_escape(body: str) -> int:
    """Offset in a string body of the first escape other than a quote or backslash one, or -1."""
    for m in _ESCAPE_RE.finditer(body):
        if m.group(1) not in '"\\':
            return m.start()
    return -1


def parse_message(symbol: str, line: int, column: int, failure: str, rule: str) -> str:
    """MAA's parser diagnostic shape (maa-policy.md §9), without its native-code prefix."""
    return (
        f"Policy Parser Exception Thrown: Offending symbol: '{symbol}'\n"
        f"Line: '{line}', Column: '{column}'\n"
        f"Failure message: '{failure}'\n"
        f"Failing rule: '{rule}'"
    )


def tokenize(text: str, deadline: float | None = None, max_seconds: float = 0.0) -> list[Token]:
    """All tokens; lexical errors become one "error" token (then EOF) so the parser reports problems in
    source order. Past the monotonic ``deadline`` it raises ``PolicyLimitError`` (``max_seconds``)."""
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyParsingError(f"policy text is longer than {MAX_POLICY_CHARS} characters")
    tokens: list[Token] = []
    pos, end = 0, len(text)
    match = _TOKEN_RE.match
    while pos < end:
        if deadline is not None and not len(tokens) & 4095 and time.monotonic() > deadline:
            from affidavit.policy.limits import compile_too_slow

            raise compile_too_slow(max_seconds)
        m = match(text, pos)
        if m is None:
            ch = text[pos]
            tokens.append(Token("error", ch, pos, f"token recognition error at: '{ch}'"))
            break
        kind = m.lastgroup
        if kind == "string":
            raw = m.group()
            if len(raw) < 2 or not raw.endswith('"') or raw.endswith('\\"') and _odd_backslashes(raw):
                tokens.append(Token("error", '"', pos, "unterminated string literal"))
                break
            body = raw[1:-1]
            if "\\" in body:
                bad = _bad_escape(body)
                if bad >= 0:
                    esc = body[bad : bad + 2]
                    tokens.append(
                        Token("error", esc, pos + 1 + bad, f"unknown escape '{esc}' (only \\\" and \\\\)")
                    )
                    break
                body = _ESCAPE_RE.sub(r"\1", body)
            tokens.append(Token("string", body, pos))
        elif kind in ("number", "ident", "op"):
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", end if not tokens or tokens[-1].kind != "error" else tokens[-1].pos))
    return tokens


def _odd_backslashes(raw: str) -> bool:
    """True when the closing quote of ``raw`` is itself escaped (the string never closed)."""
    n = len(raw) - 2
    count = 0
    while n >= 1 and raw[n] == "\\":
        count += 1
        n -= 1
    return count % 2 == 1
