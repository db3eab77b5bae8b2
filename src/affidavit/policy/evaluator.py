"""Evaluation of a compiled policy against incoming claims (maa-policy.md §5).

Rules run once each, in order, and see every claim added before them: configurationrules, then
authorizationrules, then (only when authorized) issuancerules. Authorization needs at least one
``permit()`` and no ``deny()``; evaluation of authorizationrules stops at the first ``deny()``.

Choices where the doc is silent, all failing closed:
- Comparing values of different types is never equal (``true`` is not ``1``, ``"1"`` is not ``1``);
  ordering operators match Integer claims only. Against a computed (set) right side, ``==`` means
  "equals a member", ``!=`` "equals no member", an ordering must hold for every member, and every
  comparison with an empty set is false.
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
- ``add`` does not merge identical claims in the incoming set (a JSON array with duplicates yields
  several claims, as documented); only the token's claims collapse identical (type, value) pairs.
- Work is bounded by ``PolicyLimits`` (claims in the set, comparisons, issued values, wall time; see
  ``affidavit.policy.limits``); exceeding one raises ``PolicyLimitError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from affidavit.policy.claims import Claim, ClaimValue
from affidavit.policy.errors import PolicyError, PolicyEvaluationError
from affidavit.policy.functions import MAX_JMES_STEPS
from affidavit.policy.limits import PolicyLimitError, PolicyLimits
from affidavit.policy.model import CompiledPolicy, Fact, Rule, State
from affidavit.policy.runner import PROPERTY_DEFAULTS, check_deadline

__all__ = ["PROPERTY_DEFAULTS", "PolicyOutcome", "configuration_properties", "evaluate"]

DENY_REASON = "A Deny claim was issued, authorization failed."
NO_PERMIT_REASON = "No Permit claim was issued, authorization failed."
EMPTY_REASON = (
    "No attestation policy is set for this attestation type (the policy is empty), authorization failed."
)
PERMIT_REASON = "A Permit claim was issued and no Deny claim, authorization succeeded."

_VALUE_TYPES = {bool: "Boolean", int: "Integer", str: "String"}

RuleHook = Callable[[State, Rule], None]
"""Called with the evaluation state before each rule runs (``explain`` records its trace); its errors are
the rule's."""


@dataclass(frozen=True)
class PolicyOutcome:
    authorized: bool
    reason: str
    claims: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


def evaluate(
    policy: CompiledPolicy,
    incoming: Sequence[Claim],
    *,
    limits: PolicyLimits | None = None,
    trace: RuleHook | None = None,
) -> PolicyOutcome:
    """Run ``policy`` over ``incoming``; raises only ``PolicyEvaluationError`` (for broken rules,
    malformed claims, or a ``PolicyLimitError`` when ``limits``, by default the ones the policy was
    compiled under, are exceeded). A refusal is an outcome with ``authorized=False``, not an exception.
    ``trace`` (``explain``'s hook) sees each rule before it runs; without one the loop pays one test."""
    if policy.empty:
        return PolicyOutcome(False, EMPTY_REASON)
    st = _start(policy, incoming, limits)
    config, authz, issuance = policy.by_section
    if config:
        _run(st, config, False, trace)
    if authz:
        _run(st, authz, True, trace)
    if st.deny or not st.permit:
        return PolicyOutcome(False, DENY_REASON if st.deny else NO_PERMIT_REASON, {}, dict(st.properties))
    if issuance:
        _run(st, issuance, False, trace)
    return PolicyOutcome(True, PERMIT_REASON, _token_claims(st.outgoing, st.limits), dict(st.properties))


def configuration_properties(
    policy: CompiledPolicy, incoming: Sequence[Claim] = (), *, limits: PolicyLimits | None = None
) -> dict[str, Any]:
    """Only the configurationrules' properties: what the engine needs before it verifies evidence."""
    if policy.empty:
        return {}
    st = _start(policy, incoming, limits)
    _run(st, policy.by_section[0])
    return dict(st.properties)


def _start(policy: CompiledPolicy, incoming: Sequence[Claim], limits: PolicyLimits | None) -> State:
    try:
        claims = incoming if isinstance(incoming, list | tuple) else list(incoming)
    except TypeError:
        raise PolicyEvaluationError("incoming claims must be a sequence of Claim") from None
    st = State(policy.jmes_cache, MAX_JMES_STEPS, limits or policy.limits)
    if len(claims) > st.limits.max_claims:
        raise PolicyLimitError("max_claims", st.limits.max_claims, f"{len(claims)} incoming claims")
    facts: list[Fact] = st.facts
    by_type = st.by_type
    value_types = _VALUE_TYPES
    for c in claims:
        try:
            ctype, value, issuer, declared = c.type, c.value, c.issuer, c.value_type
        except AttributeError:
            raise PolicyEvaluationError(f"incoming claim {c!r} is not a Claim") from None
        if value_types.get(type(value)) != declared or type(ctype) is not str:
            raise PolicyEvaluationError(
                f"incoming claim {ctype!r}: value {value!r} does not fit valueType {declared!r}"
            )
        fact = (ctype, value, issuer, ctype == "pcrs" and issuer == "AttestationService")
        facts.append(fact)
        bucket = by_type.get(ctype)
        if bucket is None:
            by_type[ctype] = [fact]
        else:
            bucket.append(fact)
    return st


def _run(
    st: State, rules: tuple[Rule, ...], stop_on_deny: bool = False, trace: RuleHook | None = None
) -> None:
    """The one rule loop (``evaluate``, ``configuration_properties``, ``explain``): the deadline before each
    rule, every error as ``PolicyEvaluationError`` naming the rule, and ``deny()`` ending authorization."""
    for rule in rules:
        try:
            check_deadline(st)
            if trace is not None:
                trace(st, rule)
            rule.run(st)
        except PolicyLimitError as exc:
            raise exc.at(rule.where) from None
        except PolicyEvaluationError as exc:
            raise PolicyEvaluationError(f"{rule.where}: {exc.message}") from None
        except PolicyError:
            raise
        except Exception as exc:  # backstop: nothing but PolicyError escapes
            raise PolicyEvaluationError(f"{rule.where}: evaluation failed ({type(exc).__name__})") from None
        if stop_on_deny and st.deny:
            return


def _token_claims(outgoing: list[tuple[str, ClaimValue]], limits: PolicyLimits) -> dict[str, Any]:
    """Identical (type, value) pairs collapse; several values of one type become a list, in issue order.
    Pairs are keyed by (type, value type, value) in a set, so de-duplication is linear (``true`` and
    ``1`` stay distinct).

    The token's size is bounded here, on the pairs it will hold (every String a rule computes or copies
    from a claim becomes token text): each type within ``max_name_chars``, each String value within
    ``max_value_chars``, all of them within ``max_issued_chars``. Here and not per ``issue``: once per
    evaluation, in the loop that runs anyway (per issue it cost the SGX default policy 25% of its rate)."""
    out: dict[str, Any] = {}
    seen: set[tuple[str, type, ClaimValue]] = set()
    chars = 0
    for ctype, value in outgoing:
        key = (ctype, type(value), value)
        if key in seen:
            continue
        seen.add(key)
        chars += len(ctype)
        if type(value) is str:
            chars += len(value)
        if ctype not in out:
            out[ctype] = value
            continue
        current = out[ctype]
        if type(current) is list:
            current.append(value)
        else:
            out[ctype] = [current, value]
    if chars > min(limits.max_name_chars, limits.max_value_chars):  # else no one pair can be over
        _check_sizes(seen, limits)
    if chars > limits.max_issued_chars:
        raise PolicyLimitError("max_issued_chars", limits.max_issued_chars, "the issued claims are too large")
    return out


def _check_sizes(pairs: set[tuple[str, type, ClaimValue]], limits: PolicyLimits) -> None:
    for ctype, _, value in pairs:
        if len(ctype) > limits.max_name_chars:
            raise PolicyLimitError(
                "max_name_chars", limits.max_name_chars, f"an issued claim type has {len(ctype)} characters"
            )
        if type(value) is str and len(value) > limits.max_value_chars:
            raise PolicyLimitError(
                "max_value_chars", limits.max_value_chars, f"{ctype[:64]!r} is issued {len(value)} characters"
            )
