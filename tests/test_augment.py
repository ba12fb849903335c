"""Augmentation: the warp's geometry against slices and rotations written here, the elastic
field against numpy's convolution, and the random draws (the same for the same key, whatever
the number of threads)."""
import math
import re

import numba
import numpy as np
import pytest

from mlp.augment import SIDE, Augment, _gaussian, smoothed_field, uniform, warp

NO_FIELD = np.zeros((SIDE, SIDE))


def picture(seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((SIDE, SIDE))
    image[6:22, 8:20] = rng.random((16, 12))
    return image


def warped(image, dr=0.0, dc=0.0, angle=0.0, field_r=NO_FIELD, field_c=NO_FIELD):
    out = np.empty(SIDE * SIDE)
    warp(image.ravel(), dr, dc, angle, field_r, field_c, out)
    return out.reshape(SIDE, SIDE)


def test_a_whole_pixel_shift_moves_the_image_and_fills_with_zeros():
    image = picture()
    expected = np.zeros_like(image)
    expected[3:, :-2] = image[:-3, 2:]  # 3 rows down, 2 columns left
    np.testing.assert_array_equal(warped(image, dr=3.0, dc=-2.0), expected)


@pytest.mark.parametrize("axis", [0, 1])
def test_a_half_pixel_shift_averages_neighbours(axis):
    image = picture().T if axis == 0 else picture()
    expected = np.zeros_like(image)
    expected[:, 1:] = (image[:, 1:] + image[:, :-1]) / 2
    expected[:, 0] = image[:, 0] / 2
    got = warped(image.T, dr=0.5).T if axis == 0 else warped(image, dc=0.5)
    np.testing.assert_allclose(got, expected, atol=1e-15)


def test_a_quarter_turn_is_numpys_rotation_clockwise():
    image = picture()
    np.testing.assert_allclose(warped(image, angle=math.pi / 2), np.rot90(image, -1), atol=1e-12)
    np.testing.assert_allclose(warped(image, angle=-math.pi / 2), np.rot90(image, 1), atol=1e-12)


def test_a_constant_displacement_field_is_a_shift():
    image = picture()
    expected = np.zeros_like(image)
    expected[:-1] = image[1:]  # each pixel reads the one below it: the image moves up a row
    np.testing.assert_array_equal(warped(image, field_r=np.ones((SIDE, SIDE))), expected)


def test_the_elastic_field_is_uniform_noise_smoothed_by_a_gaussian():
    key, sample, first, alpha, sigma = np.uint64(12345), 3, 7, 5.0, 2.0
    noise = np.array([uniform(key, sample, first + k) for k in range(SIDE * SIDE)]).reshape(SIDE, SIDE)
    taps = np.exp(-0.5 * (np.arange(-6, 7) / sigma) ** 2)
    taps /= taps.sum()
    smooth = np.apply_along_axis(lambda row: np.convolve(row, taps, mode="same"), 1, noise)
    smooth = np.apply_along_axis(lambda column: np.convolve(column, taps, mode="same"), 0, smooth)
    field = np.empty((SIDE, SIDE))
    smoothed_field(key, sample, first, _gaussian(sigma), alpha, field)
    np.testing.assert_allclose(field, alpha * smooth, atol=1e-12)


def test_the_draws_are_uniform_on_minus_one_to_one():
    draws = np.array([uniform(np.uint64(7), s, k) for s in range(50) for k in range(200)])
    assert draws.min() >= -1 and draws.max() < 1
    assert abs(draws.mean()) < 0.02 and abs(draws.var() - 1 / 3) < 0.01
    assert np.histogram(draws, bins=10, range=(-1, 1))[0].min() > 850  # of 10,000: about 1,000 a bin


def test_a_batch_depends_on_its_key_alone_whatever_the_number_of_threads():
    images = np.stack([picture(seed).ravel() for seed in range(6)])
    rows = np.array([5, 0, 3, 3])
    augment = Augment()
    before = numba.get_num_threads()
    try:
        results = []
        for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(threads)
            results.append(augment(images, rows, key=99))
    finally:
        numba.set_num_threads(before)
    for result in results[1:]:
        assert result.tobytes() == results[0].tobytes()
    first = results[0]
    assert not np.array_equal(first[2], first[3])  # the same image, moved two ways
    assert not np.array_equal(first, augment(images, rows, key=100))
    assert np.abs(first - images[rows]).max() > 0.1  # moved at all
    assert 0.5 < first.sum() / images[rows].sum() < 1.5  # but the same ink, roughly


def test_no_movement_at_all_keeps_the_images():
    images = np.stack([picture(seed).ravel() for seed in range(3)])
    np.testing.assert_array_equal(Augment(0.0, 0.0, 0.0)(images, np.arange(3), key=1), images)


@pytest.mark.parametrize("kwargs, words", [
    (dict(shift=-1.0), "Augment(shift=...): expected a finite number >= 0, got -1.0"),
    (dict(rotate=math.nan), "Augment(rotate=...): expected a finite number >= 0, got nan"),
    (dict(alpha=8.0, sigma=0.0), "needs a smoothing width sigma > 0"),
])
def test_bad_settings_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        Augment(**kwargs)


def test_images_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"expected images of shape \(n, 784\), got \(2, 100\)"):
        Augment()(np.zeros((2, 100)), np.arange(2), key=0)
