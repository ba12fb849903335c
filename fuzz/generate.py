"""Random programs: a list of steps over numbered values, each step one public operation of tape.

A program is backend-neutral data: `fuzz.backends` interprets it with wengert and with PyTorch.
Inputs are drawn inside each operation's domain: every value carries a flag saying whether it
is positive, and log, sqrt, log1p, a division's denominator and a power's base take only
positive values (or, for a power, an integer exponent)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNARY = ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "exp", "expm1", "log", "log1p", "sqrt",
         "sigmoid", "softplus", "relu", "neg", "abs", "stop_gradient")
NEEDS_POSITIVE = {"log", "sqrt", "log1p"}
MAKES_POSITIVE = {"exp", "sigmoid", "softplus", "cosh", "sqrt", "log1p"}
BINARY = ("add", "sub", "mul", "truediv", "pow")
REDUCTIONS = ("sum", "mean", "logsumexp")
# what each kind of node takes besides the element-wise operations
STRUCTURE = {
    "tensor": ("reduce", "reduce", "reshape", "transpose", "getitem", "concatenate", "stack", "matmul", "loss"),
    "array": ("reduce", "reduce", "reshape", "transpose", "getitem", "matmul"),
    "scalar": ("sumlist", "dot", "logsumexplist"),
}


@dataclass
class Const:
    """A constant operand (a Python float or an array of the program's dtype)."""
    value: object

    def __repr__(self) -> str:
        return repr(self.value) if np.ndim(self.value) == 0 else f"array({np.array2string(np.asarray(self.value), precision=4, separator=', ')})"


@dataclass
class Program:
    kind: str  # "tensor" (matrix nodes), "array" (VarArrays), "scalar" (Vars of a vector's entries)
    dtype: str
    inputs: list  # leaf values (numpy arrays); "scalar" has one vector
    positive: list  # per input: drawn positive
    steps: list = field(default_factory=list)  # (op, operands: tuple of value numbers or Const, params: dict)

    def __str__(self) -> str:
        lines = [f"{self.kind} program, {self.dtype}:"]
        for k, (op, operands, params) in enumerate(self.steps):
            if op == "input":
                x = np.asarray(self.inputs[params["index"]])
                lines.append(f"  v{k} = input {params['index']}: {np.array2string(x, precision=17, separator=', ')}")
                continue
            args = ", ".join(f"v{a}" if isinstance(a, int) else repr(a) for a in operands)
            extra = "".join(f", {p}={_short(v)}" for p, v in params.items())
            lines.append(f"  v{k} = {op}({args}{extra})")
        return "\n".join(lines)

    def prefix(self, n: int) -> Program:
        """The program cut after step n: its output is that step's value."""
        return Program(self.kind, self.dtype, self.inputs, self.positive, self.steps[:n])

    def redraw(self, rng: np.random.Generator) -> list:
        """New inputs of the same shapes and domains (a traced program's replay point)."""
        return [_values(rng, np.shape(x), p, self.dtype) for x, p in zip(self.inputs, self.positive)]


def _short(v) -> str:
    return repr(v.tolist()) if isinstance(v, np.ndarray) else repr(v)


def _values(rng, shape, positive: bool, dtype: str) -> np.ndarray:
    x = rng.uniform(0.5, 2.0, shape) if positive else rng.uniform(-2.0, 2.0, shape)
    return np.asarray(x, dtype=dtype)


class Generator:
    """Draws one program: values are numbered inputs first, then one per step."""

    def __init__(self, rng: np.random.Generator, kind: str, dtype: str) -> None:
        self.rng, self.kind, self.dtype = rng, kind, dtype
        self.shapes, self.pos = [], []  # per value
        self.program = Program(kind, dtype, [], [])

    def draw(self, n_steps: int) -> Program:
        r = self.rng
        if self.kind == "scalar":
            n = int(r.integers(1, 5))
            self._input((n,), r.random() < 0.3)
            for i in range(n):  # the entries of the vector are the values the steps use
                self._step("entry", (0,), {"index": i}, (), False)
                self.pos[-1] = self.pos[0]
        else:
            self._input(self._shape(), r.random() < 0.3)
        for _ in range(n_steps):
            self._any_step()
        if self.kind == "scalar" and r.random() < 0.5:  # a vector output, for Jacobians
            count = int(r.integers(2, 4))
            self._step("pack", tuple(int(i) for i in r.integers(1, len(self.shapes), count)), {}, (count,), False)
        return self.program

    # -- values ---------------------------------------------------------------------------------

    def _shape(self, max_ndim: int = 3) -> tuple:
        ndim = int(self.rng.integers(0 if self.kind == "tensor" else 1, max_ndim + 1))
        return tuple(int(d) for d in self.rng.integers(1, 4, ndim))

    def _input(self, shape: tuple, positive: bool) -> int:
        """A new leaf: an "input" step, so that values keep their numbers."""
        self.program.inputs.append(_values(self.rng, shape, positive, self.dtype))
        self.program.positive.append(positive)
        return self._step("input", (), {"index": len(self.program.inputs) - 1}, shape, positive)

    def _operand(self, shape: tuple, positive: bool):
        """A value, a new leaf or a constant of `shape` (or one that broadcasts to it)."""
        r, choice = self.rng, self.rng.random()
        fits = [i for i, s in enumerate(self.shapes) if s == shape and (self.pos[i] or not positive)]
        if self.kind == "scalar":
            if fits and choice < 0.7:
                return int(r.choice(fits))
            return Const(float(_values(r, (), positive, "float64")))
        if choice < 0.15 or (self.kind != "array" and choice < 0.25):
            return Const(float(_values(r, (), positive, "float64")))
        shape = tuple(d if r.random() < 0.7 else 1 for d in shape[int(r.integers(0, len(shape) + 1)):]) \
            if r.random() < 0.4 else shape  # numpy's broadcasting: a suffix, some axes 1
        if choice < 0.4:
            return Const(_values(r, shape, positive, self.dtype))
        fits = [i for i, s in enumerate(self.shapes) if s == shape and (self.pos[i] or not positive)]
        if fits and choice < 0.7:
            return int(r.choice(fits))
        if len(self.program.inputs) >= 4:
            return Const(_values(r, shape, positive, self.dtype))
        return self._input(shape, positive)

    def _step(self, op: str, operands: tuple, params: dict, shape: tuple, positive: bool) -> int:
        self.program.steps.append((op, operands, params))
        self.shapes.append(shape)
        self.pos.append(positive)
        return len(self.shapes) - 1

    # -- steps ----------------------------------------------------------------------------------

    def _any_step(self) -> None:
        r = self.rng
        a = len(self.shapes) - 1 if r.random() < 0.6 else int(r.integers(0, len(self.shapes)))
        if self.kind == "scalar" and a == 0:
            a = len(self.shapes) - 1
        shape, choice = self.shapes[a], r.random()
        structural = STRUCTURE[self.kind] if shape != () or self.kind == "scalar" else ("stack",) * (self.kind == "tensor")
        if choice < 0.35 or (choice > 0.7 and not structural):
            op = str(r.choice(UNARY))
            if op in NEEDS_POSITIVE and not self.pos[a]:
                a = self._step("softplus", (a,), {}, shape, True)  # into the domain
            self._step(op, (a,), {}, shape, op in MAKES_POSITIVE)
        elif choice < 0.7:
            self._binary(a, str(r.choice(BINARY)))
        else:
            getattr(self, "_" + str(r.choice(structural)))(a)

    def _binary(self, a: int, op: str) -> None:
        r = self.rng
        shape = self.shapes[a]
        if op == "pow" and not self.pos[a] and r.random() < 0.5:  # any base, an integer exponent
            b = Const(float(r.integers(-2, 4)) if r.random() < 0.5 else int(r.integers(-2, 4)))
            self._step("pow", (a, b), {}, shape, False)
            return
        if op == "pow" and not self.pos[a]:
            a = self._step("exp", (a,), {}, shape, True)
        need_positive = op in ("truediv", "pow")
        b = self._operand(shape, False if op == "pow" else need_positive)
        operands = (a, b)
        if r.random() < 0.5 and not need_positive:  # the reflected operator (or a value on the left)
            operands = (b, a)
        elif op == "truediv" and r.random() < 0.4:  # a positive numerator over a
            operands = (b, a) if self.pos[a] else operands
        elif op == "pow" and r.random() < 0.3:  # a positive constant or value as the base: c ** a
            operands = (self._operand(shape, True), a)
        shapes = [self.shapes[x] if isinstance(x, int) else np.shape(x.value) for x in operands]
        out = np.broadcast_shapes(*shapes)
        pos = all(self.pos[x] if isinstance(x, int) else np.all(np.asarray(x.value) > 0) for x in operands)
        self._step(op, operands, {}, out, bool(pos) and op != "sub")

    def _reduce(self, a: int) -> None:
        r = self.rng
        op, shape = str(r.choice(REDUCTIONS)), self.shapes[a]
        ndim = len(shape)
        axis = None if r.random() < 0.3 else int(r.integers(-ndim, ndim))
        params = {"axis": axis}
        if self.kind == "tensor":
            if r.random() < 0.3 and ndim > 1:
                axes = r.permutation(ndim)[: int(r.integers(1, ndim + 1))]
                params["axis"] = tuple(int(x) - ndim * int(r.integers(0, 2)) for x in axes)
            params["keepdims"] = bool(r.random() < 0.3)
            params["method"] = bool(r.random() < 0.7)  # t.sum(...) or tape.sum(t, axis)
            if not params["method"] and (params["keepdims"] or isinstance(params["axis"], tuple) or op == "mean"):
                params["method"] = True
        else:
            params["method"] = op == "mean" or bool(r.random() < 0.7)
        out = np.sum(np.zeros(shape), axis=params["axis"], keepdims=params.get("keepdims", False)).shape
        self._step(op, (a,), params, out, self.pos[a] and op != "logsumexp")

    def _reshape(self, a: int) -> None:
        r = self.rng
        size = int(np.prod(self.shapes[a]))
        dims = []
        while int(np.prod(dims)) < size:
            rest = size // int(np.prod(dims))
            divisors = [d for d in range(1, rest + 1) if rest % d == 0 and (d > 1 or r.random() < 0.3)]
            dims.append(int(r.choice(divisors)))
        if r.random() < 0.3 and dims:
            dims.insert(int(r.integers(0, len(dims) + 1)), 1)
        shape = tuple(dims)
        if dims and r.random() < 0.3:
            dims[int(r.integers(0, len(dims)))] = -1
        self._step("reshape", (a,), {"shape": tuple(dims)}, shape, self.pos[a])

    def _transpose(self, a: int) -> None:
        r = self.rng
        ndim = len(self.shapes[a])
        if self.kind == "array" or r.random() < 0.3:
            axes = None  # .T
        else:
            axes = tuple(int(x) - ndim * int(r.integers(0, 2)) for x in r.permutation(ndim))
        out = np.transpose(np.zeros(self.shapes[a]), axes).shape
        self._step("transpose", (a,), {"axes": axes}, out, self.pos[a])

    def _getitem(self, a: int) -> None:
        r = self.rng
        shape = self.shapes[a]
        parts = []
        for d in shape[: int(r.integers(1, len(shape) + 1))]:
            c = r.random()
            if c < 0.35:
                parts.append(int(r.integers(-d, d)))
            elif c < 0.7:
                start = int(r.integers(-d, d))
                parts.append(slice(start, None, int(r.choice([1, 1, 2, -1]))))
            elif c < 0.85 and not any(isinstance(p, np.ndarray) for p in parts):
                parts.append(r.integers(-d, d, int(r.integers(1, 4))))  # repeats get both adjoints
            else:
                parts.append(slice(None))
        index = tuple(parts) if len(parts) > 1 or r.random() < 0.5 else parts[0]
        out = np.zeros(shape)[index].shape
        if 0 in out:
            return
        self._step("getitem", (a,), {"index": index}, out, self.pos[a])

    def _concatenate(self, a: int) -> None:
        r = self.rng
        shape = self.shapes[a]
        axis = int(r.integers(-len(shape), len(shape)))
        others = []
        for _ in range(int(r.integers(1, 3))):
            other = list(shape)
            other[axis] = int(r.integers(1, 3))
            others.append(a if r.random() < 0.3 else self._operand_exact(tuple(other)))
        cut = int(r.integers(0, len(others) + 1))
        operands = tuple(others[:cut]) + (a,) + tuple(others[cut:])
        shapes = [self.shapes[x] if isinstance(x, int) else np.shape(x.value) for x in operands]
        if any(len(s) != len(shape) for s in shapes):
            return
        out = np.concatenate([np.zeros(s) for s in shapes], axis=axis).shape
        self._step("concatenate", operands, {"axis": axis}, out, False)

    def _stack(self, a: int) -> None:
        r, shape = self.rng, self.shapes[a]
        fits = [i for i, s in enumerate(self.shapes) if s == shape]
        operands = [a] + [int(r.choice(fits)) if r.random() < 0.6 else self._operand_exact(shape)
                          for _ in range(int(r.integers(0, 3)))]
        r.shuffle(operands)
        axis = int(r.integers(-len(shape) - 1, len(shape) + 1))
        out = np.stack([np.zeros(shape)] * len(operands), axis=axis).shape
        self._step("stack", tuple(operands), {"axis": axis}, out, False)

    def _operand_exact(self, shape: tuple):
        """A new leaf or a constant of exactly `shape` (Vars as constants: Python floats)."""
        if self.rng.random() < 0.5 or len(self.program.inputs) >= 4:
            return Const(_values(self.rng, shape, False, self.dtype) if shape else float(self.rng.uniform(-2, 2)))
        return self._input(shape, False)

    def _matmul(self, a: int) -> None:
        r = self.rng
        shape = self.shapes[a]
        if len(shape) > 2:
            return self._reshape(a)
        k = int(r.integers(1, 4))
        if r.random() < 0.5:  # a @ b
            b = self._operand_exact((shape[-1],) if r.random() < 0.3 else (shape[-1], k))
            operands = (a, b)
        else:  # b @ a
            b = self._operand_exact((shape[0],) if r.random() < 0.3 else (k, shape[0]))
            operands = (b, a)
        shapes = [self.shapes[x] if isinstance(x, int) else np.shape(x.value) for x in operands]
        out = np.matmul(np.zeros(shapes[0]), np.zeros(shapes[1])).shape
        self._step("matmul", operands, {"function": bool(r.random() < 0.3)}, out, False)

    def _loss(self, a: int) -> None:
        r = self.rng
        shape = self.shapes[a]
        if len(shape) == 2 and r.random() < 0.6:
            labels = r.integers(0, shape[1], shape[0])
            self._step("softmax_cross_entropy", (a,), {"labels": labels}, (), True)
        else:
            b = self._operand_exact(shape)
            self._step("mse", (a, b) if r.random() < 0.5 else (b, a), {}, (), False)

    # scalar programs: n-ary nodes of Vars and numbers

    def _sumlist(self, a: int, op: str = "sumlist") -> None:
        r = self.rng
        operands = [int(i) for i in r.integers(1, len(self.shapes), int(r.integers(1, 4)))]
        operands += [Const(float(r.uniform(-2, 2)))] * int(r.random() < 0.3)
        positive = op == "sumlist" and all(isinstance(i, int) and self.pos[i] for i in operands)
        self._step(op, tuple(operands), {}, (), positive)

    def _logsumexplist(self, a: int) -> None:
        self._sumlist(a, "logsumexplist")

    def _dot(self, a: int) -> None:
        r = self.rng
        n = int(r.integers(1, 4))
        xs = tuple(int(i) for i in r.integers(1, len(self.shapes), n))
        ws = tuple(int(i) if r.random() < 0.5 else Const(float(r.uniform(-2, 2))) for i in r.integers(1, len(self.shapes), n))
        self._step("dot", ws + xs, {"n": n}, (), False)


def draw(rng: np.random.Generator, kind: str, dtype: str, n_steps: int) -> Program:
    return Generator(rng, kind, dtype).draw(n_steps)
