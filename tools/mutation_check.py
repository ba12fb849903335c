"""The mutation check: break the engine one small way at a time and see a test fail.

    python tools/mutation_check.py [--workers 2] [--only rules,forward,...] [--list] [--skip LOG] [--sample N]

Each mutant changes one thing: an expression of the rule table (a partial replaced by 0, negated,
its operands swapped, a constant or a comparison changed), or one operator, comparison or
constant in the code of forward mode, VarArray, the reductions, the sweep, the replay
interpreter and the MLP's second-semester code (its fused kernel, dropout, the schedule, clipping,
augmentation). It runs in a scratch copy of the repository (the generated files regenerated from
the mutated table), against the fast tests of those parts, stopping at the first failure: first
the tests of the mutated rule alone (for a rule's mutant), then all of them, those that compile
the trace interpreter last. A mutant that no test kills is listed with its change; either a
test is missing, or the change is equivalent (say why in the note). Each mutant starts from the
unmutated numba caches; those its change makes stale are dropped by
tape._kernels.forget_stale_caches. Slow (hours for all areas on two cores): not part of CI;
`--skip LOG` leaves out the mutants a previous run's output already judged; `--sample N` judges N
of them drawn at random (`--seed`), an estimate of the score when the whole is too slow.
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_tape.py", "tests/test_forward.py", "tests/test_array.py", "tests/test_rules.py", "tests/test_trace.py"]
SLOW = ["tests/test_tape.py::test_a_million_grad_calls_use_constant_memory"]  # memory, 35 s: no rule in it
# file -> the functions (or "*" for the whole module's) whose code is mutated, by area
TARGETS = {
    "forward": {"tape/_forward.py": ["Dual.kink", "_unary", "_binary", "_reduce", "jvp", "_seeded", "split", "forward_gradient"]},
    "varray": {"tape/_array.py": ["VarArray.__init__", "VarArray.grad", "VarArray._reduce", "_binary", "_elementwise",
                                  "_entrywise", "matmul", "_nodes", "_flat"],
               "tape/kernels.py": ["refused", "record_unary", "record_binary", "record_dot", "record_matmul", "record_reduction"]},
    "reductions": {"tape/_nary.py": ["_folded", "dot", "sum", "logsumexp"]},
    "sweep": {"tape/_kernels.py": ["parse", "sweep"], "tape/kernels.py": ["sweep_window"],
              "tape/_tape.py": ["Tape.sweep", "Tape.backward"], "tape/_var.py": ["VarBase.grad"]},
    "replay": {"tape/_replay.py": ["build", "runs", "_within_one", "activity", "forward", "_reduce", "_dense_dot",
                                   "_sparse_dot", "sweep", "tangents", "failed_guard", "batch"],
               "tape/_program.py": ["Program.__init__", "Program.inputs", "Program.sparse_inputs", "Program.check",
                                    "Program.plan", "numbers"]},
    "rules": {"tape/_rules.py": ["sigmoid", "sign", "power", "sequential_sum", "constant_is_partial"]},
    "mlp": {"mlp/_fused.py": ["weighted_sums", "logits_batch", "record_sample", "transpose_weights"],
            "mlp/nn.py": ["dropped", "Layer.keep", "MLP.dropout_scales"], "mlp/schedule.py": ["Schedule.__call__"],
            "mlp/_updates.py": ["clip_norm"], "mlp/augment.py": ["uniform", "smoothed_field", "bilinear", "warp"]},
}
AREA_TESTS = {"mlp": ["tests/test_dropout.py", "tests/test_fused.py", "tests/test_schedule.py", "tests/test_augment.py",
                      "tests/test_train_oracle.py"]}  # the other areas run TESTS
SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
         ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
         ast.And: ast.Or, ast.Or: ast.And, ast.USub: ast.UAdd}


@dataclass
class Mutant:
    area: str
    file: str
    where: str  # function, or rule and field
    change: str
    source: str  # the whole mutated file


def _number_mutants(node: ast.Constant) -> list:
    if isinstance(node.value, bool):
        return [not node.value]
    if isinstance(node.value, int):
        return [node.value + 1] if node.value == 0 else [node.value + 1, node.value - 1]
    if isinstance(node.value, float):
        return [1.0] if node.value == 0.0 else [0.0, 2 * node.value]
    return []


def _node_mutants(tree: ast.AST, region: ast.AST):
    """(description, mutated tree) for every one-operator change inside `region`, its decorators
    left alone (`cache=True` made False changes no result)."""
    nodes = list(ast.walk(region))
    decorators = {id(n) for d in getattr(region, "decorator_list", []) for n in ast.walk(d)}
    for index, node in enumerate(nodes):
        if id(node) in decorators:
            continue
        fields = []
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAPS:
            fields.append(("op", type(node.op), SWAPS[type(node.op)]()))
        if isinstance(node, ast.BoolOp) and type(node.op) in SWAPS:
            fields.append(("op", type(node.op), SWAPS[type(node.op)]()))
        if isinstance(node, ast.UnaryOp) and type(node.op) in (ast.USub, ast.Not):
            fields.append(("drop", type(node.op), None))
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in SWAPS:
                    fields.append((("ops", k), type(op), SWAPS[type(op)]()))
        if isinstance(node, ast.Constant) and not isinstance(node.value, str):
            for value in _number_mutants(node):
                fields.append(("value", node.value, value))
        for field, old, new in fields:
            yield index, field, old, new


def _mutate(region: ast.AST, index: int, field, new) -> None:
    """Make one change (see _node_mutants) to the index-th node under region, in walk order."""
    node = list(ast.walk(region))[index]
    if field == "drop":
        _replace(region, node, node.operand)
    elif isinstance(field, tuple):
        node.ops[field[1]] = new
    else:
        setattr(node, field, new)


def _change(field, old, new) -> str:
    """How a change reads in the report: `Add -> Sub`, `1.0 -> 2.0`, `USub -> dropped`."""
    name = lambda v: v.__name__ if isinstance(v, type) else type(v).__name__ if isinstance(v, ast.AST) else repr(v)  # noqa: E731
    return f"{name(old)} -> {'dropped' if field == 'drop' else name(new)}"


def _apply(source: str, region_path: list[str], index: int, field, new) -> str:
    tree = ast.parse(source)
    _mutate(_find(tree, region_path), index, field, new)
    return ast.unparse(tree)


def _replace(region: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(region):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
            elif isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new


def _find(tree: ast.AST, path: list[str]) -> ast.AST:
    region = tree
    for name in path:
        region = next(n for n in ast.iter_child_nodes(region)
                      if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)
    return region


def code_mutants(area: str, file: str, functions: list[str]) -> list[Mutant]:
    source = (ROOT / file).read_text()
    out = []
    for function in functions:
        path = function.split(".")
        region = _find(ast.parse(source), path)
        for index, field, old, new in _node_mutants(None, region):
            line = getattr(list(ast.walk(region))[index], "lineno", "?")
            out.append(Mutant(area, file, function, f"line {line}: {_change(field, old, new)}", _apply(source, path, index, field, new)))
    return out


def expression_mutants(expression: str) -> list[tuple[str, str]]:
    """(change, mutated expression) of one expression of the rule table."""
    out = [("replaced by 0.0", "0.0")] if expression != "0.0" else []
    out.append(("negated", f"-({expression})"))
    names = {n.id for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)}
    if {"a", "b"} <= names:
        out.append(("a and b swapped", ast.unparse(_Swap({"a": "b", "b": "a"}).visit(ast.parse(expression, mode="eval")))))
    if "y" in names:
        out.append(("y read as a", ast.unparse(_Swap({"y": "a"}).visit(ast.parse(expression, mode="eval")))))
    tree = ast.parse(expression, mode="eval")
    for index, field, old, new in _node_mutants(tree, tree):
        mutated = ast.parse(expression, mode="eval")
        _mutate(mutated, index, field, new)
        text = ast.unparse(mutated)
        if text != expression:
            out.append((_change(field, old, new), text))
    return out


class _Swap(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.names.get(node.id, node.id), node.ctx)


def rule_mutants() -> list[Mutant]:
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
            for change, text in expression_mutants(literal.value):
                line = lines[literal.lineno - 1]
                mutated_line = line[: literal.col_offset] + repr(text).replace("'", '"') + line[literal.end_col_offset :]
                mutated = "".join(lines[: literal.lineno - 1] + [mutated_line] + lines[literal.lineno :])
                out.append(Mutant("rules", file, f"{name}: {literal.value!r}", f"{change}: {text!r}", mutated))
    return out


def all_mutants(areas: list[str]) -> list[Mutant]:
    out = rule_mutants() if "rules" in areas else []
    for area in areas:
        for file, functions in TARGETS[area].items():
            out += code_mutants(area, file, functions)
    return out


def _copy_repository(to: Path) -> None:
    shutil.copytree(ROOT, to, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "runs", ".hypothesis", "test-artifacts", "*.nbi", "*.nbc"))


def _run_tests(repo: Path, cache: Path, timeout: float, first: list[str] = (), area: str = "") -> tuple[bool, str]:
    """Whether the tests pass (`first`, a quick selection, then all of the area's, or every
    area's without one), and pytest's last line."""
    if first:
        passed, tail = _pytest(repo, cache, timeout, first)
        if not passed:
            return passed, tail
    tests = AREA_TESTS.get(area, TESTS) if area else sorted({*TESTS, *sum(AREA_TESTS.values(), [])})
    return _pytest(repo, cache, timeout, [*[t for t in tests if (repo / t).exists()], *[f"--deselect={t}" for t in SLOW]])


def _pytest(repo: Path, cache: Path, timeout: float, selection: list[str]) -> tuple[bool, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", *selection]
    try:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    tail = done.stdout.strip().splitlines()[-1:] or [""]
    return done.returncode == 0, tail[0]


def run(mutants: list[Mutant], workers: int, timeout: float) -> list[tuple[Mutant, bool, str]]:
    scratch = Path(tempfile.mkdtemp(prefix="wengert-mutants-"))
    pristine = scratch / "cache"
    base = scratch / "base"
    _copy_repository(base)
    ok, tail = _run_tests(base, pristine, timeout * 3)
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
                generated = {p: (repo / p).read_text() for p in ("tape/_ops.py", "tape/_compiled.py")}
                made = subprocess.run([sys.executable, "tape/_codegen.py"], cwd=repo, capture_output=True, text=True)
                if made.returncode != 0:  # the mutant breaks the generator itself: killed
                    results.append((m, True, "the generator refuses it"))
                    (repo / m.file).write_text(original)
                    continue
            started = time.perf_counter()
            first = ["tests/test_rules.py", "-k", m.where.split(":")[0]] if m.area == "rules" and m.file == "tape/_rules.py" else []
            passed, tail = _run_tests(repo, cache, timeout, first, m.area)
            results.append((m, not passed, tail))
            print(f"{'killed  ' if not passed else 'SURVIVED'} {m.area:10s} {m.where} | {m.change} ({time.perf_counter() - started:.0f} s)", flush=True)
            (repo / m.file).write_text(original)
            for path, text in generated.items():
                (repo / path).write_text(text)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: work(k, mutants[k::workers]), range(workers)))
    shutil.rmtree(scratch, ignore_errors=True)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", default=",".join(TARGETS), help=f"areas, comma-separated: {', '.join(TARGETS)}")
    p.add_argument("--timeout", type=float, default=600, help="seconds a mutant's tests may take (then it counts as killed)")
    p.add_argument("--list", action="store_true", help="list the mutants and stop")
    p.add_argument("--match", default="", help="only mutants whose place or change contains this text")
    p.add_argument("--skip", type=Path, nargs="+", default=[], help="leave out the mutants that these earlier outputs of the check judged")
    p.add_argument("--sample", type=int, help="judge this many of the mutants, drawn at random")
    p.add_argument("--seed", type=int, default=0, help="of --sample's draw")
    args = p.parse_args()
    areas = args.only.split(",")
    unknown = set(areas) - set(TARGETS)
    if unknown:
        p.error(f"unknown areas {sorted(unknown)}; known: {', '.join(TARGETS)}")
    judged = {line[len("SURVIVED "):].rsplit(" (", 1)[0] for log in args.skip for line in log.read_text().splitlines()
              if line.startswith(("killed   ", "SURVIVED "))}
    mutants = [m for m in all_mutants(areas) if args.match in f"{m.where} | {m.change}"
               and f"{m.area:10s} {m.where} | {m.change}" not in judged]
    if args.sample is not None:  # in random order: a run cut short has judged a random sample too
        mutants = random.Random(args.seed).sample(mutants, min(args.sample, len(mutants)))
    if args.list:
        for m in mutants:
            print(f"{m.area:10s} {m.where} | {m.change}")
        print(f"{len(mutants)} mutants")
        return 0
    results = run(mutants, args.workers, args.timeout)
    survivors = [(m, tail) for m, killed, tail in results if not killed]
    print(f"\nkilled {len(results) - len(survivors)} of {len(results)} mutants")
    for m, tail in survivors:
        print(f"  survived: {m.area} {m.file} {m.where} | {m.change}")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
