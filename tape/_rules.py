"""Every operation of the engine, declared once: its value, its local partial derivatives and
its domain. This is the one place a derivative is written.

`python -m tape._codegen` turns the table into the scalar `Var` operators and functions
(`tape/_ops.py`) and the compiled evaluator that records `VarArray`s and replays traces
(`tape/_compiled.py`); forward mode evaluates the same partials on Duals and Vars. This module
imports nothing of `tape`: every other module of it imports this one.

An expression reads the operands `a` (and `b`) and, in a partial, the value `y` (and, in a
reduction's, the sum `s` of its terms and its largest operand `m`). Its names are
resolved per mode: on floats `sin` is `math.sin`; in forward mode it is `tape.sin`, which
records, so that a partial can be differentiated again. `kink(v, *xs)` is `v` on floats; in
forward mode its derivative in the xs is nan (`KINK_PARTIAL`), and on Vars it is a node of its
own, which a trace replays. It marks a partial that is a limit at the edge of a domain (sqrt at
0, x**y at x = 0): the first derivative is exact, the next one says nan; or one that does not
exist (d/dy x**y at x < 0), whose derivatives do not either.
"""
from __future__ import annotations

import math
from typing import NamedTuple


class Rule(NamedTuple):
    """A unary or binary operation."""

    name: str  # how its nodes print; the function's name, or the operator's (mul)
    value: str  # y as an expression of a (and b)
    partials: tuple[str, ...]  # dy/da (and dy/db), expressions of a, b and y
    domain: str = ""  # the hint an error gives when the value is refused
    checked: bool = True  # whether `refused` applies (else IEEE's inf and nan pass through, as in a + b)
    symbol: str = ""  # the Python operator (binary) or builtin (abs), if any


class Reduction(NamedTuple):
    """An operation of many operands, one node with many parents: y = total(s), where s sums a
    term of each operand `a` (or of each pair `a, b`) and m is the largest operand."""

    name: str
    term: str
    total: str
    partials: tuple[str, ...]  # dy/d(each operand of a term), expressions of a (and b), y, s and m


UNARY = [
    Rule("neg", "-a", ("-1.0",), checked=False, symbol="-"),
    Rule("abs", "abs(a)", ("sign(a)",), checked=False, symbol="abs"),
    Rule("stop_gradient", "a", ("0.0",), checked=False),
    Rule("sin", "sin(a)", ("cos(a)",), "finite x"),
    Rule("cos", "cos(a)", ("-sin(a)",), "finite x"),
    Rule("tan", "tan(a)", ("1.0 + y * y",), "finite x"),
    Rule("atan", "atan(a)", ("1.0 / (1.0 + a * a)",), checked=False),
    Rule("sinh", "sinh(a)", ("cosh(a)",), "|x| <= 710"),
    Rule("cosh", "cosh(a)", ("sinh(a)",), "|x| <= 710"),
    Rule("tanh", "tanh(a)", ("1.0 - y * y",), checked=False),
    Rule("exp", "exp(a)", ("y",), "x <= 709"),
    Rule("expm1", "expm1(a)", ("y + 1.0",), "x <= 709"),
    Rule("log", "log(a)", ("1.0 / a",), "x > 0"),
    Rule("log1p", "log1p(a)", ("1.0 / (1.0 + a)",), "x > -1"),
    Rule("sqrt", "sqrt(a)", ("0.5 / y if y > 0.0 else kink(inf, a)",), "x >= 0"),
    Rule("sigmoid", "sigmoid(a)", ("y * (1.0 - y)",), checked=False),
    Rule("softplus", "a + log1p(exp(-a)) if a > 0.0 else log1p(exp(a))", ("sigmoid(a)",), checked=False),
    Rule("relu", "a if a > 0.0 else 0.0", ("1.0 if a > 0.0 else 0.0",), checked=False),
]

BINARY = [
    Rule("add", "a + b", ("1.0", "1.0"), checked=False, symbol="+"),
    Rule("sub", "a - b", ("1.0", "-1.0"), checked=False, symbol="-"),
    Rule("mul", "a * b", ("b", "a"), checked=False, symbol="*"),
    Rule("truediv", "a / b", ("1.0 / b", "-y / b"), symbol="/"),
    Rule(
        "pow",
        "power(a, b)",
        (  # at b == 0 the slope b y / a: 0, not 0 * a**-1 = 0 * inf at a subnormal a; its d/db, y / a, kept
            "b * y / a if b == 0.0 and a != 0.0 else b * a ** (b - 1.0) if a != 0.0 or b >= 1.0 else kink(0.0, b) if b == 0.0 else kink(inf, a, b)",
            "y * log(a) if a > 0.0 else kink(0.0, a, b) if a == 0.0 else kink(nan, a, b)",
        ),
        symbol="**",
    ),
]

REDUCTIONS = [
    Reduction("sum", "a", "s", ("1.0",)),
    Reduction("dot", "a * b", "s", ("b", "a")),
    # shifted by the largest operand, unless it is infinite: then each operand equal to it counts 1
    # (logsumexp([-inf]) is -inf, not exp(-inf + inf) = nan); the softmax is term / s, as exp(a - y)
    # would carry y's rounding (up to ulp(m)) into the exponent
    Reduction("logsumexp", "exp(a - m) if abs(m) < inf else 1.0 if a == m else 0.0", "m + log(s)",
              ("(exp(a - m) if abs(m) < inf else 1.0 if a == m else 0.0) / s",)),
]

RULES = UNARY + BINARY
FUNCTIONS = [r.name for r in UNARY if not r.symbol]  # tape.sin and friends (and stop_gradient)


# -- op codes: a node's operation, one byte ------------------------------------------------------
# A binary operation has three codes: both operands are nodes, the right one is a constant
# (x * 2), or the left one is (2 * x). A constant is kept in the node's record, for replays.

LEAF, BOTH, RIGHT_CONSTANT, LEFT_CONSTANT = 0, 0, 1, 2


def _codes() -> list[tuple[str, Rule | Reduction | None, int]]:
    codes: list = [("leaf", None, BOTH)]
    codes += [(r.name, r, BOTH) for r in UNARY]
    codes += [(r.name, r, v) for r in BINARY for v in (BOTH, RIGHT_CONSTANT, LEFT_CONSTANT)]
    codes += [(r.name, r, BOTH) for r in REDUCTIONS]
    codes += [("kink", None, BOTH)]  # a kink of a partial recorded on Vars: its value is its constant
    return codes


CODES = _codes()  # (name, rule, variant) by op code
FIRST_CUSTOM = len(CODES)  # codes from here on name operations recorded by `tape.record`
MAX_CODES = 256
KINK_PARTIAL = math.nan  # a kink's partial in each of its operands: no derivative there


def constant_is_partial(code: int) -> bool:
    """Whether a binary node's constant operand is its partial (x * 2: d/dx = 2). Then the
    record does not repeat it, and a replay reads it from the partial."""
    _, rule, variant = CODES[code]
    if variant == RIGHT_CONSTANT:
        return rule.partials[0] == "b"
    return variant == LEFT_CONSTANT and rule.partials[1] == "a"


def code_of(name: str, variant: int = BOTH) -> int:
    """The op code of a rule by its name (and, for a binary one, where its constant is)."""
    for code, (n, _, v) in enumerate(CODES):
        if n == name and v == variant:
            return code
    raise KeyError(f"no operation {name!r} in the rule table")


# -- a node's record, as operations stage it and kernels read it ---------------------------------
# header, parent_1 .. parent_k, partial_1 .. partial_k, constant_1 .. constant_c, all float64.
# The header packs the op code, c and k; the constants are what a replay needs besides the
# parents (a leaf's value, the constant operand of x * 2, a reduction's constant part).

CODE_BITS, CONSTANT_BITS = 8, 2


def header(code: int, parents: int, constants: int = 0) -> int:
    return (parents << (CODE_BITS + CONSTANT_BITS)) | (constants << CODE_BITS) | code


# -- the helpers the expressions call on floats (compiled as they are for numba) ------------------


def sigmoid(a: float) -> float:
    """1 / (1 + e^-a), without overflow for large |a|."""
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def sequential_sum(values) -> float:
    """The sum of floats, added one by one from 0.0 (as compiled code adds them)."""
    s = 0.0
    for a in values:
        s += a
    return s


def sign(a) -> float:
    """-1, 0 or 1 (of a float, a Var or a Dual: it only compares)."""
    return float((a > 0.0) - (a < 0.0))


def power(a: float, b: float) -> float:
    """a ** b, refusing what Python's float power would make complex or fail on tersely."""
    if a == 0.0 and -math.inf < b < 0.0:  # 0 ** -inf is inf, as Python's
        raise ZeroDivisionError("0 cannot be raised to a negative power")
    if a < 0.0 and math.isfinite(b) and b != math.floor(b):  # an infinite exponent has C's limits
        raise ValueError("a negative base needs an integer exponent")
    try:
        return a**b
    except OverflowError:
        raise OverflowError("the result is too large for a float") from None


def refused(y: float, a: float, b: float, divides: bool) -> bool:
    """THE rule for what is an error, on every path (the scalar operators, forward mode,
    VarArrays, traced replays): a checked operation refuses a value that is nan from operands
    that are not nan (outside its domain: log(-1), sin(inf)), an infinite value of finite
    operands (an overflow or a pole: exp(1000), 1e300 / 1e-300, 1 / 0), and any division by 0
    (`divides`: b is a divisor). Python's float and math raise exactly there; compiled code
    checks this. A partial is never refused: one that overflows is an infinite number."""
    if y != y:
        return a == a and b == b or divides and b == 0.0
    return abs(y) == math.inf and abs(a) < math.inf and abs(b) < math.inf or divides and b == 0.0


def refusal(name: str, operands: tuple, y: float) -> Exception:
    """The error for a value `refused` refuses where Python's own arithmetic did not raise."""
    return domain_error(name, operands, ValueError("math domain error") if y != y else OverflowError("math range error"))


def partial_power(a, b):
    """a ** b in a partial: where it overflows on floats, IEEE's infinity of the right sign (a
    partial that overflows is a number, not an error); on Vars and Duals, their own power."""
    try:
        return a**b
    except OverflowError:
        if not isinstance(a, float):
            raise
        return -math.inf if a < 0.0 and b % 2.0 == 1.0 else math.inf


def domain_error(name: str, operands: tuple, error: Exception) -> Exception:
    """The error for operands a rule refuses: `log(-1.0): math domain error (log needs x > 0)`."""
    rule = next(r for r in RULES if r.name == name)
    if len(operands) == 2:
        a, b = (f"({x!r})" if x < 0 else repr(x) for x in operands)
        call = f"{a} {rule.symbol} {b}"
    else:
        call = f"{name}({', '.join(map(repr, operands))})"
    needs = f" ({name} needs {rule.domain})" if rule.domain else ""
    return type(error)(f"{call}: {error}{needs}")
