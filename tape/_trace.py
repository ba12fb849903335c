"""Trace once, evaluate compiled: a recorded Wengert list as a function of new inputs.

`tape.trace(fn, *args)` records fn once at args and keeps what a replay needs: per node its
operation, its operands (nodes or constants) and its constants, beside the CSR tape. Calling the
traced function, and its `grad`, `value_and_grad`, `vjp`, `jvp`, `jacobian` and `hessian`,
evaluates that program at new inputs with one compiled interpreter (tape/_replay.py): no Python
per node, and nothing compiled per trace.

Every comparison of Vars made while tracing (`if x > 0:` in fn) is a guard. A replay at an
input where one comes out the other way raises `GuardError`, naming it, or traces fn again
there (`retrace=True`): a trace never gives the numbers of another branch.
"""
from __future__ import annotations

import functools
import threading
from typing import Callable, Sequence

import numpy as np

from . import _ops
from ._forward import APPLY, Dual
from ._rules import BINARY, CODES, FIRST_CUSTOM, LEFT_CONSTANT, REDUCTIONS, RIGHT_CONSTANT, UNARY, code_of, constant_is_partial
from ._tape import Tape, TraceError
from ._var import COMPARISONS, CONSTANTS, VarBase, leaf_on

Argnums = int | Sequence[int]
MAX_TRACES = 8  # kept by a retracing function, newest first
CHUNK = 16  # samples summed in order before the chunks' sums are added (see _replay.batch)


class GuardError(TraceError):
    """A replay at an input where a comparison made while tracing comes out the other way."""


def _kinds() -> np.ndarray:
    from . import _replay as r

    kinds = np.full(256, r.CUSTOM, dtype=np.int64)
    kinds[0] = r.LEAF
    for code, (name, rule, variant) in enumerate(CODES[1:], start=1):
        if rule in UNARY:
            kinds[code] = r.UNARY
        elif rule in BINARY:
            kinds[code] = {0: r.BINARY, RIGHT_CONSTANT: r.BINARY_RIGHT, LEFT_CONSTANT: r.BINARY_LEFT}[variant]
        else:
            kinds[code] = r.DOT if name == "dot" else r.REDUCTION
    return kinds


_compiled = None


def _replay():
    """tape._replay and the tables it reads, on first use (it imports numba)."""
    global _compiled
    if _compiled is None:
        from . import _replay

        constant_partial = np.array([code < FIRST_CUSTOM and constant_is_partial(code) for code in range(256)])
        _compiled = (_replay, _kinds(), constant_partial)
    return _compiled


OPS = ["<", "<=", ">", ">=", "==", "!="]


class Program:
    """One trace of a function: its program, inputs, outputs and guards."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.name = getattr(fn, "__name__", repr(fn))
        t = Tape()
        t.program, t.guards = [], []
        with t:
            leaves = [_lift(t, a, i, self.name) for i, a in enumerate(args)]
            out = fn(*leaves)
            t.flush()
        self.shapes = [np.shape(a) for a in args]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.cumsum([0] + self.sizes)
        self.first = int(self.offsets[-1])  # the input leaves are nodes 0 .. first - 1
        self.n = len(t)
        replay, kinds, constant_partial = _replay()
        stream = np.concatenate(t.program) if t.program else np.zeros(0)
        self.code, self.start, self.refs, val = replay.build(stream, self.n, kinds, constant_partial)
        if self.start[0] < 0:
            node = -1 - int(self.start[0])
            raise TraceError(
                f"tracing {self.name}: node {node} is {t.node(node)[0]!r}, a custom operation (tape.record), "
                "which a trace cannot replay: its partials are yours, not a rule's"
            )
        self.kinds = kinds
        self.dot_runs = replay.runs(self.code, kinds, self.start, self.refs, self.n, self.offsets.astype(np.int64))
        self.has_runs = bool((self.dot_runs[2] > 0).any())
        self._no_sparse = (np.zeros(self.first, dtype=np.bool_), np.zeros(0, np.int64))
        self.structure, parts = _flatten(out, t, self.name)
        constants = [float(p) for p in parts if not isinstance(p, int)]
        self.val = np.concatenate([val, constants])
        refs, c = [], len(val)
        for p in parts:
            if isinstance(p, int):
                refs.append(p)
            else:
                refs.append(c)
                c += 1
        self.outputs = np.array(refs, dtype=np.int64)
        self.guards = list(t.guards)
        lhs, rhs = [], []
        for g in self.guards:
            lhs.append(g.lhs)
            if isinstance(g.rhs, int):
                rhs.append(g.rhs)
            else:
                rhs.append(len(self.val))
                self.val = np.append(self.val, g.rhs)
        self.guard_lhs = np.array(lhs, dtype=np.int64)
        self.guard_rhs = np.array(rhs, dtype=np.int64)
        self.guard_op = np.array([OPS.index(g.op) for g in self.guards], dtype=np.int64)
        self.guard_outcome = np.array([g.outcome for g in self.guards], dtype=np.bool_)
        self._active: dict = {}
        self._plans: dict = {}
        self._scratch = threading.local()
        self.guard_arrays = (self.guard_lhs, self.guard_op, self.guard_rhs, self.guard_outcome)

    def active(self, argnums: tuple) -> np.ndarray:
        """Which nodes depend on the inputs of the arguments `argnums` (cached)."""
        if argnums not in self._active:
            replay = _replay()[0]
            seeds = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in argnums] + [np.zeros(0, np.int64)])
            self._active[argnums] = replay.activity(self.code, self.kinds, self.start, self.refs, self.n, len(self.val), seeds.astype(np.int64))
        return self._active[argnums]

    def plan(self, nums: tuple, batched: tuple, has_aux: bool) -> tuple:
        """(input nodes of a sample, nodes differentiated, output node, aux nodes, sparse inputs)
        of batched calls with these arguments (cached)."""
        key = (nums, batched, has_aux)
        if key not in self._plans:
            inputs = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in batched]).astype(np.int64)
            wrt = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in nums]).astype(np.int64)
            sparse = np.zeros(self.first, dtype=np.bool_)
            sparse[inputs] = True  # a sample's inputs, never differentiated here
            aux = self.outputs[1:] if has_aux else np.zeros(0, np.int64)
            self._plans[key] = (inputs, wrt, _scalar_output(self, has_aux), aux, sparse)
        return self._plans[key]

    def workspace(self, inputs: int, chunks: int, wrt: int) -> tuple:
        """Each thread's buffers for a batch, and each chunk's gradient: this calling thread's,
        reused call after call."""
        from numba import get_num_threads

        threads = get_num_threads()
        key = (threads, inputs, chunks, wrt)
        cached = getattr(self._scratch, "workspace", None)
        if cached is None or cached[0] != key:
            edges = len(self.refs) + 1
            buffers = (np.empty((threads, len(self.val))), np.zeros((threads, len(self.val))),
                       np.zeros((threads, self.n + 1), np.int64), np.empty((threads, edges), np.int64),
                       np.empty((threads, edges)), np.empty((threads, inputs), np.int64))
            cached = (key, buffers, np.zeros((chunks, wrt)))
            self._scratch.workspace = cached
        return cached[1], cached[2]

    def buffers(self, fresh: bool = False) -> tuple:
        """(val, estart, eparent, epartial, adjoint): this thread's, reused call after call (fresh ones
        for results that outlive the call, such as vjp's)."""
        cached = getattr(self._scratch, "buffers", None)
        if cached is None or fresh:
            cached = (np.empty(len(self.val)), np.zeros(self.n + 1, np.int64),
                      np.empty(len(self.refs) + 1, np.int64), np.empty(len(self.refs) + 1), np.empty(len(self.val)))
            if not fresh:
                self._scratch.buffers = cached
        return cached

    def forward(self, inputs: np.ndarray, argnums: tuple, fresh: bool = False):
        """Run the program at `inputs` (all input leaves, flat): (val, edges), or raise."""
        replay = _replay()[0]
        val, estart, eparent, epartial, _ = self.buffers(fresh)
        val[:] = self.val
        val[: self.first] = inputs
        estart[self.first] = 0
        sparse, nz = self.sparse_inputs(val, argnums)
        status = replay.forward(self.code, self.kinds, self.start, self.refs, val, self.first, self.n,
                                self.active(argnums), estart, eparent, epartial, self.dot_runs, sparse, nz)
        below = self.n if status >= 0 else -status - 1
        g = replay.failed_guard(val, self.guard_lhs, self.guard_op, self.guard_rhs, self.guard_outcome, self.n, below)
        if g >= 0:
            raise GuardError(self.guard_message(g, val))
        if status < 0:
            self.raise_refused(below, val)
        return val, (estart, eparent, epartial)

    def describe(self, ref) -> str:
        """A node or constant as a message names it: `argument 1[3]`, `node 12`, `0.5`."""
        if not isinstance(ref, (int, np.integer)):
            return repr(float(ref))
        if ref < self.first:
            i = int(np.searchsorted(self.offsets, ref, side="right")) - 1
            index = np.unravel_index(ref - self.offsets[i], self.shapes[i]) if self.shapes[i] else ()
            return f"argument {i}" + (f"[{', '.join(map(str, index))}]" if index else "")
        return f"node {ref} ({CODES[self.code[ref]][0]})"

    def sparse_inputs(self, val: np.ndarray, argnums: tuple, among=None) -> tuple[np.ndarray, np.ndarray]:
        """(sparse, nz): the undifferentiated inputs (among the leaves `among`, else all) whose
        zeros a dot may skip, and the non-zero ones; none if an input is not finite."""
        if not self.has_runs:
            return self._no_sparse
        sparse = np.ones(self.first, dtype=np.bool_) if among is None else np.zeros(self.first, dtype=np.bool_)
        if among is not None:
            sparse[among] = True
        for i in argnums:
            sparse[self.offsets[i] : self.offsets[i + 1]] = False
        inputs = val[: self.first]
        if not np.isfinite(inputs).all():
            sparse[:] = False
        return sparse, np.flatnonzero(sparse & (inputs != 0.0)).astype(np.int64)

    def guard_message(self, g: int, val: np.ndarray, sample: int | None = None) -> str:
        guard = self.guards[g]
        now = f"{float(val[self.guard_lhs[g]])!r} {guard.op} {float(val[self.guard_rhs[g]])!r}"
        at = f" (sample {sample} of the batch)" if sample is not None else ""
        return (f"{self.name}: the comparison {self.describe(guard.lhs)} {guard.op} {self.describe(guard.rhs)}, made at {guard.where}, was "
                f"{guard.outcome} when traced and is {not guard.outcome} here{at} ({now}); the trace does not "
                "hold at these inputs: trace again there, or use tape.trace(..., retrace=True)")

    def raise_refused(self, node: int, val: np.ndarray, sample: int | None = None):
        """Raise the scalar path's error for node `node`, whose rule refused its operands."""
        operands = [float(val[r]) for r in self.refs[self.start[node] : self.start[node + 1]]]
        at = f"replaying {self.name} at node {node}" + (f" (sample {sample} of the batch)" if sample is not None else "")
        try:
            APPLY[_base(int(self.code[node]))](*operands)
        except (ValueError, OverflowError, ZeroDivisionError) as e:
            raise type(e)(f"{e}; {at}") from None
        raise AssertionError(f"{at}: the compiled rule refused {operands} but the scalar one does not")

    def inputs(self, args: tuple, batch: tuple = ()) -> list[np.ndarray]:
        """Each argument as a flat float array, checked against the traced shapes (an argument
        in `batch` has a leading batch axis)."""
        if len(args) != len(self.shapes):
            raise TypeError(f"{self.name} was traced with {len(self.shapes)} arguments, called with {len(args)}")
        out = []
        for i, (a, shape) in enumerate(zip(args, self.shapes)):
            try:
                array = np.asarray(a, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"{self.name}: argument {i} must be a number or an array of numbers, got {type(a).__name__}") from None
            expected = shape if i not in batch else (array.shape[:1] + shape if array.ndim else None)
            if array.shape != expected:
                what = f"(batch, *{shape})" if i in batch else f"{shape}"
                raise ValueError(f"{self.name}: argument {i} has shape {array.shape}, the trace expects {what}")
            out.append(array.reshape(len(array), -1) if i in batch else array.ravel())
        return out

    def output(self, val: np.ndarray):
        return _unflatten(self.structure, val[self.outputs])

    def format(self) -> str:
        rows = [("node", "op", "operands", "value")]
        for i in range(self.n):
            refs = self.refs[self.start[i] : self.start[i + 1]]
            operands = ", ".join(str(r) if r < self.n else f"{self.val[r]:.6g}" for r in refs)
            op = CODES[self.code[i]][0] if self.code[i] < FIRST_CUSTOM else "?"
            rows.append((str(i), "input" if i < self.first else op, operands or "-", f"{self.val[i]:.6g}" if i < self.first or op == "leaf" else ""))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(f"outputs: {', '.join(str(r) if r < self.n else repr(float(self.val[r])) for r in self.outputs)}")
        for g in self.guards:
            lines.append(f"guard: node {g.lhs} {g.op} {g.rhs} was {g.outcome} (at {g.where})")
        return "\n".join(lines)


def _base(code: int) -> int:
    name, rule, variant = CODES[code]
    return code_of(name)


def _lift(t: Tape, x, i: int, name: str):
    """Leaves for argument i: a Var for a number, an object array of Vars for an array."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"trace({name}): argument {i} must be a number or an array of numbers, got {type(x).__name__}; "
                        "bind other arguments with a closure or functools.partial") from None
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
        elif isinstance(o, (*CONSTANTS, VarBase)):
            parts.append(float(o.value if isinstance(o, VarBase) else o))
        else:
            raise TypeError(f"trace({name}): the function returned a {type(o).__name__}; it must return numbers, Vars or arrays of them")
    return ("array", array.shape), parts


def _unflatten(structure, values: np.ndarray):
    kind, what = structure
    if kind == "tuple":
        out, at = [], 0
        for s in what:
            size = _size(s)
            out.append(_unflatten(s, values[at : at + size]))
            at += size
        return tuple(out)
    return float(values[0]) if what == () else values.reshape(what)


def _size(structure) -> int:
    kind, what = structure
    return sum(_size(s) for s in what) if kind == "tuple" else int(np.prod(what))


def trace(fn: Callable, *example_args, retrace: bool = False) -> Traced:
    """Record `fn` once at `example_args` (numbers or arrays of numbers) and return it as a
    traced function, evaluated at new inputs of the same shapes by compiled code.

    With retrace=True, a call where a comparison made while tracing comes out the other way
    traces fn again there (keeping the last few traces); otherwise it raises GuardError."""
    return Traced(fn, example_args, retrace)


class Traced:
    """A traced function: call it for its value; `grad`, `value_and_grad`, `vjp`, `jvp`,
    `jacobian` and `hessian` as in `tape` (JAX's names), each evaluated at new inputs by one
    compiled pass over the program. Safe to call from several threads."""

    def __init__(self, fn: Callable, args: tuple, retrace: bool = False) -> None:
        self.fn, self.retrace = fn, retrace
        self.programs = [Program(fn, args)]
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    @property
    def program(self) -> Program:
        """The newest trace."""
        return self.programs[0]

    def show(self, file=None) -> None:
        """Print the program: per node its operation, operands and (for inputs) value."""
        print(self.program.format(), file=file)

    def __repr__(self) -> str:
        p = self.program
        return f"<traced {p.name}: {p.n} nodes, {len(p.refs)} operands, {len(p.guards)} guards>"

    # -- evaluating -----------------------------------------------------------------------------

    def _forward(self, args: tuple, argnums: tuple, fresh: bool = False):
        """(program, flat inputs, val, edges) of the first trace whose guards hold at args."""
        failure = None
        for program in list(self.programs):
            inputs = _concatenated(program.inputs(args))
            try:
                return (program, inputs, *program.forward(inputs, argnums, fresh))
            except GuardError as e:
                failure = e
        if not self.retrace:
            raise failure
        program = Program(self.fn, tuple(args))
        with self._lock:
            self.programs = [program, *self.programs][:MAX_TRACES]
        inputs = _concatenated(program.inputs(args))
        return (program, inputs, *program.forward(inputs, argnums, fresh))

    def __call__(self, *args):
        if any(_symbolic(a) for a in args):
            return self.evaluate(*args)
        program, _, val, _ = self._forward(args, ())
        return program.output(val)

    def evaluate(self, *args):
        """The program on Vars or Duals (not compiled; recorded on their tape), so that a
        traced function composes with grad, jvp and friends."""
        return _interpret(self.program, args)

    def value_and_grad(self, argnums: Argnums = 0, *, batch_argnums: Argnums = (), reduction: str = "mean",
                       has_aux: bool = False) -> Callable:
        """The function returning (value, d value / d args[argnums]), as tape.value_and_grad.

        With batch_argnums, those arguments carry a leading batch axis (a batch of samples) and
        the call returns the mean (or, reduction="sum", the sum) of the per-sample values and
        gradients: Algorithm 3, split between the cores in fixed chunks, so the result does
        not depend on the number of threads. With has_aux, fn returns (value, aux) and the call
        ((value, aux), grad), aux per sample in a batch."""
        nums, batched = _argnums(argnums), _argnums(batch_argnums, allow_empty=True)
        if set(nums) & set(batched):
            raise ValueError(f"argnums {nums} and batch_argnums {batched} overlap: a gradient is over the batch, not of it")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")

        def run(*args):
            for i in nums + batched:
                if i >= len(args):
                    raise TypeError(f"{self.program.name} was called with {len(args)} arguments, but argnums "
                                    f"{argnums!r} / batch_argnums {batch_argnums!r} name argument {i}")
            if batched:
                return self._batch(args, nums, batched, reduction, has_aux, isinstance(argnums, int))
            program, inputs, val, (estart, eparent, epartial) = self._forward(args, nums)
            out = _scalar_output(program, has_aux)
            adjoint = program.buffers()[4]
            adjoint[: program.first] = 0.0
            if out < program.n:
                adjoint[program.first : out + 1] = 0.0
                adjoint[out] = 1.0
                _replay()[0].sweep(estart, eparent, epartial, adjoint, out, program.first)
            grads = tuple(adjoint[program.offsets[i] : program.offsets[i + 1]].reshape(program.shapes[i]) for i in nums)
            grads = tuple(float(g) if g.ndim == 0 else g for g in grads)
            result = program.output(val)
            value = (float(val[out]), result[1]) if has_aux else float(val[out])
            return value, grads[0] if isinstance(argnums, int) else grads

        return run

    def grad(self, argnums: Argnums = 0, **options) -> Callable:
        """The function returning d value / d args[argnums] (see value_and_grad); with has_aux,
        (grad, aux)."""
        value_and_grad = self.value_and_grad(argnums, **options)

        def run(*args):
            value, grads = value_and_grad(*args)
            return (grads, value[1]) if options.get("has_aux") else grads

        return run

    def _batch(self, args: tuple, nums: tuple, batched: tuple, reduction: str, has_aux: bool, single: bool):
        program = self.program
        parts = program.inputs(args, batched)
        samples = {len(parts[i]) for i in batched}
        if len(samples) != 1:
            raise ValueError(f"{program.name}: the batched arguments {batched} have different batch sizes {sorted(samples)}")
        count = samples.pop()
        if count == 0:
            raise ValueError(f"{program.name}: an empty batch")
        plan = program.plan(nums, batched, has_aux)
        inputs, wrt, out, aux, _ = plan
        template = program.val.copy()
        for i, part in enumerate(parts):
            if i not in batched:
                template[program.offsets[i] : program.offsets[i + 1]] = part
        if not np.isfinite(template[: program.first]).all():  # 0 times an infinity is not 0
            plan = plan[:4] + (np.zeros(program.first, dtype=np.bool_),)
        rows = np.concatenate([parts[i] for i in batched], axis=1) if len(batched) > 1 else parts[batched[0]]
        weight = 1.0 / count if reduction == "mean" else 1.0
        if out >= program.n:  # a constant value: no gradient
            total, aux_values = float(program.val[out]) * count, np.tile(program.val[aux], (count, 1))
            gradient, status = np.zeros(len(wrt)), np.zeros(count, np.int64)
        else:
            workspace, grads = program.workspace(len(inputs), -(-count // CHUNK), len(wrt))
            total, aux_values, gradient, status = _replay()[0].batch(
                program.code, program.kinds, program.start, program.refs, program.first, program.n,
                program.active(nums), program.dot_runs, program.guard_arrays, template, plan,
                np.ascontiguousarray(rows), weight, CHUNK, workspace, grads,
            )
        bad = np.flatnonzero(status)
        if len(bad):
            self._raise_sample(program, template, inputs, rows, int(bad[0]), int(status[bad[0]]), nums)
        value = total * weight
        grads, at = [], 0
        for i in nums:
            grads.append(gradient[at : at + program.sizes[i]].reshape(program.shapes[i]))
            at += program.sizes[i]
        grads = [float(g) if g.ndim == 0 else g for g in grads]
        grads = grads[0] if single else tuple(grads)
        if has_aux:
            value = (value, aux_values.reshape((count,) + _shape(program.structure[1][1])))
        return value, grads

    def _raise_sample(self, program: Program, template, inputs, rows, sample: int, status: int, nums: tuple):
        val = template.copy()
        val[inputs] = rows[sample]
        if status > 0:
            raise GuardError(program.guard_message(status - 1, _values_at(program, val, nums), sample))
        program.raise_refused(-status - 1, _values_at(program, val, nums), sample)

    def vjp(self, *primals):
        """(value, vjp_fn): vjp_fn(cotangent) is cotangent^T J for each argument, each call one
        sweep of the one forward pass made here."""
        nums = tuple(range(len(primals)))
        program, inputs, val, (estart, eparent, epartial) = self._forward(primals, nums, fresh=True)
        value = program.output(val)
        shape = (len(program.outputs),)

        def vjp_fn(cotangent) -> tuple:
            flat = np.concatenate([np.ravel(np.asarray(c, dtype=np.float64)) for c in (cotangent if isinstance(cotangent, tuple) else (cotangent,))])
            if flat.shape != shape:
                raise ValueError(f"vjp: the cotangent has {flat.size} entries, the output {shape[0]}")
            adjoint = np.zeros(len(program.val))
            nodes = program.outputs < program.n
            np.add.at(adjoint, program.outputs[nodes], flat[nodes])
            if nodes.any():
                _replay()[0].sweep(estart, eparent, epartial, adjoint, int(program.outputs[nodes].max()), program.first)
            return tuple(_arg(program, adjoint, i) for i in nums)

        return value, vjp_fn

    def jvp(self, primals: Sequence, tangents: Sequence):
        """(value, the derivative along tangents), by forward mode over the same edges."""
        primals, tangents = tuple(primals), tuple(tangents)
        if len(primals) != len(tangents):
            raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
        program, inputs, val, edges = self._forward(primals, tuple(range(len(primals))))
        seed = _concatenated(program.inputs(tangents))
        return program.output(val), program.output(_tangents(program, edges, seed))

    def jacobian(self, argnums: int = 0, mode: str = "auto") -> Callable:
        """The function returning the Jacobian in args[argnums], shaped output + argument:
        row by row by sweeps (reverse), column by column by tangents (forward), or "auto":
        forward when the outputs outnumber the inputs."""
        if mode not in ("auto", "forward", "reverse"):
            raise ValueError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
        (num,) = _argnums(argnums, single=True)

        def run(*args):
            program, inputs, val, edges = self._forward(args, (num,))
            m, n = program.sizes[num], len(program.outputs)
            rows = np.zeros((n, m))
            lo = program.offsets[num]
            if mode == "forward" or mode == "auto" and n > m:
                for j in range(m):
                    seed = np.zeros(program.first)
                    seed[lo + j] = 1.0
                    tangent = _tangents(program, edges, seed)
                    rows[:, j] = tangent[program.outputs]
            else:
                for k, out in enumerate(program.outputs):
                    if out < program.n:
                        adjoint = np.zeros(len(program.val))
                        adjoint[out] = 1.0
                        _replay()[0].sweep(*edges, adjoint, out, program.first)
                        rows[k] = adjoint[lo : lo + m]
            return rows.reshape(_output_shape(program) + program.shapes[num])

        return run

    def hessian(self, argnums: int = 0) -> Callable:
        """The function returning the Hessian of a scalar output in args[argnums]: the Jacobian
        (reverse) of the gradient's own program, traced once from this one's."""
        (num,) = _argnums(argnums, single=True)
        cache = {}

        def run(*args):
            program = self._forward(args, ())[0]
            if id(program) not in cache:
                cache[id(program)] = Traced(_gradient_function(program, num), tuple(args)).jacobian(num, "reverse")
            return cache[id(program)](*args)

        return run


def _concatenated(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _scalar_output(program: Program, has_aux: bool) -> int:
    kind, what = program.structure
    value_structure = what[0] if has_aux else program.structure
    if has_aux and (kind != "tuple" or len(what) != 2):
        raise TypeError(f"{program.name}: with has_aux it must return (value, aux)")
    if _size(value_structure) != 1:
        raise TypeError(f"{program.name} must return a scalar to be differentiated (it returns {_size(value_structure)} numbers)")
    return int(program.outputs[0])


def _shape(structure) -> tuple:
    return structure[1] if structure[0] == "array" else (_size(structure),)


def _output_shape(program: Program) -> tuple:
    return _shape(program.structure)


def _arg(program: Program, values: np.ndarray, i: int):
    a = values[program.offsets[i] : program.offsets[i + 1]].reshape(program.shapes[i])
    return float(a) if a.ndim == 0 else a


def _tangents(program: Program, edges: tuple, seed: np.ndarray) -> np.ndarray:
    tangent = np.zeros(len(program.val))
    tangent[: program.first] = seed
    _replay()[0].tangents(*edges, tangent, program.first, program.n)
    return tangent


def _values_at(program: Program, val: np.ndarray, nums: tuple) -> np.ndarray:
    """All node values at the inputs already in val (for an error message)."""
    replay = _replay()[0]
    estart = np.zeros(program.n + 1, np.int64)
    sparse, nz = program.sparse_inputs(val, ())
    replay.forward(program.code, program.kinds, program.start, program.refs, val, program.first, program.n,
                   program.active(()), estart, np.empty(1, np.int64), np.empty(1), program.dot_runs, sparse, nz)
    return val


def _argnums(argnums: Argnums, allow_empty: bool = False, single: bool = False) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if (not nums and not allow_empty) or not all(isinstance(i, int) and i >= 0 for i in nums):
        raise TypeError(f"argnums must be a non-negative int or a tuple of them, got {argnums!r}")
    if len(set(nums)) != len(nums):
        raise ValueError(f"argnums {argnums!r} names an argument twice")
    if single and len(nums) != 1:
        raise TypeError(f"argnums must be one int here, got {argnums!r}")
    return nums


def _symbolic(x) -> bool:
    """Whether an argument holds Vars or Duals (then the program is interpreted on them)."""
    if isinstance(x, (VarBase, Dual)):
        return True
    return isinstance(x, (list, tuple, np.ndarray)) and np.asarray(x).dtype == object and any(
        isinstance(v, (VarBase, Dual)) for v in np.asarray(x, dtype=object).flat)


# -- the program on Vars and Duals, in Python ------------------------------------------------------


def _node_values(program: Program, args: tuple) -> list:
    """Every node's value, computed by the rule table's operations on whatever the inputs are
    (numbers, Vars, Duals), with each guard compared again (so it is kept if this is traced)."""
    if len(args) != len(program.shapes):
        raise TypeError(f"{program.name} was traced with {len(program.shapes)} arguments, called with {len(args)}")
    values: list = [float(v) for v in program.val]
    for i, a in enumerate(args):
        entries = list(np.asarray(a, dtype=object).flat)
        if len(entries) != program.sizes[i]:
            raise ValueError(f"{program.name}: argument {i} has {len(entries)} entries, the trace expects {program.sizes[i]}")
        values[program.offsets[i] : program.offsets[i + 1]] = entries
    guards = sorted(range(len(program.guards)), key=lambda g: max(program.guard_lhs[g], program.guard_rhs[g] if program.guard_rhs[g] < program.n else 0))
    next_guard = 0
    for i in range(program.first, program.n):
        code = int(program.code[i])
        refs = program.refs[program.start[i] : program.start[i + 1]]
        operands = [values[r] for r in refs]
        name, rule, _ = CODES[code]
        if name == "leaf":
            continue
        if rule in REDUCTIONS:
            values[i] = APPLY[code](operands[0::2], operands[1::2]) if name == "dot" else APPLY[code](operands)
        else:
            values[i] = APPLY[_base(code)](*operands)
        while next_guard < len(guards) and _guard_ready(program, guards[next_guard], i):
            _check(program, guards[next_guard], values)
            next_guard += 1
    for g in guards[next_guard:]:
        _check(program, g, values)
    return values


def _guard_ready(program: Program, g: int, i: int) -> bool:
    rhs = program.guard_rhs[g]
    return program.guard_lhs[g] <= i and (rhs >= program.n or rhs <= i)


def _check(program: Program, g: int, values: list) -> None:
    guard = program.guards[g]
    if COMPARISONS[guard.op](values[program.guard_lhs[g]], values[program.guard_rhs[g]]) != guard.outcome:
        raise GuardError(program.guard_message(g, np.array([float(_primal(v)) for v in values])))


def _primal(x) -> float:
    while not isinstance(x, CONSTANTS):
        x = x.value
    return float(x)


def _interpret(program: Program, args: tuple):
    values = _node_values(program, args)
    return _unflatten_objects(program.structure, [values[r] for r in program.outputs])


def _unflatten_objects(structure, parts: list):
    kind, what = structure
    if kind == "tuple":
        out, at = [], 0
        for s in what:
            size = _size(s)
            out.append(_unflatten_objects(s, parts[at : at + size]))
            at += size
        return tuple(out)
    if what == ():
        return parts[0]
    array = np.empty(len(parts), dtype=object)
    array[:] = parts
    return array.reshape(what)


def _gradient_function(program: Program, num: int) -> Callable:
    """fn(*args) -> d program / d args[num], by Algorithm 1 run on the program's values with
    the table's partials (which record, when the values are Vars): a derivative program."""
    out = _scalar_output(program, has_aux=False)

    def gradient(*args):
        values = _node_values(program, args)
        adjoint: list = [0.0] * len(values)
        adjoint[out] = 1.0
        for i in range(out, program.first - 1, -1):
            if isinstance(adjoint[i], float) and adjoint[i] == 0.0:
                continue
            code = int(program.code[i])
            refs = program.refs[program.start[i] : program.start[i + 1]]
            name, rule, _ = CODES[code]
            if name == "leaf":
                continue
            y = values[i]
            if rule in REDUCTIONS:  # the partials of each term: one operand, or a pair for dot
                step = 2 if name == "dot" else 1
                for p in range(0, len(refs), step):
                    group = refs[p : p + step]
                    _accumulate(adjoint, group, _ops.PARTIALS[code](*(values[r] for r in group), y), adjoint[i], program.n)
            else:  # a unary or binary rule gives the partials of its operands that are nodes
                operands = [values[r] for r in refs] + [None] * (2 - len(refs))
                nodes = [r for r in refs if r < program.n]
                _accumulate(adjoint, nodes, _ops.PARTIALS[code](*operands, y), adjoint[i], program.n)
        entries = adjoint[program.offsets[num] : program.offsets[num + 1]]
        return entries[0] if program.shapes[num] == () else _unflatten_objects(("array", program.shapes[num]), entries)

    gradient.__name__ = f"grad({program.name})"
    return gradient


def _accumulate(adjoint: list, refs, partials: tuple, a, n: int) -> None:
    """adjoint[r] += partial * a for the operands that are nodes (refs below n)."""
    for r, d in zip(refs, partials):
        if r < n:
            adjoint[r] = adjoint[r] + d * a
