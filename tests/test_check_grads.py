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
