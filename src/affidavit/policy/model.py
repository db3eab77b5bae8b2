"""The compiled form of a policy: rules whose conditions and expressions are ready to run.

Runtime values are *sets* (tuples) of scalar claim values: an identifier stands for every claim its
condition matched, so ``c.value`` is the tuple of their values (maa-policy.md §5.3). Each expression
evaluates to ``(values, read_only)``; the flag carries the read-only taint of ``pcrs`` (§5.8).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from affidavit.policy.claims import ClaimValue
from affidavit.policy.limits import DEFAULT_LIMITS, PolicyLimitError, PolicyLimits

Values = tuple[ClaimValue, ...]
# Internal claim form, kept as a tuple for speed: (type, value, issuer, read_only).
Fact = tuple[str, ClaimValue, str, bool]
Env = dict[str, tuple[Fact, ...]]

MAX_CLAIMS = 20_000  # the default of ``PolicyLimits.max_claims``


class State:
    """Everything one evaluation mutates; created per call, so compiled policies stay shareable."""

    __slots__ = (
        "facts",
        "by_type",
        "outgoing",
        "computed_chars",
        "properties",
        "permit",
        "deny",
        "json_cache",
        "jmes_cache",
        "jmes_steps",
        "limits",
        "budget",
        "deadline",
    )

    def __init__(
        self, jmes_cache: dict[str, Any], jmes_steps: int, limits: PolicyLimits | None = None
    ) -> None:
        self.facts: list[Fact] = []
        self.by_type: dict[str, list[Fact]] = {}
        self.outgoing: list[tuple[str, ClaimValue]] = []
        self.computed_chars = 0  # Strings the functions returned so far (``max_computed_chars``)
        self.properties: dict[str, ClaimValue] = {}
        self.permit = False
        self.deny = False
        self.json_cache: dict[str, Any] = {}
        self.jmes_cache = jmes_cache
        self.jmes_steps = jmes_steps
        self.limits: PolicyLimits = limits or DEFAULT_LIMITS  # a ``PolicyLimits``
        self.budget: int = self.limits.max_comparisons  # comparisons left
        self.deadline: float = time.monotonic() + self.limits.max_seconds


class Expr:
    __slots__ = ("line", "column")

    def __init__(self, line: int, column: int) -> None:
        self.line = line
        self.column = column

    def ev(self, env: Env, st: State) -> tuple[Values, bool]:  # pragma: no cover - abstract
        raise NotImplementedError


class Literal(Expr):
    __slots__ = ("values",)

    def __init__(self, value: ClaimValue, line: int, column: int) -> None:
        super().__init__(line, column)
        self.values: Values = (value,)

    def ev(self, env: Env, st: State) -> tuple[Values, bool]:
        return self.values, False


class Ref(Expr):
    """``ident.value``: the values of every claim the identifier's condition matched."""

    __slots__ = ("ident",)

    def __init__(self, ident: str, line: int, column: int) -> None:
        super().__init__(line, column)
        self.ident = ident

    def ev(self, env: Env, st: State) -> tuple[Values, bool]:
        facts = env[self.ident]
        if len(facts) == 1:
            f = facts[0]
            return (f[1],), f[3]
        return tuple(f[1] for f in facts), any(f[3] for f in facts)


FunctionImpl = Callable[[State, list[Values]], Values]


class Call(Expr):
    __slots__ = ("name", "args", "impl", "taints")

    def __init__(
        self, name: str, args: tuple[Expr, ...], impl: FunctionImpl, taints: bool, line: int, column: int
    ) -> None:
        super().__init__(line, column)
        self.name = name
        self.args = args
        self.impl = impl
        self.taints = taints

    def ev(self, env: Env, st: State) -> tuple[Values, bool]:
        vals: list[Values] = []
        ro = False
        for a in self.args:
            v, r = a.ev(env, st)
            vals.append(v)
            ro = ro or r
        out = self.impl(st, vals)
        # Every String a function returns is new memory (AppendString, JmesPath's JSON text): one rule
        # per value would otherwise keep thousands of 1 MiB strings as claims within the time limit.
        made = 0
        for value in out:  # a loop, not sum() over a generator: this runs for every function call
            if type(value) is str:
                made += len(value)
        if made:
            st.computed_chars += made
            if st.computed_chars > st.limits.max_computed_chars:
                limit = st.limits.max_computed_chars
                raise PolicyLimitError("max_computed_chars", limit, "the functions returned too much text")
        return out, ro and self.taints


# A property test: (fact, right-hand values) -> bool.
Check = Callable[[Fact, Values], bool]


@dataclass(frozen=True, slots=True)
class PropTest:
    prop: str  # "type" | "value" | "valueType" | "issuer"
    op: str
    rhs: Expr
    check: Check


@dataclass(frozen=True, slots=True)
class Condition:
    negated: bool
    ident: str | None
    type_key: str | None  # from a `type == "literal"` test: an index lookup instead of a scan
    tests: tuple[PropTest, ...]  # the remaining tests
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # "permit" | "deny" | "add" | "issue" | "issueproperty"
    claim_ident: str | None = None
    type_expr: Expr | None = None
    value_expr: Expr | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    section: str
    index: int  # 1-based within its section
    conditions: tuple[Condition, ...]
    action: Action
    line: int
    column: int
    run: Callable[[State], None] = field(compare=False, repr=False, default=lambda st: None)

    @property
    def where(self) -> str:
        return f"rule {self.index} of {self.section} (line {self.line}, column {self.column})"


@dataclass(frozen=True)
class CompiledPolicy:
    """A parsed, checked policy; evaluation only walks this. ``empty`` is the blank policy (denies all)."""

    text: str
    hash: str
    version: str | None
    sections: tuple[tuple[str, tuple[Rule, ...]], ...]
    warnings: tuple[str, ...] = ()
    lenient: bool = False
    jmes_cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # the bounds it was compiled under, and evaluates under unless told otherwise
    limits: PolicyLimits = field(default=DEFAULT_LIMITS, compare=False, repr=False)
    # (configuration, authorization, issuance) rules, looked up once rather than on every evaluation
    by_section: tuple[tuple[Rule, ...], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = ("configurationrules", "authorizationrules", "issuancerules")
        object.__setattr__(self, "by_section", tuple(self.rules(n) for n in names))

    @property
    def empty(self) -> bool:
        return self.version is None

    @property
    def section_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.sections)

    @property
    def rule_count(self) -> int:
        return sum(len(rules) for _, rules in self.sections)

    def rules(self, section: str) -> tuple[Rule, ...]:
        for name, rules in self.sections:
            if name == section:
                return rules
        return ()
