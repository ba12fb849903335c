"""Numerical gradient checking, as the course notes describe it: along a random direction d of
the unit sphere, the directional derivative d . grad f(x) should equal the central difference
(f(x + eps d) - f(x - eps d)) / (2 eps). The difference never shares the engine's rules, so it
catches a wrong one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._forward import jvp
from ._transforms import grad, hvp
from ._tree import flat_arguments


class GradientCheckError(AssertionError):
    """A derivative that disagrees with central differences beyond the tolerance."""


def check_grads(f: Callable, *args, order: int = 1, directions: int = 3, eps: float = 1e-6,
                rtol: float = 1e-5, atol: float = 1e-6, seed: int = 0) -> None:
    """Check f's derivatives at args (numbers, arrays or structures) along `directions` random unit
    directions d, drawn over all the arguments' entries at once.

    order=1: reverse mode (d . grad f) and forward mode (jvp along d) against the central
    difference of f. order=2: also the Hessian along d (hvp) against the central difference of
    the gradient, (grad f(x + eps d) - grad f(x - eps d)) / (2 eps). Two numbers a (the engine's)
    and b (the difference's) agree when |a - b| <= atol + rtol |b|; otherwise this raises
    GradientCheckError naming the worst direction and both numbers."""
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order!r}")
    f, args, _ = flat_arguments(f, args, range(len(args)), "check_grads")  # structures as flat vectors
    x = [np.asarray(a, dtype=np.float64) for a in args]
    rng = np.random.default_rng(seed)
    name = getattr(f, "__name__", repr(f))
    at = lambda flat: _pieces(flat, x)  # noqa: E731

    point = np.concatenate([a.ravel() for a in x])
    flat_f = lambda flat: float(f(*at(flat)))  # noqa: E731
    flat_grad = lambda flat: np.concatenate([np.ravel(g) for g in _as_tuple(grad(f, argnums=tuple(range(len(x))))(*at(flat)))])  # noqa: E731
    worst = None
    for k in range(directions):
        d = rng.standard_normal(point.size)
        d /= np.linalg.norm(d)
        difference = (flat_f(point + eps * d) - flat_f(point - eps * d)) / (2 * eps)
        checks = [("reverse mode (d . grad f)", float(d @ flat_grad(point)), difference),
                  ("forward mode (jvp along d)", float(jvp(lambda *a: f(*a), at(point), at(d))[1]), difference)]
        if order == 2:
            hessian_d = np.asarray(hvp(lambda v: f(*_pieces(v, x)), point, d), dtype=np.float64)
            gradient_difference = (flat_grad(point + eps * d) - flat_grad(point - eps * d)) / (2 * eps)
            for j in range(point.size):
                checks.append((f"the Hessian along d (hvp), entry {j}", float(hessian_d[j]), float(gradient_difference[j])))
        for what, engine, numeric in checks:
            excess = abs(engine - numeric) - (atol + rtol * abs(numeric))
            if not excess <= 0 and (worst is None or excess > worst[0] or np.isnan(excess)):
                worst = (excess, k, d, what, engine, numeric)
    if worst is not None:
        _, k, d, what, engine, numeric = worst
        raise GradientCheckError(
            f"check_grads({name}): along direction {k} (d = {np.array2string(d, precision=4, threshold=8)}), "
            f"{what} is {engine!r} but the central difference (eps={eps}) gives {numeric!r}; "
            f"the tolerance is |a - b| <= atol + rtol |b| with rtol={rtol}, atol={atol}"
        )


def _pieces(v, x: list) -> list:
    """A flat array (of numbers, Vars or Duals) split into arguments shaped like x."""
    out, at = [], 0
    for a in x:
        piece = v[at : at + a.size]
        out.append(piece[0] if a.ndim == 0 else piece.reshape(a.shape))
        at += a.size
    return out


def _as_tuple(g) -> tuple:
    return g if isinstance(g, tuple) else (g,)
