"""The comparer: each transform of a program by wengert against PyTorch's, within a tolerance
that follows the dtype and the program's own conditioning."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .backends import REFUSALS, Skip, torch_reference, wengert
from .generate import Program

EPS = {"float64": np.finfo(np.float64).eps, "float32": np.finfo(np.float32).eps}
# about 5e6 and 800 ulps: libm's and numba's functions differ by an ulp or two, and a few operations of
# growing condition (tan near a pole, exp of exp) multiply that; a wrong derivative is off by far more
RTOL = {"float64": 1e-9, "float32": 1e-4}
OTHER = {"float64": "float32", "float32": "float64"}
TENSORS = "as Tensors: "
UNJUDGED: list[str] = []  # quantities PyTorch failed to compute: counted and shown, not judged
SECOND_ORDER = ("hessian", "hvp", "grad of grad", "traced: hessian")


@dataclass
class Discrepancy:
    program: Program
    quantity: str
    what: str
    ours: object
    theirs: object
    where: str = ""  # how to replay it

    def __str__(self) -> str:
        return (f"{self.quantity}: {self.what}\n{self.program}\n"
                f"  wengert: {_show(self.ours)}\n  torch:   {_show(self.theirs)}")

    @property
    def signature(self) -> tuple:
        """What kind of discrepancy this is (the report counts each kind once): what differs, and where."""
        what = self.what.split(":")[0]
        return what, self.quantity if what == "dtype" else self.program.steps[-1][0]


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


def differ(ours, theirs, other, dtype: str, want: str | None, kinks: bool = False, nearby=None) -> str | None:
    """Why `ours` is not `theirs`, or None; arrays of ours must be of dtype `want` (if given).

    The tolerance per entry: RTOL of the entry's magnitude plus of the array's mean magnitude (a sum
    or a product of matrices cancels to entries far smaller than its terms, and an exact 0 of
    PyTorch's may come out as 1e-16), plus 8 times an estimate of the error the program itself makes:
    PyTorch's result in the other precision shows how ill-conditioned the program is there (for
    float32, |t32 - t64| is that error; for float64 the same scaled by eps64/eps32). So a program that
    subtracts nearly equal numbers, or a tan near a pole, gets the tolerance it needs, and a
    well-conditioned one a tight one. `nearby`, PyTorch's result in the same precision at inputs
    moved by two ulps (`_nearby`), is a second estimate, taken where it is larger: the first can be
    small by chance where the program is chaotic (float32 cos of a sinh near 3e6, seed 20261207
    program 493, where the two precisions happened to agree at one entry).

    Where PyTorch's float32 result overflows and its float64 one does not, ours may overflow too, or
    be close to the float64 one.
    Where PyTorch is infinite, ours must be infinite, of either sign (at a signed zero the sign is a
    convention: PyTorch's own VJP and JVP of sqrt at -0.0 disagree), or, with `kinks` (a second
    derivative), nan: wengert's documented "does not exist" at a domain's edge. Where PyTorch is
    nan it cannot judge; where it is finite, ours must be finite and close."""
    ours, theirs, other = _leaves(ours), _leaves(theirs), _leaves(other)
    nearby = _leaves(nearby) if nearby is not None else [None] * len(theirs)
    if len(ours) != len(theirs):
        return f"structure: {len(ours)} arrays, torch {len(theirs)}"
    for k, (a, b, c, p) in enumerate(zip(ours, theirs, other, nearby)):
        if a.shape != b.shape:
            return f"shape: result {k} has shape {a.shape}, torch's {b.shape}"
        wrong_dtype = want and isinstance(a, np.ndarray) and a.dtype != np.dtype(want)  # a Var's number is float64
        a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
        overflowed = (dtype == "float32") & ~np.isfinite(b) & np.isfinite(c)  # ours may overflow too, or not
        b = np.where(overflowed, c, b)
        judged = np.isfinite(b) & ~(overflowed & np.isinf(a))
        if not np.isfinite(a[judged]).all():
            return f"not finite: result {k} is not finite where torch's is"
        infinite = np.isinf(b)
        if not (np.isinf(a[infinite]) | (kinks & np.isnan(a[infinite]))).all():
            return f"infinity: result {k} is finite where torch's is infinite"
        conditioning = np.abs(b - c) * (EPS["float64"] / EPS["float32"] if dtype == "float64" else 1.0)
        conditioning = np.where(np.isfinite(conditioning), conditioning, 0.0)  # no estimate where the other overflows
        if p is not None and np.shape(p) == b.shape:
            moved = np.abs(np.asarray(p, dtype=np.float64) - b)
            conditioning = np.maximum(conditioning, np.where(np.isfinite(moved), moved, 0.0))
        scale = np.abs(b[judged]).mean() if judged.any() else 0.0
        # 1e-2: inputs and partials are O(1), so a sum of them that cancels to 0 keeps a few of its
        # terms' rounding errors (seed 6 program 153: float32 (c x)/x gives 1.2e-7 where torch gives 0)
        allowed = RTOL[dtype] * (np.abs(b) + scale + 1e-2) + 8 * conditioning
        bad = judged & ~(np.abs(a - b) <= allowed)
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            return f"values: result {k} entry {i}: {a.ravel()[i]!r} against {b.ravel()[i]!r}"
        if wrong_dtype:
            return f"dtype: result {k} is {ours[k].dtype}, expected {want}"
    return None


def _dtype_wanted(name: str, value, dtype: str) -> str | None:
    """A gradient and a Jacobian (made by sweeps, as torch's jacrev) have the leaf's dtype; a JVP the
    output's (float64 where the output is a Var: a scalar node is float64 by design, and so is a matrix
    node made of Vars); a value is not checked."""
    if name.endswith("jvp"):
        return value.dtype.name if isinstance(value, np.ndarray) else dtype
    return None if name.endswith("value") else dtype


def _jacobian_overflows(program: Program, theirs: dict) -> bool:
    """Whether PyTorch's own Jacobian (by reverse sweeps, as wengert builds a Tensor JVP) of a
    one-input matrix-node program overflows in its dtype: J v is then inf although v J's rows
    are finite, the README's stated limit of a Tensor JVP."""
    return (program.kind == "tensor" and len(program.inputs) == 1
            and not all(np.isfinite(j).all() for j in _leaves(theirs["jacobian"]())))


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
    nearby, _ = torch_reference(_nearby(program), dtype, cotangent, tangents, argnums)
    ours = wengert(program, cotangent, tangents, argnums, program.redraw(rng))
    found, results = [], {}
    for name, compute in ours.items():
        if name.endswith("jacobian") and np.prod(shape) * sum(np.size(x) for x in program.inputs) > 400:
            continue
        try:
            reference, other_reference, nearby_reference = theirs[name](), other[name](), nearby[name]()
        except RuntimeError as e:  # PyTorch's own failure (its jvp of a matmul of 0-d stacks mixes dtypes)
            UNJUDGED.append(f"{name} of {program.kind} {program.dtype}: {e}")
            continue
        try:
            result = compute()
        except Skip:
            continue
        except REFUSALS as e:  # consistent where PyTorch's values on the way, or this result, are not finite
            if not nonfinite and all(np.isfinite(r).all() for r in _leaves(reference)):
                found.append(Discrepancy(program, name, "refused: torch computes it finite", e, reference))
            continue
        except Exception as e:  # noqa: BLE001 - any other error on input inside the domain is a discrepancy
            found.append(Discrepancy(program, name, f"error: {type(e).__name__}", e, None))
            continue
        results[name] = result
        why = differ(result, reference, other_reference, dtype, _dtype_wanted(name, results.get("value"), dtype),
                     kinks=name in SECOND_ORDER, nearby=nearby_reference)
        if why and why.startswith("not finite") and name == "jvp" and _jacobian_overflows(program, theirs):
            why = None  # a matrix node's JVP is J v from sweeps (forward mode on Tensors is issue 30)
        if why is None and name in ("backward", "vjp") and _shares_memory(result):
            why = "memory: two gradients share memory"
        if why is not None:
            found.append(Discrepancy(program, name, why, result, reference))
    return found + _paths(program, results)


def _nearby(program: Program) -> Program:
    """The program at its inputs moved by two ulps each, up or down (relative: a sign and a domain
    are kept), the same moves every time: what PyTorch computes there shows how far the program's
    own rounding can move its results."""
    signs = np.random.default_rng(0)
    moved = [np.asarray(np.asarray(x) * (1 + 2 * EPS[program.dtype] * signs.choice([-1.0, 1.0], np.shape(x))),
                        dtype=np.asarray(x).dtype) for x in program.inputs]
    return dataclasses.replace(program, inputs=moved)


def _paths(program: Program, results: dict) -> list[Discrepancy]:
    """wengert against itself where PyTorch cannot judge (its nan of 0 * inf): the same program on
    VarArrays and on matrix nodes must be nan at the same entries."""
    found = []
    for name, result in results.items():
        if name.startswith(TENSORS) and name[len(TENSORS):] in results:
            pairs = zip(_leaves(result), _leaves(results[name[len(TENSORS):]]))
            if any(np.shape(a) == np.shape(b) and (np.isnan(a) != np.isnan(b)).any() for a, b in pairs):
                found.append(Discrepancy(program, name, "paths: nan on matrix nodes, not on VarArrays, or the other way",
                                         result, results[name[len(TENSORS):]]))
    return found


def shrink(found: Discrepancy, seed) -> Discrepancy:
    """The same discrepancy on the shortest prefix of its program that still shows it: a smaller reproducer."""
    for n in range(1, len(found.program.steps)):
        try:
            same = [d for d in check(found.program.prefix(n), np.random.default_rng(seed))
                    if (d.quantity, d.signature[0]) == (found.quantity, found.signature[0])]
        except Exception:  # noqa: BLE001 - a prefix PyTorch itself cannot run (rare): try a longer one
            continue
        if same:
            return same[0]
    return found
