"""Classify one image with a trained model: `python -m mlp.predict DIR/model.npz IMAGE`, or a
test image of a data set: `python -m mlp.predict DIR/model.npz --index 7`.

An image file is a 28x28 grey PNG or PGM. MNIST digits are white on black: an image whose
border is mostly light (a dark digit on paper) is inverted first, unless --invert says otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import tape

from . import checkpoint, data
from .train import dataset_name

SIDE = 28


def read_image(path: Path, invert: str = "auto") -> np.ndarray:
    """A 28x28 grey image file as 784 values in [0, 1], white digit on black."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.size != (SIDE, SIDE):
                raise ValueError(f"{path} is {image.size[0]}x{image.size[1]} pixels; expected {SIDE}x{SIDE} (as MNIST)")
            pixels = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read (expected PNG or PGM)") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 0.5):
        pixels = 1.0 - pixels
    return pixels.ravel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlp.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a model.npz written by mlp.train")
    p.add_argument("image", type=Path, nargs="?", help="a 28x28 grey PNG or PGM")
    p.add_argument("--index", type=int, help="classify test image number INDEX of --dataset instead")
    p.add_argument("--dataset", type=dataset_name, help="for --index; default: the one the model was trained on")
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
            probabilities = saved.model.predict_proba(x)[0]
    except (ValueError, FileNotFoundError, checkpoint.CheckpointError, data.DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    best = int(probabilities.argmax())
    truth = f" (true: {classes[label]})" if label is not None else ""
    print(f"{what}: {classes[best]} with probability {probabilities[best]:.3f}{truth}")
    for k in np.argsort(probabilities)[::-1][:3]:
        print(f"  {classes[k]:>12s}  {probabilities[k]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
