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
    made = mutation_check.source_mutants(source, "clip_norm")
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
