"""Cut expressions as data: parsed into a small tree of allowed constructs and evaluated with numpy, never by `eval`.

Cuts travel inside the files people share (a variable set, a bundle, a trial
file), so reading one must never run its author's code. An expression is
parsed with Python's `ast` (after pandas' rewriting of `&` and `|` into `and`
and `or`, so that `a < 1 & b > 2` means what it does in pandas) and every node
is checked against a short list before anything is evaluated: comparisons,
arithmetic, boolean operators, parentheses, numbers, the variable set's names
and the functions of `FUNCTIONS`. Anything else (attributes, subscripts,
strings, lambdas, comprehensions, other calls) is refused in one line that
names the construct. Evaluation walks the same tree with numpy; numbers stay
Python floats, so a float32 column is compared in float32, as pandas did.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MAX_LENGTH = 2000  # characters of one expression
MAX_NODES = 400  # parsed nodes of one expression
MAX_DEPTH = 40  # nesting of one expression

#: The functions a cut may call: name -> (number of arguments, numpy function name).
FUNCTIONS: dict[str, tuple[int, str]] = {
    "abs": (1, "abs"),
    "sqrt": (1, "sqrt"),
    "log": (1, "log"),
    "log10": (1, "log10"),
    "exp": (1, "exp"),
    "min": (2, "minimum"),
    "max": (2, "maximum"),
    "where": (3, "where"),
}
_COMPARISONS: dict[type, str] = {
    ast.Lt: "less",
    ast.LtE: "less_equal",
    ast.Gt: "greater",
    ast.GtE: "greater_equal",
    ast.Eq: "equal",
    ast.NotEq: "not_equal",
}
_ARITHMETIC: dict[type, str] = {
    ast.Add: "add",
    ast.Sub: "subtract",
    ast.Mult: "multiply",
    ast.Div: "true_divide",
    ast.Pow: "power",
    ast.Mod: "mod",
}
ALLOWED = "comparisons, arithmetic (+ - * / ** %), and/or/not (& | ~), parentheses, numbers, the set's variables and " + ", ".join(
    FUNCTIONS
)


class CutError(ValueError):
    """A cut expression that is not allowed or cannot be read (the message names the construct)."""


def parse_cut(expression: str, names: Iterable[str] | None = None) -> ast.Expression:
    """The checked tree of `expression`; with `names`, every variable it uses must be one of them."""
    if not isinstance(expression, str):
        raise CutError(f"a cut is a text expression (got {type(expression).__name__})")
    if len(expression) > MAX_LENGTH:
        raise CutError(f"the expression is {len(expression):,} characters long; at most {MAX_LENGTH:,} are allowed")
    try:
        tree = ast.parse(_pandas_booleans(expression).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, tokenize.TokenError) as err:
        raise CutError(f"not a valid expression ({getattr(err, 'msg', None) or type(err).__name__})") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise CutError(f"the expression has {nodes} parts; at most {MAX_NODES} are allowed")
    _check(tree.body, None if names is None else list(names), 0)
    return tree


def cut_mask(expression: str, columns: Mapping[str, Any], n: int) -> Any:
    """Which of the `n` rows of `columns` (variable -> array) pass `expression`: a boolean numpy array."""
    import numpy as np

    with np.errstate(all="ignore"):
        result = cut_value(expression, columns, np)
    return np.broadcast_to(np.asarray(result, dtype=bool), (n,)).copy()


def cut_value(expression: str, columns: Mapping[str, Any], ops: Any) -> Any:
    """The value of a cut's expression over `columns`, with `ops` supplying numpy's functions by their numpy names
    (numpy itself, or an adapter of another array library: the ONNX export builds its cuts so)."""
    return _evaluate(parse_cut(expression, columns.keys()).body, columns, ops)


def _pandas_booleans(expression: str) -> str:
    """`&` -> `and`, `|` -> `or`, token by token, as pandas' expression parser does (comparisons bind tighter)."""
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(expression).readline):
        if token.type == tokenize.OP and token.string in ("&", "|"):
            tokens.append((tokenize.NAME, " and " if token.string == "&" else " or "))
        else:
            tokens.append((token.type, token.string))
    return tokenize.untokenize(tokens)


def _check(node: ast.AST, names: list[str] | None, depth: int) -> None:
    """Refuse any node outside the allowed constructs (see the module's docstring)."""
    if depth > MAX_DEPTH:
        raise CutError(f"the expression is nested more than {MAX_DEPTH} deep")
    children: list[ast.AST]
    if isinstance(node, ast.BoolOp | ast.UnaryOp | ast.BinOp | ast.Compare):
        _check_operators(node)
        children = list(ast.iter_child_nodes(node))
    elif isinstance(node, ast.Constant):
        if type(node.value) not in (int, float, bool):
            raise CutError(f"{_describe(node)} is not allowed in a cut (allowed: {ALLOWED})")
        return
    elif isinstance(node, ast.Name):
        if names is not None and node.id not in names:
            from hpcsweep.errors import closest

            hint = closest(node.id, names)
            raise CutError(
                f"unknown variable {node.id!r}"
                + (f" (did you mean {', '.join(hint)}?)" if hint else "")
                + f"; variables: {', '.join(names)}"
            )
        if node.id.startswith("_"):
            raise CutError(f"name {node.id!r} is not allowed in a cut (allowed: {ALLOWED})")
        return
    elif isinstance(node, ast.Call):
        _check_call(node)
        children = list(node.args)
    else:
        raise CutError(f"{_describe(node)} is not allowed in a cut (allowed: {ALLOWED})")
    for child in children:
        if not isinstance(child, ast.operator | ast.boolop | ast.unaryop | ast.cmpop):
            _check(child, names, depth + 1)


def _check_operators(node: ast.BoolOp | ast.UnaryOp | ast.BinOp | ast.Compare) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) not in _ARITHMETIC:
        raise CutError(f"the operator {type(node.op).__name__} is not allowed in a cut (allowed: {ALLOWED})")
    if isinstance(node, ast.Compare) and any(type(op) not in _COMPARISONS for op in node.ops):
        raise CutError(f"'in' and 'is' are not allowed in a cut (allowed: {ALLOWED})")


def _check_call(node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        raise CutError(f"{_describe(node)} is not allowed in a cut (allowed: {ALLOWED})")
    arity = FUNCTIONS[node.func.id][0]
    if node.keywords or len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
        raise CutError(f"{node.func.id}() takes {arity} plain argument{'s' if arity > 1 else ''} in a cut")


def _describe(node: ast.AST) -> str:
    """What a refused node is, for the message: `attribute access '.to_csv'`, `a call of 'eval'`, `a string 'x'`, ..."""
    if isinstance(node, ast.Attribute):
        return f"attribute access '.{node.attr}'"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else f".{func.attr}" if isinstance(func, ast.Attribute) else None
        return f"a call of {name!r}" if name else "a call"
    if isinstance(node, ast.Constant):
        return f"a {type(node.value).__name__} constant {node.value!r}"[:80]
    readable = {
        ast.Subscript: "a subscript ([...])",
        ast.Lambda: "a lambda",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.IfExp: "a conditional expression (use where(...))",
        ast.NamedExpr: "an assignment (:=)",
        ast.JoinedStr: "an f-string",
    }
    return readable.get(type(node), f"the construct {type(node).__name__}")


def _evaluate(node: ast.AST, columns: Mapping[str, Any], ops: Any) -> Any:
    """The value of a checked node: arrays for variables, Python floats for numbers (weak in numpy's promotion)."""
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # _check let no other constant through (bool is an int)
        return node.value if isinstance(node.value, bool) else float(node.value)
    if isinstance(node, ast.Name):
        return ops.asarray(columns[node.id])
    if isinstance(node, ast.BoolOp):
        combine = ops.logical_and if isinstance(node.op, ast.And) else ops.logical_or
        values = [_evaluate(value, columns, ops) for value in node.values]
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, columns, ops)
        if isinstance(node.op, ast.Not | ast.Invert):
            return ops.logical_not(operand)
        return _scalar_or_array(getattr(ops, "negative" if isinstance(node.op, ast.USub) else "positive"), operand)
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, columns, ops), _evaluate(node.right, columns, ops)
        return _scalar_or_array(getattr(ops, _ARITHMETIC[type(node.op)]), left, right)
    if isinstance(node, ast.Compare):
        left, out = _evaluate(node.left, columns, ops), True
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, columns, ops)
            out = ops.logical_and(out, getattr(ops, _COMPARISONS[type(op)])(left, right))
            left = right
        return out
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # _check let nothing else through
    return _scalar_or_array(getattr(ops, FUNCTIONS[node.func.id][1]), *(_evaluate(arg, columns, ops) for arg in node.args))


def _scalar_or_array(function: Callable[..., Any], *operands: Any) -> Any:
    """`function` of the operands; of numbers alone, a Python float again (never a huge integer, never a strong scalar)."""
    import numpy as np

    if all(isinstance(o, float | bool) for o in operands):
        return float(function(*(np.float64(o) for o in operands)))
    return function(*operands)
