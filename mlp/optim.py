"""Optimizers, written as the course notes (004) give them, on a model's flat `Parameters`.

`step()` updates `params.values` in place from `params.grad` (Algorithm 3's accumulator, the
batch's mean gradient by default; or a gradient given, of any float dtype, times a scale) and
returns how many parameters stopped being finite numbers;
`zero_grad()` empties the accumulator. With `weight_decay` the gradient gets `weight_decay * theta`
added first (L2 regularisation, as in PyTorch).

Each rule is one compiled pass over the parameters (`mlp/_updates.py`), weight decay and the
finiteness count included: numpy would make a pass per operation, and the pause between two
batches would be long enough for the compiled accumulator's idle threads to fall asleep.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from . import _updates

from .nn import Parameters


class Optimizer(ABC):
    """The shared part: arguments, the step counter, weight decay and the state for checkpoints."""

    state_names: tuple[str, ...] = ()  # the per-parameter arrays, saved with the checkpoint

    def __init__(self, params: Parameters, lr: float, weight_decay: float = 0.0) -> None:
        _check(lr > 0, "lr", "a positive learning rate", lr)
        _check(weight_decay >= 0, "weight_decay", "a non-negative number", weight_decay)
        self.params, self.lr, self.weight_decay = params, float(lr), float(weight_decay)
        self.steps = 0
        for name in self.state_names:
            setattr(self, name, np.zeros(len(params)))

    def zero_grad(self) -> None:
        self.params.zero_grad()

    def step(self, grad: np.ndarray | None = None, scale: float = 1.0) -> int:
        """One update of the parameters from `scale` times their gradient (`grad`, laid out as the
        parameters, in place of the accumulator: a float32 step's, read without a converted copy;
        `scale`, clipping's), which it leaves in the accumulator, as a float64 gradient clipped;
        returns how many of them are not finite numbers after it (0 unless the run diverged)."""
        g = self.params.grad if grad is None else grad
        if g.shape != self.params.grad.shape or g.dtype.kind != "f":
            raise ValueError(f"step(grad=...): expected floats of shape {self.params.grad.shape}, got "
                             f"{g.dtype} of shape {g.shape}")
        self.steps += 1
        return self.update(self.params.values, g, float(scale))

    @abstractmethod
    def update(self, theta: np.ndarray, g: np.ndarray, scale: float) -> int:
        """Change `theta` in place, given the gradient `scale * g` (weight decay not yet added),
        which the same pass keeps in the accumulator: the optimizer's rule; returns the count of
        entries of theta then not finite."""

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name).copy() for name in self.state_names}
        state["steps"] = np.array(self.steps)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self.state_names:
            if np.shape(state[name]) != (len(self.params),):
                raise ValueError(f"optimizer state {name} has shape {np.shape(state[name])}, expected {(len(self.params),)}")
            getattr(self, name)[:] = state[name]
        self.steps = int(state["steps"])


class SGD(Optimizer):
    """theta = theta - lr * g."""

    def update(self, theta, g, scale):
        return _updates.sgd(theta, g, scale, self.params.grad, self.lr, self.weight_decay)


class Momentum(Optimizer):
    """v = beta v + (1 - beta) g;  theta = theta - lr * v."""

    state_names = ("v",)

    def __init__(self, params, lr=0.01, beta=0.9, weight_decay=0.0):
        _check(0 <= beta < 1, "beta", "a number in [0, 1)", beta)
        super().__init__(params, lr, weight_decay)
        self.beta = beta

    def update(self, theta, g, scale):
        return _updates.momentum(theta, g, scale, self.params.grad, self.v, self.lr, self.beta, 1.0, self.weight_decay)


class UnbiasedMomentum(Momentum):
    """Momentum with the bias of v's zero start removed: theta = theta - lr * v / (1 - beta^t)
    after the t-th step (the notes count from 0 and write beta^(t+1): the same number)."""

    def update(self, theta, g, scale):
        return _updates.momentum(theta, g, scale, self.params.grad, self.v, self.lr, self.beta,
                                 1 - self.beta**self.steps, self.weight_decay)


class Nesterov(Momentum):
    """v = beta v + (1 - beta) grad J(theta - lr v_prev);  theta = theta - lr * v.

    The gradient is taken at the look-ahead point, so the model's parameters are kept there:
    they hold phi = theta - lr * v, where the next gradient is wanted. (The notes write the
    look-ahead as theta - v; their source lecture, like the rule's dimensions, has lr * v.)"""

    def update(self, phi, g, scale):
        return _updates.nesterov(phi, g, scale, self.params.grad, self.v, self.lr, self.beta, self.weight_decay)


class RMSProp(Optimizer):
    """s = beta s + (1 - beta) g^2;  theta = theta - lr * g / (sqrt(s) + eps)."""

    state_names = ("s",)

    def __init__(self, params, lr=0.001, beta=0.99, eps=1e-8, weight_decay=0.0):
        _check(0 <= beta < 1, "beta", "a number in [0, 1)", beta)
        _check(eps > 0, "eps", "a positive number", eps)
        super().__init__(params, lr, weight_decay)
        self.beta, self.eps = beta, eps

    def update(self, theta, g, scale):
        return _updates.rmsprop(theta, g, scale, self.params.grad, self.s, self.lr, self.beta, self.eps,
                                self.weight_decay)


class Adam(Optimizer):
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  m^ = m / (1 - b1^t);  v^ = v / (1 - b2^t);
    theta = theta - lr * m^ / (sqrt(v^) + eps). Defaults as in PyTorch."""

    state_names = ("m", "v")

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        _check(0 <= beta1 < 1, "beta1", "a number in [0, 1)", beta1)
        _check(0 <= beta2 < 1, "beta2", "a number in [0, 1)", beta2)
        _check(eps > 0, "eps", "a positive number", eps)
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, theta, g, scale):
        return _updates.adam(theta, g, scale, self.params.grad, self.m, self.v, self.lr, self.beta1, self.beta2,
                             self.eps, self.steps, self.weight_decay)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "unbiased_momentum": UnbiasedMomentum,
    "nesterov": Nesterov,
    "rmsprop": RMSProp,
    "adam": Adam,
}


def _check(ok: bool, name: str, expected: str, got) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {got!r}")
