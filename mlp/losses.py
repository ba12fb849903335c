"""Losses on one sample (a list of Vars) or on a batch (a VarArray of shape (batch, classes)).

The softmax cross-entropy is recorded as ONE node per sample whose partials are p - y (notes
004), computed stably through the log-sum-exp; the squared error is the course's eq. (6)-(7).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import tape
from tape import Var, VarArray

from .data import one_hot


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p along the last axis, without overflow for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits: Sequence[Var] | VarArray, labels) -> Var | VarArray:
    """-log p[label] with p = softmax(logits): one node per sample, partials p - y.

    `logits` is a sample's list of Vars (then `labels` is an int) or a VarArray (batch, k)
    (then `labels` holds an int per row); returns a Var, or a VarArray of per-sample losses."""
    if isinstance(logits, VarArray):
        if logits.ndim != 2:
            raise ValueError(f"softmax_cross_entropy: expected logits of shape (batch, classes), got {logits.shape}")
        k = logits.shape[1]
        targets = one_hot(_labels(labels, logits.shape[0], k), k)
        log_p = log_softmax(logits.values)
        return tape.record_array(-(log_p * targets).sum(axis=1), logits, np.exp(log_p) - targets, "softmax_ce")
    logits = list(logits)
    target = one_hot(_labels([labels], 1, len(logits)), len(logits))[0]
    log_p = log_softmax(np.array([z.value for z in logits]))
    return tape.record(-(log_p * target).sum(), logits, np.exp(log_p) - target, "softmax_ce")


def squared_error(outputs: Sequence[Var] | VarArray, targets) -> Var | VarArray:
    """sum_i (y_i - t_i)^2, the course's cost (eq. 6-7): a Var per sample, or a VarArray of one
    per row for a batch. `targets` are one-hot rows (or labels, turned one-hot)."""
    if isinstance(outputs, VarArray):
        targets = _targets(targets, outputs.shape)
        return ((outputs - targets) ** 2).sum(axis=1)
    outputs = list(outputs)
    target = _targets([targets] if np.ndim(targets) == 0 else [targets], (1, len(outputs)))[0]
    return tape.sum([(y - t) ** 2 for y, t in zip(outputs, target.tolist())])


def _labels(labels, batch: int, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (batch,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected {batch} integer labels, got an array of shape {labels.shape} and dtype {labels.dtype}")
    return labels


def _targets(targets, shape: tuple[int, int]) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim == 1 and np.issubdtype(targets.dtype, np.integer):
        targets = one_hot(targets, shape[1])
    if targets.shape != shape:
        raise ValueError(f"expected targets of shape {shape} (or {shape[0]} labels), got shape {targets.shape}")
    return targets.astype(np.float64)


LOSSES = {"cross_entropy": softmax_cross_entropy, "squared_error": squared_error}
