"""Recursive-descent parser from policy text to the compiled form (grammar: maa-policy.md §3).

Strict by default, like MAA. ``lenient=True`` accepts the published-but-invalid forms of §10, each with a
warning: curly double quotes as ``"``, keywords in any letter case, ``=`` for ``==`` inside ``[...]``, a
missing ``;`` after a rule, a positional type in ``issue("T", value=...)``, and ``issue`` inside
``authorizationrules`` (read as ``add``, so nothing from that section reaches the token).

Checked at compile time, so a bad rule fails on upload rather than on some later attestation: version
gating (``configurationrules`` needs 1.1, ``!`` and functions 1.2), which actions each section allows,
unbound or duplicate identifiers, function names and arity, literal argument types, operators per type
(ordering only for Integer), issuer names in conditions (the closed set of three; a typo would otherwise
silently never match), integer range (signed 64-bit). Rejected in both modes as undocumented: negative or
hex numbers, block comments, ``.type``/``.issuer`` access, an identifier bound inside ``!``.
"""

from __future__ import annotations

import time

from affidavit.policy.claims import ISSUERS, VALUE_TYPES
from affidavit.policy.errors import PolicyParsingError
from affidavit.policy.functions import FUNCTIONS
from affidavit.policy.hashing import policy_hash
from affidavit.policy.lexer import Positions, Token, parse_message, tokenize
from affidavit.policy.limits import DEFAULT_LIMITS, PolicyLimitError, PolicyLimits, compile_too_slow
from affidavit.policy.model import (
    Action,
    Call,
    Check,
    CompiledPolicy,
    Condition,
    Expr,
    Literal,
    PropTest,
    Ref,
    Rule,
    Values,
)
from affidavit.policy.runner import build_runner

VERSIONS = ("1.0", "1.1", "1.2")
SECTIONS = ("configurationrules", "authorizationrules", "issuancerules")
_MIN_VERSION = {"configurationrules": "1.1"}
_ALLOWED_ACTIONS = {
    "configurationrules": ("issueproperty",),
    "authorizationrules": ("permit", "deny", "add"),
    "issuancerules": ("add", "issue", "issueproperty"),
}
_ACTIONS = ("permit", "deny", "add", "issue", "issueproperty")
_PROPS = ("type", "value", "valueType", "issuer")
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
KEYWORDS = frozenset(("version", "claim", "true", "false", *SECTIONS, *_ACTIONS, *_PROPS, *FUNCTIONS))
MAX_CALL_DEPTH = DEFAULT_LIMITS.max_nesting
_INT_MAX = (1 << 63) - 1
_PY_TYPES: dict[str, type] = {"String": str, "Integer": int, "Boolean": bool}
_CURLY = ("\u201c", "\u201d")


def compile_policy(
    text: str | bytes, *, lenient: bool = False, limits: PolicyLimits | None = None
) -> CompiledPolicy:
    """Parse and check a policy. Raises ``PolicyParsingError`` on any bad input, and ``PolicyLimitError``
    (a ``PolicyEvaluationError``) for text longer than ``limits.max_text_chars`` or function calls
    nested deeper than ``limits.max_nesting``."""
    limits = limits or DEFAULT_LIMITS
    if isinstance(text, str | bytes | bytearray) and len(text) > limits.max_text_chars:
        raise PolicyLimitError(
            "max_text_chars", limits.max_text_chars, f"the policy has {len(text)} characters"
        )
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyParsingError("the policy must be UTF-8 encoded text") from None
    if not isinstance(text, str):
        raise PolicyParsingError("the policy must be text")
    try:
        compiled = _Parser(text, lenient, limits).parse()
    except RecursionError:
        raise PolicyParsingError("the policy nests too deeply") from None
    if limits is not DEFAULT_LIMITS:
        object.__setattr__(compiled, "limits", limits)
    return compiled


def _fact_index(prop: str) -> int:
    return {"type": 0, "value": 1, "issuer": 2}[prop]


def _any_eq(x: object, vals: Values) -> bool:
    tx = type(x)
    return any(x == v and type(v) is tx for v in vals)


def _make_check(prop: str, op: str, rhs: Expr) -> Check:
    if prop == "valueType":
        want = _PY_TYPES[rhs.values[0]]  # type: ignore[attr-defined]  # checked: a literal
        if op == "==":
            return lambda f, _v: type(f[1]) is want
        return lambda f, _v: type(f[1]) is not want
    i = _fact_index(prop)
    if isinstance(rhs, Literal):
        lit = rhs.values[0]
        lt = type(lit)
        checks: dict[str, Check] = {
            "==": lambda f, _v: f[i] == lit and type(f[i]) is lt,
            "!=": lambda f, _v: not (f[i] == lit and type(f[i]) is lt),
            "<": lambda f, _v: type(f[i]) is int and f[i] < lit,  # type: ignore[operator]
            "<=": lambda f, _v: type(f[i]) is int and f[i] <= lit,  # type: ignore[operator]
            ">": lambda f, _v: type(f[i]) is int and f[i] > lit,  # type: ignore[operator]
            ">=": lambda f, _v: type(f[i]) is int and f[i] >= lit,  # type: ignore[operator]
        }
        return checks[op]
    # A computed right side is a set: `==` means "equals a member", `!=` "equals no member", an ordering
    # must hold against every member; against an empty set every comparison is false.
    generic: dict[str, Check] = {
        "==": lambda f, vs: _any_eq(f[i], vs),
        "!=": lambda f, vs: bool(vs) and not _any_eq(f[i], vs),
        "<": lambda f, vs: _ordered(f[i], vs, lambda a, b: a < b),
        "<=": lambda f, vs: _ordered(f[i], vs, lambda a, b: a <= b),
        ">": lambda f, vs: _ordered(f[i], vs, lambda a, b: a > b),
        ">=": lambda f, vs: _ordered(f[i], vs, lambda a, b: a >= b),
    }
    return generic[op]


def _ordered(x: object, vals: Values, cmp: object) -> bool:
    if type(x) is not int or not vals:
        return False
    return all(type(v) is int and cmp(x, v) for v in vals)  # type: ignore[operator]


class _Parser:
    def __init__(self, text: str, lenient: bool, limits: PolicyLimits = DEFAULT_LIMITS) -> None:
        self.max_nesting = limits.max_nesting
        self.limits = limits
        self.max_seconds = limits.max_seconds
        self.deadline = time.monotonic() + limits.max_seconds
        self.text = text
        self.lenient = lenient
        self.warnings: list[str] = []
        self.positions = Positions(text)
        if lenient and any(q in text for q in _CURLY):
            first = min(text.find(q) for q in _CURLY if q in text)
            self.warn(first, "curly double quote read as '\"'")
            text = text.replace(_CURLY[0], '"').replace(_CURLY[1], '"')
        self.toks = tokenize(text, self.deadline, self.max_seconds)
        self.i = 0
        self.path = ["policy"]
        self.version = "1.0"

    # -- token helpers -------------------------------------------------------------------------------
    def warn(self, pos: int, what: str) -> None:
        line, col = self.positions.line_col(pos)
        self.warnings.append(f"line {line}, column {col}: {what}")

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, tok: Token, failure: str) -> PolicyParsingError:
        if tok.kind == "error":
            failure = tok.detail
        line, col = self.positions.line_col(tok.pos)
        symbol = tok.text if tok.kind != "string" else '"' + tok.text + '"'
        if len(symbol) > 60:
            symbol = symbol[:57] + "..."
        return PolicyParsingError(
            parse_message(symbol, line, col, failure, " > ".join(self.path)), line=line, column=col
        )

    def mismatch(self, tok: Token, expecting: str) -> PolicyParsingError:
        if tok.kind == "error":
            return self.error(tok, tok.detail)
        shown = tok.text if tok.kind != "string" else '"' + tok.text + '"'
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return self.error(tok, f"mismatched input '{shown}' expecting {expecting}")

    def is_op(self, tok: Token, op: str) -> bool:
        return tok.kind == "op" and tok.text == op

    def expect_op(self, op: str) -> Token:
        tok = self.take()
        if not self.is_op(tok, op):
            raise self.mismatch(tok, f"'{op}'")
        return tok

    def keyword(self, tok: Token, words: tuple[str, ...]) -> str | None:
        """The keyword ``tok`` spells, if any (any letter case in lenient mode, with a warning)."""
        if tok.kind != "ident":
            return None
        if tok.text in words:
            return tok.text
        if self.lenient:
            for w in words:
                if tok.text.lower() == w.lower():
                    self.warn(tok.pos, f"keyword '{tok.text}' read as '{w}'")
                    return w
        return None

    def expect_kw(self, words: tuple[str, ...]) -> str:
        tok = self.take()
        word = self.keyword(tok, words)
        if word is None:
            raise self.mismatch(tok, " or ".join(f"'{w}'" for w in words))
        return word

    # -- policy ----------------------------------------------------------------------------------------
    def parse(self) -> CompiledPolicy:
        h = policy_hash(self.text)
        if self.peek().kind == "eof":
            return CompiledPolicy(self.text, h, None, (), tuple(self.warnings), self.lenient)
        self.path.append("versionInfo")
        self.expect_kw(("version",))
        self.expect_op("=")
        tok = self.take()
        if tok.kind != "number" or tok.text not in VERSIONS:
            raise self.mismatch(tok, "a version: " + ", ".join(VERSIONS))
        self.version = tok.text
        self.expect_op(";")
        self.path.pop()
        sections: list[tuple[str, tuple[Rule, ...]]] = []
        allowed = list(SECTIONS)
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                break
            name = self.keyword(tok, tuple(allowed))
            if name is None:
                raise self.mismatch(tok, " or ".join([*(f"'{s}'" for s in allowed), "<EOF>"]))
            need = _MIN_VERSION.get(name)
            if need and self.version < need:
                raise self.error(tok, f"'{name}' requires version {need} or later (policy is {self.version})")
            self.take()
            allowed = allowed[allowed.index(name) + 1 :]
            self.path.append(name)
            sections.append((name, self.parse_section(name)))
            self.path.pop()
        return CompiledPolicy(self.text, h, self.version, tuple(sections), tuple(self.warnings), self.lenient)

    def parse_section(self, name: str) -> tuple[Rule, ...]:
        self.expect_op("{")
        rules: list[Rule] = []
        while not self.is_op(self.peek(), "}"):
            if self.peek().kind == "eof":
                raise self.mismatch(self.peek(), "'}'")
            if not len(rules) & 255 and time.monotonic() > self.deadline:
                raise compile_too_slow(self.max_seconds)
            self.path.append("rule")
            rules.append(self.parse_rule(name, len(rules) + 1))
            self.path.pop()
        self.take()
        self.expect_op(";")
        return tuple(rules)

    def at_rule_start(self) -> bool:
        tok = self.peek()
        if tok.kind == "op":
            return tok.text in ("[", "!", "=>", "}")
        return tok.kind == "ident" and self.is_op(self.peek(1), ":")

    def parse_rule(self, section: str, index: int) -> Rule:
        start = self.peek()
        idents: set[str] = set()
        conditions: list[Condition] = []
        if not self.is_op(start, "=>"):
            conditions.append(self.parse_condition(idents))
            while self.is_op(self.peek(), "&&"):
                self.take()
                conditions.append(self.parse_condition(idents))
        tok = self.take()
        if not self.is_op(tok, "=>"):
            raise self.mismatch(tok, "'&&' or '=>'")
        action = self.parse_action(section, idents)
        if self.is_op(self.peek(), ";"):
            self.take()
        elif self.lenient and self.at_rule_start():
            self.warn(self.peek().pos, "missing ';' after a rule")
        else:
            raise self.mismatch(self.peek(), "';'")
        line, col = self.positions.line_col(start.pos)
        conds = tuple(conditions)
        return Rule(section, index, conds, action, line, col, build_runner(conds, action))

    # -- conditions ------------------------------------------------------------------------------------
    def parse_condition(self, idents: set[str]) -> Condition:
        self.path.append("condition")
        start = self.peek()
        negated = False
        if self.is_op(start, "!"):
            self.need_version("1.2", start, "the '!' (absence) condition")
            self.take()
            negated = True
        ident = None
        tok = self.peek()
        if tok.kind == "ident" and self.is_op(self.peek(1), ":"):
            if negated:
                raise self.error(tok, "an absence condition '![...]' cannot bind an identifier")
            ident = self.new_ident(tok, idents)
            self.take()
            self.take()
        self.expect_op("[")
        tests = [self.parse_prop(idents)]
        while self.is_op(self.peek(), ","):
            self.take()
            tests.append(self.parse_prop(idents))
        tok = self.take()
        if not self.is_op(tok, "]"):
            raise self.mismatch(tok, "',' or ']'")
        if ident is not None:
            idents.add(ident)
        type_key = None
        for t in tests:
            if t.prop == "type" and t.op == "==" and isinstance(t.rhs, Literal):
                type_key = t.rhs.values[0]
                tests.remove(t)
                break
        line, col = self.positions.line_col(start.pos)
        self.path.pop()
        return Condition(negated, ident, type_key, tuple(tests), line, col)  # type: ignore[arg-type]

    def new_ident(self, tok: Token, idents: set[str]) -> str:
        if tok.text in KEYWORDS:
            raise self.error(tok, f"'{tok.text}' is a keyword and cannot name a claim")
        if tok.text in idents:
            raise self.error(tok, f"identifier '{tok.text}' is already bound in this rule")
        return tok.text

    def parse_prop(self, idents: set[str]) -> PropTest:
        tok = self.peek()
        prop = self.keyword(tok, _PROPS)
        if prop is None:
            raise self.mismatch(tok, "'type', 'value', 'valueType' or 'issuer'")
        self.take()
        op_tok = self.take()
        if op_tok.kind == "op" and op_tok.text == "=" and self.lenient:
            self.warn(op_tok.pos, "'=' in a condition read as '=='")
            op = "=="
        elif op_tok.kind == "op" and op_tok.text in _COMPARISONS:
            op = op_tok.text
        else:
            raise self.mismatch(op_tok, "a comparison operator ('==', '!=', '<', '<=', '>', '>=')")
        rhs_tok = self.peek()
        rhs = self.parse_expr(idents, 0)
        if prop != "value" and op not in ("==", "!="):
            raise self.error(op_tok, f"'{prop}' is a String: only '==' and '!=' compare it")
        if prop in ("type", "issuer") and isinstance(rhs, Literal) and type(rhs.values[0]) is not str:
            raise self.error(rhs_tok, f"'{prop}' is compared with a string")
        if prop == "issuer" and isinstance(rhs, Literal) and rhs.values[0] not in ISSUERS:
            raise self.error(rhs_tok, "unknown issuer; expecting one of " + ", ".join(ISSUERS))
        if prop == "valueType" and not (isinstance(rhs, Literal) and rhs.values[0] in VALUE_TYPES):
            raise self.error(rhs_tok, "valueType is compared with one of " + ", ".join(VALUE_TYPES))
        if op not in ("==", "!=") and isinstance(rhs, Literal) and type(rhs.values[0]) is not int:
            raise self.error(op_tok, f"'{op}' compares Integer values only")
        return PropTest(prop, op, rhs, _make_check(prop, op, rhs))

    # -- expressions -----------------------------------------------------------------------------------
    def need_version(self, need: str, tok: Token, what: str) -> None:
        if self.version < need:
            raise self.error(tok, f"{what} requires version {need} or later (policy is {self.version})")

    def parse_expr(self, idents: set[str], depth: int) -> Expr:
        tok = self.take()
        line, col = self.positions.line_col(tok.pos)
        if tok.kind == "string":
            return Literal(tok.text, line, col)
        if tok.kind == "number":
            if "." in tok.text:
                raise self.error(tok, "expecting an integer, not a decimal number")
            value = int(tok.text) if len(tok.text) <= 20 else _INT_MAX + 1
            if value > _INT_MAX:
                raise self.error(tok, "integer out of range (signed 64-bit)")
            return Literal(value, line, col)
        if tok.kind == "ident":
            word = self.keyword(tok, ("true", "false"))
            if word is not None:
                return Literal(word == "true", line, col)
            if self.is_op(self.peek(), "("):
                return self.parse_call(tok, idents, depth, line, col)
            if self.is_op(self.peek(), "."):
                if tok.text not in idents:
                    raise self.error(tok, f"identifier '{tok.text}' is not bound by an earlier condition")
                self.take()
                after = self.take()
                if self.keyword(after, ("value",)) is None:
                    raise self.mismatch(after, "'value'")
                return Ref(tok.text, line, col)
        raise self.mismatch(tok, "a string, an integer, true, false, IDENT.value or a function call")

    def parse_call(self, tok: Token, idents: set[str], depth: int, line: int, col: int) -> Expr:
        name = self.keyword(tok, tuple(FUNCTIONS))
        if name is None:
            raise self.error(tok, f"unknown function '{tok.text}'; expecting one of " + ", ".join(FUNCTIONS))
        self.need_version("1.2", tok, f"function '{name}'")
        if depth >= self.max_nesting:
            line, col = self.positions.line_col(tok.pos)
            raise PolicyLimitError(
                "max_nesting", self.max_nesting, f"function calls nest deeper (line {line}, column {col})"
            )
        spec = FUNCTIONS[name]
        self.path.append(name)
        self.take()
        args: list[Expr] = []
        arg_toks: list[Token] = []
        if not self.is_op(self.peek(), ")"):
            arg_toks.append(self.peek())
            args.append(self.parse_expr(idents, depth + 1))
            while self.is_op(self.peek(), ","):
                self.take()
                arg_toks.append(self.peek())
                args.append(self.parse_expr(idents, depth + 1))
        close = self.take()
        if not self.is_op(close, ")"):
            raise self.mismatch(close, "',' or ')'")
        if len(args) != len(spec.params):
            raise self.error(tok, f"{name} takes {len(spec.params)} argument(s), got {len(args)}")
        for n, (arg, want, atok) in enumerate(zip(args, spec.params, arg_toks, strict=True), 1):
            if want is not None and isinstance(arg, Literal) and type(arg.values[0]) is not want:
                kind = {str: "a string", bool: "a Boolean", int: "an integer"}[want]
                raise self.error(atok, f"argument {n} of {name} must be {kind}")
        self.path.pop()
        return Call(name, tuple(args), spec.impl, spec.taints, line, col)

    # -- actions ---------------------------------------------------------------------------------------
    def parse_action(self, section: str, idents: set[str]) -> Action:
        self.path.append("action")
        tok = self.peek()
        kind = self.keyword(tok, _ACTIONS)
        if kind is None:
            raise self.mismatch(tok, "'permit', 'deny', 'add', 'issue' or 'issueproperty'")
        self.take()
        allowed = _ALLOWED_ACTIONS[section]
        if kind not in allowed:
            if self.lenient and kind == "issue" and section == "authorizationrules":
                self.warn(tok.pos, "'issue' in authorizationrules read as 'add'")
                kind = "add"
            else:
                raise self.error(tok, f"'{kind}' is not allowed in {section} (allowed: {', '.join(allowed)})")
        self.expect_op("(")
        if kind in ("permit", "deny"):
            self.expect_op(")")
            self.path.pop()
            return Action(kind)
        first = self.peek()
        if self.keyword(first, ("claim",)) is not None and self.is_op(self.peek(1), "="):
            self.take()
            self.take()
            ident_tok = self.take()
            if ident_tok.kind != "ident" or ident_tok.text not in idents:
                raise self.error(ident_tok, "claim= names an identifier bound by a condition of this rule")
            self.expect_op(")")
            self.path.pop()
            return Action(kind, claim_ident=ident_tok.text)
        if first.kind == "string" and self.lenient:
            self.warn(first.pos, "positional claim type read as 'type='")
            type_tok = first
            type_expr = self.parse_expr(idents, 0)
        else:
            self.expect_kw(("type",))
            self.expect_op("=")
            type_tok = self.peek()
            type_expr = self.parse_expr(idents, 0)
            if isinstance(type_expr, Literal) and type(type_expr.values[0]) is not str:
                raise self.error(type_tok, "the claim type must be a string")
        self.expect_op(",")
        self.expect_kw(("value",))
        self.expect_op("=")
        value_tok = self.peek()
        value_expr = self.parse_expr(idents, 0)
        self.expect_op(")")
        if kind == "issue":  # literals too large for the token: refused when the policy is set
            self.check_issued_literal(type_tok, type_expr, "name")
            self.check_issued_literal(value_tok, value_expr, "value")
        self.path.pop()
        return Action(kind, type_expr=type_expr, value_expr=value_expr)

    def check_issued_literal(self, tok: Token, expr: Expr, what: str) -> None:
        """The token's size limits (``evaluator._token_claims``), for a literal type or value of ``issue``."""
        if not isinstance(expr, Literal) or type(expr.values[0]) is not str:
            return
        limit = self.limits.max_name_chars if what == "name" else self.limits.max_value_chars
        if len(expr.values[0]) > limit:
            line, col = self.positions.line_col(tok.pos)
            raise PolicyLimitError(
                f"max_{what}_chars", limit, f"an issued claim {what} is longer (line {line}, column {col})"
            )
