"""policy.explain: the trace agrees with evaluate, names the rules that did not match, hides the policy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from affidavit.policy import DEFAULT_POLICIES, Claim, claims_from_mapping, compile_policy, evaluate, explain
from tests.policy.samples import sgx_claims, tpm_claims

POLICY = """version=1.0;
authorizationrules {
  c:[type=="x-ms-sgx-is-debuggable", value==false] && [type=="x-ms-sgx-svn", value >= 3] => permit();
  c:[type=="x-ms-sgx-mrsigner", value=="secretsigner"] => permit();
};
issuancerules { c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value); };
"""
DENYING = """version=1.0;
authorizationrules {
  c:[type=="x-ms-sgx-tcb-status", value=="OutOfDate"] => deny();
  => permit();
};
"""
ADDING = """version=1.2;
configurationrules { => issueproperty(type="report_validity_in_minutes", value=10); };
authorizationrules {
  => add(type="internal", value="policy-constant-xyz");
  c:[type=="internal", value=="other"] => permit();
  ![type=="x-ms-sgx-mrsigner"] => permit();
};
"""


def test_denial_names_rules_conditions_and_present_values_without_policy_literals() -> None:
    claims = claims_from_mapping(
        {"x-ms-sgx-is-debuggable": False, "x-ms-sgx-svn": 1, "x-ms-sgx-mrsigner": "ab"}
    )
    e = explain(compile_policy(POLICY), claims)
    assert not e.outcome.authorized
    msg = e.denial_message()
    assert msg.startswith("No Permit claim was issued")
    assert "rule 1 of authorizationrules (line 3, column 3), condition at line 3, column 55" in msg
    assert 'no claim "x-ms-sgx-svn"' in msg and "present: 1" in msg
    assert "rule 2 of authorizationrules (line 4, column 3)" in msg and 'present: "ab"' in msg
    assert "secretsigner" not in msg and ">= 3" not in msg  # the policy's literals stay secret
    revealed = e.denial_message(reveal_policy=True)
    assert 'value == "secretsigner"' in revealed and "value >= 3" in revealed
    rules = e.to_dict()["rules"]
    assert [(r["index"], r["fired"]) for r in rules] == [(1, False), (2, False)]
    assert rules[0]["conditions"][0]["held"] is True and rules[0]["conditions"][1]["held"] is False


def test_deny_rule_is_named_and_absent_claims_said_so() -> None:
    e = explain(compile_policy(DENYING), claims_from_mapping({"x-ms-sgx-tcb-status": "OutOfDate"}))
    assert "rule 1 of authorizationrules (line 3, column 3) denied" in e.denial_message()
    assert '"OutOfDate"' in e.denial_message()
    e = explain(compile_policy(POLICY), [])
    assert "none present" in e.denial_message()


def test_values_added_by_rules_are_hidden_and_negations_explained() -> None:
    claims = claims_from_mapping({"x-ms-sgx-mrsigner": "aa"})
    e = explain(compile_policy(ADDING), claims)
    msg = e.denial_message()
    assert "policy-constant-xyz" not in msg and 'claim "internal"' in msg and "none present" in msg
    assert 'claim "x-ms-sgx-mrsigner" is present, the rule needs it absent' in msg
    revealed = explain(compile_policy(ADDING), claims, reveal_policy=True)
    assert "policy-constant-xyz" in revealed.denial_message(reveal_policy=True)
    assert [r.section for r in e.rules][0] == "configurationrules"  # every section is traced


def test_long_values_are_truncated_and_many_counted() -> None:
    many = [Claim("x-ms-sgx-mrsigner", f"s{n}") for n in range(20)]
    assert "and 15 more" in explain(compile_policy(POLICY), many).denial_message()


def test_long_values_are_truncated() -> None:
    claims = [Claim("x-ms-sgx-mrsigner", "f" * 500), Claim("x-ms-sgx-is-debuggable", False, "Boolean")]
    claims += [Claim("x-ms-sgx-svn", n, "Integer") for n in range(3)]
    msg = explain(compile_policy(POLICY), claims).denial_message()
    assert "f" * 100 not in msg and "…" in msg and "present: 0, 1, 2;" in msg


def test_the_default_policies_explain_as_they_evaluate() -> None:
    for att_type, text in DEFAULT_POLICIES.items():
        policy = compile_policy(text)
        for claims in (sgx_claims(), sgx_claims(debuggable=True), tpm_claims(), []):
            assert explain(policy, claims).outcome == evaluate(policy, claims), att_type


_values = st.one_of(
    st.booleans(), st.integers(-5, 10), st.sampled_from(["OutOfDate", "ab", "secretsigner", ""])
)
_types = st.sampled_from(
    ["x-ms-sgx-is-debuggable", "x-ms-sgx-svn", "x-ms-sgx-mrsigner", "x-ms-sgx-tcb-status", "internal"]
)


@given(st.lists(st.tuples(_types, _values), max_size=8), st.sampled_from([POLICY, DENYING, ADDING]))
def test_explain_outcome_equals_evaluate(pairs: list[tuple[str, object]], text: str) -> None:
    claims = [c for t, v in pairs for c in claims_from_mapping({t: v})]
    policy = compile_policy(text)
    e = explain(policy, claims)
    assert e.outcome == evaluate(policy, claims)
    assert isinstance(e.denial_message(), str)
