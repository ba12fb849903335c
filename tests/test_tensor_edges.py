"""Matrix nodes (tape.Tensor) at their edges: zero adjoints meeting infinite partials, gradients
read by `tape.gradient`, 0-d and empty Tensors, memory a gradient or a value must not share,
non-finite and non-integer arguments, dtypes, and the transforms on Tensor functions. The
oracles are closed forms and numpy written here, and central differences."""
import math
import re

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


# -- 3: tape.gradient of Tensors, leaves and intermediates, of any shape -----------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 2), (0, 2)])
def test_gradient_of_tensor_leaves_and_intermediates(shape, dtype):
    a = RNG.uniform(0.5, 2.0, shape).astype(dtype)
    w = RNG.standard_normal(shape).astype(dtype)
    with Tape() as t:
        x = Tensor(a)
        h = x * x  # an intermediate (a Var if 0-d)
        z = tape.sin(h) * w
        y = z.sum() if isinstance(z, Tensor) else z
        before = len(t)
        gx, gh = tape.gradient(y, [x, h])
        assert len(t) == before  # nothing recorded
        np.testing.assert_allclose(gx, w * np.cos(a * a) * 2 * a, rtol=1e-5)
        np.testing.assert_allclose(gh, w * np.cos(a * a), rtol=1e-5)
        single = tape.gradient(y, x)
        assert np.shape(single) == shape and np.asarray(single).dtype == dtype
        np.testing.assert_allclose(single, gx, rtol=1e-6)
        assert len(t) == before


def test_gradient_mixes_vars_and_tensors_and_knows_what_came_after():
    with Tape():
        s, x = Var(2.0), Tensor([1.0, 3.0])
        y = (x * s).sum()
        later = Tensor([5.0])
        gs, gx, gl = tape.gradient(y, [s, x, later])
        assert gs == 4.0 and isinstance(gs, float)
        np.testing.assert_array_equal(gx, [2.0, 2.0])
        np.testing.assert_array_equal(gl, [0.0])
        np.testing.assert_array_equal(tape.gradient(y, [s]), [4.0])  # Vars only: one array, as before


def test_gradient_refuses_a_constant_tensor_and_another_tape():
    with Tape():
        x = Tensor([1.0, 2.0])
        y = (x * x).sum()
        with pytest.raises(ValueError, match="constant Tensor"):
            tape.gradient(y, Tensor([1.0], requires_grad=False))
    with Tape():
        other = Tensor([1.0])
    with pytest.raises(ValueError, match="another tape"):
        tape.gradient(y, other)


# -- 4: backward() of a 0-d Tensor ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_of_a_zero_d_leaf_gives_it_one(dtype):
    with Tape():
        x = Tensor(np.array(3.0, dtype))
        x.backward()
        assert x.grad == 1.0 and x.grad.dtype == dtype


def test_vjp_and_jacobian_of_a_zero_d_tensor_output():
    value, vjp_fn = tape.vjp(lambda x: x, [Tensor(3.0)])
    assert value == 3.0 and vjp_fn(np.array(2.5)) == (2.5,)
    assert tape.jacobian(lambda x: x)(Tensor(3.0)) == 1.0


# -- 5: no memory shared between gradients, nor with the caller's arrays ------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_are_their_own_arrays(dtype):
    with Tape():
        a, b, c = (Tensor(RNG.standard_normal(3).astype(dtype)) for _ in range(3))
        w = RNG.standard_normal(3).astype(dtype)
        s = a + b  # add passes one adjoint on to both operands
        (s * c * w).sum().backward()
        expected = (c.value * w).copy()
        ga = a.grad
        ga *= 0.5  # clipping one gradient...
        np.testing.assert_allclose(b.grad, expected)  # ...leaves the other alone
        np.testing.assert_allclose(s.grad, expected)
        assert a.grad is ga  # and is kept: the gradient itself was scaled
        np.testing.assert_allclose(a.grad, 0.5 * expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_a_gradient_scaled_and_replaced_in_place(shape, dtype):
    with Tape():
        a = Tensor(RNG.standard_normal(shape).astype(dtype))
        w = RNG.standard_normal(shape)
        y = a * w
        (y.sum() if shape else y).backward()  # a 0-d result is a Var
        a.grad *= 0.5  # the augmented assignment torch users write to clip or scale
        np.testing.assert_allclose(a.grad, 0.5 * w, rtol=1e-6)
        assert a.grad.dtype == dtype and a.grad.shape == shape
        a.grad = np.zeros(shape)
        assert (a.grad == 0).all() and a.grad.dtype == dtype
        with pytest.raises(ValueError, match=r"grad: expected an array of shape"):
            a.grad = np.zeros((4, 4))


def test_a_gradient_cannot_be_set_before_a_sweep_reaches_a_scalar_node():
    with Tape():
        a = Tensor(np.float64(2.0))
        with pytest.raises(ValueError, match="no gradient to replace"):
            a.grad = 1.0


def test_a_gradient_shares_no_memory_with_the_cotangent():
    cotangent = RNG.standard_normal(3)
    _, vjp_fn = tape.vjp(lambda x: x + 1.0, [Tensor(np.ones(3))])
    (g,) = vjp_fn(cotangent)
    g *= 0.0
    assert (cotangent != 0).all()


def test_tensor_copies_the_array_and_as_tensor_shares_it():
    x = np.array([1.0, 2.0])
    with Tape():
        W = Tensor([0.0, 0.0])
        X = Tensor(x, requires_grad=False)
        y = (W * X).sum()
        x[:] = 100.0  # a reused batch buffer, refilled before backward()
        y.backward()
        np.testing.assert_array_equal(W.grad, [1.0, 2.0])
        shared = tape.as_tensor(x)
        x[0] = 7.0
        assert shared.value[0] == 7.0 and shared.requires_grad
        assert tape.as_tensor(x, dtype=np.float32).dtype == np.float32  # another dtype: converted


# -- 14: the finiteness check of a broadcast view looks at its distinct entries --------------------


def test_a_huge_broadcast_is_checked_cheaply_and_refused_clearly_when_copied():
    huge = np.broadcast_to(0.5, (10**6, 10**6))
    with pytest.raises(MemoryError, match=r"Tensor\(value\): a copy of shape \(1000000, 1000000\).*as_tensor"):
        Tensor(huge)  # 8 TB: refused at once, not checked entry by entry
    view = tape.as_tensor(huge, requires_grad=False)
    assert view.shape == (10**6, 10**6)
    bad = np.broadcast_to(np.array([0.5, np.inf]), (10**6, 10**6, 2))
    with pytest.raises(ValueError, match=r"entry \(0, 0, 1\) is inf"):
        tape.as_tensor(bad)
    strided = np.arange(12.0).reshape(3, 4)[::2, ::-1]
    strided = np.where(strided == 9.0, np.nan, strided)[:, :]
    with pytest.raises(ValueError, match=r"entry \(1, 2\) is nan"):
        Tensor(strided)


# -- 8: a non-finite constant operand is refused, on either side, by every operation -------------------

BAD_CONSTANTS = [float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.array(np.inf), [1.0, np.nan], 10**400]
OPERATORS = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
             "truediv": lambda x, y: x / y, "pow": lambda x, y: x ** y}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("constant", BAD_CONSTANTS, ids=repr)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_a_non_finite_constant_operand_is_refused_on_either_side(name, constant, dtype):
    apply = OPERATORS[name]
    with Tape() as t:
        x = Tensor(np.array([1.0, 2.0], dtype))
        before = len(t)
        with pytest.raises(ValueError, match=rf"{name}: .*(finite|nan|inf)"):
            apply(x, constant)
        with pytest.raises(ValueError, match=rf"{name}: .*(finite|nan|inf)"):
            apply(constant, x)  # the reflected operator
        assert len(t) == before  # nothing recorded


@pytest.mark.parametrize("constant", BAD_CONSTANTS[:3], ids=repr)
def test_structural_operations_refuse_a_non_finite_constant(constant):
    with Tape():
        x = Tensor([1.0, 2.0])
        for name, call in [("stack", lambda: tape.stack([x[0], constant])), ("stack", lambda: tape.stack([constant, x[0]])),
                           ("concatenate", lambda: tape.concatenate([x, [constant]])),
                           ("matmul", lambda: x @ [1.0, constant]), ("matmul", lambda: [constant, 1.0] @ x),
                           ("mse", lambda: tape.mse(x, [1.0, constant]))]:
            with pytest.raises(ValueError, match=rf"{name}: .*(finite|nan|inf)"):
                call()


def test_finite_constants_of_every_kind_still_work_on_both_sides():
    with Tape():
        x = Tensor(np.array([1.0, 2.0], np.float32))
        for c in (2, 2.0, np.float32(2.0), np.array(2.0, np.float32), [2.0, 2.0], True):
            k = float(np.ravel(c)[0])
            np.testing.assert_array_equal((x * c).value, [k, 2 * k])
            np.testing.assert_array_equal((c / x).value, [k, k / 2])
            assert (x * c).dtype == np.result_type(x.value, np.asarray(c) if isinstance(c, list) else c)


# -- 16: errors name the operation and the entry, as the scalar path does --------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zero", [0.0, 0, np.float64(0.0), False])
def test_division_by_a_zero_constant_names_the_entry(zero, dtype):
    with Tape():
        x = Tensor(np.array([1.0, 2.0], dtype))
        with pytest.raises(ZeroDivisionError, match=r"entry \(0,\) of truediv on shape \(2,\): 1.0 / 0.0: float division by zero"):
            x / zero
        with pytest.raises(ZeroDivisionError, match=r"entry \(0,\) of truediv on shape \(2,\): 1.0 / 0.0"):
            x / Var(0.0)  # a Var's zero too
        with pytest.raises(ZeroDivisionError, match=r"entry \(1,\) of truediv on shape \(2,\): 3.0 / 0.0"):
            3.0 / Tensor(np.array([1.0, 0.0], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_error_of_an_entry_is_the_scalar_paths_and_pythons(dtype):
    import math

    for name, at, python in [("log", 0.0, math.log), ("log", -1.0, math.log), ("sqrt", -1.0, math.sqrt),
                             ("log1p", -1.0, math.log1p), ("exp", 1000.0, math.exp)]:
        with pytest.raises(Exception) as by_python:
            python(at)
        with pytest.raises(Exception) as by_var:
            getattr(tape, name)(Var(at))
        x = np.array([1.0, at], dtype)
        with Tape(), pytest.raises(Exception) as by_tensor:
            getattr(tape, name)(Tensor(x))
        assert by_tensor.type is by_var.type is by_python.type
        assert str(by_tensor.value) == f"entry (1,) of {name} on shape (2,): {by_var.value}"


# -- 16: axes and shape entries are integers; numpy's axis=None and empty index lists -----------------

NOT_INTEGERS = [0.7, 1.0, True, False, np.float64(1.0), "0"]


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_every_axis_argument_refuses_what_is_not_an_integer(bad):
    with Tape() as t:
        x = Tensor(RNG.standard_normal((2, 3)))
        before = len(t)
        calls = {"sum": lambda: x.sum(axis=bad), "mean": lambda: x.mean(axis=(0, bad)),
                 "logsumexp": lambda: x.logsumexp(axis=bad), "stack": lambda: tape.stack([x, x], axis=bad),
                 "concatenate": lambda: tape.concatenate([x, x], axis=bad), "transpose": lambda: x.transpose(bad, 0),
                 "reshape": lambda: x.reshape(bad, 6), "sum ": lambda: tape.sum(x, axis=bad)}
        for name, call in calls.items():
            with pytest.raises(TypeError, match=rf"{name.strip()}: .* must be an integer, got {re.escape(repr(bad))}"):
                call()
        assert len(t) == before


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_axes_of_every_kind_still_work(dtype):
    a = RNG.standard_normal((2, 3)).astype(dtype)
    with Tape():
        x = Tensor(a)
        for axis in (1, -1, np.int64(1), (0, 1), [0, -1], (np.int32(0),)):
            np.testing.assert_allclose(x.sum(axis=axis).value, a.sum(axis=tuple(np.atleast_1d(axis))), rtol=1e-6)
        np.testing.assert_array_equal(x.transpose(np.int64(1), 0).value, a.T)
        np.testing.assert_array_equal(x.reshape(np.int64(3), 2).value, a.reshape(3, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_concatenate_with_axis_none_flattens_as_numpy(dtype):
    a, b = RNG.standard_normal((2, 2)).astype(dtype), RNG.standard_normal(3).astype(dtype)
    w = RNG.standard_normal(4 + 3 + 1 + 2 + 1)
    with Tape():
        x, y, s = Tensor(a), Tensor(b), Var(2.5)
        z = tape.concatenate([x, y, s, [7.0, 8.0], Tensor(np.array(3.0, dtype))], axis=None)
        np.testing.assert_array_equal(z.value, np.concatenate([a, b, [2.5], [7.0, 8.0], [3.0]], axis=None))
        (z * w).sum().backward()
        np.testing.assert_allclose(x.grad, w[:4].reshape(2, 2), rtol=1e-6)
        np.testing.assert_allclose(y.grad, w[4:7], rtol=1e-6)
        assert s.grad == pytest.approx(w[7])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", [[], ([], ), np.array([], int)], ids=repr)
def test_an_empty_index_list_takes_nothing_as_numpy(index, dtype):
    a = RNG.standard_normal((3, 2)).astype(dtype)
    with Tape():
        x = Tensor(a)
        y = x[index]
        assert y.shape == a[np.array([], int)].shape == (0, 2) and y.dtype == dtype
        z = x[[2, 0]][[]]
        assert z.shape == (0, 2)
        (x.sum() + tape.concatenate([y.reshape(-1), x.reshape(-1)]).sum()).backward()
        np.testing.assert_array_equal(x.grad, np.full((3, 2), 2.0))


# -- 16: dtypes: float32 stays float32, other float dtypes are refused unless converted ---------------


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_other_float_dtypes_are_refused_unless_converted(dtype):
    a = np.array([1.0, 2.0], dtype)
    with pytest.raises(TypeError, match=rf"Tensor\(value\): an array of dtype {np.dtype(dtype)}; .*float32 or float64"):
        Tensor(a)
    with Tape():
        x = Tensor([1.0, 2.0])
        with pytest.raises(TypeError, match=f"mul: an operand: an array of dtype {np.dtype(dtype)}"):
            x * a
        with pytest.raises(TypeError, match=f"mul: a constant of dtype {np.dtype(dtype)}"):
            a[0] * x
    assert Tensor(a, dtype=np.float32).dtype == np.float32  # asked for: converted


def test_a_float32_leaf_gets_a_float32_gradient_whatever_its_operands():
    w = RNG.standard_normal(3)
    with Tape():
        x = Tensor(np.array([1.0, 2.0, 3.0], np.float32))
        y = x * w  # a float64 operand: the product is float64, as numpy makes it
        assert y.dtype == np.float64
        (tape.sin(y) * w).sum().backward()
        assert x.grad.dtype == np.float32
        np.testing.assert_allclose(x.grad, w * np.cos(x.value * w) * w, rtol=1e-6)


def test_stacking_zero_d_results_of_float32_tensors_stays_float32():
    a = RNG.standard_normal((2, 3)).astype(np.float32)
    w = RNG.standard_normal(2).astype(np.float32)
    with Tape():
        x = Tensor(a)
        s = tape.stack([x[0].sum(), x[1].sum()])
        assert s.dtype == np.float32
        mixed = tape.stack([x[0].sum(), Var(1.0)])  # with a float64 number: float64, as numpy stacks them
        assert mixed.dtype == np.float64
        (s * w).sum().backward()
        assert x.grad.dtype == np.float32
        np.testing.assert_allclose(x.grad, np.repeat(w[:, None], 3, axis=1))


def test_jvp_refuses_a_tangent_of_another_shape():
    f = lambda t: (t * t).sum()  # noqa: E731
    for tangent in (1.0, np.ones(3), np.ones((2, 1))):
        with pytest.raises(ValueError, match=rf"jvp: primal 0 has shape \(2,\) but its tangent has shape {re.escape(str(np.shape(tangent)))}"):
            tape.jvp(f, (Tensor([1.0, 2.0]),), (tangent,))
    v = RNG.standard_normal(2)
    assert tape.jvp(f, (Tensor([1.0, 2.0]),), (v,))[1] == pytest.approx(2 * (1.0 * v[0] + 2.0 * v[1]))


# -- 15: transforms of Tensor functions with structured outputs; constant Tensors in forward mode ------


def _central_jacobian(f, a, eps=1e-6):
    """The Jacobian of f (a function of a float64 array, returning an array) by central differences."""
    columns = []
    for j in range(a.size):
        d = np.zeros(a.size)
        d[j] = eps
        d = d.reshape(a.shape)
        columns.append((np.asarray(f(a + d)) - np.asarray(f(a - d))).ravel() / (2 * eps))
    return np.stack(columns, axis=-1).reshape(np.shape(f(a)) + a.shape)


def test_jacobian_and_jvp_of_a_tensor_function_with_a_tuple_output():
    a = RNG.uniform(0.5, 2.0, (2, 3))
    v = RNG.standard_normal((2, 3))
    f = lambda t: (tape.sin(t) * 2.0, (t * t).sum(), [t[0, 1], 3.0], {"row": t[1]})  # noqa: E731
    plain = (lambda x: np.sin(x) * 2.0, lambda x: (x * x).sum(), lambda x: [x[0, 1], 3.0], lambda x: x[1])
    jac = tape.jacobian(f)(Tensor(a))
    value, tangent = tape.jvp(f, (Tensor(a),), (v,))
    for got_jac, got_value, got_tangent, g in zip(
            (jac[0], jac[1], jac[2], jac[3]["row"]), (value[0], value[1], value[2], value[3]["row"]),
            (tangent[0], tangent[1], tangent[2], tangent[3]["row"]), plain):
        expected = _central_jacobian(g, a)
        np.testing.assert_allclose(got_jac, expected, atol=1e-7)
        np.testing.assert_allclose(got_value, g(a), rtol=1e-12)
        np.testing.assert_allclose(got_tangent, np.tensordot(expected, v, axes=2), atol=1e-7)
    assert isinstance(value[2], np.ndarray) and isinstance(value[3], dict)


def test_jacobian_of_an_empty_tensor_output():
    jac = tape.jacobian(lambda t: t[[]])(Tensor([1.0, 2.0]))
    assert jac.shape == (0, 2)


C = Tensor([1.5, -2.0], requires_grad=False)


def test_forward_mode_over_a_constant_tensor():
    f = lambda x: tape.sum(tape.sin(C * x) + x / C)  # noqa: E731
    a, v = np.array([0.3, 0.7]), RNG.standard_normal(2)
    value, tangent = tape.jvp(f, (a,), (v,))
    derivative = np.cos(C.value * a) * C.value + 1 / C.value  # closed form, entry by entry
    assert value == pytest.approx(np.sum(np.sin(C.value * a) + a / C.value))
    assert tangent == pytest.approx(derivative @ v)
    tape.check_grads(f, a)
    second = tape.grad(tape.grad(lambda x: (C * x * x).sum() + (C @ np.array([x, x])) ** 2))(1.5)
    assert second == pytest.approx(2 * C.value.sum() + 2 * C.value.sum() ** 2)


def test_a_tensor_node_in_forward_mode_is_refused_by_name():
    x = Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=r"mul: a Tensor node and a scalar Dual of forward mode: give the transform the Tensors as arguments"):
        tape.jvp(lambda s: (x * s).sum(), (1.0,), (1.0,))
    with pytest.raises(TypeError, match="an array of Vars .* tape.stack"):
        tape.grad(lambda s: (x * s).sum())(np.array([1.0, 2.0]))


@pytest.mark.parametrize("reduce", [tape.sum, tape.logsumexp, lambda xs: tape.dot(xs, [1.0, 1.0])])
def test_the_scalar_reductions_refuse_tensors_by_name(reduce):
    with Tape():
        with pytest.raises(TypeError, match=r"\(\) takes Vars and numbers, got a Tensor: a Tensor reduces itself"):
            reduce([Tensor([1.0]), Tensor([2.0])])
        with pytest.raises(TypeError, match="got a Tensor"):
            reduce([Var(1.0), Tensor([2.0])])


def test_a_gradient_read_then_rewound_is_not_read_again_by_a_new_node():
    with Tape() as t:
        mark = t.mark()
        x = Tensor([1.0, 2.0])
        (x * x).sum().backward()
        np.testing.assert_array_equal(x.grad, [2.0, 4.0])
        t.rewind(mark)
        z = Tensor([5.0, 6.0])  # the same node index as x had
        np.testing.assert_array_equal(z.grad, [0.0, 0.0])


def test_shapes_and_axes_given_as_arrays_still_work():
    a = RNG.standard_normal((2, 3))
    with Tape():
        x = Tensor(a)
        np.testing.assert_array_equal(x.reshape(np.array([3, 2])).value, a.reshape(3, 2))
        np.testing.assert_array_equal(x.transpose(np.array([1, 0])).value, a.T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_jacobian_has_the_leafs_dtype_and_a_jvp_the_outputs(dtype):
    x = RNG.standard_normal(3).astype(dtype)
    t = RNG.standard_normal(3)
    mixed = lambda v: tape.stack([tape.mse(v, np.zeros(3)), 1.0])  # a Var (float64) stacked: a float64 output
    jac = tape.jacobian(tape.sin)(Tensor(x))
    assert jac.dtype == dtype
    np.testing.assert_allclose(jac, np.diag(np.cos(x.astype(np.float64))), rtol=1e-6)
    assert tape.jacobian(mixed)(Tensor(x)).dtype == dtype
    _, tangent = tape.jvp(tape.sin, [Tensor(x)], [t])
    assert tangent.dtype == dtype
    np.testing.assert_allclose(tangent, np.cos(x.astype(np.float64)) * t, rtol=1e-6)
    _, tangent = tape.jvp(mixed, [Tensor(x)], [t])
    assert tangent.dtype == np.float64
    np.testing.assert_allclose(tangent, [np.dot(2 * x.astype(np.float64) / 3, t), 0.0], rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape, b_shape", [((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5))])
def test_matmul_refuses_three_axes_even_where_numpy_would_stack(a_shape, b_shape, dtype):
    a, b = Tensor(np.ones(a_shape, dtype)), Tensor(np.ones(b_shape, dtype))
    with Tape(), pytest.raises(ValueError, match="matmul: operands must have 1 or 2 axes"):
        a @ b


def test_jvp_keeps_the_dtypes_recording_gives_a_float32_programs_results_without_axes():
    """A result without axes is a Var (float64 from there on) when recorded; forward mode's too, so a
    jvp's value and tangent have the dtypes a recording's value has (the fuzz's seed 0 program 37)."""
    def f(b):
        v = tape.cos(-1.8 - b)  # sub of a 0-d float32 leaf, then a scalar function of the Var it gives
        return tape.stack([v, v * v])

    b = np.array(-1.5, np.float32)
    recorded = f(tape.Tensor(b))
    value, tangent = tape.jvp(f, (tape.Tensor(b),), (np.array(2.0, np.float32),))
    c, s = math.cos(-1.8 - float(b)), math.sin(-1.8 - float(b))  # d/db cos(-1.8 - b) = sin(-1.8 - b)
    assert recorded.dtype == value.dtype == tangent.dtype == np.float64
    np.testing.assert_allclose(value, [c, c * c], rtol=1e-6)
    np.testing.assert_allclose(tangent, [2 * s, 2 * 2 * c * s], rtol=1e-6)


def test_jvp_keeps_float32_where_recording_does_a_loss_stacked_beside_a_0d_leaf():
    """A float32 loss without axes stacked beside a 0-d float32 leaf stays float32 when recorded,
    and in forward mode too (the fuzz's seed 0 program 13)."""
    x, t = np.array([0.5, -1.0], np.float32), np.array([1.0, 2.0], np.float32)
    c = np.array(-1.25, np.float32)

    def f(x, c):
        return tape.stack([tape.mse(x, t), c])

    recorded = f(tape.Tensor(x), tape.Tensor(c))
    value, tangent = tape.jvp(f, (tape.Tensor(x), tape.Tensor(c)), (np.ones(2, np.float32), np.array(3.0, np.float32)))
    assert recorded.dtype == value.dtype == tangent.dtype == np.float32
    np.testing.assert_allclose(value, [((x - t) ** 2).mean(), c], rtol=1e-6)
    np.testing.assert_allclose(tangent, [(2 * (x - t)).mean(), 3.0], rtol=1e-6)  # d mse along ones: mean 2(x - t)


def test_jvp_of_a_result_without_axes_and_a_0d_array_constant_is_float64_as_recorded():
    """A float32 result without axes divided by a 0-d array constant is a Var's arithmetic when
    recorded (float64); in forward mode too (the fuzz's seed 0 program 789)."""
    a, c = np.array(2.0, np.float32), np.array(1.5, np.float32)

    def f(a):
        return tape.stack([tape.log1p(a) / c, a])

    recorded = f(tape.Tensor(a))
    value, tangent = tape.jvp(f, (tape.Tensor(a),), (np.array(1.0, np.float32),))
    assert recorded.dtype == value.dtype == tangent.dtype == np.float64
    np.testing.assert_allclose(tangent, [1 / (1 + 2.0) / 1.5, 1.0], rtol=1e-6)  # d/da log1p(a) / c = 1 / ((1 + a) c)
