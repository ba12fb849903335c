"""Algorithm 3 in one compiled call per batch, on the model's tape.

For each sample: record its nodes after the parameters (the nodes, parents and partials of the
batch path: a `dot` per neuron, an `add` for its bias, the activation, a `mul` by its dropout
scale, one `softmax_ce`), sweep them with Algorithm 1, and let the parameters' adjoints add up:
they are the gradient accumulator, never zeroed between samples; only the sample's own nodes are
cleared before the tape is rewound for the next one. Input pixels that are 0 give no edge: the
pixel loop runs over each sample's non-zero pixels only. A unit that passes no gradient on (a
ReLU below 0, a dropped unit) keeps its nodes but gets no edges, nor any edge into it: by the
chain rule they would carry an adjoint of exactly 0, so the tape shrinks and the gradient is
the same. The weighted sums run input by input along the rows of each layer's transposed
weights (copied once a batch), a loop the compiler vectorizes.

The batch is cut into chunks that depend on the batch alone, never on the number of threads:
each chunk is summed in sample order into its own accumulator, and the chunks' sums are added in
chunk order. Threads take whole chunks, each thread on its own stretch of tape, so the gradient
is the same to the last bit on any number of cores (and a resumed run ends as an uninterrupted
one wherever it runs).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import njit, prange, uint64

from tape import announce_compiling
from tape.kernels import SOURCES, forget_stale_caches, sweep_window, value_and_partial

announce_compiling(__name__, "mlp's training kernels")


@njit(cache=True, inline="always")
def weighted_sums(columns, w_off, fan_out, inputs, input_values, count, sums):
    """sums[o] = sum_k W[o, inputs[k]] * input_values[k] for o < fan_out (eq. 4), input by
    input along the rows of W's transpose `columns` (from w_off), k in order."""
    sums[:fan_out] = 0.0
    for k in range(count):
        h, first = input_values[k], w_off + inputs[k] * fan_out
        weights = columns[first : first + fan_out]  # a view: the loop below is vectorized
        for o in range(fan_out):
            sums[o] += weights[o] * h


@njit(cache=True, parallel=True)
def logits_batch(indptr, indices, data, theta, columns, layout, act_rules, bias, out):
    """out[r] = the logits of row r of a CSR input matrix: the forward pass that
    `record_sample` records, without dropout, recording nothing (for evaluation)."""
    transpose_weights(theta, layout, columns)
    width = max(layout[:, 0].max(), layout[:, 1].max())
    for r in prange(out.shape[0]):
        inputs, values, sums = np.empty(width, np.int64), np.empty(width), np.empty(width)
        count = indptr[r + 1] - indptr[r]
        inputs[:count], values[:count] = indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]]
        for layer in range(layout.shape[0]):
            fan_out, w_off, b_off, act_rule = layout[layer, 1], layout[layer, 2], layout[layer, 3], act_rules[layer, 0]
            weighted_sums(columns, w_off, fan_out, inputs, values, count, sums)
            count = 0
            for o in range(fan_out):
                y = sums[o] + theta[b_off + o] if bias else sums[o]
                if act_rule >= 0:
                    y = value_and_partial(act_rule, y)[0]
                if layer == layout.shape[0] - 1:
                    out[r, o] = y
                elif y != 0.0:
                    inputs[count], values[count] = o, y
                    count += 1


@njit(cache=True)
def record_sample(x_index, x_value, label, theta, columns, base, layout, act_rules, bias, codes, keep,
                  start, parent, partial, op, node0, values, indices, numbers):
    """Record one sample's forward pass and loss from node `node0` on (its first edge at
    start[node0]); node values go to values[node - node0]. `layout` rows are (fan_in, fan_out,
    weights offset, bias offset, dropout offset) into `theta`, whose entry k is tape node
    base + k, and into `keep`, the sample's dropout scales (offset -1: no dropout); `columns`
    holds each layer's weights transposed (`transpose_weights`); `act_rules` rows are
    (rule index, op code) of each layer's activation, or -1s for none.
    Returns (loss node, loss, predicted class).

    A unit through which no gradient can flow (its activation's partial is 0, as ReLU's below 0,
    or it is dropped) gets nodes without edges, and no edge leads into it: those edges would
    carry an adjoint of exactly 0. The gradient is the same as the whole recording's; the tape
    shrinks. `indices` (2, width) and `numbers` (3, width) are scratch for a layer's inputs and
    sums, width at least the widest layer and the sample's non-zero pixels."""
    dot_code, add_code, loss_code, mul_code = codes[0], codes[1], codes[2], codes[3]
    inputs, input_nodes, input_values, sums, slopes = indices[0], indices[1], numbers[0], numbers[1], numbers[2]
    node, edge = node0, start[node0]
    # A layer's inputs: (index, value, node) of each input that is not 0 or can pass a gradient
    # on; those that do both come first. The first layer's are the non-zero pixels (constants).
    both = 0
    for k in range(x_index.shape[0]):
        inputs[k], input_values[k] = x_index[k], x_value[k]
    count = x_index.shape[0]
    for layer in range(layout.shape[0]):
        fan_in, fan_out, w_off, b_off, keep_off = layout[layer, 0], layout[layer, 1], layout[layer, 2], layout[layer, 3], layout[layer, 4]
        act_rule = act_rules[layer, 0]
        dots = node
        adds = dots + fan_out
        acts = adds + fan_out * bias
        drops = acts + fan_out * (act_rule >= 0)
        weighted_sums(columns, w_off, fan_out, inputs, input_values, count, sums)
        for o in range(fan_out):  # each unit's value, and its slope: 0 if it passes no gradient on
            y = sums[o] + theta[b_off + o] if bias else sums[o]
            if bias:
                values[adds + o - node0] = y
            d = 1.0
            if act_rule >= 0:
                y, d = value_and_partial(act_rule, y)
                values[acts + o - node0] = y
            if keep_off >= 0:
                m = keep[keep_off + o]
                y *= m
                values[drops + o - node0] = y
                d = d if m != 0.0 else 0.0
            slopes[o] = d
        for o in range(fan_out):  # dot nodes: edges to the row's weights and to the inputs
            if slopes[o] != 0.0:
                row = w_off + o * fan_in
                if layer == 0:
                    parents, partials = parent[edge : edge + count], partial[edge : edge + count]  # views, as above
                    for k in range(count):
                        parents[k] = base + row + inputs[k]
                        partials[k] = input_values[k]
                    edge += count
                else:
                    parents, partials, weights = parent[edge : edge + 2 * both], partial[edge : edge + 2 * both], theta[row : row + fan_in]
                    for k in range(both):
                        parents[2 * k] = base + row + inputs[k]
                        partials[2 * k] = input_values[k]
                        parents[2 * k + 1] = input_nodes[k]
                        partials[2 * k + 1] = weights[inputs[k]]
                    edge += 2 * both
                    for k in range(both, count):  # an input that is 0, or that passes nothing on
                        j = inputs[k]
                        if input_values[k] != 0.0:
                            parent[edge], partial[edge] = base + row + j, input_values[k]
                            edge += 1
                        if input_nodes[k] >= 0:
                            parent[edge], partial[edge] = input_nodes[k], theta[row + j]
                            edge += 1
            values[node - node0] = sums[o]
            op[node] = dot_code
            start[node + 1] = edge
            node += 1
        if bias:  # add nodes: z + b
            for o in range(fan_out):
                if slopes[o] != 0.0:
                    parent[edge], partial[edge] = dots + o, 1.0
                    parent[edge + 1], partial[edge + 1] = base + b_off + o, 1.0
                    edge += 2
                op[node] = add_code
                start[node + 1] = edge
                node += 1
        if act_rule >= 0:  # the activation
            for o in range(fan_out):
                if slopes[o] != 0.0:
                    parent[edge], partial[edge] = acts - fan_out + o, slopes[o]  # the activation's partial
                    edge += 1
                op[node] = act_rules[layer, 1]
                start[node + 1] = edge
                node += 1
        if keep_off >= 0:  # dropout: the unit times its scale
            for o in range(fan_out):
                if slopes[o] != 0.0:
                    parent[edge], partial[edge] = drops - fan_out + o, keep[keep_off + o]
                    edge += 1
                op[node] = mul_code
                start[node + 1] = edge
                node += 1
        outputs = node - fan_out  # the layer's last nodes, one per unit: the next layer's inputs
        both = 0
        for o in range(fan_out):
            if values[outputs + o - node0] != 0.0 and slopes[o] != 0.0:
                inputs[both], input_values[both], input_nodes[both] = o, values[outputs + o - node0], outputs + o
                both += 1
        count = both
        for o in range(fan_out):
            h = values[outputs + o - node0]
            if (h != 0.0) != (slopes[o] != 0.0):
                inputs[count], input_values[count] = o, h
                input_nodes[count] = outputs + o if slopes[o] != 0.0 else -1
                count += 1
    # The softmax cross-entropy: one node, partials p - y (stable through the log-sum-exp).
    classes = layout[layout.shape[0] - 1, 1]
    logits = values[node - classes - node0 : node - node0]
    top = logits.max()
    lse = top + math.log(np.exp(logits - top).sum())
    for k in range(classes):
        d = math.exp(logits[k] - lse) - (k == label)
        if d != 0.0:
            parent[edge] = node - classes + k
            partial[edge] = d
            edge += 1
    op[node] = loss_code
    start[node + 1] = edge
    return node, lse - logits[label], np.argmax(logits)


@njit(cache=True, parallel=True)
def transpose_weights(theta, layout, columns):
    """columns[w_off + j * fan_out + o] = theta[w_off + o * fan_in + j] for each layer: W's
    transpose, so that the weighted sums run along contiguous memory, input by input."""
    for layer in range(layout.shape[0]):
        fan_in, fan_out, w_off = uint64(layout[layer, 0]), uint64(layout[layer, 1]), uint64(layout[layer, 2])
        for j in prange(fan_in):  # unsigned indices: no test for a negative one (2.5x faster)
            row, column = w_off + uint64(j) * fan_out, w_off + uint64(j)
            for o in range(fan_out):
                columns[row + uint64(o)] = theta[column + uint64(o) * fan_in]


@njit(cache=True, parallel=True)
def accumulate_batch(rows, indptr, indices, data, labels, keep, theta, columns, base, layout, act_rules, bias, codes,
                     weight, threads, first_node, first_edge, nodes_per_sample, edges_per_sample,
                     start, parent, partial, op, adjoints, grad):
    """Algorithm 3 over the samples `rows` of a CSR input matrix, cut into len(adjoints) chunks
    of about equal work. Thread t records each sample of its chunks at node
    first_node + t * (nodes_per_sample + 1) (its own stretch of the tape) and sweeps it with the
    loss's adjoint = `weight`; adjoints[c] holds chunk c's adjoints from node `base` on, so
    adjoints[c, :len(theta)] accumulates chunk c's part of the gradient. The parts are added into
    `grad` in chunk order at the end (and zeroed for the next batch). keep[s] holds the
    dropout scales of sample s (the s-th of `rows`).
    Returns the samples' total loss and how many were classified right."""
    chunks = adjoints.shape[0]
    bounds = split_by_pixels(rows, indptr, chunks)
    losses, correct = np.zeros(chunks), np.zeros(chunks, np.int64)
    width = max(layout[:, 0].max(), layout[:, 1].max())
    transpose_weights(theta, layout, columns)
    for t in prange(threads):
        node0 = first_node + t * (nodes_per_sample + 1)  # +1: a sample's last node sets start[node0 + its nodes]
        values, scratch_indices, scratch_numbers = np.empty(nodes_per_sample), np.empty((2, width), np.int64), np.empty((3, width))
        for c in range(t * chunks // threads, (t + 1) * chunks // threads):
            window = adjoints[c, : node0 + nodes_per_sample - base]
            for s in range(bounds[c], bounds[c + 1]):
                r = rows[s]
                start[node0] = first_edge + t * edges_per_sample
                lo, hi = indptr[r], indptr[r + 1]
                loss_node, loss, predicted = record_sample(
                    indices[lo:hi], data[lo:hi], labels[r], theta, columns, base, layout, act_rules, bias, codes, keep[s],
                    start, parent, partial, op, node0, values, scratch_indices, scratch_numbers,
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


@njit(cache=True, parallel=True)
def add_in_order(parts, total):
    """total[k] += parts[0, k] + parts[1, k] + ..., in that order, for k < len(total); the parts
    are zeroed. Blocks of k in parallel: each sum's order is the same on any number of threads."""
    block, n = 4096, total.shape[0]
    for b in prange((n + block - 1) // block):
        lo, hi = uint64(b * block), uint64(min(n, (b + 1) * block))  # unsigned, as above (4x faster)
        for c in range(parts.shape[0]):
            part = parts[c]
            for k in range(lo, hi):
                total[k] += part[k]
                part[k] = 0.0


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
def record_one(x_index, x_value, label, theta, base, layout, act_rules, bias, codes, keep, values,
               start, parent, partial, op, node, edge):
    """`record_sample` for `Tape.record_bulk`: the sample's nodes stay on the tape."""
    start[node] = edge
    width = max(layout[:, 0].max(), layout[:, 1].max())
    columns = np.empty_like(theta)
    transpose_weights(theta, layout, columns)
    loss_node, _, _ = record_sample(x_index, x_value, label, theta, columns, base, layout, act_rules, bias, codes, keep,
                                    start, parent, partial, op, node, values, np.empty((2, width), np.int64),
                                    np.empty((3, width)))
    return start[loss_node + 1]


forget_stale_caches("_fused", [*SOURCES, Path(__file__)], Path(record_sample._cache._cache_path))

