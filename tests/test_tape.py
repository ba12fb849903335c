"""The tape engine: derivatives against finite differences, the course's worked examples, the
tape's layout, marks and rewinds, threads, and the errors a user meets."""
import importlib
import math
import threading

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tape
from tape import Tape, Var

E = math.e


def central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def derivative(fn, x):
    """d fn / dx by the tape, on a tape of its own."""
    return tape.grad(fn)(x)


# -- each elementary function against central differences, inside its domain -------------------

finite = dict(allow_nan=False, allow_infinity=False)
DOMAINS = {
    "sin": st.floats(-10, 10, **finite),
    "cos": st.floats(-10, 10, **finite),
    "tan": st.floats(-1.4, 1.4, **finite),
    "atan": st.floats(-10, 10, **finite),
    "sinh": st.floats(-5, 5, **finite),
    "cosh": st.floats(-5, 5, **finite),
    "tanh": st.floats(-5, 5, **finite),
    "exp": st.floats(-10, 5, **finite),
    "expm1": st.floats(-10, 5, **finite),
    "log": st.floats(1e-2, 100, **finite),
    "log1p": st.floats(-0.99, 100, **finite),
    "sqrt": st.floats(1e-2, 100, **finite),
    "sigmoid": st.floats(-20, 20, **finite),
    "softplus": st.floats(-20, 20, **finite),
    "relu": st.floats(-10, 10, **finite).filter(lambda x: abs(x) > 1e-3),
}


def test_every_elementary_function_has_a_domain_here():
    assert set(DOMAINS) == set(tape.ELEMENTARY)


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_elementary_derivatives_pass_the_gradient_check(name):
    fn = tape.ELEMENTARY[name]

    @settings(max_examples=30, deadline=None)
    @given(DOMAINS[name])
    def check(x):
        tape.check_grads(fn, x, order=2, seed=int(abs(x) * 1e6) % 1000, rtol=1e-5, atol=1e-6)

    check()


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_elementary_on_numbers_is_the_plain_float_function(name):
    x = 0.5
    value = tape.ELEMENTARY[name](x)
    assert type(value) is float
    with Tape():
        assert tape.ELEMENTARY[name](Var(x)).value == value


BINARY_CASES = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}


@pytest.mark.parametrize("op", sorted(BINARY_CASES))
@settings(max_examples=40, deadline=None)
@given(a=st.floats(0.1, 5, **finite), b=st.floats(0.1, 3, **finite))
def test_binary_operators_with_vars_and_constants_on_either_side(op, a, b):
    f = BINARY_CASES[op]
    da, db = tape.grad(f, argnums=(0, 1))(a, b)
    assert da == pytest.approx(central_difference(lambda x: f(x, b), a), rel=1e-5, abs=1e-6)
    assert db == pytest.approx(central_difference(lambda y: f(a, y), b), rel=1e-5, abs=1e-6)
    assert tape.grad(lambda x: f(x, b))(a) == pytest.approx(da)  # constant on the right
    assert tape.grad(lambda y: f(a, y))(b) == pytest.approx(db)  # constant on the left


def test_unary_operators_and_integer_constants():
    assert tape.grad(lambda x: -x)(3.0) == -1.0
    assert tape.grad(lambda x: abs(x))(-3.0) == -1.0
    assert tape.grad(lambda x: abs(x))(2.0) == 1.0
    assert tape.grad(lambda x: +x * 2)(2.0) == 2.0
    assert tape.grad(lambda x: 3 - x + 2 * x - x / 4 + 1)(1.0) == pytest.approx(0.75)
    assert tape.grad(lambda x: x**3)(2.0) == pytest.approx(12.0)
    assert tape.grad(lambda x: 2**x)(3.0) == pytest.approx(8 * math.log(2))
    assert tape.grad(lambda x: (-2.0) ** 3 * x)(1.0) == -8.0
    assert tape.grad(lambda x: x ** np.float64(2.0))(3.0) == pytest.approx(6.0)
    assert tape.grad(lambda x: x * np.int64(3))(3.0) == 3.0


def test_comparisons_compare_values_and_return_bools():
    with Tape():
        a, b = Var(1.0), Var(2.0)
        assert (a < b) is True and (a <= 1.0) is True and (b > a) is True and (b >= 3) is False
        assert (a == 1.0) is True and (a != b) is True and (Var(1.0) == a) is True
        assert len({a, Var(1.0)}) == 2  # hashed by identity, like tensors


# -- the course's worked examples --------------------------------------------------------------


def test_worked_example_of_the_course_tables_1_and_2():
    """f(x1, x2) = x2 cos(x1) + e^x2 at (pi, 1): every adjoint, checked by the chain rule."""
    with Tape() as t:
        x1, x2 = Var(math.pi), Var(1.0)
        v1 = tape.cos(x1)
        v2 = x2 * v1
        v3 = tape.exp(x2)
        v4 = v2 + v3
        adjoints = tape.gradient(v4, [x1, x2, v1, v2, v3, v4])
    assert v4.value == pytest.approx(E - 1, abs=1e-12)
    # v4 = v2 + v3, so both get adjoint 1; v2 = x2 * v1 gives v1 the adjoint x2 = 1.
    # (The course's Table 2 prints -1, -1 and e for these three; the chain rule gives 1, 1, 1.)
    assert adjoints[5] == 1.0 and adjoints[4] == 1.0 and adjoints[3] == 1.0
    assert adjoints[2] == pytest.approx(1.0, abs=1e-12)
    assert adjoints[1] == pytest.approx(E - 1, abs=1e-12)  # e (via v3) + cos(pi) (via v2)
    assert adjoints[0] == pytest.approx(0.0, abs=1e-12)  # -sin(pi)
    assert len(t) == 6 and t.num_edges == 6


def test_ln_sin_example_of_the_notes():
    """y = ln(x1) + x1 x2 - sin(x2) at (2, 5)."""
    f = lambda x1, x2: tape.log(x1) + x1 * x2 - tape.sin(x2)  # noqa: E731
    value, (d1, d2) = tape.value_and_grad(f, argnums=(0, 1))(2.0, 5.0)
    assert value == pytest.approx(math.log(2) + 10 - math.sin(5), abs=1e-12)
    assert d1 == pytest.approx(1 / 2 + 5, abs=1e-12)
    assert d2 == pytest.approx(2 - math.cos(5), abs=1e-12)


# -- graphs: shared subexpressions, reuse, long chains, n-ary nodes ----------------------------


@st.composite
def programs(draw):
    """A random DAG: each step applies an op to earlier values, so values get reused."""
    n_inputs = draw(st.integers(1, 4))
    inputs = draw(st.lists(st.floats(0.2, 2.0, **finite), min_size=n_inputs, max_size=n_inputs))
    steps = []
    for k in range(draw(st.integers(1, 25))):
        available = n_inputs + k
        op = draw(st.sampled_from(["add", "sub", "mul", "sin", "tanh", "sigmoid", "sum", "dot"]))
        args = draw(st.lists(st.integers(0, available - 1), min_size=2, max_size=5))
        steps.append((op, args))
    return inputs, steps


def run_program(steps, xs):
    values = list(xs)
    for op, args in steps:
        a, b = values[args[0]], values[args[1]]
        values.append(
            {
                "add": lambda: a + b,
                "sub": lambda: a - b,
                "mul": lambda: a * b * 0.5,
                "sin": lambda: tape.sin(a),
                "tanh": lambda: tape.tanh(a + b),
                "sigmoid": lambda: tape.sigmoid(a),
                "sum": lambda: tape.sum(values[i] for i in args) * 0.3,
                "dot": lambda: tape.dot([values[i] for i in args], [values[i] * 0.1 for i in args]),
            }[op]()
        )
    return tape.sum(values[len(xs):])


@settings(max_examples=80, deadline=None)
@given(programs())
def test_random_dags_with_shared_subexpressions_match_finite_differences(program):
    inputs, steps = program
    grads = tape.grad(lambda xs: run_program(steps, xs))(inputs)
    for i in range(len(inputs)):
        def f(x, i=i):
            return run_program(steps, inputs[:i] + [x] + inputs[i + 1:])

        assume(all(math.isfinite(f(inputs[i] + d)) for d in (-1e-5, 1e-5)))
        assert grads[i] == pytest.approx(central_difference(f, inputs[i]), rel=1e-4, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(programs(), st.integers(0, 2**32 - 1))
def test_random_direction_check_of_the_notes(program, seed):
    """The notes' check, by tape.check_grads: d . grad f against (f(t + eps d) - f(t - eps d)) / 2 eps
    along random unit directions d, in both modes, and the Hessian along d against differences
    of gradients."""
    inputs, steps = program
    t0 = np.array(inputs)
    f = lambda t: run_program(steps, list(t))  # noqa: E731
    assume(all(math.isfinite(f(t0 + e)) for e in (-1e-5, 1e-5)))
    tape.check_grads(f, t0, order=2, seed=seed, rtol=1e-4, atol=1e-5)


def test_same_parent_twice_adds_both_edges():
    with Tape() as t:
        x = Var(3.0)
        y = x * x
        assert t.node(y.node) == ("mul", [x.node, x.node], [3.0, 3.0])
        y.backward()
        assert x.grad == 6.0


def test_a_200000_node_chain_needs_no_recursion():
    n = 200_000
    with Tape() as t:
        x = Var(1.0)
        y = x
        for _ in range(n):
            y = y * 1.000001 + 0.0
        y.backward()
        assert len(t) == 2 * n + 1
        assert x.grad == pytest.approx(1.000001**n, rel=1e-9)


def test_sum_and_dot_are_one_node_with_many_parents():
    with Tape() as t:
        ws = [Var(float(i)) for i in range(1, 5)]
        xs = [Var(2.0), 0.0, 1.5, Var(-1.0)]
        s = tape.sum(ws + [10.0])
        d = tape.dot(ws, xs)
        assert s.value == 20.0 and d.value == 2.0 + 0.0 + 4.5 - 4.0
        op, parents, partials = t.node(d.node)
        # w2 meets a zero input: its partial is 0, so it has no edge.
        assert op == "dot" and len(parents) == 5 and 0.0 not in partials
        assert t.node(s.node)[1] == [w.node for w in ws]
        grads = tape.gradient(d, ws + [xs[0], xs[3]])
    np.testing.assert_array_equal(grads, [2.0, 0.0, 1.5, -1.0, 1.0, 4.0])
    assert tape.sum([1.0, 2.0]) == 3.0 and tape.dot([1.0, 2.0], [3.0, 4.0]) == 11.0
    assert tape.sum([]) == 0.0


def test_dot_with_numpy_inputs_and_length_mismatch():
    x = np.array([0.5, 0.0, 2.0])
    assert tape.grad(lambda w: tape.dot(w, x))([1.0, 2.0, 3.0]).tolist() == [0.5, 0.0, 2.0]
    with Tape(), pytest.raises(ValueError, match="ws has 2 entries but xs has 3"):
        tape.dot([Var(1.0), Var(2.0)], x)


# -- the API -----------------------------------------------------------------------------------


def test_backward_is_idempotent_and_grads_are_not_accumulated():
    with Tape():
        x = Var(2.0)
        y = x * x * x
        y.backward()
        first = x.grad
        y.backward()
        assert x.grad == first == 12.0
        z = x * 5.0
        z.backward()  # a new sweep replaces the old adjoints
        assert x.grad == 5.0
        assert y.grad == 0.0  # recorded before z but not an ancestor of it


def test_grad_before_any_sweep_and_of_later_vars_is_zero():
    with Tape():
        x = Var(1.0)
        assert x.grad == 0.0
        y = x + 1.0
        y.backward()
        later = x * 3.0
        assert later.grad == 0.0


def test_gradient_of_intermediates_and_single_var():
    with Tape():
        x = Var(2.0)
        h = x * x
        y = tape.sin(h)
        assert tape.gradient(y, h) == pytest.approx(math.cos(4.0))
        np.testing.assert_allclose(tape.gradient(y, [x, h]), [4 * math.cos(4.0), math.cos(4.0)])
        with pytest.raises(TypeError, match="every x must be a Var"):
            tape.gradient(y, [x, 3.0])


def test_grad_and_value_and_grad_argnums():
    f = lambda x, y, z: x * y + tape.exp(z)  # noqa: E731
    assert tape.grad(f)(2.0, 3.0, 0.0) == 3.0
    assert tape.grad(f, argnums=(0, 2))(2.0, 3.0, 0.0) == (3.0, 1.0)
    value, grads = tape.value_and_grad(f, argnums=(1,))(2.0, 3.0, 0.0)
    assert value == 7.0 and grads == (2.0,)
    assert tape.grad(lambda x: 5.0)(1.0) == 0.0  # a constant function
    arr = tape.grad(lambda w: tape.sum(w * w))(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert arr.shape == (2, 2) and arr.tolist() == [[2.0, 4.0], [6.0, 8.0]]
    with pytest.raises(TypeError, match="argnums"):
        tape.grad(f, argnums="x")
    with pytest.raises(TypeError, match="argument 1"):
        tape.grad(f, argnums=1)(1.0)
    with pytest.raises(TypeError, match="must return a scalar"):
        tape.grad(lambda x: [x])(1.0)
    with pytest.raises(TypeError, match="number or a list/array of numbers"):
        tape.grad(lambda x: x)("a")


def test_argnums_may_be_any_integer_type_and_anything_else_is_a_type_error_naming_it():
    f = lambda x, y, z: x * y + tape.exp(z)  # noqa: E731
    assert tape.grad(f, argnums=np.int64(1))(2.0, 3.0, 0.0) == 2.0
    assert tape.grad(f, argnums=[np.int32(0), 2])(2.0, 3.0, 0.0) == (3.0, 1.0)
    assert tape.value_and_grad(f, argnums=np.uint8(0))(2.0, 3.0, 0.0) == (7.0, 3.0)
    assert tape.grad(lambda v: tape.grad(f, argnums=np.int64(0))(v, v, 0.0))(2.0) == 1.0  # forward mode too
    expected = "argnums must be a non-negative integer or a sequence of them"
    for bad, what in [(1.0, "got 1.0 (a float)"), (True, "got True (a bool)"), ((0, 2.0), "got (0, 2.0) (entry 2.0 is a float)"),
                      ((np.int64(0), True), "(entry True is a bool)"), (-1, "got -1 (it is negative)"),
                      ([], "got [] (it is empty)"), (None, "got None (a NoneType)"), ("x", "got 'x' (a str)")]:
        with pytest.raises(TypeError) as info:
            tape.value_and_grad(f, argnums=bad)
        assert expected in str(info.value) and what in str(info.value)


def test_grad_leaves_nothing_on_the_current_tape():
    before = len(tape.current_tape())
    tape.grad(lambda x: tape.sin(x) * x)(1.0)
    assert len(tape.current_tape()) == before


def test_a_million_grad_calls_use_constant_memory():
    f = tape.grad(lambda x, y: x * tape.sin(y) + y, argnums=(0, 1))

    def rss_mib():
        with open("/proc/self/statm") as s:
            return int(s.read().split()[1]) * 4096 / 2**20

    for _ in range(20_000):  # warm up the allocator
        f(1.0, 2.0)
    start = rss_mib()
    for i in range(1_000_000):
        f(1.0, float(i))
    assert rss_mib() - start < 16


def test_no_grad_returns_floats_and_records_nothing():
    with Tape() as t:
        x = Var(2.0)
        with tape.no_grad():
            y = tape.exp(x) * x + 1.0
        assert type(y) is float and y == pytest.approx(math.exp(2) * 2 + 1)
        assert len(t) == 1
        z = x * x  # recording again after the block
        assert isinstance(z, Var) and len(t) == 2


def test_detach_and_stop_gradient_block_the_gradient():
    with Tape():
        x = Var(3.0)
        y = x * x.detach() + tape.stop_gradient(x) * 0.0 + x
        y.backward()
        assert x.grad == 4.0  # d/dx (x * c + x) with c = 3
    assert tape.stop_gradient(2.5) == 2.5


# -- the tape's layout -------------------------------------------------------------------------


def test_tape_is_csr_arrays_of_parents_and_partials():
    with Tape() as t:
        a, b = Var(2.0), Var(5.0)
        c = a * b
        d = tape.sin(c) + a
        start, parent, partial = t.arrays()
    assert start.dtype == np.int32 and parent.dtype == np.int32 and partial.dtype == np.float64
    assert start.tolist() == [0, 0, 0, 2, 3, 5]
    assert parent.tolist() == [0, 1, 2, 3, 0]
    np.testing.assert_allclose(partial, [5.0, 2.0, math.cos(10.0), 1.0, 1.0])
    assert d.value == pytest.approx(math.sin(10) + 2)
    # per node a start offset (4 bytes) and an op code (1); per edge a parent (4) and a partial (8)
    assert t.nbytes == 5 * 5 + 4 + 5 * 12


def test_show_prints_the_wengert_list_with_adjoints(capsys):
    with Tape() as t:
        x1, x2 = Var(math.pi), Var(1.0)
        y = x2 * tape.cos(x1) + tape.exp(x2)
        y.backward()
        t.show(names={0: "v-1", 1: "v0"})
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["node", "op", "parents", "partials", "adjoint"]
    assert out[3].split()[:4] == ["2", "cos", "v-1", "-1.22465e-16"]
    assert out[4].split() == ["3", "mul", "v0,", "2", "-1,", "1", "1"]
    assert out[6].split() == ["5", "add", "3,", "4", "1,", "1", "1"]
    assert str(t) == t.format()


def test_index_overflow_is_a_clear_error(monkeypatch):
    import tape._tape as tape_module

    monkeypatch.setattr(tape_module, "INDEX_LIMIT", 300)
    with Tape() as t:
        xs = [Var(1.0) for _ in range(301)]
        with pytest.raises(OverflowError, match="tape of 301 nodes"):
            t.flush()
        assert len(xs) == 301
        t.reset()  # the tape recovers
        assert (Var(2.0) * 3.0).value == 6.0 and t.num_edges == 1


def test_memory_shortage_is_a_clear_error(monkeypatch):
    import tape._tape as tape_module

    monkeypatch.setattr(tape_module, "_available_memory", lambda: 1000)
    monkeypatch.setattr(tape_module, "CHECKED_GROWTH", 0)
    with Tape() as t:
        for _ in range(300):
            Var(1.0)
        with pytest.raises(MemoryError, match=r"tape of 302 nodes .* needs .* KiB to grow, but only 1,000 bytes"):
            Var(1.0) + 1.0
            t.flush()


# -- marks, rewinds and stale Vars --------------------------------------------------------------


def test_rewind_drops_nodes_after_the_mark_and_keeps_those_before():
    with Tape() as t:
        w = Var(2.0)
        m = t.mark()
        for sample in (1.0, 2.0, 3.0):
            y = w * sample + w
            y.backward()
            assert w.grad == sample + 1
            t.rewind(m)
            assert len(t) == 1 and t.num_edges == 0
        assert (w * 2.0).value == 4.0  # w sits below the mark and stays usable


def test_a_rewind_keeps_the_nodes_and_adjoints_below_the_mark_and_forgets_those_above():
    with Tape() as t:
        x = Var(2.0)
        y = x * 3.0  # staged, not yet in the arrays, when the mark is taken
        mark = t.mark()
        edges = t.num_edges
        z = y * 5.0
        z.backward()
        assert (x.grad, y.grad, z.grad) == (15.0, 5.0, 1.0)
        t.rewind(mark)
        assert len(t) == 2 and t.num_edges == edges == 1
        assert x.grad == 15.0 and y.grad == 5.0  # the latest sweep's, below the mark
        w = y * 7.0  # recorded where z was: no adjoint of z's is left on it
        assert w.node == z.node and w.grad == 0.0
        w.backward()
        assert (x.grad, y.grad, w.grad) == (21.0, 7.0, 1.0)
        assert t.node(y.node) == ("mul", [x.node], [3.0])
    with Tape() as t:  # a rewind among staged records, none of them moved into the arrays yet
        x = Var(2.0)
        y = x * 3.0
        mark = t.mark()
        y * 5.0
        t.rewind(mark)
        y.backward()
        assert x.grad == 3.0 and t.node(y.node) == ("mul", [x.node], [3.0])


def test_stale_vars_raise_instead_of_reading_another_node():
    with Tape() as t:
        w = Var(2.0)
        m = t.mark()
        old = w * 3.0
        t.rewind(m)
        new = w * 5.0  # takes the node index `old` had
        assert new.node == old.node
        for use in (lambda: old + 1.0, lambda: new + old, lambda: tape.sin(old), lambda: old.grad,
                    lambda: old.backward(), lambda: tape.sum([new, old]), lambda: old * old):
            with pytest.raises(tape.StaleVarError, match="rewind"):
                use()
        assert (new + 1.0).value == 11.0


def test_nested_marks_and_bad_marks():
    with Tape() as t:
        a = Var(1.0)
        m1 = t.mark()
        b = a * 2.0
        m2 = t.mark()
        c = b * 2.0
        t.rewind(m2)
        assert (b + 1.0).value == 3.0
        with pytest.raises(tape.StaleVarError):
            c + 1.0
        t.rewind(m1)
        with pytest.raises(tape.StaleVarError):
            b + 1.0
        with pytest.raises(ValueError, match="not a mark"):
            t.rewind(m2)
        with pytest.raises(ValueError, match="not a mark"):
            t.rewind(12345)


def test_reset_makes_every_var_stale():
    with Tape() as t:
        a = Var(1.0)
        t.reset()
        assert len(t) == 0
        with pytest.raises(tape.StaleVarError):
            a * 2.0


def test_module_level_reset_mark_and_rewind_act_on_the_current_tape():
    with Tape() as t:
        a = Var(1.0)
        m = tape.mark()
        a * 2.0
        tape.rewind(m)
        assert len(t) == 1
        tape.reset()
        assert len(t) == 0


# -- tapes, threads and bad input ---------------------------------------------------------------


def test_with_tape_switches_the_current_tape_and_restores_it():
    outer = tape.current_tape()
    with Tape() as t:
        assert tape.current_tape() is t
        with Tape() as inner:
            assert tape.current_tape() is inner
        assert tape.current_tape() is t
    assert tape.current_tape() is outer


def test_threads_record_on_their_own_tapes():
    results = {}

    def work(k):
        t = tape.current_tape()
        x = Var(float(k))
        y = x
        for _ in range(20_000):
            y = y * 1.0 + 1.0
        y.backward()
        results[k] = (t, x.grad, len(t), y.value)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    tapes = {id(r[0]) for r in results.values()}
    assert len(tapes) == 4 and tape.current_tape() not in [r[0] for r in results.values()]
    for k, (_, grad, length, value) in results.items():
        assert grad == 1.0 and length == 40_001 and value == k + 20_000


def test_a_tape_in_use_by_one_thread_refuses_another_at_once():
    shared, inside, done = Tape(), threading.Event(), threading.Event()
    errors = {}

    def owner():
        with shared:
            x = Var(2.0)
            inside.set()
            done.wait(5)
            y = x * x * x
            y.backward()
            errors["grad"] = x.grad

    def intruder():
        inside.wait(5)
        try:
            with shared:
                Var(1.0)
        except RuntimeError as e:
            errors["intruder"] = str(e)
        done.set()

    threads = [threading.Thread(target=owner), threading.Thread(target=intruder)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert "in use by another thread" in errors["intruder"] and "own `with tape.Tape():`" in errors["intruder"]
    assert errors["grad"] == 12.0  # the owner's gradient, untouched (it was once 6.0: a shared tape)
    with shared:  # free again once its thread left it
        assert (Var(3.0) * 2.0).value == 6.0


def test_recording_on_another_threads_tape_is_refused_at_the_next_flush():
    with Tape() as t:
        x = Var(1.0)
        caught = []

        def other():
            try:
                (x * 2.0).backward()  # a node on the main thread's tape, then a sweep
            except RuntimeError as e:
                caught.append(str(e))

        th = threading.Thread(target=other)
        th.start()
        th.join()
        assert caught and "in use by another thread" in caught[0]


def test_mixing_vars_of_two_tapes_is_an_error():
    with Tape():
        a = Var(1.0)
    with Tape():
        b = Var(2.0)
        with pytest.raises(ValueError, match="two tapes"):
            b + a
        with pytest.raises(ValueError, match="two tapes"):
            tape.sum([b, a])


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: tape.log(-1.0), ValueError, ["log(-1.0)", "x > 0"]),
        (lambda: tape.log(Var(0.0)), ValueError, ["log(0.0)"]),
        (lambda: tape.sqrt(Var(-1.0)), ValueError, ["sqrt(-1.0)", "x >= 0"]),
        (lambda: tape.log1p(-2.0), ValueError, ["log1p(-2.0)"]),
        (lambda: Var(0.0) ** -1, ZeroDivisionError, ["0.0 ** (-1)", "negative power"]),  # as Python's 0.0 ** -1
        (lambda: 0.0 ** Var(-1.0), ZeroDivisionError, ["0.0 ** (-1.0)"]),
        (lambda: Var(-8.0) ** (1 / 3), ValueError, ["(-8.0) ** 0.333", "negative base"]),
        (lambda: tape.exp(Var(1000.0)), OverflowError, ["exp(1000.0)"]),
        (lambda: Var(1.0) / 0, ZeroDivisionError, ["1.0 / 0"]),
        (lambda: 1.0 / Var(0.0), ZeroDivisionError, ["1.0 / 0.0"]),
        (lambda: tape.sin("x"), TypeError, ["sin()", "str"]),
        (lambda: Var(1.0) + "x", TypeError, ["unsupported operand"]),
    ],
)
def test_bad_input_raises_naming_the_function_and_the_value(call, error, words):
    with Tape():
        with pytest.raises(error) as info:
            call()
    for w in words:
        assert w in str(info.value)


def test_sweep_from_a_seed_vector():
    with Tape() as t:
        x = Var(2.0)
        a, b = x * 3.0, x * x
        seed = np.zeros(len(t))
        seed[a.node], seed[b.node] = 1.0, 10.0
        adjoint = t.sweep(seed)
        assert adjoint[x.node] == 3.0 + 10.0 * 4.0
        with pytest.raises(ValueError, match="1-d seed"):
            t.sweep(np.zeros(len(t) + 1))


def test_a_var_of_another_tape_returned_by_fn_is_a_constant():
    with Tape():
        y = Var(5.0)
    assert tape.grad(lambda x: y)(3.0) == 0.0
    assert tape.vjp(lambda x: y, (3.0,))[1](1.0) == (0.0,)
    assert tape.jacobian(lambda x: [y, x[0]], mode="reverse")(np.array([1.0])).tolist() == [[0.0], [1.0]]


def test_no_grad_of_an_empty_tape_turns_off_that_tape():
    t = Tape()
    with tape.no_grad(t), t:
        r = Var(1.0) * 2
    assert r == 2.0 and not isinstance(r, Var)


def test_numpy_scalar_constants_give_float_values():
    assert type((Var(1.0) * np.float32(1.0)).value) is float
    assert (Var(1.0) * np.float32(1.0) + 1e-8).value == 1.00000001


def test_argnums_naming_an_argument_twice_is_refused():
    with pytest.raises(ValueError, match=r"argnums \(0, 0\) names an argument twice"):
        tape.grad(lambda x, y: x, (0, 0))(1.0, 2.0)


def test_grad_takes_a_one_entry_array_as_the_scalar():
    assert tape.grad(lambda x: tape.VarArray(x) @ tape.VarArray(x))(np.array([1.0, 2.0])).tolist() == [2.0, 4.0]


@pytest.mark.parametrize("module", ["_kernels", "_small"])
def test_parse_refuses_a_record_cut_short_or_a_parent_that_is_not_before_its_node(module):
    """A stream whose last record lacks some of its parents or partials (a stream cut short), or
    one whose node is its own parent, is refused (-1) instead of being read past its end, by the
    compiled parse and by its plain-Python twin."""
    parse = importlib.import_module(f"tape.{module}").parse
    from tape._rules import header

    # two leaves, then mul(node 0, node 1) with partials 3 and 2
    whole = np.array([header(0, 0), header(0, 0), header(tape.op_code("mul"), 2), 0.0, 1.0, 3.0, 2.0])

    def parsed(stream):
        start, parent, partial, op = np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(4), np.zeros(3, np.int64)
        return parse(stream, start, parent, partial, op, 0, 0), list(parent[:2]), list(partial[:2])

    assert parsed(whole) == (2, [0, 1], [3.0, 2.0])
    for cut in range(3, len(whole)):
        assert parsed(whole[:cut])[0] == -1, cut
    assert parsed(np.array([header(0, 0), header(tape.op_code("mul"), 2), 0.0, 1.0, 3.0, 2.0]))[0] == -1  # node 1 its own parent


def test_leaves_recorded_in_bulk_after_other_nodes_are_leaves_without_edges():
    """A VarArray of numbers is leaves only: recorded without parsing, each node without parents,
    between nodes that have them; the sweep across them is Algorithm 1's."""
    with Tape() as t:
        x = Var(2.0)
        y = x * 3.0  # one edge, to x
        leaves = tape.VarArray([1.0, 2.0, 3.0])
        z = y * leaves[1] + leaves[2]
        z.backward()
    first = int(leaves.nodes[0])
    assert [t._op[first + k] for k in range(3)] == [0, 0, 0]  # LEAF
    assert [int(t._start[first + k]) for k in range(4)] == [1] * 4  # y's edge before them, none of theirs
    assert (z.value, x.grad, y.grad) == (15.0, 6.0, 2.0)
    assert leaves.grad.tolist() == [0.0, 6.0, 1.0]


def test_leaves_recorded_where_a_rewound_node_had_edges_are_leaves():
    """Rewinding leaves the arrays' old entries behind: leaves recorded in bulk over a node that
    had a parent get the leaf's op code and no edges, and sweep as leaves."""
    with Tape() as t:
        x = Var(2.0)
        mark = t.mark()
        for _ in range(3):  # nodes with parents where the leaves will go
            x * 3.0 + 1.0
        t.flush()
        t.rewind(mark)
        leaves = tape.VarArray([1.0, 2.0, 3.0])
        z = leaves[0] * x + leaves[2]
        z.backward()
    first = int(leaves.nodes[0])
    assert [t._op[first + k] for k in range(3)] == [0, 0, 0]  # LEAF
    assert len({int(t._start[first + k]) for k in range(4)}) == 1  # no edges of their own
    assert (z.value, x.grad, leaves.grad.tolist()) == (5.0, 1.0, [2.0, 0.0, 1.0])
