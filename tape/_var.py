"""`Var`: a float that records every operation on it as a node of its tape.

The arithmetic is declared once, as rules (the value and the local partials of each operation),
and `compile_op` writes each method from one template, as `dataclasses` writes `__init__`: the
recording code then runs inline, with no helper call per operation (a third of the cost).
"""
from __future__ import annotations

import math
import textwrap
from typing import Union

import numpy as np

from ._tape import LEAF, StaleVarError, Tape, _current, current_tape, header

Number = Union[int, float]
CONSTANTS = (int, float, np.integer, np.floating)
_new = object.__new__


class Var:
    """A scalar on a tape: its `value`, its node on the tape, and (after a sweep) its `grad`.

    Operations are recorded on the tape of their `Var` operands; `Var(x)` makes a leaf on the
    current tape. Plain numbers are constants: no node, no edge.
    """

    __slots__ = ("value", "_node", "_seg")

    def __init__(self, value: Number) -> None:
        t = _current.get(None) or current_tape()
        t._rec.append(LEAF)
        n = t._n
        t._n = n + 1
        if n >= t._flush_at:
            t.flush()
        self.value = float(value)
        self._node = n
        self._seg = t._seg

    @property
    def grad(self) -> float:
        """d(output)/d(self) from the latest sweep of this Var's tape (0.0 if it played no part).
        Not accumulated: every sweep replaces it."""
        adjoint = self.tape.adjoint
        return float(adjoint[self._node]) if self._node < len(adjoint) else 0.0

    @property
    def tape(self) -> Tape:
        """The tape this Var's node is on (raises `StaleVarError` if the node was rewound away)."""
        if not self._seg.alive:
            self._seg.record(None)  # raises the StaleVarError
        return self._seg.tape

    @property
    def node(self) -> int:
        """This Var's index on its tape."""
        return self._node

    def backward(self) -> None:
        """Sweep the tape from this Var: afterwards `.grad` of every Var before it reads
        d(self)/d(that Var)."""
        self.tape.backward(self._node)

    def detach(self) -> Var:
        """The same value as a new leaf: no gradient flows through it."""
        return _leaf_on(self.tape, self.value)

    def item(self) -> float:
        return self.value

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Var({self.value!r})"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __pos__(self) -> Var:
        return self

    # Comparisons compare values and return bools.
    def __lt__(self, other) -> bool:
        return self.value < _value(other)

    def __le__(self, other) -> bool:
        return self.value <= _value(other)

    def __gt__(self, other) -> bool:
        return self.value > _value(other)

    def __ge__(self, other) -> bool:
        return self.value >= _value(other)

    def __eq__(self, other) -> bool:
        return self.value == _value(other)

    def __ne__(self, other) -> bool:
        return self.value != _value(other)

    __hash__ = object.__hash__  # by identity, as for tensors: a Var is a node, not a number

    def __bool__(self) -> bool:
        return self.value != 0.0


# -- the rules: value and local partials from the operand values a (and b) ----------------------

BINARY = {  # a <op> b  ->  value, d value/d a, d value/d b
    "add": "value, da, db = a + b, 1.0, 1.0",
    "sub": "value, da, db = a - b, 1.0, -1.0",
    "mul": "value, da, db = a * b, b, a",
    "truediv": "value, da, db = _div(a, b)",
    "pow": "value, da, db = _pow(a, b, {b_is_var})",
}
UNARY = {  # <op> a  ->  value, d value/d a
    "neg": "value, da = -a, -1.0",
    "abs": "value, da = abs(a), float((a > 0.0) - (a < 0.0))",
}

_RECORD = """\
seg = {x}._seg
t = seg.tape
if not t.recording:
    return value
{check}seg.record(({head}, {nodes}, {partials}))
n = t._n
t._n = n + 1
if n >= t._flush_at:
    t.flush()
r = _new(Var)
r.value = value
r._node = n
r._seg = t._seg
return r
"""
_IS_CONSTANT = "{0}.__class__ is float or isinstance({0}, CONSTANTS)"
_AS_FLOAT = "other if other.__class__ is float or other.__class__ is int else float(other)"  # numpy scalars too


def record_code(rule: str, name: str, parents: list[str], partials: list[str]) -> str:
    """The body that evaluates `rule` and records its node with the given parents."""
    check = "" if len(parents) == 1 else f"if {parents[1]}._seg is not seg:\n    _check_operand({parents[0]}, {parents[1]})\n"
    record = _RECORD.format(
        x=parents[0],
        check=check,
        head=header(len(parents), name),
        nodes=", ".join(f"{p}._node" for p in parents),
        partials=", ".join(partials),
    )
    return rule + "\n" + record


def compile_op(name: str, args: str, body: str, namespace: dict):
    """Define function `name(args)` from `body` in `namespace` and return it."""
    code = f"def {name}({args}):\n" + textwrap.indent(body, "    ")
    exec(compile(code, f"<wengert {name}>", "exec"), namespace)
    return namespace[name]


def _binary_methods(op: str, rule: str) -> tuple[str, str]:
    """The bodies of `__op__` (self <op> other) and `__rop__` (other <op> self)."""
    both = record_code(rule.format(b_is_var=True), op, ["self", "other"], ["da", "db"])
    right_constant = record_code(rule.format(b_is_var=False), op, ["self"], ["da"])
    left_constant = record_code(rule.format(b_is_var=True), op, ["self"], ["db"])
    forward = (
        "if other.__class__ is Var:\n"
        + textwrap.indent("a = self.value\nb = other.value\n" + both, "    ")
        + f"if {_IS_CONSTANT.format('other')}:\n"
        + textwrap.indent("a = self.value\nb = " + _AS_FLOAT + "\n" + right_constant, "    ")
        + "return NotImplemented\n"
    )
    reflected = (
        f"if {_IS_CONSTANT.format('other')}:\n"
        + textwrap.indent("a = " + _AS_FLOAT + "\nb = self.value\n" + left_constant, "    ")
        + "return NotImplemented\n"
    )
    return forward, reflected


def _value(x):
    return x.value if x.__class__ is Var else x


def _div(a: float, b: float) -> tuple[float, float, float]:
    if b == 0.0:
        raise ZeroDivisionError(f"division by zero: {a!r} / {b!r}")
    q = a / b
    return q, 1.0 / b, -q / b


def _pow(x: float, y: float, d_exponent: bool) -> tuple[float, float, float]:
    """x ** y with its partials d/dx and (if the exponent is a Var) d/dy; ValueError off the
    domain, as Python's math does."""
    if x == 0.0 and y < 0:
        raise ValueError(f"pow({x!r}, {y!r}): 0 cannot be raised to a negative power")
    if x < 0.0 and y != int(y):
        raise ValueError(f"pow({x!r}, {y!r}): a negative base needs an integer exponent")
    if d_exponent and x < 0.0:
        raise ValueError(f"pow({x!r}, {y!r}): d(x**y)/dy = log(x) * x**y needs x >= 0")
    try:
        value = float(x**y)
    except OverflowError:
        raise OverflowError(f"pow({x!r}, {y!r}): result too large") from None
    if y == 0:
        dx = 0.0
    elif x == 0.0:
        dx = math.inf if y < 1 else float(y == 1)
    else:
        dx = y * x ** (y - 1)
    dy = value * math.log(x) if d_exponent and x > 0.0 else 0.0
    return value, float(dx), dy


def _leaf_on(t: Tape, value: float) -> Var:
    """A new leaf on tape `t` (not necessarily the current one)."""
    r = _new(Var)
    r.value = float(value)
    r._seg = t._seg
    r._node = t.leaf()
    return r


def _check_operand(a: Var, b: Var) -> None:
    """The slow path of a two-Var operation whose operands come from different segments."""
    if b._seg.tape is not a._seg.tape:
        raise ValueError(
            f"cannot combine Vars of two tapes: {a!r} is node {a._node} of {a._seg.tape!r}, "
            f"{b!r} is node {b._node} of {b._seg.tape!r}; make both on one tape"
        )
    if not b._seg.alive:
        b._seg.record(None)  # raises the StaleVarError


NAMESPACE = {
    "Var": Var, "CONSTANTS": CONSTANTS, "_new": _new, "_div": _div, "_pow": _pow,
    "_check_operand": _check_operand, "math": math,
}
for _op, _rule in BINARY.items():
    _forward, _reflected = _binary_methods(_op, _rule)
    setattr(Var, f"__{_op}__", compile_op(f"__{_op}__", "self, other", _forward, NAMESPACE))
    setattr(Var, f"__r{_op}__", compile_op(f"__r{_op}__", "self, other", _reflected, NAMESPACE))
for _op, _rule in UNARY.items():
    _body = "a = self.value\n" + record_code(_rule, _op, ["self"], ["da"])
    setattr(Var, f"__{_op}__", compile_op(f"__{_op}__", "self", _body, NAMESPACE))

__all__ = ["Var", "StaleVarError", "CONSTANTS", "record_code", "compile_op", "NAMESPACE"]
