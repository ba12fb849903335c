"""VarArray: arrays of scalar nodes recorded in bulk, against the scalar path and by hand."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import Tape, Var, VarArray


def canonical_nodes(t: Tape, first: int) -> list[tuple]:
    """Nodes from `first` on as (op, sorted (parent, partial) pairs): edge order within a node
    does not matter."""
    return [(op, sorted(zip(parents, np.round(partials, 12)))) for i, op, parents, partials in t.nodes() if i >= first]


def test_generated_files_are_in_sync_with_the_rule_table():
    from tape import _codegen

    for path, text in _codegen.sources().items():
        assert path.read_text() == text, f"{path.name} is out of date: run python -m tape._codegen"


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3), st.integers(0, 2 ** 31 - 1))
def test_elementwise_operators_broadcast_and_record_like_scalar_vars(op, shape_case, seed):
    rng = np.random.default_rng(seed)
    shapes = [((3,), (3,)), ((2, 3), (3,)), ((2, 3), ()), ((2, 1), (1, 3))][shape_case]
    a_values, b_values = rng.uniform(0.5, 2, shapes[0]), rng.uniform(0.5, 2, shapes[1])
    apply = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}[op]
    with Tape() as t:
        a, b = VarArray(a_values), VarArray(b_values)
        start = len(t)
        c = apply(a, b)
        vector_nodes = canonical_nodes(t, start)
        c.sum().backward()
        grads = a.grad, b.grad
    np.testing.assert_allclose(c.values, apply(a_values, b_values))
    with Tape() as t:  # the same with one scalar Var per entry
        a_vars = np.vectorize(Var, otypes=[object])(a_values)
        b_vars = np.vectorize(Var, otypes=[object])(b_values) if b_values.ndim else np.array(Var(float(b_values)), dtype=object)
        start = len(t)
        c_vars = apply(a_vars, b_vars)
        scalar_nodes = canonical_nodes(t, start)
    assert vector_nodes == scalar_nodes
    expected_a = tape.grad(lambda x: tape.sum(apply(x, b_values)))(a_values)
    expected_b = tape.grad(lambda y: tape.sum(apply(a_values, y)))(b_values)
    np.testing.assert_allclose(grads[0], expected_a, rtol=1e-12)
    np.testing.assert_allclose(grads[1], expected_b, rtol=1e-12)


def test_constants_on_either_side_and_negation():
    with Tape():
        a = VarArray([1.0, 2.0])
        y = (3.0 - a) * np.array([2.0, 4.0]) + 1 / a - -a
        y.sum().backward()
        np.testing.assert_allclose(y.values, [4 + 1 + 1, 4 + 0.5 + 2])
        np.testing.assert_allclose(a.grad, [-2 - 1 + 1, -4 - 0.25 + 1])


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "relu", "sin", "sqrt", "softplus"])
def test_elementary_functions_apply_entrywise_with_the_scalar_partials(name):
    fn = tape.ELEMENTARY[name]
    values = np.array([[0.3, 1.7], [2.5, 0.9]])
    with Tape() as t:
        x = VarArray(values)
        start = len(t)
        y = fn(x)
        vector_nodes = canonical_nodes(t, start)
    with Tape() as t:
        xs = [Var(v) for v in values.ravel()]
        start = len(t)
        ys = [fn(v) for v in xs]
        scalar_nodes = canonical_nodes(t, start)
    assert vector_nodes == scalar_nodes
    np.testing.assert_allclose(y.values.ravel(), [v.value for v in ys])
    np.testing.assert_allclose(fn(values), y.values)  # a float array gives a float array


def test_entrywise_domain_errors_name_the_function_and_value():
    with Tape():
        with pytest.raises(ValueError, match=r"log\(-2.0\)"):
            tape.log(VarArray([1.0, -2.0]))
        with pytest.raises(OverflowError, match=r"exp\(1000.0\)"):
            tape.exp(VarArray([1.0, 1000.0]))
        with pytest.raises(ZeroDivisionError, match="division by zero at index"):
            VarArray([1.0, 2.0]) / np.array([1.0, 0.0])
    with pytest.raises(ValueError, match=r"sqrt\(-1.0\)"):
        tape.sqrt(np.array([-1.0]))


def test_matvec_and_batched_matmul_make_one_dot_node_per_output():
    rng = np.random.default_rng(0)
    W_values, x_values = rng.normal(size=(3, 4)), np.array([0.5, 0.0, -1.0, 2.0])
    with Tape() as t:
        W = VarArray(W_values)
        start = len(t)
        z = W @ x_values
        assert z.shape == (3,) and len(t) == start + 3
        for i in range(3):
            op, parents, partials = t.node(start + i)
            # the zero input gives no edge to its weight
            assert op == "dot" and parents == W.nodes[i, [0, 2, 3]].tolist() and partials == [0.5, -1.0, 2.0]
        np.testing.assert_allclose(z.values, W_values @ x_values)
        X_values = rng.normal(size=(5, 4))
        H = VarArray(X_values) @ W.T  # the batch: (5, 4) @ (4, 3)
        assert H.shape == (5, 3)
        np.testing.assert_allclose(H.values, X_values @ W_values.T)
        H.sum().backward()
        np.testing.assert_allclose(W.grad, np.ones((5, 3)).T @ X_values)
    with pytest.raises(ValueError, match="do not align"):
        with Tape():
            VarArray(W_values) @ np.ones(3)


def test_vector_path_records_what_vars_and_dot_record():
    """The issue's invariant: a layer through Vars and tape.dot and through VarArrays."""
    rng = np.random.default_rng(1)
    W_values, b_values = rng.normal(size=(4, 6)), rng.normal(size=4)
    x_values = np.where(rng.random(6) < 0.4, 0.0, rng.random(6))
    with Tape() as t:
        W, b = VarArray(W_values), VarArray(b_values)
        start = len(t)
        h = tape.sigmoid(W @ x_values + b)
        vector_nodes = canonical_nodes(t, start)
        h.sum().backward()
        vector_grads = W.grad
    with Tape() as t:
        W_vars = [[Var(v) for v in row] for row in W_values]
        b_vars = [Var(v) for v in b_values]
        start = len(t)
        z = [tape.dot(row, x_values) for row in W_vars]
        z = [zi + bi for zi, bi in zip(z, b_vars)]
        h_vars = [tape.sigmoid(zi) for zi in z]
        scalar_nodes = canonical_nodes(t, start)
        grads = tape.gradient(tape.sum(h_vars), [w for row in W_vars for w in row])
    # leaves are numbered the same way, so node indices match one to one
    assert vector_nodes == scalar_nodes
    np.testing.assert_allclose(vector_grads.ravel(), grads, rtol=1e-12)


def test_indexing_gives_views_and_vars_without_new_nodes():
    with Tape() as t:
        a = VarArray(np.arange(6.0).reshape(2, 3))
        n = len(t)
        row, entry = a[1], a[0, 2]
        assert isinstance(row, VarArray) and row.shape == (3,) and isinstance(entry, Var)
        assert len(t) == n and entry.node == a.nodes[0, 2] and entry.value == 2.0
        y = row.sum() * entry + a[:, 0].sum()
        y.backward()
        np.testing.assert_allclose(a.grad, [[1.0, 0.0, 12.0], [3.0, 2.0, 2.0]])
        assert [v.value for v in a[0]] == [0.0, 1.0, 2.0]


def test_sum_and_mean_along_an_axis_are_one_node_per_output():
    with Tape() as t:
        a = VarArray(np.arange(6.0).reshape(2, 3))
        n = len(t)
        rows, cols, mean = a.sum(axis=1), a.sum(axis=0), a.mean()
        assert len(t) == n + 2 + 3 + 1
        np.testing.assert_allclose(rows.values, [3.0, 12.0])
        np.testing.assert_allclose(cols.values, [3.0, 5.0, 7.0])
        assert isinstance(mean, Var) and mean.value == 2.5
        (rows.sum() + mean).backward()
        np.testing.assert_allclose(a.grad, np.full((2, 3), 1 + 1 / 6))


def test_record_array_records_custom_nodes_and_checks_shapes():
    with Tape() as t:
        a = VarArray([[1.0, 2.0], [3.0, 4.0]])
        y = tape.record_array([10.0, 20.0], a, [[0.5, 0.0], [1.0, 2.0]], "custom")
        assert t.node(int(y.nodes[0])) == ("custom", [int(a.nodes[0, 0])], [0.5])
        y.sum().backward()
        np.testing.assert_allclose(a.grad, [[0.5, 0.0], [1.0, 2.0]])
        with pytest.raises(ValueError, match="expected values"):
            tape.record_array([1.0], a, [[1.0, 1.0]])
    with Tape():
        x = Var(3.0)
        y = tape.record(9.0, [x], [6.0], "square")
        y.backward()
        assert x.grad == 6.0 and y.value == 9.0
        with pytest.raises(ValueError, match="as many partials as parents"):
            tape.record(1.0, [x], [1.0, 2.0])


def test_no_grad_on_arrays_gives_values_and_records_nothing():
    with Tape() as t:
        W = VarArray(np.eye(2))
        n = len(t)
        with tape.no_grad():
            y = tape.tanh(W @ np.array([1.0, 2.0]) + 1.0)
        assert isinstance(y, np.ndarray) and len(t) == n
        np.testing.assert_allclose(y, np.tanh([2.0, 3.0]))


def test_stale_arrays_and_mixed_tapes_raise():
    with Tape() as t:
        a = VarArray([1.0, 2.0])
        m = t.mark()
        b = a * 2.0
        t.rewind(m)
        with pytest.raises(tape.StaleVarError):
            b + 1.0
    with Tape():
        c = VarArray([1.0, 2.0])
        with pytest.raises(ValueError, match="two tapes"):
            a + c


def test_backward_needs_a_single_output():
    with Tape():
        a = VarArray([1.0, 2.0])
        with pytest.raises(ValueError, match="single output"):
            (a * 2.0).backward()
        a[0:1].backward()
        assert a.grad.tolist() == [1.0, 0.0]


def test_sweep_window_sweeps_a_segment_above_leaves():
    from tape import kernels

    with Tape() as t:
        w = VarArray([2.0, 3.0])
        mark = t.mark()
        y = (w * w).sum()  # nodes above the leaves
        start, parent, partial = t.arrays()
        window = np.zeros(y.node + 1 - int(w.nodes[0]))
        window[-1] = 1.0
        kernels.sweep_window(start, parent, partial, window, int(w.nodes[0]), mark)
    np.testing.assert_allclose(window[:2], [4.0, 6.0])
    assert math.isclose(y.value, 13.0)


# -- arrays made of Vars ----------------------------------------------------------------------------


def test_a_varray_of_vars_keeps_their_nodes_and_numbers_become_leaves():
    with Tape():
        x1, x2 = tape.Var(1.0), tape.Var(2.0)
        v = tape.VarArray([x1, 3.0, x2])
        assert v.values.tolist() == [1.0, 3.0, 2.0] and v.nodes[[0, 2]].tolist() == [x1.node, x2.node]
        (v * v).sum().backward()
        assert (x1.grad, x2.grad) == (2.0, 4.0) and v.grad.tolist() == [2.0, 6.0, 4.0]
        assert tape.VarArray(v).nodes.tolist() == v.nodes.tolist()


def test_grad_of_a_function_that_wraps_its_argument_in_a_varray():
    """grad passes an array of Vars; VarArray(x) must not turn them into fresh leaves (gradient 0)."""
    W = np.array([[1.0, -2.0], [0.5, 3.0]])
    f = lambda x: (tape.sigmoid(W @ tape.VarArray(x))).sum()  # noqa: E731
    x = np.array([0.3, -0.7])
    s = 1 / (1 + np.exp(-(W @ x)))
    np.testing.assert_allclose(tape.grad(f)(x), W.T @ (s * (1 - s)), rtol=1e-12)


def test_a_list_of_vars_as_an_operand_is_not_a_constant():
    with Tape():
        x1, x2 = tape.Var(1.0), tape.Var(2.0)
        (tape.VarArray(np.array([3.0, 4.0])) * [x1, x2]).sum().backward()
        assert (x1.grad, x2.grad) == (3.0, 4.0)
        (np.array([[1.0, 2.0]]) @ tape.VarArray([x1, x2])).sum().backward()
        assert (x1.grad, x2.grad) == (1.0, 2.0)


def test_a_varray_of_other_things_or_of_two_tapes_is_refused():
    with Tape():
        x = tape.Var(1.0)
        with pytest.raises(TypeError, match="entries must be numbers or Vars, got str"):
            tape.VarArray([x, "2"])
        with pytest.raises(TypeError, match="got Dual .forward mode"):  # not silently a constant
            tape.jacobian(lambda v: tape.VarArray(v) * 2.0, mode="forward")(np.array([1.0, 2.0]))
        with Tape():
            y = tape.Var(2.0)
        with pytest.raises(ValueError, match="two tapes"):
            tape.VarArray([x, y])


def test_stop_gradient_of_a_varray():
    with Tape():
        a = VarArray([1.0, 2.0])
        (a * tape.stop_gradient(a * a)).sum().backward()
        assert a.grad.tolist() == [1.0, 4.0]


def test_reductions_of_a_1d_array_along_its_axis_and_abs():
    with Tape():
        v = VarArray([-1.0, 0.0, 2.0])
        assert v.sum(axis=0).value == 1.0 and v.mean(axis=-1).value == pytest.approx(1 / 3)
        with pytest.raises(TypeError, match="expected an int or None"):
            v.sum(axis=(0,))
        s = abs(v).sum()
        s.backward()
        assert s.value == 3.0 and v.grad.tolist() == [-1.0, 0.0, 1.0]


def test_a_copy_of_surviving_nodes_survives_a_rewind():
    with Tape() as t:
        a = VarArray([1.0, 2.0])
        m = t.mark()
        b, c = VarArray(a), VarArray(np.array([a[0]], dtype=object))
        t.rewind(m)
        assert (b * 2).values.tolist() == [2.0, 4.0] and (c * 2).values.tolist() == [2.0]


def test_the_numbers_of_lists_in_a_matmul_are_leaves_kept_by_a_trace():
    """[x, 3, 4] . [y, 6, 7] = xy + 46: the lists' numbers become leaves of the dot (so no pair
    is two constants), and a trace replays them at a new x."""
    with Tape():
        x, y = Var(2.0), Var(5.0)
        d = tape.matmul([x, 3.0, 4.0], [y, 6.0, 7.0])
        assert float(d.values) == 2.0 * 5.0 + 46.0
        d.backward()
        assert (x.grad, y.grad) == (5.0, 2.0)
    traced = tape.trace(lambda x: tape.matmul([x, 3.0, 4.0], [x, 6.0, 7.0]), 2.0)
    assert traced.value_and_grad()(3.0) == (9.0 + 46.0, 6.0)


def test_reductions_without_recording_give_the_numbers():
    with Tape():
        a = VarArray(np.array([[1.0, 2.0], [3.0, -1.0]]))
        with tape.no_grad():
            assert a.sum() == 5.0 and a.mean() == 1.25
            np.testing.assert_array_equal(a.sum(axis=1), [3.0, 2.0])
            np.testing.assert_allclose(a.logsumexp(axis=0), np.log(np.exp([1.0, 2.0]) + np.exp([3.0, -1.0])))


def test_a_refused_entry_is_named_by_its_index():
    with Tape():
        a = VarArray(np.array([[1.0, 2.0], [3.0, -1.0]]))
        with pytest.raises(ValueError, match=r"log\(-1.0\).*x > 0.*at index \(1, 1\)"):
            tape.log(a)


@pytest.mark.parametrize("other", ["ab", {"x": 1}, None])
def test_an_operand_that_is_not_numbers_is_refused_naming_its_type(other):
    with Tape():
        a = VarArray(np.ones(2))
        with pytest.raises(TypeError, match="unsupported operand type.*@"):
            a @ other
        with pytest.raises(TypeError, match=r"unsupported operand type.*\+"):
            a + other
        with pytest.raises(TypeError, match=f"matmul: expected .*got VarArray and {type(other).__name__}"):
            tape.matmul(a, other)


def test_a_vector_times_a_matrix_and_shapes_that_do_not_align():
    rng = np.random.default_rng(4)
    x_values, W_values = rng.normal(size=4), rng.normal(size=(4, 3))
    with Tape():
        x, W = VarArray(x_values), VarArray(W_values)
        y = x @ W
        assert y.shape == (3,)
        np.testing.assert_allclose(y.values, x_values @ W_values)
        y.sum().backward()
        np.testing.assert_allclose(x.grad, W_values.sum(axis=1))  # d/dx sum(x W) = W 1
        np.testing.assert_allclose(W.grad, np.outer(x_values, np.ones(3)))
        with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(2, 3\) do not align \(3 != 2\)"):
            VarArray(np.ones((2, 3))) @ np.ones((2, 3))
