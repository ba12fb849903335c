"""`VarArray`: an array of scalar nodes, recorded in bulk by compiled kernels.

Each entry is an ordinary scalar node of the tape, with its parents and local partials, exactly
as a `Var` would record it; only the recording differs: one kernel call per operation instead of
one Python call per entry. This is how the course's "matrix/vector nodes" step is met without
leaving the scalar Wengert list.
"""
from __future__ import annotations

import math

import numpy as np

from ._functions import ARRAY_TYPES, ELEMENTARY, RULES
from ._tape import Tape, current_tape, op_code
from ._var import BINARY, CONSTANTS, Var, _new, compile_op


def _compiled_kernels():
    from . import kernels  # imports numba

    return kernels


class VarArray:
    """An n-d array of Vars: `values` (float64) and the tape node of each entry, `nodes`.

    `VarArray(values)` makes leaves on the current tape, except that entries which are already
    Vars keep their nodes (so `VarArray([x1, x2])`, or of the array of Vars `grad` passes, is
    differentiable); arithmetic with arrays and numbers broadcasts like numpy; `@` records one
    n-ary node per output entry; `tape.sigmoid(a)` and the other elementary functions apply
    entrywise. Plain arrays and numbers are constants.
    """

    __slots__ = ("values", "nodes", "_seg")
    __array_ufunc__ = None  # `ndarray + VarArray` defers to VarArray.__radd__

    def __init__(self, values) -> None:
        if isinstance(values, VarArray):  # a copy on the same nodes
            values.tape  # raises StaleVarError if its nodes were rewound away
            self.values, self.nodes, self._seg = values.values.copy(), values.nodes.copy(), values._seg
            return
        entries = np.asarray(values)
        if entries.dtype == object:  # numbers and Vars: the Vars keep their nodes
            flat = list(entries.flat)
            for e in flat:
                if not isinstance(e, (Var, *CONSTANTS)):
                    hint = " (forward mode, and so second derivatives, needs Vars, not VarArrays)" if hasattr(e, "tangent") else ""
                    raise TypeError(f"VarArray: entries must be numbers or Vars, got {type(e).__name__}{hint}")
            old = [e for e in flat if isinstance(e, Var)]
            t = _tape_of(*old) if old else current_tape()
            self.values = np.array([e.value if isinstance(e, Var) else e for e in flat], dtype=np.float64).reshape(entries.shape)
            is_new = np.array([not isinstance(e, Var) for e in flat]).reshape(entries.shape)
        else:
            old, t = [], current_tape()
            self.values, is_new = entries.astype(np.float64), np.ones(entries.shape, dtype=bool)
        count = int(is_new.sum())
        first = t.record_bulk(count, 0, _compiled_kernels().record_leaves, count, LEAF)
        self.nodes = np.empty(entries.shape, dtype=np.int64)
        self.nodes[is_new] = np.arange(first, first + count)
        self.nodes[~is_new] = [e._node for e in old]
        # new leaves are on the tape's newest segment; else the newest node's segment, which
        # lives as long as every other (a rewind that keeps it keeps them)
        self._seg = t._seg if count else max(old, key=lambda e: e._node)._seg

    @classmethod
    def _on(cls, t: Tape, values: np.ndarray, nodes: np.ndarray) -> VarArray:
        a = _new(cls)
        a.values, a.nodes, a._seg = values, nodes, t._seg
        return a

    @classmethod
    def _recorded(cls, t: Tape, values: np.ndarray, first: int) -> VarArray:
        return cls._on(t, values, np.arange(first, first + values.size).reshape(values.shape))

    @property
    def tape(self) -> Tape:
        """The tape of these nodes (raises `StaleVarError` if they were rewound away)."""
        if not self._seg.alive:
            self._seg.record(None)
        return self._seg.tape

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def ndim(self) -> int:
        return self.values.ndim

    @property
    def size(self) -> int:
        return self.values.size

    def __len__(self) -> int:
        return len(self.values)

    @property
    def T(self) -> VarArray:
        return VarArray._on(self.tape, self.values.T, self.nodes.T)

    def reshape(self, *shape) -> VarArray:
        return VarArray._on(self.tape, self.values.reshape(*shape), self.nodes.reshape(*shape))

    @property
    def grad(self) -> np.ndarray:
        """d(output)/d(entry) from the latest sweep of the tape, shaped like the array."""
        adjoint = self.tape.adjoint
        grads = np.zeros(self.shape)
        seen = self.nodes < len(adjoint)
        grads[seen] = adjoint[self.nodes[seen]]
        return grads

    def backward(self) -> None:
        """Sweep from this array's single entry (a loss); see `Var.backward`."""
        if self.size != 1:
            raise ValueError(
                f"backward() needs a single output, got a VarArray of shape {self.shape}; "
                "reduce it with .sum() or .mean() first"
            )
        self.tape.backward(int(self.nodes.flat[0]))

    def __getitem__(self, index) -> VarArray | Var:
        values, nodes = self.values[index], self.nodes[index]
        if np.ndim(values) == 0:
            v = _new(Var)
            v.value, v._node, v._seg = float(values), int(nodes), self._seg
            return v
        return VarArray._on(self.tape, values, nodes)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"VarArray({np.array2string(self.values, precision=4, threshold=20)})"

    # -- reductions -------------------------------------------------------------------------------

    def sum(self, axis: int | None = None) -> Var | VarArray:
        """The sum of all entries as ONE node, or along `axis` (one node per remaining entry)."""
        return self._reduce(axis, 1.0, "sum")

    def mean(self, axis: int | None = None) -> Var | VarArray:
        count = self.size if axis is None else self.shape[axis]
        return self._reduce(axis, 1.0 / count, "mean")

    def _reduce(self, axis: int | None, weight: float, name: str) -> Var | VarArray:
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{name}(axis): expected an int or None, got {axis!r}")
        if axis is not None and self.ndim == 1 and axis in (0, -1):
            axis = None  # a 1-d array along its only axis: the whole sum, one node
        values = np.moveaxis(self.values, axis, -1) if axis is not None else self.values.reshape(1, -1)
        nodes = np.moveaxis(self.nodes, axis, -1) if axis is not None else self.nodes.reshape(1, -1)
        rows = record_array(
            values.sum(axis=-1) * weight,
            VarArray._on(self.tape, values.reshape(-1, values.shape[-1]), nodes.reshape(-1, nodes.shape[-1])),
            np.full(nodes.shape, weight).reshape(-1, nodes.shape[-1]),
            name,
        )
        if axis is None:
            return rows[0]
        return rows.reshape(values.shape[:-1]) if isinstance(rows, VarArray) else rows

    # -- arithmetic -------------------------------------------------------------------------------

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return self * -1.0

    def __abs__(self):
        return self * np.sign(self.values)  # d|x|/dx = sign(x), 0 at 0 as for a Var

    def __pos__(self):
        return self


def _operand(x):
    """A list, tuple or array that holds Vars as a VarArray of their nodes (never as constants
    made of their values); anything else as it is."""
    if isinstance(x, (list, tuple, np.ndarray)) and np.asarray(x).dtype == object:
        return VarArray(x)
    return x


def _parts(x) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(values, nodes) of an operand; nodes is None for constants; None if not an operand."""
    if isinstance(x, VarArray):
        return x.values, x.nodes
    if isinstance(x, Var):
        return np.array(x.value), np.array(x._node)
    if isinstance(x, (np.ndarray, *CONSTANTS)) or isinstance(x, (list, tuple)):
        return np.asarray(x, dtype=np.float64), None
    return None


def _tape_of(*operands) -> Tape:
    tapes = {x.tape for x in operands if isinstance(x, (VarArray, Var))}
    if len(tapes) != 1:
        raise ValueError("cannot combine Vars of two tapes; make all operands on one tape")
    return tapes.pop()


def _constant_nodes(nodes: np.ndarray | None, shape: tuple) -> np.ndarray:
    return np.full(shape, -1) if nodes is None else np.broadcast_to(nodes, shape)


# -- elementwise binary operations: BINARY's rules, on arrays --------------------------------------


def _div_arrays(a, b):
    zero = np.broadcast_to(b == 0.0, np.broadcast_shapes(np.shape(a), np.shape(b)))
    if zero.any():
        at = np.unravel_index(np.argmax(zero), zero.shape)
        raise ZeroDivisionError(f"division by zero at index {tuple(map(int, at))}: {np.broadcast_to(a, zero.shape)[at]!r} / 0.0")
    q = a / b
    return q, 1.0 / b, -q / b


def _pow_arrays(x, y, d_exponent):
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    for bad, why in (
        ((x == 0) & (y < 0), "0 cannot be raised to a negative power"),
        ((x < 0) & (y != np.floor(y)), "a negative base needs an integer exponent"),
        ((x < 0) & d_exponent, "d(x**y)/dy = log(x) * x**y needs x >= 0"),
    ):
        if bad.any():
            at = np.unravel_index(np.argmax(bad), bad.shape)
            raise ValueError(f"pow({x[at]!r}, {y[at]!r}) at index {tuple(map(int, at))}: {why}")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = x**y
        dx = np.where(y == 0, 0.0, np.where(x == 0, np.where(y < 1, math.inf, (y == 1) * 1.0), y * x ** (y - 1)))
        dy = np.where(x > 0, value * np.log(np.where(x > 0, x, 1.0)), 0.0) if d_exponent else np.zeros_like(value)
    return value, dx, dy


ARRAY_NAMESPACE = {"_div": _div_arrays, "_pow": _pow_arrays}
ARRAY_RULES = {  # (op, is b a node?) -> rule(a, b) -> value, da, db, from the scalar declarations
    (op, b_is_var): compile_op("rule", "a, b", rule.format(b_is_var=b_is_var) + "\nreturn value, da, db\n", dict(ARRAY_NAMESPACE))
    for op, rule in BINARY.items()
    for b_is_var in (False, True)
}


def _binary(op: str, a, b):
    a, b = _operand(a), _operand(b)
    pa, pb = _parts(a), _parts(b)
    if pa is None or pb is None:
        return NotImplemented
    (a_values, a_nodes), (b_values, b_nodes) = pa, pb
    value, da, db = ARRAY_RULES[op, b_nodes is not None](a_values, b_values)
    t = _tape_of(a, b)
    if not t.recording:
        return value
    shape = np.shape(value)
    n = int(np.prod(shape))
    flat = lambda x: np.ascontiguousarray(np.broadcast_to(x, shape), dtype=x.dtype if hasattr(x, "dtype") else None).ravel()  # noqa: E731
    first = t.record_bulk(
        n, 2 * n, _compiled_kernels().record_binary, op_code(op),
        flat(_constant_nodes(a_nodes, shape)), flat(_constant_nodes(b_nodes, shape)),
        flat(np.asarray(da, dtype=np.float64)), flat(np.asarray(db, dtype=np.float64)),
    )
    return VarArray._recorded(t, np.asarray(value, dtype=np.float64), first)


def _operators(op: str):
    return (lambda self, other: _binary(op, self, other)), (lambda self, other: _binary(op, other, self))


for _op in BINARY:
    _forward, _reflected = _operators(_op)
    setattr(VarArray, f"__{_op}__", _forward)
    setattr(VarArray, f"__r{_op}__", _reflected)


# -- the rest ---------------------------------------------------------------------------------------


def _elementwise(rule: int, x: VarArray) -> VarArray | np.ndarray:
    """RULES[rule] applied to every entry of `x` (`tape.sin(x)` and friends land here)."""
    t = x.tape
    if not t.recording:  # no_grad: values only
        return apply_rule(rule, x.values)
    values = np.ascontiguousarray(x.values).ravel()
    out = np.empty_like(values)
    name = RULES[rule].name
    first = t.record_bulk(
        len(values), len(values), _compiled_kernels().record_unary,
        rule, op_code(name), values, np.ascontiguousarray(x.nodes).ravel(), out,
    )
    if first < 0:
        ELEMENTARY[name](float(values[-first - 1]))  # raises the scalar path's error for this value
    return VarArray._recorded(t, out.reshape(x.shape), first)


def apply_rule(rule: int, values: np.ndarray) -> np.ndarray:
    """RULES[rule] on every entry of a float array, compiled; the scalar path's error if an
    entry is off the function's domain."""
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    out = np.empty_like(flat)
    status = _compiled_kernels().apply_rule(rule, flat, out)
    if status < 0:
        ELEMENTARY[RULES[rule].name](float(flat[-status - 1]))
    return out.reshape(np.shape(values))


ARRAY_TYPES[VarArray] = _elementwise


def matmul(a, b) -> VarArray:
    """a @ b for VarArrays and arrays (1-d or 2-d): each output entry is ONE node whose parents
    are its row of `a` and its column of `b` (where they are nodes)."""
    a, b = _operand(a), _operand(b)
    pa, pb = _parts(a), _parts(b)
    if pa is None or pb is None:
        return NotImplemented
    (a_values, a_nodes), (b_values, b_nodes) = pa, pb
    if not 1 <= a_values.ndim <= 2 or not 1 <= b_values.ndim <= 2:
        raise ValueError(f"matmul: expected 1-d or 2-d operands, got shapes {a_values.shape} and {b_values.shape}")
    a2 = a_values.reshape(1, -1) if a_values.ndim == 1 else a_values
    b2 = b_values.reshape(-1, 1) if b_values.ndim == 1 else b_values
    if a2.shape[1] != b2.shape[0]:
        raise ValueError(f"matmul: shapes {a_values.shape} and {b_values.shape} do not align ({a2.shape[1]} != {b2.shape[0]})")
    t = _tape_of(a, b)
    out_shape = a_values.shape[:-1] + b_values.shape[1:]
    if not t.recording:
        return (a2 @ b2).reshape(out_shape)
    (m, n), p = a2.shape, b2.shape[1]
    out = np.empty((m, p))
    max_edges = m * p * n * ((a_nodes is not None) + (b_nodes is not None))
    first = t.record_bulk(
        m * p, max_edges, _compiled_kernels().record_matmul,
        np.ascontiguousarray(a2), np.ascontiguousarray(_constant_nodes(a_nodes, a_values.shape).reshape(a2.shape)),
        np.ascontiguousarray(b2), np.ascontiguousarray(_constant_nodes(b_nodes, b_values.shape).reshape(b2.shape)),
        out, op_code("dot"),
    )
    return VarArray._recorded(t, out.reshape(out_shape), first)


def record_array(values, parents: VarArray, partials, op: str = "custom") -> VarArray:
    """One node per row r, with value values[r], parents parents[r, :] and the local partials
    partials[r, :] you computed: a custom operation on arrays (`tape.record` for one node)."""
    values = np.asarray(values, dtype=np.float64)
    partials = np.ascontiguousarray(partials, dtype=np.float64)
    if parents.ndim != 2 or partials.shape != parents.shape or values.shape != (parents.shape[0],):
        raise ValueError(
            f"record_array: expected values (r,), parents (r, k) and partials (r, k), got shapes "
            f"{values.shape}, {parents.shape} and {partials.shape}"
        )
    t = parents.tape
    if not t.recording:
        return values
    first = t.record_bulk(
        len(values), parents.size, _compiled_kernels().record_rows,
        np.ascontiguousarray(parents.nodes), partials, op_code(op),
    )
    return VarArray._recorded(t, values, first)


LEAF = op_code("leaf")
