"""A drawing turned into an MNIST digit, the way MNIST's digits were made: the stroke's bounding
box fitted into 20x20 pixels (keeping its aspect ratio, grey levels from anti-aliasing), then
placed in a 28x28 field so that its centre of mass is the field's centre."""
from __future__ import annotations

import numpy as np

FIELD, BOX = 28, 20


def mnist_style(image: np.ndarray) -> np.ndarray:
    """A grey drawing (any size; ink near 1, paper 0) as a 28x28 array in [0, 1]."""
    from PIL import Image

    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-d grey image, got shape {image.shape}")
    ink = np.argwhere(image > 0.05)
    if len(ink) == 0:
        return np.zeros((FIELD, FIELD))
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
    stroke = image[top:bottom, left:right]
    scale = BOX / max(stroke.shape)
    height, width = (max(1, round(side * scale)) for side in stroke.shape)
    fitted = Image.fromarray((stroke * 255).astype(np.uint8)).resize((width, height), Image.LANCZOS)
    fitted = np.asarray(fitted, dtype=np.float64) / 255.0
    rows, cols = np.indices(fitted.shape)
    mass = fitted.sum()
    if mass > 0:
        centre_row, centre_col = (rows * fitted).sum() / mass, (cols * fitted).sum() / mass
    else:  # ink too faint to survive the resizing: centre the box itself
        centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    digit = np.zeros((FIELD, FIELD))
    middle = (FIELD - 1) / 2  # the field's centre, in pixel indices
    top, left = round(middle - centre_row), round(middle - centre_col)
    top, left = min(max(top, 0), FIELD - height), min(max(left, 0), FIELD - width)  # keep it all in view
    digit[top : top + height, left : left + width] = fitted
    return np.clip(digit, 0.0, 1.0)
