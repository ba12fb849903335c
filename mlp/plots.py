"""The training program's figures: learning curves, the confusion matrix, misclassified digits.

Each is a `Picture`: the training program saves it as a PNG file, a notebook shows it inline.
matplotlib is imported on first use, and only its Figure class: no pyplot, so no GUI backend is
chosen and no figure is kept in a global list.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np


class Picture:
    """A matplotlib figure (`.figure`) that a notebook shows inline and `save` writes as a PNG."""

    def __init__(self, figure) -> None:
        self.figure = figure

    def save(self, path: Path) -> None:
        self.figure.savefig(path, dpi=100)

    def _repr_png_(self) -> bytes:
        png = io.BytesIO()
        self.figure.savefig(png, format="png", dpi=80)
        return png.getvalue()


def _figure(**options):
    from matplotlib.figure import Figure

    return Figure(**options)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def curves(rows: Sequence[dict], best: int | None = None) -> Picture:
    """Loss and accuracy per epoch (training, validation where there is one, test), and the
    learning rate where it changes (a constant one is named in the loss's title), from
    metrics.csv's rows; `best` marks the epoch whose model was kept."""
    epochs = [int(r["epoch"]) for r in rows]
    rates = [(e, float(r["lr"])) for e, r in zip(epochs, rows) if r.get("lr")]
    changing = len({rate for _, rate in rates}) > 1
    fig = _figure(figsize=(14, 4) if changing else (10, 4))
    loss, accuracy, *rate = fig.subplots(1, 3 if changing else 2)
    for part, style in (("train", "-o"), ("val", "-^"), ("test", "-s")):
        if any(r.get(f"{part}_loss") for r in rows):
            shown = [(e, r) for e, r in zip(epochs, rows) if r.get(f"{part}_loss")]
            loss.plot([e for e, _ in shown], [float(r[f"{part}_loss"]) for _, r in shown], style, label=part, markersize=3)
            accuracy.plot([e for e, _ in shown], [100 * float(r[f"{part}_accuracy"]) for _, r in shown], style, label=part,
                          markersize=3)
    constant = f" (learning rate {rates[0][1]:g} throughout)" if rates and not changing else ""
    loss.set(xlabel="epoch", ylabel="cross-entropy", title=f"loss{constant}")
    accuracy.set(xlabel="epoch", ylabel="%", title="accuracy")
    for ax in rate:
        ax.plot([e for e, _ in rates], [r for _, r in rates], "-o", markersize=3)
        ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate (at the epoch's last step)")
    for ax in (loss, accuracy, *rate):
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", label=f"kept: epoch {best}")
        if ax not in rate or best is not None:
            ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
    fig.tight_layout()
    return Picture(fig)


def confusion(counts: np.ndarray, classes: Sequence[str]) -> Picture:
    """The confusion matrix as a heat map with its counts."""
    fig = _figure(figsize=(7, 6))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"test set: {np.trace(counts)} of {counts.sum()} right")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, n, ha="center", va="center", fontsize=7, color="white" if n > counts.max() / 2 else "black")
    fig.tight_layout()
    return Picture(fig)


def mistakes(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
             most: int = 36) -> Picture:
    """A grid of misclassified test images, each titled with its true and predicted class: one
    picture of them all on one axes (36 axes of their own took a second to draw)."""
    wrong = np.flatnonzero(labels != predicted)[:most]
    columns, side, gap, band = 6, 28, 4, 8  # a cell: the image, `gap` pixels beside it, a title `band` above
    rows = max(1, -(-len(wrong) // columns))
    grid = np.full((rows * (side + band), columns * (side + gap)), np.nan)  # nan: shown as the background
    for n, i in enumerate(wrong):
        r, c = divmod(n, columns)
        top, left = r * (side + band) + band, c * (side + gap) + gap // 2
        grid[top : top + side, left : left + side] = images[i].reshape(side, side)
    fig = _figure(figsize=(columns * 1.6, rows * 1.8 + 0.4))
    ax = fig.add_axes((0.01, 0.01, 0.98, rows * 1.8 / (rows * 1.8 + 0.4) - 0.01))
    shown = images[wrong]
    ax.imshow(np.ma.masked_invalid(grid), cmap="gray", vmin=shown.min(initial=0.0), vmax=shown.max(initial=1.0),
              interpolation="nearest")
    for n, i in enumerate(wrong):
        r, c = divmod(n, columns)
        ax.text(c * (side + gap) + (side + gap) / 2, r * (side + band) + band - 1, f"{classes[labels[i]]} -> "
                f"{classes[predicted[i]]}", ha="center", va="bottom", fontsize=8, color="firebrick")
    ax.axis("off")
    fig.suptitle(f"{int((labels != predicted).sum())} misclassified test images (true -> predicted)" if len(wrong)
                 else "no misclassified test images")
    return Picture(fig)


def sweep(trials: Sequence[tuple[int, dict, float]], varied: Sequence[str], metric: str) -> Picture:
    """A sweep's metric against each option it varied, a point a trial: (its number, its options,
    its metric), the options as the spec gave them (so [8, 8] and [8, 32] stay apart)."""
    fig = _figure(figsize=(4.5 * max(1, len(varied)), 3.8))
    axes = fig.subplots(1, max(1, len(varied)), squeeze=False)[0]
    for ax, name in zip(axes, varied or ["trial"]):
        values = [str(number if name == "trial" else options.get(name, "")) for number, options, _ in trials]
        labels = sorted(set(values), key=lambda v: (_number(v) is None, _number(v) or 0, v))
        ax.plot([labels.index(v) for v in values], [value for _, _, value in trials], "o")
        ax.set_xticks(range(len(labels)), labels, rotation=30 if max(map(len, labels), default=0) > 6 else 0)
        ax.set(xlabel=name, ylabel=metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} of {len(trials)} trials")
    fig.tight_layout()
    return Picture(fig)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
