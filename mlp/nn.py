"""The multilayer perceptron of the course, built on tape leaves.

All weights and biases live in one flat vector (`Parameters`) whose entries are leaves of a
tape of the model's own (`model.tape`, as a PyTorch module owns its parameters): whatever is
computed from the weights is recorded there, and the tape of the user's own expressions
(`tape.current_tape()`) never fills with models. The leaves are recorded once, before any
sample: they sit below every mark, so rewinding after a sample never touches them. A model
runs three ways on the same weights:

* one sample (a list of floats or Vars): `Neuron`s of scalar `Var`s and `tape.dot`, readable
  like the course's equations (3)-(5); returns a list of Var logits;
* a batch (a 2-d array): the course's matrix form `activation(x @ W.T + b)` on scalar nodes,
  recorded in bulk through `VarArray`; returns a VarArray;
* a batch as a `tape.Tensor`: the same line on matrix nodes, one node per operation, the
  weights and biases a matrix leaf each (`Parameters.tensor`); returns a Tensor.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

import tape
from tape import StaleVarError, Table, Tape, Tensor, Var, VarArray

from .init import Initialiser, biases, initialiser

ACTIVATIONS = {"sigmoid": tape.sigmoid, "relu": tape.relu, "tanh": tape.tanh}


class Parameters:
    """A model's weights and biases as one flat vector of leaves of a tape of their own.

    `values` is the storage optimizers update in place, `grad` Algorithm 3's gradient
    accumulator; iterating gives each entry as a scalar `Var` (as PyTorch's `parameters()`)."""

    def __init__(self, values: np.ndarray) -> None:
        self.grad = np.zeros(len(values))
        self._record(values)

    def _record(self, values: np.ndarray) -> None:
        """`values` as the first nodes of a new tape (not the current one: that stays the user's)."""
        with Tape():
            self.leaves = VarArray(values)
        self._tensors: dict = {}  # (start, shape, dtype) -> matrix leaf
        self._vars: list[Var] = []

    @property
    def values(self) -> np.ndarray:
        return self.leaves.values

    @property
    def tape(self) -> Tape:
        """The tape the leaves are on; StaleVarError (saying what to do) if it dropped them."""
        try:
            return self.leaves.tape
        except StaleVarError:
            raise StaleVarError(
                "the model's parameters were dropped from their tape (by model.tape.reset() or a rewind "
                "below them); call model.attach() to record them on a new tape of their own"
            ) from None

    @property
    def nodes(self) -> range:
        first = int(self.leaves.nodes[0])
        return range(first, first + len(self))

    def vars(self, start: int = 0, stop: int | None = None) -> list[Var]:
        """The entries as scalar Vars (those of start..stop set from `values`, which stays the
        one source of truth whoever changes it in place)."""
        self.tape  # noqa: B018 - raises if stale
        if not self._vars:
            self._vars = list(self.leaves)
        for v, value in zip(self._vars[start:stop], self.values[start:stop].tolist()):
            v.value = value
        return self._vars

    def __iter__(self):
        return iter(self.vars())

    def __len__(self) -> int:
        return len(self.grad)

    def zero_grad(self) -> None:
        self.grad[:] = 0.0

    def attach(self) -> None:
        """Record the parameters on a new tape of their own (after a reset dropped them)."""
        self._record(self.values)

    def tensor(self, start: int, shape: tuple, dtype) -> Tensor:
        """Entries start.. of the parameters as a matrix leaf of `shape` and `dtype` on their
        tape, recorded once (below every mark), its value set from `values` at every call."""
        key = (start, shape, np.dtype(dtype))
        leaf = self._tensors.get(key)
        if leaf is None or not leaf._seg.alive or leaf._seg.tape is not self.tape:
            with self.tape:
                leaf = self._tensors[key] = Tensor(np.zeros(shape), dtype=dtype)
        np.copyto(leaf.value, self.values[start : start + leaf.size].reshape(shape), casting="same_kind")
        return leaf

    def add_tensor_grads(self) -> None:
        """Add the latest sweep's adjoints of the matrix leaves to `grad` (Algorithm 3's accumulator)."""
        for (start, shape, _), leaf in self._tensors.items():
            grads = leaf._seg.tape.grads
            if leaf._seg.alive and leaf._node in grads:
                self.grad[start : start + leaf.size].reshape(shape)[...] += grads[leaf._node]


class Neuron:
    """act(sum_i w_i x_i + b): the course's equation (3), on one sample of Vars."""

    def __init__(self, weights: list[Var], bias: Var | None, activation: str | None) -> None:
        self.weights, self.bias = weights, bias
        self.activation = ACTIVATIONS[activation] if activation else None

    def __call__(self, x: Sequence) -> Var:
        z = tape.dot(self.weights, x)
        if self.bias is not None:
            z = z + self.bias
        return self.activation(z) if self.activation else z


def dropped(h: list, keep) -> list:
    """A sample's units times their dropout scales (0 for a dropped unit: a node whose edge
    carries partial 0, so no gradient flows through it), or the units as they are."""
    return h if keep is None else [v * k for v, k in zip(h, keep)]


class Layer:
    """A dense layer (equation (5)): `weights` (out, in) and `bias` (out,) as VarArray views of
    the model's parameters, then the activation (none for the output layer's logits)."""

    def __init__(self, params: Parameters, offset: int, fan_in: int, fan_out: int, bias: bool, activation: str | None,
                 dropout: float = 0.0, keep_offset: int = 0):
        self.params, self.offset, self.shape = params, offset, (fan_out, fan_in)
        self.has_bias, self.activation = bias, activation
        self.dropout, self.keep_offset = dropout, keep_offset  # its columns of a batch's dropout scales

    def slices(self) -> tuple[slice, slice | None]:
        """Where W (out, in) and b (out,; None without a bias) lie in the parameters' flat layout."""
        out, n_in = self.shape
        stop = self.offset + out * n_in
        return slice(self.offset, stop), slice(stop, stop + out) if self.has_bias else None

    def views(self, flat) -> tuple:
        """(W, b or None) as views of `flat`, a vector laid out as the parameters (their values,
        leaves or gradient)."""
        w, b = self.slices()
        return flat[w].reshape(self.shape), None if b is None else flat[b]

    @property
    def weights(self) -> VarArray:
        return self.views(self.params.leaves)[0]

    @property
    def bias(self) -> VarArray | None:
        return self.views(self.params.leaves)[1]

    def neurons(self, theta: Sequence | None = None) -> list[Neuron]:
        """The layer as scalar neurons, over the parameters' Vars (or over `theta`, a flat
        sequence laid out as the parameters)."""
        (out, n_in), (w, b) = self.shape, self.slices()
        vs = self.params.vars(w.start, (w if b is None else b).stop) if theta is None else theta
        return [
            Neuron(vs[w.start + i * n_in : w.start + (i + 1) * n_in],
                   None if b is None else vs[b.start + i], self.activation)
            for i in range(out)
        ]

    def keep(self, scales):
        """This layer's columns of a batch's (or a sample's) dropout scales, or None."""
        if not self.dropout or scales is None:
            return None
        return scales[..., self.keep_offset : self.keep_offset + self.shape[0]]

    def tensors(self, dtype) -> tuple[Tensor, Tensor | None]:
        """(weights, bias) as matrix leaves in `dtype` (see `Parameters.tensor`)."""
        w, b = self.slices()
        bias = None if b is None else self.params.tensor(b.start, (self.shape[0],), dtype)
        return self.params.tensor(w.start, self.shape, dtype), bias

    def __call__(self, x, scales=None):
        """The layer's outputs for a batch (a Tensor: matrix nodes; else recorded in bulk on
        scalar nodes) or one sample (a list of Vars), each times its dropout scale, if `scales`
        are given and the layer has dropout."""
        keep = self.keep(scales)
        if isinstance(x, (VarArray, Tensor)) or np.ndim(x) == 2:  # a batch, in the course's matrix form
            W, b = self.tensors(x.dtype) if isinstance(x, Tensor) else (self.weights, self.bias)
            if keep is not None and isinstance(x, Tensor):
                keep = np.asarray(keep, dtype=x.dtype)  # a float64 operand would make a float32 Tensor float64
            return self.forward(W, b, x, keep)
        return dropped([neuron(x) for neuron in self.neurons()], keep)

    def forward(self, W, b, x, keep=None):
        """The course's matrix form with the weights W and bias b given (None without one):
        activation(x @ W.T + b), times the dropout scales `keep` if given."""
        z = x @ W.T
        if b is not None:
            z = z + b
        h = ACTIVATIONS[self.activation](z) if self.activation else z
        return h if keep is None else h * keep


class MLP:
    """A multilayer perceptron: `sizes` = [inputs, hidden..., outputs], the given activation on
    every hidden layer and plain logits out. Weights come from `init` (by name or callable, drawn
    from `numpy.random.default_rng(seed)`); biases start at zero, except with "lecun_uniform"
    (PyTorch's `nn.Linear` default), which draws them from the same U(-1/sqrt(in), 1/sqrt(in)).

    `dropout` (one probability for every hidden layer, or one per hidden layer) drops each
    hidden unit of a training sample with that probability and scales the kept ones by
    1 / (1 - p) ("inverted" dropout, as PyTorch's): the scales of a batch come from
    `dropout_scales`, and evaluation uses none."""

    def __init__(self, sizes: Sequence[int], activation: str = "sigmoid", bias: bool = True,
                 init: str | Initialiser | None = None, seed: int = 0, dropout: float | Sequence[float] = 0.0) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP(sizes): expected at least two positive layer sizes, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        self.dropout = _dropout_per_layer(dropout, len(sizes) - 2)
        init = initialiser(init or ("kaiming_uniform" if activation == "relu" else "xavier_uniform"))
        rng = np.random.default_rng(seed)
        blocks, shapes = [], list(zip(sizes[:-1], sizes[1:]))
        for fan_in, fan_out in shapes:
            blocks.append(init(fan_in, fan_out, rng).ravel())
            if bias:
                blocks.append(biases(init, fan_in, fan_out, rng))
        self.sizes, self.activation, self.bias, self.init_name = sizes, activation, bias, getattr(init, "__name__", str(init))
        self.params = Parameters(np.concatenate(blocks))
        self.layers, offset, keep_offset = [], 0, 0
        for i, (fan_in, fan_out) in enumerate(shapes):
            last = i == len(shapes) - 1
            p = 0.0 if last else self.dropout[i]
            self.layers.append(Layer(self.params, offset, fan_in, fan_out, bias, None if last else activation, p, keep_offset))
            offset += fan_out * fan_in + (fan_out if bias else 0)
            keep_offset += fan_out if p else 0
        self.dropout_units = keep_offset  # the columns of a batch's dropout scales

    def dropout_scales(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Dropout scales for a batch of n samples: (n, dropout_units), each entry 0 with its
        layer's probability p, else 1 / (1 - p)."""
        scales = np.empty((n, self.dropout_units))
        for layer in self.layers:
            if layer.dropout:
                columns = scales[:, layer.keep_offset : layer.keep_offset + layer.shape[0]]
                columns[...] = (rng.random(columns.shape) >= layer.dropout) / (1.0 - layer.dropout)
        return scales

    def __call__(self, x, scales=None):
        """Logits of one sample (a list of Var logits) or of a batch (a VarArray); with dropout
        `scales` (a row per sample, see `dropout_scales`) the hidden units are scaled by them."""
        self.params.tape  # noqa: B018 - a clear error if the parameters are stale
        x = self._check_input(x)
        scales = self._check_scales(scales, (len(x),) if isinstance(x, (VarArray, Tensor)) or np.ndim(x) == 2 else ())
        for layer in self.layers:
            x = layer(x, scales)
        return x

    def apply(self, theta: Sequence | dict, x: Sequence, scales: Sequence | None = None) -> list:
        """The logits of one sample x with the weights and biases `theta` instead of the model's
        own (and dropout `scales`, a row of `dropout_scales`): the model as a function of its
        weights, which `tape.grad` differentiates and `tape.trace` records once and replays.
        `theta` is flat, laid out as parameters().values, or a dict named and shaped as
        `named_parameters()` (`state_dict()` gives one): then the gradient is such a dict too."""
        if isinstance(theta, dict):
            theta = self._flat(theta, "apply")
        if len(theta) != len(self.params):
            raise ValueError(f"apply: theta has {len(theta)} entries, the model {len(self.params)} parameters")
        h = list(x)
        if len(h) != self.sizes[0]:
            raise ValueError(f"apply: expected one sample of {self.sizes[0]} inputs, got {len(h)}")
        scales = self._check_scales(scales, ())
        for layer in self.layers:
            h = dropped([neuron(h) for neuron in layer.neurons(theta)], layer.keep(scales))
        return h

    def forward(self, weights: Sequence, x, keeps: Sequence | None = None):
        """The logits of a batch x with the layers' weights given: `weights` holds each layer's
        W, then its b if the model has biases (Tensors, or a trace's inputs), `keeps` each layer's
        dropout scales (None, or one entry a layer, None for a layer without dropout). The
        model as a function of its weights, which the matrix path traces once (see
        mlp.accumulate.MatrixStep)."""
        per = 1 + self.bias
        for i, layer in enumerate(self.layers):
            b = weights[per * i + 1] if self.bias else None
            x = layer.forward(weights[per * i], b, x, keeps[i] if keeps else None)
        return x

    def parameters(self) -> Parameters:
        return self.params

    def named_parameters(self) -> Iterator[tuple[str, VarArray]]:
        """(name, tape leaves) of each layer's weights, shaped (out, in), and bias, named as
        PyTorch names them ("layers.0.weight", "layers.0.bias", ...): views of parameters()."""
        for i, layer in enumerate(self.layers):
            yield f"layers.{i}.weight", layer.weights
            if layer.has_bias:
                yield f"layers.{i}.bias", layer.bias

    def zero_grad(self) -> None:
        self.params.zero_grad()

    def attach(self) -> None:
        """Record the parameters on a new tape of their own, after `model.tape.reset()` dropped them."""
        self.params.attach()

    @property
    def tape(self) -> Tape:
        """The model's own tape: its weights' leaves, then whatever is computed from them."""
        return self.params.tape

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Logits of a batch as plain numbers: nothing is recorded."""
        with tape.no_grad(self.tape):
            return self(np.atleast_2d(X))

    def activations(self, X: np.ndarray) -> list[np.ndarray]:
        """Each layer's output for a batch (hidden activations, then logits), nothing recorded."""
        out, x = [], self._check_input(np.atleast_2d(X))
        with tape.no_grad(self.tape):
            for layer in self.layers:
                x = layer(x)
                out.append(x)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from .losses import softmax

        return softmax(self.logits(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most likely class of each row of X."""
        return self.logits(X).argmax(axis=-1)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Each of `named_parameters()` as a numpy array (a copy), keyed by its name."""
        return {name: leaves.values.copy() for name, leaves in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Set the parameters from `state_dict()`-shaped arrays; a wrong key or shape raises,
        naming both shapes, before anything is changed."""
        self.params.values[...] = self._flat(state, "load_state_dict").astype(np.float64)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (its shape, activation and weights) as a checkpoint, atomically."""
        from .archive import ALONE, write

        write(path, self, ALONE)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MLP:
        """The model a checkpoint keeps (a run's best validation epoch's, else its last), on a tape
        of its own; CheckpointError for a file that is not one."""
        from .archive import read, unreadable

        meta, parts = read(Path(path))
        try:
            return cls.from_saved(meta["model"], parts["best"] or parts["model"])
        except (KeyError, ValueError, TypeError) as e:
            raise unreadable(Path(path), e) from None

    @classmethod
    def from_saved(cls, config: dict, state: dict[str, np.ndarray]) -> MLP:
        """The model a saved configuration (mlp.archive.model_config) describes, with the weights `state`."""
        model = cls([int(n) for n in config["sizes"]], activation=config["activation"], bias=config["bias"],
                    init=config["init"], dropout=config.get("dropout", 0.0))
        model.load_state_dict(state)
        return model

    def _flat(self, named: dict, caller: str) -> np.ndarray:
        """A dict of arrays named and shaped as `named_parameters()`, laid out as parameters()."""
        shapes = {name: leaves.shape for name, leaves in self.named_parameters()}
        missing, unexpected = shapes.keys() - named.keys(), named.keys() - shapes.keys()
        if missing or unexpected:
            raise KeyError(f"{caller}: missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}")
        for name, shape in shapes.items():
            if np.shape(named[name]) != shape:
                raise ValueError(f"{caller}: {name} has shape {np.shape(named[name])}, the model expects {shape}")
        return np.concatenate([np.asarray(named[name], dtype=object).ravel() for name in shapes])

    def _check_scales(self, scales, batch: tuple):
        """Dropout scales as a model with dropout takes them: one row (one sample) or one per
        sample of the batch; None where the model has no dropout."""
        if scales is None or not self.dropout_units:
            return None
        shape = np.shape(scales)
        if shape != (*batch, self.dropout_units):
            raise ValueError(f"expected dropout scales of shape {(*batch, self.dropout_units)} (see dropout_scales), got {shape}")
        return scales

    def _check_input(self, x):
        """x as the layers take it: a batch (2-d array or VarArray) or one sample (a list)."""
        shape = x.shape if isinstance(x, (VarArray, Tensor, np.ndarray)) else np.shape(x)
        if len(shape) not in (1, 2) or shape[-1] != self.sizes[0]:
            raise ValueError(f"expected one sample of {self.sizes[0]} inputs or a batch of shape (n, {self.sizes[0]}), got shape {shape}")
        return list(x) if len(shape) == 1 else x

    def __repr__(self) -> str:
        dropout = f", dropout={self.dropout}" if any(self.dropout) else ""
        return f"MLP({self.sizes}, activation={self.activation!r}, bias={self.bias}, init={self.init_name!r}{dropout})"

    def _repr_html_(self) -> str:
        """The model for a notebook: its repr and parameter count on a line above (a caption would wrap at the
        table's width), then a row a layer with its shape, activation, dropout and parameters."""
        rows = [(str(i), str(fan_in), str(fan_out), layer.activation or "(logits)", f"{layer.dropout:g}",
                 f"{fan_out * fan_in + fan_out * layer.has_bias:,}")
                for i, layer in enumerate(self.layers) for fan_out, fan_in in [layer.shape]]
        table = Table(("layer", "inputs", "outputs", "activation", "dropout", "parameters"), rows).html()
        return f"<p>{html.escape(repr(self))}: {len(self.parameters()):,} parameters</p>{table}"


def _dropout_per_layer(dropout, hidden: int) -> list[float]:
    """One dropout probability per hidden layer, from one for all or one each, each in [0, 1)."""
    given = [float(dropout)] * hidden if np.ndim(dropout) == 0 else [float(p) for p in dropout]
    if len(given) != hidden or not all(0 <= p < 1 for p in given):
        raise ValueError(f"MLP(dropout): expected a probability in [0, 1), or one for each of the {hidden} hidden "
                         f"layers, got {dropout!r}")
    return given
