"""Numerical gradient checking, as the course notes describe it: along a random direction d of
the unit sphere, the directional derivative d . grad f(x) should equal the central difference
(f(x + eps d) - f(x - eps d)) / (2 eps). The difference never shares the engine's rules, so it
catches a wrong one.
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from ._forward import jvp
from ._tensor import Tensor
from ._transforms import grad, hvp
from ._transforms import jvp as tensor_jvp
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
    GradientCheckError naming the worst direction and both numbers.

    Near the edge of f's domain (sqrt at 1e-7) a step of eps would leave it: there the step is
    shrunk until both sides are inside (see `_central`), or ValueError says it could not be."""
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order!r}")
    if not isinstance(directions, numbers.Integral) or isinstance(directions, bool) or directions < 1:
        raise ValueError(f"check_grads: directions must be a positive integer (the random directions checked), got {directions!r}")
    if not eps > 0:
        raise ValueError(f"check_grads: eps must be a positive step, got {eps!r}")
    tensors = [isinstance(a, Tensor) for a in args]
    if any(tensors):  # differentiated with matrix nodes, evaluated on constant Tensors
        f = _on_tensors(f, tensors)
        args = [a.value if tensor else a for a, tensor in zip(args, tensors)]
    lift = lambda pieces: [Tensor(p) if tensor else p for p, tensor in zip(pieces, tensors)]  # noqa: E731
    f, args, _ = flat_arguments(f, args, range(len(args)), "check_grads")  # structures as flat vectors
    x = [np.asarray(a, dtype=np.float64) for a in args]
    rng = np.random.default_rng(seed)
    name = getattr(f, "__name__", repr(f))
    at = lambda flat: _pieces(flat, x)  # noqa: E731

    point = np.concatenate([a.ravel() for a in x])
    flat_f = lambda flat: float(f(*at(flat)))  # noqa: E731
    flat_grad = lambda flat: np.concatenate([np.ravel(g) for g in _as_tuple(grad(f, argnums=tuple(range(len(x))))(*lift(at(flat))))])  # noqa: E731
    forward = (lambda d: tensor_jvp(f, lift(at(point)), at(d))[1]) if any(tensors) else (lambda d: jvp(lambda *a: f(*a), at(point), at(d))[1])  # noqa: E731
    worst = None
    for k in range(directions):
        d = rng.standard_normal(point.size)
        d /= np.linalg.norm(d)
        difference, step = _central(flat_f, point, d, eps, name)
        checks = [("reverse mode (d . grad f)", float(d @ flat_grad(point)), difference),
                  ("forward mode (jvp along d)", float(forward(d)), difference)]
        if order == 2:
            at_point = Tensor(point) if any(tensors) else point  # the hvp on matrix nodes, the flat vector one Tensor
            hessian_d = np.asarray(hvp(lambda v: f(*_pieces(v, x)), at_point, d), dtype=np.float64)
            gradient_difference, _ = _central(flat_grad, point, d, eps, name)
            for j in range(point.size):
                checks.append((f"the Hessian along d (hvp), entry {j}", float(hessian_d[j]), float(gradient_difference[j])))
        for what, engine, numeric in checks:
            excess = abs(engine - numeric) - (atol + rtol * abs(numeric))
            if not excess <= 0 and (worst is None or excess > worst[0] or np.isnan(excess)):
                worst = (excess, k, d, what, engine, numeric, step)
    if worst is not None:
        _, k, d, what, engine, numeric, step = worst
        raise GradientCheckError(
            f"check_grads({name}): along direction {k} (d = {np.array2string(d, precision=4, threshold=8)}), "
            f"{what} is {engine!r} but the central difference (eps={step:g}) gives {numeric!r}; "
            f"the tolerance is |a - b| <= atol + rtol |b| with rtol={rtol}, atol={atol}"
        )


SHRINK, SMALLEST, INSIDE = 10.0, 1e-12, 1e-3  # see _central


def _central(fn: Callable, point: np.ndarray, d: np.ndarray, eps: float, name: str):
    """((fn(x + h d) - fn(x - h d)) / 2h, h): h = eps where fn is defined on both sides. Where
    a side is outside fn's domain (fn raises ValueError or an ArithmeticError, or is not
    finite), h shrinks tenfold until both sides are inside, then a thousandfold more, so the
    difference near the edge stays accurate (its error grows with f's higher derivatives,
    which blow up there). Below eps * 1e-12 ValueError says the check could not be made."""
    h, shrunk, reason = eps, False, None
    while h >= eps * SMALLEST:
        try:
            with np.errstate(all="ignore"):
                plus, minus = fn(point + h * d), fn(point - h * d)
            if np.all(np.isfinite(plus)) and np.all(np.isfinite(minus)):
                break
            reason = "it is not finite there"
        except (ValueError, ArithmeticError) as e:
            reason = f"{type(e).__name__}: {e}"
        h, shrunk = h / SHRINK, True
    else:
        raise ValueError(
            f"check_grads({name}): f cannot be evaluated on both sides of the point for any step from eps={eps:g} "
            f"down to {eps * SMALLEST:g} ({reason}): the point is on the edge of f's domain, where no central "
            "difference exists; check a point inside it"
        )
    if shrunk:
        h *= INSIDE
        plus, minus = fn(point + h * d), fn(point - h * d)
    return (plus - minus) / (2 * h), h


def _on_tensors(f: Callable, tensors: list[bool]) -> Callable:
    """f taking plain arrays where it took Tensors: each such argument is made a Tensor again
    (a constant for the differences); a Tensor (a leaf `grad` lifts) or a DualTensor (a piece
    of the hvp's flat vector) is passed as it is."""
    def on_arrays(*args):
        return f(*(Tensor(a, requires_grad=False) if tensor and isinstance(a, (np.ndarray, numbers.Real)) else a
                   for a, tensor in zip(args, tensors)))

    return on_arrays


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
