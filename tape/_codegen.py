"""Write the code the rule table implies: `python -m tape._codegen` (or `python tape/_codegen.py`).

From `tape/_rules.py` come three checked-in files (a test fails while one is out of date):

* `tape/_ops.py`: `Var`'s operators and the table's functions, each written out with its rule's
  value and partials inline (a helper call per operation costs a third of the recording time);
  each rule's partials as functions of any number type, for forward mode and second
  derivatives; and the reductions' rules on floats.
* `tape/_compiled.py`: the same rules for numba, which can cache only functions that live in a
  file: the kernels that record VarArrays and the interpreter that replays traces call them.
* `tape/_vectorized.py`: the rules on numpy arrays for matrix nodes, and their partials as
  recorded operations on Tensors, for second derivatives on matrix nodes.

An expression of the table is translated per mode by renaming its names (see `NAMES`).
"""
from __future__ import annotations

import ast
import importlib.util
import textwrap
from pathlib import Path

HERE = Path(__file__).parent


def _load_rules():
    """tape/_rules.py by its path: the generator runs even while tape's generated files are
    missing or out of date (`python tape/_codegen.py`)."""
    spec = importlib.util.spec_from_file_location("wengert_rules", HERE / "_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_rules = _load_rules()
BINARY, CODES, REDUCTIONS, UNARY = _rules.BINARY, _rules.CODES, _rules.REDUCTIONS, _rules.UNARY
BOTH, LEFT_CONSTANT, RIGHT_CONSTANT = _rules.BOTH, _rules.LEFT_CONSTANT, _rules.RIGHT_CONSTANT
header, code_of, constant_is_partial = _rules.header, _rules.code_of, _rules.constant_is_partial
TARGETS = {"_ops.py": "ops_source", "_compiled.py": "compiled_source", "_vectorized.py": "vectorized_source"}
OPERANDS = {"a", "b", "y", "s", "m"}
MATH = ["sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "exp", "expm1", "log", "log1p", "sqrt"]
# What each name of an expression is, per mode. "float": the Python recording path, on floats;
# "generic": forward mode and derivative programs, on floats, Vars or Duals (tape's own
# functions, which record); "numba": the compiled kernels; "numpy": matrix nodes' values and partials on
# arrays; "recorded": their partials on Tensors, recording.
# A `**` in an expression is renamed as the name "**" says, where a mode gives one.
NAMES = {
    "float": {**{f: f"_{f}" for f in MATH}, "sigmoid": "_sigmoid", "sign": "_sign", "power": "_power",
              "inf": "_inf", "nan": "_nan", "abs": "abs", "**": "_partial_power"},
    "generic": {**{f: f for f in MATH}, "sigmoid": "sigmoid", "sign": "_sign", "kink": "kink",
                "inf": "_inf", "nan": "_nan", "abs": "abs", "**": "_partial_power"},
    "numba": {**{f: f"math.{f}" for f in MATH}, "sigmoid": "_sigmoid", "sign": "_sign", "power": "_power",
              "inf": "math.inf", "nan": "math.nan", "abs": "abs"},
    "numpy": {**{f: f"np.{f}" for f in MATH}, "sigmoid": "_sigmoid", "sign": "np.sign", "power": "_power",
              "inf": "np.inf", "nan": "np.nan", "abs": "np.abs", "**": "np.power"},
    # on Tensors, recording: `on` is tape._tensor (passed in: this file imports nothing of tape)
    "recorded": {**{f: f"on.{f}" for f in MATH}, "sigmoid": "on.sigmoid", "sign": "on.sign", "kink": "on.kink",
                 "inf": "np.inf", "nan": "np.nan", "abs": "abs"},
}


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str], keep_kinks: bool, vectorized: bool = False, recorded: bool = False) -> None:
        self.names, self.keep_kinks, self.vectorized, self.recorded = names, keep_kinks, vectorized, recorded

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        """On arrays `x if c else z` is np.where(c, x, z): both sides computed, one kept per entry.
        Two forms have a faster exact equivalent (np.where with a number is numpy's slow path):
        `1.0 if c else 0.0` is c as numbers, `x if x > k else 0.0` (k >= 0) x's part above k."""
        node = self.generic_visit(node)
        if self.recorded:  # a node of its own, its mask a constant
            return ast.copy_location(_call("on.where", node.test, node.body, node.orelse), node)
        if not self.vectorized:
            return node
        body, orelse, test = (ast.unparse(n) for n in (node.body, node.orelse, node.test))
        if (body, orelse) == ("1.0", "0.0"):
            return ast.copy_location(_call("_indicator", node.test, ast.Name("a", ast.Load())), node)
        compare = node.test
        if (orelse == "0.0" and isinstance(compare, ast.Compare) and isinstance(compare.ops[0], ast.Gt)
                and ast.unparse(compare.left) == body and isinstance(compare.comparators[0], ast.Constant)
                and compare.comparators[0].value >= 0):
            return ast.copy_location(_call("_above", node.body, compare.comparators[0]), node)
        return ast.copy_location(_call("np.where", node.test, node.body, node.orelse), node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        node = self.generic_visit(node)
        if not (self.vectorized or self.recorded):
            return node
        combine = "np.logical_and" if isinstance(node.op, ast.And) else "np.logical_or"
        out = node.values[0]
        for value in node.values[1:]:
            out = _call(combine, out, value)
        return ast.copy_location(out, node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if isinstance(node.func, ast.Name) and node.func.id == "kink" and not self.keep_kinks:
            return self.visit(node.args[0])  # on floats a kink is its value
        return self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        """On Tensors a comparison compares values (a Tensor's == is identity): each operand read by on.exact."""
        node = self.generic_visit(node)
        if self.recorded:
            exact = lambda x: _call("on.exact", x) if isinstance(x, ast.Name) and x.id in OPERANDS else x  # noqa: E731
            node.left, node.comparators = exact(node.left), [exact(c) for c in node.comparators]
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.generic_visit(node)
        if isinstance(node.op, ast.Pow) and "**" in self.names:
            return ast.copy_location(ast.Call(ast.Name(self.names["**"], ast.Load()), [node.left, node.right], []), node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in OPERANDS:
            return node
        if node.id not in self.names:
            raise KeyError(f"the rule table uses {node.id!r}, which no mode defines (see NAMES)")
        return ast.copy_location(ast.Name(self.names[node.id], node.ctx), node)


def _call(function: str, *args: ast.AST) -> ast.Call:
    return ast.Call(ast.parse(function, mode="eval").body, list(args), [])


def translate(expression: str, mode: str) -> str:
    rename = _Rename(NAMES[mode], keep_kinks=mode in ("generic", "recorded"), vectorized=mode == "numpy",
                     recorded=mode == "recorded")
    return ast.unparse(ast.fix_missing_locations(rename.visit(ast.parse(expression, mode="eval"))))


def code_name(code: int) -> str:
    """How the generated code names op code `code`: MUL, MUL_RIGHT_CONSTANT, ..."""
    name, _, variant = CODES[code]
    return name.upper() + {BOTH: "", RIGHT_CONSTANT: "_RIGHT_CONSTANT", LEFT_CONSTANT: "_LEFT_CONSTANT"}[variant]


# -- tape/_ops.py ---------------------------------------------------------------------------------

OPS_HEADER = '''"""Generated by `python -m tape._codegen` from tape/_rules.py: do not edit.

`Var` is `VarBase` with the operators; then the rule table's functions (sin, ...,
stop_gradient). Each records its rule's value and partials inline, with no helper call. Then
`PARTIALS`: each rule's partials as functions of floats, Vars or Duals (forward mode evaluates
them on a Dual's parts; on Vars they record, and a sweep differentiates them again). Last, the
reductions' rules on floats, which `tape._nary` records.
"""
import math
import sys
from operator import mul as _mul

from ._rules import domain_error, refusal, sequential_sum
from ._rules import partial_power as _partial_power
from ._rules import power as _power
from ._rules import refused as _refused
from ._rules import sigmoid as _sigmoid
from ._rules import sign as _sign
from ._var import CONSTANTS, VarBase, check_operand, kink
from ._var import new as _new

{aliases}
_inf, _nan = math.inf, math.nan
_sum = sum if sys.version_info < (3, 12) else sequential_sum  # 3.12's sum() of floats compensates
OTHER_TYPES = {{}}  # type -> apply(op code, x): tape._forward (Dual) and tape._array (arrays) add theirs
_ERRORS = (ValueError, OverflowError, ZeroDivisionError)
'''

RECORD = """\
seg = {x}._seg
t = seg.tape
if not t.recording:
    return y
{check}seg.record(({header}, {record}))  # {comment}
n = t._n
t._n = n + 1
if n >= t._flush_at:
    t.flush()
r = _new(Var)
r._value = y
r._node = n
r._seg = t._seg
return r
"""


def _evaluate(rule, operands: str, mode: str = "float") -> str:
    """`y = <value>`, turning a refused value into the rule's domain error: where Python raises
    (with its message), and where `_rules.refused` refuses what Python let through."""
    value = f"y = {translate(rule.value, mode)}\n"
    both = f"({operands}{',' * (',' not in operands)})"
    if _may_raise(rule.value):
        value = f"try:\n    {value}except _ERRORS as e:\n    raise domain_error({rule.name!r}, {both}, e) from None\n"
    if rule.checked:  # one comparison when y is finite
        a, b = (operands.split(", ") + ["0.0"])[:2]
        divides = rule.name == "truediv"
        value += f"if not -_inf < y < _inf and _refused(y, {a}, {b}, {divides}):\n    raise refusal({rule.name!r}, {both}, y)\n"
    return value


def _may_raise(expression: str) -> bool:
    """Whether Python may refuse the expression's operands: it calls a function, or divides."""
    return any(isinstance(n, (ast.Call, ast.Div, ast.Pow)) for n in ast.walk(ast.parse(expression, mode="eval")))


def _simple(expression: str) -> bool:
    """A partial that is a number or an operand goes straight into the record."""
    node = ast.parse(expression, mode="eval").body
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) or (isinstance(node, ast.Name) and node.id in OPERANDS)


def _record(rule, code: int, x: str, parents: list[str], which: list[int], constants: list[str]) -> str:
    """Compute the partials `which` (0: dy/da, 1: dy/db) of the parents and record the node."""
    body, partials = "", []
    for i in which:
        expression = translate(rule.partials[i], "float")
        if _simple(expression):
            partials.append(expression)
        else:
            body += f"d{'ab'[i]} = {expression}\n"
            partials.append(f"d{'ab'[i]}")
    check = "" if len(parents) == 1 else f"if {parents[1]}._seg is not seg:\n    check_operand({parents[0]}, {parents[1]})\n"
    record = ", ".join([f"{p}._node" for p in parents] + partials + constants)
    comment = f"header: {code_name(code).lower()}, {len(parents)} parent{'s' * (len(parents) > 1)}" + (", 1 constant" if constants else "")
    return body + RECORD.format(x=x, check=check, header=header(code, len(parents), len(constants)), record=record, comment=comment)


def _docstring(call: str, rule) -> str:
    text = f"y = {rule.value}; " + "; ".join(f"dy/d{'ab'[i]} = {p}" for i, p in enumerate(rule.partials))
    rule_text = f"rule {rule.name!r}: {text}" if len(text) < 70 else f"rule {rule.name!r} of tape/_rules.py"
    lines = textwrap.wrap(f"{call}, recorded ({rule_text}).", 92)
    return '    """' + "\n    ".join(lines) + '"""\n'


def _binary(rule) -> str:
    both, right, left = (code_of(rule.name, v) for v in (BOTH, RIGHT_CONSTANT, LEFT_CONSTANT))
    as_float = "other if other.__class__ is float or other.__class__ is int else float(other)"
    forward = (
        f"def __{rule.name}__(self, other):\n"
        + _docstring(f"self {rule.symbol} other", rule)
        + "    if other.__class__ is Var:\n"
        + textwrap.indent("a = self._value\nb = other._value\n" + _evaluate(rule, "a, b")
                          + _record(rule, both, "self", ["self", "other"], [0, 1], []), "        ")
        + "    if other.__class__ is float or isinstance(other, CONSTANTS):\n"
        + textwrap.indent(f"a = self._value\nb = {as_float}\n" + _evaluate(rule, "a, b")
                          + _record(rule, right, "self", ["self"], [0], [] if constant_is_partial(right) else ["b"]), "        ")
        + "    return NotImplemented\n"
    )
    reflected = (
        f"def __r{rule.name}__(self, other):\n"
        f'    """other {rule.symbol} self, recorded (see __{rule.name}__)."""\n'
        + "    if other.__class__ is float or isinstance(other, CONSTANTS):\n"
        + textwrap.indent(f"a = {as_float}\nb = self._value\n" + _evaluate(rule, "a, b")
                          + _record(rule, left, "self", ["self"], [1], [] if constant_is_partial(left) else ["a"]), "        ")
        + "    return NotImplemented\n"
    )
    return forward + "\n" + reflected


def _unary_method(rule) -> str:
    dunder = {"-": "__neg__", "abs": "__abs__"}[rule.symbol]
    return (
        f"def {dunder}(self):\n"
        + _docstring(f"{rule.symbol}self" if rule.symbol == "-" else f"{rule.symbol}(self)", rule)
        + textwrap.indent("a = self._value\n" + _evaluate(rule, "a") + _record(rule, code_of(rule.name), "self", ["self"], [0], []), "    ")
    )


def _function(rule) -> str:
    return (
        f"def {rule.name}(x):\n"
        + _docstring(f"{rule.name}(x) of a Var (else a float of a number, or entry by entry of an array)", rule)
        + "    if x.__class__ is Var:\n"
        + textwrap.indent("a = x._value\n" + _evaluate(rule, "a") + _record(rule, code_of(rule.name), "x", ["x"], [0], []), "        ")
        + "    if x.__class__ is float or isinstance(x, CONSTANTS):\n"
        + textwrap.indent("a = float(x)\n" + _evaluate(rule, "a") + "return y\n", "        ")
        + f"    return _other({code_of(rule.name)}, x, {rule.name!r})\n"
    )


def _on_numbers(rule) -> str:
    """`<name>_value(a, b)`: the binary rule's value of two floats, refused as the operator on
    Vars refuses (forward mode's value, where Python's own operator would let an overflow by)."""
    return (
        f"def {rule.name}_value(a, b):\n"
        f'    """a {rule.symbol} b of two floats, refused as on Vars (rule {rule.name!r})."""\n'
        + textwrap.indent(_evaluate(rule, "a, b") + "return y\n", "    ")
    )


def _generic_partials() -> str:
    lines, table = [], []
    for code, (name, rule, variant) in enumerate(CODES):
        if rule is None:
            continue
        fn = f"_d_{code_name(code).lower()}"
        if isinstance(rule, _rules.Reduction):
            args, partials = ("a, b, y, s, m" if len(rule.partials) == 2 else "a, y, s, m"), rule.partials
        else:
            args = "a, b, y"
            partials = {BOTH: rule.partials, RIGHT_CONSTANT: rule.partials[:1], LEFT_CONSTANT: rule.partials[1:]}[variant]
        returned = ", ".join(translate(p, "generic") for p in partials) + ("," if len(partials) == 1 else "")
        lines.append(f"def {fn}({args}):\n    return ({returned})\n")
        table.append(f"    {code}: {fn},  # {name}")
    terms = []
    for rule in REDUCTIONS:
        if any(_reads(p, {"s", "m"}) for p in rule.partials):
            args = "a, b, m" if len(rule.partials) == 2 else "a, m"
            lines.append(f"def _term_{rule.name}({args}):\n    return {translate(rule.term, 'generic')}\n")
            terms.append(f"    {code_of(rule.name)}: _term_{rule.name},")
    return ("\n\n".join(lines) + "\n\n# op code -> the partials of the operands that are nodes, (a, b, y) -> tuple; a\n"
            "# reduction's, (a, [b,] y, s, m) -> tuple\n"
            "PARTIALS = {\n" + "\n".join(table) + "\n}\n"
            "# op code -> a reduction's term, (a, [b,] m), for those whose partials read the sum s of the terms\n"
            "# and the largest operand m\n"
            "TERMS = {\n" + "\n".join(terms) + "\n}\n")


def _reads(expression: str, names: set) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(ast.parse(expression, mode="eval")))


def _reduction_rules() -> str:
    out = []
    for rule in REDUCTIONS:
        pairs = len(rule.partials) == 2
        params, loop = ("a_values, b_values", "for a, b in zip(a_values, b_values)") if pairs else ("values", "for a in values")
        shift = f"m = max({params.split(',')[0]})\n" if "m" in rule.term + rule.total else ""
        if rule.term == "a":
            terms = f"s = _sum(values)\n"
        elif rule.term == "a * b":
            terms = "s = _sum(map(_mul, a_values, b_values))\n"
        else:
            terms = f"s = 0.0\n{loop}:\n    s += {translate(rule.term, 'float')}\n"
        lists = []
        for p in rule.partials:
            expression = translate(p, "float")
            is_number = isinstance(ast.parse(expression, mode="eval").body, ast.Constant)
            lists.append(f"[{expression}] * len({params.split(',')[0]})" if is_number else f"[{expression} {loop}]")
        out.append(
            f"def {rule.name}_rule({params}):\n"
            f'    """y = {rule.total} with s the sum of {rule.term} (in order), and dy/d(each operand)."""\n'
            + textwrap.indent(shift + terms + f"y = {translate(rule.total, 'float')}\nreturn y, {', '.join(lists)}\n", "    ")
        )
    return "\n\n".join(out)


def ops_source() -> str:
    aliases = "\n".join(f"_{f} = math.{f}" for f in MATH)
    methods = [_binary(r) for r in BINARY] + [_unary_method(r) for r in UNARY if r.symbol]
    var = (
        "class Var(VarBase):\n"
        "    __doc__ = VarBase.__doc__\n"
        "    __slots__ = ()\n\n"
        + textwrap.indent("\n".join(methods), "    ")
        + "\n    def detach(self):\n"
        '        """The same value as a node no gradient flows through (see `stop_gradient`)."""\n'
        "        return stop_gradient(self)\n"
    )
    other = (
        "def _other(code, x, name):\n"
        '    """A function of the table applied to something other than a Var or a number."""\n'
        "    apply = OTHER_TYPES.get(type(x))\n"
        "    if apply is None:\n"
        '        raise TypeError(f"{name}() takes a Var, a number, a VarArray, an array or a Dual, got {type(x).__name__}")\n'
        "    return apply(code, x)\n"
    )
    functions = [_function(r) for r in UNARY if not r.symbol] + [_on_numbers(r) for r in BINARY]
    return "\n\n".join([OPS_HEADER.format(aliases=aliases), var, other, *functions, _generic_partials(), _reduction_rules()]).rstrip() + "\n"


# -- tape/_compiled.py ----------------------------------------------------------------------------

COMPILED_HEADER = '''"""Generated by `python -m tape._codegen` from tape/_rules.py: do not edit.

The rule table for numba kernels (VarArray recording, trace replays): `evaluate(code, a, b)`
is a unary or binary operation's value and partials; `term`, `total` and `term_partials` are a
reduction's pieces. `CHECKED[code]` says whether `refused_value` (tape._rules.refused, the one rule
for what is an error) applies to operation `code`, `DIVIDES[code]` whether its b is a divisor.
Each is inlined where it is called (numba's inline="always"): the interpreter's dispatch on the
op code then costs a jump, not a call.
"""
import math

import numpy as np
from numba import njit

from . import _rules

_sigmoid = njit(cache=True)(_rules.sigmoid)
_sign = njit(cache=True)(_rules.sign)
refused_value = njit(cache=True)(_rules.refused)


@njit(cache=True)
def _power(a, b):
    if a < 0.0 and b != math.floor(b):
        return math.nan  # what tape._rules.power refuses, whatever a's size
    return a**b  # refused operands give nan or inf, which refused_value catches


{constants}
CHECKED = np.array({checked}, dtype=np.bool_)
DIVIDES = np.array({divides}, dtype=np.bool_)  # b is a divisor
'''


def _branches() -> str:
    """A branch per op code (a dense switch, which LLVM makes a jump table). With a constant
    operand a binary rule computes only the other operand's partial."""
    out = []
    for code, (name, rule, variant) in enumerate(CODES):
        if rule is None or isinstance(rule, _rules.Reduction):
            continue
        partials = [translate(p, "numba") for p in rule.partials] + ["0.0"] * (2 - len(rule.partials))
        if variant == RIGHT_CONSTANT:
            partials[1] = "0.0"
        elif variant == LEFT_CONSTANT:
            partials[0] = "0.0"
        out.append(f"    if code == {code_name(code)}:\n        y = {translate(rule.value, 'numba')}\n        return y, {', '.join(partials)}\n")
    return "".join(out)


def compiled_source() -> str:
    constants = "\n".join(f"{code_name(c)} = {c}" for c, (_, r, _) in enumerate(CODES))
    checked = [bool(getattr(r, "checked", False)) for _, r, _ in CODES]
    divides = [name == "truediv" for name, _, _ in CODES]
    evaluate = (
        "@njit(cache=True, error_model=\"numpy\", inline=\"always\")\n"
        "def evaluate(code, a, b):\n"
        '    """(y, dy/da, dy/db) of the unary (b unused) or binary operation `code`."""\n'
        + _branches()
        + "    return math.nan, math.nan, math.nan\n"
    )
    pieces = []
    for name, field in (("term", "term"), ("total", "total")):
        args = "code, a, b, m" if name == "term" else "code, s, m"
        body = "".join(f"    if code == {code_name(code_of(r.name))}:\n        return {translate(getattr(r, field), 'numba')}\n" for r in REDUCTIONS)
        pieces.append(f"@njit(cache=True, inline=\"always\")\ndef {name}({args}):\n{body}    return math.nan\n")
    partials = "".join(
        f"    if code == {code_name(code_of(r.name))}:\n        return {', '.join([translate(p, 'numba') for p in r.partials] + ['0.0'] * (2 - len(r.partials)))}\n"
        for r in REDUCTIONS
    )
    pieces.append(f"@njit(cache=True, inline=\"always\")\ndef term_partials(code, a, b, y, s, m):\n{partials}    return math.nan, math.nan\n")
    return COMPILED_HEADER.format(constants=constants, checked=checked, divides=divides) + "\n\n" + evaluate + "\n\n" + "\n\n".join(pieces)


# -- tape/_vectorized.py --------------------------------------------------------------------------

VECTORIZED_HEADER = '''"""Generated by `python -m tape._codegen` from tape/_rules.py: do not edit.

The rule table on numpy arrays, for matrix nodes (tape.Tensor): each element-wise operation
returns its value and its partials, entry by entry (numpy broadcasting the operands), a branch of
a rule being `np.where`. Nothing is refused here: `ELEMENTWISE[name]` says whether the rule is
checked and whether its b divides, and tape._tensor refuses by tape._rules' one rule. Warnings of
IEEE arithmetic are silenced where a rule computes a branch it will not keep.

`RECORDED_PARTIALS[name]` gives the same partials as operations on Tensors, which record (forward
mode on values that are nodes, to be differentiated again): a branch is a `where` node whose mask
is a constant, a kink a `kink` node; the functions come from tape._tensor, passed in as `on`.
"""
import numpy as np


def _sigmoid(a):
    """1 / (1 + e^-a) as tape._rules.sigmoid computes it, without overflow for large |a|."""
    e = np.exp(-np.abs(a))
    d = 1.0 + e
    return np.where(a >= 0.0, 1.0 / d, e / d)


def _power(a, b):
    return np.power(a, b)


def _indicator(c, a):
    """np.where(c, 1.0, 0.0) in a's float type."""
    return np.asarray(c).astype(getattr(a, "dtype", np.float64))


def _above(x, k):
    """np.where(x > k, x, 0.0) for k >= 0, as a product: kept entries are positive, and 0.0 is
    added to turn the others' -0.0 into 0.0; where a product is not finite (an inf or nan
    entry), np.where itself."""
    with np.errstate(invalid="ignore"):  # -inf * 0
        out = x * (x > k)
    if np.ndim(out) and not np.isfinite(out).all() or not np.ndim(out) and not np.isfinite(out):
        return np.where(x > k, x, 0.0)
    return out + 0.0
'''

QUIET_CALLS = {"np.where", "np.abs", "np.sign", "np.logical_and", "np.logical_or", "_sigmoid", "np.tanh", "np.atan",
               "_indicator", "_above"}


def _may_warn(expressions: list[str]) -> bool:
    """Whether IEEE arithmetic may warn in these expressions: a division, a power, or a call
    that may (log(0), exp(1000), sin(inf))."""
    return any(isinstance(node, (ast.Div, ast.Pow)) or isinstance(node, ast.Call) and ast.unparse(node.func) not in QUIET_CALLS
               for expression in expressions for node in ast.walk(ast.parse(expression, mode="eval")))


def _vectorized(rule) -> str:
    operands = "a, b" if rule in BINARY else "a"
    value, partials = translate(rule.value, "numpy"), [translate(p, "numpy") for p in rule.partials]
    body = f"y = {value}\nreturn y, ({', '.join(partials)},)\n"
    if _may_warn([value, *partials]):
        body = 'with np.errstate(all="ignore"):\n' + textwrap.indent(body, "    ")
    return (f"def {rule.name}({operands}):\n"
            f'    """(y, partials) of rule {rule.name!r} entry by entry."""\n' + textwrap.indent(body, "    "))


def _recorded(rule) -> str:
    operands = "a, b" if rule in BINARY else "a"
    partials = [translate(p, "recorded") for p in rule.partials]
    return (f"def d_{rule.name}(on, {operands}, y):\n"
            f'    """The partials of rule {rule.name!r} as operations on Tensors (recorded, to be differentiated again)."""\n'
            f"    return ({', '.join(partials)},)\n")


def vectorized_source() -> str:
    functions = [_vectorized(r) for r in UNARY + BINARY]
    table = "\n".join(f"    {r.name!r}: ({r.name}, {r.checked}, {r.name == 'truediv'})," for r in UNARY + BINARY)
    recorded = "\n".join(f"    {r.name!r}: d_{r.name}," for r in UNARY + BINARY)
    return (VECTORIZED_HEADER + "\n\n" + "\n\n".join(functions)
            + "\n\n# name -> (the rule on arrays, whether its values are checked, whether b divides)\nELEMENTWISE = {\n" + table + "\n}\n"
            + "\n\n" + "\n\n".join(_recorded(r) for r in UNARY + BINARY)
            + "\n\n# name -> its partials on Tensors, (on, operands..., y) -> tuple: `on` is tape._tensor, whose functions\n"
            "# record (a branch is on.where with a constant mask, a kink on.kink); forward mode on recorded values\n"
            "RECORDED_PARTIALS = {\n" + recorded + "\n}\n")


def sources() -> dict[Path, str]:
    return {HERE / name: globals()[fn]() for name, fn in TARGETS.items()}


if __name__ == "__main__":
    for path, text in sources().items():
        path.write_text(text)
        print(f"wrote {path}")
