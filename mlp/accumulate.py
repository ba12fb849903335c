"""Algorithm 3: a batch's gradient, accumulated into `model.parameters().grad`.

Five paths, one result (the tests hold them to it):

* ``"scalar"``: the course's algorithm literally, with scalar Vars: for each sample mark the
  tape, record the forward pass, sweep, add the parameters' adjoints, rewind;
* ``"vector"``: the same loop, each sample recorded in bulk (VarArray);
* ``"batch"``: the whole batch recorded on the tape and swept once from the mean loss;
* ``"traced"``: the loop of "scalar", its per-sample loss traced once (tape.trace: the model
  written with scalar Vars, `MLP.apply`) and replayed compiled over each batch, split across
  the cores in fixed chunks;
* ``"matrix"``: the whole batch on matrix nodes (tape.Tensor), one node per operation of the
  course's matrix form, swept once (see `MatrixAccumulator`).

The gradient is the batch MEAN (each sample's sweep starts from adjoint 1/batch), as PyTorch's
losses average by default; `reduction="sum"` gives Algorithm 3's plain sum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tape
from tape import VarArray

from . import _updates
from .losses import LOSSES, softmax_cross_entropy
from .nn import MLP

PATHS = ("matrix", "traced", "vector", "scalar", "batch")


@dataclass
class BatchResult:
    loss: float  # the mean loss over the batch
    correct: int  # samples whose largest logit is their label
    nonfinite: int = 0  # parameters not finite numbers after the step (a training step's)


def accumulate(model: MLP, X: np.ndarray, y: np.ndarray, loss: str = "cross_entropy",
               path: str = "matrix", reduction: str = "mean", rng: np.random.Generator | None = None) -> BatchResult:
    """Add the gradient of the batch (X, y) to `model.parameters().grad` (Algorithm 3). A model
    with dropout draws the batch's dropout scales from `rng` (every path the same ones for the
    same generator state); without `rng` no unit is dropped."""
    X, y = _check_batch(model, X, y)
    scales = model.dropout_scales(rng, len(X)) if rng is not None and model.dropout_units else None
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATHS)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    weight = 1.0 / len(X) if reduction == "mean" else 1.0
    if path in ("traced", "matrix"):
        accumulator = TracedAccumulator if path == "traced" else MatrixAccumulator
        return accumulator(model, loss).accumulate(InputRows(X), np.arange(len(X)), y, weight, scales)
    loss_fn, t, params = LOSSES[loss], model.tape, model.parameters()
    nodes = params.nodes
    if path == "batch":
        mark = t.mark()
        logits = model(X, scales)
        losses = loss_fn(logits, y)
        total = losses.mean() if reduction == "mean" else losses.sum()
        total.backward()
        params.grad += t.adjoint[nodes.start : nodes.stop]
        result = BatchResult(float(losses.values.mean()), int((logits.values.argmax(1) == y).sum()))
        t.rewind(mark)
        return result
    total_loss, correct = 0.0, 0
    for i, (x, label) in enumerate(zip(X, y)):
        mark = t.mark()
        if path == "scalar":
            logits = model(x, None if scales is None else scales[i])
            sample_loss = loss_fn(logits, int(label))
            values = [z.value for z in logits]
        else:
            logits = model(x[None], None if scales is None else scales[i : i + 1])
            sample_loss = loss_fn(logits, label[None])
            values = logits.values[0]
        sample_loss.backward()
        params.grad += weight * t.adjoint[nodes.start : nodes.stop]
        total_loss += float(np.sum(sample_loss.values) if isinstance(sample_loss, VarArray) else sample_loss.value)
        correct += int(np.argmax(values) == label)
        t.rewind(mark)
    return BatchResult(total_loss / len(X), correct)


class TracedAccumulator:
    """Algorithm 3 by a trace of the model's per-sample loss (see `tape.trace`): the loss of
    one sample, written with the model's scalar Vars, is recorded once and replayed by compiled
    code over the samples of each batch on numba's threads, their gradients summed in fixed
    chunks (so the result does not depend on the number of threads). The scalar nodes' path.
    Trace once per model, then call per batch."""

    def __init__(self, model: MLP, loss: str = "cross_entropy") -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        self.model, self.loss_fn = model, LOSSES[loss]
        n_in, k = model.sizes[0], model.sizes[-1]
        traced = tape.trace(self.sample_loss, model.parameters().values, np.zeros(n_in), np.eye(k)[0],
                            np.ones(model.dropout_units))
        self.step = traced.value_and_grad(0, batch_argnums=(1, 2, 3), reduction="sum", has_aux=True)

    def sample_loss(self, theta, x, target, scales):
        """(the loss of one sample, its logits): the function that is traced."""
        logits = self.model.apply(theta, x, scales if self.model.dropout_units else None)
        return self.loss_fn(logits, target), logits

    def accumulate(self, inputs: InputRows, rows: np.ndarray, labels: np.ndarray, weight: float,
                   keep: np.ndarray | None = None) -> BatchResult:
        """Add `weight` times the gradient of each of `rows` of `inputs` to the accumulator
        (`labels` indexed like inputs; `keep`: the rows' dropout scales, or None)."""
        params, labels = self.model.parameters(), np.asarray(labels)[rows]
        if keep is None:
            keep = np.ones((len(labels), self.model.dropout_units))
        (total, logits), gradient = self.step(params.values, inputs.dense[rows], np.eye(self.model.sizes[-1])[labels],
                                              keep)
        params.grad += weight * gradient
        return BatchResult(total / len(labels), int((logits.argmax(axis=1) == labels).sum()))

    def logits(self, inputs: InputRows) -> np.ndarray:
        """The model's logits for every row of `inputs` (no dropout, nothing recorded), by its batch forward pass."""
        return self.model.logits(inputs.dense)


class InputRows:
    """Input rows (a training set, its test set), float64, which a step takes with the numbers
    of its batch's rows: each path converts them once (`astype`), not batch by batch."""

    def __init__(self, X: np.ndarray) -> None:
        self.dense = np.asarray(X, dtype=np.float64)
        self.shape = self.dense.shape
        self._converted: dict[np.dtype, np.ndarray] = {}

    def astype(self, dtype) -> np.ndarray:
        """The rows in `dtype`, C-contiguous, converted at the first call: kept with the rows, so
        that a run's training, validation and test sets are each converted once."""
        dtype = np.dtype(dtype)
        if dtype not in self._converted:
            self._converted[dtype] = np.ascontiguousarray(self.dense, dtype=dtype)
        return self._converted[dtype]


class MatrixAccumulator:
    """Algorithm 3 on matrix nodes: a batch is recorded as one matrix node per operation (the
    layers' `activation(x @ W.T + b)`, the loss), swept once from the weighted sum of the
    losses; the weights' adjoints (W̄ = Xᵀ Z̄ ...) are added to the accumulator. Computes in
    `dtype` (float32 or float64); the parameters and their accumulator stay float64."""

    EVALUATION_ROWS = 4096  # rows a forward pass takes at once when measuring

    def __init__(self, model: MLP, loss: str = "cross_entropy", dtype="float64") -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        self.model, self.loss_fn, self.dtype = model, LOSSES[loss], np.dtype(dtype)

    def accumulate(self, inputs: InputRows, rows: np.ndarray, labels: np.ndarray, weight: float,
                   keep: np.ndarray | None = None) -> BatchResult:
        """Add `weight` times the gradient of each of `rows` of `inputs` to the accumulator
        (`keep`: the rows' dropout scales, or None)."""
        t, params = self.model.tape, self.model.parameters()
        for layer in self.model.layers:  # the weights' matrix leaves, below the mark
            layer.tensors(self.dtype)
        mark = t.mark()
        x = tape.as_tensor(inputs.astype(self.dtype)[rows], requires_grad=False)
        labels = np.asarray(labels)[rows]
        logits = self.model(x, keep)
        if self.loss_fn is softmax_cross_entropy:  # the batch's mean as ONE node: its adjoint (softmax - one-hot) / rows
            mean = tape.softmax_cross_entropy(logits, labels)
        else:
            mean = self.loss_fn(logits, labels).mean()
        (mean * (weight * len(labels))).backward()
        params.add_tensor_grads()
        result = BatchResult(mean.value, int((logits.value.argmax(1) == labels).sum()))
        t.rewind(mark)
        return result

    def logits(self, inputs: InputRows) -> np.ndarray:
        """The model's logits for every row of `inputs` (no dropout, nothing recorded), in float64."""
        out = np.empty((inputs.shape[0], self.model.sizes[-1]))
        with tape.no_grad(self.model.tape):
            for first in range(0, len(out), self.EVALUATION_ROWS):
                rows = inputs.astype(self.dtype)[first : first + self.EVALUATION_ROWS]
                out[first : first + len(rows)] = self.model(tape.as_tensor(rows, requires_grad=False)).value
        return out


def _tensor_examples(arrays: list[np.ndarray]) -> list:
    """Arrays as constant Tensors, for a trace's example arguments: tape.trace traces matrix nodes
    only when some argument is a Tensor (plain float arrays alone are traced as a scalar Var per
    entry); with one, the other float arrays (a batch's rows, dropout scales) are matrix nodes too."""
    return [tape.as_tensor(a, requires_grad=False) for a in arrays]


def _check_batch(model: MLP, X, y) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != model.sizes[0]:
        raise ValueError(f"expected a batch X of shape (n, {model.sizes[0]}), got {X.shape}")
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected {len(X)} integer labels y, got shape {y.shape} and dtype {y.dtype}")
    classes = model.sizes[-1]
    if len(y) and (y.min() < 0 or y.max() >= classes):
        bad = int(np.flatnonzero((y < 0) | (y >= classes))[0])
        raise ValueError(f"label {y[bad]} at position {bad} is outside [0, {classes})")
    return X, y.astype(np.int64)


def _clip_and_step(optimizer, clip: float | None, lr: float, grad: np.ndarray | None = None) -> int:
    """The end of a training step: the optimizer's update at rate lr from the gradient (`grad`, or
    the accumulator) scaled down to L2 norm `clip` where longer (None: as it is); returns its count
    of parameters left not finite."""
    g = optimizer.params.grad if grad is None else grad
    optimizer.lr = lr
    return optimizer.step(g, _updates.clip_scale(g, clip) if clip else 1.0)


class AccumulatorStep:
    """A training step as Algorithm 3 and the notes' update write it: empty the accumulator, add
    the batch's mean gradient (`accumulator`: TracedAccumulator or MatrixAccumulator), clip it,
    update the parameters (`optimizer`) at rate lr. The scalar nodes' step, and the matrix
    path's untraced one."""

    def __init__(self, accumulator: TracedAccumulator | MatrixAccumulator, optimizer, clip: float | None = None) -> None:
        self.accumulator, self.optimizer, self.clip = accumulator, optimizer, clip

    def __call__(self, inputs: InputRows, rows: np.ndarray, labels: np.ndarray, keep: np.ndarray | None,
                 lr: float) -> BatchResult:
        """One step on `rows` of `inputs` (`labels` indexed like inputs, `keep` the rows' dropout
        scales or None); the result counts the parameters left not finite."""
        self.optimizer.zero_grad()
        result = self.accumulator.accumulate(inputs, rows, labels, 1.0 / len(rows), keep)
        result.nonfinite = _clip_and_step(self.optimizer, self.clip, lr)
        return result

    def logits(self, inputs: InputRows) -> np.ndarray:
        return self.accumulator.logits(inputs)


class MatrixStep:
    """The matrix path's training step traced (see `tape.trace`): the batch's forward pass, mean
    softmax cross-entropy and sweep recorded once per batch size (a short last batch is a second
    trace), then run at each batch's inputs by the trace's compiled code, the gradient written
    into the parameters' accumulator (float64) or a buffer in `dtype` (float32), converted into it;
    then clipping and the optimizer's update, one compiled pass over the flat parameters (the
    same kernels as every path: weight decay, schedules and checkpoints are the optimizer's).
    Inputs (the batch's rows, labels, dropout scales) go into buffers allocated with the trace;
    the weights are views of the parameters (float64) or a copy in dtype refreshed per step.
    Evaluation (`logits`) runs a trace of the forward pass per number of rows."""

    EVALUATION_ROWS = MatrixAccumulator.EVALUATION_ROWS

    def __init__(self, model: MLP, optimizer, dtype="float64", clip: float | None = None) -> None:
        self.model, self.optimizer, self.clip, self.dtype = model, optimizer, clip, np.dtype(dtype)
        self.params = model.parameters()
        self._bind()
        self.units = [(l.keep_offset, l.keep_offset + l.shape[0]) if l.dropout else None for l in model.layers]
        self.steps: dict[int, tuple] = {}  # batch rows -> (traced step, its input buffers)
        self.forwards: dict[int, object] = {}  # rows -> traced forward pass

    def _bind(self) -> None:
        """The weights and gradients the trace takes: views of the parameters' storage (float64),
        or of arrays in dtype beside it; again if the parameters were recorded anew (model.attach())."""
        params = self.params
        same = self.dtype == params.values.dtype
        self.values = params.values
        self.mirror = None if same else np.empty(len(params), self.dtype)  # the weights in dtype
        self.grad = params.grad if same else np.empty(len(params), self.dtype)  # where the trace writes the gradient
        self.weights = self._views(params.values if same else self.mirror)
        self.grads = self._views(self.grad)

    def _refresh(self) -> None:
        """The weights in dtype as the parameters hold them now."""
        if self.values is not self.params.values:
            self._bind()
        if self.mirror is not None:
            np.copyto(self.mirror, self.values, casting="same_kind")

    def _views(self, flat: np.ndarray) -> list[np.ndarray]:
        """Each layer's W, then b (with biases), as views of a flat vector laid out as the parameters."""
        return [v for layer in self.model.layers for v in layer.views(flat) if v is not None]

    def loss(self, *args):
        """(the batch's mean softmax cross-entropy, its logits) from (W, b per layer, x, labels,
        each dropout layer's scales): the function traced."""
        weights, x, labels, scales = args[: len(self.weights)], args[len(self.weights)], args[len(self.weights) + 1], \
            iter(args[len(self.weights) + 2 :])
        keeps = [next(scales) if units else None for units in self.units]
        logits = self.model.forward(weights, x, keeps)
        return tape.softmax_cross_entropy(logits, labels), logits

    def _step_for(self, n: int) -> tuple:
        """The traced step for batches of n rows and its input buffers (x, labels, scales), made at the first such batch."""
        entry = self.steps.get(n)
        if entry is None:
            x = np.zeros((n, self.model.sizes[0]), self.dtype)
            labels = np.zeros(n, np.int64)
            scales = [np.ones((n, b - a), self.dtype) for units in self.units if units for a, b in [units]]
            traced = tape.trace(self.loss, *_tensor_examples(self.weights), x, labels, *scales)
            entry = self.steps[n] = (traced.value_and_grad(tuple(range(len(self.weights))), has_aux=True), x, labels, scales)
        return entry

    def __call__(self, inputs: InputRows, rows: np.ndarray, labels: np.ndarray, keep: np.ndarray | None,
                 lr: float) -> BatchResult:
        """One step on `rows` of `inputs` (`labels` indexed like inputs, `keep` the rows' dropout
        scales or None); the result counts the parameters left not finite."""
        self._refresh()
        step, x, y, scales = self._step_for(len(rows))
        np.take(inputs.astype(self.dtype), rows, axis=0, out=x, mode="clip")  # rows are in range: no checking copy
        np.take(labels if labels.dtype == np.int64 else labels.astype(np.int64), rows, out=y, mode="clip")
        if scales:
            for buffer, (a, b) in zip(scales, [u for u in self.units if u]):
                np.copyto(buffer, keep[:, a:b], casting="same_kind")
        (loss, logits), _ = step(*self.weights, x, y, *scales, out=self.grads)
        nonfinite = _clip_and_step(self.optimizer, self.clip, lr, self.grad)
        return BatchResult(loss, int(np.count_nonzero(logits.argmax(1) == y)), nonfinite)

    def logits(self, inputs: InputRows) -> np.ndarray:
        """The model's logits for every row of `inputs` (no dropout), in float64, by traced forward passes."""
        dense = inputs.astype(self.dtype)
        out = np.empty((len(dense), self.model.sizes[-1]))
        self._refresh()
        for first in range(0, len(out), self.EVALUATION_ROWS):
            rows = dense[first : first + self.EVALUATION_ROWS]
            forward = self.forwards.get(len(rows))
            if forward is None:
                forward = self.forwards[len(rows)] = tape.trace(lambda *a: self.model.forward(a[:-1], a[-1]),
                                                                *_tensor_examples(self.weights), rows)
            out[first : first + len(rows)] = forward(*self.weights, rows)
        return out
