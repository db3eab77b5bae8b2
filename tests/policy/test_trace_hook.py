"""The evaluator's one rule loop and its trace hook (what ``explain`` uses): the hook sees each rule before
it runs, in order, stopping where evaluation stops, and its failures are the rule's typed error."""

from __future__ import annotations

from typing import Any

import pytest

from affidavit.policy import Claim, compile_policy, evaluate, explain
from affidavit.policy.errors import PolicyEvaluationError
from affidavit.policy.limits import PolicyLimitError, PolicyLimits

POLICY = """version=1.1;
configurationrules{ => issueproperty(type="omit_x5c", value=true); };
authorizationrules{
  c:[type=="a"] => permit();
  c:[type=="b"] => deny();
  => permit();
};
issuancerules{ => issue(type="x", value=1); };"""


def test_the_hook_sees_every_rule_the_loop_runs_and_nothing_after_a_deny() -> None:
    policy = compile_policy(POLICY)
    seen: list[tuple[str, int]] = []

    def hook(_st: Any, rule: Any) -> None:
        seen.append((rule.section, rule.index))

    outcome = evaluate(policy, [Claim("a", "1")], trace=hook)
    assert outcome.authorized and outcome.claims == {"x": 1}
    assert [s for s, _ in seen] == ["configurationrules"] + ["authorizationrules"] * 3 + ["issuancerules"]
    seen.clear()
    denied = evaluate(policy, [Claim("b", "1")], trace=hook)
    assert not denied.authorized and seen[-1][0] == "authorizationrules"
    assert len(seen) == 3  # configuration, the rule on "a", the deny; then the loop stops
    assert evaluate(policy, [Claim("b", "1")]) == denied == explain(policy, [Claim("b", "1")]).outcome


def test_a_failing_hook_is_the_rules_typed_error() -> None:
    policy = compile_policy(POLICY)

    def broken(_st: Any, _rule: Any) -> None:
        raise KeyError("oops")

    with pytest.raises(PolicyEvaluationError, match=r"rule .* evaluation failed \(KeyError\)"):
        evaluate(policy, [], trace=broken)


def test_explain_runs_under_the_same_limits_as_evaluate() -> None:
    policy = compile_policy(POLICY, limits=PolicyLimits(max_claims=1))
    for run in (lambda c: evaluate(policy, c), lambda c: explain(policy, c)):
        with pytest.raises(PolicyLimitError):
            run([Claim("a", "1"), Claim("a", "2")])
