"""Compiled passes over the entries of float arrays, for matrix nodes once numba is loaded
(`tape._tensor.compiled_pass` says when): a rule's value and partial in one pass where
numpy's form takes several (relu: five calls), and an adjoint times a partial under the sweep's
zero rule in one pass where numpy takes a product and a sum to check it. Each gives numpy's
numbers bit for bit.

Imported on first use (numba takes ~0.3 s to import), never by `import tape`.
"""
import math

import numpy as np
from numba import njit

from ._compiled import evaluate
from ._notice import announce_compiling
from ._rules import code_of

announce_compiling(__name__, "tape's element-wise kernels")


def _rule_pass(code: int):
    """The kernel of unary rule `code`: y and dy/da at each entry of the flat arrays a, in float64."""

    @njit(cache=True, error_model="numpy")
    def entries(a, y, p):
        for k in range(a.size):
            y[k], p[k], _ = evaluate(code, float(a[k]), 0.0)

    return entries


KERNELS: dict = {}  # rule name -> its kernel, made at its first use


def rule_pass(name: str, a: np.ndarray) -> tuple:
    """(y, (dy/da,)) of unary rule `name` at each entry of a (C order, float32 or float64)."""
    kernel = KERNELS.get(name) or KERNELS.setdefault(name, _rule_pass(code_of(name)))
    y, p = np.empty_like(a), np.empty_like(a)
    kernel(a.reshape(-1), y.reshape(-1), p.reshape(-1))
    return y, (p,)


@njit(cache=True, error_model="numpy")
def _scaled_entries(g, d, out):
    for k in range(g.size):
        v = g[k] * d[k]
        out[k] = v if math.isfinite(v) or g[k] != 0 and d[k] != 0 else 0.0


def scaled(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """g * d at each entry, 0 where g or d is 0 (an infinite partial meeting a zero adjoint): g
    and d of one shape and dtype, C order."""
    out = np.empty_like(g)
    _scaled_entries(g.reshape(-1), d.reshape(-1), out.reshape(-1))
    return out
