"""Classify one image with a trained model: `python -m mlp.predict DIR/model.npz IMAGE`, or a
test image of a data set: `python -m mlp.predict DIR/model.npz --index 7`.

An image file is 28x28 pixels, in any format Pillow reads (PNG, PGM, TIFF, ...). The ink is the
alpha channel where the image has one that varies (a drawing on a transparent background, as
most drawing programs save it), else the grey level; 16-bit and floating-point images are
scaled to [0, 1] (32-bit ones holding values above 255 by their brightest pixel). MNIST digits are white on black: an image whose border is mostly light (a dark
digit on paper) is inverted first, unless --invert says otherwise. A blank or nearly blank image
is classified with a warning.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import tape

from .. import checkpoint, data
from ..recipe import dataset_name
from . import cli, finish

SIDE = 28
INK, FEWEST_INKED = 0.2, 20  # a pixel above INK holds ink; MNIST's sparsest digits have about 30 such


def read_image(path: Path, invert: str = "auto") -> np.ndarray:
    """A 28x28 image file as 784 values in [0, 1], white digit on black; ValueError (naming the
    file and the reason) for a file that is not such an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.size != (SIDE, SIDE):
                raise ValueError(f"{path} is {image.size[0]}x{image.size[1]} pixels; expected {SIDE}x{SIDE} (as MNIST)")
            image.load()
            pixels = _ink(image, path)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read (PNG, PGM, TIFF, ...)") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not an image") from None
    except FileNotFoundError:
        raise ValueError(f"no image at {path}") from None
    except (OSError, SyntaxError) as error:  # Pillow's errors for a damaged file
        raise ValueError(f"cannot read the image {path}: {error}") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 0.5):
        pixels = 1.0 - pixels
    return pixels.ravel()


def _ink(image, path: Path) -> np.ndarray:
    """The image's pixels in [0, 1]: its alpha channel if that varies, else its grey levels."""
    if "A" in image.getbands() or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"), dtype=np.float64)[..., 3] / 255.0
        if alpha.min() < alpha.max():
            return alpha
    if image.mode in ("F", "I") or image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64)
        if not np.isfinite(pixels).all() or pixels.min() < 0:
            raise ValueError(f"{path} holds {image.mode} pixels from {pixels.min()} to {pixels.max()}; "
                             f"expected finite values >= 0")
        if image.mode.startswith("I;16"):
            return pixels / 65535.0
        # 32-bit pixels have no range of their own: [0, 1], [0, 255], or the image's own brightest
        return pixels / (1.0 if pixels.max() <= 1 else 255.0 if pixels.max() <= 255 else pixels.max())
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def blank_warning(x: np.ndarray, what: str) -> str | None:
    """A warning for an input with no or almost no ink, where the prediction means little."""
    inked = int(np.count_nonzero(x > INK))
    if inked == 0:
        return f"{what} is blank: no pixel holds ink"
    if inked < FEWEST_INKED:
        return f"{what} is nearly blank: only {inked} of {x.size} pixels hold ink (MNIST's digits have about 30 or more)"
    return None


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m mlp.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a model.npz written by mlp.train")
    p.add_argument("image", type=Path, nargs="?", help="a 28x28 image: PNG, PGM, TIFF, ...")
    p.add_argument("--index", type=int, help="classify test image number INDEX of --dataset instead")
    p.add_argument("--dataset", type=cli.flag_type(dataset_name), help="for --index; default: the one the model was trained on")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                   help="make a dark-on-light image light-on-dark, as MNIST")
    args = p.parse_args(argv)
    if (args.image is None) == (args.index is None):
        p.error("give an image file or --index N (one of them)")
    try:
        with tape.Tape():
            saved = checkpoint.load(args.checkpoint)
            if args.image is not None:
                x, label, what = read_image(args.image, args.invert), None, str(args.image)
                classes = data.CLASSES.get(saved.args.get("dataset"), data.DIGIT_CLASSES)
            else:
                dataset = data.load(args.dataset or saved.args.get("dataset", "mnist-5k"), data_dir=args.data_dir)
                if not 0 <= args.index < len(dataset.x_test):
                    raise ValueError(f"--index {args.index} is outside the test set's 0..{len(dataset.x_test) - 1}")
                x, label = dataset.x_test[args.index], int(dataset.y_test[args.index])
                what, classes = f"{dataset.name} test image {args.index}", dataset.classes
            probabilities = saved.kept.predict_proba(x)[0]
    except (ValueError, FileNotFoundError, data.DatasetNotFoundError) as e:  # CheckpointError is a ValueError
        return cli.refuse(e)
    if warning := blank_warning(x, what):
        print(f"warning: {warning}; the prediction means little", file=sys.stderr)
    best = int(probabilities.argmax())
    truth = f" (true: {classes[label]})" if label is not None else ""
    print(f"{what}: {classes[best]} with probability {probabilities[best]:.3f}{truth}")
    for k in np.argsort(probabilities)[::-1][:3]:
        print(f"  {classes[k]:>12s}  {probabilities[k]:.3f}")
    return 0


if __name__ == "__main__":
    finish(main())
