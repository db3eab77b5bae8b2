"""Evaluation of a compiled policy against incoming claims (maa-policy.md §5).

Rules run once each, in order, and see every claim added before them: configurationrules, then
authorizationrules, then (only when authorized) issuancerules. Authorization needs at least one
``permit()`` and no ``deny()``; evaluation of authorizationrules stops at the first ``deny()``.

Choices where the doc is silent, all failing closed:
- Comparing values of different types is never equal (``true`` is not ``1``, ``"1"`` is not ``1``);
  ordering operators match Integer claims only.
- Read-only claims (``pcrs`` from the service, and anything derived from them through JmesPath,
  JsonToClaimValue, AppendString or NegateBool, including claims ``add``-ed from such values) cannot be
  ``issue``-d or ``issueproperty``-ed: that is a ``PolicyEvaluationError``.
- ``issue(claim=c)`` copies the claims with issuer ``AttestationPolicy``.
- A claim type computed by an expression must be exactly one String.
- Engine properties are type-checked (``require_valid_aik_cert``/``omit_x5c`` Boolean,
  ``required_pcr_mask`` Integer 0..0xFFFFFF, ``report_validity_in_minutes`` Integer 1..525600,
  ``x-ms-sgx-tcbidentifier`` String); a property must get one value; issuing it again replaces it;
  unknown property names are kept. ``PolicyOutcome.properties`` holds what the policy set; the engine's
  defaults are ``PROPERTY_DEFAULTS``.
- The empty policy (MAA's provisioned TPM default) denies with a message saying no policy is set.
- Incoming claims are limited to ``MAX_CLAIMS`` in all; more is an evaluation error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from affidavit.policy.claims import Claim, ClaimValue, value_type_of
from affidavit.policy.errors import PolicyError, PolicyEvaluationError
from affidavit.policy.functions import MAX_JMES_STEPS
from affidavit.policy.model import MAX_CLAIMS, CompiledPolicy, Condition, Env, Fact, Rule, State

READ_ONLY_CLAIMS = frozenset({("pcrs", "AttestationService")})

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

DENY_REASON = "A Deny claim was issued, authorization failed."
NO_PERMIT_REASON = "No Permit claim was issued, authorization failed."
EMPTY_REASON = (
    "No attestation policy is set for this attestation type (the policy is empty), authorization failed."
)
PERMIT_REASON = "A Permit claim was issued and no Deny claim, authorization succeeded."


@dataclass(frozen=True)
class PolicyOutcome:
    authorized: bool
    reason: str
    claims: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


def evaluate(policy: CompiledPolicy, incoming: Sequence[Claim]) -> PolicyOutcome:
    """Run ``policy`` over ``incoming``; raises only ``PolicyEvaluationError`` (for broken rules or
    malformed claims). A refusal is an outcome with ``authorized=False``, not an exception."""
    if policy.empty:
        return PolicyOutcome(False, EMPTY_REASON)
    st = State(policy.jmes_cache, MAX_JMES_STEPS)
    _load(st, incoming)
    _run(st, policy.rules("configurationrules"))
    _run(st, policy.rules("authorizationrules"), stop_on_deny=True)
    if st.deny or not st.permit:
        return PolicyOutcome(False, DENY_REASON if st.deny else NO_PERMIT_REASON, {}, dict(st.properties))
    _run(st, policy.rules("issuancerules"))
    return PolicyOutcome(True, PERMIT_REASON, _token_claims(st.outgoing), dict(st.properties))


def configuration_properties(policy: CompiledPolicy, incoming: Sequence[Claim] = ()) -> dict[str, Any]:
    """Only the configurationrules' properties: what the engine needs before it verifies evidence."""
    if policy.empty:
        return {}
    st = State(policy.jmes_cache, MAX_JMES_STEPS)
    _load(st, incoming)
    _run(st, policy.rules("configurationrules"))
    return dict(st.properties)


def _load(st: State, incoming: Sequence[Claim]) -> None:
    if len(incoming) > MAX_CLAIMS:
        raise PolicyEvaluationError(f"more than {MAX_CLAIMS} incoming claims")
    for c in incoming:
        if not isinstance(c, Claim) or not isinstance(c.type, str):
            raise PolicyEvaluationError(f"incoming claim {c!r} is not a Claim")
        vt = value_type_of(c.value)
        if c.value_type != vt:
            raise PolicyEvaluationError(f"incoming claim {c.type!r}: valueType {c.value_type} holds a {vt}")
        _add(st, (c.type, c.value, c.issuer, (c.type, c.issuer) in READ_ONLY_CLAIMS))


def _add(st: State, fact: Fact) -> None:
    if len(st.facts) >= MAX_CLAIMS:
        raise PolicyEvaluationError(f"the policy produced more than {MAX_CLAIMS} claims")
    st.facts.append(fact)
    bucket = st.by_type.get(fact[0])
    if bucket is None:
        st.by_type[fact[0]] = [fact]
    else:
        bucket.append(fact)


def _run(st: State, rules: Iterable[Rule], *, stop_on_deny: bool = False) -> None:
    for rule in rules:
        try:
            _fire(st, rule)
        except PolicyEvaluationError as exc:
            raise PolicyEvaluationError(f"{rule.where}: {exc.message}") from None
        except PolicyError:
            raise
        except (RecursionError, MemoryError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise PolicyEvaluationError(f"{rule.where}: evaluation failed ({type(exc).__name__})") from None
        if stop_on_deny and st.deny:
            return


def _match(st: State, cond: Condition, env: Env) -> tuple[Fact, ...] | list[Fact]:
    cands: list[Fact] | tuple[Fact, ...] = (
        st.by_type.get(cond.type_key, ()) if cond.type_key is not None else st.facts
    )
    for test in cond.tests:
        if not cands:
            return ()
        vals = test.rhs.ev(env, st)[0]
        check = test.check
        cands = [f for f in cands if check(f, vals)]
    return cands


def _fire(st: State, rule: Rule) -> None:
    env: Env = {}
    for cond in rule.conditions:
        matched = _match(st, cond, env)
        if cond.negated:
            if matched:
                return
        elif not matched:
            return
        elif cond.ident is not None:
            env[cond.ident] = tuple(matched)  # a snapshot: the action may add claims of the same type
    action = rule.action
    kind = action.kind
    if kind == "permit":
        st.permit = True
        return
    if kind == "deny":
        st.deny = True
        return
    if action.claim_ident is not None:
        produced = [(f[0], f[1], f[3]) for f in env[action.claim_ident]]
    else:
        assert action.type_expr is not None and action.value_expr is not None
        types, _ = action.type_expr.ev(env, st)
        if len(types) != 1 or type(types[0]) is not str:
            raise PolicyEvaluationError("the claim type must be exactly one String")
        values, ro = action.value_expr.ev(env, st)
        produced = [(types[0], v, ro) for v in values]  # type: ignore[misc]
    for ctype, value, ro in produced:
        if ro and kind != "add":
            raise PolicyEvaluationError(
                f"claim {ctype!r} derives from a read-only claim (pcrs) and cannot be used with {kind}"
            )
        _add(st, (ctype, value, "AttestationPolicy", ro))
        if kind == "issue":
            st.outgoing.append((ctype, value))
    if kind == "issueproperty":
        _set_properties(st, produced)


def _set_properties(st: State, produced: list[tuple[str, ClaimValue, bool]]) -> None:
    if not produced:
        return
    name = produced[0][0]
    if len(produced) > 1:
        raise PolicyEvaluationError(f"property {name!r} must get a single value, got {len(produced)}")
    value = produced[0][1]
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


def _token_claims(outgoing: list[tuple[str, ClaimValue]]) -> dict[str, Any]:
    """Identical (type, value) pairs collapse; several values of one type become a list, in issue order."""
    grouped: dict[str, list[ClaimValue]] = {}
    seen: set[tuple[str, type, ClaimValue]] = set()
    for ctype, value in outgoing:
        key = (ctype, type(value), value)
        if key in seen:
            continue
        seen.add(key)
        grouped.setdefault(ctype, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}
