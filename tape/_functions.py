"""Elementary functions of a `Var` or a number, and the n-ary `sum` and `dot`.

Each elementary function is one rule: the function on floats and its derivative, written in
terms of x and y = f(x). On a `Var` it records one node with that partial; on a number it is
the plain float function.
"""
from __future__ import annotations

import builtins
import functools
import math
import textwrap
from operator import add, attrgetter, mul
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from ._tape import header
from ._var import CONSTANTS, NAMESPACE, Var, _check_operand, _new, compile_op, record_code

_values = attrgetter("value")


class Rule(NamedTuple):
    name: str
    value: str  # y as an expression of the argument a (math raises ValueError off the domain)
    partial: str  # dy/da as an expression of a and y
    domain: str  # said in the error when `value` refuses a


RULES = [
    Rule("sin", "math.sin(a)", "math.cos(a)", ""),
    Rule("cos", "math.cos(a)", "-math.sin(a)", ""),
    Rule("tan", "math.tan(a)", "1.0 + y * y", ""),
    Rule("atan", "math.atan(a)", "1.0 / (1.0 + a * a)", ""),
    Rule("sinh", "math.sinh(a)", "math.cosh(a)", "|x| <= 710"),
    Rule("cosh", "math.cosh(a)", "math.sinh(a)", "|x| <= 710"),
    Rule("tanh", "math.tanh(a)", "1.0 - y * y", ""),
    Rule("exp", "math.exp(a)", "y", "x <= 709"),
    Rule("expm1", "math.expm1(a)", "y + 1.0", "x <= 709"),
    Rule("log", "math.log(a)", "1.0 / a", "x > 0"),
    Rule("log1p", "math.log1p(a)", "1.0 / (1.0 + a)", "x > -1"),
    Rule("sqrt", "math.sqrt(a)", "0.5 / y if y > 0.0 else math.inf", "x >= 0"),
    Rule("sigmoid", "_sigmoid(a)", "y * (1.0 - y)", ""),
    Rule("softplus", "a + math.log1p(math.exp(-a)) if a > 0.0 else math.log1p(math.exp(a))", "_sigmoid(a)", ""),
    Rule("relu", "a if a > 0.0 else 0.0", "1.0 if a > 0.0 else 0.0", ""),
]


def _sigmoid(a: float) -> float:
    """1 / (1 + e^-a), without overflow for large |a|."""
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def domain_error(name: str, a: float, error: Exception, domain: str) -> Exception:
    needs = f" ({name} needs {domain})" if domain else ""
    return type(error)(f"{name}({a!r}): {error}{needs}")


def _elementary(index: int, rule: Rule):
    """`rule.name(x)`: recorded on the tape for a Var, a plain float for a number, entrywise for
    an array type registered in `ARRAY_TYPES`."""
    evaluate = (
        f"try:\n    y = {rule.value}\n"
        f"except (ValueError, OverflowError) as e:\n"
        f"    raise domain_error({rule.name!r}, a, e, {rule.domain!r}) from None\n"
    )
    body = (
        "if x.__class__ is Var:\n"
        + textwrap.indent(
            "a = x.value\n" + evaluate + f"value = y\nda = {rule.partial}\n"
            + record_code("", rule.name, ["x"], ["da"]),
            "    ",
        )
        + "if x.__class__ is float or isinstance(x, CONSTANTS):\n"
        + textwrap.indent("a = x\n" + evaluate + "return float(y)\n", "    ")
        + f"return _apply_other({index}, x)\n"
    )
    fn = compile_op(rule.name, "x", body, NAMESPACE)
    fn.__doc__ = f"{rule.name}(x) of a Var (recorded on its tape) or of a number (a float)."
    return fn


ARRAY_TYPES: dict = {}  # type -> apply(rule index, x); `VarArray` registers itself


def _apply_other(rule: int, x):
    apply = ARRAY_TYPES.get(type(x))
    if apply is None:
        raise TypeError(f"{RULES[rule].name}() takes a Var, a VarArray or a number, got {type(x).__name__}")
    return apply(rule, x)


NAMESPACE.update(_sigmoid=_sigmoid, domain_error=domain_error, _apply_other=_apply_other)
ELEMENTARY = {rule.name: _elementary(index, rule) for index, rule in enumerate(RULES)}


def _entrywise(rule: int, x: np.ndarray) -> np.ndarray:
    """A numpy array, entry by entry: object arrays of Vars (what `grad` passes a function of
    an array) give object arrays of Vars; number arrays give float arrays, computed compiled."""
    if x.dtype != object:
        from ._array import apply_rule

        return apply_rule(rule, x)
    return np.frompyfunc(ELEMENTARY[RULES[rule].name], 1, 1)(x)


ARRAY_TYPES[np.ndarray] = _entrywise
sin, cos, tan, atan, sinh, cosh, tanh = (ELEMENTARY[n] for n in ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh"))
exp, expm1, log, log1p, sqrt = (ELEMENTARY[n] for n in ("exp", "expm1", "log", "log1p", "sqrt"))
sigmoid, softplus, relu = ELEMENTARY["sigmoid"], ELEMENTARY["softplus"], ELEMENTARY["relu"]


def record_n(name: str, parents: list[Var], partials: list[float], value: float):
    """Record one node with many parents; return it as a Var (a float under `no_grad`)."""
    first = parents[0]
    t = first._seg.tape
    if not t.recording:
        return value
    for seg in {p._seg for p in parents}:
        if seg is not first._seg or not seg.alive:
            _check_operand(first, next(p for p in parents if p._seg is seg))
    rec = t._rec
    rec.append(header(len(parents), name))
    rec += [p._node for p in parents]
    rec += partials
    r = _new(Var)
    r.value = value
    r._seg = t._seg
    r._node = t._advance()
    return r


def record(value: float, parents: Sequence[Var], partials: Sequence[float], op: str = "custom") -> Var:
    """One node with the local partials you computed: a custom operation whose derivative you
    know (the softmax cross-entropy's p - y, say). Zero partials get no edge."""
    parents, partials = list(parents), [float(d) for d in partials]
    if len(parents) != len(partials) or not parents:
        raise ValueError(f"record: expected as many partials as parents (at least one), got {len(parents)} parents and {len(partials)} partials")
    if not all(p.__class__ is Var for p in parents):
        raise TypeError("record: every parent must be a Var")
    return record_n(op, parents, partials, float(value))


def sum(xs: Iterable) -> Var | float:  # noqa: A001 - tape.sum, as in numpy and torch
    """The sum of Vars and numbers (an array's every entry) as ONE node with a parent per Var."""
    if hasattr(xs, "_reduce"):  # a VarArray
        return xs.sum()
    xs = xs.ravel().tolist() if isinstance(xs, np.ndarray) else list(xs)
    parents = [x for x in xs if x.__class__ is Var]
    if len(parents) == len(xs):
        value = builtins.sum(map(_values, parents), 0.0)
    elif not _numbers_or_vars(set(map(type, xs))):  # Duals (forward mode): plain additions, which dispatch
        return functools.reduce(add, xs, 0.0)
    else:
        value = builtins.sum((x.value if x.__class__ is Var else x for x in xs), 0.0)
    if not parents:
        return float(value)
    return record_n("sum", parents, [1.0] * len(parents), value)


def _numbers_or_vars(types: set) -> bool:
    """Whether every type is Var or a number type (else there are Duals: forward mode)."""
    return all(t is Var or issubclass(t, CONSTANTS) for t in types)


def _vector(xs, name: str) -> list:
    if isinstance(xs, np.ndarray):
        if xs.ndim != 1:
            raise ValueError(f"dot(ws, xs): {name} must be 1-d, got shape {xs.shape}")
        return xs.tolist()
    return list(xs)


def dot(ws: Sequence, xs: Sequence) -> Var | float:
    """sum(w * x for w, x in zip(ws, xs)) as ONE node: a neuron's weighted sum.

    Each Var `w` gets the edge d/dw = x and each Var `x` the edge d/dx = w."""
    ws, xs = _vector(ws, "ws"), _vector(xs, "xs")
    if len(ws) != len(xs):
        raise ValueError(f"dot(ws, xs): ws has {len(ws)} entries but xs has {len(xs)}")
    w_types, x_types = set(map(type, ws)), set(map(type, xs))
    if not (_numbers_or_vars(w_types) and _numbers_or_vars(x_types)):  # Duals: plain arithmetic
        return functools.reduce(add, map(mul, ws, xs), 0.0)
    if w_types == {Var} and Var not in x_types:  # weights against constant inputs
        parents, partials = ws, xs
        value = builtins.sum(map(mul, map(_values, ws), xs), 0.0)
    elif x_types == {Var} and Var not in w_types:
        parents, partials = xs, ws
        value = builtins.sum(map(mul, ws, map(_values, xs)), 0.0)
    else:
        parents, partials, value = [], [], 0.0
        for w, x in zip(ws, xs):
            a = w.value if w.__class__ is Var else w
            b = x.value if x.__class__ is Var else x
            value += a * b
            if w.__class__ is Var:
                parents.append(w)
                partials.append(b)
            if x.__class__ is Var:
                parents.append(x)
                partials.append(a)
    if not parents:
        return float(value)
    return record_n("dot", parents, partials, value)
