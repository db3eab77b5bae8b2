"""Policy evaluation limits : each limit is refused by name; joins and de-duplication are linear."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.policy import Claim, PolicyCompiler, PolicyEvaluationError, compile_policy, evaluate
from affidavit.policy.compiler import compiled_size
from affidavit.policy.limits import DEFAULT_LIMITS, PolicyLimitError, PolicyLimits
from affidavit.policy.model import PropTest, Ref
from affidavit.policy.parser import _make_check
from affidavit.policy.runner import _set_filter

PERMIT = "version=1.2; authorizationrules{=> permit();};"


def doubling_attack(doublings: int = 15) -> str:
    """The issue's request: two claim types doubled ``doublings`` times, then one equality join."""
    rules = ['=> add(type="A", value="a");', '=> add(type="B", value="a");']
    for _ in range(doublings):
        rules.append('c:[type=="A"] => add(type="A", value=c.value);')
        rules.append('c:[type=="B"] => add(type="B", value=c.value);')
    rules.append('c:[type=="A"] && d:[type=="B", value==c.value] => permit();')
    return "version=1.0; authorizationrules{\n" + "\n".join(rules) + "\n};"


def refused(text: str, limit: str, incoming: list[Claim] | None = None, **limits: float) -> None:
    lim = PolicyLimits(**limits) if limits else DEFAULT_LIMITS  # type: ignore[arg-type]
    with pytest.raises(PolicyLimitError) as err:
        evaluate(compile_policy(text, limits=lim), incoming or [], limits=lim)
    assert err.value.limit == limit and limit in err.value.message
    assert isinstance(err.value, PolicyEvaluationError) and err.value.code == "PolicyEvaluationError"


def test_the_doubling_attack_is_refused_by_the_claim_limit_quickly() -> None:
    start = time.perf_counter()
    refused(doubling_attack(), "max_claims")
    assert time.perf_counter() - start < 1.0


def test_an_equality_join_hashes_instead_of_scanning() -> None:
    # 32,768 x 32,768 claims: 10^9 comparisons as a scan (tens of seconds), 65,536 with a hash set.
    limits = PolicyLimits(max_claims=200_000, max_seconds=30)
    policy = compile_policy(doubling_attack())
    start = time.perf_counter()
    assert evaluate(policy, [], limits=limits).authorized
    assert time.perf_counter() - start < 2.0


def test_issuance_deduplication_is_linear() -> None:
    # 20,000 distinct values issued (the issue measured 4.9 s with pairwise de-duplication).
    text = (
        "version=1.2; authorizationrules{=> permit();}; issuancerules{"
        'c:[type=="n"] => issue(type="out", value=c.value);};'
    )
    incoming = [Claim("n", f"value-{i}") for i in range(20_000)]
    start = time.perf_counter()
    out = evaluate(compile_policy(text), incoming, limits=PolicyLimits(max_claims=50_000, max_issued=50_000))
    assert time.perf_counter() - start < 1.0
    assert len(out.claims["out"]) == 20_000


def test_each_limit_is_refused_by_name() -> None:
    refused(PERMIT, "max_claims", [Claim("a", str(i)) for i in range(11)], max_claims=10)
    many = [Claim("a", str(i)) for i in range(1000)]
    scan = 'version=1.0; authorizationrules{c:[type=="a", value=="x"] => permit();};'
    refused(scan, "max_comparisons", many * 3, max_comparisons=2000)
    issue_all = (
        'version=1.0; authorizationrules{=> permit();}; issuancerules{c:[type=="a"] => issue(claim=c);};'
    )
    refused(issue_all, "max_issued", many, max_issued=999)
    nested = 'version=1.2; authorizationrules{=> add(type="a", value=' + "NegateBool(" * 5 + "true" + ")" * 5
    with pytest.raises(PolicyLimitError, match="max_nesting") as err:
        compile_policy(nested + ");};", limits=PolicyLimits(max_nesting=4))
    assert "line 1" in err.value.message
    compile_policy(nested + ");};", limits=PolicyLimits(max_nesting=5))
    with pytest.raises(PolicyLimitError, match="max_text_chars"):
        compile_policy(PERMIT + " " * 100, limits=PolicyLimits(max_text_chars=len(PERMIT) + 99))
    with pytest.raises(PolicyLimitError, match="max_text_chars"):
        PolicyCompiler(limits=PolicyLimits(max_text_chars=10)).compile(PERMIT)
    # Wall time: 400 rules each scanning 10,000 claims, well under the comparison budget.
    slow = "version=1.0; authorizationrules{" + 'c:[type=="a", value=="x"] => permit();' * 400 + "};"
    big = [Claim("a", str(i)) for i in range(10_000)]
    refused(slow, "max_seconds", big, max_seconds=0.05, max_comparisons=10**9)
    # ... and of compiling: 80,000 rules (1 MiB) take seconds to parse.
    huge = "version=1.0; authorizationrules{" + "\n".join(["=> permit();"] * 80_000) + "};"
    start = time.perf_counter()
    with pytest.raises(PolicyLimitError, match="max_seconds") as err:
        compile_policy(huge, limits=PolicyLimits(max_seconds=0.1))
    assert time.perf_counter() - start < 1.0 and "compiling" in err.value.message


def test_defaults_are_documented_values() -> None:
    assert DEFAULT_LIMITS.as_dict() == {
        "max_claims": 20_000, "max_comparisons": 2_000_000, "max_issued": 10_000, "max_name_chars": 1024,
        "max_value_chars": 1 << 20, "max_issued_chars": 1 << 22, "max_computed_chars": 16 << 20,
        "max_nesting": 32, "max_text_chars": 1 << 20, "max_seconds": 1.0,
    }
    with pytest.raises(ValueError):
        PolicyLimits(max_claims=0)


values = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from(["", "a", "1", "true"]))


@given(
    st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
    st.lists(values, max_size=6),
    st.lists(values, max_size=6),
)
def test_set_filters_agree_with_the_pairwise_checks(op: str, facts: list[object], rhs: list[object]) -> None:
    """The hashed / bounded filters give exactly what the per-claim checks give (true is not 1)."""
    computed = Ref("c", 1, 1)  # a computed right side: a set of values
    check = _make_check("value", op, computed)
    fast = _set_filter(PropTest("value", op, computed, check))
    assert fast is not None
    cands = [("t", v, "AttestationService", False) for v in facts]
    vals = tuple(rhs)
    assert fast(cands, vals) == [f for f in cands if check(f, vals)]  # type: ignore[arg-type]


def test_the_compiled_policy_cache_is_bounded_by_bytes_and_keeps_no_drafts() -> None:
    texts = [f"{PERMIT} // {i:04d} " + "x" * 4000 for i in range(10)]
    budget = 3 * compiled_size(texts[0])
    compiler = PolicyCompiler(max_entries=1000, max_bytes=budget)
    for text in texts:
        compiler.compile(text)
        assert compiler.cached_bytes <= budget
    assert len(compiler) == 3  # the three most recent
    assert compiler.compile(texts[-1]) is compiler.compile(texts[-1])
    drafts = PolicyCompiler()
    drafts.compile(texts[0], keep=False)
    assert len(drafts) == 0 and drafts.cached_bytes == 0
    # a policy larger than the whole budget is compiled but not kept
    tiny = PolicyCompiler(max_bytes=1000)
    tiny.compile(PERMIT)
    assert len(tiny) == 0


def grown(doublings: int, issue: str) -> str:
    """A policy that doubles a 16-character string ``doublings`` times (``AppendString``), then runs
    ``issue`` (``c`` is the doubled string)."""
    rules = ['=> add(type="s0", value="xxxxxxxxxxxxxxxx");']
    for i in range(doublings):
        rules.append(f'c:[type=="s{i}"] => add(type="s{i + 1}", value=AppendString(c.value, c.value));')
    rules.append(f'c:[type=="s{doublings}"] => {issue};')
    return "version=1.2; authorizationrules{=> permit();}; issuancerules{" + "\n".join(rules) + "};"


def test_issued_claim_sizes_are_refused_by_name_when_evaluated() -> None:
    # 16 << 6 = 1,024 characters: at the default name limit; one more is over.
    assert len(evaluate(compile_policy(grown(6, "issue(type=c.value, value=1)")), []).claims) == 1
    refused(grown(6, 'issue(type=AppendString(c.value, "!"), value=1)'), "max_name_chars")
    # Values: at the limit, and one more character (AppendString's own bound is 1 MiB).
    out = evaluate(compile_policy(grown(16, 'issue(type="v", value=c.value)')), [])
    assert len(out.claims["v"]) == DEFAULT_LIMITS.max_value_chars
    refused(grown(6, 'issue(type="v", value=c.value)'), "max_value_chars", max_value_chars=1023)
    # Every issued value counts with its type towards the total, through each issuing path: "v" or "s6"
    # and 1,024 characters.
    for issue in ('issue(type="v", value=c.value)', "issue(claim=c)"):
        refused(grown(6, issue), "max_issued_chars", max_issued_chars=1024)
        evaluate(compile_policy(grown(6, issue)), [], limits=PolicyLimits(max_issued_chars=1024 + 2))
    incoming = [Claim("t", "x" * 600), Claim("t", "y" * 600)]
    refused('version=1.0; authorizationrules{=> permit();}; issuancerules{c:[type=="t"] => issue(claim=c);};',
            "max_issued_chars", incoming, max_issued_chars=1200)


def test_issued_literals_too_large_are_refused_when_compiled() -> None:
    for literal, limit in (('issue(type="' + "n" * 1025 + '", value=1)', "max_name_chars"),
                           ('issue(type="n", value="' + "v" * 101 + '")', "max_value_chars")):
        text = "version=1.0; authorizationrules{=> permit();}; issuancerules{=> " + literal + ";};"
        with pytest.raises(PolicyLimitError) as err:
            compile_policy(text, limits=PolicyLimits(max_value_chars=100))
        assert err.value.limit == limit and "line 1, column" in err.value.message
    # add() claims are not token claims: no limit on their literals.
    long_add = 'version=1.0; authorizationrules{=> add(type="' + "n" * 2000 + '", value=1); => permit();};'
    compile_policy(long_add)


def test_text_the_functions_return_is_bounded_even_when_nothing_is_issued() -> None:
    # 33 distinct 512 KiB strings kept as claims (16.5 MiB with the doublings): over 16 MiB.
    add = 'add(type="x", value=AppendString("{}", c.value))'
    copies = '; c:[type=="s15"] => '.join(add.format(i) for i in range(33))
    start = time.perf_counter()
    refused(grown(15, copies), "max_computed_chars")
    assert time.perf_counter() - start < 1.0
    evaluate(compile_policy(grown(15, copies)), [], limits=PolicyLimits(max_computed_chars=32 << 20))
