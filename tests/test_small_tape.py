"""Small tapes moved and swept in plain Python (tape/_small.py) give the compiled kernels'
numbers to the last bit, and the README's first example runs without importing numba."""
import math
import subprocess
import sys
import textwrap

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import _kernels, _small
from tape._rules import header

partials = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0.0, -0.0, 1.0, 5e-324, 1e308, -1e-300]),
)


@st.composite
def tapes(draw):
    """A stream of records for a random tape: leaves, then nodes of up to four earlier parents."""
    nodes = draw(st.integers(1, 60))
    stream = []
    for node in range(nodes):
        k = 0 if node == 0 else draw(st.integers(0, 4))
        parents = [draw(st.integers(0, node - 1)) for _ in range(k)]
        constants = draw(st.integers(0, 2))
        stream += [header(tape.op_code("add"), k, constants), *parents, *(draw(partials) for _ in parents)]
        stream += [draw(partials) for _ in range(constants)]
    return nodes, stream


def empty_arrays(nodes, edges):
    return np.zeros(nodes + 1, np.int32), np.zeros(edges, np.int32), np.zeros(edges), np.zeros(nodes, np.uint8)


def bits(a):
    return np.asarray(a, np.float64).view(np.int64).tolist()


@settings(max_examples=150, deadline=None)
@given(tapes(), st.data())
def test_plain_python_parse_and_sweep_equal_the_compiled_ones_bit_for_bit(tape_, data):
    nodes, stream = tape_
    edges = len(stream)
    compiled, python = empty_arrays(nodes, edges), empty_arrays(nodes, edges)
    n_compiled = _kernels.parse(np.array(stream), *compiled, 0, 0)
    n_python = _small.parse(list(stream), *python, 0, 0)
    assert n_compiled == n_python >= 0
    for a, b in zip(compiled, python):
        assert a.tolist() == b.tolist()

    seed = np.array(data.draw(st.lists(partials, min_size=nodes, max_size=nodes)))
    lo = data.draw(st.integers(0, nodes))
    hi = data.draw(st.integers(lo, nodes))
    start, parent, partial, _ = compiled
    by_compiled, by_python = seed.copy(), seed.copy()
    with np.errstate(all="ignore"):
        _kernels.sweep(start, parent, partial, by_compiled, lo, hi)
        _small.sweep(start, parent, partial, by_python, lo, hi)
    assert bits(by_compiled) == bits(by_python)


def test_the_plain_python_sweep_is_algorithm_1_on_a_hand_made_tape():
    """x0, x1 leaves; x2 = x0 * x1 (partials x1 = 3, x0 = 2); x3 = x2 + x0: d x3/d x0 = 3 + 1."""
    stream = [header(0, 0, 1), 2.0, header(0, 0, 1), 3.0, header(1, 2), 0, 1, 3.0, 2.0, header(1, 2), 2, 0, 1.0, 1.0]
    start, parent, partial, op = empty_arrays(4, 4)
    assert _small.parse(stream, start, parent, partial, op, 0, 0) == 4
    adjoint = np.array([0.0, 0.0, 0.0, 1.0])
    _small.sweep(start, parent, partial, adjoint, 0, 4)
    assert adjoint.tolist() == [4.0, 2.0, 1.0, 1.0]
    adjoint = np.array([0.0, 0.0, 5.0, 1.0])  # nodes 3 and 2 only, from a seed on both
    _small.sweep(start, parent, partial, adjoint, 2, 4)
    assert adjoint.tolist() == [1.0 + 5.0 * 3.0 + 3.0, 5.0 * 2.0 + 2.0, 6.0, 1.0]


def test_both_parses_refuse_records_that_do_not_fit_the_arrays():
    stream = [header(0, 0, 1), 2.0, header(0, 0, 1), 3.0, header(1, 2), 0, 1, 3.0, 2.0]
    for nodes, edges in [(2, 2), (3, 1)]:  # a node too many; an edge too many
        assert _kernels.parse(np.array(stream), *empty_arrays(nodes, edges), 0, 0) == -1
        assert _small.parse(stream, *empty_arrays(nodes, edges), 0, 0) == -1


def run(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_readme_first_example_does_not_import_numba():
    out = run(
        """
        import math, sys
        import tape
        x1, x2 = tape.Var(math.pi), tape.Var(1.0)
        y = x2 * tape.cos(x1) + tape.exp(x2)
        y.backward()
        tape.current_tape().show()
        print(x1.grad, x2.grad, "numba" in sys.modules)
        """
    )
    assert out.splitlines()[-1] == f"{-math.sin(math.pi)} {math.cos(math.pi) + math.e} False"


def test_past_the_budget_the_compiled_kernels_take_over_with_the_same_gradient():
    """A tape bigger than what is left of the plain-Python budget loads numba and is swept by
    the compiled kernel; its gradient is the closed form's."""
    out = run(
        """
        import sys
        import tape, tape._tape as t
        t._python_left = 1000
        x = tape.Var(1.5)
        y = x
        for _ in range(2000):
            y = y * 1.0001 + 0.0
        y.backward()
        print(x.grad, "numba" in sys.modules)
        """
    )
    grad, loaded = out.split()
    assert loaded == "True"
    assert abs(float(grad) - 1.0001 ** 2000) < 1e-12 * 1.0001 ** 2000


def test_leaves_past_the_budget_cost_no_parse_and_load_no_numba():
    """A VarArray of numbers is leaves only: recorded without a parse, so even past the plain-Python
    budget numba is not loaded, and the budget is what it was; a sum over them sweeps right."""
    out = run(
        """
        import sys
        import numpy as np
        import tape, tape._tape as t
        t._python_left = 1000
        x = tape.Var(1.0) * 2.0  # nodes before them
        tape.current_tape().flush()
        before = t._python_left
        leaves = tape.VarArray(np.arange(5000.0))
        print(before - t._python_left, "numba" in sys.modules, int(leaves.nodes[-1] - leaves.nodes[0]))
        """
    )
    assert out.split() == ["0", "False", "4999"]
