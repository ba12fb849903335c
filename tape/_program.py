"""A program: one trace of a function, what a replay needs of its recording.

Per node its op code and its operands, `refs[start[i]:start[i + 1]]` (a ref below n is a node,
a ref from n on is one of the constants kept after the nodes' values in `val`); the input
leaves first (nodes 0 .. first - 1, argument by argument); the outputs; the guards (the
comparisons made while tracing). `tape/_replay.py` runs it; `tape.trace` gives it its API.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from . import _ops
from ._display import Rows, Table
from ._forward import raise_refused
from ._rules import BINARY, CODES, FIRST_CUSTOM, LEFT_CONSTANT, RIGHT_CONSTANT, UNARY, constant_is_partial
from ._tape import Tape, TraceError
from ._var import CONSTANTS, VarBase, leaf_on

COMPARISONS = ["<", "<=", ">", ">=", "==", "!="]  # a guard's operator, as _replay.failed_guard numbers them


class GuardError(TraceError):
    """A replay at an input where a comparison made while tracing comes out the other way."""


_compiled = None


def compiled():
    """(tape._replay, each op code's kind, whether a code's constant is its partial), loaded on
    first use (it imports numba)."""
    global _compiled
    if _compiled is None:
        from . import _replay as r

        kinds = np.full(256, r.CUSTOM, dtype=np.int64)
        kinds[0] = r.LEAF
        for code, (name, rule, variant) in enumerate(CODES[1:], start=1):
            if name == "kink":
                kinds[code] = r.KINK
            elif rule in UNARY:
                kinds[code] = r.UNARY
            elif rule in BINARY:
                kinds[code] = {0: r.BINARY, RIGHT_CONSTANT: r.BINARY_RIGHT, LEFT_CONSTANT: r.BINARY_LEFT}[variant]
            else:
                kinds[code] = r.DOT if name == "dot" else r.REDUCTION
        constant_partial = np.array([code < FIRST_CUSTOM and constant_is_partial(code) for code in range(256)])
        _compiled = (r, kinds, constant_partial)
    return _compiled


class Program:
    """One trace of `fn` at `args`: recorded here, on a tape of its own."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.name = getattr(fn, "__name__", repr(fn))
        t = Tape()
        t.program, t.guards = [], []
        with t:
            leaves = [_lift(t, a, i, self.name) for i, a in enumerate(args)]
            out = fn(*leaves)
            t.flush()
        records, guards = t.program, t.guards
        t.program = t.guards = None  # the trace is made: its Vars are numbers again (see Var.value)
        self.shapes = [np.shape(a) for a in args]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.cumsum([0] + self.sizes).astype(np.int64)
        self.first, self.n = int(self.offsets[-1]), len(t)
        replay, self.kinds, constant_partial = compiled()
        stream = np.concatenate(records) if records else np.zeros(0)
        self.code, self.start, self.refs, val = replay.build(stream, self.n, self.kinds, constant_partial)
        if self.start[0] < 0:
            node = -1 - int(self.start[0])
            raise TraceError(f"tracing {self.name}: node {node} is {t.node(node)[0]!r}, a custom operation "
                             "(tape.record), which a trace cannot replay: its partials are yours, not a rule's")
        constants = []

        def ref(part) -> int:  # a node, or a constant kept after the values
            if isinstance(part, int):
                return part
            constants.append(float(part))
            return len(val) + len(constants) - 1

        self.structure, parts = _flatten(out, t, self.name)
        self.outputs = np.array([ref(p) for p in parts], dtype=np.int64)
        self.guards = guards
        self.guard_arrays = (np.array([g.lhs for g in self.guards], dtype=np.int64),
                             np.array([COMPARISONS.index(g.op) for g in self.guards], dtype=np.int64),
                             np.array([ref(g.rhs) for g in self.guards], dtype=np.int64),
                             np.array([g.outcome for g in self.guards], dtype=np.bool_))
        self.val = np.concatenate([val, constants])
        self.dot_runs = replay.runs(self.code, self.kinds, self.start, self.refs, self.n, self.offsets)
        self.has_runs = bool((self.dot_runs[2] > 0).any())
        self._active: dict = {}
        self._plans: dict = {}
        self.hessians: dict = {}  # argnum -> the Hessian of this trace (see Traced.hessian)
        self._scratch = threading.local()

    # -- running ------------------------------------------------------------------------------------

    def inputs(self, args: tuple, batch: tuple = ()) -> list[np.ndarray]:
        """Each argument as a flat float array, checked against the traced shapes (an argument
        in `batch` has a leading batch axis: rows)."""
        if len(args) != len(self.shapes):
            raise TypeError(f"{self.name} was traced with {len(self.shapes)} arguments, called with {len(args)}")
        out = []
        for i, (a, shape) in enumerate(zip(args, self.shapes)):
            array = numbers(a, f"{self.name}: argument {i}")
            expected = (array.shape[:1] + shape if array.ndim else None) if i in batch else shape
            if array.shape != expected:
                what = f"(batch, *{shape})" if i in batch else f"{shape}"
                raise ValueError(f"{self.name}: argument {i} has shape {array.shape}, the trace expects {what}")
            out.append(array.reshape(len(array), self.sizes[i]) if i in batch else array.ravel())
        return out

    def active(self, argnums: tuple) -> np.ndarray:
        """Which nodes depend on the inputs of the arguments `argnums` (cached)."""
        if argnums not in self._active:
            seeds = np.concatenate([self.leaves(i) for i in argnums] + [np.zeros(0, np.int64)])
            self._active[argnums] = compiled()[0].activity(self.code, self.kinds, self.start, self.refs, self.n,
                                                           len(self.val), seeds)
        return self._active[argnums]

    def leaves(self, i: int) -> np.ndarray:
        """The input nodes of argument i."""
        return np.arange(self.offsets[i], self.offsets[i + 1], dtype=np.int64)

    def sparse_inputs(self, val: np.ndarray, argnums: tuple) -> tuple:
        """(sparse, nz): the undifferentiated inputs whose zeros a dot over runs may skip, and
        those that are not zero; none if an input is not finite (zero times an infinity is not
        zero)."""
        if not self.has_runs or not np.isfinite(val[: self.first]).all():
            return np.zeros(self.first, dtype=np.bool_), np.zeros(0, np.int64)
        sparse = np.ones(self.first, dtype=np.bool_)
        for i in argnums:
            sparse[self.offsets[i] : self.offsets[i + 1]] = False
        return sparse, np.flatnonzero(sparse & (val[: self.first] != 0.0)).astype(np.int64)

    def forward(self, inputs: np.ndarray, argnums: tuple, fresh: bool = False):
        """Run the program at `inputs` (every input leaf's value, flat): (val, edges), or raise
        GuardError or the error of a rule refusing its operands."""
        replay = compiled()[0]
        val, estart, eparent, epartial, _ = self.buffers(fresh)
        val[:] = self.val
        val[: self.first] = inputs
        estart[self.first] = 0
        sparse, nz = self.sparse_inputs(val, argnums)
        status = replay.forward(self.code, self.kinds, self.start, self.refs, val, self.first, self.n,
                                self.active(argnums), estart, eparent, epartial, self.dot_runs, sparse, nz)
        self.check(val, status)
        return val, (estart, eparent, epartial)

    def check(self, val: np.ndarray, status: int, sample: int | None = None) -> None:
        """Raise what a forward pass's status says went wrong: a guard (of the nodes computed)
        that came out the other way, else the node whose rule refused its operands."""
        below = self.n if status >= 0 else -status - 1
        g = compiled()[0].failed_guard(val, *self.guard_arrays, self.n, below)
        if g >= 0:
            raise GuardError(self.guard_message(g, val, sample))
        if status < 0:
            operands = [float(val[r]) for r in self.refs[self.start[below] : self.start[below + 1]]]
            at = f" (sample {sample} of the batch)" if sample is not None else ""
            raise_refused(int(self.code[below]), operands, f"; replaying {self.name} at node {below}{at}")

    def buffers(self, fresh: bool = False) -> tuple:
        """(val, estart, eparent, epartial, adjoint): this thread's, reused call after call
        (fresh ones for results that outlive the call, as vjp's)."""
        cached = getattr(self._scratch, "buffers", None)
        if cached is None or fresh:
            edges = len(self.refs) + 1
            cached = (np.empty(len(self.val)), np.zeros(self.n + 1, np.int64), np.empty(edges, np.int64),
                      np.empty(edges), np.empty(len(self.val)))
            if not fresh:
                self._scratch.buffers = cached
        return cached

    def plan(self, nums: tuple, batched: tuple, out: int, aux: np.ndarray) -> tuple:
        """(the input nodes of a sample, the nodes differentiated, the output node, the aux
        nodes, the inputs whose zeros a dot may skip, none, the input nodes the same for every
        sample) of a batched call (cached)."""
        key = (nums, batched, out, aux.tobytes())
        if key not in self._plans:
            inputs = np.concatenate([self.leaves(i) for i in batched])
            wrt = np.concatenate([self.leaves(i) for i in nums] + [np.zeros(0, np.int64)])
            sparse = np.zeros(self.first, dtype=np.bool_)
            sparse[inputs] = self.has_runs  # a sample's inputs, never differentiated here
            fixed = np.concatenate([self.leaves(i) for i in range(len(self.shapes)) if i not in batched] + [np.zeros(0, np.int64)])
            self._plans[key] = (inputs, wrt, out, aux, sparse, np.zeros(self.first, dtype=np.bool_), fixed)
        return self._plans[key]

    def workspace(self, inputs: int, chunks: int, wrt: int) -> tuple:
        """Each thread's buffers for a batch (its values start as the program's: its constants
        stay), and each chunk's gradient: this calling thread's, reused call after call."""
        from numba import get_num_threads

        threads = get_num_threads()
        key = (threads, inputs, chunks, wrt)
        cached = getattr(self._scratch, "workspace", None)
        if cached is None or cached[0] != key:
            edges = len(self.refs) + 1
            buffers = (np.tile(self.val, (threads, 1)), np.zeros((threads, len(self.val))),
                       np.zeros((threads, self.n + 1), np.int64), np.empty((threads, edges), np.int64),
                       np.empty((threads, edges)), np.empty((threads, inputs), np.int64))
            cached = (key, buffers, np.zeros((chunks, wrt)))
            self._scratch.workspace = cached
        return cached[1], cached[2]

    def output(self, val: np.ndarray):
        """The function's output (its structure) from the values of a forward pass."""
        return unflatten(self.structure, val[self.outputs])

    # -- saying what it is ---------------------------------------------------------------------------

    def describe(self, ref) -> str:
        """A node or constant as a message names it: `argument 1[3]`, `v12 (mul)`, `0.5`."""
        if ref >= self.n:
            return repr(float(self.val[ref]))
        if ref < self.first:
            i = int(np.searchsorted(self.offsets, ref, side="right")) - 1
            index = np.unravel_index(ref - self.offsets[i], self.shapes[i]) if self.shapes[i] else ()
            return f"argument {i}" + (f"[{', '.join(map(str, index))}]" if index else "")
        return f"v{ref} ({CODES[self.code[ref]][0]})"

    def guard_message(self, g: int, val: np.ndarray, sample: int | None = None) -> str:
        guard, (lhs, _, rhs, _) = self.guards[g], self.guard_arrays
        now = f"{float(val[lhs[g]])!r} {guard.op} {float(val[rhs[g]])!r}"
        at = f" (sample {sample} of the batch)" if sample is not None else ""
        return (f"{self.name}: the comparison {self.describe(lhs[g])} {guard.op} {self.describe(rhs[g])}, made at "
                f"{guard.where}, was {guard.outcome} when traced and is {not guard.outcome} here{at} ({now}); the "
                "trace does not hold at these inputs: trace again there, or use tape.trace(..., retrace=True)")

    def format(self) -> str:
        return self.table().text()

    def table(self) -> Table:
        """The program as a table: per node (v0, v1, ...) its operation, operands (nodes by
        their names, constants as numbers) and, for inputs, constant leaves and kinks, its traced
        value; then its outputs and guards."""

        def operand(r: int) -> str:
            return f"v{r}" if r < self.n else repr(float(self.val[r]))

        def row(i: int) -> tuple[str, ...]:
            operands = ", ".join(map(operand, self.refs[self.start[i] : self.start[i + 1]]))
            op = "input" if i < self.first else CODES[self.code[i]][0]
            return (f"v{i}", op, operands or "-", f"{self.val[i]:.6g}" if op in ("input", "leaf", "kink") else "")

        notes = [f"outputs: {', '.join(map(operand, self.outputs))}"]
        notes += [f"guard: {self.describe(l)} {g.op} {self.describe(r)} was {g.outcome} (at {g.where})"
                  for g, l, r in zip(self.guards, self.guard_arrays[0], self.guard_arrays[2])]
        return Table(("node", "op", "operands", "value"), Rows(self.n, row), notes)


def numbers(x, what: str, hint: str = "") -> np.ndarray:
    """x as a float array, if it is a number or an array (list) of numbers."""
    array = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if array.dtype.kind not in "biuf":  # bools, integers, floats
        raise TypeError(f"{what} must be a number or an array of numbers, got {type(x).__name__}{hint}")
    return array.astype(np.float64, copy=False)


def _lift(t: Tape, x, i: int, name: str):
    """Leaves for argument i: a Var for a number, an object array of Vars for an array."""
    array = numbers(x, f"trace({name}): argument {i}", "; bind other arguments with a closure or functools.partial")
    if array.ndim == 0:
        return leaf_on(_ops.Var, t, float(array))
    out = np.empty(array.shape, dtype=object)
    for j, v in enumerate(array.flat):
        out.flat[j] = leaf_on(_ops.Var, t, v)
    return out


def _flatten(out, t: Tape, name: str):
    """(structure, parts) of fn's output: a scalar, an array, or a tuple of them; a part is a
    node of `t` (an int) or a constant (a float)."""
    if isinstance(out, tuple):
        structures, parts = [], []
        for o in out:
            s, p = _flatten(o, t, name)
            structures.append(s)
            parts += p
        return ("tuple", structures), parts
    if hasattr(out, "_reduce"):  # a VarArray
        return ("array", out.shape), [int(n) for n in out.nodes.ravel()]
    array = np.asarray(out, dtype=object)
    parts = []
    for o in array.flat:
        if isinstance(o, VarBase) and o._seg.tape is t:
            parts.append(o._node)
        elif isinstance(o, (*CONSTANTS, VarBase)):  # a Var of another tape is a constant here
            parts.append(float(o._value if isinstance(o, VarBase) else o))
        else:
            raise TypeError(f"trace({name}): the function returned a {type(o).__name__}; it must return numbers, Vars or arrays of them")
    return ("array", array.shape), parts


def unflatten(structure, values: np.ndarray, batch: int | None = None):
    """An output of this structure from its flat values (with a leading batch axis: values
    is (batch, size) and each part gets the axis)."""
    kind, what = structure
    if kind == "tuple":
        out, at = [], 0
        for s in what:
            size = size_of(s)
            out.append(unflatten(s, values[..., at : at + size], batch))
            at += size
        return tuple(out)
    if batch is not None:
        return values.reshape((batch,) + what)
    return float(values[0]) if what == () else values.reshape(what)


def size_of(structure) -> int:
    kind, what = structure
    return sum(size_of(s) for s in what) if kind == "tuple" else int(np.prod(what))
