"""Edge values, apart from the random programs: 0, -0, subnormals, ±inf, overflowing arguments and
large logits, each through every operation it concerns, on every kind of node, checked as the random
programs are (a refusal is consistent where PyTorch's value is not finite)."""
from __future__ import annotations

import numpy as np

from .check import Discrepancy, check
from .generate import UNARY, Const, Program

TINY = {"float64": 5e-324 * 1e3, "float32": 1e-40}  # subnormals
HUGE = {"float64": 1e308, "float32": 3e38}
KINDS = (("scalar", "float64"), ("array", "float64"), ("tensor", "float64"), ("tensor", "float32"))


def _program(kind: str, dtype: str, x, chain: list) -> Program:
    """x through the chain of (op, operands other than the running value, params); an operand None
    stands for the running value, so ("pow", (None, Const(0)), {}) is v ** 0."""
    x = np.asarray(x, dtype=dtype)
    if kind == "scalar":
        x = x.reshape(-1)
        steps = [("input", (), {"index": 0}), ("entry", (0,), {"index": 0})]
    else:
        steps = [("input", (), {"index": 0})]
    for op, operands, params in chain:
        at = len(steps) - 1
        steps.append((op, tuple(at if a is None else a for a in operands), params))
    return Program(kind, dtype, [x], [False], steps)


def _cases(kind: str, dtype: str):
    tiny, huge = TINY[dtype], HUGE[dtype]
    points = [0.0, -0.0, tiny, -tiny, np.inf, -np.inf, 1e3, -1e3, huge]
    for x in points:
        yield x, []  # the identity: the output is the leaf itself
        for op in UNARY[:-1]:  # not stop_gradient
            yield x, [(op, (None,), {})]
        for c in (0, 2, -1, 0.5, 0.0):
            yield x, [("pow", (None, Const(c)), {})]
        for c in (0.5, 2.0):  # c ** x (0 ** x has no derivative at 0, whatever PyTorch's convention)
            yield x, [("pow", (Const(c), None), {})]
        for op in ("truediv", "mul"):
            yield x, [(op, (Const(1.5), None), {})]
            yield x, [(op, (None, Const(0.0)), {})]
        yield x, [("relu", (None,), {}), ("sqrt", (None,), {})]  # sqrt'(0) is inf, relu' is 0: the product is 0
        yield x, [("relu", (None,), {}), ("log1p", (None,), {})]
    if kind == "scalar":
        return
    for big in (1e3, huge, -huge):
        for logits in ([big, big], [big, big - 1.0], [big, -big], [big, 0.0, big]):
            reduce = {"axis": None, "method": True} | ({"keepdims": False} if kind == "tensor" else {})
            yield logits, [("logsumexp", (None,), reduce)]
            if kind == "tensor":
                yield [logits], [("softmax_cross_entropy", (None,), {"labels": np.array([1])})]
    yield [0.0, -0.0, tiny], [("relu", (None,), {}), ("sqrt", (None,), {}), ("sum", (None,), {"axis": None, "method": True})]


def edges() -> list[Discrepancy]:
    found = []
    for kind, dtype in KINDS:
        for k, (x, chain) in enumerate(_cases(kind, dtype)):
            program = _program(kind, dtype, x, chain)
            for d in check(program, np.random.default_rng(k)):
                d.where = f"edge values, {kind} {dtype} case {k}"
                found.append(d)
    return found
