"""Turns a parsed rule into one closure, specialised for the common shapes (a single ``type ==``
condition, literal tests, ``value=c.value``), so evaluation is a few dictionary lookups per rule.
This is the hot path: the SGX default must evaluate in well under 50 microseconds.

Work is bounded by the evaluation's ``PolicyLimits`` (``st.limits``): every claim a condition tests is
charged to ``max_comparisons`` (which also checks ``max_seconds``), the claim set is capped at
``max_claims`` and the token's values at ``max_issued`` (their sizes, ``max_name_chars``,
``max_value_chars`` and ``max_issued_chars``, when the token's claims are built: ``evaluator``). Tests
against a computed (set) right side hash the set once (equality) or reduce it to its minimum/maximum
(orderings), so a join of n claims against m values costs n + m, not n * m."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from affidavit.policy.claims import ClaimValue, value_type_of
from affidavit.policy.errors import PolicyEvaluationError
from affidavit.policy.limits import PolicyLimitError
from affidavit.policy.model import Action, Condition, Env, Fact, Literal, PropTest, Ref, State, Values

RuleRunner = Callable[[State], None]
Matcher = Callable[[State, Env], Sequence[Fact]]
ActionRunner = Callable[[State, Env], None]

_EMPTY: tuple[Fact, ...] = ()
POLICY = "AttestationPolicy"


def charge(st: State, n: int) -> None:
    """Count ``n`` comparisons against the budget and check the wall-time limit."""
    st.budget -= n
    if st.budget < 0:
        raise PolicyLimitError("max_comparisons", st.limits.max_comparisons, "too many claim comparisons")
    check_deadline(st)


def check_deadline(st: State) -> None:
    if time.monotonic() > st.deadline:
        raise PolicyLimitError("max_seconds", st.limits.max_seconds, "evaluation took too long")


def check_issued(st: State) -> None:
    if len(st.outgoing) > st.limits.max_issued:
        raise PolicyLimitError("max_issued", st.limits.max_issued, "too many issued claim values")


def add_fact(st: State, fact: Fact) -> None:
    facts = st.facts
    if len(facts) >= st.limits.max_claims:
        raise PolicyLimitError("max_claims", st.limits.max_claims, "the policy produced too many claims")
    if not len(facts) & 1023:
        check_deadline(st)
    facts.append(fact)
    bucket = st.by_type.get(fact[0])
    if bucket is None:
        st.by_type[fact[0]] = [fact]
    else:
        bucket.append(fact)


def _matcher(cond: Condition) -> Matcher:
    key = cond.type_key
    tests = cond.tests
    if not tests:  # the condition was just `type == "literal"` (it always has one test at least)
        return lambda st, env: st.by_type.get(key, _EMPTY)  # type: ignore[arg-type]
    if all(isinstance(t.rhs, Literal) for t in tests):
        checks = tuple(t.check for t in tests)
        if len(checks) == 1:
            (check,) = checks

            def match_one(st: State, env: Env) -> Sequence[Fact]:
                cands = st.by_type.get(key, _EMPTY) if key is not None else st.facts
                charge(st, len(cands))
                return [f for f in cands if check(f, ())]

            return match_one

        def match_literals(st: State, env: Env) -> Sequence[Fact]:
            cands = st.by_type.get(key, _EMPTY) if key is not None else st.facts
            charge(st, len(cands) * len(checks))
            return [f for f in cands if all(ch(f, ()) for ch in checks)]

        return match_literals

    filters = tuple((test, _set_filter(test)) for test in tests)

    def match_general(st: State, env: Env) -> Sequence[Fact]:
        cands: Sequence[Fact] = st.by_type.get(key, _EMPTY) if key is not None else st.facts
        for test, by_set in filters:
            if not cands:
                return _EMPTY
            vals = test.rhs.ev(env, st)[0]
            charge(st, len(cands) + len(vals))
            if by_set is not None:
                cands = by_set(cands, vals)
            else:
                check = test.check
                cands = [f for f in cands if check(f, vals)]
        return cands

    return match_general


def condition_matcher(cond: Condition) -> Matcher:
    """The claims one condition matches (for ``policy.explain``, which traces conditions one by one)."""
    return _matcher(cond)


SetFilter = Callable[[Sequence[Fact], Values], list[Fact]]
_FACT_INDEX = {"type": 0, "value": 1, "issuer": 2}


def _set_filter(test: PropTest) -> SetFilter | None:
    """The test against a computed right side as one pass over the candidates (None: a literal right
    side or a valueType test, which ``test.check`` does in constant time per claim). Same semantics as
    the parser's generic checks: ``==`` equals a member, ``!=`` equals no member, an ordering holds for
    every member; against an empty set all are false. Members are keyed by (type, value), so ``true``
    never equals ``1``."""
    if isinstance(test.rhs, Literal) or test.prop not in _FACT_INDEX:
        return None
    i = _FACT_INDEX[test.prop]
    op = test.op
    if op in ("==", "!="):
        keep = op == "=="

        def by_members(cands: Sequence[Fact], vals: Values) -> list[Fact]:
            if not vals:
                return []
            members = {(type(v), v) for v in vals}
            return [f for f in cands if ((type(f[i]), f[i]) in members) is keep]

        return by_members

    def by_bound(cands: Sequence[Fact], vals: Values) -> list[Fact]:
        if not vals or any(type(v) is not int for v in vals):
            return []
        if op == "<":
            lo = min(vals)
            return [f for f in cands if type(f[i]) is int and f[i] < lo]  # type: ignore[operator]
        if op == "<=":
            lo = min(vals)
            return [f for f in cands if type(f[i]) is int and f[i] <= lo]  # type: ignore[operator]
        hi = max(vals)
        if op == ">":
            return [f for f in cands if type(f[i]) is int and f[i] > hi]  # type: ignore[operator]
        return [f for f in cands if type(f[i]) is int and f[i] >= hi]  # type: ignore[operator]

    return by_bound


def _produce(kind: str, st: State, ctype: str, values: Values, ro: bool) -> None:
    if not values:
        return
    if ro and kind != "add":
        raise PolicyEvaluationError(
            f"claim {ctype!r} derives from a read-only claim (pcrs) and cannot be used with {kind}"
        )
    for v in values:
        add_fact(st, (ctype, v, POLICY, ro))
    if kind == "issue":
        st.outgoing.extend((ctype, v) for v in values)
        check_issued(st)
    elif kind == "issueproperty":
        set_property(st, ctype, values)


PROPERTY_DEFAULTS: dict[str, ClaimValue] = {
    "require_valid_aik_cert": True,
    "required_pcr_mask": 0xFFFFFF,
    "x-ms-sgx-tcbidentifier": "azuredefault",
    "report_validity_in_minutes": 1440,
    "omit_x5c": False,
}
_PROPERTY_RULES: dict[str, tuple[type, int | None, int | None]] = {
    "require_valid_aik_cert": (bool, None, None),
    "omit_x5c": (bool, None, None),
    "required_pcr_mask": (int, 0, 0xFFFFFF),
    "report_validity_in_minutes": (int, 1, 525_600),
    "x-ms-sgx-tcbidentifier": (str, None, None),
}
_KIND_NAMES = {bool: "a Boolean", int: "an Integer", str: "a String"}


def set_property(st: State, name: str, values: Values) -> None:
    if len(values) > 1:
        raise PolicyEvaluationError(f"property {name!r} must get a single value, got {len(values)}")
    value = values[0]
    rule = _PROPERTY_RULES.get(name)
    if rule is not None:
        kind, lo, hi = rule
        if type(value) is not kind:
            raise PolicyEvaluationError(
                f"property {name!r} takes {_KIND_NAMES[kind]}, got {value_type_of(value)}"
            )
        if lo is not None and hi is not None and not lo <= value <= hi:  # type: ignore[operator]
            raise PolicyEvaluationError(f"property {name!r} must be between {lo} and {hi}, got {value}")
    st.properties[name] = value


def _action(action: Action) -> ActionRunner:
    kind = action.kind
    if kind == "permit":

        def permit(st: State, env: Env) -> None:
            st.permit = True

        return permit
    if kind == "deny":

        def deny(st: State, env: Env) -> None:
            st.deny = True

        return deny
    ident = action.claim_ident
    if ident is not None:

        def copy_claims(st: State, env: Env) -> None:
            for f in env[ident]:
                _produce(kind, st, f[0], (f[1],), f[3])

        return copy_claims
    type_expr, value_expr = action.type_expr, action.value_expr
    assert type_expr is not None and value_expr is not None
    if isinstance(type_expr, Literal):
        ctype = type_expr.values[0]
        assert isinstance(ctype, str)
        if isinstance(value_expr, Ref) and kind == "issue":
            ref = value_expr.ident

            def issue_ref(st: State, env: Env) -> None:
                facts = env[ref]
                if len(facts) == 1:
                    f = facts[0]
                    if f[3]:
                        _produce(kind, st, ctype, (f[1],), True)
                        return
                    add_fact(st, (ctype, f[1], POLICY, False))
                    st.outgoing.append((ctype, f[1]))
                    check_issued(st)
                    return
                _produce(kind, st, ctype, *value_expr.ev(env, st))

            return issue_ref

        def fixed_type(st: State, env: Env) -> None:
            _produce(kind, st, ctype, *value_expr.ev(env, st))

        return fixed_type

    def computed_type(st: State, env: Env) -> None:
        types = type_expr.ev(env, st)[0]
        if len(types) != 1 or type(types[0]) is not str:
            raise PolicyEvaluationError("the claim type must be exactly one String")
        _produce(kind, st, types[0], *value_expr.ev(env, st))

    return computed_type


def build_runner(conditions: tuple[Condition, ...], action: Action) -> RuleRunner:
    act = _action(action)
    if not conditions:
        return lambda st: act(st, {})
    if len(conditions) == 1:
        cond = conditions[0]
        match = _matcher(cond)
        ident = cond.ident
        if cond.negated:

            def run_absent(st: State) -> None:
                if not match(st, {}):
                    act(st, {})

            return run_absent

        def run_one(st: State) -> None:
            matched = match(st, {})
            if matched:
                act(st, {ident: tuple(matched)} if ident is not None else {})

        return run_one
    steps = tuple((_matcher(c), c.negated, c.ident) for c in conditions)

    def run_many(st: State) -> None:
        env: Env = {}
        for match, negated, ident in steps:
            matched = match(st, env)
            if negated:
                if matched:
                    return
            elif not matched:
                return
            elif ident is not None:
                env[ident] = tuple(matched)  # a snapshot: the action may add claims of the same type
        act(st, env)

    return run_many
