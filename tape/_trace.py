"""Trace once, evaluate compiled: a recorded Wengert list as a function of new inputs.

`tape.trace(fn, *args)` records fn once at args and keeps what a replay needs (a program, see
tape/_program.py). Calling the traced function, and its `grad`, `value_and_grad`, `vjp`, `jvp`,
`jacobian` and `hessian`, evaluates that program at new inputs with one compiled interpreter
(tape/_replay.py): no Python per node, and nothing compiled per trace.

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
from ._forward import APPLY, Dual, primal, reduction_partials
from ._program import GuardError, Program, compiled, numbers, size_of, unflatten
from ._rules import CODES, KINK_PARTIAL, REDUCTIONS, code_of
from ._tensor_trace import TracedTensors, has_tensor
from ._transforms import Argnums, check_argnums
from ._tree import flat_arguments, leaf_structure, restore, same_structure
from ._var import COMPARISONS, VarBase, kink

MAX_TRACES = 8  # kept by a retracing function, newest first
CHUNK = 16  # samples summed in order before the chunks' sums are added (see _replay.batch)


def trace(fn: Callable, *example_args, retrace: bool = False) -> Traced:
    """Record `fn` once at `example_args` (numbers or arrays of numbers) and return it as a
    traced function, evaluated at new inputs of the same shapes by compiled code.

    With retrace=True, a call where a comparison made while tracing comes out the other way
    traces fn again there (keeping the last few traces); otherwise it raises GuardError.

    If an argument is (or holds) a Tensor, fn is traced on matrix nodes (tape/_tensor_trace.py):
    then Tensors and float arrays are matrix nodes, numbers Vars, integer arrays indices."""
    if has_tensor(example_args):
        return TracedTensors(fn, example_args, retrace)
    return Traced(fn, example_args, retrace)


class Traced:
    """A traced function: call it for its value; `grad`, `value_and_grad`, `vjp`, `jvp`,
    `jacobian` and `hessian` as in `tape` (JAX's names), each evaluated at new inputs by one
    compiled pass over the program. Safe to call from several threads."""

    BATCH_CHUNK = CHUNK  # a batched call (batch_argnums) sums this many samples in order, then the chunks' sums

    def __init__(self, fn: Callable, args: tuple, retrace: bool = False) -> None:
        self.fn, self.retrace = fn, retrace
        name = getattr(fn, "__name__", "fn")
        self._flat_fn, args, self.structures = flat_arguments(fn, args, range(len(args)), f"trace({name})")
        self.programs = [Program(self._flat_fn, tuple(args))]
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    def _flatten(self, args: tuple, what: str = "argument") -> tuple:
        """args with the structured ones as the flat vectors the trace takes; a structure that
        is not the traced one is refused, naming both."""
        if not self.structures:
            return tuple(args)
        return tuple(same_structure(self.structures[i], a, f"{self.__name__}: {what} {i}") if i in self.structures else a
                     for i, a in enumerate(args))

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

    def table(self):
        """The newest trace's program as a table (see `Program.table`), captioned with its counts."""
        table = self.program.table()
        table.caption = repr(self)
        return table

    def _repr_html_(self) -> str:
        return self.table().html()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """What IPython shows as text (a terminal, a text export): the table, not only its counts."""
        printer.text(repr(self.table()))

    # -- choosing a trace ---------------------------------------------------------------------------

    def _run(self, args: tuple, argnums: tuple, fresh: bool = False):
        """(program, val, edges) of the newest trace whose guards hold at args (a new trace
        there, with retrace=True)."""
        failure = None
        for program in list(self.programs):
            try:
                return (program, *program.forward(_flat(program.inputs(args)), argnums, fresh))
            except GuardError as e:
                failure = e
        program = self._retrace(args, failure)
        return (program, *program.forward(_flat(program.inputs(args)), argnums, fresh))

    def _retrace(self, args: tuple, failure: GuardError) -> Program:
        if not self.retrace:
            raise failure
        program = Program(self._flat_fn, tuple(args))
        with self._lock:
            self.programs = [program, *self.programs][:MAX_TRACES]
        return program

    # -- evaluating ---------------------------------------------------------------------------------

    def __call__(self, *args):
        flat = self._flatten(args)
        if any(_symbolic(a) for a in flat):
            return self.evaluate(*args)
        program, val, _ = self._run(flat, ())
        return program.output(val)

    def evaluate(self, *args):
        """The program on Vars or Duals (interpreted in Python, recorded on their tape), so
        that a traced function composes with grad, jvp and friends; the trace is chosen (or
        made) at the arguments' values, as a call's."""
        args = self._flatten(args)
        program, _, _ = self._run(tuple(_primal_values(a) for a in args), ())
        return _interpret(program, args)

    def value_and_grad(self, argnums: Argnums = 0, *, batch_argnums: Argnums = (), reduction: str = "mean",
                       has_aux: bool = False) -> Callable:
        """The function returning (value, d value / d args[argnums]), as tape.value_and_grad.

        With batch_argnums, those arguments carry a leading batch axis (a batch of samples) and
        the call returns the mean (or, reduction="sum", the sum) of the per-sample values and
        gradients: Algorithm 3, split between the cores in fixed chunks, so the result does
        not depend on the number of threads. With has_aux, fn returns (value, aux) and the call
        ((value, aux), grad), aux per sample in a batch."""
        (nums, single), (batched, _) = check_argnums(argnums), check_argnums(batch_argnums, "batch_argnums", allow_empty=True)
        if set(nums) & set(batched):
            raise ValueError(f"argnums {nums} and batch_argnums {batched} overlap: a gradient is over the batch, not of it")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")

        def run(*args):
            args = self._flatten(args)
            _in_range(self.program, args, nums + batched)
            if batched:
                if set(batched) & set(self.structures):
                    raise TypeError(f"{self.__name__}: batch_argnums {batched} includes a structured argument; "
                                    "a batch is an array with a leading batch axis")
                value, grads = self._batch(args, nums, batched, reduction, has_aux, single)
                return value, restore(self.structures, nums, grads)
            program, val, edges = self._run(args, nums)
            out = _scalar_output(program, has_aux)
            adjoint = program.buffers()[4]
            adjoint[:] = 0.0
            if out < program.n:
                adjoint[out] = 1.0
                compiled()[0].sweep(*edges, adjoint, out, program.first)
            grads = tuple(_arg(program, adjoint, i) for i in nums)
            value = (float(val[out]), program.output(val)[1]) if has_aux else float(val[out])
            return value, restore(self.structures, nums, grads[0] if single else grads)

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
        """Algorithm 3 over the batch, on the newest trace whose guards hold for every sample."""
        failure = None
        for program in list(self.programs):
            try:
                return _batch(program, args, nums, batched, reduction, has_aux, single)
            except GuardError as e:
                failure = e
        if not self.retrace:
            raise failure
        raise GuardError(f"{failure}. A batch runs on one trace, and none of the {len(self.programs)} kept holds for "
                         "every sample (retrace=True traces again for single calls, not for batches)")

    def vjp(self, *primals):
        """(value, vjp_fn): vjp_fn(cotangent) is cotangent^T J for each argument, each call one
        sweep of the one forward pass made here."""
        nums = tuple(range(len(primals)))
        primals = self._flatten(primals)
        program, val, edges = self._run(primals, nums, fresh=True)
        size = len(program.outputs)

        def vjp_fn(cotangent) -> tuple:
            parts = cotangent if isinstance(cotangent, tuple) else (cotangent,)
            flat = np.concatenate([np.ravel(numbers(c, "vjp: the cotangent")) for c in parts])
            if flat.shape != (size,):
                raise ValueError(f"vjp: the cotangent has {flat.size} entries, the output {size}")
            adjoint = np.zeros(len(program.val))
            nodes = program.outputs < program.n
            np.add.at(adjoint, program.outputs[nodes], flat[nodes])
            if nodes.any():
                compiled()[0].sweep(*edges, adjoint, int(program.outputs[nodes].max()), program.first)
            return restore(self.structures, nums, tuple(_arg(program, adjoint, i) for i in nums))

        return program.output(val), vjp_fn

    def jvp(self, primals: Sequence, tangents: Sequence):
        """(value, the derivative along tangents), by forward mode over the same edges."""
        primals, tangents = tuple(primals), tuple(tangents)
        if len(primals) != len(tangents):
            raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
        primals, tangents = self._flatten(primals), self._flatten(tangents, "tangent")
        program, val, edges = self._run(primals, tuple(range(len(primals))))
        value = program.output(val)
        return value, program.output(_tangents(program, edges, _flat(program.inputs(tangents))))

    def jacobian(self, argnums: int = 0, mode: str = "auto") -> Callable:
        """The function returning the Jacobian in args[argnums], shaped output + argument:
        row by row by sweeps (reverse), column by column by tangents (forward), or "auto":
        forward when the outputs outnumber the inputs."""
        if mode not in ("auto", "forward", "reverse"):
            raise ValueError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
        (num,), _ = check_argnums(argnums, single=True)

        def run(*args):
            args = self._flatten(args)
            _in_range(self.program, args, (num,))
            program, val, edges = self._run(args, (num,))
            m, n = program.sizes[num], len(program.outputs)
            rows = np.zeros((n, m))
            lo = program.offsets[num]
            if mode == "forward" or mode == "auto" and n > m:
                for j in range(m):
                    seed = np.zeros(program.first)
                    seed[lo + j] = 1.0
                    rows[:, j] = _tangents(program, edges, seed)[program.outputs]
            else:
                for k, out in enumerate(program.outputs):
                    if out < program.n:
                        adjoint = np.zeros(len(program.val))
                        adjoint[out] = 1.0
                        compiled()[0].sweep(*edges, adjoint, out, program.first)
                        rows[k] = adjoint[lo : lo + m]
            kind, what = program.structure
            if num in self.structures:
                return leaf_structure(what if kind == "array" else (n,)).blocks(self.structures[num], rows)
            return rows.reshape((what if kind == "array" else (n,)) + program.shapes[num])

        return run

    def hessian(self, argnums: int = 0) -> Callable:
        """The function returning the Hessian of a scalar output in args[argnums]: the Jacobian
        (reverse) of the gradient's own program, traced from this one's (kept with it). The
        gradient's trace retraces where a comparison in the table's partials (abs's sign, relu's
        branch) comes out the other way: those are the rules' branches, not fn's, whose guards
        this trace keeps."""
        (num,), _ = check_argnums(argnums, single=True)

        def run(*args):
            args = self._flatten(args)
            _in_range(self.program, args, (num,))
            program = self._run(args, ())[0]
            if num not in program.hessians:
                gradient = Traced(_gradient_function(program, num), tuple(args), retrace=True)
                program.hessians[num] = gradient.jacobian(num, "reverse")
            hessian = program.hessians[num](*args)
            if num in self.structures:
                return self.structures[num].blocks(self.structures[num], hessian.reshape(self.structures[num].size, -1))
            return hessian

        return run


def _batch(program: Program, args: tuple, nums: tuple, batched: tuple, reduction: str, has_aux: bool, single: bool):
    parts = program.inputs(args, batched)
    counts = sorted({len(parts[i]) for i in batched})
    if len(counts) != 1:
        raise ValueError(f"{program.name}: the batched arguments {batched} have different batch sizes {counts}")
    (count,) = counts
    if count == 0:
        raise ValueError(f"{program.name}: an empty batch (batched arguments have a leading axis of 0 samples)")
    out = _scalar_output(program, has_aux)
    aux = program.outputs[1:] if has_aux else np.zeros(0, np.int64)
    plan = program.plan(nums, batched, out, aux)
    fixed = (plan[6], _flat([parts[i] for i in range(len(parts)) if i not in batched]))
    rows = np.ascontiguousarray(np.concatenate([parts[i] for i in batched], axis=1))
    weight = 1.0 / count if reduction == "mean" else 1.0
    workspace, grads = program.workspace(len(plan[0]), -(-count // CHUNK), len(plan[1]))
    total, aux_values, gradient, status = compiled()[0].batch_from_any_thread(
        program.code, program.kinds, program.start, program.refs, program.first, program.n, program.active(nums),
        program.dot_runs, program.guard_arrays, fixed, plan[:6], rows, weight, CHUNK, workspace, grads,
    )
    for sample in np.flatnonzero(status)[:1]:
        val = program.val.copy()
        val[fixed[0]], val[plan[0]] = fixed[1], rows[sample]
        status = compiled()[0].forward(program.code, program.kinds, program.start, program.refs, val, program.first,
                                       program.n, program.active(()), np.zeros(program.n + 1, np.int64),
                                       np.empty(len(program.refs) + 1, np.int64), np.empty(len(program.refs) + 1),
                                       program.dot_runs, np.zeros(program.first, dtype=np.bool_), np.zeros(0, np.int64))
        program.check(val, status, int(sample))
    grads, at = [], 0
    for i in nums:  # the kernel's gradient is a new array: views of it are the results
        part = gradient[at : at + program.sizes[i]]
        grads.append(float(part[0]) if program.shapes[i] == () else part.reshape(program.shapes[i]))
        at += program.sizes[i]
    value = total * weight
    if has_aux:
        value = (value, unflatten(program.structure[1][1], aux_values, count))
    return value, grads[0] if single else tuple(grads)


def _scalar_output(program: Program, has_aux: bool) -> int:
    kind, what = program.structure
    if has_aux and (kind != "tuple" or len(what) != 2):
        raise TypeError(f"{program.name}: with has_aux it must return (value, aux)")
    if size_of(what[0] if has_aux else program.structure) != 1:
        raise TypeError(f"{program.name} must return a scalar to be differentiated (it returns "
                        f"{size_of(what[0] if has_aux else program.structure)} numbers)")
    return int(program.outputs[0])


def _arg(program: Program, values: np.ndarray, i: int):
    """Argument i's part of a node-indexed array (adjoints, tangents), as a float or a new array."""
    return _shaped(values[program.offsets[i] : program.offsets[i + 1]], program.shapes[i])


def _shaped(values: np.ndarray, shape: tuple):
    return float(values[0]) if shape == () else values.reshape(shape).copy()


def _tangents(program: Program, edges: tuple, seed: np.ndarray) -> np.ndarray:
    tangent = np.zeros(len(program.val))
    tangent[: program.first] = seed
    compiled()[0].tangents(*edges, tangent, program.first, program.n)
    return tangent


def _flat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0)


def _in_range(program: Program, args: tuple, nums: tuple) -> None:
    for i in nums:
        if i >= len(args):
            raise TypeError(f"{program.name} was called with {len(args)} arguments, but argnums name argument {i}")


def _symbolic(x) -> bool:
    """Whether an argument holds Vars or Duals (then the program is interpreted on them)."""
    if isinstance(x, (VarBase, Dual)):
        return True
    return isinstance(x, (list, tuple, np.ndarray)) and np.asarray(x).dtype == object and any(
        isinstance(v, (VarBase, Dual)) for v in np.asarray(x, dtype=object).flat)


# -- the program on Vars and Duals, in Python ------------------------------------------------------


def _primal_values(x):
    """The numbers under an argument's Vars and Duals."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return np.vectorize(primal, otypes=[np.float64])(np.asarray(x, dtype=object))
    return primal(x)


def _node_values(program: Program, args: tuple) -> list:
    """Every node's value, computed by the rule table's operations on whatever the inputs are
    (numbers, Vars, Duals); each guard is compared again as its nodes come, so that a trace of
    this keeps it too."""
    if len(args) != len(program.shapes):
        raise TypeError(f"{program.name} was traced with {len(program.shapes)} arguments, called with {len(args)}")
    values: list = [float(v) for v in program.val]
    for i, a in enumerate(args):
        entries = list(np.asarray(a, dtype=object).flat)
        if len(entries) != program.sizes[i]:
            raise ValueError(f"{program.name}: argument {i} has {len(entries)} entries, the trace expects {program.sizes[i]}")
        values[program.offsets[i] : program.offsets[i + 1]] = entries
    lhs, _, rhs, _ = program.guard_arrays
    ready = [max(l, r if r < program.n else 0) for l, r in zip(lhs, rhs)]  # the last node each guard reads
    order, next_guard = sorted(range(len(program.guards)), key=ready.__getitem__), 0
    for i in range(program.first - 1, program.n):
        if i >= program.first:
            name, rule, _ = CODES[int(program.code[i])]
            operands = [values[r] for r in program.refs[program.start[i] : program.start[i + 1]]]
            if name == "dot":
                values[i] = APPLY[code_of(name)](operands[0::2], operands[1::2])
            elif rule in REDUCTIONS:
                values[i] = APPLY[code_of(name)](operands)
            elif name == "kink":  # its value is its constant, already in values
                values[i] = kink(values[i], *operands)
            elif name != "leaf":
                values[i] = APPLY[code_of(name)](*operands)
        while next_guard < len(order) and ready[order[next_guard]] <= i:
            g = order[next_guard]
            if COMPARISONS[program.guards[g].op](values[lhs[g]], values[rhs[g]]) != program.guards[g].outcome:
                raise GuardError(program.guard_message(g, np.array([primal(v) for v in values])))
            next_guard += 1
    return values


def _interpret(program: Program, args: tuple):
    values = _node_values(program, args)
    parts = [values[r] for r in program.outputs]
    if program.structure[0] == "array" and program.structure[1] == ():
        return parts[0]
    return _objects(program.structure, parts)


def _objects(structure, parts: list):
    kind, what = structure
    if kind == "tuple":
        out, at = [], 0
        for s in what:
            out.append(_objects(s, parts[at : at + size_of(s)]))
            at += size_of(s)
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
        for i in range(min(out, program.n - 1), program.first - 1, -1):  # a constant output: none
            if isinstance(adjoint[i], float) and adjoint[i] == 0.0:
                continue
            code = int(program.code[i])
            name, rule, _ = CODES[code]
            refs = program.refs[program.start[i] : program.start[i + 1]]
            if name == "leaf":
                continue
            if rule in REDUCTIONS:  # the partials of each term: one operand, or a pair for dot
                groups = [refs[p :: 2] for p in (0, 1)] if name == "dot" else [refs]
                partials = reduction_partials(code, [[values[r] for r in g] for g in groups], values[i])
                for group, ds in zip(zip(*groups), partials):
                    _accumulate(adjoint, group, ds, adjoint[i], program.n)
            elif name == "kink":  # no derivative, and none of it: a kink of its operands too
                partial = kink(KINK_PARTIAL, *(values[r] for r in refs))
                _accumulate(adjoint, refs, (partial,) * len(refs), adjoint[i], program.n)
            else:  # a unary or binary rule gives the partials of its operands that are nodes
                operands = [values[r] for r in refs] + [None] * (2 - len(refs))
                nodes = [r for r in refs if r < program.n]
                _accumulate(adjoint, nodes, _ops.PARTIALS[code](*operands, values[i]), adjoint[i], program.n)
        entries = adjoint[program.offsets[num] : program.offsets[num + 1]]
        return entries[0] if program.shapes[num] == () else _objects(("array", program.shapes[num]), entries)

    gradient.__name__ = f"grad({program.name})"
    return gradient


def _accumulate(adjoint: list, refs, partials: tuple, a, n: int) -> None:
    """adjoint[r] += partial * a for the operands that are nodes (refs below n)."""
    for r, d in zip(refs, partials):
        if r < n:
            adjoint[r] = adjoint[r] + d * a
