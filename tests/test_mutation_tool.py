"""tools/mutation_check.py: each kind of mistake makes the mutants it should, on small sources."""
import ast
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
mutation_check = sys.modules.setdefault("mutation_check", importlib.util.module_from_spec(spec))
spec.loader.exec_module(mutation_check)


def mutants(source: str, function: str = "f") -> list[tuple[str, str]]:
    """(change, the mutated function's code, unparsed) of each mutant, line numbers left out."""
    source = textwrap.dedent(source)
    out = []
    for change, text in mutation_check.source_mutants(source, function):
        region = mutation_check._find(ast.parse(text), function.split("."), function)
        out.append((change.split(": ", 1)[1], ast.unparse(region)))
    return out


def last_lines(made: list[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(change, text.splitlines()[-1].strip()) for change, text in made}


def body(source: str) -> str:
    return ast.unparse(ast.parse(textwrap.dedent(source)).body[0])


def assert_made(made: list[tuple[str, str]], change: str, expected: str) -> None:
    assert (change, body(expected)) in made, f"{change!r} does not make {expected!r}"


def test_operators_and_constants():
    made = mutants("""
        def f(a, b):
            return a + b if a < b and not a else 2
    """)
    assert_made(made, "Add -> Sub", "def f(a, b):\n    return a - b if a < b and not a else 2")
    assert_made(made, "Lt -> LtE", "def f(a, b):\n    return a + b if a <= b and not a else 2")
    assert_made(made, "And -> Or", "def f(a, b):\n    return a + b if a < b or not a else 2")
    assert_made(made, "Not -> dropped", "def f(a, b):\n    return a + b if a < b and a else 2")
    assert_made(made, "2 -> 3", "def f(a, b):\n    return a + b if a < b and not a else 3")
    assert_made(made, "2 -> 1", "def f(a, b):\n    return a + b if a < b and not a else 1")


def test_a_wrong_index_variable_is_another_loops_variable_and_indices_swap():
    made = mutants("""
        def f(a, b, n):
            for i in range(n):
                for j in range(n):
                    a[i * n + j] = b[i, j]
    """)
    lines = last_lines(made)
    for change, line in [("index j -> i", "a[i * n + i] = b[i, j]"), ("index i -> j", "a[j * n + j] = b[i, j]"),
                         ("index j -> i", "a[i * n + j] = b[i, i]"), ("index i -> j", "a[i * n + j] = b[j, j]"),
                         ("indices i and j swapped", "a[i * n + j] = b[j, i]")]:
        assert (change, line) in lines
    assert not any(change.startswith("index n") or change.endswith("-> n") for change, _ in made)  # n is no loop's


def test_an_in_place_update_of_a_shared_array():
    made = mutants("""
        def f(g, w, x):
            g = g + w
            y = np.array(x)
            s = 0.0
            s = s + 1.0
            return y.copy(), s
    """)
    made = dict(made)
    assert "g += w" in made["`g = g + ...` -> `g += ...`"]
    assert "y = np.asarray(x)" in made["np.array -> np.asarray"]
    assert "return (y, s)" in made["`.copy()` dropped"]
    assert not any(change.startswith("`s = s") for change in made)  # s is the function's own number


def test_the_square_or_the_root_compared():
    made = mutants("""
        def f(g, m, x, t):
            norm = math.sqrt(g @ g)
            return norm > m, x * x < t
    """)
    made = dict(made)
    assert "norm = g @ g" in made["sqrt dropped"]
    assert "return (norm ** 2 > m, x * x < t)" in made["`norm` -> `norm ** 2`"]
    assert "return (norm > m ** 2, x * x < t)" in made["`m` -> `m ** 2`"]
    assert "return (norm > m, x < t)" in made["`x * x` -> `x`"]


def test_a_global_value_where_a_per_row_one_was_meant():
    made = mutants("""
        def f(z):
            return z - z.max(axis=-1, keepdims=True), np.sum(z, 1)
    """)
    lines = last_lines(made)
    assert ("axis dropped (over every entry)", "return (z - z.max(), np.sum(z, 1))") in lines
    assert ("keepdims dropped", "return (z - z.max(axis=-1), np.sum(z, 1))") in lines
    assert ("axis -1 -> 0", "return (z - z.max(axis=0, keepdims=True), np.sum(z, 1))") in lines
    assert ("axis dropped (over every entry)", "return (z - z.max(axis=-1, keepdims=True), np.sum(z))") in lines
    assert ("axis 1 -> 0", "return (z - z.max(axis=-1, keepdims=True), np.sum(z, 0))") in lines
    assert not [change for change, _ in mutants("def f(xs):\n    return tape.sum(xs) + xs.sum(total)\n") if "axis" in change]


def test_off_by_one_in_ranges_and_slices():
    made = mutants("""
        def f(a, lo, hi):
            for i in range(lo, hi):
                a[i] = a[lo:hi].sum()
    """)
    lines = {text.splitlines()[1].strip() + " | " + text.splitlines()[2].strip() for _, text in made}
    for expected in ["for i in range(lo + 1, hi): | a[i] = a[lo:hi].sum()", "for i in range(lo, hi - 1): | a[i] = a[lo:hi].sum()",
                     "for i in range(lo, hi): | a[i] = a[lo - 1:hi].sum()", "for i in range(lo, hi): | a[i] = a[lo:hi + 1].sum()"]:
        assert expected in lines


def test_swapped_arguments_but_not_a_message():
    made = mutants("""
        def f(a, b):
            if a:
                raise ValueError(f"bad {a}", b)
            return g(a, b)
    """)
    assert "return g(b, a)" in dict(made)["arguments a and b of g() swapped"]
    assert not any("ValueError" in change for change, _ in made)


def test_a_dropped_term_of_a_sum():
    made = mutants("""
        def f(a, b, c):
            return a + b * c - 1.0
    """)
    made = dict(made)
    assert "return b * c - 1.0" in made["term `a` dropped"]
    assert "return a - 1.0" in made["term `b * c` dropped"]
    assert "return -1.0" in made["term `a + b * c` dropped"]
    assert "term `1.0` dropped" not in made  # the constants' change covers it


def test_methods_keep_their_place_and_the_rest_of_the_file():
    source = textwrap.dedent("""
        import math  # a comment kept


        class A:
            def step(self, g):
                g = g + self.decay
                return g
    """)
    (change, text), *_ = [m for m in mutation_check.source_mutants(source, "A.step") if "+=" in m[0]]
    assert text.splitlines()[:5] == source.splitlines()[:5] and "        g += self.decay" in text.splitlines()
    compile(text, "mutant", "exec")


def test_the_rule_tables_expressions():
    made = dict(mutation_check.expression_mutants("1.0 - y * y"))
    assert made["replaced by 0.0"] == "0.0" and made["negated"] == "-(1.0 - y * y)" and made["y read as a"] == "1.0 - a * a"
    assert made["term `y * y` dropped"] == "1.0" and made["Sub -> Add"] == "1.0 + y * y"


def test_every_mutant_of_a_real_module_compiles_and_differs():
    source = (ROOT / "mlp" / "_updates.py").read_text()
    made = mutation_check.source_mutants(source, "clip_scale")
    texts = [text for _, text in made]
    assert len(set(texts)) == len(texts) and source not in texts
    for text in texts:
        compile(text, "mutant", "exec")
    assert any("norm ** 2 > max_norm" in text for text in texts)


def test_the_areas_name_functions_that_exist_and_tests_that_exist():
    for name, area in mutation_check.AREAS.items():
        for test in area.tests:
            file, _, function = test.partition("::")
            assert (ROOT / file).exists(), (name, test)
            assert not function or f"def {function}(" in (ROOT / file).read_text(), (name, test)
        for file, functions in area.targets.items():
            tree = ast.parse((ROOT / file).read_text())
            for function in functions if functions != mutation_check.EVERY else []:
                mutation_check._find(tree, function.split("."), function)


def test_an_unknown_function_is_named():
    with pytest.raises(SystemExit, match="AREAS names g, which is not there"):
        mutation_check.source_mutants("def f():\n    return 1\n", "g")


def test_axes_another_negated_none_dropped_and_keepdims():
    made = mutants("""
        def f(g, x):
            return g.sum(axis=1), np.concatenate(x, axis=0), g.shape[-1]
    """)
    for change, expected in [
            ("axis 1 -> 0", "return (g.sum(axis=0), np.concatenate(x, axis=0), g.shape[-1])"),
            ("axis 1 -> -1", "return (g.sum(axis=-1), np.concatenate(x, axis=0), g.shape[-1])"),
            ("axis 1 -> None", "return (g.sum(axis=None), np.concatenate(x, axis=0), g.shape[-1])"),
            ("axis dropped (over every entry)", "return (g.sum(), np.concatenate(x, axis=0), g.shape[-1])"),
            ("keepdims added", "return (g.sum(axis=1, keepdims=True), np.concatenate(x, axis=0), g.shape[-1])"),
            ("axis 0 -> 1", "return (g.sum(axis=1), np.concatenate(x, axis=1), g.shape[-1])"),
            ("axis 0 -> None", "return (g.sum(axis=1), np.concatenate(x, axis=None), g.shape[-1])"),
            ("shape[-1] -> shape[0]", "return (g.sum(axis=1), np.concatenate(x, axis=0), g.shape[0])"),
            ("shape[-1] -> shape[1]", "return (g.sum(axis=1), np.concatenate(x, axis=0), g.shape[1])")]:
        assert_made(made, change, f"def f(g, x):\n    {expected}")
    assert not any(change == "axis 0 -> 0" or "concatenate(x, axis=0, keepdims" in text for change, text in made)


def test_an_axis_given_by_a_name_is_set_to_none_and_keepdims_swapped():
    made = mutants("""
        def f(g, axis):
            return g.max(axis, keepdims=True) + g.sum(axis=axis, keepdims=False)
    """)
    assert_made(made, "axis axis -> None", "def f(g, axis):\n    return g.max(axis, keepdims=True) + g.sum(axis=None, keepdims=False)")
    assert_made(made, "keyword `keepdims` True -> False",
                "def f(g, axis):\n    return g.max(axis, keepdims=False) + g.sum(axis=axis, keepdims=False)")
    assert_made(made, "keyword `keepdims` False -> True",
                "def f(g, axis):\n    return g.max(axis, keepdims=True) + g.sum(axis=axis, keepdims=True)")
    assert not any("-> 0" in change or "-> 1" in change for change, _ in made)  # a name is no literal to step


def test_dtypes_swapped_dropped_and_casts_removed():
    made = mutants("""
        def f(x, n):
            y = np.zeros(n, dtype=np.float64) + x.astype(np.float32)
            return np.float32(y), np.ones(n, dtype=x.dtype), y.dtype == "float64"
    """)
    head = "def f(x, n):\n    "
    original_return = 'return (np.float32(y), np.ones(n, dtype=x.dtype), y.dtype == "float64")'
    original_y = "y = np.zeros(n, dtype=np.float64) + x.astype(np.float32)"
    for change, expected in [
            ("float64 -> float32", "y = np.zeros(n, dtype=np.float32) + x.astype(np.float32)\n    " + original_return),
            ("dtype=np.float64 dropped", "y = np.zeros(n) + x.astype(np.float32)\n    " + original_return),
            ("`.astype(np.float32)` dropped", "y = np.zeros(n, dtype=np.float64) + x\n    " + original_return),
            ("float32 -> float64", "y = np.zeros(n, dtype=np.float64) + x.astype(np.float64)\n    " + original_return),
            ("cast np.float32(...) dropped", original_y + '\n    return (y, np.ones(n, dtype=x.dtype), y.dtype == "float64")'),
            ("dtype=x.dtype dropped", original_y + '\n    return (np.float32(y), np.ones(n), y.dtype == "float64")'),
            ("dtype=x.dtype -> np.float32", original_y + '\n    return (np.float32(y), np.ones(n, dtype=np.float32), y.dtype == "float64")'),
            ("'float64' -> 'float32'", original_y + '\n    return (np.float32(y), np.ones(n, dtype=x.dtype), y.dtype == "float32")')]:
        assert_made(made, change, head + expected)
    assert "dtype=np.float64 -> np.float32" not in dict(made)  # float64 -> float32 makes it


def test_reflected_operators_swap_their_operands():
    made = mutants("""
        def f(a, b):
            return a - b, a / b, a // b, a @ b, a + b, a * b, a - a, "%s" % a
    """)
    head = "def f(a, b):\n    return "
    for change, expected in [("operands of `-` swapped", "(b - a, a / b, a // b, a @ b, a + b, a * b, a - a, '%s' % a)"),
                             ("operands of `/` swapped", "(a - b, b / a, a // b, a @ b, a + b, a * b, a - a, '%s' % a)"),
                             ("operands of `//` swapped", "(a - b, a / b, b // a, a @ b, a + b, a * b, a - a, '%s' % a)"),
                             ("operands of `@` swapped", "(a - b, a / b, a // b, b @ a, a + b, a * b, a - a, '%s' % a)")]:
        assert_made(made, change, head + expected)
    assert len([change for change, _ in made if change.startswith("operands")]) == 4  # + and * commute; a - a; text


def test_bounds_comparisons_lengths_and_a_samplers_upper_bound():
    made = mutants("""
        def f(rng, x, n):
            if len(x) > n:
                return rng.integers(0, n)
            return np.arange(n)[: len(x)]
    """)
    head = "def f(rng, x, n):\n    "
    assert_made(made, "Gt -> GtE", head + "if len(x) >= n:\n        return rng.integers(0, n)\n    return np.arange(n)[:len(x)]")
    assert_made(made, "len(...) -> len(...) - 1", head + "if len(x) - 1 > n:\n        return rng.integers(0, n)\n    return np.arange(n)[:len(x)]")
    assert_made(made, "range stop +1", head + "if len(x) > n:\n        return rng.integers(0, n + 1)\n    return np.arange(n)[:len(x)]")
    assert_made(made, "range stop -1", head + "if len(x) > n:\n        return rng.integers(0, n)\n    return np.arange(n - 1)[:len(x)]")
    assert_made(made, "slice upper +1 of `np.arange(n)[:len(x)]`", head + "if len(x) > n:\n        return rng.integers(0, n)\n    return np.arange(n)[:len(x) + 1]")


def test_switches_defaults_keywords_and_not():
    made = mutants("""
        def f(x, shuffle=True, *, strict=False):
            return g(x, verbose=False) if not shuffle else x
    """)
    head = "def f(x, shuffle=True, *, strict=False):\n    return "
    assert_made(made, "default `shuffle` True -> False", "def f(x, shuffle=False, *, strict=False):\n    return g(x, verbose=False) if not shuffle else x")
    assert_made(made, "default `strict` False -> True", "def f(x, shuffle=True, *, strict=True):\n    return g(x, verbose=False) if not shuffle else x")
    assert_made(made, "keyword `verbose` False -> True", head + "g(x, verbose=True) if not shuffle else x")
    assert_made(made, "keyword `verbose=False` left out", head + "g(x) if not shuffle else x")
    assert_made(made, "Not -> dropped", head + "g(x, verbose=False) if shuffle else x")
    assert not any(change.startswith(("False ->", "True ->")) for change, _ in made)  # every switch here is named


def test_copies_and_resets_dropped_but_not_an_initialisation():
    made = mutants("""
        class A:
            def __init__(self, n):
                self.total = 0

            def f(self, g, x):
                g.fill(0)
                self.total = 0.0
                g[:] = 0
                self.grad = np.zeros_like(x)
                self.seen = 1
                return np.copy(x), copy.deepcopy(self), x.copy()
    """, "A.f")
    lines = ["g.fill(0)", "self.total = 0.0", "g[:] = 0", "self.grad = np.zeros_like(x)", "self.seen = 1",
             "return (np.copy(x), copy.deepcopy(self), x.copy())"]
    head = "def f(self, g, x):\n    "
    for k, dropped in enumerate(lines[:4]):
        assert_made(made, f"`{dropped}` dropped (no reset)", head + "\n    ".join(lines[:k] + ["pass"] + lines[k + 1 :]))
    assert not any("self.seen" in change for change, _ in made)  # 1 is no reset
    for change, expected in [("`np.copy(...)` dropped", "return (x, copy.deepcopy(self), x.copy())"),
                             ("`copy.deepcopy(...)` dropped", "return (np.copy(x), self, x.copy())"),
                             ("`.copy()` dropped", "return (np.copy(x), copy.deepcopy(self), x)")]:
        assert_made(made, change, head + "\n    ".join(lines[:5] + [expected]))
    assert not [change for change, _ in mutants("class A:\n    def __init__(self):\n        self.total = 0\n", "A.__init__")
                if "reset" in change]


def test_every_function_of_a_module_is_an_area_target():
    source = textwrap.dedent("""
        def f():
            def inner():
                return 1
            return inner

        class A:
            x = 1

            def m(self):
                return 2

        async def g():
            return 3
    """)
    assert mutation_check.every_function(source) == ["f", "A.m", "g"]


def test_the_new_areas_each_cover_their_whole_module_and_are_chosen_alone():
    for area, file in [("tensor", "tape/_tensor.py"), ("sweep", "mlp/programs/sweep.py"), ("fit", "mlp/fitting.py"),
                       ("checkpoint", "mlp/checkpoint.py"), ("serve", "mlp/programs/serve.py"), ("history", "mlp/history.py"),
                       ("accumulate", "mlp/accumulate.py")]:
        assert mutation_check.AREAS[area].targets[file] == mutation_check.EVERY
    made = mutation_check.chosen(["fit", "history"])
    assert {m.area for m in made} == {"fit", "history"}
    assert {m.file for m in made if m.area == "fit"} == {"mlp/fitting.py"}
    assert {"fit", "arguments", "save_figures"} <= {m.where for m in made if m.area == "fit"} <= set(
        mutation_check.every_function((ROOT / "mlp/fitting.py").read_text()))
    assert {m.where for m in made if m.area == "history"} <= set(mutation_check.every_function((ROOT / "mlp/history.py").read_text()))


def test_a_sample_is_that_many_of_each_area_and_the_seed_decides_which():
    first = mutation_check.chosen(["fit", "history"], sample=5, seed=3)
    assert [m.area for m in first] == ["fit"] * 5 + ["history"] * 5
    again = mutation_check.chosen(["fit", "history"], sample=5, seed=3)
    other = mutation_check.chosen(["fit", "history"], sample=5, seed=4)
    keys = lambda ms: [mutation_check._key(m) for m in ms]  # noqa: E731
    assert keys(first) == keys(again) and keys(first) != keys(other)
    every = mutation_check.chosen(["history"])
    assert len(mutation_check.chosen(["history"], sample=len(every) + 10)) == len(every)


def test_the_command_line_takes_area_sample_seed_and_refuses_an_unknown_area(capsys):
    args = mutation_check.arguments(["--area", "fit,serve", "--sample", "7", "--seed", "11"])
    assert (args.area, args.sample, args.seed) == (["fit", "serve"], 7, 11)
    with pytest.raises(SystemExit):
        mutation_check.arguments(["--area", "fit,nowhere"])
    assert "unknown areas ['nowhere']" in capsys.readouterr().err


def test_the_summary_counts_each_outcome_per_area_and_overall(tmp_path):
    m = lambda area, change: mutation_check.Mutant(area, f"mlp/{area}.py", "f", change, "")  # noqa: E731
    results = [(m("fit", "a"), "killed", ""), (m("fit", "b"), "survived", ""), (m("fit", "c"), "equivalent", ""),
               (m("serve", "d"), "timeout", ""), (m("serve", "e"), "killed", ""), (m("serve", "f"), "killed", "")]
    lines = mutation_check.summary(results)
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:4]}
    assert rows == {"fit": ["1", "0", "1", "1", "1", "of", "2"], "serve": ["2", "1", "0", "0", "3", "of", "3"],
                    "overall": ["3", "1", "1", "1", "4", "of", "5"]}
    assert lines[4:] == ["  survived: mlp/fit.py f | b"]
    log = tmp_path / "log"
    log.write_text("killed     fit        f | a (3 s)\nSURVIVED   fit        f | b (2 s)\ntimeout    serve      f | d (9 s)\n")
    assert mutation_check.logged([log], ("survived",)) == {"fit f | b"}
    assert mutation_check.logged([log], mutation_check.OUTCOMES) == {"fit f | a", "fit f | b", "serve f | d"}
    (tmp_path / "eq").write_text("# why each is equivalent\nfit        f | c   # a branch that only chooses a message\n")
    assert mutation_check.equivalents(tmp_path / "eq") == {"fit f | c"}


def test_kinds_choose_the_slips_made(capsys):
    args = mutation_check.arguments(["--area", "fit", "--kind", "axes,switches"])
    assert args.kind == [mutation_check.axes, mutation_check.switches]
    with pytest.raises(SystemExit):
        mutation_check.arguments(["--kind", "axes,typos"])
    assert "unknown kinds ['typos']" in capsys.readouterr().err
    made = mutation_check.source_mutants("def f(a, b=True):\n    return a - b\n", "f", [mutation_check.switches])
    assert [change.split(": ", 1)[1] for change, _ in made] == ["default `b` True -> False"]
    assert all("->" in m.change and ("True" in m.change or "False" in m.change) or "left out" in m.change
               or "Not -> dropped" in m.change for m in mutation_check.chosen(["fit"], kinds=[mutation_check.switches]))


def test_two_mutants_on_one_line_have_different_names():
    made = mutants("""
        def f(p, q, a, b, x):
            return p[a:b], q[a:b], 0 <= x <= 1
    """)
    names = [change for change, _ in made]
    assert len(names) == len(set(names))
    assert "slice upper +1 of `p[a:b]`" in names and "slice upper +1 of `q[a:b]`" in names
    assert_made(made, "LtE -> Lt (comparison 2 of `0 <= x <= 1`)", "def f(p, q, a, b, x):\n    return (p[a:b], q[a:b], 0 <= x < 1)")
