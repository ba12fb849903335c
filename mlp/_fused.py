"""Algorithm 3 in one compiled call per batch, on the model's tape.

For each sample: record its nodes after the parameters (the same nodes, parents and partials as
the batch path: a `dot` per neuron, an `add` for its bias, the activation, one `softmax_ce`),
sweep them with Algorithm 1, and let the parameters' adjoints add up: they are the gradient
accumulator, never zeroed between samples; only the sample's own nodes are cleared before the
tape is rewound for the next one. Input pixels that are 0 give no edge: the pixel loop runs over
each sample's non-zero pixels only.

The batch is cut into chunks that depend on the batch alone, never on the number of threads:
each chunk is summed in sample order into its own accumulator, and the chunks' sums are added in
chunk order. Threads take whole chunks, each thread on its own stretch of tape, so the gradient
is the same to the last bit on any number of cores (and a resumed run ends as an uninterrupted
one wherever it runs).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, uint64

from pathlib import Path

from tape.kernels import SOURCES, forget_stale_caches, sweep_window, value_and_partial


@njit(cache=True)
def record_sample(x_index, x_value, label, theta, base, layout, act_rules, bias, codes,
                  start, parent, partial, op, node0, values):
    """Record one sample's forward pass and loss from node `node0` on (its first edge at
    start[node0]); node values go to values[node - node0]. `layout` rows are (fan_in, fan_out,
    weights offset, bias offset) into `theta`, whose entry k is tape node base + k; `act_rules`
    rows are (rule index, op code) of each layer's activation, or -1s for none.
    Returns (loss node, loss, predicted class). Edges with a zero partial are not stored."""
    dot_code, add_code, loss_code = codes[0], codes[1], codes[2]
    node, edge = node0, start[node0]
    previous = -1  # first node of the previous layer's outputs (-1: the input pixels)
    for layer in range(layout.shape[0]):
        fan_in, fan_out, w_off, b_off = layout[layer, 0], layout[layer, 1], layout[layer, 2], layout[layer, 3]
        first = node
        for o in range(fan_out):  # dot nodes: the weighted sums (eq. 4)
            row = w_off + o * fan_in
            z = 0.0
            if previous < 0:  # the input layer: only the non-zero pixels, which are constants
                for k in range(x_index.shape[0]):  # uint64 indices: no wrap-around checks (tape._kernels)
                    j, x = x_index[k], x_value[k]
                    z += theta[uint64(row + j)] * x
                    parent[uint64(edge)] = base + row + j
                    partial[uint64(edge)] = x
                    edge += 1
            else:
                for j in range(fan_in):
                    h, w = values[previous - node0 + j], theta[row + j]
                    z += w * h
                    if h != 0.0:
                        parent[edge] = base + row + j
                        partial[edge] = h
                        edge += 1
                    if w != 0.0:
                        parent[edge] = previous + j
                        partial[edge] = w
                        edge += 1
            values[node - node0] = z
            op[node] = dot_code
            start[node + 1] = edge
            node += 1
        if bias:  # add nodes: z + b
            for o in range(fan_out):
                values[node - node0] = values[first + o - node0] + theta[b_off + o]
                parent[edge], partial[edge] = first + o, 1.0
                parent[edge + 1], partial[edge + 1] = base + b_off + o, 1.0
                edge += 2
                op[node] = add_code
                start[node + 1] = edge
                node += 1
            first = node - fan_out
        if act_rules[layer, 0] >= 0:  # the activation
            for o in range(fan_out):
                y, d = value_and_partial(act_rules[layer, 0], values[first + o - node0])
                values[node - node0] = y
                if d != 0.0:
                    parent[edge] = first + o
                    partial[edge] = d
                    edge += 1
                op[node] = act_rules[layer, 1]
                start[node + 1] = edge
                node += 1
            first = node - fan_out
        previous = first
    # The softmax cross-entropy: one node, partials p - y (stable through the log-sum-exp).
    classes = layout[layout.shape[0] - 1, 1]
    logits = values[previous - node0 : previous - node0 + classes]
    top = logits.max()
    lse = top + math.log(np.exp(logits - top).sum())
    for k in range(classes):
        d = math.exp(logits[k] - lse) - (k == label)
        if d != 0.0:
            parent[edge] = previous + k
            partial[edge] = d
            edge += 1
    op[node] = loss_code
    start[node + 1] = edge
    return node, lse - logits[label], np.argmax(logits)


@njit(cache=True, parallel=True)
def accumulate_batch(rows, indptr, indices, data, labels, theta, base, layout, act_rules, bias, codes,
                     weight, threads, first_node, first_edge, nodes_per_sample, edges_per_sample,
                     start, parent, partial, op, adjoints, grad):
    """Algorithm 3 over the samples `rows` of a CSR input matrix, cut into len(adjoints) chunks
    of about equal work. Thread t records each sample of its chunks at node
    first_node + t * (nodes_per_sample + 1) (its own stretch of the tape) and sweeps it with the
    loss's adjoint = `weight`; adjoints[c] holds chunk c's adjoints from node `base` on, so
    adjoints[c, :len(theta)] accumulates chunk c's part of the gradient. The parts are added into
    `grad` in chunk order at the end (and zeroed for the next batch).
    Returns the samples' total loss and how many were classified right."""
    chunks = adjoints.shape[0]
    bounds = split_by_pixels(rows, indptr, chunks)
    losses, correct = np.zeros(chunks), np.zeros(chunks, np.int64)
    for t in prange(threads):
        node0 = first_node + t * (nodes_per_sample + 1)  # +1: a sample's last node sets start[node0 + its nodes]
        values = np.empty(nodes_per_sample)
        for c in range(t * chunks // threads, (t + 1) * chunks // threads):
            window = adjoints[c, : node0 + nodes_per_sample - base]
            for s in range(bounds[c], bounds[c + 1]):
                r = rows[s]
                start[node0] = first_edge + t * edges_per_sample
                lo, hi = indptr[r], indptr[r + 1]
                loss_node, loss, predicted = record_sample(
                    indices[lo:hi], data[lo:hi], labels[r], theta, base, layout, act_rules, bias, codes,
                    start, parent, partial, op, node0, values,
                )
                window[loss_node - base] = weight
                sweep_window(start, parent, partial, window[: loss_node - base + 1], base, node0)
                window[node0 - base : loss_node - base + 1] = 0.0  # clear the sample's own nodes
                losses[c] += loss
                correct[c] += predicted == labels[r]
    add_in_order(adjoints, grad)
    total = 0.0
    for c in range(chunks):
        total += losses[c]
    return total, correct.sum()


@njit(cache=True)
def add_in_order(parts, total):
    """total[k] += parts[0, k] + parts[1, k] + ..., in that order, for k < len(total); the parts
    are zeroed."""
    for c in range(parts.shape[0]):
        for k in range(total.shape[0]):
            total[k] += parts[c, k]
            parts[c, k] = 0.0


@njit(cache=True)
def split_by_pixels(rows, indptr, parts):
    """Where each of `parts` stretches of `rows` begins: about equal numbers of non-zero pixels
    (the work of a sample grows with them; Fashion-MNIST's range from about 100 to 700)."""
    work = np.empty(rows.shape[0] + 1)
    work[0] = 0.0
    for s in range(rows.shape[0]):
        work[s + 1] = work[s] + indptr[rows[s] + 1] - indptr[rows[s]] + 1
    bounds = np.empty(parts + 1, np.int64)
    for p in range(parts + 1):
        bounds[p] = np.searchsorted(work, work[-1] * p / parts)
    bounds[parts] = rows.shape[0]
    return bounds


@njit(cache=True)
def record_one(x_index, x_value, label, theta, base, layout, act_rules, bias, codes, values,
               start, parent, partial, op, node, edge):
    """`record_sample` for `Tape.record_bulk`: the sample's nodes stay on the tape."""
    start[node] = edge
    loss_node, _, _ = record_sample(x_index, x_value, label, theta, base, layout, act_rules, bias,
                                    codes, start, parent, partial, op, node, values)
    return start[loss_node + 1]


forget_stale_caches("_fused", [*SOURCES, Path(__file__)], Path(record_sample._cache._cache_path))

