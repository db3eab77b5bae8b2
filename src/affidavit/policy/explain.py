"""Why a policy decided as it did: a trace of every rule, and a denial message that names the rules.

``evaluate`` stays the fast path and knows nothing of this module; ``explain`` runs the same evaluation
(``evaluate`` itself, with a trace hook its rule loop calls before each rule) and records for each rule
whether its conditions held and, where one did not, which claim it looked for and which values of that
type were present. So the trace costs nothing unless it is asked for (the service asks only when a policy
denies, or for a draft policy).

Secrecy: the values shown are those of incoming claims issued by the service or the attester
(``AttestationService``, ``CustomClaim``), i.e. what the evidence itself says; values that rules added
(``AttestationPolicy``) and the policy's own literals appear only with ``reveal_policy=True`` (the
draft endpoint and the CLI, whose caller wrote the policy).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from affidavit.policy.claims import Claim
from affidavit.policy.evaluator import DENY_REASON, EMPTY_REASON, PolicyOutcome, evaluate
from affidavit.policy.limits import PolicyLimits
from affidavit.policy.model import Call, CompiledPolicy, Condition, Env, Expr, Literal, Ref, Rule, State
from affidavit.policy.runner import condition_matcher

MAX_VALUES_SHOWN = 5  # values of one claim type listed per condition
MAX_VALUE_CHARS = 64  # each cut to this length
MAX_RULES_NAMED = 8  # rules named in one denial message
POLICY_ISSUER = "AttestationPolicy"


@dataclass(frozen=True)
class ConditionTrace:
    """One condition of a rule as evaluated: what it looked for, how many claims matched, and the values
    of that claim type that were present (only evidence values; see the module docstring)."""

    line: int
    column: int
    negated: bool
    claim_type: str | None
    tests: str
    matched: int
    held: bool
    present: tuple[str, ...] = ()
    present_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "negated": self.negated,
            "claim_type": self.claim_type,
            "tests": self.tests,
            "matched": self.matched,
            "held": self.held,
            "present": list(self.present),
            "present_total": self.present_total,
        }


@dataclass(frozen=True)
class RuleTrace:
    section: str
    index: int
    line: int
    column: int
    action: str
    fired: bool
    conditions: tuple[ConditionTrace, ...]

    @property
    def where(self) -> str:
        return f"rule {self.index} of {self.section} (line {self.line}, column {self.column})"

    @property
    def failed(self) -> ConditionTrace | None:
        """The condition that stopped the rule (None when it fired)."""
        return next((c for c in self.conditions if not c.held), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "index": self.index,
            "line": self.line,
            "column": self.column,
            "action": self.action,
            "fired": self.fired,
            "conditions": [c.to_dict() for c in self.conditions],
        }


@dataclass(frozen=True)
class Explanation:
    outcome: PolicyOutcome
    rules: tuple[RuleTrace, ...] = field(default_factory=tuple)

    def denial_message(self, *, reveal_policy: bool = False) -> str:
        """MAA's reason, followed by the authorization rules that decided (or failed to) and why."""
        if self.outcome.authorized:
            return self.outcome.reason
        authz = [r for r in self.rules if r.section == "authorizationrules"]
        if self.outcome.reason == DENY_REASON:
            fired = [r for r in authz if r.fired and r.action == "deny"]
            parts = [f"{r.where} denied{_matched_text(r, reveal_policy)}" for r in fired[:1]]
            return f"{self.outcome.reason} " + "; ".join(parts) if parts else self.outcome.reason
        if self.outcome.reason == EMPTY_REASON:
            return self.outcome.reason
        unmatched = [r for r in authz if not r.fired and r.action == "permit"]
        if not unmatched:
            return self.outcome.reason + " No authorization rule issues permit()."
        parts = [_why_not(r, reveal_policy) for r in unmatched[:MAX_RULES_NAMED]]
        more = len(unmatched) - MAX_RULES_NAMED
        tail = f"; and {more} more" if more > 0 else ""
        return f"{self.outcome.reason} Permit rules that did not match: " + "; ".join(parts) + tail

    def to_dict(self) -> dict[str, Any]:
        return {
            "authorized": self.outcome.authorized,
            "reason": self.outcome.reason,
            "rules": [r.to_dict() for r in self.rules],
        }


def _why_not(rule: RuleTrace, reveal: bool) -> str:
    cond = rule.failed
    if cond is None:
        return rule.where
    what = f"claim {json.dumps(cond.claim_type)}" if cond.claim_type is not None else "a claim"
    where = f"{rule.where}, condition at line {cond.line}, column {cond.column}"
    tests = f" with {cond.tests}" if cond.tests and reveal else (" matching its tests" if cond.tests else "")
    if cond.negated:
        return f"{where}: {what}{tests} is present, the rule needs it absent"
    if cond.present_total:
        shown = ", ".join(cond.present)
        extra = f" and {cond.present_total - len(cond.present)} more" if cond.present_total > len(
            cond.present) else ""
        return f"{where}: no {what}{tests}; present: {shown}{extra}"
    return f"{where}: no {what}{tests}; none present"


def _matched_text(rule: RuleTrace, reveal: bool) -> str:
    shown = [f"{c.claim_type} = {', '.join(c.present)}" for c in rule.conditions
             if not c.negated and c.claim_type is not None and c.present]
    return f" (matched {'; '.join(shown)})" if shown else ""


def _expr_text(expr: Expr) -> str:
    if isinstance(expr, Literal):
        return json.dumps(expr.values[0])
    if isinstance(expr, Ref):
        return f"{expr.ident}.value"
    if isinstance(expr, Call):
        return f"{expr.name}({', '.join(_expr_text(a) for a in expr.args)})"
    return "…"


def _cut(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _present(st: State, cond: Condition, reveal: bool) -> tuple[tuple[str, ...], int]:
    if cond.type_key is None:
        return (), 0
    values = [f[1] for f in st.by_type.get(cond.type_key, ()) if reveal or f[2] != POLICY_ISSUER]
    distinct = list(dict.fromkeys(_cut(v) for v in values))
    return tuple(distinct[:MAX_VALUES_SHOWN]), len(distinct)


def _trace_rule(st: State, rule: Rule, reveal: bool) -> RuleTrace:
    env: Env = {}
    traces: list[ConditionTrace] = []
    fired = True
    for cond in rule.conditions:
        matched = condition_matcher(cond)(st, env)
        held = not matched if cond.negated else bool(matched)
        present, total = _present(st, cond, reveal)
        tests = " and ".join(f"{t.prop} {t.op} {_expr_text(t.rhs)}" for t in cond.tests)
        traces.append(ConditionTrace(cond.line, cond.column, cond.negated, cond.type_key, tests,
                                     len(matched), held, present, total))
        if not held:
            fired = False
            break
        if not cond.negated and cond.ident is not None:
            env[cond.ident] = tuple(matched)
    return RuleTrace(rule.section, rule.index, rule.line, rule.column, rule.action.kind, fired, tuple(traces))


def explain(
    policy: CompiledPolicy,
    incoming: Sequence[Claim],
    *,
    reveal_policy: bool = False,
    limits: PolicyLimits | None = None,
) -> Explanation:
    """Evaluate ``policy`` with :func:`affidavit.policy.evaluate` itself (the same rule loop, limits and
    errors) and trace every rule it runs, before the rule runs."""
    traces: list[RuleTrace] = []

    def hook(st: State, rule: Rule) -> None:
        traces.append(_trace_rule(st, rule, reveal_policy))

    outcome = evaluate(policy, incoming, limits=limits, trace=hook)
    return Explanation(outcome, tuple(traces))
