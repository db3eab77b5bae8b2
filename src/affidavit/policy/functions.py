"""The six functions of policy version 1.2 (maa-policy.md §5.8) and MAA's JMESPath dialect.

Choices where the doc leaves a point open, all failing closed:
- A function argument that must be a single value raises ``PolicyEvaluationError`` when it holds several
  values; an empty argument (e.g. from ``JsonToClaimValue`` of ``null``) makes the result empty, so the
  enclosing ``add``/``issue`` is a no-op and ``!`` fallbacks fire.
- JMESPath syntax or runtime errors are evaluation errors, not ``null``.
- ``JsonToClaimValue`` rejects ``null`` inside arrays (dropping it could make ``ContainsOnlyValue``
  vouch for a value that was missing); fractions, objects and nested arrays are errors as documented.
- ``equals_ignore_case`` is false unless both arguments are strings (it never errors on a missing
  field), and compares with Unicode case folding.
- Results are compact JSON text (``,``/``:`` separators, input key order, non-ASCII kept).
Work is bounded: JSON text size, query length, JMESPath steps (per evaluation) and list sizes,
serialised size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions

from affidavit import strict_json
from affidavit.policy.errors import PolicyEvaluationError
from affidavit.policy.jmes_compiled import BudgetExceeded, Run, compile_ast
from affidavit.policy.model import FunctionImpl, State, Values

MAX_JSON_CHARS = 16 << 20
MAX_QUERY_CHARS = 8192
MAX_STRING_CHARS = 1 << 20
MAX_JMES_STEPS = 400_000  # per evaluation, shared by all JmesPath calls
MAX_JMES_LIST = 100_000
MAX_OUTPUT_NODES = 400_000
MAX_CACHED_QUERIES = 256

_EMPTY: Values = ()


def _dump(value: Any) -> str:
    """Compact JSON, refusing values whose expansion is too large (JMESPath results share sub-objects,
    so a short query can describe an exponentially large document)."""
    budget = MAX_OUTPUT_NODES
    stack = [value]
    while stack:
        v = stack.pop()
        budget -= 1
        if budget < 0:
            raise BudgetExceeded
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(text) > MAX_JSON_CHARS:
        raise BudgetExceeded
    return text


class _MaaFunctions(jmespath.functions.Functions):
    @jmespath.functions.signature({"types": []}, {"types": []})
    def _func_equals_ignore_case(self, a: Any, b: Any) -> bool:
        return isinstance(a, str) and isinstance(b, str) and a.casefold() == b.casefold()

    @jmespath.functions.signature({"types": []})
    def _func_to_string(self, arg: Any) -> str:
        return arg if isinstance(arg, str) else _dump(arg)


_FUNCTIONS = _MaaFunctions()


def load_json(st: State, text: str, fname: str) -> Any:
    cached = st.json_cache.get(text, _EMPTY)
    if cached is not _EMPTY:
        return cached
    if len(text) > MAX_JSON_CHARS:
        raise PolicyEvaluationError(f"{fname}: JSON text longer than {MAX_JSON_CHARS} characters")
    try:
        data = strict_json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PolicyEvaluationError(f"{fname}: argument is not valid JSON ({_short(exc)})") from None
    st.json_cache[text] = data
    return data


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _compile_query(st: State, query: str) -> Any:
    """The query compiled to closures (jmes_compiled), cached on the policy; a bad query is cached as its
    error message, so it is refused without being parsed again."""
    cache = st.jmes_cache
    hit = cache.get(query)
    if hit is None:
        if len(query) > MAX_QUERY_CHARS:
            hit = f"JmesPath: query longer than {MAX_QUERY_CHARS} characters"
        else:
            try:
                hit = compile_ast(jmespath.compile(query).parsed)
            except jmespath.exceptions.JMESPathError as exc:
                hit = f"JmesPath: invalid query {query!r}: {_short(exc)}"
            except (RecursionError, ValueError, TypeError, IndexError, KeyError, Warning) as exc:
                # Warning: jmespath warns on deprecated literals; under `-W error` that is raised.
                hit = f"JmesPath: invalid query {query!r} ({type(exc).__name__})"
            except NotImplementedError as exc:
                hit = f"JmesPath: invalid query {query!r} (unknown node {exc})"
        if len(cache) >= MAX_CACHED_QUERIES:
            cache.clear()
        cache[query] = hit
    if isinstance(hit, str):
        raise PolicyEvaluationError(hit)
    return hit


def jmes_search(st: State, document: str, query: str) -> str:
    compiled = _compile_query(st, query)
    data = load_json(st, document, "JmesPath")
    run = Run(st.jmes_steps, MAX_JMES_LIST, _FUNCTIONS)
    try:
        result = compiled(data, run)
        text = _dump(result)
    except BudgetExceeded:
        raise PolicyEvaluationError(f"JmesPath: query {query!r} exceeds the evaluation limits") from None
    except RecursionError:
        raise PolicyEvaluationError(f"JmesPath: query {query!r} nests too deeply") from None
    except jmespath.exceptions.JMESPathError as exc:
        raise PolicyEvaluationError(f"JmesPath: query {query!r} failed: {_short(exc)}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError, Warning) as exc:
        raise PolicyEvaluationError(f"JmesPath: query {query!r} failed ({type(exc).__name__})") from None
    finally:
        st.jmes_steps = run.steps
    # Policies feed results to further JmesPath and JsonToClaimValue calls; the object that produced the
    # text is what parsing it would give, so the next call need not parse it again.
    if type(result) is dict or type(result) is list:
        st.json_cache.setdefault(text, result)
    return text


_NOTHING = object()


def _single(vals: Values, fname: str, n: int) -> Any:
    if len(vals) == 1:
        return vals[0]
    if not vals:
        return _NOTHING
    raise PolicyEvaluationError(f"{fname}: argument {n} holds {len(vals)} values where one is expected")


def _typed(value: Any, kind: type, fname: str, n: int) -> Any:
    if type(value) is not kind:
        want = {str: "a String", bool: "a Boolean", int: "an Integer"}[kind]
        raise PolicyEvaluationError(f"{fname}: argument {n} must be {want}, got {_kind_name(value)}")
    return value


def _kind_name(value: Any) -> str:
    return {str: "String", bool: "Boolean", int: "Integer"}.get(type(value), type(value).__name__)


def _f_jmespath(st: State, args: list[Values]) -> Values:
    doc, query = _single(args[0], "JmesPath", 1), _single(args[1], "JmesPath", 2)
    if doc is _NOTHING or query is _NOTHING:
        return _EMPTY
    _typed(doc, str, "JmesPath", 1)
    _typed(query, str, "JmesPath", 2)
    if not doc or not query:
        raise PolicyEvaluationError("JmesPath: the JSON text and the query must not be empty")
    return (jmes_search(st, doc, query),)


def _f_json_to_claim_value(st: State, args: list[Values]) -> Values:
    text = _single(args[0], "JsonToClaimValue", 1)
    if text is _NOTHING:
        return _EMPTY
    data = load_json(st, _typed(text, str, "JsonToClaimValue", 1), "JsonToClaimValue")
    if data is None:
        return _EMPTY
    if isinstance(data, list):
        if len(data) > MAX_JMES_LIST:
            raise PolicyEvaluationError("JsonToClaimValue: array too long")
        return tuple(_primitive(item, in_array=True) for item in data)
    return (_primitive(data, in_array=False),)


def _primitive(item: Any, *, in_array: bool) -> Any:
    if isinstance(item, bool | int | str):
        return item
    where = "an array element" if in_array else "the value"
    if isinstance(item, float):
        what = "a fraction"
    elif item is None:
        what = "null"
    elif isinstance(item, dict):
        what = "an object"
    else:
        what = "a nested array"
    raise PolicyEvaluationError(f"JsonToClaimValue: {where} is {what}, which has no claim value")


def _key(v: Any) -> tuple[type, Any]:
    return (type(v), v)


def _f_is_subset_of(st: State, args: list[Values]) -> Values:
    superset = {_key(v) for v in args[1]}
    return (all(_key(v) in superset for v in args[0]),)


def _f_append_string(st: State, args: list[Values]) -> Values:
    a, b = _single(args[0], "AppendString", 1), _single(args[1], "AppendString", 2)
    if a is _NOTHING or b is _NOTHING:
        return _EMPTY
    result = _typed(a, str, "AppendString", 1) + _typed(b, str, "AppendString", 2)
    if len(result) > MAX_STRING_CHARS:
        raise PolicyEvaluationError(f"AppendString: result longer than {MAX_STRING_CHARS} characters")
    return (result,)


def _f_negate_bool(st: State, args: list[Values]) -> Values:
    b = _single(args[0], "NegateBool", 1)
    if b is _NOTHING:
        return _EMPTY
    return (not _typed(b, bool, "NegateBool", 1),)


def _f_contains_only_value(st: State, args: list[Values]) -> Values:
    v = _single(args[1], "ContainsOnlyValue", 2)
    if v is _NOTHING:
        return _EMPTY
    k = _key(v)
    return (bool(args[0]) and all(_key(x) == k for x in args[0]),)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    impl: FunctionImpl
    params: tuple[type | None, ...]  # literal argument type checked at compile time; None = any
    taints: bool  # result is read-only when an argument is (maa-policy.md §5.8)


FUNCTIONS: dict[str, FunctionSpec] = {
    "JmesPath": FunctionSpec(_f_jmespath, (str, str), True),
    "JsonToClaimValue": FunctionSpec(_f_json_to_claim_value, (str,), True),
    "IsSubsetOf": FunctionSpec(_f_is_subset_of, (None, None), False),
    "AppendString": FunctionSpec(_f_append_string, (str, str), True),
    "NegateBool": FunctionSpec(_f_negate_bool, (bool,), True),
    "ContainsOnlyValue": FunctionSpec(_f_contains_only_value, (None, None), False),
}
