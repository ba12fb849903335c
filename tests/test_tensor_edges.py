"""Matrix nodes (tape.Tensor) at their edges: zero adjoints meeting infinite partials, gradients
read by `tape.gradient`, 0-d and empty Tensors, memory a gradient or a value must not share,
non-finite and non-integer arguments, dtypes, and the transforms on Tensor functions. The
oracles are closed forms and numpy written here, and central differences."""
import numpy as np
import pytest

import tape
from tape import Tape, Tensor, Var

RNG = np.random.default_rng(1)
DTYPES = [np.float32, np.float64]


# -- 2: a zero adjoint times an infinite partial is 0, not nan -------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_sqrt_of_relu_has_derivative_zero_where_relu_is_flat(dtype):
    x = np.array([-2.0, -0.5, 0.25, 4.0], dtype)
    weights = RNG.standard_normal(4).astype(dtype)
    with Tape():
        t = Tensor(x)
        (tape.sqrt(tape.relu(t)) * weights).sum().backward()
        expected = np.where(x > 0, weights * 0.5 / np.sqrt(np.maximum(x, 1e-30)), 0.0)
        assert t.grad.dtype == dtype
        np.testing.assert_allclose(t.grad, expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make, at_nine", [
    (lambda r: tape.sqrt(r), 0.5 / 3),  # sqrt's partial at 0 is inf
    (lambda r: r ** 0.5, 0.5 / 3),  # pow's partial in a at 0 is inf
    (lambda r: tape.sqrt(r) / (r + 1.0), 0.5 / 3 / 10 - 3 / 100),  # the quotient's adjoint reaches sqrt
    (lambda r: r ** Tensor([0.5], requires_grad=False), 0.5 / 3),  # a constant Tensor exponent
])
def test_an_infinite_partial_meeting_a_zero_adjoint_adds_nothing(make, at_nine, dtype):
    x = np.array([-1.0, 0.0, 9.0], dtype)
    with Tape():
        t = Tensor(x)
        make(tape.relu(t)).sum().backward()  # relu's adjoint is 0 at x <= 0: the infinite partial meets it
        np.testing.assert_allclose(t.grad, [0.0, 0.0, at_nine], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_zero_adjoint_from_a_constant_factor_of_zero(dtype):
    """sqrt at 0 times the constant 0 (both operand sides): the adjoint 0 meets sqrt's infinite partial."""
    for product in (lambda s: s * 0.0, lambda s: 0.0 * s, lambda s: s * np.zeros(2, dtype)):
        with Tape():
            t = Tensor(np.array([0.0, 1.0], dtype))
            product(tape.sqrt(t)).sum().backward()
            np.testing.assert_array_equal(t.grad, [0.0, 0.0])
