"""Derivatives of functions of structures (dicts, lists, tuples, named tuples, dataclasses) equal
those of the same function written on one flat vector, for every transform. The test flattens
by its own walker (`entries`), never by the engine's tape/_tree.py."""
import collections
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape

Pair = collections.namedtuple("Pair", "left right")


@dataclasses.dataclass
class Box:
    inside: object
    scale: object


def entries(x) -> list:
    """Every number of x, leaves in order (dict order, fields in order), arrays row-major."""
    if isinstance(x, dict):
        return [e for k in x for e in entries(x[k])]
    if dataclasses.is_dataclass(x):
        return [e for f in dataclasses.fields(x) for e in entries(getattr(x, f.name))]
    if isinstance(x, (list, tuple)):
        return [e for v in x for e in entries(v)]
    if isinstance(x, np.ndarray):
        return list(x.ravel())
    return [x]


def shaped_like(x, numbers: list):
    """x with its numbers replaced by `numbers`, in the order `entries` reads them."""
    it = iter(numbers)

    def rebuild(v):
        if isinstance(v, dict):
            return {k: rebuild(w) for k, w in v.items()}
        if isinstance(v, Pair):
            return Pair(*(rebuild(w) for w in v))
        if isinstance(v, Box):
            return Box(rebuild(v.inside), rebuild(v.scale))
        if isinstance(v, list):
            return [rebuild(w) for w in v]
        if isinstance(v, tuple):
            return tuple(rebuild(w) for w in v)
        if isinstance(v, np.ndarray):
            return np.array([next(it) for _ in range(v.size)], dtype=float).reshape(v.shape)
        return next(it)

    return rebuild(x)


def same(a, b) -> None:
    """a and b have the same structure (containers and leaf kinds) and the same numbers."""
    assert type(a) is type(b) or (isinstance(a, float) and isinstance(b, float)), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, Box):
        same(a.inside, b.inside), same(a.scale, b.scale)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for v, w in zip(a, b):
            same(v, w)
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    else:
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (a, b)


numbers = st.floats(-2.0, 2.0, allow_nan=False)
arrays = st.integers(1, 3).flatmap(lambda n: st.lists(numbers, min_size=n, max_size=n).map(np.array))


def containers(children):
    def not_only_numbers(values):  # a list or tuple of numbers alone is one array leaf
        return values if any(not isinstance(v, float) for v in values) else [np.array(values[:1]), *values[1:]]

    return st.one_of(
        st.dictionaries(st.sampled_from("abcd"), children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(not_only_numbers),
        st.lists(children, min_size=1, max_size=3).map(lambda v: tuple(not_only_numbers(v))),
        st.tuples(children, children).map(lambda p: Pair(*p)),
        st.tuples(children, children).map(lambda p: Box(*p)),
    )


structures = containers(st.recursive(st.one_of(numbers, arrays), containers, max_leaves=6))


def on_entries(e: list):
    """The function on the numbers: sum_k (k+1) sin(e_k) + e_0 e_last (second derivatives
    off the diagonal too)."""
    return sum((k + 1) * tape.sin(v) for k, v in enumerate(e)) + e[0] * e[-1]


def f(structure):
    return on_entries(entries(structure))


def flat_f(v):
    return on_entries(list(v))


def two_outputs(structure):
    e = entries(structure)
    return {"total": on_entries(e), "first": [e[0] * 2.0, tape.sin(e[-1])]}


def flat_two_outputs(v):
    return [on_entries(list(v)), v[0] * 2.0, tape.sin(v[-1])]


@settings(max_examples=40, deadline=None)
@given(structures)
def test_grad_and_value_and_grad_equal_the_flat_functions(structure):
    flat = np.array(entries(structure), dtype=float)
    value, g = tape.value_and_grad(f)(structure)
    flat_value, flat_g = tape.value_and_grad(flat_f)(flat)
    assert value == flat_value
    same(g, shaped_like(structure, list(flat_g)))
    same(tape.grad(f)(structure), g)


@settings(max_examples=25, deadline=None)
@given(structures, st.data())
def test_jvp_vjp_and_hvp_equal_the_flat_functions(structure, data):
    flat = np.array(entries(structure), dtype=float)
    direction = np.array(data.draw(st.lists(numbers, min_size=flat.size, max_size=flat.size)))
    tangent = shaped_like(structure, list(direction))

    value, derivative = tape.jvp(two_outputs, (structure,), (tangent,))
    flat_value, flat_derivative = tape.jvp(flat_two_outputs, (flat,), (direction,))
    same(value, {"total": flat_value[0], "first": flat_value[1:]})
    same(derivative, {"total": flat_derivative[0], "first": flat_derivative[1:]})

    value, pullback = tape.vjp(two_outputs, (structure,))
    _, flat_pullback = tape.vjp(flat_two_outputs, (flat,))
    (cotangent_in,) = pullback({"total": 1.5, "first": np.array([-1.0, 2.0])})
    (flat_cotangent_in,) = flat_pullback(np.array([1.5, -1.0, 2.0]))
    same(cotangent_in, shaped_like(structure, list(flat_cotangent_in)))

    same(tape.hvp(f, structure, tangent), shaped_like(structure, list(tape.hvp(flat_f, flat, direction))))


@settings(max_examples=20, deadline=None)
@given(structures)
def test_jacobian_and_hessian_are_the_flat_ones_in_blocks(structure):
    flat = np.array(entries(structure), dtype=float)
    n = flat.size
    hessian = tape.hessian(f)(structure)
    flat_hessian = tape.hessian(flat_f)(flat)
    # hessian[leaf i][leaf j] has leaf i's shape + leaf j's: its entries, row-major, are the
    # flat Hessian's rows of leaf i's entries and columns of leaf j's
    sizes = [np.size(leaf) for leaf in leaf_list(structure)]
    offsets = np.cumsum([0] + sizes)
    outer = at_leaves(structure, hessian)
    assert len(outer) == len(sizes)
    for i, row_structure in enumerate(outer):
        inner = at_leaves(structure, row_structure)
        assert len(inner) == len(sizes)
        for j, block in enumerate(inner):
            expected = flat_hessian[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]]
            np.testing.assert_allclose(np.reshape(block, expected.shape), expected, rtol=1e-12, atol=1e-12)
    jac = tape.jacobian(two_outputs)(structure)
    flat_jac = tape.jacobian(flat_two_outputs)(flat)
    np.testing.assert_allclose(np.concatenate([np.ravel(b) for b in at_leaves(structure, jac["total"])]), flat_jac[0], rtol=1e-12, atol=1e-12)
    first = np.concatenate([np.reshape(b, (2, -1)) for b in at_leaves(structure, jac["first"])], axis=1)
    np.testing.assert_allclose(first, flat_jac[1:], rtol=1e-12, atol=1e-12)
    assert n == offsets[-1]


def at_leaves(template, value) -> list:
    """What `value` holds where `template` has its leaves (numbers and arrays), in order."""
    if isinstance(template, dict):
        return [v for k in template for v in at_leaves(template[k], value[k])]
    if dataclasses.is_dataclass(template):
        return [v for f in dataclasses.fields(template) for v in at_leaves(getattr(template, f.name), getattr(value, f.name))]
    if isinstance(template, (list, tuple)):
        return [v for t, w in zip(template, value) for v in at_leaves(t, w)]
    return [value]


def leaf_list(x) -> list:
    """The leaves of an argument structure, in order."""
    return at_leaves(x, x)


@settings(max_examples=15, deadline=None)
@given(structures)
def test_check_grads_and_traced_functions_take_structures(structure):
    flat = np.array(entries(structure), dtype=float)
    tape.check_grads(f, structure, order=2)
    traced = tape.trace(f, structure)
    assert traced(structure) == pytest.approx(flat_f(flat), rel=1e-12)
    same(traced.grad()(structure), shaped_like(structure, list(tape.grad(flat_f)(flat))))
    value, g = traced.value_and_grad()(structure)
    assert value == pytest.approx(flat_f(flat), rel=1e-12)
    moved = shaped_like(structure, list(flat * 0.5))
    same(traced.grad()(moved), shaped_like(structure, list(tape.grad(flat_f)(flat * 0.5))))


def test_unsupported_leaves_are_refused_naming_the_path():
    p = {"layers": [np.zeros(2), 1.0, "relu"], "b": 1.0}
    with pytest.raises(TypeError, match=r"argument 0 at \['layers'\]\[2\] is a str"):
        tape.grad(lambda p: p["b"])(p)
    with pytest.raises(TypeError, match=r"argument 1 at \.left is a object"):
        tape.grad(lambda a, q: a, argnums=(0, 1))(1.0, Pair(object(), 1.0))
    with pytest.raises(TypeError, match=r"\['w'\]\.scale is a NoneType"):
        tape.jvp(lambda p: p["w"].inside, ({"w": Box(1.0, None)},), ({"w": Box(1.0, None)},))


def test_a_structure_that_changes_is_refused_by_name():
    traced = tape.trace(lambda p: p["w"] * p["b"], {"w": 2.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"dict\('w': scalar, 'c': scalar\), expected dict\('w': scalar, 'b': scalar\)"):
        traced({"w": 2.0, "c": 1.0})
    with pytest.raises(ValueError, match=r"tangent 0 has the structure dict\('w': scalar\)"):
        tape.jvp(lambda p: p["w"] * p["b"], ({"w": 2.0, "b": 1.0},), ({"w": 1.0},))
    with pytest.raises(ValueError, match=r"cotangent has the structure"):
        tape.vjp(lambda p: {"y": p["w"]}, ({"w": 2.0},))[1]({"z": 1.0})


def test_the_issue_example_and_a_gradient_in_the_arguments_structure():
    assert tape.grad(lambda p: p["w"] * p["w"] + p["b"])({"w": 2.0, "b": 1.0}) == {"w": 4.0, "b": 1.0}
    g = tape.grad(lambda a, p: a * p.left[1] * p.right, argnums=(0, 1))(3.0, Pair((1.0, np.array([2.0])), 5.0))
    same(g[1], Pair((0.0, np.array([15.0])), 6.0))
    assert g[0] == 10.0
    assert tape.grad(lambda x: x[0] * x[1])([3.0, 4.0]).tolist() == [4.0, 3.0]  # numbers alone: an array, as before


# A top-level tuple or list that holds a list: a structure, not an array (issue 30). For
# a, (b, c) = t: g = a^2 b + b c^3, whose derivatives are written out here.
NESTED = (2.0, [3.0, 4.0])  # a, b, c
NESTED_DIRECTION = (1.0, [0.5, -1.0])


def g_nested(t):
    a, (b, c) = t[0], t[1]
    return a**2 * b + b * c**3


def test_a_tuple_holding_a_list_is_a_structure_for_grad_and_value_and_grad():
    result = tape.grad(lambda t: t[0] * t[1][0] - t[1][1])((2.0, [3.0, 4.0]))  # the issue's example
    same(result, (3.0, np.array([2.0, -1.0])))
    value, derivative = tape.value_and_grad(g_nested)(NESTED)
    assert value == 2.0**2 * 3.0 + 3.0 * 4.0**3
    same(derivative, (2 * 2.0 * 3.0, np.array([2.0**2 + 4.0**3, 3 * 3.0 * 4.0**2])))  # (2ab, [a^2 + c^3, 3bc^2])
    same(tape.grad(lambda s, t: s * t[1][1] ** 2, argnums=(0, 1))(2.0, [1.0, [3.0, 4.0]]),
         (16.0, [0.0, np.array([0.0, 16.0])]))
    same(tape.grad(lambda t: t[1][0] * t[0])([2.0, [3.0, 4.0]]), [3.0, np.array([2.0, 0.0])])


def test_a_ragged_list_is_a_structure_and_a_rectangular_one_stays_an_array():
    ragged = tape.grad(lambda x: x[0][0] * x[0][1] * x[1][0])([[1.0, 2.0], [3.0]])
    same(ragged, [np.array([2.0 * 3.0, 1.0 * 3.0]), np.array([1.0 * 2.0])])
    rectangular = tape.grad(lambda x: x[0][0] * x[1][1])([[1.0, 2.0], [3.0, 4.0]])
    same(rectangular, np.array([[4.0, 0.0], [0.0, 1.0]]))
    same(tape.grad(lambda x: x[0][1] * x[1][0])(((1.0, 2.0), (3.0, 4.0))), np.array([[0.0, 3.0], [2.0, 0.0]]))


def test_jvp_vjp_and_jacobian_on_a_tuple_holding_a_list():
    value, derivative = tape.jvp(g_nested, (NESTED,), (NESTED_DIRECTION,))
    assert (value, derivative) == (204.0, 12.0 * 1.0 + 68.0 * 0.5 + 144.0 * -1.0)  # the gradient . direction
    value, pullback = tape.vjp(lambda t: [t[0] * t[1][0], t[1][1]], (NESTED,))
    same(value, np.array([6.0, 4.0]))
    same(pullback(np.array([2.0, -1.0])), ((2.0 * 3.0, np.array([2.0 * 2.0, -1.0])),))  # (u0 b, [u0 a, u1])

    def h(t):
        return [t[0] * t[1][0], t[1][1] ** 2, t[0] + t[1][1]]

    for mode in ("forward", "reverse"):
        by_a, by_bc = tape.jacobian(h, mode=mode)(NESTED)  # rows [ab, c^2, a + c], columns a; (b, c)
        same(by_a, np.array([3.0, 0.0, 1.0]))
        same(by_bc, np.array([[2.0, 0.0], [0.0, 8.0], [0.0, 1.0]]))


def test_hessian_and_hvp_on_a_tuple_holding_a_list():
    # rows a, b, c: [2b, 2a, 0], [2a, 0, 3c^2], [0, 3c^2, 6bc] at a, b, c = 2, 3, 4
    full = np.array([[6.0, 4.0, 0.0], [4.0, 0.0, 48.0], [0.0, 48.0, 72.0]])
    (aa, a_bc), (bc_a, bc_bc) = tape.hessian(g_nested)(NESTED)
    same(aa, full[0, 0])
    same(a_bc, full[0, 1:])
    same(bc_a, full[1:, 0])
    same(bc_bc, full[1:, 1:])
    product = full @ np.array([1.0, 0.5, -1.0])
    same(tape.hvp(g_nested, NESTED, NESTED_DIRECTION), (product[0], product[1:]))
    tape.check_grads(g_nested, NESTED, order=2)


def test_a_bad_leaf_in_a_tuple_holding_a_list_is_refused_naming_its_path():
    with pytest.raises(TypeError, match=r"argument 0 at \[1\]\[1\] is a str"):
        tape.grad(lambda t: t[0])((2.0, [3.0, "a"]))
    with pytest.raises(TypeError, match=r"argument 0 at \[1\]\[1\]\[0\] is a NoneType"):
        tape.hessian(lambda t: t[0])([2.0, [3.0, [None]]])
    with pytest.raises(ValueError, match=r"tangent 0 has the structure tuple\[scalar, \(3,\)\], expected tuple\[scalar, \(2,\)\]"):
        tape.jvp(g_nested, (NESTED,), ((1.0, [0.5, -1.0, 2.0]),))


def array_shape(x):
    """The shape numpy would give x if x is numbers alone, nested to a rectangle, else None
    (the test's own statement of the rule: such a list is one array leaf)."""
    if isinstance(x, float):
        return ()
    shapes = [array_shape(v) for v in x]
    if any(s is None for s in shapes) or len(set(shapes)) != 1:
        return None
    return (len(x),) + shapes[0]


def shaped_as_the_rule_says(x, derivative) -> None:
    """derivative has x's structure, with an array of its shape where x is a rectangle of numbers."""
    if isinstance(x, float):
        assert isinstance(derivative, float)
    elif array_shape(x) is not None:
        assert isinstance(derivative, np.ndarray) and derivative.shape == array_shape(x)
    else:
        assert type(derivative) is type(x) and len(derivative) == len(x)
        for v, d in zip(x, derivative):
            shaped_as_the_rule_says(v, d)


nested_numbers = st.recursive(
    numbers, lambda children: st.one_of(st.lists(children, min_size=1, max_size=3),
                                        st.lists(children, min_size=1, max_size=3).map(tuple)), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(nested_numbers, min_size=1, max_size=3).map(tuple))
def test_nested_lists_of_numbers_are_arrays_when_rectangular_and_structures_otherwise(nested):
    flat = np.array(entries(nested), dtype=float)
    derivative = tape.grad(f)(nested)
    shaped_as_the_rule_says(nested, derivative)
    np.testing.assert_allclose(entries(derivative), tape.grad(flat_f)(flat), rtol=1e-12, atol=1e-12)
    direction = np.linspace(-1.0, 1.0, flat.size)
    product = tape.hvp(f, nested, shaped_like(nested, list(direction)))
    np.testing.assert_allclose(entries(product), tape.hvp(flat_f, flat, direction), rtol=1e-12, atol=1e-12)
