"""Any text yields a compiled policy or ``PolicyParsingError``; any compiled policy evaluates to an
outcome or ``PolicyEvaluationError``. Never another exception, never a hang."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from affidavit.policy import (
    Claim,
    CompiledPolicy,
    PolicyEvaluationError,
    PolicyParsingError,
    claims_from_list,
    claims_from_mapping,
    compile_policy,
    evaluate,
)
from affidavit.policy.limits import PolicyLimitError

from .samples import sgx_claims, tpm_claims

DATA = Path(__file__).parent / "data"
SEEDS = [p.read_bytes().decode("utf-8") for p in sorted(DATA.glob("*.policy"))]
INCOMING = [*tpm_claims(), *sgx_claims(), Claim("JsonData", "[1,2]", "String", "CustomClaim")]

FRAGMENTS = [
    "version", "=", "1.0", "1.1", "1.2", ";", "configurationrules", "authorizationrules", "issuancerules",
    "{", "}", "[", "]", "(", ")", "=>", "&&", "!", ":", ",", ".", "==", "!=", "<", ">=", "c", "c2", "type",
    "value", "valueType", "issuer", "claim", "permit", "deny", "add", "issue", "issueproperty", "true",
    "false", "0", "15", '"x"', '"events"', '"AttestationService"', '"pcrs"', '"[*]"', '"@"', '"\\\\"',
    "JmesPath", "JsonToClaimValue", "IsSubsetOf", "AppendString", "NegateBool", "ContainsOnlyValue",
    " ", "\n", "//", '"', "\u201d", "-", "/*", "\\",
]  # fmt: skip


def check(text: str, lenient: bool) -> None:
    try:
        policy = compile_policy(text, lenient=lenient)
    except PolicyParsingError as exc:
        assert exc.code == "PolicyParsingError"
        return
    except PolicyLimitError as exc:  # nesting or text size: a named limit
        assert exc.limit in ("max_nesting", "max_text_chars")
        return
    assert isinstance(policy, CompiledPolicy)
    try:
        outcome = evaluate(policy, INCOMING)
    except PolicyEvaluationError as exc:
        assert "rule" in exc.message
        return
    assert isinstance(outcome.authorized, bool)
    assert isinstance(outcome.claims, dict) and isinstance(outcome.properties, dict)


@given(st.text(max_size=300), st.booleans())
def test_random_text(text: str, lenient: bool) -> None:
    check(text, lenient)


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=80), st.booleans())
def test_token_soup(parts: list[str], lenient: bool) -> None:
    check(" ".join(parts), lenient)
    check("version=1.2; issuancerules{" + "".join(parts) + "};", lenient)


@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 20_000), st.integers(0, 12), st.sampled_from(["", *FRAGMENTS])),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_mutated_examples(seed: str, edits: list[tuple[int, int, str]], lenient: bool) -> None:
    text = seed
    for pos, length, insert in edits:
        pos %= len(text) + 1
        text = text[:pos] + insert + text[pos + length :]
    check(text, lenient)


@given(st.text(alphabet="[]{}()@*.|&!=<>`'\"?:,abc0123 -", max_size=60))
def test_random_jmespath_queries(query: str) -> None:
    escaped = query.replace("\\", "\\\\").replace('"', '\\"')
    rule = f'c:[type=="events"] => issue(type="r", value=JmesPath(c.value, "{escaped}"));'
    check(f"version=1.2; authorizationrules{{=> permit();}}; issuancerules{{{rule}}};", False)


@given(st.text(alphabet='[]{}",:0123456789.-eEtruefalsn ', max_size=60))
def test_random_json_into_functions(doc: str) -> None:
    incoming = [Claim("j", doc, "String", "CustomClaim")]
    text = (
        "version=1.2; authorizationrules{=> permit();}; issuancerules{"
        'c:[type=="j"] => issue(type="a", value=JsonToClaimValue(c.value));'
        'c:[type=="j"] => issue(type="b", value=JmesPath(c.value, "@"));};'
    )
    try:
        evaluate(compile_policy(text), incoming)
    except PolicyEvaluationError:
        pass


def test_huge_inputs_are_refused_quickly() -> None:
    for text in ("[" * 200_000, "version=1.2;" + "!" * 500_000, "x" * (2 << 20)):
        try:
            compile_policy(text)
        except (PolicyParsingError, PolicyLimitError):
            continue


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_claim_files_and_mappings(data: object) -> None:
    """The CLI's claim files and the service's claim mappings: claims or PolicyEvaluationError."""
    for convert in (claims_from_list, claims_from_mapping):
        try:
            claims = convert(data)  # type: ignore[arg-type]
        except PolicyEvaluationError:
            continue
        except (AttributeError, TypeError):
            assert not isinstance(data, list if convert is claims_from_list else dict)
            continue
        assert all(isinstance(c, Claim) for c in claims)


def test_deeply_nested_mapping_values() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    try:
        claims_from_mapping({"x": deep})
    except PolicyEvaluationError:
        pass
