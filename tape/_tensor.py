"""Matrix nodes: a `Tensor` is ONE node of the tape that holds an array (the course's step three).

A matrix node sits on the same Wengert list as the scalar nodes, in recording order, but has no
scalar edges: beside it the tape keeps what its vector-Jacobian product needs (for Z = XW the
notes' X̄ = Z̄Wᵀ and W̄ = XᵀZ̄). `Tape.sweep` goes down the tape once: the scalar stretches
between matrix nodes by Algorithm 1's kernel, each matrix node by its VJP, which passes every
operand an adjoint of the operand's shape (a number, for a Var).

Element-wise operations take their values and partials from the rule table (tape/_vectorized.py,
generated from tape/_rules.py); the structural ones (matrix product, reductions, shapes,
indexing, losses) are declared once each in `STRUCTURAL`, with their VJP and their JVP. A result
with no axes is a Var: a 0-d matrix node doubles as a scalar node, so scalar code goes on from
`t.sum()` or `t[i, j]`.

Forward mode: a `DualTensor` carries a value and its tangent (an array of its shape) through the
same operations, at a level (tag) as the scalar Duals do. A tangent is sum(partial * operand's
tangent) for an element-wise rule, the row's JVP for a structural one. Its value may be a Tensor
node: then the operations record, the partials too (`RECORDED_PARTIALS`, a branch a `where` node),
so a sweep differentiates the tangent again: second derivatives, reverse over forward. A tangent
may carry a leading axis of k directions (a batch, vmap of jvp); `forward_over_reverse` notes the
operations of such a pass and goes down them with adjoints that carry the k directions too: the
Hessian's columns, chunk by chunk (tape.hessian).
"""
from __future__ import annotations

import contextvars
import functools
import math
import operator
import reprlib
import sys
import types
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from . import _ops
from ._ops import Var
from ._rules import FUNCTIONS, refusal, refused
from ._tape import TraceError, current_tape, op_code
from ._var import CONSTANTS, _caller, check_operand, exact, new
from . import _vectorized
from ._vectorized import RECORDED_PARTIALS

DTYPES = (np.float32, np.float64)
FLOAT64 = np.dtype(np.float64)
ONE_PASS = ("relu",)  # rules whose compiled pass (tape/_entries.py) beats numpy's form, with its numbers bit for bit


def compiled_pass(*arrays) -> bool:
    """Whether tape._entries' compiled passes take these operands: non-empty float32 or float64
    arrays of one shape and dtype in C order, once numba is loaded (never loaded for this: a
    first gradient does without it, issue 20)."""
    a = arrays[0]
    return "numba" in sys.modules and all(x.__class__ is np.ndarray and x.flags.c_contiguous and x.shape == a.shape
                                          and x.dtype == a.dtype for x in arrays) \
        and a.size > 0 and (a.dtype == np.float64 or a.dtype == np.float32)


def _by_one_pass(name: str, rule):
    """Rule `name` on arrays, by its compiled pass where `compiled_pass` takes the operand."""

    def run(a):
        if compiled_pass(a):
            from . import _entries

            return _entries.rule_pass(name, a)
        return rule(a)

    return run


# name -> (the rule on arrays, whether its values are checked, whether b divides): tape._vectorized's table
ELEMENTWISE = {name: (_by_one_pass(name, rule) if name in ONE_PASS else rule, checked, divides)
               for name, (rule, checked, divides) in _vectorized.ELEMENTWISE.items()}

# tape._forward sets these (it imports, through tape._nary, this module): forward mode's number type, and
# scalar_error(name, operands), the error the scalar path raises for an operation's numbers (or None)
Dual: type | None = None
scalar_error: Callable | None = None


class Tensor:
    """An array that is one node of a tape: `value` (a float32 or float64 numpy array) and, after
    a sweep, `grad` (an array of its shape). Operations on it record one matrix node each.

    `Tensor(x)` makes a leaf on the current tape from a copy of an array or nested lists
    (integers promote to float64, as numpy promotes them), so that changing x later changes
    nothing recorded (`as_tensor(x)` shares x's memory instead); `requires_grad=False` makes a
    constant, no node."""

    __slots__ = ("value", "_node", "_seg")
    __array_ufunc__ = None  # numpy defers to the reflected operators: array + Tensor is Tensor.__radd__
    __hash__ = object.__hash__  # a node, not a number: hashed by identity

    def __init__(self, value, dtype=None, requires_grad: bool = True) -> None:
        self._leaf(as_array(value, dtype, "Tensor(value)", copy=True), requires_grad)

    def _leaf(self, value: np.ndarray, requires_grad: bool) -> None:
        self.value = value
        self._node, self._seg = -1, None
        if requires_grad:
            t = current_tape()
            _check_recordable(t)
            self._seg = t._seg
            self._node = t.record_matrix(CODES["leaf"], Node("leaf", self.value.shape, self.value.dtype))

    # -- what it is ---------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def size(self) -> int:
        return self.value.size

    def __len__(self) -> int:
        return len(self.value)

    @property
    def requires_grad(self) -> bool:
        return self._node >= 0

    @property
    def node(self) -> int:
        """This Tensor's index on its tape (-1 for a constant)."""
        return self._node

    @property
    def tape(self):
        """The tape this Tensor's node is on (StaleVarError if rewind() dropped it)."""
        if self._seg is None:
            raise ValueError("a constant Tensor (requires_grad=False) is on no tape")
        if not self._seg.alive:
            self._seg.record(None)  # raises the StaleVarError
        return self._seg.tape

    @property
    def grad(self) -> np.ndarray:
        """d(output)/d(self) from the latest sweep of its tape, shaped like the value (zeros if
        it played no part). Not accumulated: every sweep replaces the grads of its whole tape (see
        `Var.grad`); the displays name the sweep. Its own memory, shared with no other gradient,
        value or seed (scaling one scales no other)."""
        t = self.tape
        if self.ndim == 0:  # a scalar node: its adjoint is a number
            return np.asarray(t.adjoint[self._node] if self._node < len(t.adjoint) else 0.0, self.dtype)
        n = self._node
        if n not in t.owned:  # a VJP may pass one array on to several parents: copied once, when read
            g = t.grads.get(n)
            t.grads[n] = np.zeros(self.shape, self.dtype) if g is None else np.array(g, self.dtype)
            t.owned.add(n)
        return t.grads[n]

    @grad.setter
    def grad(self, g) -> None:
        """Replace the gradient (clipping, scaling: `t.grad *= 0.5`), until the next sweep."""
        g = np.asarray(g)
        if g.shape != self.shape:
            raise ValueError(f"grad: expected an array of shape {self.shape} (the Tensor's), got shape {g.shape}")
        t = self.tape
        if self.ndim == 0:
            if self._node >= len(t.adjoint):
                raise ValueError("grad: this Tensor has no gradient to replace until a sweep reaches it")
            t.adjoint[self._node] = float(g)
        else:
            t.grads[self._node] = np.array(g, self.dtype)
            t.owned.add(self._node)

    def backward(self) -> None:
        """Sweep the tape from this one-element Tensor: afterwards `.grad` of every Var and
        Tensor before it reads d(self)/d(it)."""
        if self.size != 1:
            raise ValueError(f"backward() needs a Tensor of one element, this one has shape {self.shape}; "
                             "reduce it first (t.sum(), t.mean())")
        t = self.tape
        t.sweep(np.zeros(self._node + 1), {self._node: np.ones(self.shape, self.dtype)}, output=self._node)

    def item(self) -> float:
        _untraced(self, "item()")
        if self.size != 1:
            raise ValueError(f"item() of a Tensor of shape {self.shape}: only a one-element Tensor is a number")
        return float(self.value.reshape(-1)[0])

    def numpy(self) -> np.ndarray:
        """The value (not a copy)."""
        _untraced(self, "numpy()")
        return self.value

    def detach(self) -> Tensor:
        """The same value (the same memory) as a constant: no node, no gradient through it."""
        _untraced(self, "detach()")
        return _constant_tensor(self.value)

    def __repr__(self) -> str:
        body = np.array2string(self.value, separator=", ", threshold=20, edgeitems=2, prefix="Tensor(")
        node = f"node={self._node}" if self._node >= 0 else "constant"
        text = f"Tensor({body}, shape={self.shape}, dtype={self.dtype}, {node}"
        swept = self._shown_grad()
        if swept is None:
            return text + ")"
        sweep, grad = swept
        grad = np.array2string(grad, separator=", ", threshold=20, edgeitems=2, prefix="       grad=")
        return f"{text},\n       grad={grad} of {sweep})"

    def _repr_html_(self) -> str:
        from html import escape

        where = f"node {self._node}" if self._node >= 0 else "constant"
        shown = f"<code>Tensor</code> shape {self.shape}, {self.dtype}, {where}"
        shown += f"<pre>value {escape(np.array2string(self.value, threshold=20, edgeitems=2, prefix='value '))}</pre>"
        swept = self._shown_grad()
        if swept is not None:
            sweep, grad = swept
            shown += f"<pre>grad  {escape(np.array2string(grad, threshold=20, edgeitems=2, prefix='grad  '))}</pre>"
            shown += f"<div>grad of {escape(sweep)}</div>"
        return shown

    def _shown_grad(self) -> tuple[str, np.ndarray] | None:
        """(the sweep's name, the grad) for a display, once a sweep of its tape was made; None
        before one (and for a constant, or a Tensor rewound away). Reading it changes nothing."""
        if self._seg is None or not self._seg.alive or not len(self._seg.tape.adjoint):
            return None
        t, n = self._seg.tape, self._node
        if self.ndim == 0:
            grad = t.adjoint[n] if n < len(t.adjoint) else 0.0
        else:
            grad = t.grads.get(n, 0.0)
        return t.sweep_name(), np.broadcast_to(np.asarray(grad, self.dtype), self.shape)

    # -- operators ----------------------------------------------------------------------------

    def __add__(self, other):
        return elementwise("add", self, other)

    def __radd__(self, other):
        return elementwise("add", other, self)

    def __sub__(self, other):
        return elementwise("sub", self, other)

    def __rsub__(self, other):
        return elementwise("sub", other, self)

    def __mul__(self, other):
        return elementwise("mul", self, other)

    def __rmul__(self, other):
        return elementwise("mul", other, self)

    def __truediv__(self, other):
        return elementwise("truediv", self, other)

    def __rtruediv__(self, other):
        return elementwise("truediv", other, self)

    def __pow__(self, other):
        return elementwise("pow", self, other)

    def __rpow__(self, other):
        return elementwise("pow", other, self)

    def __neg__(self):
        return elementwise("neg", self)

    def __pos__(self):
        return self

    def __abs__(self):
        return elementwise("abs", self)

    def __matmul__(self, other):
        return structural("matmul", self, other)

    def __rmatmul__(self, other):
        return structural("matmul", other, self)

    def __getitem__(self, index):
        return structural("getitem", self, index=_index(index))

    # Comparisons compare true values, as Vars do (tape._var.exact): an array of bools, nothing
    # recorded (a mask, as in numpy).
    def __lt__(self, other):
        return _compared("<", self, other, exact(array_of(self)) < exact(value_of(other)))

    def __le__(self, other):
        return _compared("<=", self, other, exact(array_of(self)) <= exact(value_of(other)))

    def __gt__(self, other):
        return _compared(">", self, other, exact(array_of(self)) > exact(value_of(other)))

    def __ge__(self, other):
        return _compared(">=", self, other, exact(array_of(self)) >= exact(value_of(other)))

    # -- structural operations ------------------------------------------------------------------

    def sum(self, axis=None, keepdims: bool = False):
        return structural("sum", self, axis=_axes(axis, self.ndim, "sum"), keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return structural("mean", self, axis=_axes(axis, self.ndim, "mean"), keepdims=keepdims)

    def logsumexp(self, axis=None, keepdims: bool = False):
        return structural("logsumexp", self, axis=_axes(axis, self.ndim, "logsumexp"), keepdims=keepdims)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list, np.ndarray)) else shape
        return structural("reshape", self, shape=tuple(_integer(n, "reshape", "a shape's entry") for n in shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list, np.ndarray)) else axes
        return structural("transpose", self, axes=tuple(_integer(a, "transpose", "an axis") for a in axes) or None)

    @property
    def T(self):
        return structural("transpose", self, axes=None)


class Node:
    """What the tape keeps of a matrix node: its op, shape and dtype, and its parents (node
    indices, each flagged scalar or not); a node with parents also has `vjp(g)`, the adjoints it
    passes them (a leaf, this class itself, has none)."""

    __slots__ = ("op", "shape", "dtype", "parents", "scalar")

    def __init__(self, op: str, shape: tuple, dtype, parents: tuple = (), scalar: tuple = ()) -> None:
        self.op, self.shape, self.dtype, self.parents, self.scalar = op, shape, dtype, parents, scalar


class ElementwiseNode(Node):
    """A node of the rule table: its partials, one per parent, entry by entry; its operands'
    values, constants included, and which of them are the parents (what a trace replays)."""

    __slots__ = ("partials", "shapes", "operands", "which")

    def vjp(self, g) -> list:
        return [unbroadcast(_scaled(g, d), shape) for d, shape in zip(self.partials, self.shapes)]


class StructuralNode(Node):
    """A node of `STRUCTURAL`: its rule, value, operands' values and parameters."""

    __slots__ = ("rule", "y", "values", "params", "which")

    def vjp(self, g) -> list:
        rule = self.rule
        if rule.nary:  # one VJP for any number of operands
            return [rule.vjps[0](g, self.y, *self.values, i=i, **self.params) for i in self.which]
        return [rule.vjps[i](g, self.y, *self.values, **self.params) for i in self.which]


class DualTensor(Tensor):
    """Forward mode on matrix nodes: a value (a Tensor, constant or a node; a Var if it has no
    axes; or a DualTensor of an outer level) and its tangent, the value's derivative along one
    direction (an array of its shape, or a node when the tangent is to be differentiated
    again). `tag` is its level, as a scalar Dual's: where two levels meet, the older is a
    constant to the newer (no perturbation confusion). `tape.jvp` of a function of Tensors
    makes them. A Tensor to code that asks (isinstance), but no node: no grad, no backward."""

    __slots__ = ("tangent", "tag")

    def __init__(self, value, tangent, tag: int = 0) -> None:
        self.value, self.tangent, self.tag = value, tangent, tag
        self._node, self._seg = -1, None

    @property
    def shape(self) -> tuple[int, ...]:
        return np.shape(array_of(self))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return dtype_of(self)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __float__(self) -> float:
        return float(array_of(self))

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item() of a DualTensor of shape {self.shape}: only a one-element one is a number")
        return float(np.reshape(array_of(self), -1)[0])

    def __repr__(self) -> str:
        return f"DualTensor({self.value!r}, tangent={self.tangent!r})"


def array_of(x):
    """The array or number under a Tensor, a Var or a DualTensor or Dual (of any level); x itself otherwise."""
    while x.__class__ is DualTensor or x.__class__ is Dual:
        x = x.value
    if x.__class__ is Tensor:
        return x.value
    return x._value if x.__class__ is Var else x


def dtype_of(x) -> np.dtype:
    """The dtype of what x stands for: a Tensor's, an array's; float64 for numbers and Vars."""
    return getattr(array_of(x), "dtype", FLOAT64)


def _scaled(g, d):
    """g * d entry by entry, 0 where g or d is 0: a sweep adds nothing for a zero adjoint or a
    zero partial, so an infinite partial meeting a zero adjoint gives 0, not nan, as on scalar
    nodes (and a zero tangent in forward mode). g and d may be arrays or nodes (then recorded);
    float arrays of one shape and dtype go through a compiled pass once numba is loaded."""
    if d.__class__ is float and (d == 1.0 or d == -1.0):
        return g if d == 1.0 else -g
    if compiled_pass(g, d):
        from . import _entries

        return _entries.scaled(g, d)
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0, put right below; IEEE's inf where a product overflows
        product = g * d
        values = array_of(product)
        if math.isfinite(values.sum() if values.__class__ is np.ndarray else np.sum(values)):  # one pass, no array made
            return product
    return where(~np.isfinite(values) & ((array_of(g) == 0) | (array_of(d) == 0)), 0.0, product)


def unbroadcast(g, shape: tuple):
    """The adjoint of an operand that numpy broadcast to g's shape: g summed over the axes the
    operand was repeated along (the one rule for every broadcast)."""
    if (g.shape if g.__class__ is np.ndarray else np.shape(g)) == shape:
        return g
    g = np.sum(g, axis=tuple(range(np.ndim(g) - len(shape))))
    repeated = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=repeated, keepdims=True) if repeated else g


# -- operands -------------------------------------------------------------------------------------


def as_tensor(value, dtype=None, requires_grad: bool = True) -> Tensor:
    """A Tensor of `value` that shares its memory where it can (an array of the dtype asked), as
    torch.as_tensor: changing the array changes the Tensor. `Tensor(value)` copies."""
    t = new(Tensor)
    t._leaf(as_array(value, dtype, "as_tensor(value)"), requires_grad)
    return t


def as_array(value, dtype, what: str, copy: bool = False) -> np.ndarray:
    """`value` as a float32 or float64 array of finite numbers (a copy of it if `copy`), or a
    clear error naming `what`."""
    if isinstance(value, (Tensor, Var)):
        raise TypeError(f"{what}: got a {type(value).__name__}; a Tensor is made from numbers (use tape.stack for Vars)")
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged lists
        raise ValueError(f"{what}: not a rectangular array of numbers ({e})") from None
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in DTYPES:
            raise TypeError(f"{what}: dtype must be float32 or float64, got {dtype}")
    if array.dtype.kind in "biu":
        array = array.astype(dtype or np.float64)  # integers promote, as numpy promotes them
    elif array.dtype.kind == "O" and any(isinstance(v, Var) for v in array.flat):
        raise TypeError(f"{what}: an array of Vars (scalar nodes); make it one matrix node with tape.stack, or give "
                        "a transform a Tensor argument (tape.grad(f)(Tensor(x))) to differentiate with matrix nodes")
    elif array.dtype.kind != "f":
        raise TypeError(f"{what}: expected real numbers, got an array of dtype {array.dtype}")
    elif dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    elif array.dtype not in DTYPES:  # float16, longdouble: converted only when asked (dtype=)
        raise TypeError(f"{what}: an array of dtype {array.dtype}; a Tensor holds float32 or float64 (dtype= converts)")
    entries = _distinct(array)
    if not np.isfinite(entries.sum()) and not np.isfinite(entries).all():  # the sum: one pass, no array made
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(entries))[0])
        raise ValueError(f"{what}: entry {bad} is {array[bad]}; a Tensor holds finite numbers")
    if copy and (array is value or array.base is not None):  # the caller's memory
        try:
            array = array.copy()
        except MemoryError:
            raise MemoryError(f"{what}: a copy of shape {array.shape} ({array.size:,} entries of {array.dtype}) does "
                              "not fit in memory; tape.as_tensor(value) keeps the array without copying it") from None
    return array


def _distinct(array: np.ndarray) -> np.ndarray:
    """The entries of `array` without a broadcast's repeats: each axis of stride 0 taken once
    (np.broadcast_to(x, (10**6, 10**6)) holds x's entries only)."""
    if 0 not in array.strides or not array.size:
        return array
    return array[tuple(slice(0, 1) if step == 0 else slice(None) for step in array.strides)]


def value_of(x):
    """The number or array an operand stands for."""
    if isinstance(x, (Tensor, Var, DualTensor, Dual)):
        return array_of(x)
    if isinstance(x, CONSTANTS):
        return x
    return as_array(x, None, "operand")


def _operands(operands: Sequence, name: str) -> tuple[list, list]:
    """The operands' values, and those operands that are nodes (the parents), in order; Nones if
    some operand is nothing an operation takes. A constant is refused unless finite."""
    values, parents = [], []
    for x in operands:
        cls = x.__class__
        if cls is Tensor:
            values.append(x.value)
            if x._node >= 0:
                parents.append(x)
        elif cls is Var:
            node = x._seg.tape._matrix.get(x._node)  # a 0-d result of a float32 Tensor stays float32
            values.append(x._value if node is None or node.dtype == FLOAT64 else node.dtype.type(x._value))
            parents.append(x)
        elif cls is float and x - x == 0.0:  # a finite float, the usual constant
            values.append(x)
        elif isinstance(x, CONSTANTS):
            values.append(_number(x, name))
        elif isinstance(x, np.ndarray) and x.dtype == object:  # Vars or Duals: see _on_values
            return None, None
        elif isinstance(x, (np.ndarray, list, tuple)):
            values.append(_constant_array(x, name))
        else:
            return None, None
    return values, parents


# Within `constants_checked_once`, the arrays (by identity) already taken as constant operands, each
# kept beside its checked value so that its id is not reused.
_checked_constants: contextvars.ContextVar[dict | None] = contextvars.ContextVar("checked_constants", default=None)


@contextmanager
def constants_checked_once() -> Iterator[None]:
    """Within this block a constant array operand is checked (as_array) at its first use only:
    tape.hessian runs the same function on the same constants once a row, and checking the
    logistic loss's 1000x785 samples for non-finite entries each time was half of a row's time."""
    token = _checked_constants.set({})
    try:
        yield
    finally:
        _checked_constants.reset(token)


def _constant_array(x, name: str) -> np.ndarray:
    """A constant array operand, checked by as_array (once per array within constants_checked_once)."""
    checked = _checked_constants.get()
    if checked is None or x.__class__ is not np.ndarray:
        return as_array(x, None, f"{name}: an operand")
    if id(x) not in checked:
        checked[id(x)] = (x, as_array(x, None, f"{name}: an operand"))
    return checked[id(x)][1]


def _on_values(name: str, operands: Sequence, compute: Callable):
    """`compute` of operands among which are some no matrix node takes (forward mode's Duals, an
    array of Vars or Duals): numpy's, a constant Tensor being its array, as a numpy array would
    be; with a Tensor node among them, refused by name. Returns None for other operands."""
    objects = [x for x in operands if x.__class__ is Dual or isinstance(x, np.ndarray) and x.dtype == object]
    if not objects:
        return None
    if any(x.__class__ is Tensor and x._node >= 0 for x in operands):
        for x in objects:
            if x.__class__ is not Dual:
                as_array(x, None, f"{name}: an operand")  # says what it holds
        raise TypeError(f"{name}: a Tensor node and a scalar Dual of forward mode: give the transform the Tensors as "
                        "arguments (tape.jvp(f, (Tensor(x),), (v,))), whose forward mode is matrix nodes', or use arrays "
                        "or constant Tensors (requires_grad=False) beside scalar arguments")
    return compute(*(x.value if x.__class__ is Tensor else x for x in operands))


def _number(x, name: str):
    """A constant number operand, refused unless it is finite (as an array's entries are) and
    of a Tensor's dtypes (a float128 would make the result one)."""
    if isinstance(x, np.floating) and x.dtype not in DTYPES:
        raise TypeError(f"{name}: a constant of dtype {x.dtype}; constants are Python numbers or float32 or float64")
    try:
        finite = math.isfinite(x)
    except OverflowError:  # an int beyond float's range
        finite = False
    if not finite:
        raise ValueError(f"{name}: a constant operand is {reprlib.repr(x)}; a Tensor's constants are finite numbers")
    return x


def _positions(operands: Sequence, values: list, parents: list):
    """Where the parents are among the operands (all of them, in the usual case)."""
    if len(parents) == len(values):
        return range(len(values))
    return [i for i, x in enumerate(operands) if x.__class__ is Var or x.__class__ is Tensor and x._node >= 0]


def _untraced(t: Tensor, what: str) -> None:
    """Refuse reading a node's numbers while a matrix trace records it: they would be constants of
    the trace, wrong at other inputs."""
    seg = t._seg
    if seg is not None and getattr(seg.tape, "matrix_trace", False):
        raise TraceError(f"{what} of a Tensor while tracing: its numbers would be constants of the trace, wrong at "
                         "other inputs (tape.stop_gradient(t) keeps a value without its gradient)")


def _compared(op: str, x, other, outcome):
    """A Tensor comparison's outcome (a mask), kept as a guard when a matrix trace records it
    (tape._tensor_trace): a replay where the mask comes out otherwise is refused."""
    for operand in (x, other):
        seg = getattr(operand, "_seg", None)
        if seg is not None and getattr(seg.tape, "matrix_trace", False):
            seg.tape.masks.append((op, x, other, outcome, _caller()))
            break
    return outcome


def _check_recordable(t) -> None:
    if t.program is not None and not getattr(t, "matrix_trace", False):
        raise TraceError("a Tensor operation while tracing: a trace replays only the scalar rule table's operations")


def _record(node: Node, y: np.ndarray, parents: list):
    """Put `node` on its parents' tape and return its result: a Tensor, or a Var if y is 0-d
    (under no_grad, a constant Tensor or a float)."""
    first = parents[0]
    seg = first._seg
    t = seg.tape
    for p in parents:
        if p._seg is not seg:
            check_operand(first, p)
    if not t.recording:
        return _constant(y)
    _check_recordable(t)
    if len(parents) == 1:
        node.parents, node.scalar = (first._node,), (first.__class__ is Var or not first.value.ndim,)
    else:
        node.parents = tuple([p._node for p in parents])
        node.scalar = tuple([p.__class__ is Var or not p.value.ndim for p in parents])
    n = t.record_matrix(CODES[node.op], node, seg)
    if y.ndim:
        r = new(Tensor)
        r.value = y
    else:
        r = new(Var)
        r._value = float(y)
    r._node, r._seg = n, t._seg
    return r


def _constant(y):
    """A result no node depends on: a float, or a constant Tensor of y itself."""
    return float(y) if np.ndim(y) == 0 else _constant_tensor(y)


def _constant_tensor(y: np.ndarray) -> Tensor:
    """A constant Tensor of y itself: no copy, no check (y is a result or a Tensor's value)."""
    t = new(Tensor)
    t._leaf(y, False)
    return t


def elementwise(name: str, *operands):
    """Rule `name` of the table applied entry by entry (numpy broadcasting the operands); a
    checked rule refuses what tape._rules.refused refuses, naming the entry."""
    values, parents = _operands(operands, name)
    if values is None:
        if _has_dual_tensor(operands):
            return _forward_elementwise(name, operands)
        on_values = _on_values(name, operands, getattr(operator, name)) if len(operands) == 2 else None
        return NotImplemented if on_values is None else on_values
    y, partials = _evaluate(name, values)
    if not parents:
        return _constant(y)
    node = new(ElementwiseNode)
    node.op, node.shape, node.dtype = name, y.shape, y.dtype
    node.operands = values
    node.which = which = _positions(operands, values, parents)
    if len(parents) < len(values):
        partials, values = [partials[i] for i in which], [values[i] for i in which]
    if y.dtype is not FLOAT64:  # a branch's constants would make a float32 node's partials float64
        partials = [d if d.__class__ is float or d.dtype == y.dtype else d.astype(y.dtype) for d in partials]
    node.partials, node.shapes = partials, [v.shape if v.__class__ is np.ndarray else () for v in values]
    return _record(node, y, parents)


def _evaluate(name: str, values: list) -> tuple:
    """(value, partials) of rule `name` of the operands' values (numbers taken in an array's
    dtype), a checked rule refusing what tape._rules.refused refuses, naming the entry."""
    if len(values) == 2 and isinstance(values[1], (int, float)) and hasattr(values[0], "dtype"):  # a number in the other's dtype, as numpy
        values[1] = values[0].dtype.type(values[1])  # takes it, so that the rule's 1.0 / b is numpy's, not Python's
    elif len(values) == 2 and isinstance(values[0], (int, float)) and hasattr(values[1], "dtype"):
        values[0] = values[1].dtype.type(values[0])
    rule, checked, divides = ELEMENTWISE[name]
    try:
        y, partials = rule(*values)
    except ValueError:
        shapes = " and ".join(str(np.shape(v)) for v in values)
        raise ValueError(f"{name}: operands of shapes {shapes} do not broadcast together") from None
    if y.__class__ is not np.ndarray:
        y = np.asarray(y)
    if checked and not np.isfinite(y).all() and not _in_partials.get():
        _refuse(name, y, values, divides)
    return y, partials


def _refuse(name: str, y: np.ndarray, values: list, divides: bool) -> None:
    """Raise the scalar path's error for the first entry `refused` refuses, naming it."""
    a, b = (np.broadcast_to(v, y.shape) for v in (*values, 0.0)[:2])
    for i in map(tuple, np.argwhere(~np.isfinite(y))):
        if refused(float(y[i]), float(a[i]), float(b[i]), divides):
            operands = [float(a[i]), float(b[i])][: len(values)]
            # where float64 takes what float32 refuses (exp(89)), the rule's own overflow
            error = scalar_error(name, operands) or refusal(name, tuple(operands), float(y[i]))
            raise type(error)(f"entry {tuple(map(int, i))} of {name} on shape {y.shape}: {error}") from None


# -- the structural operations, each declared once --------------------------------------------------


class Structure(NamedTuple):
    """An operation that moves, combines or reduces entries: its value of the operands' values
    (and keyword parameters); per operand, its VJP: (g, y, *operands, **parameters) -> the
    operand's adjoint; and its JVP: (tangents, y, *operands, **parameters) -> the result's
    tangent, tangents holding None for a constant operand. A rule of any number of operands
    gives one VJP, called with i=. The JVP's operands and tangents are arrays, or nodes to be
    differentiated again: it is written with operators and `linear`, which record on nodes."""

    value: Callable
    vjps: tuple
    jvp: Callable
    nary: bool = False  # any number of operands, one VJP taking i=
    # a trace's cheaper pair, where the VJP needs what the value computed (JAX's residuals):
    # saving(*operands, **parameters) -> (value, residual); saved_vjps per operand: (g, residual, **parameters)
    saving: Callable | None = None
    saved_vjps: tuple = ()


def _matmul(a, b):
    """a @ b of operands of 1 or 2 axes, the cases the VJPs below take (numpy would also take
    stacks of matrices; `_check_shapes` words the refusal)."""
    if np.ndim(a) > 2 or np.ndim(b) > 2:
        raise ValueError("matmul of more than 2 axes")
    return np.matmul(a, b)


def _as_2d(g, a, b):
    """a, b and g as matrices: a vector a is a row, a vector b a column (numpy's matmul rule)."""
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    return a2, b2, np.reshape(g, (a2.shape[0], b2.shape[1]))


def _matmul_a(g, y, a, b):
    """X̄ = Z̄Wᵀ for Z = XW."""
    if a.ndim == 2 and b.ndim == 2:
        return g @ b.T
    a2, b2, g2 = _as_2d(g, a, b)
    return (g2 @ b2.T).reshape(a.shape)


def _matmul_b(g, y, a, b):
    """W̄ = XᵀZ̄ for Z = XW; for a W that is a transposed view (x @ W.T), computed as (Z̄ᵀX)ᵀ,
    in W's own memory order, so that its transpose back is contiguous."""
    if a.ndim == 2 and b.ndim == 2:
        return (g.T @ a).T if b.flags.f_contiguous and not b.flags.c_contiguous else a.T @ g
    a2, b2, g2 = _as_2d(g, a, b)
    return (a2.T @ g2).reshape(b.shape)


def _expand(g, axis, keepdims: bool):
    """A reduction's adjoint with the reduced axes put back (size 1), to broadcast."""
    return g if keepdims or axis is None else np.expand_dims(g, axis)


def _entries(shape: tuple, axis) -> int:
    """How many entries a reduction along axis takes into each entry of its result."""
    return math.prod(shape if axis is None else [shape[i] for i in (axis if isinstance(axis, tuple) else (axis,))])


def _mean(a, axis, keepdims):
    """The sum over the entries taken, over their number; a mean of none refused by name
    (numpy's is nan and a warning), but an empty result, of no slices at all, given."""
    n, y = _entries(a.shape, axis), np.sum(a, axis=axis, keepdims=keepdims)
    if not n and y.size:
        raise ValueError(f"mean: the mean of no entries is undefined (axis {axis} of a Tensor of shape {a.shape})")
    return y / n if n else y


def _shifted_exp(a, axis):
    """exp(a - m), m, a's max along axis (axes kept), and whether every slice's max was finite:
    no overflow, the largest entry exactly 1, and then each slice's sum of e in [1, entries].
    Where a slice has no finite max (empty, only -inf, or a +inf), m is 0."""
    m = np.max(a, axis=axis, keepdims=True, initial=-np.inf) if a.size == 0 else a.max(axis=axis, keepdims=True)
    finite = math.isfinite(m.sum())  # the sum: one check where every max is finite, the common case
    if not finite:
        m = np.where(np.isfinite(m), m, 0)
    return np.exp(a - m), m, finite


def _logsumexp(a, axis, keepdims):
    e, m, _ = _shifted_exp(a, axis)
    with np.errstate(divide="ignore"):  # an empty slice or one of -inf: log 0 = -inf, as scipy's
        y = m + np.log(e.sum(axis=axis, keepdims=True))
    return y if keepdims else np.squeeze(y, axis=axis) if axis is not None else y.reshape(())


def _softmax(a, axis, op: str):
    """exp(a) / sum(exp(a)) along axis, logsumexp's gradient; refused by `op`'s name where it
    has none: a slice of only -inf (0/0), or one holding +inf (inf/inf)."""
    if axis in (1, -1) and _by_rows(a):
        out = np.empty_like(a)
        if not math.isnan(_row_kernel().softmax_rows(a, _NO_LABELS, out)):
            return out
    e, _, finite = _shifted_exp(a, axis)
    return _normalized(e, e.sum(axis=axis, keepdims=True), finite, op)


_NO_LABELS = np.zeros(0, np.int64)


def _by_rows(a) -> bool:
    """Whether the compiled softmax of rows takes a: a matrix of floats with entries; every
    softmax along a matrix's rows goes through it, so that each gives the same numbers."""
    return a.ndim == 2 and a.size > 0 and (a.dtype == np.float64 or a.dtype == np.float32)


def _row_kernel():
    """tape._rows, imported at the first softmax of rows (it imports numba)."""
    from . import _rows

    return _rows


def _normalized(e, total, finite: bool, op: str):
    """e / total, refused by `op`'s name where a total is 0 or inf (see `_softmax`): never where
    every slice's max was `finite`."""
    if not finite and e.size and ((total == 0) | (total == np.inf)).any():
        raise ValueError(f"{op}: no derivative at a slice of only -inf or one holding +inf")
    return e / total


def _cross_entropy(logits, labels):
    """The mean over rows of log sum(exp(logits)) - logits[label], both less the row's max, so
    that neither rounds away the other."""
    return _cross_entropy_saving(logits, labels, None)[0]


def _cross_entropy_saving(logits, labels, op: str | None = "softmax_cross_entropy"):
    """(the loss, the softmax its VJP takes): the softmax from the loss's own exponentials
    (refused by `op`'s name where it has no derivative; not made with op None); a label outside
    the classes refused by name."""
    if _by_rows(logits):
        softmax = np.empty_like(logits)
        total = _row_kernel().softmax_rows(logits, labels, softmax)
        if not math.isnan(total):
            return logits.dtype.type(total / len(labels)), None if op is None else softmax
    check_labels(labels, logits.shape[1])
    e, m, finite = _shifted_exp(logits, 1)
    total = e.sum(axis=1, keepdims=True)
    losses = np.log(total[:, 0]) - (logits[np.arange(len(labels)), labels] - m[:, 0])
    loss = losses.sum()
    return loss.dtype.type(loss / len(labels)), None if op is None else _normalized(e, total, finite, op)  # np.mean's steps


def _one_hot(logits, labels) -> np.ndarray:
    """A row per label, 1 at the label's column, in the logits' dtype."""
    return np.eye(np.shape(array_of(logits))[1], dtype=dtype_of(logits))[labels]


def _cross_entropy_vjp(g, y, logits, labels):
    """(softmax - one-hot) / rows, times g."""
    return _cross_entropy_saved_vjp(g, _softmax(logits, 1, "softmax_cross_entropy"), labels)


def _cross_entropy_saved_vjp(g, softmax, labels):
    """(softmax - one-hot) / rows, times g: 1 taken from each row's label entry of a copy."""
    adjoint = np.array(softmax)
    adjoint[np.arange(len(labels)), labels] -= 1.0
    return adjoint * (g / len(labels))


def _softmax_of(a, axis, op: str):
    """_softmax on an array; on a node, recorded as exp(a - logsumexp(a)), to be differentiated again."""
    if a.__class__ is np.ndarray:
        return _softmax(a, axis, op)
    return FUNCTIONS_ON_TENSORS.exp(a - structural("logsumexp", a, axis=axis, keepdims=True))


def linear(name: str, *operands, **params):
    """Structural operation `name` of tangents: numpy's of arrays and numbers, recorded if one is
    a node. A linear operation's JVP is itself."""
    if all(x.__class__ is np.ndarray or isinstance(x, CONSTANTS) for x in operands):
        return STRUCTURAL[name].value(*operands, **params)
    return structural(name, *operands, **params)


def _linear_jvp(name: str) -> Callable:
    """The JVP of a linear operation: the operation of the tangents, a constant's a zero array;
    of batched tangents, the operation with its axes past the leading axis of directions."""
    def jvp(tangents, y, *operands, **params):
        k = _batch_size(tangents, operands)
        lead = () if k is None else (k,)
        tangents = [np.zeros(lead + np.shape(array_of(x)), dtype_of(x)) if t is None else t for t, x in zip(tangents, operands)]
        if k is None:
            return linear(name, *tangents, **params)
        if name == "getitem":  # the directions put last, where an index (even with ... or split arrays) leaves them
            return _batch_first(linear("getitem", _batch_last(tangents[0]), index=_past_batch(params["index"])))
        return linear(name, *tangents, **_batched_params(name, params, operands, y, k))

    return jvp


def _batch_size(tangents: Sequence, operands: Sequence) -> int | None:
    """k if the tangents carry a leading axis of k directions beside their operands (a batch:
    forward mode along k directions at once, as vmap of jvp), None if they are plain tangents."""
    for t, x in zip(tangents, operands):
        if t is not None:
            shape = np.shape(array_of(t))
            return shape[0] if len(shape) > np.ndim(array_of(x)) else None
    return None


def _shifted(axis, ndim: int):
    """Reduction axes of an operand of ndim axes as axes of its batched tangent: past the leading
    one (negative axes count from the end, as before; None is every axis but the leading one)."""
    if axis is None:
        return tuple(range(1, ndim + 1))
    if isinstance(axis, tuple):
        return tuple(a + 1 if a >= 0 else a for a in axis)
    return axis + 1 if axis >= 0 else axis


def _batched_params(name: str, params: dict, operands: Sequence, y, k: int) -> dict:
    """A linear operation's parameters for operands with a leading axis of k directions."""
    ndim = np.ndim(array_of(operands[0]))
    if name in ("sum", "mean", "logsumexp"):
        return {**params, "axis": _shifted(params["axis"], ndim)}
    if name == "reshape":
        return {"shape": (k, *np.shape(array_of(y)))}
    if name == "transpose":
        axes = params["axes"]
        return {"axes": (0, *(range(ndim, 0, -1) if axes is None else (a % ndim + 1 for a in axes)))}
    return {**params, "axis": _shifted(params["axis"], ndim)}  # concatenate, stack


def _batch_last(t):
    """A batched tangent with its leading axis of directions moved last."""
    ndim = np.ndim(array_of(t))
    return linear("transpose", t, axes=(*range(1, ndim), 0))


def _batch_first(t):
    """A tangent with its last axis (the directions) moved first."""
    ndim = np.ndim(array_of(t))
    return linear("transpose", t, axes=(ndim - 1, *range(ndim - 1)))


def _past_batch(index):
    """An index that leaves a last axis of directions alone: with an Ellipsis, one more full slice."""
    parts = index if isinstance(index, tuple) else (index,)
    return (*parts, slice(None)) if any(p is Ellipsis for p in parts) else parts


def _aligned(t, ndim: int):
    """A batched tangent (k, *shape) of an operand broadcast into a result of ndim axes, with
    size-1 axes after the directions so that it broadcasts as its operand did."""
    shape = np.shape(array_of(t))
    missing = ndim + 1 - len(shape)  # never below 0: an operand has no more axes than the result
    return linear("reshape", t, shape=(shape[0], *(1,) * missing, *shape[1:])) if missing else t


def _matmul_jvp(tangents, y, a, b):
    """dZ = dX W + X dW for Z = XW; of batched tangents, each direction's, as matrix products."""
    ta, tb = tangents
    if _batch_size(tangents, (a, b)) is not None:
        terms = ([] if ta is None else [_batched_left(ta, b, y)]) + ([] if tb is None else [_batched_right(a, tb)])
        return functools.reduce(operator.add, terms)
    if tb is None:
        return ta @ b
    return a @ tb if ta is None else ta @ b + a @ tb


def _batched_left(ta, b, y):
    """ta[i] @ b for each direction i: one product, the directions stacked as rows."""
    shape = np.shape(array_of(ta))
    if len(shape) == 2:  # a was a vector: a row per direction
        return ta @ b
    return linear("reshape", linear("reshape", ta, shape=(-1, shape[-1])) @ b, shape=(shape[0], *np.shape(array_of(y))))


def _batched_right(a, tb):
    """a @ tb[i] for each direction i: one product, the directions side by side as columns."""
    shape = np.shape(array_of(tb))
    if len(shape) == 2:  # b was a vector: a row per direction, times a's transpose
        return tb @ (a.T if np.ndim(array_of(a)) == 2 else a)
    k, n, p = shape
    product = a @ linear("reshape", linear("transpose", tb, axes=(1, 0, 2)), shape=(n, k * p))
    if np.ndim(array_of(a)) == 1:
        return linear("reshape", product, shape=(k, p))
    return linear("transpose", linear("reshape", product, shape=(-1, k, p)), axes=(1, 0, 2))


def _dotted(p, t, axis, keepdims: bool = False):
    """sum(p * t) along axis: of a batched tangent t, for each direction (axes past the first)."""
    if np.ndim(array_of(t)) > np.ndim(array_of(p)):
        axis = _shifted(axis, np.ndim(array_of(p)))
    return linear("sum", p * t, axis=axis, keepdims=keepdims)


def _logsumexp_jvp(tangents, y, a, axis, keepdims):
    """The softmax along axis, dotted with the tangent there."""
    return _dotted(_softmax_of(a, axis, "logsumexp"), tangents[0], axis, keepdims)


def _cross_entropy_jvp(tangents, y, logits, labels):
    """<(softmax - one-hot) / rows, the logits' tangent>."""
    p = _softmax_of(logits, 1, "softmax_cross_entropy") - _one_hot(logits, labels)
    return _dotted(p, tangents[0], None) * (1.0 / len(labels))


def _mse_jvp(tangents, y, a, b):
    """2 <a - b, da - db> / size."""
    ta, tb = tangents
    change = ta if tb is None else -tb if ta is None else ta - tb
    return _dotted(a - b, change, None) * (2.0 / np.size(array_of(a)))


def _no_derivative(t) -> np.ndarray:
    """A kink's derivative along t (an adjoint or a tangent): nan where t is not 0, 0 where it
    is (nothing flows there); a constant, in t's dtype."""
    return np.where(array_of(t) == 0, 0.0, np.nan).astype(dtype_of(t))


def _kink_vjp(g, y, *xs, constant, i):
    return unbroadcast(_no_derivative(g), np.shape(xs[i]))


def _kink_jvp(tangents, y, *xs, constant):
    tangents = _aligned_to(tangents, xs, y)
    return functools.reduce(operator.add, [_no_derivative(t) for t in tangents if t is not None])


def _where_jvp(tangents, y, x, z, mask):
    return where(mask, *(0.0 if t is None else t for t in _aligned_to(tangents, (x, z), y)))


def _aligned_to(tangents: Sequence, operands: Sequence, y) -> list:
    """Batched tangents of operands broadcast into y, aligned to y's axes (_aligned); plain ones as they are."""
    if _batch_size(tangents, operands) is None:
        return list(tangents)
    return [None if t is None else _aligned(t, np.ndim(array_of(y))) for t in tangents]


def _scatter(g, a, index):
    out = np.zeros(a.shape, g.dtype if hasattr(g, "dtype") else a.dtype)
    np.add.at(out, index, g)
    return out


def _piece(g, i, axis, operands):
    """Operand i's block of a concatenation's adjoint."""
    start = sum(np.shape(x)[axis] for x in operands[:i])
    return np.take(g, range(start, start + np.shape(operands[i])[axis]), axis=axis)


STRUCTURAL = {
    "matmul": Structure(_matmul, (_matmul_a, _matmul_b), _matmul_jvp),
    "sum": Structure(lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims), (
        lambda g, y, a, axis, keepdims: np.broadcast_to(_expand(g, axis, keepdims), a.shape),
    ), _linear_jvp("sum")),
    "mean": Structure(_mean, (
        lambda g, y, a, axis, keepdims: np.broadcast_to(_expand(g, axis, keepdims) / _entries(a.shape, axis), a.shape),
    ), _linear_jvp("mean")),
    "logsumexp": Structure(_logsumexp, (
        lambda g, y, a, axis, keepdims: _expand(g, axis, keepdims) * _softmax(a, axis, "logsumexp"),
    ), _logsumexp_jvp),
    "reshape": Structure(lambda a, shape: np.reshape(a, shape), (
        lambda g, y, a, shape: np.reshape(g, a.shape),
    ), _linear_jvp("reshape")),
    "transpose": Structure(lambda a, axes: np.transpose(a, axes), (
        lambda g, y, a, axes: np.transpose(g, None if axes is None else np.argsort(np.mod(axes, a.ndim))),
    ), _linear_jvp("transpose")),
    "getitem": Structure(lambda a, index: a[index], (
        lambda g, y, a, index: _scatter(g, a, index),
    ), _linear_jvp("getitem")),
    "concatenate": Structure(lambda *xs, axis: np.concatenate(xs, axis=axis), (
        lambda g, y, *xs, axis, i: _piece(g, i, axis, xs),
    ), _linear_jvp("concatenate"), nary=True),
    "stack": Structure(lambda *xs, axis: np.stack(xs, axis=axis), (
        lambda g, y, *xs, axis, i: np.take(g, i, axis=axis),
    ), _linear_jvp("stack"), nary=True),
    # the mean over rows of -log softmax(logits)[label]: its adjoint is (softmax - one-hot) / rows
    "softmax_cross_entropy": Structure(_cross_entropy, (_cross_entropy_vjp,), _cross_entropy_jvp,
                                       saving=_cross_entropy_saving, saved_vjps=(_cross_entropy_saved_vjp,)),
    "mse": Structure(lambda a, b: np.mean((a - b) ** 2), (
        lambda g, y, a, b: (a - b) * (2.0 * g / np.size(a)),
        lambda g, y, a, b: (b - a) * (2.0 * g / np.size(a)),
    ), _mse_jvp),
    # the two below are recorded partials' pieces (RECORDED_PARTIALS): a branch of a rule, its
    # mask a constant, and a kink, a constant value whose derivative is nan (tape._rules.kink)
    "where": Structure(lambda x, z, mask: np.where(mask, x, z), (
        lambda g, y, x, z, mask: unbroadcast(np.where(mask, g, 0.0), np.shape(x)),
        lambda g, y, x, z, mask: unbroadcast(np.where(mask, 0.0, g), np.shape(z)),
    ), _where_jvp),
    "kink": Structure(lambda *xs, constant: np.full(np.broadcast_shapes(*map(np.shape, xs)), constant, np.result_type(*xs)),
                      (_kink_vjp,), _kink_jvp, nary=True),
}


def structural(name: str, *operands, **params):
    """Record the structural operation `name` of the operands (Tensors, Vars, arrays, numbers)."""
    rule = STRUCTURAL[name]
    values, parents = _operands(operands, name)
    if values is None and _has_dual_tensor(operands):
        return _forward_structural(name, operands, params)
    if values is None:
        on_values = _on_values(name, operands, lambda *xs: rule.value(*xs, **params))
        if on_values is not None:
            return on_values
        kinds = ", ".join(type(x).__name__ for x in operands)
        raise TypeError(f"{name}: takes Tensors, Vars, arrays and numbers, got {kinds}")
    y = _structural_value(name, values, params)
    if not parents:
        return _constant(y)
    node = new(StructuralNode)
    node.op, node.shape, node.dtype = name, y.shape, y.dtype
    node.rule, node.y, node.values, node.params = rule, y, values, params
    node.which = _positions(operands, values, parents)
    return _record(node, y, parents)


def _structural_value(name: str, values: list, params: dict) -> np.ndarray:
    """Structural operation `name` of the operands' values, as an array; operands it cannot take
    refused in words."""
    if name in CHECKED_SHAPES:
        _check_shapes(name, values, params)
    try:
        y = STRUCTURAL[name].value(*values, **params)
    except (ValueError, IndexError, TypeError):
        _check_shapes(name, values, params)  # says it in words, if it can
        raise
    return y if y.__class__ is np.ndarray else np.asarray(y)


CHECKED_SHAPES = {"mse", "softmax_cross_entropy"}  # checked first: numpy would broadcast what does not fit; the
# others' failures are explained after the fact


def _check_shapes(name: str, values: list, params: dict) -> None:
    """Refuse operands an operation cannot take, in words (numpy's own messages name no
    operation): for CHECKED_SHAPES before computing, for the others once numpy has failed."""
    shapes = [np.shape(v) for v in values]
    if name == "matmul":
        a, b = shapes
        if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
            raise ValueError(f"matmul: operands must have 1 or 2 axes, got shapes {a} and {b}")
        if a[-1] != b[0]:
            raise ValueError(f"matmul: shapes {a} @ {b} do not fit: {a[-1]} columns against {b[0]} rows")
    elif name in ("concatenate", "stack"):
        axis = params["axis"]
        ndim = len(shapes[0]) + (name == "stack")
        if not -ndim <= axis < ndim:
            raise ValueError(f"{name}: axis {axis} is out of range for operands of shape {shapes[0]}")
        raise ValueError(f"{name}: operands of shapes {shapes} do not fit together along axis {axis}")
    elif name == "reshape":  # numpy failed: the shape does not fit, with or without a -1
        raise ValueError(f"reshape: cannot make {np.size(values[0])} entries of shape {shapes[0]} into shape "
                         f"{params['shape']} (at most one axis may be -1)")
    elif name == "softmax_cross_entropy":
        logits, labels = values[0], params["labels"]
        if np.ndim(logits) != 2 or np.shape(labels) != (np.shape(logits)[0],):
            raise ValueError(f"softmax_cross_entropy: expected logits (rows, classes) and a label per row, got shapes "
                             f"{np.shape(logits)} and {np.shape(labels)}")
        if not len(labels):
            raise ValueError(f"softmax_cross_entropy: no rows (logits of shape {shapes[0]}); a mean over none is "
                             "undefined")
    elif name == "mse" and shapes[0] != shapes[1]:
        raise ValueError(f"mse: outputs of shape {shapes[0]} against targets of shape {shapes[1]}")
    elif name == "mse" and not np.size(values[0]):
        raise ValueError(f"mse: no entries (outputs of shape {shapes[0]}); a mean over none is undefined")


def _axes(axis, ndim: int, name: str):
    """An axis or tuple of axes, checked to be integers within ndim (numpy's message names no
    operation, and numpy takes True as axis 1)."""
    if axis is None:
        return None
    if axis.__class__ is int and -ndim <= axis < ndim:
        return axis
    one = not isinstance(axis, (tuple, list))
    axes = [_integer(a, name, "an axis") for a in ((axis,) if one else axis)]
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}: axis {a} is out of range for a Tensor of {ndim} axes")
    return axes[0] if one else tuple(axes)


def _integer(n, name: str, what: str) -> int:
    """n as an int, refused unless it is an integer: numpy would truncate a float axis (0.7 is
    0) and take a bool as 0 or 1."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        return int(n)
    raise TypeError(f"{name}: {what} must be an integer, got {n!r} (a {type(n).__name__})")


def _index(index):
    """An index whose arrays are integer or boolean arrays (lists made arrays)."""
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, (Tensor, Var)) for p in parts):
        raise TypeError("a Tensor is indexed by numbers, slices and integer arrays, not by Vars or Tensors")
    parts = tuple(_index_array(p) if isinstance(p, list) else p for p in parts)
    return parts if isinstance(index, tuple) else parts[0]


def _index_array(p: list) -> np.ndarray:
    """A list index as an array; an empty one takes nothing, as numpy takes it (not a float array)."""
    array = np.asarray(p)
    return array.astype(np.intp) if array.size == 0 else array


# -- the public functions -----------------------------------------------------------------------------


def stack(xs: Sequence, axis: int = 0):
    """The Tensors, Vars or arrays `xs` stacked along a new axis, as one node: Vars become the
    entries of a matrix node, and gradients flow back to them."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack() of no operands")
    return structural("stack", *xs, axis=_integer(axis, "stack", "axis"))


def concatenate(xs: Sequence, axis: int | None = 0):
    """The Tensors or arrays `xs` joined along an existing axis, as one node; with axis=None,
    as numpy, each flattened first."""
    xs = list(xs)
    if not xs:
        raise ValueError("concatenate() of no operands")
    if axis is None:
        return structural("concatenate", *map(_flattened, xs), axis=0)
    axis = _integer(axis, "concatenate", "axis")
    if any(np.ndim(array_of(x)) == 0 for x in xs):
        raise ValueError("concatenate() takes operands of at least one axis (or axis=None, which flattens them)")
    return structural("concatenate", *xs, axis=axis)


def _flattened(x):
    """x with its entries in one axis: a Tensor reshaped, a Var stacked, numbers raveled."""
    if isinstance(x, Tensor):
        return x.reshape(-1)
    return stack([x]) if x.__class__ is Var else np.ravel(x)


def softmax_cross_entropy(logits: Tensor, labels) -> Var:
    """The mean over rows of -log softmax(logits)[label], as one node (its adjoint: (softmax -
    one-hot) / rows)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}")
    shape = np.shape(value_of(logits))
    check_labels(labels, shape[-1] if shape else 0)
    return structural("softmax_cross_entropy", logits, labels=labels)


def check_labels(labels: np.ndarray, classes: int) -> None:
    """Refuse a label outside [0, classes), naming the first (a negative one would index from the end)."""
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= classes))[0])
        raise ValueError(f"softmax_cross_entropy: label {labels[bad]} at position {bad} is outside [0, {classes})")


def mse(outputs, targets) -> Var:
    """The mean of (outputs - targets)^2 over every entry, as one node."""
    return structural("mse", outputs, targets)


def apply_rule(code: int, x: Tensor):
    """A function of the rule table (tape.sin, ...) on a Tensor: tape._ops calls it."""
    return elementwise(RULES_BY_CODE[code], x)


# -- forward mode ----------------------------------------------------------------------------------

_in_partials: contextvars.ContextVar[bool] = contextvars.ContextVar("in_partials", default=False)


def where(mask, x, z):
    """x where mask holds, z elsewhere: a node (the mask a constant) if x or z is one, else numpy's."""
    if _is_constant(x) and _is_constant(z):
        return np.where(mask, array_of(x), array_of(z))
    return structural("where", x, z, mask=np.asarray(mask))


def kink(constant: float, *xs):
    """`constant` shaped as the xs broadcast, whose derivative in them is nan (tape._rules.kink)."""
    return structural("kink", *xs, constant=constant)


# what RECORDED_PARTIALS call a rule's functions by: recording on nodes, a branch a where node
FUNCTIONS_ON_TENSORS = types.SimpleNamespace(
    **{name: functools.partial(elementwise, name) for name in FUNCTIONS},
    sign=lambda a: np.sign(array_of(a)), exact=lambda x: exact(array_of(x)), where=where, kink=kink)


def _is_constant(x) -> bool:
    """Whether x is no node and carries no tangent: a number, an array, a constant Tensor."""
    cls = x.__class__
    return cls is not Var and cls is not DualTensor and cls is not Dual and not (cls is Tensor and x._node >= 0)


def _has_dual_tensor(operands) -> bool:
    return any(x.__class__ is DualTensor for x in operands)


def _level(operands: Sequence) -> tuple[int, list, list]:
    """(the newest level among the operands' DualTensors and Duals, the operands' values at it,
    their tangents at it: None for an operand that is a constant to it)."""
    tag = max(x.tag for x in operands if x.__class__ is DualTensor or x.__class__ is Dual)
    values, tangents = [], []
    for x in operands:
        own = (x.__class__ is DualTensor or x.__class__ is Dual) and x.tag == tag
        values.append(x.value if own else x)
        tangents.append(x.tangent if own else None)
    return tag, values, tangents


def _forward_elementwise(name: str, operands: Sequence) -> DualTensor:
    """Rule `name` on DualTensors: the tangent sum(partial * operand's tangent), the partials the
    table's on arrays, or recorded (RECORDED_PARTIALS) where a value is a node."""
    tag, values, tangents = _level(operands)
    arrays, parents = _operands(values, name)
    k = _batch_size(tangents, values)
    if arrays is None or parents:
        tangents = _as_operands(tangents)
        y = elementwise(name, *values)
        token = _in_partials.set(True)  # a branch not taken may divide by 0: a partial is never refused,
        try:  # nor warned about, as on arrays
            with np.errstate(all="ignore"):
                partials = RECORDED_PARTIALS[name](FUNCTIONS_ON_TENSORS, *values, y)
        finally:
            _in_partials.reset(token)
    else:
        if not any(isinstance(v, Tensor) for v in values) and all(np.ndim(a) == 0 for a in arrays):
            arrays = [float(a) for a in arrays]  # results without axes (Vars, when recorded) and numbers: float64
        y, partials = _evaluate(name, arrays)
        y = _forward_result(y)
    if k is not None:  # each operand's directions broadcast as the operand did
        tangents = _aligned_to(tangents, values, y)
    terms = [_scaled(t, d) for t, d in zip(tangents, partials) if t is not None and not (d.__class__ is float and d == 0.0)]
    return _noted(name, operands, arrays, None, DualTensor(y, _tangent_of(functools.reduce(operator.add, terms, 0.0), y, k), tag))


def _forward_structural(name: str, operands: Sequence, params: dict) -> DualTensor:
    """Structural operation `name` on DualTensors: the tangent by its row's JVP."""
    tag, values, tangents = _level(operands)
    arrays, parents = _operands(values, name)
    k = _batch_size(tangents, values)
    if arrays is None or parents:
        y = structural(name, *values, **params)
        tangent = STRUCTURAL[name].jvp(_as_operands(tangents), y, *values, **params)
    else:
        y = _structural_value(name, arrays, params)
        tangent = STRUCTURAL[name].jvp(tangents, y, *arrays, **params)
        y = _forward_result(y)
    return _noted(name, operands, arrays, params, DualTensor(y, _tangent_of(tangent, y, k), tag))


def _forward_result(y):
    """A forward-mode value as recording would make it: a constant Tensor, or without axes a number
    of its dtype (a Var, when recorded: float64 in scalar arithmetic, its dtype beside Tensors)."""
    y = np.asarray(y)
    if y.ndim == 0 and not (_in_partials.get() and not np.isfinite(y)):
        return y[()]
    return _constant_tensor(y)  # also a partial's kink without axes (inf, nan): no constant number may be one


def _as_operands(tangents: list) -> list:
    """Array tangents as constant Tensors, beside values that are nodes: so that a product with
    a Var is a Tensor's (an array's would be an array of Vars)."""
    return [_constant_tensor(t) if t.__class__ is np.ndarray else t for t in tangents]


def _tangent_of(t, y, k: int | None = None):
    """Tangent t as y's: its shape (a broadcast term spread out; with k directions, k of them)
    and, if an array, its dtype."""
    shape, dtype = np.shape(array_of(y)), dtype_of(y)
    if k is not None:
        shape = (k, *shape)
    if _is_constant(t):
        t = array_of(t)
        if np.shape(t) != shape:
            t = np.broadcast_to(t, shape)
        return t if getattr(t, "dtype", None) == dtype else np.asarray(t, dtype)
    return t if np.shape(array_of(t)) == shape else t + np.zeros(shape, dtype)


# -- forward over reverse: the gradient with its derivatives along a batch of directions --------------------

# While `forward_over_reverse` runs its function, each forward-mode operation at its level is noted here:
# (rule name, operands, their arrays, parameters (None for an element-wise rule), result), a Wengert list
# of DualTensors to go down in reverse.
_notes: contextvars.ContextVar[tuple[int, list] | None] = contextvars.ContextVar("notes", default=None)


def _noted(name: str, operands: Sequence, arrays, params, result: DualTensor) -> DualTensor:
    notes = _notes.get()
    if notes is not None and notes[0] == result.tag:
        notes[1].append((name, operands, arrays, params, result))
    return result


def forward_over_reverse(fn: Callable, x: np.ndarray, directions: np.ndarray, tag: int) -> np.ndarray:
    """The derivative of fn's gradient at x along each of the k directions (k, *x.shape): the
    Hessian times each, shaped as the directions, in x's dtype. fn runs once in forward mode on
    a DualTensor carrying all k tangents (arrays, nothing recorded); then its operations are gone
    down in reverse, each adjoint a DualTensor with k tangents too, the VJPs' own derivatives
    coming from forward mode (torch.func.hessian's jacfwd of jacrev, with matrix products)."""
    leaf = DualTensor(_constant_tensor(x), directions, tag)
    token = _notes.set((tag, []))
    try:
        out = fn(leaf)
        notes = _notes.get()[1]
    finally:
        _notes.reset(token)
    if np.ndim(array_of(out)) != 0 or isinstance(array_of(out), np.ndarray) and array_of(out).dtype == object:
        raise TypeError(f"hessian: the function must return a scalar, got shape {np.shape(array_of(out))}")
    if not (out.__class__ is DualTensor and out.tag == tag):  # independent of x
        return np.zeros(directions.shape, x.dtype)
    k = len(directions)
    adjoints = {id(out): DualTensor(dtype_of(out).type(1.0), np.zeros(k, dtype_of(out)), tag)}
    for name, operands, arrays, params, y in reversed(notes):
        g = adjoints.pop(id(y), None)
        if g is None:
            continue
        arrays = [array_of(v) for v in operands] if arrays is None else arrays
        for i, adjoint in _dual_vjps(name, operands, arrays, params, y, g):
            key = id(operands[i])
            adjoints[key] = adjoint if key not in adjoints else adjoints[key] + adjoint
    g = adjoints.get(id(leaf))
    return np.zeros(directions.shape, x.dtype) if g is None else np.asarray(np.broadcast_to(g.tangent, directions.shape), x.dtype)


def _dual_vjps(name: str, operands: Sequence, arrays: list, params, y: DualTensor, g: DualTensor) -> list:
    """(i, the adjoint of operand i) for each operand at g's level, from y's adjoint g: DualTensors,
    whose tangents are the adjoints' derivatives along the directions."""
    own = [i for i, x in enumerate(operands) if x.__class__ is DualTensor and x.tag == g.tag]
    at = [x if i in own else arrays[i] for i, x in enumerate(operands)]  # constants as the operation took them
    if params is None:  # element-wise: the partials on DualTensors, their tangents the second derivatives
        token = _in_partials.set(True)
        try:
            with np.errstate(all="ignore"):
                partials = RECORDED_PARTIALS[name](FUNCTIONS_ON_TENSORS, *at, y)
        finally:
            _in_partials.reset(token)
        return [(i, _summed_to(_scaled(g, partials[i]), np.shape(arrays[i]))) for i in own]
    return [(i, _dual_vjp(name, i, at, arrays, params, y, g)) for i in own]


LINEAR = {"sum", "mean", "reshape", "transpose", "getitem", "concatenate", "stack"}


def _dual_vjp(name: str, i: int, at: list, arrays: list, params: dict, y: DualTensor, g: DualTensor) -> DualTensor:
    """Structural operation `name`'s adjoint of operand i as a DualTensor: a linear operation's
    VJP of g's value and of its tangents (batched); the others' VJPs as operations on DualTensors."""
    rule = STRUCTURAL[name]
    if name in LINEAR:
        vjp = functools.partial(rule.vjps[0], i=i) if rule.nary else rule.vjps[i]
        value = vjp(np.asarray(g.value), None, *arrays, **params)
        return DualTensor(_forward_result(value), _batched_vjp(name, vjp, g.tangent, arrays, params, y), g.tag)
    if name == "matmul":
        return _dual_matmul_vjp(i, *at, g)
    if name == "logsumexp":
        a, axis = at[0], params["axis"]
        kept = np.shape(_logsumexp(np.asarray(arrays[0]), axis, True))
        return g.reshape(kept) * _softmax_of(a, axis, "logsumexp")
    if name == "softmax_cross_entropy":
        logits, labels = at[0], params["labels"]
        return (_softmax_of(logits, 1, "softmax_cross_entropy") - _one_hot(logits, labels)) * (g * (1.0 / len(labels)))
    if name == "mse":
        a, b = at
        return ((a - b) if i == 0 else (b - a)) * (g * (2.0 / np.size(arrays[0])))
    if name == "where":
        mask = params["mask"]
        return _summed_to(where(mask, g, 0.0) if i == 0 else where(mask, 0.0, g), np.shape(arrays[i]))
    value = _kink_vjp(np.asarray(g.value), None, *arrays, i=i, **params)  # kink: no derivative, and none of it
    return DualTensor(_forward_result(value), np.broadcast_to(value, (len(g.tangent), *value.shape)), g.tag)


def _dual_matmul_vjp(i: int, a, b, g):
    """X̄ = Z̄Wᵀ (i = 0) or W̄ = XᵀZ̄ (i = 1) for Z = XW, of operands with 1 or 2 axes, as
    products of what the operands are (a vector's outer product element-wise)."""
    vector_a, vector_b = np.ndim(array_of(a)) == 1, np.ndim(array_of(b)) == 1
    if i == 0:
        if vector_b:
            return g * b if vector_a else g.reshape((-1, 1)) * b  # a dot product; an outer product
        return b @ g if vector_a else g @ b.T
    if vector_a:
        return a * g if vector_b else a.reshape((-1, 1)) * g
    return a.T @ g


def _batched_vjp(name: str, vjp: Callable, tangent: np.ndarray, arrays: list, params: dict, y) -> np.ndarray:
    """A linear operation's VJP of a batched adjoint tangent (k, *y.shape): the VJP of the same
    operation on operands with a leading axis of k directions (stand-ins of that shape)."""
    k = len(tangent)
    batched = [np.broadcast_to(np.zeros((), dtype_of(a)), (k, *np.shape(a))) for a in arrays]
    if name == "getitem":  # the directions last, as the JVP puts them
        last = np.broadcast_to(np.zeros((), dtype_of(arrays[0])), (*np.shape(arrays[0]), k))
        return _batch_first(_scatter(_batch_last(tangent), last, _past_batch(params["index"])))
    return vjp(tangent, None, *batched, **_batched_params(name, params, arrays, y, k))


def _summed_to(g, shape: tuple):
    """unbroadcast of a DualTensor: g summed over the axes an operand of `shape` was repeated along."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    repeated = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=repeated, keepdims=True) if repeated else g


RULES_BY_CODE = {op_code(name): name for name in FUNCTIONS}
CODES = {name: op_code(name) for name in ["leaf", *ELEMENTWISE, *STRUCTURAL]}  # op name -> op code
_ops.OTHER_TYPES[Tensor] = _ops.OTHER_TYPES[DualTensor] = apply_rule
