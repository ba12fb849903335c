"""Operations of many operands, each ONE node with many parents: `sum`, `dot` (a neuron's
weighted sum is one node) and `logsumexp`; and `record`, a node whose partials you computed.

The values and partials are the rule table's (`tape._ops.sum_rule` and friends). A node keeps
its Var operands as parents and folds its constant operands into one constant, computed first,
so that a replay (tape.trace) adds in the same order and gets the same bits.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ._ops import Var, dot_rule, logsumexp_rule, sum_rule
from ._rules import FIRST_CUSTOM, code_of
from ._tape import op_code
from ._tensor import Tensor
from ._var import CONSTANTS, record_node

SUM, DOT, LOGSUMEXP = code_of("sum"), code_of("dot"), code_of("logsumexp")
forward_reduce = None  # tape._forward sets it: reductions of Duals (forward mode)


def _entries(xs, name: str) -> list:
    if isinstance(xs, np.ndarray):
        return xs.ravel().tolist()
    if isinstance(xs, (Var, *CONSTANTS)):
        raise TypeError(f"{name}() takes a sequence of Vars and numbers, got one {type(xs).__name__}")
    return list(xs)


def _plain(xs: list) -> bool:
    """Whether every entry is a Var or a number (else there are Duals: forward mode)."""
    return all(x.__class__ is Var or isinstance(x, CONSTANTS) for x in xs)


def _folded(rule, xs: list, code: int):
    """Record `rule` of the Vars among xs and of the constants folded into one, placed last;
    with Duals among xs, forward mode's reduction."""
    parents = [x for x in xs if x.__class__ is Var]
    folded = ()
    values = [p._value for p in parents]
    if len(parents) < len(xs):
        others = [x for x in xs if x.__class__ is not Var]
        if not all(isinstance(x, CONSTANTS) for x in others):
            return forward_reduce(code, xs)
        folded = (rule([float(x) for x in others])[0],)
        values.append(folded[0])
    y, partials = rule(values)
    if not parents:
        return y
    return record_node(parents, partials[: len(parents)], y, code, folded)


def sum(xs: Iterable, axis: int | None = None) -> Var | float:  # noqa: A001 - tape.sum, as in numpy and torch
    """The sum of Vars and numbers (an array's every entry) as ONE node with a parent per Var;
    of a VarArray or a Tensor, its `sum(axis)`."""
    if hasattr(xs, "_reduce") or isinstance(xs, Tensor):
        return xs.sum(axis)
    if axis is not None:
        raise TypeError("sum(xs, axis): an axis is for a VarArray or a Tensor")
    xs = _entries(xs, "sum")
    return _folded(sum_rule, xs, SUM) if xs else 0.0


def logsumexp(xs: Iterable, axis: int | None = None) -> Var | float:
    """log(sum(exp(x) for x in xs)) as ONE node, computed without overflow; its partials are
    softmax(xs). With a dot against one-hot labels it makes the softmax cross-entropy. Of a
    VarArray or a Tensor, along `axis` (every entry by default)."""
    if hasattr(xs, "_reduce") or isinstance(xs, Tensor):
        return xs.logsumexp(axis)
    if axis is not None:
        raise TypeError("logsumexp(xs, axis): an axis is for a VarArray or a Tensor")
    xs = _entries(xs, "logsumexp")
    if not xs:
        raise ValueError("logsumexp() of no operands")
    return _folded(logsumexp_rule, xs, LOGSUMEXP)


def dot(ws: Sequence, xs: Sequence) -> Var | float:
    """sum(w * x for w, x in zip(ws, xs)) as ONE node: a neuron's weighted sum.

    Each Var `w` gets the edge d/dw = x and each Var `x` the edge d/dx = w. The node lists the
    pairs of two Vars first, then the Vars paired with a constant, then the constant pairs'
    sum."""
    ws, xs = _vector(ws, "ws"), _vector(xs, "xs")
    if len(ws) != len(xs):
        raise ValueError(f"dot(ws, xs): ws has {len(ws)} entries but xs has {len(xs)}")
    if not (_plain(ws) and _plain(xs)):
        return forward_reduce(DOT, ws, xs)
    pairs, parents, pair_values, lone_values, constant_pairs = [], [], [], [], []
    for w, x in zip(ws, xs):
        if w.__class__ is Var and x.__class__ is Var:
            pairs += (w, x)
            pair_values.append((w._value, x._value))
        elif w.__class__ is Var:
            parents.append(w)
            lone_values.append((w._value, float(x)))
        elif x.__class__ is Var:
            parents.append(x)
            lone_values.append((x._value, float(w)))
        else:
            constant_pairs.append((float(w), float(x)))
    terms = pair_values + lone_values
    folded = (len(pair_values),)
    if constant_pairs:
        folded += (dot_rule(*zip(*constant_pairs))[0],)
        terms.append((folded[1], 1.0))
    a_values, b_values = [a for a, _ in terms], [b for _, b in terms]
    y, da, db = dot_rule(a_values, b_values)
    if not pairs and not parents:
        return y
    n = len(pairs) // 2
    partials = [d for pair in zip(da[:n], db[:n]) for d in pair] + da[n : n + len(parents)]
    return record_node(pairs + parents, partials, y, DOT, folded)


def _vector(xs, name: str) -> list:
    if isinstance(xs, np.ndarray) and xs.ndim != 1:
        raise ValueError(f"dot(ws, xs): {name} must be 1-d, got shape {xs.shape}")
    return _entries(xs, "dot")


def record(value: float, parents: Sequence[Var], partials: Sequence[float], op: str = "custom") -> Var:
    """One node with the local partials you computed: a custom operation whose derivative you
    know. Zero partials get no edge. A trace cannot replay such a node (its rule is yours)."""
    parents, partials = list(parents), [float(d) for d in partials]
    if len(parents) != len(partials) or not parents:
        raise ValueError(f"record: expected as many partials as parents (at least one), got {len(parents)} parents and {len(partials)} partials")
    if not all(p.__class__ is Var for p in parents):
        raise TypeError("record: every parent must be a Var")
    code = op_code(op)
    if code < FIRST_CUSTOM:
        raise ValueError(f"record: op {op!r} names an operation of the rule table, whose nodes a trace replays by "
                         "the table's rule; give your operation a name of its own")
    return record_node(parents, partials, float(value), code)
