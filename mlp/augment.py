"""Data augmentation on the fly: each training image moved a little, differently every time.

A random shift, a small rotation and an elastic distortion (Simard, Steinkraus and Platt,
"Best practices for convolutional neural networks applied to visual document analysis", 2003:
a field of uniform random displacements smoothed by a Gaussian of width `sigma` and scaled by
`alpha`), applied together as one warp of the 28x28 image with bilinear interpolation. It runs
in compiled code, a batch at a time on all cores, and nothing is stored: the random numbers come
from a counter-based generator keyed by the batch's key, the sample and the draw, so a batch's
images depend on the key alone, never on the number of threads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange, uint64

SIDE = 28  # the images are SIDE x SIDE
# The largest values that still leave a digit to learn from, and bound the work: a shift of half
# the image, a half turn, a distortion of 100 (the literature's is ~34) and a Gaussian as wide as
# the image (its kernel, cut at 3 sigma, has 6 sigma + 1 taps).
LIMITS = {"shift": SIDE / 2, "rotate": 180.0, "alpha": 100.0, "sigma": float(SIDE)}


@dataclass(frozen=True)
class Augment:
    """How far images are moved: up to `shift` pixels each way, up to `rotate` degrees either
    side, an elastic distortion of strength `alpha` and smoothness `sigma` (alpha 0: none)."""

    shift: float = 2.0
    rotate: float = 10.0
    alpha: float = 8.0
    sigma: float = 3.0

    def __post_init__(self) -> None:
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if not 0 <= value <= limit:
                raise ValueError(f"Augment({name}=...): expected a number from 0 to {limit:g}, got {value!r}")
        if self.alpha and not self.sigma:
            raise ValueError("Augment: an elastic distortion (alpha > 0) needs a smoothing width sigma > 0")

    def __call__(self, images: np.ndarray, rows: np.ndarray, key: int, parallel: bool = True) -> np.ndarray:
        """The images `rows` of `images` (n, 784), each warped at random: a new (len(rows), 784)
        array, the same for the same key on numba's threads (parallel) or on the calling thread
        alone (as a matrix run warps its next batch beside the step, see mlp.training.Run.batches)."""
        images = np.ascontiguousarray(images, dtype=np.float64)
        if images.ndim != 2 or images.shape[1] != SIDE * SIDE:
            raise ValueError(f"augment: expected images of shape (n, {SIDE * SIDE}), got {images.shape}")
        out = np.empty((len(rows), SIDE * SIDE))
        (warp_batch if parallel else warp_batch_here)(images, np.asarray(rows, dtype=np.int64), np.uint64(key), self.shift,
                                                      math.radians(self.rotate), self.alpha, _gaussian(self.sigma), out)
        return out


def _gaussian(sigma: float) -> np.ndarray:
    """A normalised Gaussian kernel, cut at 3 sigma (a single 1 for sigma 0)."""
    radius = int(math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-12)) ** 2)
    return taps / taps.sum()


@njit(cache=True, inline="always")
def uniform(key, sample, draw):
    """A number in [-1, 1) that depends only on (key, sample, draw): splitmix64 of the three."""
    z = key ^ (uint64(sample) * uint64(0x9E3779B97F4A7C15)) ^ (uint64(draw) * uint64(0xD1B54A32D192ED03))
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    return (z >> uint64(11)) * (2.0 / 9007199254740992.0) - 1.0


@njit(cache=True)
def smoothed_field(key, sample, first_draw, kernel, alpha, out):
    """out (SIDE, SIDE): uniform(-1, 1) noise convolved with `kernel` along both axes (zero
    outside the image), times alpha: along the rows, then along the rows of the transpose."""
    radius = kernel.shape[0] // 2
    padded = np.zeros((SIDE, SIDE + 2 * radius))  # each row with `radius` zeros either side
    for i in range(SIDE):
        for j in range(SIDE):
            padded[i, j + radius] = uniform(key, sample, first_draw + i * SIDE + j)
    smoothed = np.empty((SIDE, SIDE))
    convolve_rows(padded, kernel, smoothed)
    for i in range(SIDE):
        for j in range(SIDE):
            padded[j, i + radius] = smoothed[i, j]
    convolve_rows(padded, kernel, smoothed)
    for i in range(SIDE):
        for j in range(SIDE):
            out[i, j] = smoothed[j, i] * alpha


@njit(cache=True)
def convolve_rows(padded, kernel, out):
    """out[i, j] = the sum over k of kernel[k] * padded[i, j + k], in k's order: seven outputs
    at a time, whose seven independent sums keep the core's adders busy (SIDE = 4 x 7)."""
    for i in range(SIDE):
        for j in range(0, SIDE, 7):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = 0.0
            for k in range(kernel.shape[0]):
                w, at = kernel[k], j + k
                s0 += w * padded[i, at]
                s1 += w * padded[i, at + 1]
                s2 += w * padded[i, at + 2]
                s3 += w * padded[i, at + 3]
                s4 += w * padded[i, at + 4]
                s5 += w * padded[i, at + 5]
                s6 += w * padded[i, at + 6]
            out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s0, s1, s2, s3
            out[i, j + 4], out[i, j + 5], out[i, j + 6] = s4, s5, s6


@njit(cache=True)
def bilinear(image, r, c):
    """image (flat SIDE x SIDE) at the point (r, c), 0 outside it."""
    r0, c0 = math.floor(r), math.floor(c)
    fr, fc = r - r0, c - c0
    value = 0.0
    for dr in range(2):
        for dc in range(2):
            i, j = int(r0) + dr, int(c0) + dc
            if 0 <= i < SIDE and 0 <= j < SIDE:
                value += (fr if dr else 1.0 - fr) * (fc if dc else 1.0 - fc) * image[i * SIDE + j]
    return value


@njit(cache=True)
def warp(image, dr, dc, angle, field_r, field_c, out):
    """out = image (flat SIDE x SIDE) shifted by (dr, dc) pixels (down, right), rotated by
    `angle` (radians, clockwise as shown, rows counted down) about its centre, displaced by the field
    (field_r, field_c): output pixel (i, j) reads the image, bilinearly, where the inverse of
    that warp takes it."""
    centre = (SIDE - 1) / 2.0
    cos_t, sin_t = math.cos(angle), math.sin(angle)
    for i in range(SIDE):
        for j in range(SIDE):
            y, x = i - centre - dr, j - centre - dc
            r = cos_t * y - sin_t * x + centre + field_r[i, j]
            c = sin_t * y + cos_t * x + centre + field_c[i, j]
            out[i * SIDE + j] = bilinear(image, r, c)


@njit(cache=True)
def warp_sample(s, images, rows, key, shift, angle, alpha, kernel, out):
    """out[s] = images[rows[s]] warped by amounts drawn for sample s: (dr, dc) in
    [-shift, shift], an angle in [-angle, angle], an elastic field of strength alpha."""
    field_r, field_c = np.zeros((SIDE, SIDE)), np.zeros((SIDE, SIDE))
    if alpha > 0.0:
        smoothed_field(key, s, 3, kernel, alpha, field_r)
        smoothed_field(key, s, 3 + SIDE * SIDE, kernel, alpha, field_c)
    warp(images[rows[s]], shift * uniform(key, s, 0), shift * uniform(key, s, 1), angle * uniform(key, s, 2),
         field_r, field_c, out[s])


@njit(cache=True, parallel=True)
def warp_batch(images, rows, key, shift, angle, alpha, kernel, out):
    """Every sample's `warp_sample`, on numba's threads."""
    for s in prange(rows.shape[0]):
        warp_sample(s, images, rows, key, shift, angle, alpha, kernel, out)


@njit(cache=True, nogil=True)
def warp_batch_here(images, rows, key, shift, angle, alpha, kernel, out):
    """Every sample's `warp_sample` on the calling thread, without holding the GIL."""
    for s in range(rows.shape[0]):
        warp_sample(s, images, rows, key, shift, angle, alpha, kernel, out)
