"""wengert's tape: reverse-mode automatic differentiation on a Wengert list of scalar nodes
(`Var`) and matrix nodes (`Tensor`).

    >>> import tape
    >>> x1, x2 = tape.Var(3.141592653589793), tape.Var(1.0)
    >>> y = x2 * tape.cos(x1) + tape.exp(x2)
    >>> y.backward()
    >>> round(x1.grad, 12), round(x2.grad, 12)
    (-0.0, 1.718281828459)
"""
from ._rules import RULES, REDUCTIONS
from ._ops import (
    Var,
    atan,
    cos,
    cosh,
    exp,
    expm1,
    log,
    log1p,
    relu,
    sigmoid,
    sin,
    sinh,
    softplus,
    sqrt,
    stop_gradient,
    tan,
    tanh,
)
from ._nary import dot, logsumexp, record, sum
from ._array import VarArray, matmul, record_array
from ._tape import StaleVarError, Tape, TraceError, current_tape, op_code
from ._draw import draw
from ._display import Table
from ._notice import announce_compiling
from ._forward import Dual
from ._transforms import gradient, grad, hessian, hvp, jacobian, jvp, no_grad, value_and_grad, vjp
from ._trace import GuardError, Traced, trace
from ._check import GradientCheckError, check_grads
from ._tensor import Tensor, as_tensor, concatenate, mse, softmax_cross_entropy, stack

ELEMENTARY = {name: globals()[name] for name in
              ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "exp", "expm1", "log", "log1p", "sqrt", "sigmoid", "softplus", "relu")}


def reset() -> None:
    """Empty the current tape. Every Var on it becomes stale (using one raises)."""
    current_tape().reset()


def mark() -> int:
    """A mark on the current tape (see `Tape.mark`)."""
    return current_tape().mark()


def rewind(mark: int) -> None:
    """Drop every node of the current tape recorded after `mark` (see `Tape.rewind`)."""
    current_tape().rewind(mark)


__all__ = [
    "ELEMENTARY", "REDUCTIONS", "RULES", "StaleVarError", "Tape", "TraceError", "Var", "atan", "cos", "cosh",
    "current_tape", "dot", "exp", "expm1", "grad", "gradient", "log", "log1p", "logsumexp", "mark", "no_grad",
    "relu", "reset", "rewind", "sigmoid", "sin", "sinh", "softplus", "sqrt", "stop_gradient", "sum", "tan",
    "tanh", "value_and_grad", "VarArray", "Dual", "jvp", "vjp", "jacobian", "hessian", "hvp", "draw", "matmul",
    "record", "record_array", "op_code", "trace", "Traced", "GuardError", "check_grads", "GradientCheckError",
    "Table", "Tensor", "announce_compiling", "as_tensor", "concatenate", "mse", "softmax_cross_entropy", "stack",
]
