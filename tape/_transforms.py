"""Reading gradients off a tape: `gradient`, and the JAX-style `grad` and `value_and_grad`, `vjp`,
`jvp`, `jacobian`, `hessian` and `hvp`.

On scalar nodes forward mode is tape._forward's Dual; on matrix nodes (Tensors) it is
tape._tensor's DualTensor: `jvp` of a function of Tensors carries a tangent array beside each
value (k of them at once with batched=True). Second derivatives: `hvp` is reverse over forward on
both, the gradient of a jvp's tangent, recorded while the values are nodes of the gradient's tape;
`hessian` of a function of a Tensor is forward over reverse, a chunk of directions at a time
(tape._tensor.forward_over_reverse)."""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Union

import numpy as np

from . import _forward
from ._forward import Dual, forward_gradient, scalar_output
from ._ops import Var
from ._tape import Tape, TraceError, current_tape
from ._tensor import DualTensor, Tensor, array_of, constants_checked_once, dtype_of, forward_over_reverse, stack
from ._tree import flat_arguments, flat_outputs, is_structure, leaf_structure, restore, same_structure
from ._var import CONSTANTS, leaf_on

Argnums = Union[int, Sequence[int]]


def gradient(y: Var | Tensor, xs: Var | Tensor | Sequence[Var | Tensor]) -> float | np.ndarray | list:
    """d y / d x for each x in `xs` (Vars or Tensors, leaves or intermediates recorded before
    `y`; y a Var or a one-element Tensor): the adjoints of the course's Table 2, read off one
    sweep; nothing is recorded. A single Var gives a float, a single Tensor an array of its
    shape; a sequence of Vars a numpy array, a sequence with Tensors a list, one entry per x."""
    if y.__class__ is not Var and not isinstance(y, Tensor):
        raise TypeError(f"gradient(y, xs): y must be a Var or a one-element Tensor, got {type(y).__name__}")
    single = xs.__class__ is Var or isinstance(xs, Tensor)
    xs = [xs] if single else list(xs)
    for x in xs:
        if x.__class__ is not Var and not isinstance(x, Tensor):
            raise TypeError(f"gradient(y, xs): every x must be a Var or a Tensor, got {type(x).__name__}")
        if isinstance(x, Tensor) and not x.requires_grad:
            raise ValueError("gradient(y, xs): a constant Tensor (requires_grad=False) is no node and has no gradient")
        if x.tape is not y.tape:  # x.tape raises the StaleVarError of a dropped node
            raise ValueError(f"gradient(y, xs): {x!r} is on another tape than y")
    y.backward()
    if any(isinstance(x, Tensor) for x in xs):
        grads = [x.grad for x in xs]
        return grads[0] if single else grads
    adjoint = y.tape.adjoint
    nodes = np.fromiter((x._node for x in xs), np.int64, len(xs))
    out = np.zeros(len(xs))
    before = nodes < len(adjoint)  # a Var recorded after y does not affect it
    out[before] = adjoint[nodes[before]]
    return float(out[0]) if single else out


def value_and_grad(fn: Callable, argnums: Argnums = 0) -> Callable:
    """`fn` transformed to return (fn(*args), d fn / d args[argnums]).

    `fn` takes numbers, lists and arrays of numbers, or structures of them (dicts, lists,
    tuples, named tuples, dataclasses) and returns a scalar. Each call records on a tape of its
    own and leaves nothing behind. An int `argnums` gives one derivative (a float, an array
    shaped like its argument, or its structure), a tuple gives a tuple of them."""
    nums, single = check_argnums(argnums)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        for i in nums:
            if i >= len(args):
                raise TypeError(
                    f"{_name(fn)} was called with {len(args)} positional arguments, "
                    f"but argnums={argnums!r} asks for the derivative by argument {i}"
                )
        flat_fn, flat_args, structures = flat_arguments(fn, args, nums, _name(fn))
        if structures:
            value, grads = value_and_grad(flat_fn, argnums)(*flat_args, **kwargs)
            return value, restore(structures, nums, grads)
        if any(isinstance(args[i], DualTensor) or _inside_a_derivative.get() and isinstance(args[i], Tensor) for i in nums):
            value, grads = _tensor_forward_gradient(fn, list(args), kwargs, nums)
            return value, grads[0] if single else tuple(grads)
        if _inside_a_derivative.get() or not all(_plain(args[i]) for i in nums):
            for i in nums:
                _check_differentiable(args[i], i, fn)
            value, grads = forward_gradient(fn, list(args), kwargs, nums)
            return value, grads[0] if single else tuple(grads)
        with Tape() as t, _differentiating():
            args = [x.detach() if isinstance(x, Tensor) else x for x in args]  # not differentiated: constants
            for i in nums:
                args[i] = _lift(t, args[i], i, fn)
            out = scalar_output(fn(*args, **kwargs))
            if out.__class__ is Var and out.tape is t:
                value = out._value
                adjoint = t.backward(out._node)
            elif isinstance(out, (*CONSTANTS, Var)):  # independent of the arguments: a zero gradient
                value, adjoint = float(out), np.zeros(0)
            else:
                raise TypeError(
                    f"{_name(fn)} must return a scalar (a Var or a number) to be differentiated, "
                    f"got {type(out).__name__}"
                )
            grads = tuple(_read(adjoint, args[i]) for i in nums)
        return value, grads[0] if single else grads

    return wrapped


def grad(fn: Callable, argnums: Argnums = 0) -> Callable:
    """`fn` transformed to return d fn / d args[argnums] (see `value_and_grad`)."""
    value_and_grad_fn = value_and_grad(fn, argnums)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        return value_and_grad_fn(*args, **kwargs)[1]

    return wrapped


@contextmanager
def no_grad(t: Tape | None = None) -> Iterator[None]:
    """Within this block operations on the Vars of tape `t` (the current tape by default) return
    plain numbers and record nothing."""
    t = current_tape() if t is None else t
    if t.guards is not None:
        raise TraceError("no_grad() while tracing: values computed off the tape would be constants of the trace, wrong at other inputs")
    was = t.recording
    t.recording = False
    try:
        yield
    finally:
        t.recording = was


# Inside a function being differentiated, `grad` works in forward mode: the function may close
# over the outer derivative's Vars, and forward mode records on their tape (a derivative of a
# derivative) where a tape of its own could not mix with them.
_inside_a_derivative: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_a_derivative", default=False)


@contextmanager
def _differentiating() -> Iterator[None]:
    token = _inside_a_derivative.set(True)
    try:
        yield
    finally:
        _inside_a_derivative.reset(token)


def _tensor_forward_gradient(fn: Callable, args: list, kwargs: dict, nums: Sequence[int]):
    """(fn(*args), d fn / d args[i] for i in nums) of Tensors (nodes of an outer derivative's
    tape, or DualTensors) in forward mode, one jvp per entry: each partial derivative is
    recorded with them, to be differentiated again (grad of grad)."""
    value, grads = None, []
    for i in nums:
        x = args[i]
        columns = []
        for j in range(x.size):
            direction = np.zeros(x.size, dtype_of(x))
            direction[j] = 1.0
            value, column = jvp(lambda xi: fn(*args[:i], xi, *args[i + 1:], **kwargs), (x,), (direction.reshape(x.shape),))
            if np.ndim(array_of(column)) != 0:
                raise TypeError(f"{_name(fn)} must return a scalar to be differentiated, got shape {np.shape(array_of(column))}")
            columns.append(column)
        grads.append(stack(columns).reshape(x.shape) if columns else np.zeros(x.shape, dtype_of(x)))
    return value, [g.value if g.__class__ is Tensor and not g.requires_grad else g for g in grads]


def _plain(x) -> bool:
    """Whether x is a number or an array/list of numbers (not Vars or Duals), or a Tensor (whose
    value the transform differentiates at, with matrix nodes)."""
    if isinstance(x, (CONSTANTS, Tensor)):
        return True
    if isinstance(x, np.ndarray) and x.dtype != object:
        return True
    return isinstance(x, (list, tuple, np.ndarray)) and all(isinstance(v, CONSTANTS) for v in np.asarray(x, dtype=object).flat)


def _check_differentiable(x, i: int, fn: Callable) -> None:
    entries = np.asarray(x, dtype=object).flat
    if not all(isinstance(v, (*CONSTANTS, Var, Dual)) for v in entries):
        raise TypeError(
            f"{_name(fn)}: argument {i} is to be differentiated, so it must be a number or a "
            f"list/array of numbers, got {type(x).__name__}"
        )


def check_argnums(argnums: Argnums, name: str = "argnums", allow_empty: bool = False,
                  single: bool = False) -> tuple[tuple[int, ...], bool]:
    """(the argument numbers, whether `argnums` is one integer rather than a sequence), checked:
    integers (numbers.Integral, not bools), non-negative, none twice; at least one unless
    allow_empty, exactly one if single."""
    expected = f"{name} must be a non-negative integer or a sequence of them, got {argnums!r}"
    one = _is_index(argnums)
    if not one and (isinstance(argnums, str) or not isinstance(argnums, Sequence)):
        raise TypeError(f"{expected} (a {type(argnums).__name__})")
    nums = (argnums,) if one else tuple(argnums)
    bad = [i for i in nums if not _is_index(i) or i < 0]
    if bad:
        what = "negative" if _is_index(bad[0]) else f"a {type(bad[0]).__name__}"
        raise TypeError(f"{expected} ({'it' if one else f'entry {bad[0]!r}'} is {what})")
    if not nums and not allow_empty:
        raise TypeError(f"{expected} (it is empty)")
    if len(set(nums)) != len(nums):
        raise ValueError(f"{name} {argnums!r} names an argument twice")
    if single and len(nums) != 1:
        raise TypeError(f"{name} must be one integer here, got {argnums!r}")
    return tuple(int(i) for i in nums), one


def _is_index(i) -> bool:
    """Whether i is an integer (of any integer type) and not a bool."""
    return isinstance(i, numbers.Integral) and not isinstance(i, bool)


def _lift(t: Tape, x, i: int, fn: Callable):
    """A leaf for each number of argument `x`: a Var, or an object array of Vars; or for a
    Tensor one matrix leaf of its value."""
    if isinstance(x, Tensor):
        return Tensor(x.value)
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()
    if isinstance(x, CONSTANTS):
        return leaf_on(Var, t, x)
    array = np.asarray(x, dtype=object)
    if array.ndim == 0 or not all(isinstance(v, CONSTANTS) for v in array.flat):
        raise TypeError(
            f"{_name(fn)}: argument {i} is to be differentiated, so it must be a number or a "
            f"list/array of numbers, got {type(x).__name__}"
        )
    out = np.empty(array.shape, dtype=object)
    for j, v in enumerate(array.flat):
        out.flat[j] = leaf_on(Var, t, v)
    return out


def _read(adjoint: np.ndarray, leaves) -> float | np.ndarray:
    if leaves.__class__ is Var:
        return float(adjoint[leaves._node]) if leaves._node < len(adjoint) else 0.0
    if isinstance(leaves, Tensor):
        return leaves.grad
    grads = np.zeros(leaves.shape)
    for j, leaf in enumerate(leaves.flat):
        if leaf._node < len(adjoint):
            grads.flat[j] = adjoint[leaf._node]
    return grads


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn)) + "()"


def vjp(fn: Callable, primals: Sequence):
    """(fn(*primals), vjp_fn): vjp_fn(cotangent) is cotangent^T J, the gradient of
    <cotangent, fn> with respect to each primal. fn is recorded once; every call of vjp_fn is
    one sweep of that tape, seeded with the cotangent at the outputs."""
    nums = tuple(range(len(primals)))
    fn, primals, structures = flat_arguments(fn, tuple(primals), nums, "vjp")
    fn, output = flat_outputs(fn, "vjp")
    t = Tape()
    with t, _differentiating():
        leaves = [_lift(t, p, i, fn) for i, p in enumerate(primals)]
        out = fn(*leaves)
    if isinstance(out, Tensor):
        return out.value.copy(), _tensor_vjp(t, out, leaves, structures, nums)
    outputs = np.asarray(out, dtype=object)
    value = _values_of(outputs)
    if "structure" in output:
        value = output["structure"].unflatten(value)

    def vjp_fn(cotangent) -> tuple:
        if "structure" in output:
            cotangent = same_structure(output["structure"], cotangent, "vjp: the cotangent")
        cotangent = np.asarray(cotangent, dtype=np.float64)
        if cotangent.shape != outputs.shape:
            raise ValueError(f"vjp: the cotangent has shape {cotangent.shape}, the output {outputs.shape}")
        seed = np.zeros(len(t))
        for o, c in zip(outputs.flat, cotangent.flat):
            if isinstance(o, Var) and o.tape is t:  # a Var of another tape is a constant here
                seed[o._node] += c
        adjoint = t.sweep(seed)
        return restore(structures, nums, tuple(_read(adjoint, leaf) for leaf in leaves))

    return value, vjp_fn


def _tensor_vjp(t: Tape, out: Tensor, leaves: list, structures: dict, nums: tuple) -> Callable:
    """vjp_fn for an output that is a matrix node: each call one sweep seeded with the cotangent there."""
    def vjp_fn(cotangent) -> tuple:
        cotangent = np.asarray(cotangent, dtype=out.dtype)
        if cotangent.shape != out.shape:
            raise ValueError(f"vjp: the cotangent has shape {cotangent.shape}, the output {out.shape}")
        adjoint = t.sweep(np.zeros(out._node + 1), {out._node: cotangent})
        return restore(structures, nums, tuple(_read(adjoint, leaf) for leaf in leaves))

    return vjp_fn


def _tensor_jacobian_reverse(fn: Callable, x: Tensor):
    """The output's structure with the leaf's Jacobian in x at each leaf, for a function of a
    Tensor whose output is a Tensor, a Var, numbers, or a structure of them. A Jacobian is
    shaped output leaf shape + x's shape, one sweep of one recorded tape per output entry."""
    with Tape() as t, _differentiating():
        leaf = _lift(t, x, 0, fn)
        return _map_leaves(lambda o: _leaf_jacobians(t, o, [leaf])[0], fn(leaf))


def _leaf_jacobians(t: Tape, out, leaves: list) -> tuple:
    """The Jacobian of one output leaf in each of `leaves`: a row per entry, from a sweep seeded
    with 1 there (zeros for an entry that is no node of t), in the leaf's dtype, as its gradient."""
    shape = np.shape(_output_value(out))
    rows = [np.zeros((int(np.prod(shape)), np.size(array_of(leaf))), _dtype(leaf))
            for leaf in leaves]
    entries = None if isinstance(out, Tensor) else np.asarray(out, dtype=object).ravel()
    for j in range(len(rows[0])):
        if entries is None and _is_node_of(out, t):
            seed = np.zeros(out.size, out.dtype)
            seed[j] = 1.0
            adjoint = t.sweep(np.zeros(out._node + 1), {out._node: seed.reshape(shape)})
        elif entries is not None and _is_node_of(entries[j], t):
            adjoint = t.backward(entries[j]._node)
        else:
            continue
        for row, leaf in zip(rows, leaves):
            row[j] = np.ravel(_read(adjoint, leaf))
    return tuple(row.reshape(shape + np.shape(array_of(leaf))) for row, leaf in zip(rows, leaves))


def _output_value(out):
    """An output leaf's value: a Tensor's array (a copy), else numbers (a Var's, an array of Vars')."""
    return out.value.copy() if isinstance(out, Tensor) else _values_of(np.asarray(out, dtype=object))


def _map_leaves(fn: Callable, x, *others):
    """x with fn applied to each leaf of its structure (to x itself if x is a leaf), and to the
    same leaf of each of `others`, structures like x's."""
    if not is_structure(x):
        return fn(x, *others)
    if isinstance(x, dict):
        if any(set(o) != set(x) for o in others):
            raise KeyError(f"keys {sorted(map(str, x))} expected")
        return {k: _map_leaves(fn, v, *(o[k] for o in others)) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        if any(len(o) != len(x) for o in others):
            raise IndexError(f"{len(x)} entries expected")
        mapped = [_map_leaves(fn, v, *(o[j] for o in others)) for j, v in enumerate(x)]
        return type(x)(*mapped) if hasattr(type(x), "_fields") else type(x)(mapped)
    return dataclasses.replace(x, **{f.name: _map_leaves(fn, getattr(x, f.name), *(getattr(o, f.name) for o in others))
                                     for f in dataclasses.fields(x) if f.init})


def _dtype(x) -> np.dtype:
    """A Tensor's dtype; float64 for anything else (Vars, numbers, arrays of Vars)."""
    return x.dtype if isinstance(x, Tensor) else np.dtype(np.float64)


def _is_node_of(out, t: Tape) -> bool:
    return (isinstance(out, Tensor) and out.requires_grad or out.__class__ is Var) and out.tape is t


def jvp(fn: Callable, primals: Sequence, tangents: Sequence, batched: bool = False):
    """(fn(*primals), the derivative of fn at primals along tangents), in one forward pass.

    primals and tangents are sequences of the same structure: numbers, arrays of numbers, or
    structures of them (Vars too: then the derivative is recorded on their tape). The output
    may be a scalar, an array or a structure; the derivative has the output's structure. With a
    Tensor among the primals, forward mode runs on matrix nodes (`_tensor_jvp`): one pass, the
    tangent of a Tensor output an array in its dtype, of a Var or number output a float.
    `batched=True` (Tensor primals): each tangent has a leading axis of k directions, and so has
    each output's tangent: k jvps in one pass, as JAX's vmap of jvp, its products of matrices."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    if any(_holds_tensor(p) for p in primals):  # matrix nodes: a tangent array beside each value
        return _tensor_jvp(fn, primals, tangents, batched)
    if batched:
        raise TypeError("jvp: batched=True takes Tensor primals (matrix nodes); give the arrays as tape.Tensor(x)")
    nums = tuple(range(len(primals)))
    flat_fn, flat_primals, structures = flat_arguments(fn, primals, nums, "jvp")
    tangents = tuple(same_structure(structures[i], t, f"jvp: tangent {i}") if i in structures else t
                     for i, t in enumerate(tangents))
    flat_fn, output = flat_outputs(flat_fn, "jvp")
    value, tangent = _forward.jvp(flat_fn, flat_primals, tangents)
    if "structure" in output:
        return output["structure"].unflatten(np.ravel(value)), output["structure"].unflatten(np.ravel(tangent))
    return value, tangent


def _holds_tensor(x) -> bool:
    """Whether x is a Tensor or a DualTensor, or a structure holding one."""
    if isinstance(x, (Tensor, DualTensor)):
        return True
    return is_structure(x) and any(_holds_tensor(v) for v in _leaves(x))


def _leaves(x) -> list:
    """The leaves of structure x, in order."""
    out = []
    _map_leaves(out.append, x)
    return out


def _tensor_jvp(fn: Callable, primals: tuple, tangents: tuple, batched: bool = False):
    """jvp of a function of Tensors (arrays, numbers, structures of them beside them): each
    primal a DualTensor of a new level, its tangent in the primal's dtype. Outside a derivative a
    Tensor primal is taken as a constant (no recording: one forward pass on arrays); inside one
    it is kept, and so is what the outputs are made of, to be differentiated again."""
    tag = next(_forward._levels)
    keep = _inside_a_derivative.get()
    directions: list = []  # with batched tangents, how many (the first one's)

    def kept(x) -> bool:  # a DualTensor of an outer level, or inside a derivative a node of its tape
        return isinstance(x, (DualTensor, Dual)) or keep and _is_node_of(x, current_tape())

    def seeded(p, v, where: str):
        shape = np.shape(array_of(v))
        if batched:
            if not shape or directions and shape[0] != directions[0]:
                raise ValueError(f"jvp: batched tangents have a leading axis of directions, the same for all: {where}'s "
                                 f"tangent has shape {shape}" + (f", the first had {directions[0]} directions" if directions else ""))
            directions.append(shape[0])
            shape = shape[1:]
        if shape != np.shape(array_of(p)):
            what = "each direction of its tangent" if batched else "its tangent"
            raise ValueError(f"jvp: {where} has shape {np.shape(array_of(p))} but {what} has shape {shape}")
        value = p if kept(p) else Tensor(array_of(p), requires_grad=False)
        return DualTensor(value, v if kept(v) else np.asarray(array_of(v), dtype_of(value)), tag)

    duals = []
    for i, (p, v) in enumerate(zip(primals, tangents)):
        if is_structure(p):
            try:
                duals.append(_map_leaves(lambda leaf, t: seeded(leaf, t, f"a leaf of primal {i}"), p, v))
            except (KeyError, IndexError, TypeError, AttributeError) as e:
                raise ValueError(f"jvp: tangent {i} is not a structure like primal {i}'s ({type(e).__name__}: {e})") from None
        else:
            duals.append(seeded(p, v, f"primal {i}"))
    out = _scalars_stacked(fn(*duals))

    def part(o, k: int):
        if o.__class__ is DualTensor and o.tag == tag:
            out = _returned((o.value, o.tangent)[k], keep)
            if k and batched and np.ndim(array_of(o)) == 0 and out.__class__ is np.ndarray:  # a number's: k floats
                return out.astype(np.float64)
            return out
        value = _returned(o, keep)
        if k == 0:
            return value
        if batched:
            return np.zeros((directions[0], *np.shape(value)), dtype_of(value))
        return np.zeros(np.shape(value), dtype_of(value)) if np.ndim(value) else 0.0

    return _map_leaves(lambda o: part(o, 0), out), _map_leaves(lambda o: part(o, 1), out)


def _scalars_stacked(x):
    """x with each list or tuple of numbers and results without axes (a leaf, as the scalar jvp
    takes it) stacked into one array's DualTensor, in dicts, lists and tuples at any depth."""
    if isinstance(x, dict):
        return {k: _scalars_stacked(v) for k, v in x.items()}
    if not isinstance(x, (list, tuple)):
        return x
    if x and not hasattr(type(x), "_fields") and all(not isinstance(v, (list, tuple, dict)) and np.ndim(array_of(v)) == 0 for v in x):
        return stack(x)
    mapped = [_scalars_stacked(v) for v in x]
    return type(x)(*mapped) if hasattr(type(x), "_fields") else type(x)(mapped)


def _returned(x, keep: bool):
    """An output's value or tangent as jvp returns it: a DualTensor of an outer level, or
    inside a derivative a node, as it is (to be differentiated again); else an array of its
    own, or a float if it has no axes."""
    if isinstance(x, (DualTensor, Dual)) or keep and (x.__class__ is Var or isinstance(x, Tensor) and x.requires_grad):
        return x
    array = array_of(x)
    if isinstance(array, np.ndarray) and array.dtype == object:
        raise TypeError("jvp: a function of Tensors returned an array of Vars or Duals; return a Tensor (tape.stack)")
    return float(array) if np.ndim(array) == 0 else np.array(array)


def jacobian(fn: Callable, mode: str = "auto") -> Callable:
    """`fn` transformed to return its Jacobian at x, shaped output shape + input shape.

    For f: R^m -> R^n, `mode="forward"` builds it column by column (m forward passes),
    `"reverse"` row by row (n sweeps of ONE recorded tape, each seeded at one output), and
    `"auto"` picks as the course says: forward when n > m, reverse otherwise. With a structure
    as x or as the output, the Jacobian is a structure of structures, as JAX's: entry
    [output leaf][input leaf] shaped that output leaf's shape + that input leaf's."""
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")

    @functools.wraps(fn)
    def wrapped(x):
        if isinstance(x, Tensor):
            chosen = mode
            if mode == "auto":  # n from one evaluation on a constant Tensor, far cheaper than either mode
                out = fn(Tensor(x.value, requires_grad=False))
                chosen = "forward" if sum(np.size(array_of(o)) for o in _leaves(out)) > x.size else "reverse"
            if chosen == "forward":
                return _tensor_jacobian_forward(fn, x)
            return _tensor_jacobian_reverse(fn, x)
        flat_fn, (flat_x,), structures = flat_arguments(fn, (x,), (0,), "jacobian")
        flat_fn, output = flat_outputs(flat_fn, "jacobian")
        matrix = flat_jacobian(flat_fn, flat_x)
        if not structures and "structure" not in output:
            return matrix
        inputs = structures.get(0) or leaf_structure(np.shape(flat_x))
        outputs = output.get("structure") or leaf_structure(matrix.shape[: matrix.ndim - np.ndim(flat_x)])
        return outputs.blocks(inputs, matrix.reshape(outputs.size, inputs.size))

    def flat_jacobian(fn, x):
        x = _point(x)
        x_shape = np.shape(x)
        m = int(np.prod(x_shape))
        chosen = mode
        if mode == "auto":  # n from one evaluation on plain numbers, far cheaper than either mode
            with no_grad():
                n = np.size(fn(x))
            chosen = "forward" if n > m else "reverse"
        if chosen == "forward":
            return _jacobian_forward(fn, x, x_shape)
        with Tape() as t, _differentiating():
            leaves = _lift(t, x, 0, fn)
            outputs = np.asarray(fn(leaves), dtype=object)
            rows = np.zeros((outputs.size, m))
            flat_leaves = [leaves] if leaves.__class__ is Var else list(leaves.flat)
            for i, o in enumerate(outputs.flat):
                if isinstance(o, Var) and o.tape is t:  # a Var of another tape is a constant here
                    seed = np.zeros(o._node + 1)
                    seed[o._node] = 1.0
                    adjoint = t.sweep(seed)
                    rows[i] = [adjoint[leaf._node] if leaf._node < len(adjoint) else 0.0 for leaf in flat_leaves]
        return rows.reshape(outputs.shape + x_shape)

    return wrapped


def _tensor_jacobian_forward(fn: Callable, x: Tensor):
    """The Jacobian of a function of a Tensor column by column: jvps along the entries of x, a
    chunk of them at once (batched, as hessian's chunks) outside a derivative, one at a time
    inside one (the columns are nodes there); in x's dtype, as the reverse mode's rows are."""
    if not x.size:  # no columns: one jvp, for the outputs' shapes
        zero = _tensor_jvp(fn, (x,), (np.zeros(x.shape, x.dtype),))[1]
        return _map_leaves(lambda c: np.zeros(np.shape(c) + x.shape, x.dtype), zero)
    if _inside_a_derivative.get():
        columns = [_tensor_jvp(fn, (x,), (np.eye(1, x.size, j, x.dtype).reshape(x.shape),))[1] for j in range(x.size)]
        return _map_leaves(lambda *cs: np.stack(cs, axis=-1).astype(x.dtype).reshape(np.shape(cs[0]) + x.shape), *columns)
    chunk = max(1, CHUNK_ENTRIES // x.size)
    chunks = [_tensor_jvp(fn, (x,), (np.eye(min(chunk, x.size - start), x.size, start, x.dtype).reshape((-1, *x.shape)),),
                          batched=True)[1] for start in range(0, x.size, chunk)]
    return _map_leaves(lambda *cs: np.moveaxis(np.concatenate(cs).astype(x.dtype), 0, -1).reshape(np.shape(cs[0])[1:] + x.shape),
                       *chunks)


def _point(x):
    """Where a Jacobian is taken: a float, or a float array."""
    array = np.asarray(x, dtype=np.float64)
    return float(array) if array.ndim == 0 else array


def _jacobian_forward(fn: Callable, x, x_shape: tuple) -> np.ndarray:
    columns = []
    for j in range(max(1, int(np.prod(x_shape)))):
        direction = np.zeros(x_shape)
        direction.flat[j] = 1.0
        _, column = _forward.jvp(fn, (x,), (float(direction) if not x_shape else direction,))
        columns.append(np.asarray(column, dtype=np.float64))
    return np.stack(columns, axis=-1).reshape(np.shape(columns[0]) + x_shape)


CHUNK_ENTRIES = 2**22  # hessian's default chunk: this many entries in a tangent of x's size (32 MB in float64)


def hessian(fn: Callable, chunk_size: int | None = None) -> Callable:
    """`fn` transformed to return its Hessian at x: the reverse-mode Jacobian of its gradient,
    which `grad` computes in forward mode on the recorded Vars (reverse over forward).

    For a Tensor x, shaped x.shape + x.shape in x's dtype, forward over reverse (torch.func's
    jacfwd of jacrev): fn runs once per chunk of `chunk_size` directions (entries of x), each
    intermediate array carrying that many tangents, and its gradient's derivatives along all of
    them come from one reverse pass, as matrix products. chunk_size bounds the memory: about
    chunk_size times fn's own arrays; by default 2**22 entries / x.size (all of x's entries when
    x has at most 2,048). Inside a derivative, a row per entry of x, each an `hvp`."""
    jacobian_of_grad = jacobian(grad(fn), mode="reverse")
    if chunk_size is not None and (not _is_index(chunk_size) or chunk_size < 1):
        raise ValueError(f"hessian: chunk_size must be a positive integer or None, got {chunk_size!r}")

    @functools.wraps(fn)
    def wrapped(x):
        if x.__class__ is Tensor and not _inside_a_derivative.get():
            return _tensor_hessian(fn, x, chunk_size or max(1, CHUNK_ENTRIES // max(1, x.size)))
        if isinstance(x, Tensor):  # a row per entry of x: an hvp along it
            with constants_checked_once():  # the same constants each row: checked at the first
                rows = [hvp(fn, x, np.eye(1, x.size, j, x.dtype).reshape(x.shape)) for j in range(x.size)]
            return np.array(rows, x.dtype).reshape(x.shape + x.shape)
        return jacobian_of_grad(x)

    return wrapped


def _tensor_hessian(fn: Callable, x: Tensor, chunk: int) -> np.ndarray:
    """The Hessian of fn at Tensor x, `chunk` of its columns at a time: the derivatives of the
    gradient along that many entries of x (forward_over_reverse)."""
    n = x.size
    columns = np.empty((n, n), x.dtype)
    with constants_checked_once():  # the same constants each chunk: checked at the first
        for start in range(0, n, chunk):
            directions = np.eye(min(chunk, n - start), n, start, x.dtype)
            along = forward_over_reverse(fn, x.value, directions.reshape((len(directions), *x.shape)), next(_forward._levels))
            columns[start:start + len(directions)] = along.reshape(len(directions), n)
    return columns.T.copy().reshape(x.shape + x.shape)


def hvp(fn: Callable, x, v):
    """The Hessian of `fn` at x times v, without forming the Hessian: the gradient of the
    directional derivative x -> grad fn(x) . v, one forward pass recorded and one sweep. For a
    Tensor x, an array of its shape and dtype (its jvp on DualTensors whose values are nodes)."""
    if isinstance(x, Tensor):
        if np.shape(v) != x.shape:
            raise ValueError(f"hvp: x has shape {x.shape} but v has shape {np.shape(v)}")
        return grad(lambda y: jvp(fn, (y,), (v,))[1])(x)
    if is_structure(x):
        flat_fn, (flat_x,), structures = flat_arguments(fn, (x,), (0,), "hvp")
        flat_v = same_structure(structures[0], v, "hvp: v")
        return structures[0].unflatten(hvp(flat_fn, flat_x, flat_v))
    if np.shape(x) != np.shape(v):
        raise ValueError(f"hvp: x has shape {np.shape(x)} but v has shape {np.shape(v)}")
    return grad(lambda y: _forward.jvp(fn, (y,), (v,))[1])(x)


def _values_of(outputs: np.ndarray):
    values = np.array([o._value if isinstance(o, Var) else o for o in outputs.flat], dtype=np.float64).reshape(outputs.shape)
    return float(values) if outputs.ndim == 0 else values
