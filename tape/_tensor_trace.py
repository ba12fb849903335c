"""Matrix programs traced once: `tape.trace` of a function of Tensors (issue 29).

`fn` is recorded once at its example arguments on a tape of its own. From the recorded nodes
(matrix nodes of tape/_tensor.py, scalar nodes of the rule table between them) a plan is made
with every shape, dtype and constant resolved, and from the plan one straight-line Python
function's source per use (the value; the value and the gradient in given arguments), which
calls numpy directly: no node objects, no dispatch, no checks of operands a trace has already
made. The element-wise partials come from the rule table's generated code (tape/_vectorized.py),
the structural VJPs from `STRUCTURAL`'s rows, the scalar nodes' partials from tape/_ops.py:
nothing is differentiated twice.

How an argument is taken (decided at the example arguments, flat over tuples, lists and dicts):
a Tensor or a float array is a matrix node (its shape and dtype fixed by the trace); a number
is a scalar node (a Var); an integer array is an index (labels, `t[idx]`), read anew at each
call where the trace sees it used as one, else a constant the call must repeat (a guard).

Guards, as the scalar trace keeps them: every comparison of Vars or Tensors made while tracing
is checked at each call as its operands come, and an argument of another shape or dtype is
refused; `GuardError` names it, or (retrace=True) fn is traced again there.
"""
from __future__ import annotations

import functools
import itertools
import math
import threading
from typing import Callable

import numpy as np

from . import _ops
from ._forward import APPLY, reduction_partials
from ._program import GuardError, compiled
from ._rules import CODE_BITS, CODES, CONSTANT_BITS, REDUCTIONS, code_of
from ._tape import LEAF_HEADER, Tape, TraceError
from ._tensor import ELEMENTWISE, STRUCTURAL, Tensor, _refuse, _scaled
from ._ops import Var
from ._var import exact, kink, leaf_on

MAX_TRACES = 8


# -- arguments as leaves ---------------------------------------------------------------------------


def flatten(x, path: str = "") -> tuple[list, list, Callable]:
    """(leaves, their paths, rebuild(leaves) -> x's structure) of tuples, lists and dicts."""
    if isinstance(x, (tuple, list)) and not hasattr(x, "_fields"):
        parts = [flatten(v, f"{path}[{i}]") for i, v in enumerate(x)]
        kind = type(x)
    elif isinstance(x, dict):
        keys = list(x)
        parts = [flatten(x[k], f"{path}[{k!r}]") for k in keys]
        kind = None
    else:
        return [x], [path], lambda leaves: leaves[0]
    leaves = [leaf for p in parts for leaf in p[0]]
    paths = [q for p in parts for q in p[1]]
    sizes = [len(p[0]) for p in parts]
    rebuilders = [p[2] for p in parts]

    def rebuild(flat):
        out, at = [], 0
        for size, r in zip(sizes, rebuilders):
            out.append(r(flat[at : at + size]))
            at += size
        return dict(zip(keys, out)) if kind is None else kind(out)

    return leaves, paths, rebuild


def leaves_of(x, out: list):
    """Append x's leaves to out (as `flatten` orders them) and return its structure's signature."""
    cls = x.__class__
    if cls is tuple or cls is list or isinstance(x, (tuple, list)) and not hasattr(x, "_fields"):
        return cls, tuple([leaves_of(v, out) for v in x])
    if isinstance(x, dict):
        return dict, tuple(x), tuple([leaves_of(v, out) for v in x.values()])
    out.append(x)
    return None


def has_tensor(args: tuple) -> bool:
    """Whether some argument (or a leaf of one) is a Tensor: then tape.trace traces matrix nodes."""
    return any(isinstance(leaf, Tensor) for a in args for leaf in flatten(a)[0])


class Leaf:
    """What the trace takes an argument's leaf for: kind "tensor" (a matrix node), "number" (a
    Var) or "index" (an integer array), with its shape and dtype."""

    __slots__ = ("kind", "shape", "dtype", "path", "example", "read")

    def __init__(self, x, path: str, name: str) -> None:
        self.path, self.read = path, False
        if isinstance(x, Tensor):
            x = x.value
        if isinstance(x, (bool, np.bool_)):
            raise TypeError(f"{name}: argument{path} is a bool; a trace takes Tensors, arrays and numbers")
        if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, np.ndarray):
            self.kind, self.shape, self.dtype, self.example = "number", (), np.dtype(np.float64), float(x)
            return
        array = np.asarray(x)
        if array.dtype.kind == "f":
            if array.dtype not in (np.float32, np.float64):
                raise TypeError(f"{name}: argument{path} has dtype {array.dtype}; a Tensor holds float32 or float64")
            self.kind = "tensor"
        elif array.dtype.kind in "iub":
            self.kind = "index"
        else:
            raise TypeError(f"{name}: argument{path} of dtype {array.dtype}: expected Tensors, arrays or numbers")
        self.shape, self.dtype, self.example = array.shape, array.dtype, np.array(array)
        if self.kind == "index":
            self.example.flags.writeable = False

    def describe(self) -> str:
        return f"a number" if self.kind == "number" else f"shape {self.shape} {self.dtype}"


# -- the plan ----------------------------------------------------------------------------------------


class Src(str):
    """A piece of source (a node's or an input's name), as opposed to a constant string."""


class Step:
    """One node of the plan: `kind` ("input", "constant", "elementwise", "structural" or
    "scalar"), its op, shape and dtype (None for a scalar node), its operands as source
    expressions, and what its code needs."""

    __slots__ = ("i", "kind", "op", "shape", "dtype", "parents", "scalar", "operands", "extra", "leaf")

    def __init__(self, i: int, kind: str, op: str, shape: tuple, dtype, parents=(), scalar=(), operands=(), extra=None):
        self.i, self.kind, self.op, self.shape, self.dtype = i, kind, op, shape, dtype
        self.parents, self.scalar, self.operands, self.extra, self.leaf = tuple(parents), tuple(scalar), operands, extra, -1


class MatrixProgram:
    """One trace of fn at example arguments: its plan (a Step per node), outputs and guards, and
    the functions generated from them (made on first use, kept)."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.name = getattr(fn, "__name__", repr(fn))
        self.arg_leaves, self.rebuilders, self.leaves = [], [], []
        for i, a in enumerate(args):
            leaves, paths, rebuild = flatten(a, f" {i}")
            self.arg_leaves.append(list(range(len(self.leaves), len(self.leaves) + len(leaves))))
            self.rebuilders.append(rebuild)
            self.leaves.extend(Leaf(x, p, self.name) for x, p in zip(leaves, paths))
        self.signatures = [leaves_of(a, []) for a in args]
        self._functions: dict = {}
        self.prepared: dict = {}  # value_and_grad's (argnums, has_aux, fresh) -> what its calls use
        self._lock = threading.Lock()
        self._record(fn)

    # -- recording --------------------------------------------------------------------------------

    def _record(self, fn: Callable) -> None:
        t = Tape()
        t.program, t.guards, t.masks, t.matrix_trace = [], [], [], True
        made = []
        with t:
            for leaf in self.leaves:
                if leaf.kind == "tensor":
                    x = Tensor(leaf.example)
                elif leaf.kind == "number":
                    x = leaf_on(Var, t, leaf.example)
                else:
                    x = leaf.example
                made.append(x)
            args = [r([made[k] for k in ks]) for r, ks in zip(self.rebuilders, self.arg_leaves)]
            try:
                out = fn(*args)
            finally:
                t.flush()
                records, guards, masks = t.program, t.guards, t.masks
                t.program = t.guards = None
                t.matrix_trace = False
        self.n = len(t)
        self.input_node = {}
        for k, (leaf, x) in enumerate(zip(self.leaves, made)):
            if leaf.kind != "index":
                self.input_node[x._node] = k
        self._index_ids = {id(x): k for k, (leaf, x) in enumerate(zip(self.leaves, made)) if leaf.kind == "index"}
        self._masks = masks
        self.steps = self._steps(t, np.concatenate(records) if records else np.zeros(0))
        self.out_leaves, _, self.out_rebuild = flatten(out)
        self.out_signature = leaves_of(out, [])
        self.outputs = [self._output(x, t) for x in self.out_leaves]
        self.guards = [self._guard(g) for g in guards] + [self._mask(m, t) for m in masks]
        for k, leaf in enumerate(self.leaves):
            if leaf.kind == "index" and not leaf.read:  # its numbers went in as constants: they must come again
                self.guards.append(("equal", k, None, None, None, None, -1))

    def _steps(self, t: Tape, stream: np.ndarray) -> list[Step]:
        """A Step per node of the tape, the scalar nodes decoded by the scalar trace's builder."""
        matrix = t._matrix
        if any(i not in matrix and i not in self.input_node for i in range(self.n)):  # (numba: only for scalar nodes)
            pieces, i, node = [], 0, 0
            while node < self.n:  # each matrix node's record (a bare header) as a leaf's, for the builder
                h = int(stream[i])
                length = 1 + 2 * (h >> (CODE_BITS + CONSTANT_BITS)) + ((h >> CODE_BITS) & ((1 << CONSTANT_BITS) - 1))
                pieces.append([LEAF_HEADER, 0.0] if node in matrix else stream[i : i + length])
                i += length
                node += 1
            replay, kinds, constant_partial = compiled()
            flat = np.concatenate([np.asarray(p, np.float64) for p in pieces])
            code, start, refs, val = replay.build(flat, self.n, kinds, constant_partial)
            if start[0] < 0:
                raise TraceError(f"tracing {self.name}: node {-1 - int(start[0])} is a custom operation (tape.record), "
                                 "which a trace cannot replay")
        steps = []
        for i in range(self.n):
            m = matrix.get(i)
            if i in self.input_node:
                leaf = self.leaves[self.input_node[i]]
                step = Step(i, "input", "input", leaf.shape, leaf.dtype if leaf.kind == "tensor" else None)
                step.leaf = self.input_node[i]
            elif m is None and int(code[i]) == 0:
                step = Step(i, "constant", "leaf", (), None, extra=float(val[i]))
            elif m is None:
                r = refs[start[i] : start[i + 1]]
                operands = [Src(f"v{x}" if x < self.n else repr(float(val[x]))) for x in r]
                step = Step(i, "scalar", CODES[int(code[i])][0], (), None,
                            parents=[int(x) for x in r if x < self.n], operands=operands,
                            extra=(int(code[i]), [int(x) for x in r], float(val[i])))
            elif m.op == "leaf":
                raise TraceError(f"tracing {self.name}: a Tensor made inside the function (node {i}, shape {m.shape}) "
                                 "is a leaf a replay cannot know; pass it as an argument, or make it a constant "
                                 "(requires_grad=False)")
            elif m.__class__.__name__ == "ElementwiseNode":
                step = self._elementwise(i, m, steps)
            else:
                step = self._structural(i, m, steps)
            steps.append(step)
        return steps

    def _operand(self, value, parent: int | None, steps: list) -> str:
        """A matrix node's operand as source: a node (cast as recording cast it) or a constant."""
        if parent is not None:
            if isinstance(value, np.floating) and not isinstance(value, np.ndarray):
                return Src(f"{type(value).__name__}(v{parent})")
            return Src(f"v{parent}")
        if isinstance(value, np.ndarray) and id(value) in self._index_ids:
            k = self._index_ids[id(value)]
            self.leaves[k].read = True
            return Src(f"x{k}")
        return value  # a constant object, named by the generator

    def _elementwise(self, i: int, m, steps: list) -> Step:
        which = list(m.which)
        parents = dict(zip(which, m.parents))
        operands = [self._operand(v, parents.get(p), steps) for p, v in enumerate(m.operands)]
        rule, checked, divides = ELEMENTWISE[m.op]
        with np.errstate(all="ignore"):
            _, raw = rule(*m.operands)
        casts = [m.dtype if not isinstance(raw[p], float) and np.result_type(raw[p]) != m.dtype else None for p in which]
        return Step(i, "elementwise", m.op, m.shape, m.dtype, m.parents, m.scalar, operands,
                    extra=(which, casts, [np.shape(m.operands[p]) for p in which], checked, divides))

    def _structural(self, i: int, m, steps: list) -> Step:
        which = list(m.which)
        parents = dict(zip(which, m.parents))
        operands = [self._operand(v, parents.get(p), steps) for p, v in enumerate(m.values)]
        params = {}
        for key, value in m.params.items():
            if isinstance(value, np.ndarray) and id(value) in self._index_ids:
                params[key] = self._operand(value, None, steps)
            elif isinstance(value, tuple) and any(isinstance(v, np.ndarray) and id(v) in self._index_ids for v in value):
                params[key] = tuple(self._operand(v, None, steps) if isinstance(v, np.ndarray) else v for v in value)
            else:
                params[key] = value
        if m.op == "where" and not any(mask[3] is m.params["mask"] for mask in self._masks):
            raise TraceError(f"tracing {self.name}: a where node (node {i}) of a mask the trace cannot follow")
        return Step(i, "structural", m.op, m.shape, m.dtype, m.parents, m.scalar, operands, extra=(which, params))

    def _output(self, x, t: Tape):
        """An output as ("node", i) or ("constant", value)."""
        if isinstance(x, (Var, Tensor)) and x._node >= 0 and x._seg.tape is t:
            return ("node", x._node)
        if isinstance(x, Tensor):
            return ("constant", np.array(x.value))
        if isinstance(x, Var):
            return ("constant", float(x._value))
        return ("constant", np.array(x) if isinstance(x, np.ndarray) else x)

    def _ref(self, x, t: Tape):
        """A comparison's operand: ("node", i) on the traced tape, else ("constant", its value)."""
        if isinstance(x, (Var, Tensor)) and x._node >= 0 and x._seg.tape is t:
            return ("node", x._node)
        if isinstance(x, (Var, Tensor)):
            return ("constant", x._value if isinstance(x, Var) else x.value)
        return ("constant", x)

    def _guard(self, g) -> tuple:
        rhs = ("node", g.rhs) if isinstance(g.rhs, int) else ("constant", g.rhs)
        at = max(g.lhs, g.rhs if isinstance(g.rhs, int) else 0)
        return ("compare", ("node", g.lhs), g.op, rhs, g.outcome, g.where, at)

    def _mask(self, m, t: Tape) -> tuple:
        op, x, other, outcome, where = m
        lhs, rhs = self._ref(x, t), self._ref(other, t)
        at = max([r[1] for r in (lhs, rhs) if r[0] == "node"] + [0])
        return ("mask", lhs, op, rhs, np.array(outcome), where, at)

    # -- checking arguments -------------------------------------------------------------------------

    def inputs(self, args: tuple) -> list:
        """The leaves of args, each checked against the trace: GuardError naming a shape, a dtype,
        a kind that differs."""
        if len(args) != len(self.rebuilders):
            raise TypeError(f"{self.name} was traced with {len(self.rebuilders)} arguments, called with {len(args)}")
        flat: list = []
        for i, (a, signature) in enumerate(zip(args, self.signatures)):
            if leaves_of(a, flat) != signature:
                raise GuardError(f"{self.name}: argument {i} is not of the traced structure ({_structure(signature)}); "
                                 "trace again for it, or use tape.trace(..., retrace=True)")
        out = []
        for x, leaf in zip(flat, self.leaves):
            if leaf.kind == "number":
                if isinstance(x, Tensor) or isinstance(x, np.ndarray) and x.ndim:
                    raise GuardError(f"{self.name}: argument{leaf.path} was traced as a number, got {_what(x)}")
                out.append(float(x))
                continue
            if x.__class__ is Tensor:
                x = x.value
            elif x.__class__ is not np.ndarray:
                x = np.asarray(x)
            if x.shape != leaf.shape or x.dtype != leaf.dtype:
                raise GuardError(f"{self.name}: argument{leaf.path} was traced with {leaf.describe()}, got "
                                 f"shape {x.shape} {x.dtype}; trace again for it, or use tape.trace(..., retrace=True)")
            out.append(x)
        return out

    # -- generating ---------------------------------------------------------------------------------

    def function(self, argnums: tuple | None, seeded: tuple = (), fresh: bool = True) -> Callable:
        """The generated function of the leaves: the outputs' values (argnums None), or with the
        gradient in the leaves `argnums`, the outputs `seeded` seeded with given cotangents;
        `fresh`: each gradient an array of its own (else it may share memory, to be copied out)."""
        key = (argnums, seeded, fresh)
        f = self._functions.get(key)
        if f is None:
            with self._lock:
                f = self._functions.get(key)
                if f is None:
                    f = self._functions[key] = Generator(self, argnums, seeded, fresh).compile()
        return f

    def source(self, argnums: tuple | None = None, seeded: tuple = ()) -> str:
        return Generator(self, argnums, seeded).source()


def _structure(signature) -> str:
    """A signature in words: `(leaf, [leaf, leaf])`, `{'w': leaf}`."""
    if signature is None:
        return "leaf"
    if signature[0] is dict:
        return "{" + ", ".join(f"{k!r}: {_structure(v)}" for k, v in zip(signature[1], signature[2])) + "}"
    inner = ", ".join(map(_structure, signature[1]))
    return f"[{inner}]" if signature[0] is list else f"({inner})"


def _what(x) -> str:
    if isinstance(x, Tensor):
        return f"a Tensor of shape {x.shape}"
    return f"an array of shape {np.shape(x)}" if isinstance(x, np.ndarray) else type(x).__name__


# -- code generation ---------------------------------------------------------------------------------


def _fail_compare(name, where, lhs, op, rhs, outcome, a, b):
    raise GuardError(f"{name}: the comparison {lhs} {op} {rhs}, made at {where}, was {outcome} when traced and is "
                     f"{not outcome} here ({a!r} {op} {b!r}); the trace does not hold at these inputs: trace again "
                     "there, or use tape.trace(..., retrace=True)")


def _check_mask(name, lhs, op, rhs, traced, a, b):
    """Refuse a Tensor comparison whose mask differs from the traced one, naming the first entry."""
    now = exact(a) < exact(b) if op == "<" else exact(a) <= exact(b) if op == "<=" else \
        exact(a) > exact(b) if op == ">" else exact(a) >= exact(b)
    if now.shape == traced.shape and np.array_equal(now, traced):
        return
    if now.shape != traced.shape:
        raise GuardError(f"{name}: the comparison {lhs} {op} {rhs} has shape {now.shape} here, {traced.shape} when traced")
    entry = tuple(int(j) for j in np.argwhere(now != traced)[0])
    raise GuardError(f"{name}: the comparison {lhs} {op} {rhs} came out {bool(traced[entry])} at entry {entry} when "
                     f"traced and {bool(now[entry])} here; the trace does not hold at these inputs: trace again there, "
                     "or use tape.trace(..., retrace=True)")


def _check_equal(name, path, traced, x):
    if not np.array_equal(x, traced):
        raise GuardError(f"{name}: argument{path}, an integer array the function read as numbers (not as labels or "
                         "an index), differs from the traced one; trace again for it, or use tape.trace(..., "
                         "retrace=True)")


def _checked(name, y, operands, divides):
    """The recording's refusal of a checked rule's non-finite result, naming the entry."""
    if not np.isfinite(y).all():
        _refuse(name, np.asarray(y), list(operands), divides)


def _own(g: np.ndarray, dtype, taken: list) -> np.ndarray:
    """g as a gradient to return: itself where its memory is its own (or a view of an array no
    other gradient nor seed uses), else a copy; `taken` gathers the memory given out so far. A VJP
    may pass one array to several operands (an add's), never an operand's value."""
    owner = g if g.base is None else g.base
    if g.dtype != dtype or not g.flags.writeable or owner.base is not None or any(owner is t for t in taken):
        g = owner = np.array(g, dtype)
    taken.append(owner)
    return g


def _summed_back(expr: str, shape: tuple, operand: tuple) -> str:
    """The source of `unbroadcast(expr, operand)` for an adjoint of `shape`, its axes resolved
    at trace time: summed over the leading axes numpy added, then over those it repeated."""
    lead = tuple(range(len(shape) - len(operand)))
    if lead:
        expr = f"{expr}.sum(axis={lead!r})"
    repeated = tuple(i for i, n in enumerate(operand) if n == 1 and shape[len(lead) + i] != 1)
    return f"{expr}.sum(axis={repeated!r}, keepdims=True)" if repeated else expr


def _cast(g, dtype):
    return g if g.dtype == dtype else g.astype(dtype)


def _scalar_partials(code: int, operands: list, y):
    return _ops.PARTIALS[code](*operands, *[None] * (2 - len(operands)), y)


class Generator:
    """The source of one function of a plan: a line or a few per node, forward then backward."""

    def __init__(self, program: MatrixProgram, argnums: tuple | None, seeded: tuple, fresh: bool = True) -> None:
        self.p, self.argnums, self.seeded, self.fresh = program, argnums, seeded, fresh
        self.ns = {"np": np, "float32": np.float32, "float64": np.float64, "GuardError": GuardError,
                   "_scaled": _scaled, "_cast": _cast, "_checked": _checked,
                   "_fail_compare": _fail_compare, "_check_mask": _check_mask, "_check_equal": _check_equal,
                   "_kink": kink, "_reduction_partials": reduction_partials,
                   "_scalar_partials": _scalar_partials, "_own": _own}
        self._names = itertools.count()
        self.lines: list[str] = []

    def const(self, obj) -> str:
        if isinstance(obj, Src):
            return obj
        if isinstance(obj, str):
            return repr(obj)
        if obj.__class__ is float or obj.__class__ is int:
            return repr(obj) if np.isfinite(obj) else self.name(obj)
        return self.name(obj)

    def name(self, obj) -> str:
        n = f"c{next(self._names)}"
        self.ns[n] = obj
        return n

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    # -- which nodes ------------------------------------------------------------------------------

    def active(self) -> set:
        """Nodes between the differentiated leaves and the seeded outputs."""
        p = self.p
        if self.argnums is None:
            return set()
        depends = {s.i for s in p.steps if s.kind == "input" and s.leaf in self.argnums}
        for s in p.steps:
            if any(q in depends for q in s.parents):
                depends.add(s.i)
        reaches = {p.outputs[o][1] for o in self.seeded if p.outputs[o][0] == "node"}
        for s in reversed(p.steps):
            if s.i in reaches:
                reaches.update(s.parents)
        return depends & reaches

    def source(self) -> str:
        p, active = self.p, self.active()
        self.active_nodes = active
        leaves = [f"x{k}" for k in range(len(p.leaves))]
        seeds = [f"s{o}" for o in self.seeded] if self.argnums is not None else []
        self.lines = [f"def traced({', '.join(leaves + seeds)}):"]
        guards = sorted(range(len(p.guards)), key=lambda g: p.guards[g][-1])
        at = 0
        for s in p.steps:
            self.forward(s, s.i in active)
            while at < len(guards) and p.guards[guards[at]][-1] <= s.i:
                self.guard(p.guards[guards[at]])
                at += 1
        while at < len(guards):
            self.guard(p.guards[guards[at]])
            at += 1
        outs = [f"v{ref}" if kind == "node" else self.const(ref) for kind, ref in p.outputs]
        if self.argnums is None:
            self.emit(f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
            return "\n".join(self.lines) + "\n"
        self.backward(active)
        grads = []
        if self.fresh:
            self.emit(f"taken = [{''.join(f's{o}, ' for o in self.seeded)}]")
        for k in self.argnums:
            leaf, node = p.leaves[k], next((s.i for s in p.steps if s.kind == "input" and s.leaf == k), None)
            if leaf.kind == "index":
                raise TypeError(f"{p.name}: argument{leaf.path} is an integer array: it has no gradient")
            if leaf.kind == "number":
                grads.append(f"a{node}" if node in self.assigned else "0.0")
            elif leaf.shape == ():
                grads.append(f"np.asarray({f'a{node}' if node in self.assigned else '0.0'}, {self.const(leaf.dtype)})")
            else:
                fresh = f"_own(g{node}, {self.const(leaf.dtype)}, taken)" if self.fresh else f"g{node}"
                grads.append(fresh if node in self.assigned
                             else f"np.zeros({leaf.shape!r}, {self.const(leaf.dtype)})")
        self.emit(f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''}), ({', '.join(grads)}{',' if len(grads) == 1 else ''})")
        return "\n".join(self.lines) + "\n"

    def guard(self, g: tuple) -> None:
        kind, lhs, op, rhs, outcome, where, _ = g
        if kind == "equal":
            k = lhs
            self.emit(f"_check_equal({self.const(self.p.name)}, {self.const(self.p.leaves[k].path)}, "
                      f"{self.const(self.p.leaves[k].example)}, x{k})")
            return
        a = f"v{lhs[1]}" if lhs[0] == "node" else self.const(lhs[1])
        b = f"v{rhs[1]}" if rhs[0] == "node" else self.const(rhs[1])
        la, lb = self._describe(lhs), self._describe(rhs)
        if kind == "compare":
            self.emit(f"if ({a} {op} {b}) is not {outcome}:")
            self.emit(f"_fail_compare({self.const(self.p.name)}, {self.const(where)}, {self.const(la)}, "
                      f"{self.const(op)}, {self.const(lb)}, {outcome}, {a}, {b})", 2)
        else:
            self.emit(f"_check_mask({self.const(self.p.name)}, {self.const(la)}, {self.const(op)}, {self.const(lb)}, "
                      f"{self.name(outcome)}, {a}, {b})")

    def _describe(self, ref) -> str:
        return f"v{ref[1]}" if ref[0] == "node" else repr(ref[1]) if not isinstance(ref[1], np.ndarray) else \
            f"a constant of shape {ref[1].shape}"

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, s: Step, active: bool) -> None:
        i = s.i
        if s.kind == "input":
            self.emit(f"v{i} = x{s.leaf}")
        elif s.kind == "constant":
            self.emit(f"v{i} = {self.const(s.extra)}")
        elif s.kind == "scalar":
            self.scalar_forward(s)
        elif s.kind == "elementwise":
            which, casts, shapes, checked, divides = s.extra
            ops = [self.const(o) for o in s.operands]
            rule = self.name(ELEMENTWISE[s.op][0])
            self.emit(f"y{i}, P{i} = {rule}({', '.join(ops)})")
            if checked:
                self.emit(f"_checked({self.const(s.op)}, y{i}, ({', '.join(ops)},), {divides})")
            self.emit(f"v{i} = float(y{i})" if s.shape == () else f"v{i} = y{i}")
            if active:
                for k, (p, cast) in enumerate(zip(which, casts)):
                    d = f"P{i}[{p}]"
                    self.emit(f"p{i}_{k} = {d}.astype({self.const(cast)})" if cast is not None else f"p{i}_{k} = {d}")
        else:
            which, params = s.extra
            ops = [self.const(o) for o in s.operands]
            kwargs = [f"{key}={self._param(v)}" for key, v in params.items()]
            rule = STRUCTURAL[s.op]
            if active and rule.saving is not None:  # the value and what the VJP will take from it
                self.emit(f"y{i}, R{i} = {self.name(rule.saving)}({', '.join(ops + kwargs)})")
            else:
                self.emit(f"y{i} = {self.name(rule.value)}({', '.join(ops + kwargs)})")
            if s.shape == ():
                self.emit(f"y{i} = np.asarray(y{i})")
                self.emit(f"v{i} = float(y{i})")
            else:
                self.emit(f"v{i} = y{i}")

    def _param(self, v) -> str:
        if isinstance(v, Src):
            return v
        if isinstance(v, tuple) and any(isinstance(x, Src) for x in v):
            return "(" + "".join(f"{self._param(x)}, " for x in v) + ")"
        return self.const(v)

    def scalar_forward(self, s: Step) -> None:
        code, refs, value = s.extra
        name, rule, _ = CODES[code]
        ops = s.operands
        fn = self.name(APPLY[code_of(name)]) if name not in ("leaf", "kink") else None
        if name == "dot":
            self.emit(f"v{s.i} = {fn}([{', '.join(ops[0::2])}], [{', '.join(ops[1::2])}])")
        elif rule in REDUCTIONS:
            self.emit(f"v{s.i} = {fn}([{', '.join(ops)}])")
        elif name == "kink":
            self.emit(f"v{s.i} = float(_kink({value!r}, {', '.join(ops)}))")
        else:
            self.emit(f"v{s.i} = float({fn}({', '.join(ops)}))")

    # -- backward ---------------------------------------------------------------------------------

    def backward(self, active: set) -> None:
        p = self.p
        self.assigned: set = set()
        for o in self.seeded:
            kind, ref = p.outputs[o]
            if kind == "node" and ref in active:
                number = p.steps[ref].shape == ()
                self.add(ref, f"float(s{o})" if number else f"s{o}", number)
        for s in reversed(p.steps):
            if s.i not in active or s.i not in self.assigned or s.kind in ("input", "constant"):
                continue
            if s.kind == "scalar":
                self.scalar_backward(s, active)
            else:
                self.matrix_backward(s, active)

    def add(self, node: int, expr: str, number: bool) -> None:
        """The adjoint of node += expr, the engine's order (first: assigned)."""
        var = f"a{node}" if number else f"g{node}"
        if node in self.assigned:
            self.emit(f"{var} = {var} + {expr}", self.depth)
        else:
            self.emit(f"{var} = {expr}", self.depth)
            self.assigned.add(node)

    depth = 1  # the indentation of the adjoints' lines: 2 within a 0-d node's `if` on its adjoint

    def scalar_backward(self, s: Step, active: set) -> None:
        code, refs, _ = s.extra
        name, rule, _ = CODES[code]
        n = self.p.n
        ops = s.operands
        i = s.i
        targets = []
        if name == "leaf":
            return
        if rule in REDUCTIONS:
            groups = [refs[q::2] for q in (0, 1)] if name == "dot" else [refs]
            values = [[f"v{r}" if r < n else ops[refs.index(r)] for r in g] for g in groups]
            self.emit(f"D{i} = _reduction_partials({code}, [{', '.join('[' + ', '.join(v) + ']' for v in values)}], v{i})")
            for t, group in enumerate(zip(*groups)):
                for q, r in enumerate(group):
                    if r < n and r in active:
                        targets.append((r, f"D{i}[{t}][{q}]"))
        elif name == "kink":
            raise TraceError(f"tracing {self.p.name}: a kink node (node {i}) is not differentiated by a trace")
        else:
            nodes = [r for r in refs if r < n]
            self.emit(f"D{i} = _scalar_partials({code}, [{', '.join(ops)}], v{i})")
            targets = [(r, f"D{i}[{q}]") for q, r in enumerate(nodes) if r in active]
        for r, _ in targets:  # first contributions made before the branch on a zero adjoint
            if r not in self.assigned:
                self.emit(f"a{r} = 0.0")
                self.assigned.add(r)
        self.emit(f"if a{i} != 0.0:")
        for r, d in targets:
            self.emit(f"a{r} = a{r} + {d} * a{i}", 2)

    def matrix_backward(self, s: Step, active: set) -> None:
        i, p = s.i, self.p
        if s.shape == ():
            g = f"G{i}"
            self.emit(f"G{i} = {self.const(s.dtype)}.type(a{i})")
        else:
            g = f"g{i}"
        contributions = []
        if s.kind == "elementwise":
            which, casts, shapes, _, _ = s.extra
            for k, parent in enumerate(s.parents):
                if parent in active:
                    expr = _summed_back(f"_scaled({g}, p{i}_{k})", s.shape, shapes[k])
                    contributions.append((k, parent, expr, p.steps[parent].dtype != s.dtype))
        else:
            which, params = s.extra
            rule = STRUCTURAL[s.op]
            ops = [self.const(o) for o in s.operands]
            kwargs = [f"{key}={self._param(v)}" for key, v in params.items()]
            dtypes = {s.dtype} | {o.dtype for o in s.operands if isinstance(o, np.ndarray)} | \
                {p.steps[q].dtype for q in s.parents if p.steps[q].dtype is not None}
            for k, parent in enumerate(s.parents):
                if parent in active:
                    if rule.saving is not None:
                        call = f"{self.name(rule.saved_vjps[which[k]])}({g}, R{i}, {', '.join(kwargs)})"
                    else:
                        vjp = self.name(rule.vjps[0] if rule.nary else rule.vjps[which[k]])
                        extra = [f"i={which[k]}"] if rule.nary else []
                        call = f"{vjp}({g}, y{i}, {', '.join(ops + kwargs + extra)})"
                    contributions.append((k, parent, call, dtypes != {p.steps[parent].dtype}))
        zeros = []
        if s.shape == ():  # a zero adjoint passes nothing (the engine's `or None`)
            for _, parent, _, _ in contributions:
                if p.steps[parent].shape == () and parent not in self.assigned:
                    self.emit(f"a{parent} = 0.0")
                    self.assigned.add(parent)
                elif parent not in self.assigned and parent not in zeros:
                    zeros.append(parent)
            self.emit(f"if G{i}:")
            self.depth = 2
        for k, parent, expr, cast in contributions:
            if s.scalar[k]:
                self.add(parent, f"float({expr})", True)
            elif cast:
                self.emit(f"t = _cast({expr}, {self.const(p.steps[parent].dtype)})", self.depth)
                self.add(parent, "t", False)
            else:
                self.add(parent, expr, False)
        if zeros:
            self.emit("else:")
            for parent in zeros:
                ps = p.steps[parent]
                self.emit(f"g{parent} = np.zeros({ps.shape!r}, {self.const(ps.dtype)})", 2)
        self.depth = 1

    def compile(self) -> Callable:
        src = self.source()
        code = compile(src, f"<traced {self.p.name}>", "exec")
        exec(code, self.ns)
        f = self.ns["traced"]
        f.source = src
        return f


# -- the traced function -------------------------------------------------------------------------------

VIEWS = {"input", "reshape", "transpose", "getitem", "stop_gradient"}  # results that may share an argument's memory


class TracedTensors:
    """A traced function of Tensors: call it for its value; `grad`, `value_and_grad` and `vjp` as
    in `tape` (JAX's names), each running code generated once per trace. Results are new arrays
    (the `out=` of a gradient aside). Safe to call from several threads: the code keeps nothing
    between calls."""

    def __init__(self, fn: Callable, args: tuple, retrace: bool = False) -> None:
        self.fn, self.retrace = fn, retrace
        self.programs = [MatrixProgram(fn, args)]
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    @property
    def program(self) -> MatrixProgram:
        """The newest trace."""
        return self.programs[0]

    def _choose(self, args: tuple, run: Callable):
        """run(program, its checked leaves) on the newest trace whose guards hold (a new trace
        there, with retrace=True)."""
        failure = None
        for program in list(self.programs):
            try:
                return run(program, program.inputs(args))
            except GuardError as e:
                failure = e
        if not self.retrace:
            raise failure
        program = MatrixProgram(self.fn, args)
        with self._lock:
            self.programs = [program, *self.programs][:MAX_TRACES]
        return run(program, program.inputs(args))

    def __call__(self, *args):
        def run(program, leaves):
            return _results(program, program.function(None)(*leaves))

        return self._choose(args, run)

    def value_and_grad(self, argnums=0, *, has_aux: bool = False) -> Callable:
        """The function returning (value, d value / d args[argnums]) (with has_aux, fn returns
        (value, aux) and the call ((value, aux), grad)). `out=`, a tuple of arrays (one per
        differentiated argument leaf), receives the gradients instead of new arrays."""
        single = isinstance(argnums, int)
        nums = (argnums,) if single else tuple(argnums)

        def prepare(program: MatrixProgram, fresh: bool) -> tuple:
            """(its generated function, the leaves differentiated, the seed), kept by the trace."""
            wanted = tuple(k for i in nums for k in program.arg_leaves[_arg(program, i)])
            kind, ref = program.outputs[0]
            if has_aux and (program.out_signature is None or program.out_signature[0] is dict
                            or len(program.out_signature[1]) != 2):
                raise TypeError(f"{program.name}: with has_aux it must return (value, aux), it returns "
                                f"{_structure(program.out_signature)}")
            if kind == "node" and math.prod(program.steps[ref].shape) != 1:
                raise TypeError(f"{program.name} must return a scalar to be differentiated (it returns an array "
                                f"of shape {program.steps[ref].shape})")
            seed = 1.0 if kind != "node" or program.steps[ref].shape == () else \
                np.ones(program.steps[ref].shape, program.steps[ref].dtype)
            entry = program.prepared[nums, has_aux, fresh] = (program.function(wanted, (0,), fresh), wanted, seed)
            return entry

        def run_args(*args, out=None):
            def run(program, leaves):
                fresh = out is None
                fn, wanted, seed = program.prepared.get((nums, has_aux, fresh)) or prepare(program, fresh)
                outs, grads = fn(*leaves, seed)
                if not fresh:
                    grads = _into(program, wanted, grads, out)
                results = _results(program, outs)
                value = _scalar(results[0] if has_aux else results) if program.out_leaves else None
                if has_aux:
                    value = (_scalar(results[0]), results[1])
                if single:
                    return value, program.rebuilders[_arg(program, nums[0])](list(grads))
                at, parts = 0, []
                for i in nums:
                    i = _arg(program, i)
                    count = len(program.arg_leaves[i])
                    parts.append(program.rebuilders[i](list(grads[at : at + count])))
                    at += count
                return value, tuple(parts)

            return self._choose(args, run)

        return run_args

    def grad(self, argnums=0, *, has_aux: bool = False) -> Callable:
        """The function returning d value / d args[argnums] (with has_aux, (grad, aux))."""
        value_and_grad = self.value_and_grad(argnums, has_aux=has_aux)

        def run(*args, out=None):
            value, grads = value_and_grad(*args, out=out)
            return (grads, value[1]) if has_aux else grads

        return run

    def vjp(self, *primals):
        """(value, vjp_fn): vjp_fn(cotangent) is cotangent^T J for each argument (cotangents
        shaped as the outputs, in their structure)."""
        def run(program, leaves):
            return program, leaves, _results(program, program.function(None)(*leaves))

        program, leaves, value = self._choose(primals, run)

        def vjp_fn(cotangent) -> tuple:
            parts = flatten(cotangent)[0]
            if len(parts) != len(program.outputs):
                raise ValueError(f"vjp: the cotangent has {len(parts)} parts, the output {len(program.outputs)}")
            seeds = []
            for o, (c, (kind, ref)) in enumerate(zip(parts, program.outputs)):
                shape = program.steps[ref].shape if kind == "node" else np.shape(ref)
                dtype = program.steps[ref].dtype if kind == "node" else None
                c = np.asarray(c, dtype or np.float64)
                if c.shape != shape:
                    raise ValueError(f"vjp: cotangent part {o} has shape {c.shape}, the output {shape}")
                seeds.append(float(c) if shape == () else c)
            wanted = tuple(range(len(program.leaves)))
            wanted = tuple(k for k in wanted if program.leaves[k].kind != "index")
            _, grads = program.function(wanted, tuple(range(len(program.outputs))))(*leaves, *seeds)
            by_leaf = dict(zip(wanted, grads))
            return tuple(r([by_leaf.get(k) for k in ks]) for r, ks in zip(program.rebuilders, program.arg_leaves))

        return value, vjp_fn

    # -- showing --------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        p = self.program
        inputs, guards = len(p.leaves), len(p.guards)
        return (f"<traced {p.name}: {p.n} nodes ({inputs} input{'' if inputs == 1 else 's'}), "
                f"{guards} guard{'' if guards == 1 else 's'}>")

    def show(self, file=None) -> None:
        """Print the newest trace: per node its name (v0, ...), operation, operands, shape and dtype;
        then its outputs and guards, as a jaxpr reads."""
        print(format_program(self.program), file=file)

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(repr(self))}</p><pre>{escape(format_program(self.program))}</pre>"


def _arg(program: MatrixProgram, i: int) -> int:
    if not -len(program.rebuilders) <= i < len(program.rebuilders) or isinstance(i, bool):
        raise TypeError(f"{program.name} takes {len(program.rebuilders)} arguments; argnums names argument {i}")
    return i % len(program.rebuilders)


def _scalar(x):
    if isinstance(x, np.ndarray):
        if x.size != 1:
            raise TypeError(f"a value to be differentiated must be a scalar, got shape {x.shape}")
        return float(x.reshape(-1)[0])
    return x


def _results(program: MatrixProgram, outs: tuple):
    """The outputs in fn's structure, an array that may share memory with an argument copied."""
    values = []
    for (kind, ref), v in zip(program.outputs, outs):
        if kind == "constant" and isinstance(v, np.ndarray) or kind == "node" and program.steps[ref].op in VIEWS \
                and isinstance(v, np.ndarray):
            v = np.array(v)
        values.append(v)
    return program.out_rebuild(values)


def _into(program: MatrixProgram, wanted: tuple, grads: tuple, out) -> tuple:
    """The gradients written into `out` (one array per differentiated leaf), which are returned."""
    out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if len(out) != len(wanted):
        raise ValueError(f"out=: expected {len(wanted)} arrays (one per differentiated argument), got {len(out)}")
    for k, o, g in zip(wanted, out, grads):
        leaf = program.leaves[k]
        if not isinstance(o, np.ndarray) or o.shape != leaf.shape or o.dtype != leaf.dtype:
            raise ValueError(f"out=: argument{leaf.path}'s gradient goes into an array of shape {leaf.shape} "
                             f"{leaf.dtype}, got {_what(o)}" + (f" {o.dtype}" if isinstance(o, np.ndarray) else ""))
        o[...] = g
    return out


def format_program(p: MatrixProgram) -> str:
    """A trace as text: `v3: float32[4,4] = matmul v1, v2`, then outputs and guards."""
    def kind(s: Step) -> str:
        if s.dtype is None:
            return "f64"
        return f"{np.dtype(s.dtype).name.replace('float', 'f')}[{','.join(map(str, s.shape))}]"

    def operand(o) -> str:
        if isinstance(o, str):
            return o
        if isinstance(o, np.ndarray):
            return f"const{list(o.shape)}"
        return repr(o)

    lines = [f"{{ lambda ; {', '.join(f'x{k}:{l.kind}' + (f'{list(l.shape)} {l.dtype}' if l.kind != 'number' else '') for k, l in enumerate(p.leaves))} . let"]
    for s in p.steps:
        if s.kind == "input":
            rhs = f"x{s.leaf}"
        elif s.kind == "constant":
            rhs = repr(s.extra)
        else:
            params = ""
            if s.kind == "structural":
                params = "".join(f" {k}={operand(v) if not isinstance(v, tuple) else '(' + ', '.join(map(operand, v)) + ')'}"
                                 for k, v in s.extra[1].items())
            rhs = f"{s.op}{params} {', '.join(operand(o) for o in s.operands)}"
        lines.append(f"    v{s.i}:{kind(s)} = {rhs}")
    outs = ", ".join(f"v{r}" if k == "node" else repr(r) for k, r in p.outputs)
    lines.append(f"  in ({outs}) }}")
    for g in p.guards:
        if g[0] == "equal":
            lines.append(f"  guard: argument{p.leaves[g[1]].path} equals its traced value")
        else:
            _, lhs, op, rhs, outcome, where, _ = g
            d = lambda r: f"v{r[1]}" if r[0] == "node" else "const" if isinstance(r[1], np.ndarray) else repr(r[1])  # noqa: E731
            what = "every entry as traced" if g[0] == "mask" else str(outcome)
            lines.append(f"  guard: {d(lhs)} {op} {d(rhs)} is {what} ({where})")
    return "\n".join(lines)
