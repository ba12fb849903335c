"""Reading gradients off a tape: `gradient`, and the JAX-style `grad` and `value_and_grad`."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, Union

import numpy as np

from ._tape import Tape, current_tape
from ._var import CONSTANTS, Var, _leaf_on

Argnums = Union[int, Sequence[int]]


def gradient(y: Var, xs: Var | Sequence[Var]) -> float | np.ndarray:
    """d y / d x for each x in `xs` (leaves or intermediates recorded before `y`): the adjoints
    of the course's Table 2. A single Var gives a float, a sequence a numpy array."""
    if y.__class__ is not Var:
        raise TypeError(f"gradient(y, xs): y must be a Var, got {type(y).__name__}")
    single = xs.__class__ is Var
    xs = [xs] if single else list(xs)
    for x in xs:
        if x.__class__ is not Var:
            raise TypeError(f"gradient(y, xs): every x must be a Var, got {type(x).__name__}")
        if x._seg.tape is not y._seg.tape:
            raise ValueError(f"gradient(y, xs): {x!r} is on another tape than y")
        if not x._seg.alive:
            x._seg.record(None)  # raises the StaleVarError
    y.backward()
    adjoint = y._seg.tape.adjoint
    nodes = np.fromiter((x._node for x in xs), np.int64, len(xs))
    out = np.zeros(len(xs))
    before = nodes < len(adjoint)  # a Var recorded after y does not affect it
    out[before] = adjoint[nodes[before]]
    return float(out[0]) if single else out


def value_and_grad(fn: Callable, argnums: Argnums = 0) -> Callable:
    """`fn` transformed to return (fn(*args), d fn / d args[argnums]).

    `fn` takes numbers (or lists and arrays of numbers) and returns a scalar. Each call records
    on a tape of its own and leaves nothing behind. An int `argnums` gives one derivative (a
    float, or an array shaped like its argument), a tuple gives a tuple of them."""
    nums = _check_argnums(argnums)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        for i in nums:
            if i >= len(args):
                raise TypeError(
                    f"{_name(fn)} was called with {len(args)} positional arguments, "
                    f"but argnums={argnums!r} asks for the derivative by argument {i}"
                )
        with Tape() as t:
            args = list(args)
            for i in nums:
                args[i] = _lift(t, args[i], i, fn)
            out = fn(*args, **kwargs)
            if out.__class__ is Var:
                value = out.value
                adjoint = t.backward(out._node)
            elif isinstance(out, CONSTANTS):  # fn ignored its arguments: a zero gradient
                value, adjoint = float(out), np.zeros(0)
            else:
                raise TypeError(
                    f"{_name(fn)} must return a scalar (a Var or a number) to be differentiated, "
                    f"got {type(out).__name__}"
                )
            grads = tuple(_read(adjoint, args[i]) for i in nums)
        return value, grads[0] if isinstance(argnums, int) else grads

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
    t = t or current_tape()
    was = t.recording
    t.recording = False
    try:
        yield
    finally:
        t.recording = was


def stop_gradient(x):
    """The value of `x` as a new leaf that no gradient flows through (a number stays a number)."""
    return x.detach() if x.__class__ is Var else x


def _check_argnums(argnums: Argnums) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or not all(isinstance(i, int) and i >= 0 for i in nums):
        raise TypeError(f"argnums must be a non-negative int or a tuple of them, got {argnums!r}")
    return nums


def _lift(t: Tape, x, i: int, fn: Callable):
    """A leaf for each number of argument `x`: a Var, or an object array of Vars."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()
    if isinstance(x, CONSTANTS):
        return _leaf_on(t, x)
    array = np.asarray(x, dtype=object)
    if array.ndim == 0 or not all(isinstance(v, CONSTANTS) for v in array.flat):
        raise TypeError(
            f"{_name(fn)}: argument {i} is to be differentiated, so it must be a number or a "
            f"list/array of numbers, got {type(x).__name__}"
        )
    out = np.empty(array.shape, dtype=object)
    for j, v in enumerate(array.flat):
        out.flat[j] = _leaf_on(t, v)
    return out


def _read(adjoint: np.ndarray, leaves) -> float | np.ndarray:
    if leaves.__class__ is Var:
        return float(adjoint[leaves._node]) if leaves._node < len(adjoint) else 0.0
    grads = np.zeros(leaves.shape)
    for j, leaf in enumerate(leaves.flat):
        if leaf._node < len(adjoint):
            grads.flat[j] = adjoint[leaf._node]
    return grads


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn)) + "()"
