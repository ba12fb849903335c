"""Structures of numbers: the notes' "reverse mode AD on data structures" (JAX's pytrees).

A structure is dicts, lists, tuples, named tuples and dataclasses, nested, with numbers and
arrays at the leaves. A list or tuple of numbers alone, nested to a rectangular shape, is one
array leaf, as it always was here ([[1, 2], [3, 4]] is a 2x2 array, its derivative an array); one
that is ragged or mixes numbers and lists is a container of its entries ((2.0, [3.0, 4.0]) is a
tuple of a number and a 2-array, [[1, 2], [3]] a list of a 2-array and a 1-array).
The transforms differentiate a function of a structure as the same function of one flat vector
of its entries, then give the derivative back in the structure: its adjoint has the structure
of its value. `flatten` and `Structure.unflatten` are the whole mechanism.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np

from ._forward import Dual
from ._ops import Var
from ._var import CONSTANTS

SCALARS = (*CONSTANTS, Var, Dual)  # what a leaf's entries may be: numbers, or Vars and Duals of an outer derivative


class Structure:
    """How to rebuild a structure from its leaves: a container's kind and its children, or a
    leaf's shape (a shape of None: a scalar given as a number)."""

    def __init__(self, kind: str, meta=None, children: tuple = (), shape: tuple | None = None) -> None:
        self.kind, self.meta, self.children, self.shape = kind, meta, children, shape
        self.leaves: list[Structure] = [self] if kind == "leaf" else [leaf for c in children for leaf in c.leaves]
        self.size = int(np.prod(shape or ())) if kind == "leaf" else sum(c.size for c in children)

    def __eq__(self, other) -> bool:
        return isinstance(other, Structure) and self.describe() == other.describe()

    def describe(self) -> str:
        """A one-line description, such as dict(w: (3,), b: scalar), to name a mismatch."""
        if self.kind == "leaf":
            return "scalar" if not self.shape else str(self.shape)
        if self.kind in ("dict", "namedtuple", "dataclass"):
            keys = self.meta[1] if self.kind != "dict" else self.meta
            name = "dict" if self.kind == "dict" else self.meta[0].__name__
            return f"{name}({', '.join(f'{k!r}: {c.describe()}' for k, c in zip(keys, self.children))})"
        return f"{self.kind}[{', '.join(c.describe() for c in self.children)}]"

    def build(self, leaves: Sequence) -> object:
        """The structure with `leaves` (one object per leaf, in order) at its leaves."""
        it = iter(leaves)
        return self._build(it)

    def _build(self, it):
        if self.kind == "leaf":
            return next(it)
        values = [c._build(it) for c in self.children]
        if self.kind == "dict":
            return dict(zip(self.meta, values))
        if self.kind == "list":
            return values
        if self.kind == "tuple":
            return tuple(values)
        if self.kind == "namedtuple":
            return self.meta[0](*values)
        return dataclasses.replace(self.meta[2], **dict(zip(self.meta[1], values)))

    def unflatten(self, flat) -> object:
        """The structure with the entries of the 1-d array `flat` (numbers, Vars or Duals) at
        its leaves, each leaf shaped as it was; numbers at scalar leaves as floats."""
        pieces, at = [], 0
        for leaf in self.leaves:
            piece = flat[at : at + leaf.size]
            at += leaf.size
            if leaf.shape is None:
                pieces.append(float(piece[0]) if isinstance(piece[0], CONSTANTS) else piece[0])
            else:
                pieces.append(np.asarray(piece).reshape(leaf.shape))
        return self.build(pieces)

    def blocks(self, inner: Structure, matrix: np.ndarray) -> object:
        """A matrix over (this structure's entries) x (inner's entries) as a structure of
        structures: block [i][j] shaped leaf i's shape + leaf j's shape (as JAX's jacobian)."""
        rows, at = [], 0
        for outer_leaf in self.leaves:
            row, col = [], 0
            for inner_leaf in inner.leaves:
                block = matrix[at : at + outer_leaf.size, col : col + inner_leaf.size]
                shape = (outer_leaf.shape or ()) + (inner_leaf.shape or ())
                row.append(float(block[0, 0]) if shape == () else block.reshape(shape))
                col += inner_leaf.size
            rows.append(inner.build(row))
            at += outer_leaf.size
        return self.build(rows)


def is_structure(x) -> bool:
    """Whether x is a container of leaves rather than one leaf (a number, an array, a rectangular
    list of numbers: those the transforms have always taken as they are)."""
    if isinstance(x, dict) or _is_namedtuple(x) or (dataclasses.is_dataclass(x) and not isinstance(x, type)):
        return True
    return isinstance(x, (list, tuple)) and not _array_like(x)


def flatten(tree, where: str = "") -> tuple[np.ndarray, Structure]:
    """(the entries of every leaf of `tree`, in order, as one 1-d array; its Structure). A leaf
    that is not numbers is refused, naming where it is (`where` then the path, as ["w"][2])."""
    pieces: list[np.ndarray] = []
    structure = _flatten(tree, where, pieces)
    flat = np.concatenate(pieces) if pieces else np.zeros(0)
    return (flat.astype(np.float64) if all(isinstance(v, CONSTANTS) for v in flat) else flat), structure


def _flatten(x, path: str, pieces: list) -> Structure:
    if isinstance(x, dict):
        keys = tuple(x)
        return Structure("dict", keys, tuple(_flatten(x[k], f"{path}[{k!r}]", pieces) for k in keys))
    if _is_namedtuple(x):
        children = tuple(_flatten(v, f"{path}.{k}", pieces) for k, v in zip(x._fields, x))
        return Structure("namedtuple", (type(x), x._fields), children)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        names = tuple(f.name for f in dataclasses.fields(x) if f.init)
        children = tuple(_flatten(getattr(x, k), f"{path}.{k}", pieces) for k in names)
        return Structure("dataclass", (type(x), names, x), children)
    if isinstance(x, (list, tuple)) and not _array_like(x):
        kind = "list" if isinstance(x, list) else "tuple"
        return Structure(kind, None, tuple(_flatten(v, f"{path}[{i}]", pieces) for i, v in enumerate(x)))
    if isinstance(x, SCALARS):
        pieces.append(np.array([x], dtype=object))
        return Structure("leaf", shape=None)
    if _array_like(x):
        array = np.asarray(x, dtype=object)
        pieces.append(array.ravel())
        return Structure("leaf", shape=array.shape)
    raise TypeError(
        f"{path or 'the argument'} is a {type(x).__name__}: a differentiated structure holds dicts, lists, "
        "tuples, named tuples and dataclasses with numbers or arrays of numbers at the leaves"
    )


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _array_like(x) -> bool:
    """A number array, or a (nested, rectangular) list or tuple of numbers, Vars or Duals: not
    ragged, not numbers beside lists."""
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "biuf" or all(isinstance(v, SCALARS) for v in x.flat)
    if not (_entries(x) and isinstance(x, (list, tuple))):
        return False
    try:
        array = np.asarray(x, dtype=object)
    except ValueError:  # ragged in a way numpy refuses
        return False
    return all(isinstance(v, SCALARS) for v in array.flat)  # ragged: numpy keeps the inner lists as entries


def _entries(x) -> bool:
    """Whether x is a number (Var, Dual) or a plain list or tuple of such entries."""
    if isinstance(x, (list, tuple)) and not _is_namedtuple(x):
        return all(_entries(v) for v in x)
    return isinstance(x, SCALARS)


def flat_arguments(fn: Callable, args: Sequence, nums: Sequence[int], name: str):
    """(fn of flat vectors, args with each structured args[i] for i in nums flattened, the
    Structures by i): differentiating the first at the second is differentiating fn at args."""
    args, structures = list(args), {}
    for i in nums:
        if i < len(args) and is_structure(args[i]):
            args[i], structures[i] = flatten(args[i], f"{name}: argument {i} at ")
    if not structures:
        return fn, args, structures

    @functools.wraps(fn)
    def flat_fn(*flat_args, **kwargs):
        rebuilt = [structures[i].unflatten(a) if i in structures else a for i, a in enumerate(flat_args)]
        return fn(*rebuilt, **kwargs)

    return flat_fn, args, structures


def restore(structures: dict, nums: Sequence[int], grads):
    """The derivatives by flat argument (one, or a tuple by nums) back in their structures."""
    if not structures:
        return grads
    if not isinstance(grads, tuple):
        return structures[nums[0]].unflatten(np.asarray(grads)) if nums[0] in structures else grads
    return tuple(structures[i].unflatten(np.asarray(g)) if i in structures else g for i, g in zip(nums, grads))


def flat_outputs(fn: Callable, name: str) -> tuple[Callable, dict]:
    """(fn with a structured result flattened to a 1-d array, a dict whose "structure" entry
    the first structured result sets): a function of structures as one of flat vectors."""
    seen: dict = {}

    @functools.wraps(fn)
    def flat_fn(*args, **kwargs):
        out = fn(*args, **kwargs)
        if not is_structure(out):
            return out
        out, seen["structure"] = flatten(out, f"{name}: the output at ")
        return out

    return flat_fn, seen


def leaf_structure(shape: tuple) -> Structure:
    """The Structure of one leaf of this shape (a number for ()), to pair with a structured one."""
    return Structure("leaf", shape=tuple(shape) or None)


def same_structure(expected: Structure, given, what: str) -> np.ndarray:
    """`given` flattened, refused with both descriptions unless its structure is `expected`."""
    flat, structure = flatten(given, f"{what} at ")
    if structure != expected:
        raise ValueError(f"{what} has the structure {structure.describe()}, expected {expected.describe()}")
    return flat
