"""Forward mode: dual numbers, and the transforms built on them (`jvp`, and the second
derivatives of `grad`, `hvp` and `hessian`).

A `Dual` carries a value and a tangent (the derivative along one direction) through every
function of `tape`, by the same rules the tape records: each rule's value and partials are
evaluated on the Dual's value, and the tangent is the partials times the operands' tangents.
The rules are compiled here with a *generic* `math` (the tape's own functions, which dispatch on
the argument's type), so a Dual's parts may be floats, Vars or Duals. That is how derivatives
of derivatives work, without any cost to the tape's default path:

* a Dual whose value is a `Var` computes a derivative in forward mode while the tape records
  it: its tangent is a Var, which a sweep differentiates again (reverse over forward);
* a Dual of Duals is forward over forward.

Measured, and why this route: the two classic routes both touch the recording of every
operation (a backward that records needs each node's partials as nodes, so the tape would have
to keep operands; forward over reverse needs a tangent beside every partial and a rule for the
derivative of every partial). Here the recording path and the numba sweep are unchanged
(benchmarks/RESULTS.md: the scalar benchmark before and after), and a Hessian-vector product
costs one forward pass recorded on a tape plus one sweep.
"""
from __future__ import annotations

import textwrap
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from ._functions import ARRAY_TYPES, ELEMENTARY, RULES, domain_error
from ._var import BINARY, CONSTANTS, NAMESPACE, UNARY, Var, _new, compile_op

Numberish = (*CONSTANTS, Var)  # what a Dual treats as a constant: its tangent is 0


def _generic_pow(x, y, d_exponent: bool):
    """x ** y and its partials for floats, Vars or Duals (the float path: `_var._pow`)."""
    base, exponent = _primal(x), _primal(y)
    if base == 0.0 and exponent < 0:
        raise ValueError(f"pow({base!r}, {exponent!r}): 0 cannot be raised to a negative power")
    if base < 0.0 and (exponent != int(exponent) or d_exponent):
        raise ValueError(f"pow({base!r}, {exponent!r}): a negative base needs an integer, constant exponent")
    value = x**y
    if base == 0.0 and exponent < 1:  # an infinite slope (0 < y < 1), or none (y = 0)
        dx = float("inf") if exponent > 0 else 0.0
    else:  # kept a function of x even at x = 0, where its own derivatives need not vanish
        dx = y * x ** (y - 1)
    dy = value * ELEMENTARY["log"](x) if d_exponent and base > 0.0 else 0.0
    return value, dx, dy


def _generic_div(a, b):
    if _primal(b) == 0.0:
        raise ZeroDivisionError(f"division by zero: {_primal(a)!r} / 0.0")
    q = a / b
    return q, 1.0 / b, -q / b


GENERIC = {
    "math": SimpleNamespace(**ELEMENTARY, inf=float("inf")),
    "_sigmoid": ELEMENTARY["sigmoid"],
    "_div": _generic_div,
    "_pow": _generic_pow,
}


def _primal(x) -> float:
    """The innermost number of a Dual or Var (for comparisons and error messages)."""
    while not isinstance(x, CONSTANTS):
        x = x.value
    return float(x)


def _compile_rules(namespace: dict) -> tuple[list, dict, dict]:
    """The elementary, binary and unary rules as functions of their operands' values."""
    elementary = [
        compile_op("value_and_partial", "a", (
            f"try:\n    y = {r.value}\nexcept (ValueError, OverflowError) as e:\n"
            f"    raise domain_error({r.name!r}, a, e, {r.domain!r}) from None\nreturn y, {r.partial}\n"
        ), dict(namespace, domain_error=domain_error))
        for r in RULES
    ]
    binary = {
        (op, b_is_dual): compile_op("rule", "a, b", rule.format(b_is_var=b_is_dual) + "\nreturn value, da, db\n", dict(namespace))
        for op, rule in BINARY.items()
        for b_is_dual in (False, True)
    }
    unary = {op: compile_op("rule", "a", rule + "\nreturn value, da\n", dict(namespace)) for op, rule in UNARY.items()}
    return elementary, binary, unary


# On plain floats, the scalar path's own namespace (math and the float helpers) is faster.
FLOAT_RULES = _compile_rules(NAMESPACE)
GENERIC_RULES = _compile_rules(GENERIC)


class Dual:
    """A value and its tangent: the derivative of the value along one direction (forward mode).

    `Dual(x, 1.0)` seeds d/dx; numbers and Vars are constants to it (tangent 0)."""

    __slots__ = ("value", "tangent")

    def __init__(self, value, tangent=0.0) -> None:
        self.value, self.tangent = value, tangent

    def __repr__(self) -> str:
        return f"Dual({self.value!r}, {self.tangent!r})"

    def __float__(self) -> float:
        return _primal(self)

    def __neg__(self):
        return _unary("neg", self)

    def __abs__(self):
        return _unary("abs", self)

    def __pos__(self):
        return self

    def __lt__(self, other):
        return _primal(self) < _primal(other)

    def __le__(self, other):
        return _primal(self) <= _primal(other)

    def __gt__(self, other):
        return _primal(self) > _primal(other)

    def __ge__(self, other):
        return _primal(self) >= _primal(other)

    def __eq__(self, other):
        return _primal(self) == _primal(other)

    def __ne__(self, other):
        return _primal(self) != _primal(other)

    __hash__ = object.__hash__


_PLAIN = (float, int)


def _rules(a, b=0.0) -> tuple[list, dict, dict]:
    """The rules for these operand values: the fast float ones when both are plain numbers."""
    return FLOAT_RULES if a.__class__ in _PLAIN and b.__class__ in _PLAIN else GENERIC_RULES


def _dual(value, tangent) -> Dual:
    d = _new(Dual)
    d.value, d.tangent = value, tangent
    return d


def _binary(op: str, a, b):
    """a <op> b where a or b is a Dual: the rule's value, tangent = da a' + db b'."""
    a_dual, b_dual = a.__class__ is Dual, b.__class__ is Dual
    if not (a_dual or isinstance(a, Numberish)) or not (b_dual or isinstance(b, Numberish)):
        return NotImplemented
    av, bv = a.value if a_dual else a, b.value if b_dual else b
    value, da, db = _rules(av, bv)[1][op, b_dual](av, bv)
    if a_dual and b_dual:
        return _dual(value, da * a.tangent + db * b.tangent)
    return _dual(value, da * a.tangent if a_dual else db * b.tangent)


def _unary(op: str, a: Dual) -> Dual:
    value, da = _rules(a.value)[2][op](a.value)
    return _dual(value, da * a.tangent)


def _elementary(rule: int, x: Dual) -> Dual:
    """RULES[rule] of a Dual (`tape.sin(dual)` and friends land here)."""
    value, partial = _rules(x.value)[0][rule](x.value)
    return _dual(value, partial * x.tangent)


for _op in BINARY:
    setattr(Dual, f"__{_op}__", lambda self, other, op=_op: _binary(op, self, other))
    setattr(Dual, f"__r{_op}__", lambda self, other, op=_op: _binary(op, other, self))
ARRAY_TYPES[Dual] = _elementary


# -- the transforms -------------------------------------------------------------------------------


def jvp(fn: Callable, primals: Sequence, tangents: Sequence):
    """(fn(*primals), the derivative of fn at primals along tangents), in one forward pass.

    primals and tangents are sequences of the same structure: numbers or arrays of numbers
    (Vars too: then the derivative is recorded on their tape). Outputs may be a scalar or an
    array/list of scalars; the derivative has the output's shape."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    duals = []
    for i, (p, t) in enumerate(zip(primals, tangents)):
        if np.shape(p) != np.shape(t):
            raise ValueError(f"jvp: primal {i} has shape {np.shape(p)} but its tangent has shape {np.shape(t)}")
        duals.append(Dual(p, t) if np.ndim(p) == 0 else _dual_array(p, t))
    return _split(fn(*duals))


def _dual_array(values, tangents) -> np.ndarray:
    values, tangents = np.asarray(values, dtype=object), np.asarray(tangents, dtype=object)
    out = np.empty(values.shape, dtype=object)
    for j, (v, t) in enumerate(zip(values.flat, tangents.flat)):
        out.flat[j] = Dual(v, t)
    return out


def _split(out):
    """(values, tangents) of a function's output: a Dual, a constant or an array of them."""
    if np.ndim(out) == 0 and not isinstance(out, (list, tuple)):
        return (out.value, out.tangent) if isinstance(out, Dual) else (out, 0.0)
    parts = [(o.value, o.tangent) if isinstance(o, Dual) else (o, 0.0) for o in np.asarray(out, dtype=object).flat]
    shape = np.shape(np.asarray(out, dtype=object))
    values, tangents = (np.array([p[k] for p in parts], dtype=object).reshape(shape) for k in (0, 1))
    return _numbers(values), _numbers(tangents)


def _numbers(a: np.ndarray) -> np.ndarray:
    """A float array where every entry is a plain number, else the object array as it is."""
    return a.astype(np.float64) if all(isinstance(v, CONSTANTS) for v in a.flat) else a


def scalar_output(out):
    """What a function returned, with a one-entry array (or VarArray) taken as its entry."""
    if getattr(out, "size", None) == 1 and hasattr(out, "reshape"):
        return out.reshape(-1)[0]
    return out


def forward_gradient(fn: Callable, args: list, kwargs: dict, nums: Sequence[int]):
    """(fn(*args), d fn / d args[i] for i in nums) in forward mode: one pass per entry. `grad`
    takes this route when an argument is not a plain number (a Var or a Dual: a derivative
    of a derivative), so the result is recorded or carried along with it."""
    value, grads = None, []
    for i in nums:
        shape = np.shape(args[i])
        entries = np.asarray(args[i], dtype=object).ravel()
        columns = []
        for j in range(len(entries)):
            seeded = entries.copy()
            seeded[j] = Dual(entries[j], 1.0)
            call = list(args)
            call[i] = seeded[0] if shape == () else seeded.reshape(shape)
            out = scalar_output(fn(*call, **kwargs))
            if isinstance(out, (list, tuple, np.ndarray)) or hasattr(out, "_reduce"):
                raise TypeError(f"{getattr(fn, '__name__', fn)}() must return a scalar to be differentiated")
            value, tangent = _split(out)
            columns.append(tangent)
        grads.append(columns[0] if shape == () else _numbers(np.array(columns, dtype=object).reshape(shape)))
    return value, grads
