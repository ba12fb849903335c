"""Forward mode, Jacobians and second derivatives: against finite differences, reverse mode
and closed forms."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import Dual, Tape

finite = dict(allow_nan=False, allow_infinity=False)


def central(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def f_course(x1, x2):
    return x2 * tape.cos(x1) + tape.exp(x2)


def smooth(x):
    """A map R^3 -> R^3 using every kind of operation."""
    return [tape.sin(x[0]) * x[1] + x[2] ** 2, tape.exp(x[1] / 3) - tape.sqrt(x[2] + 2), tape.tanh(x[0] * x[1] * x[2]) + tape.log1p(x[0] ** 2)]


# -- forward mode ---------------------------------------------------------------------------------


def test_table_1_of_the_course():
    for seed, expected in (((1.0, 0.0), 0.0), ((0.0, 1.0), math.e - 1)):
        value, derivative = tape.jvp(f_course, (math.pi, 1.0), seed)
        assert value == pytest.approx(math.e - 1, abs=1e-12) and derivative == pytest.approx(expected, abs=1e-12)
    v0, v_1 = Dual(1.0, 1.0), Dual(math.pi, 0.0)  # d/dx2: v2' = -1, v3' = e (Table 1)
    assert (v0 * tape.cos(v_1)).tangent == pytest.approx(-1.0) and tape.exp(v0).tangent == pytest.approx(math.e)


@pytest.mark.parametrize("name", sorted(tape.ELEMENTARY))
def test_every_elementary_function_carries_a_tangent(name):
    fn = tape.ELEMENTARY[name]
    x = 0.7
    value, derivative = tape.jvp(fn, (x,), (1.0,))
    assert value == pytest.approx(fn(x)) and derivative == pytest.approx(central(fn, x), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.2, 1.5, **finite), min_size=3, max_size=3), st.lists(st.floats(-1, 1, **finite), min_size=3, max_size=3))
def test_jvp_against_finite_differences_and_reverse_mode(x, d):
    x, d = np.array(x), np.array(d)
    f = lambda v: tape.sum(smooth(v)) * smooth(v)[0]  # noqa: E731
    value, derivative = tape.jvp(f, (x,), (d,))
    expected = (float(f(x + 1e-6 * d)) - float(f(x - 1e-6 * d))) / 2e-6
    assert derivative == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert derivative == pytest.approx(d @ tape.grad(f)(x), rel=1e-10, abs=1e-12)
    assert value == pytest.approx(float(f(x)))


def test_jvp_of_vector_outputs_and_bad_input():
    value, derivative = tape.jvp(smooth, (np.array([0.5, 1.0, 1.5]),), (np.array([1.0, 0.0, 0.0]),))
    assert value.shape == derivative.shape == (3,)
    np.testing.assert_allclose(value, [float(v) for v in smooth([0.5, 1.0, 1.5])], rtol=1e-15)
    assert derivative[0] == pytest.approx(math.cos(0.5) * 1.0)
    value, derivative = tape.jvp(lambda v: v * 2.0 + 1.0, (np.array([1.0, 2.0]),), (np.array([1.0, -1.0]),))  # an ndarray out
    assert value.tolist() == [3.0, 5.0] and derivative.tolist() == [2.0, -2.0]
    with pytest.raises(ValueError, match=r"primal 0 has shape \(3,\) but its tangent has shape \(2,\)"):
        tape.jvp(smooth, (np.ones(3),), (np.ones(2),))
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        tape.jvp(f_course, (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match=r"log\(-1.0\)"):
        tape.jvp(tape.log, (-1.0,), (1.0,))


# -- Jacobians ------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_jacobian_modes_agree_with_each_other_and_finite_differences(m, n, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(n, m)), rng.normal(size=(n, m))
    x = rng.uniform(0.1, 1.0, m)

    def f(v):
        return [tape.sin(tape.dot(A[i], v)) + tape.dot(B[i], v) ** 2 for i in range(n)]

    forward, reverse, auto = (tape.jacobian(f, mode)(x) for mode in ("forward", "reverse", "auto"))
    assert forward.shape == reverse.shape == (n, m)
    np.testing.assert_allclose(forward, reverse, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(auto, reverse, rtol=1e-12, atol=1e-12)
    numeric = np.stack([(np.array(f(x + h), float) - np.array(f(x - h), float)) / 2e-6 for h in np.eye(m) * 1e-6], axis=1)
    np.testing.assert_allclose(forward, numeric, rtol=1e-5, atol=1e-6)


def test_jacobian_shapes_follow_the_output_and_the_input():
    assert tape.jacobian(lambda v: tape.sum(v * v))(np.array([1.0, 2.0])).tolist() == [2.0, 4.0]
    assert tape.jacobian(lambda s: [s, s * s])(3.0).tolist() == [1.0, 6.0]
    assert tape.jacobian(lambda s: tape.sin(s))(0.0) == 1.0
    with pytest.raises(ValueError, match="mode must be 'auto', 'forward' or 'reverse', got 'sideways'"):
        tape.jacobian(smooth, "sideways")


def test_vjp_sweeps_one_tape_per_cotangent():
    x = np.array([0.5, 1.0, 1.5])
    value, vjp_fn = tape.vjp(smooth, (x,))
    J = tape.jacobian(smooth)(x)
    np.testing.assert_allclose(value, [float(v) for v in smooth(x)])
    for c in (np.array([1.0, 0.0, 0.0]), np.array([0.3, -2.0, 1.0])):
        (g,) = vjp_fn(c)
        np.testing.assert_allclose(g, c @ J, rtol=1e-12)
    with pytest.raises(ValueError, match=r"cotangent has shape \(2,\), the output \(3,\)"):
        vjp_fn(np.ones(2))
    (gx, gy), = [vjp_fn2(1.0) for _, vjp_fn2 in [tape.vjp(lambda a, b: a * b + b, (2.0, 3.0))]]
    assert (gx, gy) == (3.0, 3.0)


# -- second and third derivatives -----------------------------------------------------------------


def rosenbrock(x):
    return tape.sum([100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1)])


def rosenbrock_hessian(x):
    n = len(x)
    H = np.zeros((n, n))
    for i in range(n - 1):
        H[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        H[i + 1, i + 1] += 200
        H[i, i + 1] += -400 * x[i]
        H[i + 1, i] += -400 * x[i]
    return H


def test_hessian_of_rosenbrock_against_its_closed_form():
    x = np.array([1.2, 0.8, -0.5, 1.1])
    np.testing.assert_allclose(tape.hessian(rosenbrock)(x), rosenbrock_hessian(x), rtol=1e-12)


def test_hessian_of_a_quadratic_form_is_a_plus_a_transposed():
    A = np.random.default_rng(0).normal(size=(4, 4))
    x = np.array([0.3, -1.0, 2.0, 0.5])
    quadratic = lambda v: tape.dot(v, [tape.dot(row, v) for row in A])  # noqa: E731
    np.testing.assert_allclose(tape.hessian(quadratic)(x), A + A.T, rtol=1e-12, atol=1e-12)


def test_hessian_of_log_sum_exp_is_diag_p_minus_p_p_transposed():
    x = np.array([0.5, -1.0, 2.0])
    lse = lambda v: tape.log(tape.sum([tape.exp(e) for e in v]))  # noqa: E731
    p = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(tape.hessian(lse)(x), np.diag(p) - np.outer(p, p), rtol=1e-12, atol=1e-14)


def test_hessian_against_finite_differences_of_gradients():
    x = np.array([0.4, 0.9, 1.3])
    f = lambda v: tape.sum(smooth(v)) ** 2  # noqa: E731
    g = tape.grad(f)
    numeric = np.stack([(g(x + h) - g(x - h)) / 2e-5 for h in np.eye(3) * 1e-5], axis=1)
    np.testing.assert_allclose(tape.hessian(f)(x), numeric, rtol=1e-5, atol=1e-6)


def test_hvp_is_the_hessian_times_v_without_forming_it():
    x, v = np.array([1.2, 0.8, -0.5]), np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(tape.hvp(rosenbrock, x, v), rosenbrock_hessian(x) @ v, rtol=1e-12)
    with pytest.raises(ValueError, match=r"x has shape \(3,\) but v has shape \(2,\)"):
        tape.hvp(rosenbrock, x, v[:2])


def test_derivatives_of_derivatives_of_a_polynomial():
    p = lambda x: 3 * x**4 - 2 * x**3 + x - 7  # noqa: E731
    d1, d2, d3 = tape.grad(p), tape.grad(tape.grad(p)), tape.grad(tape.grad(tape.grad(p)))
    x = 1.5
    assert d1(x) == pytest.approx(12 * x**3 - 6 * x**2 + 1)
    assert d2(x) == pytest.approx(36 * x**2 - 12 * x)
    assert d3(x) == pytest.approx(72 * x - 12)
    assert tape.grad(tape.grad(tape.grad(tape.grad(p))))(x) == pytest.approx(72)


def test_second_derivative_through_a_partial_that_is_zero_here():
    """d/dx of x * y at y = 0: the edge to x has partial 0 (not stored), yet d2/dxdy = 1."""
    mixed = tape.grad(lambda x, y: tape.grad(lambda a: a * y)(x), argnums=1)
    assert mixed(2.0, 0.0) == 1.0
    assert tape.hessian(lambda v: v[0] * v[1])(np.array([2.0, 0.0])).tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("x", [np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0])])
def test_hessian_of_rosenbrock_where_a_power_has_base_zero(x):
    """At x0 = 1, (1 - x0)**2 has base 0: its slope is 0 there, its curvature is not."""
    np.testing.assert_allclose(tape.hessian(rosenbrock)(x), rosenbrock_hessian(x), rtol=1e-12)


def test_higher_derivatives_of_powers_at_zero():
    d = tape.grad
    assert d(d(lambda x: x**2))(0.0) == 2.0
    assert d(d(d(lambda x: x**3)))(0.0) == 6.0
    assert d(d(lambda x: x**3))(0.0) == 0.0
    assert d(lambda x: x**0.5)(0.0) == math.inf
    assert d(d(lambda x, y: x**y), argnums=1)(2.0, 3.0) == pytest.approx(4 * (1 + 3 * math.log(2)))


def test_grad_of_a_vector_function_is_refused_in_forward_mode_too():
    with Tape():
        x = tape.Var(1.0)
        with pytest.raises(TypeError, match="must return a scalar"):
            tape.grad(lambda v: [v, v])(x)


# -- levels: where the Duals of two derivatives meet, the inner one's is the Dual ------------------
# g(x) = d/dy f(x, y) at y = x, taken inside a derivative in x that f closes over: the outer
# derivative of x * g(x) must be g + x g', with x a constant to the inner one.

NESTED = {  # f(x, y), and g(x) written out
    "unary": (lambda x, y: tape.sin(x * y), lambda x: x * math.cos(x * x)),
    "binary, the outer on the left": (lambda x, y: x * y + x / (y + 2.0), lambda x: x - x / (x + 2.0) ** 2),
    "binary, the outer on the right": (lambda x, y: y ** x, lambda x: x**x),
    "sum": (lambda x, y: tape.sum([x * y, y, x]), lambda x: x + 1.0),
    "dot": (lambda x, y: tape.dot([x, y, 2.0], [y, x, y]), lambda x: 2.0 * x + 2.0),
    "logsumexp": (lambda x, y: tape.logsumexp([x * y, y, x]),
                  lambda x: (x * math.exp(x * x) + math.exp(x)) / (math.exp(x * x) + 2.0 * math.exp(x))),
    "the outer variable alone": (lambda x, y: x, lambda x: 0.0),
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_a_derivative_inside_a_derivative_keeps_the_levels_apart(name):
    f, g = NESTED[name]
    x = 1.3
    h = lambda x: x * g(x)  # noqa: E731
    inner = lambda x: x * tape.jvp(lambda y: f(x, y), (x,), (1.0,))[1]  # noqa: E731
    value, derivative = tape.jvp(inner, (x,), (1.0,))
    assert value == pytest.approx(h(x), rel=1e-12) and derivative == pytest.approx(central(h, x), rel=1e-7, abs=1e-9)
    by_grad = tape.grad(lambda x: x * tape.grad(lambda y: f(x, y))(x))(x)  # reverse mode over forward mode
    assert by_grad == pytest.approx(central(h, x), rel=1e-7, abs=1e-9)
    _, by_jvp_of_grad = tape.jvp(lambda x: x * tape.grad(lambda y: f(x, y))(x), (x,), (1.0,))  # forward over forward
    assert by_jvp_of_grad == pytest.approx(central(h, x), rel=1e-7, abs=1e-9)


def test_a_derivative_at_a_kink_is_its_limit_and_the_next_one_nan():
    assert tape.grad(lambda x: x ** (x + 1))(0.0) == 1.0
    assert math.isnan(tape.grad(tape.grad(lambda x: x ** (x + 1)))(0.0))
    value, second = tape.jvp(lambda x: tape.jvp(lambda y: y ** (y + 1), (x,), (1.0,))[1], (0.0,), (1.0,))  # forward over forward
    assert value == 1.0 and math.isnan(second)


def test_a_kink_of_two_levels_is_a_dual_of_the_newer_level_over_the_older():
    """Its value and derivative in each level: the value kept, both derivatives nan; a number
    among the operands is a constant."""
    older, newer = Dual(0.0, 1.0, tag=1), Dual(0.5, 2.0, tag=2)
    for operands in ((older, newer), (newer, 3.0, older)):
        k = Dual.kink(0.25, operands)
        assert k.__class__ is Dual and k.tag == 2 and math.isnan(k.tangent)
        assert k.value.__class__ is Dual and k.value.tag == 1 and k.value.value == 0.25 and math.isnan(k.value.tangent)
    alone = Dual.kink(0.25, (newer, 3.0))
    assert alone.tag == 2 and alone.value == 0.25 and math.isnan(alone.tangent)


def test_a_dual_made_by_hand_with_numbers_on_either_side():
    d = Dual(2.0, 1.0)
    assert [(v.value, v.tangent) for v in (d * 3.0, 3.0 * d, d - 5.0, 5.0 - d, d / 4.0, 8.0 / d, d**3.0, 2.0**d)] == [
        (6.0, 3.0), (6.0, 3.0), (-3.0, 1.0), (3.0, -1.0), (0.5, 0.25), (4.0, -2.0), (8.0, 12.0), (4.0, 4.0 * math.log(2.0))]
    assert [(v.value, v.tangent) for v in ((3.0 * d) * d, (d * 3.0) * (4.0 - d))] == [(12.0, 12.0), (12.0, 0.0)]  # one level


# -- found by probing: each gave a wrong number without an error ---------------------------------


def test_dot_of_var_weights_and_dual_inputs_keeps_the_tangent():
    with Tape():
        w = [tape.Var(1.0), tape.Var(2.0)]
        value, tangent = tape.jvp(lambda x: tape.dot(w, x), ([1.0, 2.0],), ([1.0, 1.0],))
        assert (float(value), float(tangent)) == (5.0, 3.0)


def test_stop_gradient_drops_a_duals_tangent():
    assert tape.jvp(lambda x: x * tape.stop_gradient(x), (3.0,), (1.0,)) == (9.0, 3.0)
    assert tape.grad(tape.grad(lambda x: x * tape.stop_gradient(x * x)))(3.0) == 0.0


def test_softplus_second_derivative_at_zero():
    """d2/dx2 softplus(x)^2 = 2 (sigmoid^2 + softplus * sigmoid (1 - sigmoid)); at 0: 0.5 + log 2 / 2."""
    expected = 2 * (0.25 + math.log(2) * 0.25)
    assert tape.grad(tape.grad(lambda x: tape.softplus(x) ** 2))(0.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("other", ["ab", None, [1.0]])
def test_a_dual_with_an_operand_that_is_not_a_number_is_refused(other):
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \+: 'Dual'"):
        tape.Dual(1.0, 1.0) + other


def test_an_infinite_partial_times_a_zero_tangent_adds_nothing_as_in_reverse_mode():
    """sqrt(relu(x)) at x < 0: relu's partial is 0, so the tangent reaching sqrt is 0, and sqrt's
    partial at 0 is infinite. A sweep skips the zero edge (the gradient is 0); forward mode, a
    traced jvp and a forward Jacobian give 0 too, not inf * 0 = nan."""
    f = lambda x: tape.sqrt(tape.relu(x))  # noqa: E731
    assert tape.grad(f)(-1.0) == 0.0
    assert tape.jvp(f, (-1.0,), (1.0,)) == (0.0, 0.0)
    assert tape.trace(f, -1.0).jvp((-1.0,), (1.0,)) == (0.0, 0.0)
    g = lambda x: [tape.sqrt(tape.relu(x[0])) * x[1], x[1] * 2.0, tape.sum([f(x[0]), x[1]])]  # noqa: E731
    x = np.array([-1.0, 2.0])
    expected = [[0.0, 0.0], [0.0, 2.0], [0.0, 1.0]]
    for mode in ("forward", "reverse", "auto"):
        assert tape.jacobian(g, mode=mode)(x).tolist() == expected, mode
        assert tape.trace(g, x).jacobian(mode=mode)(x).tolist() == expected, mode
    # in a reduction too: d dot([a], [b]) / da is b = inf, but a's tangent is 0
    assert tape.jvp(lambda a, b: tape.dot([a], [b]), (2.0, math.inf), (0.0, 1.0)) == (math.inf, 2.0)


def test_the_scalar_reductions_over_entries_of_a_tensor_in_forward_mode():
    a, v = np.array([0.3, -0.7, 1.1]), np.array([0.5, 2.0, -1.0])
    value, tangent = tape.jvp(lambda t: tape.dot([t[0], t[1]], [t[1], t[2]]), (tape.Tensor(a),), (v,))
    assert value == pytest.approx(a[0] * a[1] + a[1] * a[2])
    assert tangent == pytest.approx(v[0] * a[1] + a[0] * v[1] + v[1] * a[2] + a[1] * v[2])
    value, tangent = tape.jvp(lambda t: tape.sum([t[0], t[1], t[2]]), (tape.Tensor(a),), (v,))
    assert value == pytest.approx(a.sum()) and tangent == pytest.approx(v.sum())
    value, tangent = tape.jvp(lambda t: tape.logsumexp([t[0], t[1], t[2]]), (tape.Tensor(a),), (v,))
    softmax = np.exp(a) / np.exp(a).sum()
    assert value == pytest.approx(math.log(np.exp(a).sum())) and tangent == pytest.approx(softmax @ v)


@pytest.mark.parametrize("reduce, name", [(tape.sum, "sum"), (tape.logsumexp, "logsumexp"),
                                          (lambda xs: tape.dot(xs, [1.0, 1.0]), "dot")])
def test_the_scalar_reductions_name_what_is_not_a_number(reduce, name):
    with pytest.raises(TypeError, match=rf"^{name}\(\) takes Vars and numbers, got a str$"):
        reduce([1.0, "x"])
