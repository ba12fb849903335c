"""The core of `Var`, a float that records every operation on it as a node of its tape.

`Var` itself is `VarBase` plus the arithmetic, which is generated from the rule table into
`tape/_ops.py` (one method per operator, the rule's value and partials written inline).
"""
from __future__ import annotations

import operator
import os
import sys
from typing import Union

import numpy as np

from ._rules import KINK_PARTIAL, header
from ._tape import LEAF_HEADER, StaleVarError, Tape, TraceError, _current, current_tape, op_code

Number = Union[int, float]
CONSTANTS = (int, float, np.integer, np.floating)
new = object.__new__


class VarBase:
    """A scalar on a tape: its `value`, its node on the tape, and (after a sweep) its `grad`.

    Operations are recorded on the tape of their `Var` operands; `Var(x)` makes a leaf on the
    current tape. Plain numbers are constants: no node, no edge. The engine reads the number as
    `_value`; `value` is the same number, refused while the tape is being traced.
    """

    __slots__ = ("_value", "_node", "_seg")

    def __init__(self, value: Number) -> None:
        value = float(value)
        t = _current.get(None) or current_tape()
        t._rec.extend((LEAF_HEADER, value))
        n = t._n
        t._n = n + 1
        if n >= t._flush_at:
            t.flush()
        self._value = value
        self._node = n
        self._seg = t._seg

    @property
    def value(self) -> float:
        """The number this Var stands for (refused while tracing: the trace would keep it as a
        constant, wrong at other inputs)."""
        if self._seg.tape.guards is not None:
            raise TraceError(
                f"{self!r}.value while tracing: the number would be a constant of the trace, wrong at "
                "other inputs; compute with the Var itself (compare x > 0, which the trace keeps as a guard)"
            )
        return self._value

    @value.setter
    def value(self, value: float) -> None:
        if self._seg.tape.guards is not None:
            raise TraceError(f"setting {self!r}.value while tracing: the trace would not know the new number")
        self._value = value

    @property
    def grad(self) -> float:
        """d(output)/d(self) from the latest sweep of this Var's tape (0.0 if it played no part).
        Not accumulated: every sweep replaces the grads of its whole tape, so after `y.backward()`
        and an unrelated `z.backward()` this reads 0.0 (as JAX's grad of z would say; PyTorch
        would keep adding to it until `zero_grad()`); the displays name the sweep they show."""
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

    def item(self) -> float:
        return float(self)

    def __float__(self) -> float:
        if self._seg.tape.guards is not None:
            raise TraceError(
                f"float() of {self!r} while tracing: the number would be a constant of the trace, "
                "wrong at other inputs (use the tape's functions, tape.sqrt and not math.sqrt)"
            )
        return self._value

    def __repr__(self) -> str:
        return f"Var({self._value!r})"

    def _repr_html_(self) -> str:
        t = self._seg.tape
        swept = self._seg.alive and len(t.adjoint) > 0
        grad = f", grad {self.grad!r} of {t.sweep_name()}" if swept else ", no sweep yet"
        return f"<code>Var</code> {self._value!r} (node {self._node}{grad})"

    def __format__(self, spec: str) -> str:
        return format(self._value, spec)

    def __pos__(self):
        return self

    # Comparisons compare values and return bools; while tracing, each is kept as a guard.
    def __lt__(self, other) -> bool:
        return _compare(self, "<", other)

    def __le__(self, other) -> bool:
        return _compare(self, "<=", other)

    def __gt__(self, other) -> bool:
        return _compare(self, ">", other)

    def __ge__(self, other) -> bool:
        return _compare(self, ">=", other)

    def __eq__(self, other) -> bool:
        return _compare(self, "==", other)

    def __ne__(self, other) -> bool:
        return _compare(self, "!=", other)

    __hash__ = object.__hash__  # by identity, as for tensors: a Var is a node, not a number

    def __bool__(self) -> bool:
        return _compare(self, "!=", 0.0)


COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


class Guard:
    """A comparison made while tracing, and its outcome: `lhs op rhs` was `outcome`. An operand
    is a node of the traced tape (an int) or a constant (a float)."""

    __slots__ = ("lhs", "op", "rhs", "outcome", "where")

    def __init__(self, lhs, op: str, rhs, outcome: bool, where: str) -> None:
        self.lhs, self.op, self.rhs, self.outcome, self.where = lhs, op, rhs, outcome, where


MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}  # a op b is b MIRRORED[op] a


def exact(x):
    """A number or array that compares by its true value: numpy floats as float64, which holds
    every float16 and float32 exactly. (NumPy 2 compares np.float32(x) > 0.1 in float32, rounding
    0.1 first: NEP 50.) Every comparison of the engine compares so, and so do replays."""
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return x.astype(np.float64, copy=False)
    return x


def _compare(x: VarBase, op: str, other):
    """x <op> other on true values (see `exact`), as a replay compares. While tracing, the
    comparison is kept as a guard on the traced tape, whichever operand is on it; an operand
    that is no Var of that tape is kept as a constant."""
    if isinstance(other, VarBase):
        b = other._value
    elif isinstance(other, CONSTANTS):
        b = exact(other)
    else:
        return NotImplemented  # a Dual or an array: its own reflected comparison decides
    outcome = COMPARISONS[op](x._value, b)
    t = x._seg.tape
    if t.guards is not None:
        rhs = other._node if isinstance(other, VarBase) and other._seg.tape is t else float(b)
        t.guards.append(Guard(x._node, op, rhs, outcome, _caller()))
    elif isinstance(other, VarBase) and other._seg.tape.guards is not None:  # x is a constant of other's trace
        other._seg.tape.guards.append(Guard(other._node, MIRRORED[op], float(x._value), outcome, _caller()))
    return outcome


_PACKAGE = os.path.dirname(__file__)


def _caller() -> str:
    """file:line of the innermost frame outside this package (where the user compared); in a
    notebook its cell as IPython's tracebacks name it (`Cell In[7], line 3`), not the kernel's file."""
    frame = sys._getframe(2)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _PACKAGE:
        frame = frame.f_back
    if frame is None:
        return "?"
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    cell = shell.compile.format_code_name(frame.f_code.co_filename) if hasattr(shell, "compile") else None
    where = f"{' '.join(cell)}, line {frame.f_lineno}" if cell else f"{frame.f_code.co_filename}:{frame.f_lineno}"
    return f"{where} in {frame.f_code.co_name}"


def check_operand(a: VarBase, b: VarBase) -> None:
    """The slow path of a two-Var operation whose operands come from different segments."""
    if b._seg.tape is not a._seg.tape:
        kinds = "Vars" if isinstance(a, VarBase) and isinstance(b, VarBase) else "nodes"  # a Tensor is a node too
        raise ValueError(
            f"cannot combine {kinds} of two tapes: {a!r} is node {a._node} of {a._seg.tape!r}, "
            f"{b!r} is node {b._node} of {b._seg.tape!r}; make both on one tape"
        )
    if not b._seg.alive:
        b._seg.record(None)  # raises the StaleVarError


def leaf_on(cls: type, t: Tape, value: float):
    """A new leaf of class `cls` (Var) on tape `t`, which need not be the current one."""
    r = new(cls)
    r._value = float(value)
    r._seg = t._seg
    r._node = t.leaf(r._value)
    return r


def record_node(parents: list, partials: list[float], value: float, code: int, constants: tuple = ()):
    """Record one node with these parents, partials and constants; return it as a Var (a float
    under `no_grad`)."""
    first = parents[0]
    t = first._seg.tape
    if not t.recording:
        return value
    for seg in {p._seg for p in parents}:
        if seg is not first._seg or not seg.alive:
            check_operand(first, next(p for p in parents if p._seg is seg))
    rec = t._rec
    rec.append(header(code, len(parents), len(constants)))
    rec += [p._node for p in parents]
    rec += partials
    rec += constants
    r = new(type(first))
    r._value = value
    r._seg = t._seg
    r._node = t._advance()
    return r


def kink(value: float, *xs):
    """`value`, whose derivative in each of `xs` does not exist: nan (see tape._rules). On numbers
    it is `value`; on Vars a node with nan partials, its value kept for replays; on Duals, a nan
    tangent."""
    for x in xs:
        if hasattr(x, "tangent"):
            return type(x).kink(value, xs)
    parents = [x for x in xs if isinstance(x, VarBase)]
    if not parents:
        return value
    return record_node(parents, [KINK_PARTIAL] * len(parents), value, op_code("kink"), (value,))


__all__ = ["VarBase", "StaleVarError", "CONSTANTS", "Guard", "check_operand", "exact", "kink", "leaf_on", "new", "record_node"]
