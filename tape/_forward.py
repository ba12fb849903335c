"""Forward mode: dual numbers, and the transforms built on them (`jvp`, and the second
derivatives of `grad`, `hvp` and `hessian`).

A `Dual` carries a value and a tangent (the derivative along one direction) through every
operation of the rule table: the value is the operation of the operands' values, the tangent is
sum(partial * tangent of the operand), with the partials the table's (`tape._ops.PARTIALS`).
Those partials are evaluated on whatever the values are, so a Dual's parts may be floats, Vars
or Duals. That is how derivatives of derivatives work, with no cost to the tape's default path:

* a Dual whose value is a `Var` computes a derivative in forward mode while the tape records
  it: its tangent is a Var, which a sweep differentiates again (reverse over forward);
* a Dual of Duals is forward over forward.

Each Dual has a tag, its level: every `jvp` (and every forward-mode `grad`) takes a new one,
larger than all before. Where Duals of two levels meet, the newer (inner) level is the Dual and
the older is a constant to it, so a derivative taken inside a function that closes over an outer
derivative's variable never mixes the two (perturbation confusion).
"""
from __future__ import annotations

import itertools
import operator
from typing import Callable, Sequence

import numpy as np

from . import _nary, _ops, _tensor
from ._rules import BINARY, CODES, KINK_PARTIAL, LEFT_CONSTANT, REDUCTIONS, RIGHT_CONSTANT, UNARY, code_of
from ._var import CONSTANTS, VarBase, exact, new

_levels = itertools.count(1)  # 0 is the level of Duals made by hand


class Dual:
    """A value and its tangent: the derivative of the value along one direction (forward mode).

    `Dual(x, 1.0)` seeds d/dx; numbers and Vars are constants to it (tangent 0)."""

    __slots__ = ("value", "tangent", "tag")

    def __init__(self, value, tangent=0.0, tag: int = 0) -> None:
        self.value, self.tangent, self.tag = value, tangent, tag

    def __repr__(self) -> str:
        return f"Dual({self.value!r}, {self.tangent!r})"

    def __float__(self) -> float:
        return float(self.value)

    def __neg__(self):
        return _unary(NEG, self)

    def __abs__(self):
        return _unary(ABS, self)

    def __pos__(self):
        return self

    # Comparisons compare true values, as Vars do (tape._var.exact); a Var among them keeps the
    # comparison as a guard when traced.
    def __lt__(self, other):
        return exact(self.value) < exact(_inner(other))

    def __le__(self, other):
        return exact(self.value) <= exact(_inner(other))

    def __gt__(self, other):
        return exact(self.value) > exact(_inner(other))

    def __ge__(self, other):
        return exact(self.value) >= exact(_inner(other))

    def __eq__(self, other):
        return exact(self.value) == exact(_inner(other))

    def __ne__(self, other):
        return exact(self.value) != exact(_inner(other))

    __hash__ = object.__hash__

    @classmethod
    def kink(cls, value, xs: tuple) -> Dual:
        """`value` whose derivative in the xs is nan (tape._rules.kink), at the newest level."""
        tag = max(x.tag for x in xs if x.__class__ is Dual)
        own = [x for x in xs if x.__class__ is Dual and x.tag == tag]
        inner = _ops.kink(value, *(x.value if x in own else x for x in xs))
        return _dual(inner, KINK_PARTIAL * _nary.sum([x.tangent for x in own]), tag)


def _inner(x):
    return x.value if x.__class__ is Dual else x


def _dual(value, tangent, tag: int) -> Dual:
    d = new(Dual)
    d.value, d.tangent, d.tag = value, tangent, tag
    return d


# -- the rule table's operations on any number type -----------------------------------------------

NEG, ABS = code_of("neg"), code_of("abs")
OPERATORS = {"-": operator.neg, "abs": abs}
APPLY = {code_of(r.name): OPERATORS.get(r.symbol) or getattr(_ops, r.name) for r in UNARY}


def _binary_value(on_numbers: Callable, op: Callable) -> Callable:
    """A binary rule's value: of two numbers by the rule (refused as on Vars), else the operator."""
    return lambda a, b: on_numbers(float(a), float(b)) if isinstance(a, CONSTANTS) and isinstance(b, CONSTANTS) else op(a, b)


APPLY.update({code_of(r.name): _binary_value(getattr(_ops, f"{r.name}_value"), getattr(operator, r.name)) for r in BINARY})
APPLY.update({code_of(r.name): getattr(_nary, r.name) for r in REDUCTIONS})
VARIANT = {code_of(r.name): (code_of(r.name, RIGHT_CONSTANT), code_of(r.name, LEFT_CONSTANT)) for r in BINARY}
NUMBERS = (*CONSTANTS, VarBase)  # what a Dual treats as a constant


def raise_refused(code: int, operands: list, context: str = ""):
    """Raise the scalar path's error for the operands that operation `code` refuses (a compiled
    kernel found them), with `context` appended: the error a recording would have raised."""
    name, _, _ = CODES[code]
    error = scalar_error(name, operands)
    if error is None:
        raise AssertionError(f"compiled code refused {name}{tuple(operands)}{context}, which the scalar rule accepts")
    raise type(error)(f"{error}{context}") from None


def scalar_error(name: str, operands: list) -> Exception | None:
    """The error that operation `name` of these numbers raises on the scalar path (a Var's), or
    None if it takes them: every path's error is this one."""
    from ._tape import Tape

    try:
        with Tape():
            APPLY[code_of(name)](_ops.Var(operands[0]), *operands[1:])
    except (ValueError, OverflowError, ZeroDivisionError) as e:
        return e
    return None


def _unary(code: int, x: Dual) -> Dual:
    """Operation `code` (tape.sin(dual) and friends land here)."""
    y = APPLY[code](x.value)
    (d,) = _ops.PARTIALS[code](x.value, None, y)
    return _dual(y, _term(d, x.tangent), x.tag)


def _binary(code: int, a, b):
    """a <op> b where a or b is a Dual: at the newer level of the two, the other is a constant."""
    a_dual, b_dual = a.__class__ is Dual, b.__class__ is Dual
    if not (a_dual or isinstance(a, NUMBERS)) or not (b_dual or isinstance(b, NUMBERS)):
        return NotImplemented
    tag = max(a.tag if a_dual else -1, b.tag if b_dual else -1)
    a_own, b_own = a_dual and a.tag == tag, b_dual and b.tag == tag
    av, bv = (a.value if a_own else a), (b.value if b_own else b)
    y = APPLY[code](av, bv)
    if a_own and b_own:
        da, db = _ops.PARTIALS[code](av, bv, y)
        return _dual(y, _term(da, a.tangent) + _term(db, b.tangent), tag)
    right, left = VARIANT[code]
    if a_own:
        (da,) = _ops.PARTIALS[right](av, bv, y)
        return _dual(y, _term(da, a.tangent), tag)
    (db,) = _ops.PARTIALS[left](av, bv, y)
    return _dual(y, _term(db, b.tangent), tag)


def _adds_nothing(partial, tangent) -> bool:
    """Whether the partial or the tangent is the number 0: a sweep skips an edge whose partial
    is 0 and a node whose adjoint is 0, so an infinite partial times a zero tangent adds nothing
    here either (not nan), and forward mode agrees with reverse mode."""
    return isinstance(partial, float) and partial == 0.0 or isinstance(tangent, float) and tangent == 0.0


def _term(partial, tangent):
    """partial * tangent, 0.0 where that adds nothing (see _adds_nothing)."""
    return 0.0 if _adds_nothing(partial, tangent) else partial * tangent


def _reduce(code: int, *operands: list):
    """A reduction (sum, logsumexp: one list; dot: ws and xs) with Duals among the operands."""
    entries = [x for xs in operands for x in xs]
    if any(x.__class__ is _tensor.DualTensor for x in entries) and all(np.ndim(_tensor.array_of(x)) == 0 for x in entries):
        stacked = [_tensor.stack(xs) for xs in operands]  # forward mode's matrix nodes without axes, as Vars are taken
        return (stacked[0] * stacked[1]).sum() if len(stacked) == 2 else getattr(stacked[0], CODES[code][0])()
    tags = [x.tag for xs in operands for x in xs if x.__class__ is Dual]
    if not tags:  # something that is neither a number, a Var nor a Dual
        bad = next(x for xs in operands for x in xs if not isinstance(x, NUMBERS))
        hint = (": a Tensor reduces itself (tape.sum(t), t.sum(axis)); Tensors entry by entry: tape.stack(xs).sum(axis=0)"
                if isinstance(bad, _tensor.Tensor) else "")
        raise TypeError(f"{CODES[code][0]}() takes Vars and numbers, got a {type(bad).__name__}{hint}")
    tag = max(tags)
    values = [[x.value if x.__class__ is Dual and x.tag == tag else x for x in xs] for xs in operands]
    y = APPLY[code](*values)
    partials, tangents = [], []
    for terms, ds in zip(zip(*operands), reduction_partials(code, values, y)):
        for d, x in zip(ds, terms):
            if x.__class__ is Dual and x.tag == tag and not _adds_nothing(d, x.tangent):
                partials.append(d)
                tangents.append(x.tangent)
    return _dual(y, _nary.dot(partials, tangents), tag)


def reduction_partials(code: int, operands: list, y) -> list:
    """The partials of each term of reduction `code` (operands: a list of numbers, Vars or Duals,
    or two for dot) and value y: the table's, of the sum s of the terms and the largest operand's
    number m (a constant, which they do not depend on), where they read s and m."""
    terms = list(zip(*operands))
    term = _ops.TERMS.get(code)
    s = m = 0.0
    if term is not None:
        m = max(primal(a) for a in operands[0])
        s = _nary.sum([term(*t, m) for t in terms])
    return [_ops.PARTIALS[code](*t, y, s, m) for t in terms]


def primal(x) -> float:
    """The number under a Var or a Dual (of Duals)."""
    while x.__class__ is Dual:
        x = x.value
    return float(x._value if isinstance(x, VarBase) else x)


for _rule in BINARY:
    _code = code_of(_rule.name)
    setattr(Dual, f"__{_rule.name}__", lambda self, other, code=_code: _binary(code, self, other))
    setattr(Dual, f"__r{_rule.name}__", lambda self, other, code=_code: _binary(code, other, self))
_ops.OTHER_TYPES[Dual] = _unary
_nary.forward_reduce = _reduce
_tensor.Dual, _tensor.scalar_error = Dual, scalar_error


# -- the transforms -------------------------------------------------------------------------------


def jvp(fn: Callable, primals: Sequence, tangents: Sequence):
    """(fn(*primals), the derivative of fn at primals along tangents), in one forward pass.

    primals and tangents are sequences of the same structure: numbers or arrays of numbers
    (Vars too: then the derivative is recorded on their tape). Outputs may be a scalar or an
    array/list of scalars; the derivative has the output's shape."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    tag = next(_levels)
    duals = []
    for i, (p, t) in enumerate(zip(primals, tangents)):
        if np.shape(p) != np.shape(t):
            raise ValueError(f"jvp: primal {i} has shape {np.shape(p)} but its tangent has shape {np.shape(t)}")
        duals.append(_seeded(p, t, tag))
    return split(fn(*duals), tag)


def _seeded(values, tangents, tag: int):
    """Duals of one level: a Dual for a scalar (a 0-d array too), an object array of them."""
    if np.ndim(values) == 0:
        return _dual(_scalar(values), _scalar(tangents), tag)
    out = np.empty(np.shape(values), dtype=object)
    for j, (v, t) in enumerate(zip(np.asarray(values, dtype=object).flat, np.asarray(tangents, dtype=object).flat)):
        out.flat[j] = _dual(_scalar(v), _scalar(t), tag)
    return out


def _scalar(x):
    """A number as a float (a 0-d array's too); Vars and Duals as they are."""
    if isinstance(x, np.ndarray):
        x = x.item() if x.dtype != object else x.reshape(-1)[0]
    return float(x) if isinstance(x, CONSTANTS) else x


def split(out, tag: int):
    """(values, tangents) of a function's output at level `tag`: of a Dual, a constant, or an
    array or list of them (anything not a Dual of the level has tangent 0)."""
    def parts(o):
        return (o.value, o.tangent) if o.__class__ is Dual and o.tag == tag else (o, 0.0)

    if np.ndim(out) == 0 and not isinstance(out, (list, tuple)):
        value, tangent = parts(scalar_output(out))
        return _scalar(value), _scalar(tangent)
    array = np.asarray(out, dtype=object)
    pairs = [parts(o) for o in array.flat]
    values, tangents = (np.array([p[k] for p in pairs], dtype=object).reshape(array.shape) for k in (0, 1))
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
            tag = next(_levels)
            seeded = entries.copy()
            seeded[j] = _dual(_scalar(entries[j]), 1.0, tag)
            call = list(args)
            call[i] = seeded[0] if shape == () else seeded.reshape(shape)
            out = scalar_output(fn(*call, **kwargs))
            if isinstance(out, (list, tuple, np.ndarray)) or hasattr(out, "_reduce"):
                raise TypeError(f"{getattr(fn, '__name__', fn)}() must return a scalar to be differentiated")
            value, tangent = split(out, tag)
            columns.append(tangent)
        grads.append(columns[0] if shape == () else _numbers(np.array(columns, dtype=object).reshape(shape)))
    return value, grads
