"""Semantics of maa-policy.md §5 and the choices made where it is silent (see the module docstrings)."""

from __future__ import annotations

import pytest

from affidavit.policy import (
    DEFAULT_POLICIES,
    PROPERTY_DEFAULTS,
    Claim,
    PolicyCompiler,
    PolicyEvaluationError,
    PolicyParsingError,
    claims_from_mapping,
    compile_policy,
    configuration_properties,
    evaluate,
)
from affidavit.policy.evaluator import DENY_REASON, EMPTY_REASON, NO_PERMIT_REASON

from .helpers import run_rules


def c(t: str, v: object, issuer: str = "AttestationService") -> Claim:
    kind = {bool: "Boolean", int: "Integer", str: "String"}[type(v)]
    return Claim(t, v, kind, issuer)  # type: ignore[arg-type]


def authz(rules: str, incoming: list[Claim], version: str = "1.2") -> bool:
    return evaluate(compile_policy(f"version={version}; authorizationrules{{{rules}}};"), incoming).authorized


# -- authorization -------------------------------------------------------------------------------------


def test_deny_wins_whatever_the_order() -> None:
    assert not authz("=> permit(); => deny();", [])
    assert not authz("=> deny(); => permit();", [])


def test_no_permit_or_empty_section_denies() -> None:
    outcome = evaluate(compile_policy("version=1.0; authorizationrules{}; issuancerules{};"), [])
    assert (outcome.authorized, outcome.reason) == (False, NO_PERMIT_REASON)
    outcome = evaluate(compile_policy('version=1.0; issuancerules{=> issue(type="a", value=1);};'), [])
    assert (outcome.authorized, outcome.claims) == (False, {})


def test_denied_policies_issue_nothing() -> None:
    policy = compile_policy(
        'version=1.0; authorizationrules{=> deny();}; issuancerules{=> issue(type="a", value=1);};'
    )
    outcome = evaluate(policy, [])
    assert (outcome.reason, outcome.claims) == (DENY_REASON, {})


def test_empty_policy_denies_clearly() -> None:
    for text in ("", "  \n// nothing\n", DEFAULT_POLICIES["Tpm"]):
        policy = compile_policy(text)
        assert policy.empty and policy.rule_count == 0
        outcome = evaluate(policy, [c("aikValidated", True)])
        assert (outcome.authorized, outcome.reason) == (False, EMPTY_REASON)


# -- rule order and visibility -------------------------------------------------------------------------


def test_rules_run_once_in_order_and_see_earlier_claims_only() -> None:
    rules = (
        '[type=="late"] => issue(type="sawLate", value=true);\n'
        '=> add(type="late", value=1);\n'
        '[type=="late"] => issue(type="sawLateAfter", value=true);\n'
        # would loop forever under fix-point semantics (§5.3)
        'c:[type=="v", issuer=="AttestationPolicy"] => issue(type="v", value=c.value);\n'
        '=> issue(type="v", value=true);\n'
        'c:[type=="v", issuer=="AttestationPolicy"] => issue(type="v", value=c.value);'
    )
    assert run_rules(rules) == {"sawLateAfter": True, "v": True}


def test_authorization_claims_are_visible_to_issuance() -> None:
    text = (
        'version=1.0; authorizationrules{=> add(type="x", value="y"); => permit();};'
        ' issuancerules{c:[type=="x"] => issue(type="z", value=c.value);};'
    )
    assert evaluate(compile_policy(text), []).claims == {"z": "y"}


def test_conditions_are_independent_filters() -> None:
    incoming = [c("a", 1), c("b", True)]
    assert authz('[type=="a"] && [value==true] => permit();', incoming)
    assert not authz('[type=="a", value==true] => permit();', incoming)


def test_identifier_is_the_set_of_matching_claims() -> None:
    incoming = [c("m", "x"), c("m", "y"), c("m", "x")]
    # one action per firing; several values of a type become an array; identical ones collapse
    assert run_rules('c:[type=="m"] => issue(type="out", value=c.value);', incoming) == {"out": ["x", "y"]}
    assert run_rules('c:[type=="m"] => issue(claim=c);', incoming) == {"m": ["x", "y"]}


def test_comparison_with_a_set_valued_right_side() -> None:
    incoming = [c("allowed", "a"), c("allowed", "b"), c("actual", "b"), c("n", 5), c("lim", 3), c("lim", 9)]
    assert authz('F:[type=="allowed"] && [type=="actual", value==F.value] => permit();', incoming)
    assert not authz('F:[type=="allowed"] && [type=="actual", value!=F.value] => permit();', incoming)
    assert not authz('L:[type=="lim"] && [type=="n", value>L.value] => permit();', incoming)  # all members
    assert authz('L:[type=="lim"] && [type=="n", value<L.value] => permit();', [c("n", 1), *incoming[4:]])


def test_claim_issued_with_claim_keeps_type_and_value_under_policy_issuer() -> None:
    rules = (
        'C:[type=="OSName"] => add(claim=C);\n'
        'c:[type=="OSName", issuer=="AttestationPolicy"] => issue(claim=c);'
    )
    assert run_rules(rules, [c("OSName", "Linux")]) == {"OSName": "Linux"}


# -- values and types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "claim", "matches"),
    [
        ("value==true", c("x", True), True),
        ("value==1", c("x", True), False),  # Boolean is not Integer
        ('value=="1"', c("x", 1), False),  # String is not Integer
        ("value!=1", c("x", "1"), True),
        ("value>=0", c("x", 0), True),
        ("value>0", c("x", True), False),  # ordering: Integer claims only
        ("value<10", c("x", "5"), False),
        ('value=="ABC"', c("x", "abc"), False),  # case-sensitive
        ('valueType=="Integer"', c("x", 3), True),
        ('valueType!="Boolean"', c("x", True), False),
        ('issuer=="CustomClaim"', c("x", 1), False),
        ('issuer!="CustomClaim"', c("x", 1), True),
        ('type=="X"', c("x", 1), False),  # claim types are case-sensitive
        ('type!="y"', c("x", 1), True),
    ],
)
def test_property_comparisons(condition: str, claim: Claim, matches: bool) -> None:
    assert authz(f"[{condition}] => permit();", [claim]) is matches


def test_issued_value_types_follow_runtime_values() -> None:
    claims = run_rules(
        '=> issue(type="i", value=100); => issue(type="b", value=false); => issue(type="s", value="t");'
    )
    assert claims == {"i": 100, "b": False, "s": "t"}
    assert type(claims["i"]) is int and type(claims["b"]) is bool


def test_true_and_one_do_not_collapse() -> None:
    assert run_rules('=> issue(type="x", value=true); => issue(type="x", value=1);') == {"x": [True, 1]}


# -- properties ----------------------------------------------------------------------------------------


def test_configuration_properties_and_defaults() -> None:
    sgx = compile_policy(DEFAULT_POLICIES["SgxEnclave"])
    assert configuration_properties(sgx) == {"x-ms-sgx-tcbidentifier": "azuredefault"}
    assert PROPERTY_DEFAULTS["require_valid_aik_cert"] is True
    assert PROPERTY_DEFAULTS["required_pcr_mask"] == 0xFFFFFF


@pytest.mark.parametrize(
    ("prop", "value", "words"),
    [
        ("required_pcr_mask", '"15"', "takes an Integer"),
        ("required_pcr_mask", "16777216", "between"),
        ("require_valid_aik_cert", "1", "takes a Boolean"),
        ("report_validity_in_minutes", "0", "between"),
        ("report_validity_in_minutes", "525601", "between"),
        ("omit_x5c", '"true"', "takes a Boolean"),
        ("x-ms-sgx-tcbidentifier", "11", "takes a String"),
    ],
)
def test_property_types_are_checked(prop: str, value: str, words: str) -> None:
    policy = compile_policy(
        f'version=1.1; configurationrules{{=> issueproperty(type="{prop}", value={value});}};'
        " authorizationrules{=> permit();};"
    )
    with pytest.raises(PolicyEvaluationError, match=words) as err:
        evaluate(policy, [])
    assert "rule 1 of configurationrules (line 1, column 33)" in err.value.message


def test_property_set_twice_keeps_the_last_and_unknown_names_pass() -> None:
    text = (
        'version=1.1; configurationrules{=> issueproperty(type="required_pcr_mask", value=15);'
        ' => issueproperty(type="required_pcr_mask", value=7); => issueproperty(type="custom", value="x");};'
        ' authorizationrules{=> permit();}; issuancerules{=> issueproperty(type="omit_x5c", value=true);};'
    )
    outcome = evaluate(compile_policy(text), [])
    assert outcome.properties == {"required_pcr_mask": 7, "custom": "x", "omit_x5c": True}


# -- read-only pcrs ------------------------------------------------------------------------------------


def test_pcrs_taint_follows_derived_values() -> None:
    pcrs = c("pcrs", '{"PCRs":[{"Index":0,"Digests":{"SHA256":"aa"}}]}')
    ok = (
        'c:[type=="pcrs", issuer=="AttestationService"] => '
        'add(type="d", value=JmesPath(c.value, "PCRs[0].Index"));'
        '\nc:[type=="d"] => issue(type="ok", value=ContainsOnlyValue(c.value, "0"));'
        '\nc:[type=="pcrs"] && [type=="d", value=="0"] => issue(type="cmp", value=true);'
    )
    assert run_rules(ok, [pcrs]) == {"ok": True, "cmp": True}
    for bad in (
        'c:[type=="pcrs"] => issue(claim=c);',
        'c:[type=="pcrs"] => issue(type="x", value=AppendString(c.value, ""));',
        'c:[type=="pcrs"] => add(type="d", value=c.value);\n'
        'c:[type=="d"] => issueproperty(type="p", value=c.value);',
    ):
        with pytest.raises(PolicyEvaluationError, match="read-only"):
            run_rules(bad, [pcrs])
    # a pcrs claim from the attester is not the service's read-only claim
    assert run_rules('c:[type=="pcrs"] => issue(claim=c);', [c("pcrs", "x", "CustomClaim")]) == {"pcrs": "x"}


# -- parse-time checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("version=1.0; configurationrules{}; authorizationrules{=> permit();};", "requires version 1.1"),
        ('version=1.1; authorizationrules{![type=="a"] => permit();};', "requires version 1.2"),
        (
            'version=1.1; authorizationrules{=> add(type="a", value=NegateBool(true));};',
            "requires version 1.2",
        ),
        ("version=1.3; authorizationrules{};", "expecting a version"),
        ("version=1; authorizationrules{};", "expecting a version"),
        ("version=1.0; issuancerules{}; authorizationrules{};", "expecting <EOF>"),
        ("version=1.0; authorizationrules{}; authorizationrules{};", "expecting 'issuancerules' or <EOF>"),
        ("version=1.0; authorizationrules{=> permit();}", "expecting ';'"),
        ("version=1.0; issuancerules{=> permit();};", "not allowed in issuancerules"),
        ('version=1.0; authorizationrules{=> issueproperty(type="a", value=1);};', "not allowed"),
        ('version=1.1; configurationrules{=> add(type="a", value=1);};', "not allowed in configurationrules"),
        ('version=1.0; authorizationrules{[type=="a", value==c.value] => permit();};', "not bound"),
        ('version=1.0; authorizationrules{c:[type=="a"] && c:[type=="b"] => permit();};', "already bound"),
        ('version=1.2; authorizationrules{!c:[type=="a"] => permit();};', "cannot bind"),
        ('version=1.0; authorizationrules{type:[type=="a"] => permit();};', "keyword"),
        ('version=1.0; authorizationrules{[issuer=="Attester"] => permit();};', "unknown issuer"),
        ('version=1.0; authorizationrules{[type<"a"] => permit();};', "only '==' and '!='"),
        ('version=1.0; authorizationrules{[value<"a"] => permit();};', "Integer values only"),
        ('version=1.0; authorizationrules{[valueType=="Float"] => permit();};', "valueType"),
        ("version=1.0; authorizationrules{[value==-1] => permit();};", "token recognition error at: '-'"),
        ("version=1.0; authorizationrules{[value==0x10] => permit();};", "expecting ',' or ']'"),
        ("version=1.0; authorizationrules{[value==99999999999999999999] => permit();};", "out of range"),
        ("version=1.0; authorizationrules{[value==1.5] => permit();};", "decimal"),
        ("version=1.0; /* c */ authorizationrules{};", "token recognition error at: '/'"),
        (
            'version=1.0; issuancerules{c:[type=="a"] => issue(type="b", value=c.type);};',
            "expecting 'value'",
        ),
        ('version=1.0; authorizationrules{[type=="a\\q"] => permit();};', "unknown escape"),
        ('version=1.0; authorizationrules{[type=="a] => permit();};', "unterminated"),
        ('version=1.2; authorizationrules{=> add(type="a", value=NegateBool("x"));};', "must be a Boolean"),
        ("version=1.2; authorizationrules{=> add(type=1, value=1);};", "type must be a string"),
        ("VERSION=1.0; authorizationrules{};", "expecting 'version'"),
        ("version=1.0; Authorizationrules{};", "expecting 'configurationrules'"),
    ],
)
def test_strict_parse_errors(text: str, words: str) -> None:
    with pytest.raises(PolicyParsingError) as err:
        compile_policy(text)
    assert words in err.value.message
    assert err.value.line >= 1 and err.value.column >= 1


def test_lenient_accepts_keyword_case_and_single_equals_with_warnings() -> None:
    text = 'Version=1.0; AuthorizationRules{[type="a", value=true] => Permit()};'
    policy = compile_policy(text, lenient=True)
    assert len(policy.warnings) == 6
    assert evaluate(policy, [c("a", True)]).authorized


def test_strict_and_lenient_agree_on_valid_text() -> None:
    text = DEFAULT_POLICIES["SgxEnclave"]
    assert compile_policy(text, lenient=True).warnings == ()


def test_whitespace_and_comments_are_insignificant() -> None:
    a = 'version=1.0;authorizationrules{c:[type=="a",value>=0]=>permit();};'
    b = (
        'version = 1.0 ;\n// x\nauthorizationrules\t{ c : [ type == "a" , value >= 0 ] // y\n'
        " => permit ( ) ; } ;"
    )
    for text in (a, b):
        assert authz_text(text, [c("a", 0)])


def authz_text(text: str, incoming: list[Claim]) -> bool:
    return evaluate(compile_policy(text), incoming).authorized


# -- limits, errors, caching ---------------------------------------------------------------------------


def test_claim_explosion_is_bounded() -> None:
    rules = '=> add(type="x", value=1);\n' + 'c:[type=="x"] => add(type="x", value=c.value);\n' * 25
    with pytest.raises(PolicyEvaluationError, match="max_claims"):
        run_rules(rules)


def test_malformed_incoming_claims_are_evaluation_errors() -> None:
    policy = compile_policy("version=1.0; authorizationrules{=> permit();};")
    with pytest.raises(PolicyEvaluationError, match="valueType"):
        evaluate(policy, [Claim("a", "1", "Integer")])
    with pytest.raises(PolicyEvaluationError):
        evaluate(policy, [Claim("a", 1.5, "Integer")])  # type: ignore[arg-type]
    with pytest.raises(PolicyEvaluationError, match="not a Claim"):
        evaluate(policy, [("a", 1)])  # type: ignore[list-item]
    with pytest.raises(PolicyEvaluationError, match="sequence"):
        evaluate(policy, 5)  # type: ignore[arg-type]
    assert evaluate(policy, (x for x in [Claim("a", 1, "Integer")])).authorized


def test_claims_from_mapping() -> None:
    got = claims_from_mapping(
        {"b": True, "i": 7, "s": "x", "o": {"k": [1, 2]}, "l": [1, "a"], "n": None, "f": 0.5}
    )
    assert got == [
        Claim("b", True, "Boolean"),
        Claim("i", 7, "Integer"),
        Claim("s", "x", "String"),
        Claim("o", '{"k":[1,2]}', "String"),
        Claim("l", '[1,"a"]', "String"),
        Claim("f", "0.5", "String"),
    ]
    assert claims_from_mapping({"a": 1}, issuer="CustomClaim")[0].issuer == "CustomClaim"


def test_compiler_caches_by_hash() -> None:
    compiler = PolicyCompiler(max_entries=2)
    a = compiler.compile(DEFAULT_POLICIES["SgxEnclave"])
    assert compiler.compile(DEFAULT_POLICIES["SgxEnclave"]) is a
    assert compiler.compile(DEFAULT_POLICIES["SgxEnclave"], lenient=True) is not a
    compiler.compile(DEFAULT_POLICIES["TdxVm"])
    assert len(compiler) == 2
    with pytest.raises(PolicyParsingError):
        compiler.compile("version=9;")


def test_bytes_input_must_be_utf8() -> None:
    assert compile_policy(DEFAULT_POLICIES["SgxEnclave"].encode()).version == "1.1"
    with pytest.raises(PolicyParsingError, match="UTF-8"):
        compile_policy(b"\xff\xfe")


def test_tdx_default_permits_and_issues() -> None:
    incoming = claims_from_mapping(
        {
            "tdx_mrtd": "aa",
            "tdx_td_attributes_debug": False,
            "x-ms-attestation-type": "tdx",
            "tdx_rtmr0": "00",
        }
    )
    outcome = evaluate(compile_policy(DEFAULT_POLICIES["TdxVm"]), incoming)
    assert outcome.authorized
    assert outcome.claims == {"is-debuggable": False, "tdx-mrtd": "aa", "tdx-rtmr0": "00", "tee": "tdx"}
