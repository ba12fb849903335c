"""One interpreter of programs, and the operations it calls in each backend: wengert's public API
and PyTorch's. Then each backend's transforms of a program: what `fuzz.check` compares."""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

import tape
from tape import Tensor, VarArray

from .generate import UNARY, Const, Program

REFUSALS = (ValueError, OverflowError, ZeroDivisionError)  # wengert's words for "outside the domain"
BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv, "pow": operator.pow}


def evaluate(program: Program, leaves: list, ops: dict, const) -> list:
    """Every value of the program, leaves[i] standing for input i."""
    values = []
    for op, operands, params in program.steps:
        if op == "input":
            values.append(leaves[params["index"]])
            continue
        args = [values[a] if isinstance(a, int) else const(a.value) for a in operands]
        values.append(ops[op](*args, **params))
    return values


def run(program: Program, leaves: list, ops: dict, const):
    return evaluate(program, leaves, ops, const)[-1]


# -- wengert ----------------------------------------------------------------------------------------

def _reduce(name: str):
    def reduce(x, axis, method, **keepdims):
        return getattr(x, name)(axis, **keepdims) if method else getattr(tape, name)(x, axis)
    return reduce


WENGERT = {
    **{name: getattr(tape, name) for name in UNARY if hasattr(tape, name)},
    "neg": operator.neg, "abs": abs, **BINARY,
    **{name: _reduce(name) for name in ("sum", "mean", "logsumexp")},
    "entry": lambda x, index: x[index],
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, axes: x.T if axes is None else x.transpose(axes),
    "getitem": lambda x, index: x[index],
    "concatenate": lambda *xs, axis: tape.concatenate(xs, axis),
    "stack": lambda *xs, axis: tape.stack(xs, axis),
    "matmul": lambda a, b, function: tape.matmul(a, b) if function else a @ b,
    "softmax_cross_entropy": lambda x, labels: tape.softmax_cross_entropy(x, labels),
    "mse": tape.mse,
    "sumlist": lambda *xs: tape.sum(xs),
    "logsumexplist": lambda *xs: tape.logsumexp(xs),
    "dot": lambda *xs, n: tape.dot(xs[:n], xs[n:]),
    "pack": lambda *xs: list(xs),
}


def _same(value):
    return value


def objects(y):
    """A VarArray as the object array of its Vars (what tape.vjp and tape.trace take as an output)."""
    return np.array([y[i] for i in np.ndindex(y.shape)], dtype=object).reshape(y.shape) if isinstance(y, VarArray) else y


def plain(y) -> np.ndarray:
    """The numbers of an output: a Tensor, a VarArray, a Var, a list of Vars or a number."""
    if isinstance(y, Tensor):
        return y.value
    if isinstance(y, VarArray):
        return y.values
    if isinstance(y, (list, np.ndarray)) and np.asarray(y, dtype=object).dtype == object:
        return np.array([plain(v) for v in y], dtype=np.float64)
    return float(y.value if isinstance(y, tape.Var) else y)  # a Var is a float64 scalar node by design


def _weighted(y, cotangent):
    """<cotangent, y> as one scalar node: what a random cotangent's VJP differentiates."""
    if isinstance(y, list):
        return tape.dot(list(cotangent), y)
    if isinstance(y, (Tensor, VarArray)):
        y = y * cotangent
        return y.sum() if isinstance(y, (Tensor, VarArray)) else y  # a 0-d product is already a Var
    return y * float(cotangent)


def wengert(program: Program, cotangent, tangents, argnums, trace_at) -> dict:
    """Each transform of the program that applies to its kind of node: name -> a callable giving its result."""
    f = lambda *xs: run(program, list(xs), WENGERT, _same)
    xs = program.inputs
    out = {}
    if program.kind == "tensor":
        leaves = lambda: [Tensor(x) for x in xs]

        def backward():
            ls = leaves()
            _weighted(f(*ls), cotangent).backward()
            return tuple(l.grad for l in ls)

        out["value"] = lambda: plain(f(*leaves()))
        out["backward"] = backward
        out["vjp"] = lambda: tape.vjp(f, leaves())[1](cotangent)
        out["value_and_grad"] = lambda: tape.value_and_grad(lambda *ls: _weighted(f(*ls), cotangent), argnums)(*leaves())
        out["jvp"] = lambda: tape.jvp(f, leaves(), tangents)[1]
        out["jacobian"] = lambda: tape.jacobian(lambda x: f(x, *[Tensor(v, requires_grad=False) for v in xs[1:]]))(Tensor(xs[0]))
        return out
    if program.kind == "array":
        g = lambda *xs: objects(f(*[VarArray(x) for x in xs]))
        scalar = lambda *xs: _weighted(f(*[VarArray(x) for x in xs]), cotangent)

        def backward():
            ls = [VarArray(x) for x in xs]
            _weighted(f(*ls), cotangent).backward()
            return tuple(l.grad for l in ls)

        def tensor_backward():  # the same program on matrix nodes: wengert against itself where torch says nan
            ls = [Tensor(x) for x in xs]
            _weighted(f(*ls), cotangent).backward()
            return tuple(l.grad for l in ls)

        out["value"] = lambda: plain(f(*[VarArray(x) for x in xs]))
        out["backward"] = backward
        out["vjp"] = lambda: tape.vjp(g, xs)[1](cotangent)
        out["value_and_grad"] = lambda: tape.value_and_grad(scalar, argnums)(*xs)
        out["as Tensors: value"] = lambda: plain(f(*[Tensor(x) for x in xs]))
        out["as Tensors: backward"] = tensor_backward
        traced = _traced(g, trace_at)
        traced_scalar = _traced(scalar, trace_at)
        out["traced: value"] = lambda: np.asarray(traced()(*xs), dtype=np.float64)
        out["traced: vjp"] = lambda: traced().vjp(*xs)[1](cotangent)
        out["traced: jvp"] = lambda: traced().jvp(xs, tangents)[1]
        out["traced: jacobian"] = lambda: traced().jacobian(0)(*xs)
        out["traced: value_and_grad"] = lambda: traced_scalar().value_and_grad(argnums)(*xs)
        return out
    (x,) = xs
    (t,) = tangents

    def backward():
        ls = [tape.Var(v) for v in x]
        _weighted(f(ls), cotangent).backward()
        return (np.array([l.grad for l in ls]),)

    def gradient():
        ls = [tape.Var(v) for v in x]
        return (tape.gradient(_weighted(f(ls), cotangent), ls),)

    scalar_output = np.ndim(cotangent) == 0
    mode = ("forward", "reverse", "auto")[len(program.steps) % 3]
    out["value"] = lambda: plain(f(x))
    out["backward"] = backward
    out["gradient"] = gradient
    out["vjp"] = lambda: tape.vjp(f, [x])[1](cotangent)
    out["jvp"] = lambda: tape.jvp(f, (x,), (t,))[1]
    out["jacobian"] = lambda: tape.jacobian(f, mode)(x)
    traced = _traced(f, trace_at)
    out["traced: value"] = lambda: np.asarray(traced()(x), dtype=np.float64)
    out["traced: vjp"] = lambda: traced().vjp(x)[1](cotangent)
    out["traced: jvp"] = lambda: traced().jvp((x,), (t,))[1]
    out["traced: jacobian"] = lambda: traced().jacobian(0, mode)(x)
    if scalar_output:
        out["value_and_grad"] = lambda: tape.value_and_grad(f)(x)
        out["hessian"] = lambda: tape.hessian(f)(x)
        out["hvp"] = lambda: tape.hvp(f, x, t)
        out["grad of grad"] = lambda: tape.grad(tape.grad(lambda s: f([s, *x[1:]])))(float(x[0]))
        out["traced: value_and_grad"] = lambda: traced().value_and_grad(0)(x)
        out["traced: hessian"] = lambda: traced().hessian(0)(x)
    return out


def _traced(fn, at):
    """The function traced at another point (its replay is what is compared), traced once, lazily;
    a refusal at that point is not the program's: None then, and its quantities are skipped."""
    box = []

    def get():
        if not box:
            try:
                box.append(tape.trace(fn, *at))
            except REFUSALS as e:
                box.append(e)
        if isinstance(box[0], Exception):
            raise Skip(f"tracing at the other point refused: {box[0]}")
        return box[0]
    return get


class Skip(Exception):
    """A quantity that cannot be compared here."""


# -- PyTorch ----------------------------------------------------------------------------------------

def _logsumexp(x, dim, keepdim=False):
    """The reference log-sum-exp: its gradient is the softmax, exactly (torch's own backward takes
    exp(x - result), whose rounding makes the weights of huge equal entries sum past 1)."""
    m = x.detach().amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    y = m + torch.log(torch.exp(x - m).sum(dim, keepdim=True))
    return y if keepdim else y.squeeze(dim) if dim != () else y


def _torch_reduce(name: str):
    def reduce(x, axis, method, keepdims=False):
        dims = tuple(range(x.ndim)) if axis is None else axis
        return (_logsumexp if name == "logsumexp" else getattr(torch, name))(x, dims, keepdims)
    return reduce


def _gather(x, index):
    """x[index] by numpy's rules (torch takes no negative steps): the flat positions numpy picks."""
    positions = np.arange(x.numel()).reshape(tuple(x.shape))[index]
    return x.reshape(-1)[torch.as_tensor(positions.copy())]


def _tensors(xs, like):
    return [x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=like.dtype) for x in xs]


def torch_ops(dtype) -> dict:
    def first(xs):
        return next(x for x in xs if isinstance(x, torch.Tensor))

    return {
        **{name: getattr(torch, name) for name in ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "exp", "expm1",
                                                   "log", "log1p", "sqrt", "sigmoid", "relu", "neg", "abs")},
        # log(1 + e^x) as logaddexp(x, 0): F.softplus returns x itself above its threshold of 20,
        # whose derivative 1 is off by e^-x (seed 20261207 program 394: 1.8e-9 relative at x = 20.15)
        "softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x)), "stop_gradient": torch.Tensor.detach, **BINARY,
        **{name: _torch_reduce(name) for name in ("sum", "mean", "logsumexp")},
        "entry": lambda x, index: x[index],
        "reshape": lambda x, shape: x.reshape(shape),
        "transpose": lambda x, axes: x.permute(axes if axes is not None else tuple(reversed(range(x.ndim)))),
        "getitem": _gather,
        "concatenate": lambda *xs, axis: torch.cat(_tensors(xs, first(xs)), axis),
        "stack": lambda *xs, axis: torch.stack(_tensors(xs, first(xs)), axis),
        "matmul": lambda a, b, function: torch.matmul(*_tensors((a, b), first((a, b)))),
        "softmax_cross_entropy": lambda x, labels: F.cross_entropy(x, torch.as_tensor(labels)),
        "mse": lambda a, b: F.mse_loss(*_tensors((a, b), first((a, b)))),
        "sumlist": lambda *xs: torch.stack(_tensors(xs, first(xs))).sum(),
        "logsumexplist": lambda *xs: _logsumexp(torch.stack(_tensors(xs, first(xs))), 0),
        "dot": lambda *xs, n: (torch.stack(_tensors(xs[:n], first(xs))) * torch.stack(_tensors(xs[n:], first(xs)))).sum(),
        "pack": lambda *xs: torch.stack(_tensors(xs, first(xs))),
    }


def torch_reference(program: Program, dtype: str, cotangent, tangents, argnums) -> tuple[dict, bool]:
    """PyTorch's result for every quantity `wengert` names, in `dtype`; and whether any value on the
    way is not finite (then a refusal by wengert is consistent)."""
    tdtype = getattr(torch, dtype)
    ops = torch_ops(tdtype)
    const = lambda v: torch.as_tensor(v, dtype=tdtype) if isinstance(v, np.ndarray) else v
    f = lambda *xs: run(program, list(xs), ops, const)
    xs = [torch.as_tensor(np.asarray(x), dtype=tdtype) for x in program.inputs]
    values = evaluate(program, xs, ops, const)
    nonfinite = any(isinstance(v, torch.Tensor) and not torch.isfinite(v).all() for v in values)
    c = torch.as_tensor(np.asarray(cotangent), dtype=tdtype)
    ts = [torch.as_tensor(np.asarray(t), dtype=tdtype) for t in tangents]
    weighted = lambda *xs: (f(*xs) * c).sum()
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    vjp = lambda: torch.func.vjp(f, *xs)[1](c)

    def value_and_grad():
        value, grads = torch.func.grad_and_value(weighted, argnums=nums)(*xs)[::-1]
        return value, grads if isinstance(argnums, tuple) else grads[0]

    out = {"value": lambda: values[-1], "backward": vjp, "gradient": vjp, "vjp": vjp, "value_and_grad": value_and_grad,
           "jvp": lambda: torch.func.jvp(f, tuple(xs), tuple(ts))[1],
           "jacobian": lambda: torch.func.jacrev(f, argnums=0)(*xs)}
    if program.kind == "scalar":
        (x,), (t,) = xs, ts
        hessian = lambda: torch.func.hessian(f)(x)
        out.update({"value_and_grad": lambda: torch.func.grad_and_value(f)(x)[::-1], "hessian": hessian,
                    "hvp": lambda: hessian().to(t.dtype) @ t, "grad of grad": lambda: hessian()[0, 0]})
    for name in list(out):
        out["traced: " + name] = out[name]
        out["as Tensors: " + name] = out[name]
    return out, nonfinite
