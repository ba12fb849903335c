"""One rule for what is an error (tape._rules.refused), on every path: the scalar operators,
forward mode, VarArrays and traced replays refuse the same operands with the same kind of
error, and agree on every value they give, at the edges of every operation's domain."""
import math

import numpy as np
import pytest

import tape
from tape._rules import BINARY, UNARY

EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, math.pi / 2, 1e-300, -1e-300, 1e-110, 1e300, -1e300,
         709.0, 710.0, -710.0, math.inf, -math.inf, math.nan]
UNARY_FUNCTIONS = {r.name: (getattr(tape, r.name) if not r.symbol else {"-": lambda x: -x, "abs": abs}[r.symbol]) for r in UNARY}
BINARY_FUNCTIONS = {r.name: {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
                             "/": lambda a, b: a / b, "**": lambda a, b: a**b}[r.symbol] for r in BINARY}
SAFE = 0.7  # where every operation is defined: where the traces are recorded


def outcome(compute):
    """('value', float) or ('error', its class)."""
    try:
        with np.errstate(all="ignore"):
            return "value", float(np.asarray(compute()).ravel()[0])
    except (ValueError, ArithmeticError) as e:
        return "error", type(e)


def agree(outcomes: dict, where: str) -> None:
    kinds = {path: o[0] for path, o in outcomes.items()}
    assert len(set(kinds.values())) == 1, f"{where}: {outcomes}"
    first = next(iter(outcomes.values()))
    for path, o in outcomes.items():
        if o[0] == "value":
            assert o[1] == first[1] or (math.isnan(o[1]) and math.isnan(first[1])), f"{where}: {outcomes}"
        else:
            assert issubclass(o[1], first[1]) or issubclass(first[1], o[1]), f"{where}: {outcomes}"


@pytest.mark.parametrize("name", list(UNARY_FUNCTIONS))
def test_every_unary_operation_refuses_the_same_operands_on_every_path(name):
    f = UNARY_FUNCTIONS[name]
    traced = tape.trace(lambda x: f(x), SAFE)
    for a in EDGES:
        agree({
            "scalar": outcome(lambda: f(tape.Var(a)).value),
            "number": outcome(lambda: f(a) if name not in ("neg", "abs") else f(tape.Var(a)).value),
            "forward": outcome(lambda: f(tape.Dual(a, 1.0)).value),
            "VarArray": outcome(lambda: f(tape.VarArray([a])).values),
            "traced": outcome(lambda: traced(a)),
        }, f"{name}({a!r})")


@pytest.mark.parametrize("name", list(BINARY_FUNCTIONS))
def test_every_binary_operation_refuses_the_same_operands_on_every_path(name):
    f = BINARY_FUNCTIONS[name]
    both = tape.trace(lambda x, y: f(x, y), SAFE, SAFE + 0.6)
    defined = lambda x, y: outcome(lambda: f(tape.Var(x), y).value)[0] == "value"  # noqa: E731
    for a in EDGES:
        for b in EDGES:
            paths = {
                "scalar": outcome(lambda: f(tape.Var(a), tape.Var(b)).value),
                "right constant": outcome(lambda: f(tape.Var(a), b).value),
                "left constant": outcome(lambda: f(a, tape.Var(b)).value),
                "forward": outcome(lambda: f(tape.Dual(a, 1.0), tape.Dual(b, 0.5)).value),
                "VarArray": outcome(lambda: f(tape.VarArray([a]), tape.VarArray([b])).values),
                "VarArray and a constant": outcome(lambda: f(tape.VarArray([a]), b).values),
                "traced": outcome(lambda: both(a, b)),
            }
            if defined(SAFE, b):  # traced with b a constant of the trace
                paths["traced, b constant"] = outcome(lambda: tape.trace(lambda x: f(x, b), SAFE)(a))
            if defined(a, SAFE):
                paths["traced, a constant"] = outcome(lambda: tape.trace(lambda y: f(a, y), SAFE)(b))
            agree(paths, f"{a!r} {name} {b!r}")


def test_a_partial_that_overflows_is_infinite_on_every_path_not_an_error():
    """d/dx x**-2 = -2 x**-3 at 1e-110 is -2e330: beyond floats, so -inf, while the value 1e220
    is finite (it was a bare OverflowError(34) of Python's float power)."""
    f = lambda x: x**-2  # noqa: E731
    assert tape.grad(f)(1e-110) == -math.inf
    assert tape.jvp(f, (1e-110,), (1.0,)) == (pytest.approx(1e220), -math.inf)
    assert tape.trace(f, 1.0).grad()(1e-110) == -math.inf
    assert tape.grad(lambda x: x**-3)(-1e-80) == -math.inf  # -3 x**-4: negative whatever x's sign
    assert tape.grad(f)(-1e-110) == math.inf  # -2 x**-3 at a negative x: positive


def test_the_issue_cases_give_the_same_error_on_every_path():
    with pytest.raises(OverflowError, match=r"1e\+300 / 1e-300: math range error"):
        tape.Var(1e300) / 1e-300
    with pytest.raises(OverflowError, match=r"1e\+300 / 1e-300: math range error; replaying"):
        tape.trace(lambda x: 1e300 / x, 1.0)(1e-300)
    with pytest.raises(OverflowError, match=r"math range error at index \(1,\)"):
        tape.VarArray([1.0, 1e300]) / 1e-300
    with pytest.raises(ValueError, match=r"sin\(inf\): math domain error \(sin needs finite x\); replaying"):
        tape.trace(lambda x: tape.sin(x * x), 1.0)(1e200)
    with pytest.raises(ValueError, match=r"log\(-inf\): math domain error"):
        tape.trace(lambda x: tape.log(x), 1.0)(-math.inf)


PYTHON = {**{name: getattr(math, name) for name in ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "exp",
                                                     "expm1", "log", "log1p", "sqrt")},
          "truediv": lambda a, b: a / b, "pow": lambda a, b: a**b}


def expected(name, *operands):
    """The rule, written out here: Python's float and math value, refused where they raise, where
    the value is nan of operands that are not, or infinite of finite operands."""
    if name == "pow" and operands[0] < 0 and math.isfinite(operands[1]) and operands[1] != math.floor(operands[1]):
        return "error", ValueError  # Python's answer is complex (or its overflow): no real power
    try:
        y = PYTHON[name](*operands)
    except (ValueError, ArithmeticError) as e:
        return "error", type(e)
    if math.isnan(y) and not any(math.isnan(v) for v in operands):
        return "error", ValueError
    if math.isinf(y) and all(math.isfinite(v) for v in operands):
        return "error", OverflowError
    return "value", y


@pytest.mark.parametrize("name", list(PYTHON))
def test_the_rule_is_pythons_float_and_math_with_nan_and_overflow_refused(name):
    for a in EDGES:
        for b in EDGES if name in BINARY_FUNCTIONS else [None]:
            operands = (a,) if b is None else (a, b)
            f = UNARY_FUNCTIONS.get(name) or BINARY_FUNCTIONS[name]
            got = outcome(lambda: f(*map(tape.Var, operands)).value)
            agree({"engine": got, "the rule": expected(name, *operands)}, f"{name}{operands}")
