"""`VarArray`: an array of scalar nodes, recorded in bulk by compiled kernels.

Each entry is an ordinary scalar node of the tape, with its parents and local partials, exactly
as a `Var` would record it: the kernels evaluate the same rules (tape/_compiled.py, generated
from the rule table) and write the same records. Only the recording differs: one kernel call
per operation instead of one Python call per entry. This is how the course's "matrix/vector
nodes" step is met without leaving the scalar Wengert list.
"""
from __future__ import annotations

import numpy as np

from . import _ops
from ._display import Rows, Table
from ._forward import raise_refused
from ._ops import Var
from ._rules import BINARY, CODES, code_of
from ._tape import LEAF_HEADER, Tape, TraceError, current_tape, op_code
from ._tensor import Tensor
from ._var import COMPARISONS, CONSTANTS, Guard, _caller, new

DOT, SUM, LOGSUMEXP = code_of("dot"), code_of("sum"), code_of("logsumexp")
NEG, ABS = code_of("neg"), code_of("abs")


def _kernels():
    from . import kernels  # imports numba

    return kernels


class VarArray:
    """An n-d array of Vars: `values` (float64) and the tape node of each entry, `nodes`.

    `VarArray(values)` makes leaves on the current tape, except that entries which are already
    Vars keep their nodes (so `VarArray([x1, x2])`, or of the array of Vars `grad` passes, is
    differentiable); arithmetic with arrays and numbers broadcasts like numpy; `@` records one
    n-ary node per output entry; `tape.sigmoid(a)` and the other functions apply entrywise.
    Plain arrays and numbers are constants.
    """

    __slots__ = ("_values", "nodes", "_seg")
    __array_ufunc__ = None  # `ndarray + VarArray` defers to VarArray.__radd__

    def __init__(self, values) -> None:
        if isinstance(values, VarArray):  # a copy on the same nodes
            values.tape  # raises StaleVarError if its nodes were rewound away
            self._values, self.nodes, self._seg = values._values.copy(), values.nodes.copy(), values._seg
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
            self._values = np.array([e._value if isinstance(e, Var) else e for e in flat], dtype=np.float64).reshape(entries.shape)
            is_new = np.array([not isinstance(e, Var) for e in flat], dtype=bool).reshape(entries.shape)
        else:
            old, t = [], current_tape()
            self._values, is_new = entries.astype(np.float64), np.ones(entries.shape, dtype=bool)
        new_values = self._values[is_new]
        stream = np.empty(2 * new_values.size)
        stream[0::2], stream[1::2] = LEAF_HEADER, new_values
        first = t.extend(stream, new_values.size)
        self.nodes = np.empty(entries.shape, dtype=np.int64)
        self.nodes[is_new] = np.arange(first, first + new_values.size)
        self.nodes[~is_new] = [e._node for e in old]
        # new leaves are on the tape's newest segment; else the newest node's segment, which
        # lives as long as every other (a rewind that keeps it keeps them)
        self._seg = t._seg if new_values.size else max(old, key=lambda e: e._node)._seg

    @classmethod
    def _on(cls, t: Tape, values: np.ndarray, nodes: np.ndarray) -> VarArray:
        a = new(cls)
        a._values, a.nodes, a._seg = values, nodes, t._seg
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
    def values(self) -> np.ndarray:
        """The entries' numbers (refused while tracing, as a Var's `.value`: the trace would keep
        them as constants, wrong at other inputs)."""
        if self._seg.tape.guards is not None:
            raise TraceError(
                f"{self!r}.values while tracing: the numbers would be constants of the trace, wrong at "
                "other inputs; compute with the VarArray itself"
            )
        return self._values

    @property
    def shape(self) -> tuple[int, ...]:
        return self._values.shape

    @property
    def ndim(self) -> int:
        return self._values.ndim

    @property
    def size(self) -> int:
        return self._values.size

    def __len__(self) -> int:
        return len(self._values)

    @property
    def T(self) -> VarArray:
        return VarArray._on(self.tape, self._values.T, self.nodes.T)

    def reshape(self, *shape) -> VarArray:
        return VarArray._on(self.tape, self._values.reshape(*shape), self.nodes.reshape(*shape))

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
        values, nodes = self._values[index], self.nodes[index]
        if np.ndim(values) == 0:
            v = new(Var)
            v._value, v._node, v._seg = float(values), int(nodes), self._seg
            return v
        return VarArray._on(self.tape, values, nodes)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"VarArray({np.array2string(self._values, precision=4, threshold=20)})"

    def _repr_html_(self) -> str:
        """A table of its entries with their grads; a 2-d array as a grid of values, and below it
        a grid of grads after a sweep (its caption names the sweep)."""
        sweep = self._seg.tape.sweep_name() if self._seg.alive else ""
        grads = self.grad if sweep else None
        about = f"VarArray of shape {self.shape}, {self._values.dtype}"
        if self.ndim == 2:
            shown = _grid(self._values, f"{about}: values").html()
            return shown + _grid(grads, f"grad, of {sweep}").html() if sweep else shown

        def row(i: int) -> tuple[str, ...]:
            index = tuple(int(k) for k in np.unravel_index(i, self.shape))
            return (str(index if len(index) != 1 else index[0]), f"{self._values[index]:.6g}",
                    f"{grads[index]:.6g}" if sweep else "")

        return Table(("entry", "value", "grad"), Rows(self._values.size, row),
                     caption=f"{about}, {f'grads of {sweep}' if sweep else 'not swept yet'}").html()

    # -- reductions -------------------------------------------------------------------------------

    def sum(self, axis: int | None = None) -> Var | VarArray:
        """The sum of all entries as ONE node, or along `axis` (one node per remaining entry)."""
        return self._reduce(axis, SUM, "sum")

    def mean(self, axis: int | None = None) -> Var | VarArray:
        """The mean as ONE dot node (weights 1/count), or along `axis`."""
        return self._reduce(axis, DOT, "mean")

    def logsumexp(self, axis: int | None = None) -> Var | VarArray:
        """log(sum(exp(entries))) as ONE node, or along `axis`; its partials are the softmax."""
        return self._reduce(axis, LOGSUMEXP, "logsumexp")

    def _reduce(self, axis: int | None, code: int, name: str) -> Var | VarArray:
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{name}(axis): expected an int or None, got {axis!r}")
        if axis is not None and not -self.ndim <= axis < self.ndim:
            raise ValueError(f"{name}(axis): axis {axis} is out of range for a VarArray of shape {self.shape}")
        values = np.moveaxis(self._values, axis, -1) if axis is not None else self._values.reshape(1, -1)
        nodes = np.moveaxis(self.nodes, axis, -1) if axis is not None else self.nodes.reshape(1, -1)
        kept = values.shape[:-1]
        rows = np.ascontiguousarray(values.reshape(-1, values.shape[-1]))
        row_nodes = np.ascontiguousarray(nodes.reshape(-1, values.shape[-1]))
        t = self.tape
        out = np.empty(rows.shape[0])
        if code == DOT:  # the mean: each row against the constant weights 1/count
            weights = np.full(rows.shape[1], 1.0 / rows.shape[1])
            no_nodes = np.full(rows.shape[1], -1, dtype=np.int64)
            stream = np.empty(rows.shape[0] * (2 * rows.shape[1] + 2))
            w = 0
            for r in range(rows.shape[0]):
                out[r], w = _kernels().record_dot(DOT, rows[r], row_nodes[r], weights, no_nodes, stream, w)
        else:
            stream = np.empty(rows.shape[0] * (2 * rows.shape[1] + 1))
            w = _kernels().record_reduction(code, rows, row_nodes, out, stream)
        one = axis is None or not kept
        if not t.recording:
            return float(out[0]) if one else out.reshape(kept)
        result = VarArray._recorded(t, out, t.extend(stream[:w], rows.shape[0]))
        return result[0] if one else result.reshape(kept)

    # -- arithmetic -------------------------------------------------------------------------------

    def __matmul__(self, other):
        return _matmul(self, other)

    def __rmatmul__(self, other):
        return _matmul(other, self)

    def __neg__(self):
        return _elementwise(NEG, self)

    def __abs__(self):
        return _elementwise(ABS, self)

    def __pos__(self):
        return self

    # Comparisons compare true values entry by entry, as a Var's do: an array of bools, nothing
    # recorded (a mask); while tracing, each entry's comparison is kept as a guard.
    def __lt__(self, other):
        return _compare(self, "<", other)

    def __le__(self, other):
        return _compare(self, "<=", other)

    def __gt__(self, other):
        return _compare(self, ">", other)

    def __ge__(self, other):
        return _compare(self, ">=", other)


def _compare(x: VarArray, op: str, other):
    """x <op> other on float64 values (exact for float32 operands: see tape._var.exact); while
    tracing, a guard per entry, as `Var`'s comparisons keep."""
    other = _operand(other)
    parts = _parts(other)
    if parts is None:
        return NotImplemented
    values, nodes = parts
    t = _tape_of(x, other)
    outcome = COMPARISONS[op](x._values, values)
    if t.guards is not None:
        shape, where = outcome.shape, _caller()
        for lhs, rhs, b, out in zip(_nodes(x.nodes, shape), _nodes(nodes, shape), _flat(values, shape), outcome.flat):
            t.guards.append(Guard(int(lhs), op, int(rhs) if rhs >= 0 else float(b), bool(out), where))
    return outcome


def _operand(x):
    """A list, tuple or array that holds Vars as a VarArray of their nodes (never as constants
    made of their values); anything else as it is."""
    if isinstance(x, (list, tuple, np.ndarray)) and np.asarray(x).dtype == object:
        return VarArray(x)
    return x


def _parts(x) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(values, nodes) of an operand; nodes is None for constants; None if not an operand."""
    if isinstance(x, VarArray):
        return x._values, x.nodes
    if isinstance(x, Var):
        return np.array(x._value), np.array(x._node)
    if isinstance(x, (np.ndarray, *CONSTANTS)) or isinstance(x, (list, tuple)):
        return np.asarray(x, dtype=np.float64), None
    return None


EDGE_COLUMNS = 3  # columns a grid keeps at each end when it leaves out its middle (850 pixels hold 8)


def _grid(a: np.ndarray, caption: str) -> Table:
    """A 2-d array as a table: a row per row, a column per column, the middle columns of a wide
    one left out (a column of "..." says where)."""
    n = a.shape[1]
    columns = list(range(n)) if n <= 2 * EDGE_COLUMNS + 1 else [*range(EDGE_COLUMNS), None, *range(n - EDGE_COLUMNS, n)]
    return Table(("", *("..." if j is None else str(j) for j in columns)),
                 Rows(a.shape[0], lambda i: (str(i), *("..." if j is None else f"{a[i, j]:.6g}" for j in columns))),
                 caption=caption, right=tuple(range(len(columns) + 1)))


def _tape_of(*operands) -> Tape:
    tapes = {x.tape for x in operands if isinstance(x, (VarArray, Var))}
    if len(tapes) != 1:
        raise ValueError("cannot combine Vars of two tapes; make all operands on one tape")
    return tapes.pop()


def _nodes(nodes: np.ndarray | None, shape: tuple) -> np.ndarray:
    """The node of each entry of an operand broadcast to `shape` (-1: a constant), flat."""
    nodes = np.full(shape, -1, dtype=np.int64) if nodes is None else np.broadcast_to(nodes, shape)
    return np.ascontiguousarray(nodes, dtype=np.int64).ravel()


def _flat(values: np.ndarray, shape: tuple) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(values, shape), dtype=np.float64).ravel()


# -- element by element ------------------------------------------------------------------------------


def _binary(code: int, a, b):
    a, b = _operand(a), _operand(b)
    pa, pb = _parts(a), _parts(b)
    if pa is None or pb is None:
        return NotImplemented
    (a_values, a_nodes), (b_values, b_nodes) = pa, pb
    t = _tape_of(a, b)
    shape = np.broadcast_shapes(a_values.shape, b_values.shape)
    av, bv = _flat(a_values, shape), _flat(b_values, shape)
    out = np.empty(av.shape)
    stream = np.empty(5 * out.size)
    w = _kernels().record_binary(code, av, _nodes(a_nodes, shape), bv, _nodes(b_nodes, shape), out, stream)
    if w < 0:
        i = -w - 1
        raise_refused(code, [float(av[i]), float(bv[i])], f" at index {tuple(map(int, np.unravel_index(i, shape)))}")
    if not t.recording:
        return out.reshape(shape)
    return VarArray._recorded(t, out.reshape(shape), t.extend(stream[:w], out.size))


def _operators(code: int):
    return (lambda self, other: _binary(code, self, other)), (lambda self, other: _binary(code, other, self))


for _rule in BINARY:
    _forward, _reflected = _operators(code_of(_rule.name))
    setattr(VarArray, f"__{_rule.name}__", _forward)
    setattr(VarArray, f"__r{_rule.name}__", _reflected)

def _elementwise(code: int, x: VarArray) -> VarArray | np.ndarray:
    """A unary operation of every entry of `x` (`tape.sin(x)` and friends land here)."""
    t = x.tape
    values = np.ascontiguousarray(x._values, dtype=np.float64).ravel()
    out = np.empty_like(values)
    stream = np.empty(3 * values.size)
    w = _kernels().record_unary(code, values, np.ascontiguousarray(x.nodes).ravel(), out, stream)
    if w < 0:
        raise_refused(code, [float(values[-w - 1])], f" at index {tuple(map(int, np.unravel_index(-w - 1, x.shape)))}")
    if not t.recording:
        return out.reshape(x.shape)
    return VarArray._recorded(t, out.reshape(x.shape), t.extend(stream[:w], values.size))


def _entrywise(code: int, x: np.ndarray) -> np.ndarray:
    """A numpy array, entry by entry: object arrays of Vars (what `grad` passes a function of
    an array) give object arrays of Vars; number arrays give float arrays, computed compiled."""
    function = getattr(_ops, CODES[code][0])
    if x.dtype == object:
        return np.frompyfunc(function, 1, 1)(x)
    values = np.ascontiguousarray(x, dtype=np.float64).ravel()
    out = np.empty_like(values)
    w = _kernels().record_unary(code, values, np.full(values.size, -1, dtype=np.int64), out, np.empty(3 * values.size))
    if w < 0:
        raise_refused(code, [float(values[-w - 1])], f" at index {tuple(map(int, np.unravel_index(-w - 1, x.shape)))}")
    return out.reshape(x.shape)


_ops.OTHER_TYPES[VarArray] = _elementwise
_ops.OTHER_TYPES[np.ndarray] = _entrywise


def matmul(a, b) -> VarArray | Tensor:
    """a @ b for VarArrays and arrays (1-d or 2-d): each output entry is ONE dot node whose
    parents are its row of `a` and its column of `b` (where they are nodes). With a Tensor,
    ONE matrix node (see tape.Tensor)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a @ b
    out = _matmul(a, b)
    if out is NotImplemented:
        raise TypeError(f"matmul: expected VarArrays, arrays, lists or numbers, got {type(a).__name__} and {type(b).__name__}")
    return out


def _matmul(a, b):
    """matmul, or NotImplemented for an operand it does not take (as the @ operator expects)."""
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
    stream = np.empty(m * p * (4 * n + 2))
    w = _kernels().record_matmul(
        DOT, np.ascontiguousarray(a2), _nodes(a_nodes, a_values.shape).reshape(a2.shape),
        np.ascontiguousarray(b2.T), np.ascontiguousarray(_nodes(b_nodes, b_values.shape).reshape(b2.shape).T),
        out, stream,
    )
    return VarArray._recorded(t, out.reshape(out_shape), t.extend(stream[:w], m * p))


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
    stream = np.empty(parents.shape[0] * (2 * parents.shape[1] + 1))
    w = _kernels().record_rows(op_code(op), np.ascontiguousarray(parents.nodes), partials, stream)
    return VarArray._recorded(t, values, t.extend(stream[:w], len(values)))
