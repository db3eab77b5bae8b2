"""The 1.2 functions: the documented examples of maa-policy.md §5.8 (typos fixed, noted per test) and
the error cases the doc lists."""

from __future__ import annotations

import pytest

from affidavit.policy import Claim, PolicyEvaluationError, PolicyParsingError, compile_policy

from .helpers import run_rules


def s(t: str, v: object, issuer: str = "CustomClaim") -> Claim:
    kind = {bool: "Boolean", int: "Integer", str: "String"}[type(v)]
    return Claim(t, v, kind, issuer)  # type: ignore[arg-type]


def test_jmespath_over_literal_json_gives_json_text() -> None:
    rule = r'=>add(type="JmesPathResult", value=JmesPath("{\"foo\": \"bar\"}", "foo"));'
    assert run_rules(rule, show=["JmesPathResult"]) == {"JmesPathResult": '"bar"'}


def test_jmespath_with_query_from_a_claim() -> None:
    # Doc writes c1:[type="JsonData"] (single '='): invalid strictly, fine leniently.
    incoming = [s("JsonData", '{"values": [0,1,2,3,4]}'), s("JmesPathQuery", "values[2]")]
    doc_rule = (
        'c1:[type="JsonData"] && c2:[type=="JmesPathQuery"] =>\n'
        'add(type="JmesPathResult", value=JmesPath(c1.value, c2.value));'
    )
    with pytest.raises(PolicyParsingError):
        run_rules(doc_rule, incoming, ["JmesPathResult"])
    assert run_rules(doc_rule, incoming, ["JmesPathResult"], lenient=True) == {"JmesPathResult": "2"}
    fixed = doc_rule.replace('type="JsonData"', 'type=="JsonData"')
    assert run_rules(fixed, incoming, ["JmesPathResult"]) == {"JmesPathResult": "2"}


@pytest.mark.parametrize(
    ("json_text", "expected"),
    [("100", 100), ("true", True), ('"abc"', "abc"), ('[0, "abc", true]', [0, "abc", True])],
)
def test_json_to_claim_value(json_text: str, expected: object) -> None:
    rule = 'c:[type=="JsonData"] => add(type="Result", value=JsonToClaimValue(c.value));'
    assert run_rules(rule, [s("JsonData", json_text)], ["Result"]) == {"Result": expected}


def test_json_to_claim_value_of_null_adds_nothing() -> None:
    rule = 'c:[type=="JsonData"] => add(type="Result", value=JsonToClaimValue(c.value));'
    assert run_rules(rule, [s("JsonData", "null")], ["Result"]) == {}


def test_json_to_claim_value_array_makes_one_claim_per_element() -> None:
    rules = (
        'c:[type=="JsonData"] => add(type="Result", value=JsonToClaimValue(c.value));\n'
        'c:[type=="Result"] => issue(type="count", value=ContainsOnlyValue(c.value, 7));'
    )
    assert run_rules(rules, [s("JsonData", "[7, 7, 7]")]) == {"count": True}


@pytest.mark.parametrize(
    ("json_text", "words"),
    [
        ("1.5", "fraction"),
        ('{"a": 1}', "object"),
        ("[1, [2]]", "nested array"),
        ('[1, {"a": 2}]', "object"),
        ("[1, null]", "null"),
        ("abc", "not valid JSON"),  # the doc's own input: not JSON
        ("NaN", "not valid JSON"),
    ],
)
def test_json_to_claim_value_errors(json_text: str, words: str) -> None:
    rule = 'c:[type=="JsonData"] => add(type="Result", value=JsonToClaimValue(c.value));'
    with pytest.raises(PolicyEvaluationError, match=words) as err:
        run_rules(rule, [s("JsonData", json_text)])
    assert "rule 1 of issuancerules (line 4, column 1)" in err.value.message


def test_is_subset_of_binds_whole_sets() -> None:
    incoming = [
        s("Subset", "abc"),
        s("Subset", 100),
        s("Superset", True),
        s("Superset", "abc"),
        s("Superset", 100),
    ]
    rule = (
        'c1:[type == "Subset"] && c2:[type=="Superset"] => '
        'add(type="IsSubset", value=IsSubsetOf(c1.value, c2.value));'
    )
    assert run_rules(rule, incoming, ["IsSubset"]) == {"IsSubset": True}  # one claim, not one per pair
    reverse = rule.replace("IsSubsetOf(c1.value, c2.value)", "IsSubsetOf(c2.value, c1.value)")
    assert run_rules(reverse, incoming, ["IsSubset"]) == {"IsSubset": False}


def test_is_subset_of_is_type_aware() -> None:
    rule = 'c1:[type=="A"] && c2:[type=="B"] => add(type="R", value=IsSubsetOf(c1.value, c2.value));'
    assert run_rules(rule, [s("A", True), s("B", 1)], ["R"]) == {"R": False}


def test_append_string() -> None:
    # Doc binds `c` and then uses `c1`; as written that is an unbound identifier.
    doc_rule = (
        'c:[type=="String1"] && c2:[type=="String2"] => '
        'add(type="Result", value=AppendString(c1.value, c2.value));'
    )
    with pytest.raises(PolicyParsingError, match="not bound"):
        compile_policy(f"version=1.2; authorizationrules{{{doc_rule}}};")
    fixed = doc_rule.replace("c:[", "c1:[")
    assert run_rules(fixed, [s("String1", "abc"), s("String2", "xyz")], ["Result"]) == {"Result": "abcxyz"}
    with pytest.raises(PolicyEvaluationError, match="must be a String"):
        run_rules(fixed, [s("String1", "abc"), s("String2", 5)])


def test_negate_bool() -> None:
    with pytest.raises(PolicyParsingError, match="unknown function 'NegateBol'"):
        run_rules('c:[type=="Input"] => add(type="Result", value=NegateBol(c.value));')
    rule = 'c:[type=="Input"] => add(type="Result", value=NegateBool(c.value));'
    assert run_rules(rule, [s("Input", True)], ["Result"]) == {"Result": False}
    with pytest.raises(PolicyEvaluationError, match="must be a Boolean"):
        run_rules(rule, [s("Input", "true")])


def test_contains_only_value() -> None:
    with pytest.raises(PolicyParsingError, match="takes 2 argument"):
        run_rules('c:[type=="Set"] => add(type="Result", value=ContainsOnlyValue(100));')
    rule = 'c:[type=="Set"] => add(type="Result", value=ContainsOnlyValue(c.value, 100));'
    assert run_rules(rule, [s("Set", 100), s("Set", 101)], ["Result"]) == {"Result": False}
    assert run_rules(rule, [s("Set", 100), s("Set", 100)], ["Result"]) == {"Result": True}
    assert run_rules(rule, [s("Set", "100")], ["Result"]) == {"Result": False}


def test_absence_condition_adds_missing_claim() -> None:
    rule = '![type=="Claim3"] => add(type="Claim3", value=300);'
    assert run_rules(rule, [s("Claim1", 100), s("Claim2", 200)], ["Claim3"]) == {"Claim3": 300}
    assert run_rules(rule, [s("Claim3", 1)], ["Claim3"]) == {}


def test_equals_ignore_case_and_escapes() -> None:
    doc = (
        '[{"EVENT_FILEPATH": "\\\\Windows\\\\System32\\\\drivers\\\\WdBoot.sys", '
        '"EVENT_IMAGEVALIDATED": true}, {"x": 1}]'
    )
    rule = (
        'c:[type=="mods"] => add(type="elam", value=JsonToClaimValue(JmesPath(c.value, '
        '"[? EVENT_IMAGEVALIDATED == `true` && '
        "equals_ignore_case(EVENT_FILEPATH, '\\\\windows\\\\system32\\\\drivers\\\\wdboot.sys')] | "
        'length(@) == `1`")));'
    )
    assert run_rules(rule, [s("mods", doc)], ["elam"]) == {"elam": True}


def test_single_value_arguments_refuse_sets() -> None:
    rule = 'c:[type=="j"] => add(type="r", value=JsonToClaimValue(c.value));'
    with pytest.raises(PolicyEvaluationError, match="holds 2 values"):
        run_rules(rule, [s("j", "1"), s("j", "2")])


def test_empty_argument_makes_an_empty_result() -> None:
    rules = (
        'c:[type=="j"] => add(type="r", value=NegateBool(JsonToClaimValue(c.value)));\n'
        '![type=="r"] => add(type="r", value="absent");'
    )
    assert run_rules(rules, [s("j", "null")], ["r"]) == {"r": "absent"}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("length(@) == 1", "invalid query"),  # bare number: a JMESPath syntax error
        ("abs(@)", "failed"),  # runtime type error
        ("[@,@][]|" * 30 + "length(@)", "limits"),  # doubles a real list each step
        ("{a:@,b:@}|" * 40 + "@", "limits"),  # shares sub-objects: exponential when serialised
        ("to_string({a:@,b:@}|" + "{a:@,b:@}|" * 40 + "@)", "limits"),
        ("!" * 5000 + "@", "query longer|nests too deeply|invalid query"),
    ],
)
def test_pathological_queries_fail_cleanly(query: str, words: str) -> None:
    rule = f'c:[type=="j"] => add(type="r", value=JmesPath(c.value, "{query}"));'
    with pytest.raises(PolicyEvaluationError, match=words):
        run_rules(rule, [s("j", "[1, 2, 3]")])


def test_deep_json_fails_cleanly() -> None:
    rule = 'c:[type=="j"] => add(type="r", value=JmesPath(c.value, "@"));'
    with pytest.raises(PolicyEvaluationError, match="not valid JSON"):
        run_rules(rule, [s("j", "[" * 100_000 + "]" * 100_000)])


def test_bad_query_in_a_rule_that_never_fires_is_harmless() -> None:
    """E-22's broken System Guard JMESPath is never executed; the policy must still work."""
    rules = 'c:[type=="absent"] => add(type="r", value=JmesPath(c.value, "length(@) == \'1\' && ]"));'
    assert run_rules(rules, [s("j", "1")]) == {}
