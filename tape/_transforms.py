"""Reading gradients off a tape: `gradient`, and the JAX-style `grad` and `value_and_grad`."""
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
from ._tensor import Tensor
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
        if _inside_a_derivative.get() and any(isinstance(args[i], Tensor) for i in nums):
            raise NotImplementedError(SECOND_ORDER)
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


SECOND_ORDER = ("a second derivative (hessian, hvp, grad of grad) of a function of Tensors is not supported: matrix "
                "nodes have reverse mode only; pass numpy arrays instead of Tensors (scalar nodes) for second derivatives")


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


def _tensor_jacobians(fn: Callable, primals: Sequence, combine: Callable) -> tuple:
    """(fn(*primals), the output's structure with combine(the leaf's Jacobian in each primal, its
    dtype) at each leaf) for a function of Tensors whose output is a Tensor, a Var, numbers, or a structure
    of them. A Jacobian is shaped output leaf shape + primal shape, one sweep of one recorded
    tape per output entry."""
    with Tape() as t, _differentiating():
        leaves = [_lift(t, p, i, fn) for i, p in enumerate(primals)]
        out = fn(*leaves)
        derivatives = _map_leaves(lambda o: combine(_leaf_jacobians(t, o, leaves), _dtype(o)), out)
    return _map_leaves(_output_value, out), derivatives


def _leaf_jacobians(t: Tape, out, leaves: list) -> tuple:
    """The Jacobian of one output leaf in each of `leaves`: a row per entry, from a sweep seeded
    with 1 there (zeros for an entry that is no node of t), in the leaf's dtype, as its gradient."""
    shape = np.shape(_output_value(out))
    rows = [np.zeros((int(np.prod(shape)), np.size(_value(leaf))), _dtype(leaf))
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
    return tuple(row.reshape(shape + np.shape(_value(leaf))) for row, leaf in zip(rows, leaves))


def _output_value(out):
    """An output leaf's value: a Tensor's array (a copy), else numbers (a Var's, an array of Vars')."""
    return out.value.copy() if isinstance(out, Tensor) else _values_of(np.asarray(out, dtype=object))


def _map_leaves(fn: Callable, x):
    """x with fn applied to each leaf of its structure (to x itself if x is a leaf)."""
    if not is_structure(x):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_leaves(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        mapped = [_map_leaves(fn, v) for v in x]
        return type(x)(*mapped) if hasattr(type(x), "_fields") else type(x)(mapped)
    return dataclasses.replace(x, **{f.name: _map_leaves(fn, getattr(x, f.name)) for f in dataclasses.fields(x) if f.init})


def _value(x):
    """A Tensor's array, a Var's number, or x itself."""
    return x.value if isinstance(x, Tensor) else x._value if x.__class__ is Var else x


def _dtype(x) -> np.dtype:
    """A Tensor's dtype; float64 for anything else (Vars, numbers, arrays of Vars)."""
    return x.dtype if isinstance(x, Tensor) else np.dtype(np.float64)


def _is_node_of(out, t: Tape) -> bool:
    return (isinstance(out, Tensor) and out.requires_grad or out.__class__ is Var) and out.tape is t


def jvp(fn: Callable, primals: Sequence, tangents: Sequence):
    """(fn(*primals), the derivative of fn at primals along tangents), in one forward pass.

    primals and tangents are sequences of the same structure: numbers, arrays of numbers, or
    structures of them (Vars too: then the derivative is recorded on their tape). The output
    may be a scalar, an array or a structure; the derivative has the output's structure."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    if any(isinstance(p, Tensor) for p in primals):  # matrix nodes have reverse mode only: J v by sweeps
        for i, (p, v) in enumerate(zip(primals, tangents)):
            if np.shape(v) != np.shape(_value(p)):
                raise ValueError(f"jvp: primal {i} has shape {np.shape(_value(p))} but its tangent has shape {np.shape(v)}")
        return _tensor_jacobians(fn, primals, lambda jacobians, dtype: sum(  # in the output's dtype, as torch
            np.tensordot(j, np.asarray(v, dtype), axes=np.ndim(v)).astype(dtype) for j, v in zip(jacobians, tangents)))
    nums = tuple(range(len(primals)))
    flat_fn, flat_primals, structures = flat_arguments(fn, primals, nums, "jvp")
    tangents = tuple(same_structure(structures[i], t, f"jvp: tangent {i}") if i in structures else t
                     for i, t in enumerate(tangents))
    flat_fn, output = flat_outputs(flat_fn, "jvp")
    value, tangent = _forward.jvp(flat_fn, flat_primals, tangents)
    if "structure" in output:
        return output["structure"].unflatten(np.ravel(value)), output["structure"].unflatten(np.ravel(tangent))
    return value, tangent


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
            return _tensor_jacobians(fn, (x,), lambda jacobians, dtype: jacobians[0])[1]
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


def hessian(fn: Callable) -> Callable:
    """`fn` transformed to return its Hessian at x: the reverse-mode Jacobian of its gradient,
    which `grad` computes in forward mode on the recorded Vars (reverse over forward)."""
    jacobian_of_grad = jacobian(grad(fn), mode="reverse")

    @functools.wraps(fn)
    def wrapped(x):
        if isinstance(x, Tensor):
            raise NotImplementedError(SECOND_ORDER)
        return jacobian_of_grad(x)

    return wrapped


def hvp(fn: Callable, x, v):
    """The Hessian of `fn` at x times v, without forming the Hessian: the gradient of the
    directional derivative x -> grad fn(x) . v, one forward pass recorded and one sweep."""
    if isinstance(x, Tensor):
        raise NotImplementedError(SECOND_ORDER)
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
