"""The compiled JMESPath engine against jmespath's own tree interpreter: the same result, the same error
type and the same step count for generated queries over generated documents, and the same bounds."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import jmespath.visitor
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.policy import claims_from_mapping, compile_policy, evaluate
from affidavit.policy.functions import _FUNCTIONS
from affidavit.policy.jmes_compiled import BudgetExceeded, Run, compile_ast

MAX_LIST = 1000


class _Budget(Exception):
    pass


class Reference(jmespath.visitor.TreeInterpreter):
    """jmespath's interpreter, counting one step per node visit and bounding lists as the engine does."""

    def __init__(self, steps: int) -> None:
        super().__init__(jmespath.Options(custom_functions=_FUNCTIONS))
        self.steps = steps

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        self.steps -= 1
        if self.steps < 0:
            raise _Budget
        result = super().visit(node, *args, **kwargs)
        if type(result) is list and len(result) > MAX_LIST:
            raise _Budget
        return result


def outcomes(query: str, data: Any, steps: int = 100_000) -> tuple[Any, Any]:
    parsed = jmespath.compile(query).parsed
    ref = Reference(steps)
    try:
        expected: Any = ("ok", json.dumps(ref.visit(parsed, data), sort_keys=True), ref.steps)
    except _Budget:
        expected = ("budget",)
    except Exception as exc:  # noqa: BLE001 - the reference's error type is what is compared
        expected = ("error", type(exc).__name__)
    run = Run(steps, MAX_LIST, _FUNCTIONS)
    try:
        got: Any = ("ok", json.dumps(compile_ast(parsed)(data, run), sort_keys=True), run.steps)
    except BudgetExceeded:
        got = ("budget",)
    except Exception as exc:  # noqa: BLE001
        got = ("error", type(exc).__name__)
    return expected, got


KEYS = ("a", "b", "c", "PcrIndex", "Value")
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.5, -1.5, 2.0])
    | st.sampled_from(["", "a", "b", "EV_IPL", "A"])
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=25,
)

literals = st.sampled_from(
    ["`0`", "`1`", "`2`", "`true`", "`false`", "`null`", "'a'", "''", "`[]`", "`{}`", "`[1, true]`", "`1.0`"]
)
fields = st.sampled_from(KEYS + ("@",))


def _queries() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        op = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
        fn1 = st.sampled_from(
            ["length", "keys", "values", "sort", "reverse", "type", "to_string", "to_number", "to_array",
             "not_null", "abs", "floor", "ceil", "sum", "avg", "max", "min"]
        )
        return st.one_of(
            st.tuples(inner, fields).map(lambda t: f"{t[0]}.{t[1]}" if t[1] != "@" else t[0]),
            st.tuples(inner, st.integers(-2, 2)).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, st.sampled_from(["[1:]", "[::-1]", "[:2]", "[::2]"])).map("".join),
            inner.map(lambda q: f"{q}[*]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[*].{t[1]}"),
            inner.map(lambda q: f"{q}.*"),
            inner.map(lambda q: f"{q}[]"),
            st.tuples(inner, fields, op, literals).map(lambda t: f"{t[0]}[?{t[1]} {t[2]} {t[3]}]"),
            st.tuples(inner, fields, op, fields).map(lambda t: f"{t[0]}[?{t[1]} {t[2]} {t[3]}]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} || {t[1]}"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} && {t[1]}"),
            inner.map(lambda q: f"!({q})"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} | {t[1]}"),
            st.tuples(inner, inner).map(lambda t: f"[{t[0]}, {t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"{{x: {t[0]}, y: {t[1]}}}"),
            st.tuples(fn1, inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(inner, fields).map(lambda t: f"sort_by({t[0]}, &{t[1]})"),
            st.tuples(inner, fields).map(lambda t: f"max_by({t[0]}, &{t[1]})"),
            st.tuples(fields, inner).map(lambda t: f"map(&{t[0]}, {t[1]})"),
            st.tuples(inner, literals).map(lambda t: f"contains({t[0]}, {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"equals_ignore_case({t[0]}, {t[1]})"),
            st.tuples(inner, literals).map(lambda t: f"{t[0]} == {t[1]}"),
            st.tuples(fields, literals).map(lambda t: f"{t[0]} == {t[1]}"),
            st.tuples(fields, literals).map(lambda t: f"{t[0]} != {t[1]}"),
        )

    return st.recursive(fields | literals, extend, max_leaves=8)


@settings(max_examples=600)
@given(_queries(), documents)
def test_compiled_matches_the_tree_interpreter(query: str, data: Any) -> None:
    try:
        jmespath.compile(query)
    except Exception:  # noqa: BLE001 - generated text that is not a query: nothing to compare
        return
    expected, got = outcomes(query, data)
    assert got == expected, query


@settings(max_examples=200)
@given(_queries(), documents, st.integers(0, 40))
def test_small_budgets_run_out_where_the_interpreter_runs_out(query: str, data: Any, steps: int) -> None:
    try:
        jmespath.compile(query)
    except Exception:  # noqa: BLE001
        return
    expected, got = outcomes(query, data, steps)
    assert got == expected, query


EVENTS = {
    "Events": [
        {"EventSeq": 0, "PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
         "ProcessedData": {"UnicodeName": "SecureBoot", "VariableData": "AQ"}},
        {"EventSeq": 1, "PcrIndex": 12, "EventTypeString": "EV_EVENT_TAG",
         "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_CODEINTEGRITY": True,
                                                   "EVENT_BITLOCKER_UNLOCK": {"Value": 0}}}},
        {"EventSeq": 2, "PcrIndex": 0, "EventTypeString": "EV_IPL", "ProcessedData": None},
    ]
}


@pytest.mark.parametrize(
    "query",
    [
        "Events[?EventTypeString == 'EV_EFI_VARIABLE_DRIVER_CONFIG' && PcrIndex == `7`]",
        "Events[? EventTypeString == 'EV_EVENT_TAG' && (PcrIndex == `12` || PcrIndex == `13`)]"
        ".ProcessedData.EVENT_TRUSTBOUNDARY",
        "Events[?ProcessedData.UnicodeName == 'SecureBoot'] | length(@) >= `1`"
        " && @[0].ProcessedData.VariableData",
        "Events[*].ProcessedData.EVENT_TRUSTBOUNDARY.EVENT_BITLOCKER_UNLOCK | @[? Value != `0`].Value | @[0]",
        "Events[*].PcrIndex | sort(@) | reverse(@)",
        "Events[].ProcessedData.*",
        "max_by(Events, &PcrIndex).EventSeq",
        "Events[?PcrIndex == `true`]",
        "Events[?`0` == PcrIndex]",
        "Events[*].[EventSeq, PcrIndex][]",
        "length(Events[?!ProcessedData])",
        "Events[?PcrIndex > `5`].EventSeq",
        "Events[?PcrIndex > 'a']",
    ],
)
def test_tpm_style_queries(query: str) -> None:
    expected, got = outcomes(query, EVENTS)
    assert got == expected


def test_oversized_lists_are_refused_at_the_node_that_makes_them() -> None:
    big = {"a": list(range(MAX_LIST + 1))}
    assert outcomes("a", big)[1] == ("budget",)
    assert outcomes("a[*]", {"a": [list(range(MAX_LIST + 1))]})[1] == ("budget",)
    assert outcomes("length(a)", {"a": list(range(MAX_LIST))}) == (("ok", str(MAX_LIST), 100_000 - 2),) * 2


def test_policy_results_are_the_same_as_before() -> None:
    policy = compile_policy(
        "version=1.2; authorizationrules { => permit(); }; issuancerules {\n"
        'c:[type=="events"] => add(type="tags", value=JmesPath(c.value, '
        '"Events[?EventTypeString == \'EV_EVENT_TAG\'].ProcessedData.EVENT_TRUSTBOUNDARY"));\n'
        'c:[type=="tags"] => issue(type="ci", '
        'value=JsonToClaimValue(JmesPath(c.value, "[0].EVENT_CODEINTEGRITY")));\n'
        'c:[type=="tags"] => issue(type="tags", value=c.value);\n'
        "};"
    )
    outcome = evaluate(policy, claims_from_mapping({"events": EVENTS}))
    assert outcome.claims["ci"] is True
    assert json.loads(outcome.claims["tags"]) == [
        {"EVENT_CODEINTEGRITY": True, "EVENT_BITLOCKER_UNLOCK": {"Value": 0}}
    ]


def _compliance_cases() -> list[Any]:
    """The JMESPath compliance suite (compliance/*.json): in no PyPI package, so `make setup` fetches it
    (scripts/jmespath_compliance.py) into the virtualenv; AFFIDAVIT_JMESPATH_COMPLIANCE names another copy."""
    import os
    import sys
    from pathlib import Path

    fetched = Path(sys.prefix) / "share" / "jmespath-compliance"
    where = Path(os.environ.get("AFFIDAVIT_JMESPATH_COMPLIANCE", fetched))
    cases = []
    for path in sorted(where.glob("*.json")) if where.is_dir() else []:
        for group in json.loads(path.read_text()):
            for case in group["cases"]:
                if "result" in case or "error" in case:
                    cases.append(pytest.param(group["given"], case, id=f"{path.stem}:{case['expression']}"))
    return cases or [pytest.param(None, None, marks=pytest.mark.skip(reason="no JMESPath compliance suite"))]


@pytest.mark.parametrize("given, case", _compliance_cases())
def test_jmespath_compliance(given: Any, case: dict[str, Any]) -> None:
    expression = case["expression"]
    try:
        parsed = jmespath.compile(expression).parsed
    except ValueError:  # jmespath's errors are ValueErrors, as its own compliance runner takes them
        assert "error" in case, expression
        return
    run = Run(1_000_000, 100_000, _FUNCTIONS)
    if "result" in case:
        assert compile_ast(parsed)(given, run) == case["result"], expression
    else:
        with pytest.raises(ValueError):
            compile_ast(parsed)(given, run)
