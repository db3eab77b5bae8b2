"""JMESPath compiled to closures: the same results, errors and step counts as jmespath's TreeInterpreter.

The stock interpreter walks the AST dictionaries for every element a projection visits, dispatching each
node through a method lookup. Here each AST node becomes one Python closure once per query (cached with
the query), and a search only calls closures. Semantics are jmespath 1.1's, node by node (visitor.py):
truthiness, the 0/1-vs-boolean equality rule, ordering only between numbers or strings, projections that
drop ``null``, functions through the same ``Functions`` table (expression references included).

Work stays bounded exactly as before: every node evaluation costs one step from the search's budget (the
stock interpreter's ``visit`` count, so a budget means the same with either engine), and any list a node
yields that is longer than ``max_list`` stops the search.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jmespath.functions


class BudgetExceeded(Exception):
    """The search used up its steps or produced an oversized list."""


class Run:
    """One search's mutable state: the step budget left and the list size limit."""

    __slots__ = ("steps", "max_list", "functions")

    def __init__(self, steps: int, max_list: int, functions: jmespath.functions.Functions) -> None:
        self.steps = steps
        self.max_list = max_list
        self.functions = functions


Node = Callable[[Any, Run], Any]


class _Expression:
    """An expression reference (``&expr``) as jmespath's functions expect it: they check the type name
    ``_Expression`` and call ``.visit(.expression, value)``."""

    __slots__ = ("expression", "_fn", "_run")

    def __init__(self, fn: Node, run: Run) -> None:
        self.expression = fn
        self._fn = fn
        self._run = run

    def visit(self, node: Any, value: Any) -> Any:
        return self._fn(value, self._run)


def _is_number(x: Any) -> bool:
    # JSON data, jmespath literals and function results hold no other number types than these two.
    t = type(x)
    return t is int or t is float


def _equals(x: Any, y: Any) -> bool:
    if _is_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _is_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return bool(x == y)


def _is_false(v: Any) -> bool:
    return v == "" or v == [] or v == {} or v is None or v is False


def _comparable(x: Any) -> bool:
    return _is_number(x) or isinstance(x, str)


_ORDER = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def _step(run: Run) -> None:
    run.steps -= 1
    if run.steps < 0:
        raise BudgetExceeded


def _checked(result: Any, run: Run) -> Any:
    if type(result) is list and len(result) > run.max_list:
        raise BudgetExceeded
    return result


def compile_ast(node: dict[str, Any]) -> Node:
    """One closure for an AST node of ``jmespath.compile(q).parsed``; unknown node types are refused
    here, at compile time, as jmespath would refuse them when searching."""
    kind = node["type"]
    build = _BUILDERS.get(kind)
    if build is None:
        raise NotImplementedError(kind)
    return build(node)


def _field(node: dict[str, Any]) -> Node:
    key = node["value"]

    def field(value: Any, run: Run) -> Any:
        run.steps -= 1
        if run.steps < 0:
            raise BudgetExceeded
        if type(value) is dict:
            r = value.get(key)
        else:
            try:
                r = value.get(key)
            except AttributeError:
                return None
        if type(r) is list and len(r) > run.max_list:
            raise BudgetExceeded
        return r

    return field


def _fields_chain(keys: list[Any]) -> Node:
    """``a.b.c``: a subexpression of plain fields, fused (the same steps: one for the subexpression and
    one per field, all spent even where a field is missing, as the stock interpreter does)."""
    cost = len(keys) + 1

    def chain(value: Any, run: Run) -> Any:
        run.steps -= cost
        if run.steps < 0:
            raise BudgetExceeded
        limit = run.max_list
        for key in keys:
            if type(value) is dict:
                value = value.get(key)
            else:
                try:
                    value = value.get(key)
                except AttributeError:
                    value = None
            if type(value) is list and len(value) > limit:
                raise BudgetExceeded
        return value

    return chain


def _sequence(node: dict[str, Any]) -> Node:
    children = node["children"]
    if node["type"] == "subexpression" and all(c["type"] == "field" for c in children):
        return _fields_chain([c["value"] for c in children])
    fns = [compile_ast(c) for c in children]

    def sequence(value: Any, run: Run) -> Any:
        run.steps -= 1
        if run.steps < 0:
            raise BudgetExceeded
        for fn in fns:
            value = fn(value, run)
        return _checked(value, run)

    return sequence


def _literal_equality(lit: Any) -> Callable[[Any], bool]:
    """``x == lit`` with jmespath's rule that 0 and 1 never equal a boolean, decided once for the
    literal."""
    if isinstance(lit, bool):
        return lambda x: not _is_number(x) and x == lit if x in (0, 1) else bool(x == lit)
    if _is_number(lit) and lit in (0, 1):
        return lambda x: not isinstance(x, bool) and bool(x == lit)
    return lambda x: bool(x == lit)


def _comparator(node: dict[str, Any]) -> Node:
    op = node["value"]
    left_node, right_node = node["children"]
    left, right = compile_ast(left_node), compile_ast(right_node)
    if op in ("eq", "ne"):
        want = op == "eq"
        if right_node["type"] == "literal" and left_node["type"] == "field":
            # `Field == `literal``, the common filter condition: three steps, no calls.
            key, lit = left_node["value"], right_node["value"]
            matches = _literal_equality(lit)

            def field_equals_literal(value: Any, run: Run) -> Any:
                run.steps -= 3
                if run.steps < 0:
                    raise BudgetExceeded
                if type(value) is dict:
                    x = value.get(key)
                else:
                    try:
                        x = value.get(key)
                    except AttributeError:
                        x = None
                if type(x) is list and len(x) > run.max_list:
                    raise BudgetExceeded
                return matches(x) is want

            return field_equals_literal
        return _generic_equality(left, right, want)
    order = _ORDER[op]

    def ordering(value: Any, run: Run) -> Any:
        _step(run)
        a, b = left(value, run), right(value, run)
        if not (_comparable(a) and _comparable(b)):
            return None
        return order(a, b)

    return ordering


def _generic_equality(left: Node, right: Node, want: bool) -> Node:
    def equality(value: Any, run: Run) -> Any:
        _step(run)
        return _equals(left(value, run), right(value, run)) is want

    return equality


def _identity(node: dict[str, Any]) -> Node:
    def identity(value: Any, run: Run) -> Any:
        _step(run)
        return _checked(value, run)

    return identity


def _expref(node: dict[str, Any]) -> Node:
    inner = compile_ast(node["children"][0])

    def expref(value: Any, run: Run) -> Any:
        _step(run)
        return _Expression(inner, run)

    return expref


def _function(node: dict[str, Any]) -> Node:
    name = node["value"]
    args = [compile_ast(c) for c in node["children"]]

    def function(value: Any, run: Run) -> Any:
        _step(run)
        resolved = [a(value, run) for a in args]
        return _checked(run.functions.call_function(name, resolved), run)

    return function


def _filter_projection(node: dict[str, Any]) -> Node:
    left, right, cond = (compile_ast(c) for c in node["children"])
    plain = node["children"][1]["type"] == "identity"

    def filter_projection(value: Any, run: Run) -> Any:
        _step(run)
        base = left(value, run)
        if not isinstance(base, list):
            return None
        out = []
        if plain:
            # `[?cond]` with nothing after it: the identity costs one step per match.
            limit = run.max_list
            for element in base:
                m = cond(element, run)
                if m is True or not (m is False or m is None or m == "" or m == [] or m == {}):
                    run.steps -= 1
                    if run.steps < 0:
                        raise BudgetExceeded
                    if element is not None:
                        if type(element) is list and len(element) > limit:
                            raise BudgetExceeded
                        out.append(element)
        else:
            for element in base:
                m = cond(element, run)
                if m is True or not (m is False or m is None or m == "" or m == [] or m == {}):
                    current = right(element, run)
                    if current is not None:
                        out.append(current)
        return _checked(out, run)

    return filter_projection


def _flatten(node: dict[str, Any]) -> Node:
    inner = compile_ast(node["children"][0])

    def flatten(value: Any, run: Run) -> Any:
        _step(run)
        base = inner(value, run)
        if not isinstance(base, list):
            return None
        out: list[Any] = []
        for element in base:
            if isinstance(element, list):
                out.extend(element)
            else:
                out.append(element)
        return _checked(out, run)

    return flatten


def _index(node: dict[str, Any]) -> Node:
    at = node["value"]

    def index(value: Any, run: Run) -> Any:
        _step(run)
        if not isinstance(value, list):
            return None
        try:
            return _checked(value[at], run)
        except IndexError:
            return None

    return index


def _slice(node: dict[str, Any]) -> Node:
    s = slice(*node["children"])

    def slicer(value: Any, run: Run) -> Any:
        _step(run)
        if not isinstance(value, list):
            return None
        return _checked(value[s], run)

    return slicer


def _key_val_pair(node: dict[str, Any]) -> Node:
    inner = compile_ast(node["children"][0])

    def key_val_pair(value: Any, run: Run) -> Any:
        _step(run)
        return inner(value, run)

    return key_val_pair


def _literal(node: dict[str, Any]) -> Node:
    constant = node["value"]

    def literal(value: Any, run: Run) -> Any:
        _step(run)
        return _checked(constant, run)

    return literal


def _multi_select_dict(node: dict[str, Any]) -> Node:
    pairs = [(c["value"], compile_ast(c)) for c in node["children"]]

    def multi_select_dict(value: Any, run: Run) -> Any:
        _step(run)
        if value is None:
            return None
        return {key: fn(value, run) for key, fn in pairs}

    return multi_select_dict


def _multi_select_list(node: dict[str, Any]) -> Node:
    fns = [compile_ast(c) for c in node["children"]]

    def multi_select_list(value: Any, run: Run) -> Any:
        _step(run)
        if value is None:
            return None
        return _checked([fn(value, run) for fn in fns], run)

    return multi_select_list


def _or(node: dict[str, Any]) -> Node:
    left, right = (compile_ast(c) for c in node["children"])

    def or_expression(value: Any, run: Run) -> Any:
        run.steps -= 1
        if run.steps < 0:
            raise BudgetExceeded
        matched = left(value, run)
        if matched is not True and _is_false(matched):
            matched = right(value, run)
        return _checked(matched, run)

    return or_expression


def _and(node: dict[str, Any]) -> Node:
    left, right = (compile_ast(c) for c in node["children"])

    def and_expression(value: Any, run: Run) -> Any:
        run.steps -= 1
        if run.steps < 0:
            raise BudgetExceeded
        matched = left(value, run)
        if matched is not True and _is_false(matched):
            return _checked(matched, run)
        return _checked(right(value, run), run)

    return and_expression


def _not(node: dict[str, Any]) -> Node:
    inner = compile_ast(node["children"][0])

    def not_expression(value: Any, run: Run) -> Any:
        _step(run)
        original = inner(value, run)
        if _is_number(original) and original == 0:
            return False
        return not original

    return not_expression


def _projection(node: dict[str, Any]) -> Node:
    left, right = (compile_ast(c) for c in node["children"])
    plain = node["children"][1]["type"] == "identity"

    def projection(value: Any, run: Run) -> Any:
        _step(run)
        base = left(value, run)
        if not isinstance(base, list):
            return None
        if plain:
            # `[*]` with nothing after it: the identity costs one step per element and drops nulls.
            run.steps -= len(base)
            if run.steps < 0:
                raise BudgetExceeded
            limit = run.max_list
            kept = []
            for element in base:
                if element is not None:
                    if type(element) is list and len(element) > limit:
                        raise BudgetExceeded
                    kept.append(element)
            return kept
        out = []
        for element in base:
            current = right(element, run)
            if current is not None:
                out.append(current)
        return _checked(out, run)

    return projection


def _value_projection(node: dict[str, Any]) -> Node:
    left, right = (compile_ast(c) for c in node["children"])

    def value_projection(value: Any, run: Run) -> Any:
        _step(run)
        base = left(value, run)
        try:
            values = base.values()
        except AttributeError:
            return None
        out = []
        for element in values:
            current = right(element, run)
            if current is not None:
                out.append(current)
        return _checked(out, run)

    return value_projection


_BUILDERS: dict[str, Callable[[dict[str, Any]], Node]] = {
    "field": _field,
    "subexpression": _sequence,
    "index_expression": _sequence,
    "pipe": _sequence,
    "comparator": _comparator,
    "current": _identity,
    "identity": _identity,
    "expref": _expref,
    "function_expression": _function,
    "filter_projection": _filter_projection,
    "flatten": _flatten,
    "index": _index,
    "slice": _slice,
    "key_val_pair": _key_val_pair,
    "literal": _literal,
    "multi_select_dict": _multi_select_dict,
    "multi_select_list": _multi_select_list,
    "or_expression": _or,
    "and_expression": _and,
    "not_expression": _not,
    "projection": _projection,
    "value_projection": _value_projection,
}
