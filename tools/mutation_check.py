"""The mutation check: break the engine one small way at a time and see its own tests fail.

    python tools/mutation_check.py --area AREA[,AREA...] [--sample N] [--seed S] [--kind KIND[,KIND...]]
                                   [--workers 1] [--list] [--skip LOG ...] [--again LOG ...] [--equivalent FILE]

A mutant makes one change of the kind a person's slip makes (OPERATORS, one function per kind):
an operator, a comparison or a constant changed; the operands of `-`, `/`, `//`, `@` swapped; a
sum along another axis, over every entry or with its keepdims changed; float32 for float64 or a
dtype or a cast dropped; a switch flipped or left out, a `not` dropped; a wrong index variable;
an in-place update of a shared array, a copy dropped, a reset dropped; a comparison against the
square or the root; off by one in a range, a sampler's bound, a slice or a length; two
arguments of a call swapped; a term of a sum dropped. In the rule table it changes one
expression (a partial replaced by 0 or negated, its operands swapped, and the kinds above).
Each area (AREAS: files, the functions mutated in each or EVERY one, and the tests that exercise
them) is judged by those tests in a scratch copy of the repository (the generated files
regenerated from a mutated table), stopping at the first failure. Each mutant ends killed, timed
out (killed: it hung), survived, or equivalent (a survivor that FILE, by default
tools/mutation_equivalent.txt, names as a person judged it: one a line as the log names it, `#
why` after); the check prints these per area and overall, the score (killed or timed out, of
those not equivalent) and each survivor's place and change: a test is missing, or the change is
equivalent. Each mutant starts from the unmutated numba caches; those its change makes stale are
dropped by tape._kernels.forget_stale_caches. Slow (20-50 s a mutant on two cores): not part of
CI; `--sample N` judges N mutants of each area drawn at random (`--seed`), an estimate of the
score when the whole is too slow; `--skip LOG` leaves out the mutants earlier outputs of the
check judged, and `--again LOG` judges again those they left alive (after new tests).
"""
from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
SLOW = ["tests/test_tape.py::test_a_million_grad_calls_use_constant_memory"]  # memory, 35 s: no rule in it


EVERY = ["*"]  # every function of the file and every method of its classes


@dataclass(frozen=True)
class Area:
    targets: dict[str, list[str]]  # file -> the functions (Class.method) whose code is mutated, or EVERY
    tests: list[str]  # the tests of those modules (files or test ids), which must kill their mutants


AREAS = {
    "rules": Area({"tape/_rules.py": ["sigmoid", "sign", "power", "sequential_sum", "constant_is_partial"]},
                  ["tests/test_rules.py"]),  # and every expression of the table (rule_mutants)
    "forward": Area({"tape/_forward.py": ["Dual.kink", "_unary", "_binary", "_reduce", "jvp", "_seeded", "split",
                                          "forward_gradient"]}, ["tests/test_forward.py"]),
    "varray": Area({"tape/_array.py": ["VarArray.__init__", "VarArray.grad", "VarArray._reduce", "_binary", "_elementwise",
                                       "_entrywise", "matmul", "_nodes", "_flat"],
                    "tape/kernels.py": ["refused", "record_unary", "record_binary", "record_dot", "record_matmul",
                                        "record_reduction"]}, ["tests/test_array.py"]),
    "reductions": Area({"tape/_nary.py": ["_folded", "dot", "sum", "logsumexp"]}, ["tests/test_tape.py", "tests/test_rules.py"]),
    "tape_sweep": Area({"tape/_kernels.py": ["parse", "sweep"], "tape/kernels.py": ["sweep_window"],
                        "tape/_tape.py": ["Tape.sweep", "Tape.backward", "Tape.mark", "Tape.rewind", "Tape._parse"], "tape/_var.py": ["VarBase.grad"]},
                       ["tests/test_tape.py", "tests/test_small_tape.py"]),
    "replay": Area({"tape/_replay.py": ["build", "runs", "_within_one", "activity", "forward", "_reduce", "_dense_dot",
                                        "_sparse_dot", "sweep", "tangents", "failed_guard", "batch"],
                    "tape/_program.py": ["Program.__init__", "Program.inputs", "Program.sparse_inputs", "Program.check",
                                         "Program.plan", "numbers"]}, ["tests/test_trace.py"]),
    "trace": Area({"tape/_trace.py": ["Traced._run", "Traced.jacobian", "_batch", "_node_values", "_gradient_function",
                                      "_accumulate", "_tangents"]}, ["tests/test_trace.py"]),
    "check": Area({"tape/_check.py": ["check_grads", "_pieces"]}, ["tests/test_check_grads.py"]),
    "dropout": Area({"mlp/nn.py": ["dropped", "Layer.keep", "MLP.dropout_scales"]}, ["tests/test_dropout.py"]),
    "schedule": Area({"mlp/schedule.py": ["Schedule.__call__"]}, ["tests/test_schedule.py"]),
    "augment": Area({"mlp/augment.py": ["Augment.__call__", "_gaussian", "uniform", "smoothed_field", "convolve_rows",
                                        "bilinear", "warp", "warp_sample", "warp_batch", "warp_batch_here"]},
                    ["tests/test_augment.py"]),
    "optim": Area({"mlp/optim.py": ["Optimizer.step", "UnbiasedMomentum.update", "Optimizer.load_state_dict"],
                   "mlp/_updates.py": ["sgd", "momentum", "nesterov", "rmsprop", "adam", "clip_scale"]}, ["tests/test_mlp.py"]),
    "losses": Area({"mlp/losses.py": ["log_softmax", "softmax_cross_entropy", "squared_error", "_targets"]}, ["tests/test_mlp.py"]),
    "train": Area({"mlp/training.py": ["scores", "Run.__init__", "Run.train_epoch", "Run.batches", "Run.improved",
                                        "Run.patience_ran_out", "Run.save", "Run.settle", "_saved"]},
                  ["tests/test_train.py", "tests/test_train_oracle.py", "tests/test_synthetic_runs.py",
                   "tests/test_fit.py::test_interrupting_fit_keeps_the_last_finished_epoch_in_the_model"]),
    "rundir": Area({"mlp/rundir.py": ["Claim.release", "contents", "claim_new", "claim_existing", "_lock"]},
                   ["tests/test_rundir.py"]),
    "resume": Area({"mlp/training.py": ["Run._keep_metrics_through", "_is_number"], "mlp/recipe.py": ["at_most"],
                    "mlp/programs/train.py": ["check_options"]},
                   [f"tests/test_train.py::test_{name}" for name in (
                       "resume_refuses_a_damaged_metrics_file_naming_it", "resume_drops_the_rows_after_its_checkpoint_and_follows_on",
                       "bad_arguments_are_refused_in_one_line_naming_the_argument", "resume_refuses_a_different_run",
                       "a_validation_part_with_a_class_empty_or_taking_a_whole_class_is_refused")]),
    "checkpoint": Area({"mlp/checkpoint.py": EVERY, "mlp/archive.py": EVERY, "mlp/programs/predict.py": ["_ink"]},
                       ["tests/test_evaluate_predict.py", *[f"tests/test_train.py::test_{name}" for name in (
                           "resume_refuses_a_hand_edited_checkpoint_in_one_line",
                           "resume_drops_the_rows_after_its_checkpoint_and_follows_on",
                           "an_interrupted_checkpoint_write_keeps_the_previous_checkpoint",
                           "a_checkpoint_that_cannot_reach_the_disk_keeps_the_previous_one",
                           "a_failed_write_whose_temporary_file_vanished_raises_its_own_error",
                           "a_checkpoint_is_put_in_place_on_a_thread_of_its_own_and_in_place_when_the_run_ends")]]),
    "sweep": Area({"mlp/programs/sweep.py": EVERY}, ["tests/test_sweep.py"]),
    "fit": Area({"mlp/fitting.py": EVERY}, ["tests/test_fit.py", "tests/test_synthetic_runs.py"]),
    "history": Area({"mlp/history.py": EVERY}, ["tests/test_history.py", "tests/test_fit.py", "tests/test_synthetic_runs.py"]),
    "serve": Area({"mlp/programs/serve.py": EVERY}, ["tests/test_serve.py"]),
    "recipe": Area({"mlp/recipe.py": EVERY}, ["tests/test_recipe.py",
                                              "tests/test_train.py::test_bad_arguments_are_refused_in_one_line_naming_the_argument"]),
    "accumulate": Area({"mlp/accumulate.py": EVERY}, ["tests/test_matrix_mlp.py", "tests/test_mlp.py", "tests/test_dropout.py",
                                                                 "tests/test_synthetic_runs.py"]),
    "tensor": Area({"tape/_tensor.py": EVERY, "tape/_rows.py": EVERY, "tape/_tape.py": ["Tape._sweep_matrix_nodes"],
                    "tape/_small.py": ["sweep"],
                    "tape/_transforms.py": ["_tensor_hessian", "_tensor_jacobian_forward"]},
                   ["tests/test_tensor.py", "tests/test_tensor_edges.py", "tests/test_tensor_vjp.py", "tests/test_small_tape.py",
                    "tests/test_tensor_forward.py", "tests/test_tensor_second_order.py"]),
    "tensor_trace": Area({"tape/_tensor_trace.py": EVERY, "tape/_tensor.py": ["_compared", "check_labels", "_cross_entropy_saving",
                                                                            "_cross_entropy_saved_vjp", "_normalized"]},
                         ["tests/test_tensor_trace.py"]),
    "matrix": Area({"mlp/nn.py": ["Parameters.tensor", "Parameters.add_tensor_grads", "Layer.tensors", "Layer.__call__",
                                  "Layer.slices", "Layer.views"],
                    "mlp/training.py": ["thread_plan"]}, ["tests/test_matrix_mlp.py", "tests/test_mlp.py",
                                                          "tests/test_synthetic_runs.py"]),
    "passes": Area({"tape/_entries.py": EVERY, "tape/_tensor.py": ["_scaled", "compiled_pass", "_by_one_pass"]},
                   ["tests/test_compiled_passes.py", "tests/test_tensor_edges.py"]),
    "display": Area({"tape/_display.py": ["Table.text", "Table.html"], "tape/_draw.py": ["Drawing._repr_mimebundle_"]},
                    ["tests/test_display.py"]),
    "inputs": Area({"mlp/data.py": ["validation_split"], "mlp/augment.py": ["Augment.__post_init__"],
                    "mlp/expression.py": ["tokens"]},
                   ["tests/test_data.py", "tests/test_augment.py", "tests/test_expression.py"]),
}


@dataclass
class Mutant:
    area: str
    file: str
    where: str  # function, or rule and field
    change: str
    source: str  # the whole mutated file


# -- the kinds of mistakes ---------------------------------------------------------------------------
#
# Each kind is a function of a node (and the scope it is in) that yields (change, edit): how the
# change reads in the report, and a function that makes it on the same node of a fresh parse
# (edit(node, region) changes the node, or puts another in its place).

Edit = Callable[[ast.AST, ast.AST], None]


class Scope:
    """What the kinds need to know about where a node is: its parent, the loops around it, the
    names that may share memory with the caller's (arguments and what was taken from them), the
    names used as indices."""

    def __init__(self, region: ast.AST) -> None:
        self.region = region
        self.parent: dict[int, tuple[ast.AST, str]] = {}
        for node in ast.walk(region):
            for field, value in ast.iter_fields(node):
                for child in value if isinstance(value, list) else [value]:
                    if isinstance(child, ast.AST):
                        self.parent[id(child)] = (node, field)
        arguments = getattr(region, "args", None)
        self.aliases = {a.arg for a in ast.walk(arguments) if isinstance(a, ast.arg)} if arguments else set()
        for node in ast.walk(region):
            if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Name, ast.Attribute, ast.Subscript)):
                self.aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.indices = {n.id for n in ast.walk(region) if isinstance(n, ast.Name) and self.in_index(n)}

    def ancestors(self, node: ast.AST) -> Iterator[tuple[ast.AST, str]]:
        """(parent, the field of it that holds the way down to node), innermost first."""
        while id(node) in self.parent:
            node, field = self.parent[id(node)]
            yield node, field

    def loop_variables(self, node: ast.AST) -> list[str]:
        """The variables of the loops and comprehensions whose body holds node, innermost first."""
        names = []
        for parent, field in self.ancestors(node):
            if isinstance(parent, ast.For) and field == "body":
                names += _names(parent.target)
            elif isinstance(parent, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                names += [n for g in parent.generators for n in _names(g.target)]
        return list(dict.fromkeys(names))

    def in_index(self, node: ast.AST) -> bool:
        """Whether node is (part of) the index of a subscript."""
        for parent, field in self.ancestors(node):
            if isinstance(parent, ast.Subscript) and field == "slice":
                return True
            if isinstance(parent, ast.stmt):
                return False
        return False


def operators(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """An operator or a comparison changed (`+` -> `-`, `<` -> `<=`, `and` -> `or`), a minus
    dropped."""
    if isinstance(node, (ast.BinOp, ast.AugAssign, ast.BoolOp)) and type(node.op) in SWAPS:
        new = SWAPS[type(node.op)]
        yield f"{type(node.op).__name__} -> {new.__name__}", lambda n, region: setattr(n, "op", new())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "USub -> dropped", _substitute(lambda n: n.operand)
    if isinstance(node, ast.Compare):
        for k, op in enumerate(node.ops):
            if type(op) in SWAPS:
                new = SWAPS[type(op)]
                which = f" (comparison {k + 1} of `{ast.unparse(node)}`)" if len(node.ops) > 1 else ""
                yield f"{type(op).__name__} -> {new.__name__}{which}", lambda n, region, k=k, new=new: n.ops.__setitem__(k, new())


SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
         ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
         ast.And: ast.Or, ast.Or: ast.And, ast.USub: ast.UAdd}


def reflected(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """The operands of an operator that does not commute swapped: `a - b` -> `b - a`, `a / b`,
    `a // b`, `a @ b` (the targets' side of a loss, a reflected operator written the wrong way round)."""
    if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Sub, ast.Div, ast.FloorDiv, ast.MatMult))
            and not _textual(node) and ast.unparse(node.left) != ast.unparse(node.right)):
        yield f"operands of `{_symbol(node.op)}` swapped", _substitute(lambda n: ast.BinOp(n.right, n.op, n.left))


def switches(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """A switch the wrong way: a True/False flipped (a default argument, a keyword argument, any
    other), a keyword switch left out (its default taken instead), a `not` dropped."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        parent, field = scope.parent.get(id(node), (None, ""))
        place = (f"default `{_defaulted(parent, field, node)}`" if isinstance(parent, ast.arguments)
                 else f"keyword `{parent.arg}`" if isinstance(parent, ast.keyword) else "")
        yield f"{place + ' ' if place else ''}{node.value} -> {not node.value}", lambda n, region: setattr(n, "value", not n.value)
    if isinstance(node, ast.Call):
        for k, keyword in enumerate(node.keywords):
            if isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, bool):
                yield f"keyword `{keyword.arg}={keyword.value.value}` left out", lambda n, region, k=k: n.keywords.pop(k)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "Not -> dropped", _substitute(lambda n: n.operand)


def _defaulted(arguments: ast.arguments, field: str, default: ast.AST) -> str:
    """The name of the argument whose default is `default`."""
    if field == "kw_defaults":
        return arguments.kwonlyargs[arguments.kw_defaults.index(default)].arg
    positional = arguments.posonlyargs + arguments.args
    return positional[len(positional) - len(arguments.defaults) + arguments.defaults.index(default)].arg


def constants(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """A number changed: an int by one either way, a float to 0 (or 0 to 1) or doubled (a bool is
    a switch: see `switches`)."""
    if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
        return
    value = node.value
    if isinstance(value, int):
        news = [value + 1] if value == 0 else [value + 1, value - 1]
    else:
        news = [1.0] if value == 0.0 else [0.0, 2 * value]
    for new in news:
        yield f"{value!r} -> {new!r}", lambda n, region, new=new: setattr(n, "value", new)


def index_variables(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """A wrong index variable: a loop variable in an index replaced by another loop's variable
    around it (`a[i * n + j]` -> `a[j * n + j]`), or two indices swapped (`a[i, j]` -> `a[j, i]`)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and scope.in_index(node):
        loops = [name for name in scope.loop_variables(node) if name in scope.indices]
        for other in loops if node.id in loops else []:
            if other != node.id:
                yield f"index {node.id} -> {other}", lambda n, region, other=other: setattr(n, "id", other)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple):
        indices = node.slice.elts
        for k in range(len(indices) - 1):
            if ast.unparse(indices[k]) != ast.unparse(indices[k + 1]):
                yield f"indices {ast.unparse(indices[k])} and {ast.unparse(indices[k + 1])} swapped", \
                    lambda n, region, k=k: n.slice.elts.__setitem__(slice(k, k + 2), n.slice.elts[k : k + 2][::-1])


def shared_arrays(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """An in-place update of an array that is shared: a copy dropped (`x.copy()` -> `x`,
    `np.copy(x)`, `copy.deepcopy(x)` -> `x`, `np.array(x)` -> `np.asarray(x)`), or `a = a + b` ->
    `a += b` where `a` may be an argument or part of one (numpy then changes the caller's array)."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr == "copy" and not node.args and not node.keywords:
            yield "`.copy()` dropped", _substitute(lambda n: n.func.value)
        if (isinstance(node.func, ast.Attribute) and node.func.attr in ("copy", "deepcopy") and len(node.args) == 1
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy", "copy")):
            yield f"`{ast.unparse(node.func)}(...)` dropped", _substitute(lambda n: n.args[0])
        if _numpy(node.func, "array") and node.args and isinstance(node.args[0], (ast.Name, ast.Attribute, ast.Subscript)):
            yield "np.array -> np.asarray", lambda n, region: setattr(n.func, "attr", "asarray")
    if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.BinOp) and isinstance(node.value.left, ast.Name)
            and node.value.left.id == node.targets[0].id and node.targets[0].id in scope.aliases):
        name, op = node.targets[0].id, node.value.op
        yield f"`{name} = {name} {_symbol(op)} ...` -> `{name} {_symbol(op)}= ...`", _substitute(
            lambda n: ast.AugAssign(ast.Name(n.targets[0].id, ast.Store()), n.value.op, n.value.right))


def resets(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """State not reset: a zeroing statement dropped (`x.fill(0)`, `self.total = 0`,
    `g[:] = 0`, `self.grad = np.zeros_like(...)`), so what was accumulated before is counted again
    (not in `__init__`, where there is nothing before: that is a missing attribute)."""
    if getattr(scope.region, "name", "") == "__init__":
        return
    if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and _called(node.value.func) == "fill"
            and len(node.value.args) == 1 and _zero(node.value.args[0])):
        yield f"`{ast.unparse(node)}` dropped (no reset)", _substitute(lambda n: ast.Pass())
    if (isinstance(node, ast.Assign) and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets)
            and (_zero(node.value) or isinstance(node.value, ast.Call) and _called(node.value.func) in ("zeros", "zeros_like"))):
        yield f"`{ast.unparse(node)}` dropped (no reset)", _substitute(lambda n: ast.Pass())


def _zero(e: ast.AST) -> bool:
    return isinstance(e, ast.Constant) and type(e.value) in (int, float) and e.value == 0


def squares_and_roots(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """The square where the root was meant, or the other way round: a sqrt dropped, a side of an
    order comparison unsquared (`x * x < t` -> `x < t`) or squared (`norm > m` -> `norm ** 2 > m`)."""
    if isinstance(node, ast.Call) and _called(node.func) == "sqrt" and len(node.args) == 1:
        yield "sqrt dropped", _substitute(lambda n: n.args[0])
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
        for side, other in ((0, node.comparators[0]), (1, node.left)):
            expression = (node.left, node.comparators[0])[side]
            if _squared(expression):
                yield f"`{ast.unparse(expression)}` -> `{ast.unparse(expression.left)}`", \
                    _compared(side, lambda e: e.left)
            elif isinstance(expression, (ast.Name, ast.Attribute)) and not isinstance(other, ast.Constant):
                yield f"`{ast.unparse(expression)}` -> `{ast.unparse(expression)} ** 2`", \
                    _compared(side, lambda e: ast.BinOp(e, ast.Pow(), ast.Constant(2)))


REDUCING = {"sum", "mean", "max", "min", "argmax", "argmin", "prod", "std", "var", "any", "all", "logsumexp", "cumsum"}


def axes(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """Another axis: a reduction's or any `axis=` argument dropped (and its keepdims: one number
    over every entry), set to None, to another axis (1 <-> 0, -1 -> 0) or negated; its keepdims
    dropped, or added where there was none; an axis of a shape read as another (`x.shape[-1]` ->
    `x.shape[0]`): a VJP summed along the wrong axis."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
        for new in _other_axes(node.slice):
            yield f"shape[{ast.unparse(node.slice)}] -> shape[{new}]", lambda n, region, new=new: setattr(n, "slice", ast.Constant(new))
    if not isinstance(node, ast.Call):
        return
    where = _axis(node)
    if where is None:
        return
    yield "axis dropped (over every entry)", lambda n, region: _drop_axis(n, keepdims=True)
    axis = _axis_expression(node, where)
    if not (isinstance(axis, ast.Constant) and axis.value is None):
        yield f"axis {ast.unparse(axis)} -> None", lambda n, region: _set_axis(n, _axis(n), ast.Constant(None))
    if any(k.arg == "keepdims" for k in node.keywords):
        yield "keepdims dropped", lambda n, region: n.keywords.__setitem__(slice(None), [k for k in n.keywords if k.arg != "keepdims"])
    elif _called(node.func) in REDUCING:
        yield "keepdims added", lambda n, region: n.keywords.append(ast.keyword("keepdims", ast.Constant(True)))
    for new in _other_axes(axis):
        yield f"axis {ast.unparse(axis)} -> {new}", lambda n, region, new=new: _set_axis(n, _axis(n), ast.Constant(new))


def _other_axes(axis: ast.AST) -> list[int]:
    """The axes a slip puts for an axis written as a number: another one, and its negation."""
    if not _integer(axis):
        return []
    value = -axis.operand.value if isinstance(axis, ast.UnaryOp) else axis.value
    others = {0: [1], 1: [0], -1: [0], -2: [-1]}.get(value, [value - 1])
    return others + ([-value] if value != 0 and -value not in others else [])


def dtypes(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """Another precision: float32 <-> float64 (`np.float32`, "float32"), a `dtype=` dropped (numpy's
    float64 or the input's type instead) or made float32, an `.astype(...)` or a cast dropped."""
    if isinstance(node, ast.Attribute) and node.attr in FLOATS and isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy"):
        yield f"{node.attr} -> {FLOATS[node.attr]}", lambda n, region: setattr(n, "attr", FLOATS[n.attr])
    if isinstance(node, ast.Constant) and node.value in FLOATS:
        yield f"{node.value!r} -> {FLOATS[node.value]!r}", lambda n, region: setattr(n, "value", FLOATS[n.value])
    if not isinstance(node, ast.Call):
        return
    for k, keyword in enumerate(node.keywords):
        if keyword.arg == "dtype":
            yield f"dtype={ast.unparse(keyword.value)} dropped", lambda n, region, k=k: n.keywords.pop(k)
            if _called(keyword.value) not in FLOATS and not (isinstance(keyword.value, ast.Constant) and keyword.value.value in FLOATS):
                yield f"dtype={ast.unparse(keyword.value)} -> np.float32", lambda n, region, k=k: setattr(
                    n.keywords[k], "value", ast.Attribute(ast.Name("np", ast.Load()), "float32", ast.Load()))
    if isinstance(node.func, ast.Attribute) and node.func.attr == "astype":
        yield f"`.astype({ast.unparse(node.args[0]) if node.args else ''})` dropped", _substitute(lambda n: n.func.value)
    if any(_numpy(node.func, name) for name in FLOATS) and len(node.args) == 1:
        yield f"cast {ast.unparse(node.func)}(...) dropped", _substitute(lambda n: n.args[0])


FLOATS = {"float32": "float64", "float64": "float32"}


def off_by_one(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """Off by one: a bound of a range, of a sampler (`rng.integers(lo, hi)`), or of a slice, one
    more or one less; a length one less (`len(x)` -> `len(x) - 1`)."""
    if isinstance(node, ast.Call) and _called(node.func) == "len" and len(node.args) == 1:
        yield "len(...) -> len(...) - 1", _substitute(lambda n: ast.BinOp(n, ast.Sub(), ast.Constant(1)))
    if isinstance(node, ast.Call) and _called(node.func) in RANGES and 1 <= len(node.args) <= 3:
        for label, k in [("stop", 0)] if len(node.args) == 1 else [("start", 0), ("stop", 1)]:
            for sign in (1, -1):
                yield f"range {label} {sign:+d}", lambda n, region, k=k, sign=sign: n.args.__setitem__(k, _plus(n.args[k], sign))
    if isinstance(node, ast.Slice):
        sliced = ast.unparse(scope.parent[id(node)][0]) if id(node) in scope.parent else ast.unparse(node)
        for bound in ("lower", "upper"):
            if getattr(node, bound) is not None:
                for sign in (1, -1):
                    yield f"slice {bound} {sign:+d} of `{sliced}`", lambda n, region, bound=bound, sign=sign: setattr(n, bound, _plus(getattr(n, bound), sign))


RANGES = ("range", "prange", "arange", "integers", "randint")


def swapped_arguments(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """Two neighbouring arguments of a call swapped (not a piece of text, as a message's)."""
    if not isinstance(node, ast.Call):
        return
    for k in range(len(node.args) - 1):
        a, b = node.args[k : k + 2]
        if not any(isinstance(e, ast.Starred) or _textual(e) for e in (a, b)) and ast.unparse(a) != ast.unparse(b):
            yield f"arguments {ast.unparse(a)} and {ast.unparse(b)} of {_called(node.func)}() swapped", \
                lambda n, region, k=k: n.args.__setitem__(slice(k, k + 2), n.args[k : k + 2][::-1])


def dropped_terms(node: ast.AST, scope: Scope) -> Iterator[tuple[str, Edit]]:
    """A term of a sum dropped: `a + b` -> `a` or `b`, `a - b` -> `a` or `-b` (not a constant term,
    which `constants` changes, nor a piece of text)."""
    if not isinstance(node, ast.BinOp) or not isinstance(node.op, (ast.Add, ast.Sub)) or _textual(node):
        return
    if not isinstance(node.right, ast.Constant):
        yield f"term `{ast.unparse(node.right)}` dropped", _substitute(lambda n: n.left)
    if not isinstance(node.left, ast.Constant):
        rest = (lambda n: n.right) if isinstance(node.op, ast.Add) else (lambda n: ast.UnaryOp(ast.USub(), n.right))
        yield f"term `{ast.unparse(node.left)}` dropped", _substitute(rest)


OPERATORS = [operators, reflected, axes, dtypes, switches, constants, index_variables, shared_arrays, resets,
             squares_and_roots, off_by_one, swapped_arguments, dropped_terms]


# -- helpers of the kinds ------------------------------------------------------------------------------


def _substitute(new: Callable[[ast.AST], ast.AST]) -> Edit:
    """An edit that puts new(node) in node's place."""
    return lambda node, region: _replace(region, node, new(node))


def _replace(region: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(region):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
            elif isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new


def _names(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _called(func: ast.AST) -> str:
    """A called function's name: `range`, `sqrt` of math.sqrt, `copy` of x.copy."""
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ast.unparse(func)


def _numpy(func: ast.AST, name: str) -> bool:
    return isinstance(func, ast.Attribute) and func.attr == name and isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy")


def _symbol(op: ast.operator) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.MatMult: "@", ast.Pow: "**"}.get(type(op), type(op).__name__)


def _squared(e: ast.AST) -> bool:
    """`x * x` or `x ** 2`."""
    return isinstance(e, ast.BinOp) and (
        isinstance(e.op, ast.Mult) and ast.unparse(e.left) == ast.unparse(e.right)
        or isinstance(e.op, ast.Pow) and isinstance(e.right, ast.Constant) and e.right.value == 2)


def _compared(side: int, new: Callable[[ast.AST], ast.AST]) -> Edit:
    """An edit of a comparison's left (side 0) or right (side 1) operand."""
    def edit(node, region):
        if side == 0:
            node.left = new(node.left)
        else:
            node.comparators[0] = new(node.comparators[0])
    return edit


def _axis(call: ast.Call):
    """Where a reduction's axis is given: ("keyword", k), ("arg", k), or None."""
    for k, keyword in enumerate(call.keywords):
        if keyword.arg == "axis":
            return "keyword", k
    name = _called(call.func)
    if name not in REDUCING or not isinstance(call.func, ast.Attribute):
        return None
    k = 1 if _numpy(call.func, name) else 0  # np.sum(x, 1), x.sum(1); not _nary.sum(xs)
    if len(call.args) > k and _integer(call.args[k]):
        return "arg", k
    return None


def _integer(e: ast.AST) -> bool:
    """An int written as a number: 1, -1."""
    e = e.operand if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub) else e
    return isinstance(e, ast.Constant) and type(e.value) is int


def _axis_expression(call: ast.Call, where) -> ast.AST:
    kind, k = where
    return call.keywords[k].value if kind == "keyword" else call.args[k]


def _set_axis(call: ast.Call, where, value: ast.AST) -> None:
    kind, k = where
    if kind == "keyword":
        call.keywords[k].value = value
    else:
        call.args[k] = value


def _drop_axis(call: ast.Call, keepdims: bool) -> None:
    kind, k = _axis(call)
    if kind == "arg":
        del call.args[k]
    call.keywords = [w for w in call.keywords if w.arg != "axis" and not (keepdims and w.arg == "keepdims")]


def _plus(e: ast.AST, sign: int) -> ast.AST:
    """e + 1 or e - 1 (a number changed in place)."""
    if isinstance(e, ast.Constant) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return ast.Constant(e.value + sign)
    return ast.BinOp(e, ast.Add() if sign > 0 else ast.Sub(), ast.Constant(1))


def _textual(e: ast.AST) -> bool:
    return any(isinstance(n, ast.JoinedStr) or isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(e))


# -- making the mutants ----------------------------------------------------------------------------------


def mutations(region: ast.AST, kinds: list = OPERATORS) -> Iterator[tuple[int, str, Edit]]:
    """(index of the node in ast.walk(region), change, edit) of every mistake of every kind in
    region, its decorators left alone (`cache=True` made False changes no result)."""
    scope = Scope(region)
    decorators = {id(n) for d in getattr(region, "decorator_list", []) for n in ast.walk(d)}
    for index, node in enumerate(ast.walk(region)):
        if id(node) in decorators:
            continue
        for kind in kinds:
            for change, edit in kind(node, scope):
                yield index, change, edit


def source_mutants(source: str, function: str, kinds: list = OPERATORS) -> list[tuple[str, str]]:
    """(change, the mutated source) of each distinct mistake in `function` (`Class.method`) of
    source: the function written anew (by ast.unparse), the rest of the file as it was."""
    path = function.split(".")
    region = _find(ast.parse(source), path, function)
    lines = source.splitlines(keepends=True)
    first = min([region.lineno] + [d.lineno for d in region.decorator_list])
    before, after = "".join(lines[: first - 1]), "".join(lines[region.end_lineno :])
    nodes, seen, out = list(ast.walk(region)), {ast.unparse(region)}, []
    for index, change, edit in mutations(region, kinds):
        fresh = copy.deepcopy(region)
        edit(list(ast.walk(fresh))[index], fresh)
        text = ast.unparse(ast.fix_missing_locations(fresh))
        if text not in seen:
            seen.add(text)
            out.append((f"line {getattr(nodes[index], 'lineno', '?')}: {change}",
                        before + textwrap.indent(text, " " * region.col_offset) + "\n" + after))
    return out


def _find(tree: ast.AST, path: list[str], name: str) -> ast.AST:
    region = tree
    for part in path:
        region = next((n for n in ast.iter_child_nodes(region)
                       if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part), None)
        if region is None:
            raise SystemExit(f"mutation_check: AREAS names {name}, which is not there (renamed?): update AREAS")
    return region


def code_mutants(area: str, file: str, functions: list[str], kinds: list = OPERATORS) -> list[Mutant]:
    source = (ROOT / file).read_text()
    if functions == EVERY:
        functions = every_function(source)
    return [Mutant(area, file, function, change, text) for function in functions
            for change, text in source_mutants(source, function, kinds)]


def every_function(source: str) -> list[str]:
    """The functions of a module and the methods of its classes (`Class.method`), in order."""
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(node.name)
        elif isinstance(node, ast.ClassDef):
            out += [f"{node.name}.{n.name}" for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return out


def expression_mutants(expression: str, kinds: list = OPERATORS) -> list[tuple[str, str]]:
    """(change, mutated expression) of one expression of the rule table."""
    out = [("replaced by 0.0", "0.0")] if expression != "0.0" else []
    out.append(("negated", f"-({expression})"))
    names = {n.id for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)}
    if {"a", "b"} <= names:
        out.append(("a and b swapped", ast.unparse(_Swap({"a": "b", "b": "a"}).visit(ast.parse(expression, mode="eval")))))
    if "y" in names:
        out.append(("y read as a", ast.unparse(_Swap({"y": "a"}).visit(ast.parse(expression, mode="eval")))))
    for index, change, edit in mutations(ast.parse(expression, mode="eval"), kinds):
        mutated = ast.parse(expression, mode="eval")
        edit(list(ast.walk(mutated))[index], mutated)
        text = ast.unparse(mutated)
        if text != expression and text not in {t for _, t in out}:
            out.append((change, text))
    return out


class _Swap(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.names.get(node.id, node.id), node.ctx)


def rule_mutants(kinds: list = OPERATORS) -> list[Mutant]:
    file = "tape/_rules.py"
    source = (ROOT / file).read_text()
    lines = source.splitlines(keepends=True)
    out = []
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") in ("Rule", "Reduction")):
            continue
        name = call.args[0].value
        if call.func.id == "Rule":  # its value and partials
            literals = [call.args[1], *call.args[2].elts]
        else:  # a reduction's term, total and partials
            literals = [call.args[1], call.args[2], *call.args[3].elts]
        for literal in literals:
            for change, text in expression_mutants(literal.value, kinds):
                line = lines[literal.lineno - 1]
                mutated_line = line[: literal.col_offset] + repr(text).replace("'", '"') + line[literal.end_col_offset :]
                mutated = "".join(lines[: literal.lineno - 1] + [mutated_line] + lines[literal.lineno :])
                out.append(Mutant("rules", file, f"{name}: {literal.value!r}", f"{change}: {text!r}", mutated))
    return out


def all_mutants(areas: list[str], kinds: list = OPERATORS) -> list[Mutant]:
    """The mutants of `areas` of the kinds `kinds` (the rule table's own changes, a partial zeroed,
    negated or its operands swapped, whatever the kinds)."""
    out = rule_mutants(kinds) if "rules" in areas else []
    for area in areas:
        for file, functions in AREAS[area].targets.items():
            out += code_mutants(area, file, functions, kinds)
    return out


# -- judging them ----------------------------------------------------------------------------------------


def _copy_repository(to: Path) -> None:
    shutil.copytree(ROOT, to, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "runs", ".hypothesis", "test-artifacts", "*.nbi", "*.nbc"))


def _run_tests(repo: Path, cache: Path, timeout: float, tests: list[str], first: list[str] = ()) -> tuple[bool, str]:
    """Whether the tests pass (`first`, a quick selection, then `tests`), and pytest's last line."""
    if first:
        passed, tail = _pytest(repo, cache, timeout, first)
        if not passed:
            return passed, tail
    return _pytest(repo, cache, timeout, [*[t for t in tests if (repo / t.split("::")[0]).exists()], *[f"--deselect={t}" for t in SLOW]])


def _pytest(repo: Path, cache: Path, timeout: float, selection: list[str]) -> tuple[bool, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", *selection]
    with subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # a mutant that hangs: pytest and all it started (a pool's workers)
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return False, "timed out"
    tail = out.strip().splitlines()[-1:] or [""]
    return process.returncode == 0, tail[0]


def run(mutants: list[Mutant], workers: int, timeout: float, equivalent: set[str] = frozenset()) -> list[tuple[Mutant, str, str]]:
    """(mutant, its outcome: killed, timeout, survived or equivalent, pytest's last line) of each;
    a survivor is equivalent when `equivalent` names it (a person judged that no test can see it)."""
    scratch = Path(tempfile.mkdtemp(prefix="wengert-mutants-"))
    pristine = scratch / "cache"
    base = scratch / "base"
    _copy_repository(base)
    every = sorted({t for m in mutants for t in AREAS[m.area].tests})
    ok, tail = _run_tests(base, pristine, timeout * 3, every)
    if not ok:
        raise SystemExit(f"the tests fail before any mutation ({tail}); fix them first")
    print(f"{len(mutants)} mutants; the unmutated tests pass ({tail})", flush=True)
    results = []

    def work(slot: int, items: list[Mutant]) -> None:
        repo, cache = scratch / f"repo{slot}", scratch / f"cache{slot}"
        _copy_repository(repo)
        for m in items:
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(pristine, cache)  # tape._kernels drops what a mutant makes stale
            original = (repo / m.file).read_text()
            (repo / m.file).write_text(m.source)
            generated = {}
            if m.file == "tape/_rules.py":
                generated = {p: (repo / p).read_text() for p in ("tape/_ops.py", "tape/_compiled.py", "tape/_vectorized.py")}
                made = subprocess.run([sys.executable, "tape/_codegen.py"], cwd=repo, capture_output=True, text=True)
                if made.returncode != 0:  # the mutant breaks the generator itself: killed
                    results.append((m, "killed", "the generator refuses it"))
                    (repo / m.file).write_text(original)
                    continue
            started = time.perf_counter()
            first = ["tests/test_rules.py", "-k", m.where.split(":")[0]] if m.area == "rules" and ":" in m.where else []
            passed, tail = _run_tests(repo, cache, timeout, AREAS[m.area].tests, first)
            outcome = ("timeout" if tail == "timed out" else "killed") if not passed else \
                "equivalent" if _same(_key(m)) in equivalent else "survived"
            results.append((m, outcome, tail))
            print(f"{LOGGED[outcome]:10s} {_key(m)} ({time.perf_counter() - started:.0f} s)", flush=True)
            (repo / m.file).write_text(original)
            for path, text in generated.items():
                (repo / path).write_text(text)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: work(k, mutants[k::workers]), range(workers)))
    shutil.rmtree(scratch, ignore_errors=True)
    return results


OUTCOMES = ("killed", "timeout", "survived", "equivalent")
LOGGED = {"killed": "killed", "timeout": "timeout", "survived": "SURVIVED", "equivalent": "equivalent"}


def _key(m: Mutant) -> str:
    """How a mutant is named in the log, in --skip/--again and in the equivalents' file."""
    return f"{m.area:10s} {m.where} | {m.change}"


def _same(key: str) -> str:
    return " ".join(key.split())


def logged(logs: list[Path], outcomes: tuple[str, ...]) -> set[str]:
    """The mutants earlier outputs of the check judged with one of `outcomes` (whitespace-normalised keys)."""
    heads = tuple(LOGGED[o] + " " for o in outcomes)
    return {_same(line.split(" ", 1)[1].rsplit(" (", 1)[0]) for log in logs for line in log.read_text().splitlines()
            if line.startswith(heads)}


def equivalents(path: Path) -> set[str]:
    """The mutants a person judged equivalent: one a line, as the log names it, `# why` after it."""
    if not path.exists():
        return set()
    return {_same(line.split("#", 1)[0]) for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()}


def chosen(areas: list[str], sample: int | None = None, seed: int = 0, match: str = "",
           skip: set[str] = frozenset(), again: set[str] | None = None, kinds: list = OPERATORS) -> list[Mutant]:
    """The mutants of `areas` of the kinds `kinds` to judge: those whose place or change contains `match`, not in
    `skip`, in `again` if given; with `sample`, that many of each area drawn at random by `seed`
    (in random order: a run cut short has judged a random sample too)."""
    out = []
    for area in areas:
        mutants = [m for m in all_mutants([area], kinds) if match in f"{m.where} | {m.change}" and _same(_key(m)) not in skip
                   and (again is None or _same(_key(m)) in again)]
        out += mutants if sample is None else random.Random(f"{seed} {area}").sample(mutants, min(sample, len(mutants)))
    return out


def summary(results: list[tuple[Mutant, str, str]]) -> list[str]:
    """A table of the outcomes per area and overall, the score (killed or timed out, of the mutants
    not equivalent), then the survivors with their places."""
    rows = [*dict.fromkeys(m.area for m, _, _ in results), "overall"]
    lines = [f"{'area':12s}" + "".join(f"{o:>11s}" for o in OUTCOMES) + "      score"]
    for row in rows:
        counts = Counter(outcome for m, outcome, _ in results if row in ("overall", m.area))
        judged = sum(counts.values()) - counts["equivalent"]
        score = f"{counts['killed'] + counts['timeout']} of {judged}" if judged else "-"
        lines.append(f"{row:12s}" + "".join(f"{counts[o]:11d}" for o in OUTCOMES) + f"{score:>11s}")
    lines += [f"  survived: {m.file} {m.where} | {m.change}" for m, outcome, _ in results if outcome == "survived"]
    return lines


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--area", "--only", dest="area", default=",".join(AREAS), help=f"areas, comma-separated: {', '.join(AREAS)}")
    p.add_argument("--timeout", type=float, default=600, help="seconds a mutant's tests may take (then it counts as a timeout, killed)")
    p.add_argument("--list", action="store_true", help="list the mutants and stop")
    p.add_argument("--match", default="", help="only mutants whose place or change contains this text")
    p.add_argument("--skip", type=Path, nargs="+", default=[], help="leave out the mutants that these earlier outputs of the check judged")
    p.add_argument("--again", type=Path, nargs="+", default=[], help="only the mutants that survived in these earlier outputs (after new tests)")
    p.add_argument("--sample", type=int, help="judge this many mutants of each area, drawn at random")
    p.add_argument("--seed", type=int, default=0, help="of --sample's draw")
    p.add_argument("--kind", default=",".join(k.__name__ for k in OPERATORS), help="kinds of slip, comma-separated: %(default)s")
    p.add_argument("--equivalent", type=Path, default=ROOT / "tools" / "mutation_equivalent.txt",
                   help="the survivors a person judged equivalent, one a line as the log names them, `# why` after")
    args = p.parse_args(argv)
    args.area = args.area.split(",")
    unknown = set(args.area) - set(AREAS)
    if unknown:
        p.error(f"unknown areas {sorted(unknown)}; known: {', '.join(AREAS)}")
    kinds = {k.__name__: k for k in OPERATORS}
    unknown = set(args.kind.split(",")) - set(kinds)
    if unknown:
        p.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(kinds)}")
    args.kind = [kinds[name] for name in args.kind.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    mutants = chosen(args.area, args.sample, args.seed, args.match, logged(args.skip, OUTCOMES),
                     logged(args.again, ("survived",)) if args.again else None, args.kind)
    if args.list:
        for m in mutants:
            print(_key(m))
        print(f"{len(mutants)} mutants: " + ", ".join(f"{a} {n}" for a, n in Counter(m.area for m in mutants).items()))
        return 0
    results = run(mutants, args.workers, args.timeout, equivalents(args.equivalent))
    print("\n" + "\n".join(summary(results)))
    return 0 if all(outcome != "survived" for _, outcome, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
