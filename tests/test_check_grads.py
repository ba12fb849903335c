"""tape.check_grads: right derivatives pass, wrong or nan ones (reverse mode, forward mode, the
Hessian) are caught and named, the tolerance is |a - b| <= atol + rtol |b|."""
import math
import re

import numpy as np
import pytest

import tape

X0 = 0.7


def sine_told(reverse=math.cos, forward=tape.cos):
    """sin, with the derivative the engine is told: a node recorded with the partial
    reverse(x) when x is a Var, a tangent forward(x) times x's when x is a Dual (forward(x) is
    recorded in turn when x's value is a Var: the Hessian); on numbers, math.sin."""
    def f(x):
        if isinstance(x, tape.Dual):
            return tape.Dual(tape.sin(x.value), forward(x.value) * x.tangent, x.tag)
        if isinstance(x, tape.Var):
            return tape.record(math.sin(x.value), [x], [reverse(x.value)], op="sine_told")
        return math.sin(x)

    return f


def test_right_derivatives_pass_at_every_order():
    tape.check_grads(sine_told(), X0, order=2)
    tape.check_grads(lambda x: tape.exp(3.0 * x), 1.0, order=2)  # curved: a one-sided difference would be off by 1e-4
    f = lambda x, s, w: tape.sum(tape.tanh(x * s)) * s + tape.dot(w, w) / s  # noqa: E731
    tape.check_grads(f, np.array([0.3, -1.2, 2.0]), 1.5, np.array([[0.5, -0.25], [1.0, 2.0]]).ravel(), order=2, directions=5)


@pytest.mark.parametrize("told, what", [
    (dict(reverse=lambda x: math.nan), "reverse mode (d . grad f) is nan"),
    (dict(forward=lambda x: math.nan * x), "forward mode (jvp along d) is nan"),
    (dict(reverse=lambda x: -math.cos(x), forward=lambda x: math.nan * x), "forward mode (jvp along d) is nan"),  # the worst
])
def test_an_engine_derivative_that_is_nan_fails_and_says_so(told, what):
    with pytest.raises(tape.GradientCheckError, match=r"check_grads\(f\): along direction \d+ \(d = \[.*\]\), " + re.escape(what)) as info:
        tape.check_grads(sine_told(**told), X0)
    assert re.search(r"but the central difference \(eps=1e-06\) gives -?0\.764842187", str(info.value))  # +-cos(X0)


@pytest.mark.parametrize("told, what", [
    (dict(reverse=lambda x: -math.cos(x)), "reverse mode"),
    (dict(forward=lambda x: -tape.cos(x)), "forward mode"),
    (dict(forward=lambda x: tape.cos(x) + 0.01 * (x - X0)), "the Hessian along d (hvp), entry 0"),  # right at X0, its derivative not
])
def test_a_wrong_derivative_of_any_order_is_caught_and_named(told, what):
    f = sine_told(**told)
    if "Hessian" in what:
        tape.check_grads(f, X0)  # the first derivatives are right
    with pytest.raises(tape.GradientCheckError, match=re.escape(what)):
        tape.check_grads(f, X0, order=2)


def test_the_tolerance_is_relative_to_the_central_difference():
    """An engine derivative twice the true one: |a - b| = |b|, which rtol 0.6 of |b| does not
    cover and rtol 0.6 of |a| would; an absolute error of 5e-7 passes atol 1e-6, 5e-6 does not."""
    double = sine_told(reverse=lambda x: 2 * math.cos(x), forward=lambda x: 2 * tape.cos(x))
    with pytest.raises(tape.GradientCheckError, match="rtol=0.6, atol=0"):
        tape.check_grads(double, X0, rtol=0.6, atol=0.0)
    tape.check_grads(double, X0, rtol=1.01, atol=0.0)
    for error, passes in ((5e-7, True), (5e-6, False)):
        off = sine_told(reverse=lambda x: math.cos(x) + error, forward=lambda x: tape.cos(x) + error)
        if passes:
            tape.check_grads(off, X0, rtol=0.0, atol=1e-6)
        else:
            with pytest.raises(tape.GradientCheckError):
                tape.check_grads(off, X0, rtol=0.0, atol=1e-6)


def test_order_must_be_1_or_2():
    with pytest.raises(ValueError, match="order must be 1 or 2, got 3"):
        tape.check_grads(tape.sin, X0, order=3)


def test_an_exact_match_passes_a_tolerance_of_zero():
    tape.check_grads(lambda x: x * 1.0, 0.0, rtol=0.0, atol=0.0)  # both give d exactly: |a - b| = 0 <= 0


def test_the_defaults_three_directions_seed_0_and_the_tolerance_are_as_documented():
    calls = []

    def f(x, y):
        if not isinstance(x, (tape.Var, tape.Dual)):
            calls.append(x)  # the central differences' evaluations: two a direction
        return sine_told(reverse=lambda x: 2 * math.cos(x))(x) + y

    with pytest.raises(tape.GradientCheckError) as default:
        tape.check_grads(f, X0, 0.5)
    assert len(calls) == 2 * 3 and "eps=1e-06" in str(default.value) and "rtol=1e-05, atol=1e-06" in str(default.value)
    with pytest.raises(tape.GradientCheckError) as explicit:
        tape.check_grads(f, X0, 0.5, directions=3, eps=1e-6, rtol=1e-5, atol=1e-6, seed=0)
    assert str(explicit.value) == str(default.value)
    with pytest.raises(tape.GradientCheckError) as other:
        tape.check_grads(f, X0, 0.5, seed=1)
    assert str(other.value) != str(default.value)


def test_the_message_names_the_worst_direction():
    """The engine's gradient is off by 1 in x only: along d it is off by d_x. With 1, 2, ...
    directions of the same seed, the direction named is the one with the largest |d_x| so far."""
    off = lambda x: math.cos(x) + 1.0  # noqa: E731
    f = lambda x, y: sine_told(reverse=off, forward=lambda v: tape.cos(v) + 1.0)(x) + y * y  # noqa: E731
    named = []
    for n in range(1, 7):
        with pytest.raises(tape.GradientCheckError) as info:
            tape.check_grads(f, X0, 0.5, directions=n, seed=3)
        d = [float(v) for v in re.search(r"d = \[([^\]]*)\]", str(info.value)).group(1).split()]
        named.append(abs(d[0]))
    assert named == sorted(named) and named[-1] > named[0]


def test_near_the_edge_of_the_domain_the_step_shrinks_and_still_catches_a_wrong_derivative():
    """sqrt at 1e-7: x - eps is outside its domain. The check shrinks its step and passes the
    right derivative (0.5 / sqrt(x) = 1581.1...); a derivative off by 1 (stop_gradient hides
    the x term from the engine) still fails, and the message gives the step used."""
    tape.check_grads(tape.sqrt, 1e-7)
    tape.check_grads(tape.log, 1e-9, order=2)
    with pytest.raises(tape.GradientCheckError, match=r"is 1581\.13.* but the central difference \(eps=1e-10\) gives 1582\.13"):
        tape.check_grads(lambda x: tape.sqrt(x) + tape.stop_gradient(x), 1e-7)


def test_a_point_on_the_edge_is_refused_saying_why():
    with pytest.raises(ValueError, match=r"check_grads\(sqrt\): f cannot be evaluated on both sides .* math domain error"):
        tape.check_grads(tape.sqrt, 0.0)
    with pytest.raises(ValueError, match="not finite there"):
        tape.check_grads(lambda x: tape.log(x) if x > 0 else float("nan"), 0.0)


@pytest.mark.parametrize("directions", [0, -1, 2.5, True, None])
def test_directions_below_one_or_not_an_integer_are_refused(directions):
    with pytest.raises(ValueError, match=f"directions must be a positive integer .* got {directions!r}"):
        tape.check_grads(lambda x: x * 2.0, 1.0, directions=directions)


@pytest.mark.parametrize("eps", [0.0, -1e-6, float("nan")])
def test_a_step_that_is_not_positive_is_refused(eps):
    with pytest.raises(ValueError, match="eps must be a positive step"):
        tape.check_grads(lambda x: x * 2.0, 1.0, eps=eps)


def test_a_function_of_tensors_is_checked_in_both_modes():
    x = np.array([[0.3, -1.2], [0.8, 2.0]])
    tape.check_grads(lambda t: (tape.sin(t) * t).sum(), tape.Tensor(x), order=2)
