"""The comparer: each transform of a program by wengert against PyTorch's, within a tolerance
that follows the dtype and the program's own conditioning."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .backends import REFUSALS, Skip, torch_reference, wengert
from .generate import Program

EPS = {"float64": np.finfo(np.float64).eps, "float32": np.finfo(np.float32).eps}
OTHER = {"float64": "float32", "float32": "float64"}


@dataclass
class Discrepancy:
    program: Program
    quantity: str
    what: str
    ours: object
    theirs: object

    def __str__(self) -> str:
        return (f"{self.quantity}: {self.what}\n{self.program}\n"
                f"  wengert: {_show(self.ours)}\n  torch:   {_show(self.theirs)}")

    @property
    def signature(self) -> tuple:
        """What kind of discrepancy this is (the report counts each kind once)."""
        last = self.program.steps[-1][0]
        return self.program.kind, self.program.dtype, self.quantity, last, self.what.split(":")[0]


def _show(x) -> str:
    if isinstance(x, BaseException):
        return f"{type(x).__name__}: {x}"
    return np.array2string(np.asarray(x), precision=10, separator=", ") if not isinstance(x, tuple) else \
        "(" + ", ".join(_show(v) for v in x) + ")"


def _leaves(x) -> list:
    """A result as its arrays in order: tuples and lists flattened, tensors to numpy."""
    if isinstance(x, (tuple, list)):
        return [a for v in x for a in _leaves(v)]
    if isinstance(x, torch.Tensor):
        return [x.detach().numpy()]
    return [x if isinstance(x, np.ndarray) else np.float64(x)]  # a number stays a number


def differ(ours, theirs, other, dtype: str) -> str | None:
    """Why `ours` is not `theirs`, or None. The tolerance per entry: 1e3 ulps of the dtype of the
    entry's magnitude, plus 8 times an estimate of the error the program itself makes in the dtype:
    PyTorch's result in the other precision shows how ill-conditioned the program is there (for
    float32, |t32 - t64| is that error; for float64 the same scaled by eps64/eps32). So a program that
    subtracts nearly equal numbers, or a tan near a pole, gets a tolerance it needs, and a
    well-conditioned one a tight one. Where PyTorch is not finite it cannot judge, except that both
    infinite must agree in sign; where it is finite, ours must be."""
    ours, theirs, other = _leaves(ours), _leaves(theirs), _leaves(other)
    if len(ours) != len(theirs):
        return f"structure: {len(ours)} arrays, torch {len(theirs)}"
    for k, (a, b, c) in enumerate(zip(ours, theirs, other)):
        if a.shape != b.shape:
            return f"shape: result {k} has shape {a.shape}, torch's {b.shape}"
        if isinstance(a, np.ndarray) and a.dtype != np.dtype(dtype):  # a number (a Var's value) is float64 by design
            return f"dtype: result {k} is {a.dtype}, the program {dtype}"
        a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
        judged = np.isfinite(b)
        if not np.isfinite(a[judged]).all():
            return f"not finite: result {k} is not finite where torch's is"
        infinite = np.isinf(b)
        if (a[infinite] != b[infinite]).any():
            return f"infinity: result {k} differs from torch's infinity"
        conditioning = np.abs(b - c) * (EPS["float64"] / EPS["float32"] if dtype == "float64" else 1.0)
        conditioning = np.where(np.isfinite(conditioning), conditioning, np.inf)
        allowed = 1e3 * EPS[dtype] * np.maximum(np.abs(b), 1e-3) + 8 * conditioning
        bad = judged & ~(np.abs(a - b) <= allowed)
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            return f"values: result {k} entry {i}: {a.ravel()[i]!r} against {b.ravel()[i]!r}"
    return None


def _shares_memory(result) -> bool:
    arrays = [a for a in _leaves(result) if isinstance(a, np.ndarray) and a.size > 1]
    return any(np.shares_memory(arrays[i], arrays[j]) for i in range(len(arrays)) for j in range(i))


def check(program: Program, rng: np.random.Generator) -> list[Discrepancy]:
    """Every transform of the program, wengert's against PyTorch's."""
    dtype = program.dtype
    c64, _ = torch_reference(program, "float64", 0.0, [np.zeros_like(x) for x in program.inputs], 0)
    shape = tuple(c64["value"]().shape)
    cotangent = np.asarray(rng.standard_normal(shape), dtype=dtype)
    tangents = [np.asarray(rng.standard_normal(np.shape(x)), dtype=dtype) for x in program.inputs]
    n = len(program.inputs)
    argnums = int(rng.integers(0, n)) if rng.random() < 0.4 else tuple(sorted(set(rng.integers(0, n, n).tolist())))
    theirs, nonfinite = torch_reference(program, dtype, cotangent, tangents, argnums)
    other, _ = torch_reference(program, OTHER[dtype], cotangent, tangents, argnums)
    ours = wengert(program, cotangent, tangents, argnums, program.redraw(rng))
    found = []
    for name, compute in ours.items():
        if name.endswith("jacobian") and np.prod(shape) * sum(np.size(x) for x in program.inputs) > 400:
            continue
        try:
            result = compute()
        except Skip:
            continue
        except REFUSALS as e:
            if not nonfinite:
                found.append(Discrepancy(program, name, "refused: torch computes it finite", e, theirs["value"]()))
            continue
        except Exception as e:  # noqa: BLE001 - any other error on input inside the domain is a discrepancy
            found.append(Discrepancy(program, name, f"error: {type(e).__name__}", e, None))
            continue
        reference = theirs[name]()
        why = differ(result, reference, other[name](), dtype)
        if why is None and name in ("backward", "vjp") and _shares_memory(result):
            why = "memory: two gradients share memory"
        if why is not None:
            found.append(Discrepancy(program, name, why, result, reference))
    return found


def shrink(found: Discrepancy, seed) -> Discrepancy:
    """The same discrepancy on the shortest prefix of its program that still shows it: a smaller reproducer."""
    for n in range(1, len(found.program.steps)):
        try:
            same = [d for d in check(found.program.prefix(n), np.random.default_rng(seed)) if d.quantity == found.quantity]
        except Exception:  # noqa: BLE001 - a prefix PyTorch itself cannot run (rare): try a longer one
            continue
        if same:
            return same[0]
    return found
