"""Augmentation: the warp's geometry against slices and rotations written here, the elastic
field against numpy's convolution, and the random draws (the same for the same key, whatever
the number of threads)."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("sigma", [0.4, 2.0, 28.0])  # a kernel of 3, 13 and 169 taps (wider than the image)
def test_the_elastic_field_is_uniform_noise_smoothed_by_a_gaussian(sigma):
    key, sample, first, alpha = np.uint64(12345), 3, 7, 5.0
    noise = np.array([uniform(key, sample, first + k) for k in range(SIDE * SIDE)]).reshape(SIDE, SIDE)
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    smooth = np.apply_along_axis(lambda row: np.convolve(row, taps)[radius : radius + SIDE], 1, noise)
    smooth = np.apply_along_axis(lambda column: np.convolve(column, taps)[radius : radius + SIDE], 0, smooth)
    field = np.full((SIDE, SIDE), np.nan)
    smoothed_field(key, sample, first, _gaussian(sigma), alpha, field)
    np.testing.assert_allclose(field, alpha * smooth, rtol=1e-12, atol=1e-14)


def test_the_compiled_loops_stay_inside_their_arrays(tmp_path):
    """numba checks no index unless told to: compiled here with bounds checks (a process and a
    cache of its own), the warps at the widest settings and Gaussians of 1 to 169 taps, on one
    thread and on numba's, read and write nothing outside their arrays."""
    program = ("import numpy as np\nfrom mlp.augment import Augment\n"
               "images = np.random.default_rng(0).random((20, 784))\n"
               "for sigma in (0.1, 0.4, 3.0, 28.0):\n"
               "    for parallel in (False, True):\n"
               "        Augment(14, 180, 100, sigma)(images, np.arange(20), 5, parallel)\n"
               "print('inside')")
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(Path(__file__).parents[1]))
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stdout) == (0, "inside\n"), done.stderr[-3000:]


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
    results.append(augment(images, rows, key=99, parallel=False))  # on this thread alone
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
    (dict(shift=-1.0), "Augment(shift=...): expected a number from 0 to 14, got -1.0"),
    (dict(shift=14.5), "Augment(shift=...): expected a number from 0 to 14, got 14.5"),
    (dict(rotate=math.nan), "Augment(rotate=...): expected a number from 0 to 180, got nan"),
    (dict(rotate=181.0), "Augment(rotate=...): expected a number from 0 to 180, got 181.0"),
    (dict(alpha=1e9), "Augment(alpha=...): expected a number from 0 to 100, got 1000000000.0"),
    (dict(sigma=1e6), "Augment(sigma=...): expected a number from 0 to 28, got 1000000.0"),
    (dict(sigma=math.inf), "Augment(sigma=...): expected a number from 0 to 28, got inf"),
    (dict(alpha=8.0, sigma=0.0), "needs a smoothing width sigma > 0"),
])
def test_bad_settings_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        Augment(**kwargs)


def test_images_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"expected images of shape \(n, 784\), got \(2, 100\)"):
        Augment()(np.zeros((2, 100)), np.arange(2), key=0)


def test_the_shifts_and_the_angle_are_independent_draws_over_their_whole_range():
    """A bar at the centre: its centroid moves by the shift, its long axis turns by the angle
    (clockwise as shown: rows down). Over 400 samples the moves down and right each cover
    [-3, 3], the angle [-20, 20] degrees, and no two of them are correlated."""
    image = np.zeros((SIDE, SIDE))
    image[12:16, 8:20] = 1.0  # 4 x 12, centred
    out = Augment(shift=3.0, rotate=20.0, alpha=0.0)(np.tile(image.ravel(), (400, 1)), np.arange(400), key=5)
    out = out.reshape(-1, SIDE, SIDE)
    rows, columns = np.arange(SIDE)[:, None], np.arange(SIDE)[None, :]
    mass = out.sum(axis=(1, 2))
    r0, c0 = (out * rows).sum(axis=(1, 2)) / mass, (out * columns).sum(axis=(1, 2)) / mass
    dr, dc = r0 - 13.5, c0 - 13.5
    y, x = rows - r0[:, None, None], columns - c0[:, None, None]
    moment = lambda a, b: (out * a * b).sum(axis=(1, 2))  # noqa: E731
    angle = np.degrees(0.5 * np.arctan2(2 * moment(x, y), moment(x, x) - moment(y, y)))
    for d, bound in ((dr, 3.0), (dc, 3.0), (angle, 20.0)):
        assert d.min() < -0.9 * bound and d.max() > 0.9 * bound and np.abs(d).max() < 1.05 * bound
        assert abs(d.mean()) < 0.1 * bound
    correlations = np.corrcoef([dr, dc, angle])
    assert np.abs(correlations[np.triu_indices(3, 1)]).max() < 0.15


def test_the_elastic_fields_two_components_are_independent_noises():
    """On a ramp along the rows an elastic warp alone reads i + field_r at pixel (i, j), on a
    ramp along the columns j + field_c: the two components (same key, same samples) are smooth
    fields of about half a pixel, uncorrelated with each other and with the next sample's."""
    elastic = Augment(shift=0.0, rotate=0.0, alpha=8.0, sigma=3.0)
    ramps = np.stack([np.repeat(np.arange(SIDE, dtype=float), SIDE), np.tile(np.arange(SIDE, dtype=float), SIDE)])
    samples = np.zeros(300, np.int64)
    field_r = elastic(ramps, samples, key=11).reshape(-1, SIDE, SIDE) - ramps[0].reshape(SIDE, SIDE)
    field_c = elastic(ramps, samples + 1, key=11).reshape(-1, SIDE, SIDE) - ramps[1].reshape(SIDE, SIDE)
    inside = (slice(None), slice(6, 22), slice(6, 22))  # displaced, still inside the ramp
    r, c = field_r[inside].ravel(), field_c[inside].ravel()
    assert 0.2 < r.std() < 2 and 0.2 < c.std() < 2
    assert abs(np.corrcoef(r, c)[0, 1]) < 0.12
    for field in (field_r, field_c):
        assert abs(np.corrcoef(field[:-1][inside].ravel(), field[1:][inside].ravel())[0, 1]) < 0.12


@pytest.mark.parametrize("parallel", [True, False])
def test_no_rows_give_no_images(parallel):
    assert Augment()(np.zeros((3, 784)), np.arange(0), key=1, parallel=parallel).shape == (0, 784)
