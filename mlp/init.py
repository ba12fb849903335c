"""Weight initialisers, as the course notes (004) give them, drawn from a seeded Generator.

Each takes (fan_in, fan_out, rng) and returns a (fan_out, fan_in) weight matrix, the layout of
the course's equation (5): row i holds the weights into neuron i.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

Initialiser = Callable[[int, int, np.random.Generator], np.ndarray]
RELU_GAIN = math.sqrt(2.0)  # the notes' recommended gain for ReLU


def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """U(-a, a) with a = gain * sqrt(6 / (in + out))."""
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_out, fan_in))


def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """N(0, std^2) with std = gain * sqrt(2 / (in + out))."""
    return rng.normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), size=(fan_out, fan_in))


def kaiming_uniform(fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = RELU_GAIN) -> np.ndarray:
    """U(-bound, bound) with bound = gain * sqrt(3 / in)."""
    bound = gain * math.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))


def kaiming_normal(fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = RELU_GAIN) -> np.ndarray:
    """N(0, std^2) with std = gain / sqrt(in)."""
    return rng.normal(0.0, gain / math.sqrt(fan_in), size=(fan_out, fan_in))


def lecun_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """U(-1/sqrt(in), 1/sqrt(in)): PyTorch's default for `nn.Linear` weights and biases, the
    set-up of the MMiDS Fashion-MNIST run."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))


def zeros(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    return np.zeros((fan_out, fan_in))


INITIALISERS: dict[str, Initialiser] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
}


def biases(init: Initialiser, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """A layer's starting biases: zeros, except under `lecun_uniform`, which (as PyTorch's
    `nn.Linear`) draws them from the weights' U(-1/sqrt(in), 1/sqrt(in))."""
    if init is lecun_uniform:
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=fan_out)
    return np.zeros(fan_out)


def initialiser(name: str | Initialiser) -> Initialiser:
    """An initialiser by name (or the callable itself)."""
    if callable(name):
        return name
    if name not in INITIALISERS:
        raise ValueError(f"unknown initialiser {name!r}; known: {', '.join(INITIALISERS)}")
    return INITIALISERS[name]
