"""Losses on one sample (a list of Vars) or on a batch (a VarArray of shape (batch, classes)),
built from the tape's own operations, so that a trace can replay them.

The softmax cross-entropy is log-sum-exp(logits) minus the label's logit: the log-sum-exp node's
partials are the softmax p, the minus gives the label's logit -1 more, so the logits' adjoints
are p - y (notes 004). The squared error is the course's eq. (6)-(7).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import tape
from tape import Tensor, Var, VarArray

from .data import one_hot


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p along the last axis, without overflow for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits: Sequence[Var] | VarArray, labels) -> Var | VarArray:
    """-log p[label] with p = softmax(logits), as logsumexp(logits) - logits[label].

    `logits` is a sample's list of Vars (then `labels` is an int, or a target distribution:
    a one-hot or soft row, numbers or Vars) or a batch (batch, k), a VarArray or a Tensor (then
    `labels` holds an int per row, or a (batch, k) array of targets); returns a Var, or a
    VarArray or Tensor of losses."""
    if isinstance(logits, (VarArray, Tensor)):
        if logits.ndim != 2:
            raise ValueError(f"softmax_cross_entropy: expected logits of shape (batch, classes), got {logits.shape}")
        n, k = logits.shape
        if np.ndim(labels) == 2:
            return logits.logsumexp(axis=1) - (logits * _targets(labels, (n, k)).astype(getattr(logits, "dtype", np.float64))).sum(axis=1)
        return logits.logsumexp(axis=1) - logits[np.arange(n), _labels(labels, n, k)]
    logits = list(logits)
    if np.ndim(labels) == 0:
        return tape.logsumexp(logits) - logits[int(_labels([labels], 1, len(logits))[0])]
    if len(labels) != len(logits):
        raise ValueError(f"softmax_cross_entropy: {len(logits)} logits but a target of {len(labels)} entries")
    return tape.logsumexp(logits) - tape.dot(labels, logits)


def squared_error(outputs: Sequence[Var] | VarArray, targets) -> Var | VarArray:
    """sum_i (y_i - t_i)^2, the course's cost (eq. 6-7): a Var per sample, or a VarArray of one
    per row for a batch (a VarArray or a Tensor). `targets` are one-hot rows (or labels, turned
    one-hot)."""
    if isinstance(outputs, (VarArray, Tensor)):
        targets = _targets(targets, outputs.shape).astype(getattr(outputs, "dtype", np.float64))
        return ((outputs - targets) ** 2).sum(axis=1)
    outputs = list(outputs)
    if np.ndim(targets) == 0:
        targets = _targets([targets], (1, len(outputs)))[0].tolist()
    if len(targets) != len(outputs):
        raise ValueError(f"squared_error: {len(outputs)} outputs but a target of {len(targets)} entries")
    return tape.sum([(y - t) ** 2 for y, t in zip(outputs, targets)])


def _labels(labels, batch: int, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (batch,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected {batch} integer labels, got an array of shape {labels.shape} and dtype {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise ValueError(f"label {labels[bad[0]]} at position {bad[0]} is outside [0, {classes})")
    return labels


def _targets(targets, shape: tuple[int, int]) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim == 1 and np.issubdtype(targets.dtype, np.integer):
        targets = one_hot(targets, shape[1])
    if targets.shape != shape:
        raise ValueError(f"expected targets of shape {shape} (or {shape[0]} labels), got shape {targets.shape}")
    return targets.astype(np.float64)


LOSSES = {"cross_entropy": softmax_cross_entropy, "squared_error": squared_error}
