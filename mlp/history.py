"""What a training run gives back: its metrics.csv as numbers, one dict an epoch, and the model it
kept; a notebook shows it as a table and its curves inline."""
from __future__ import annotations

import csv
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from tape import Table

from . import plots
from .data import Dataset
from .nn import MLP


@dataclass
class History:
    """The per-epoch metrics of a run (`rows`: epoch, train_loss, ..., lr; None where a run has no
    value), its directory, the model it keeps (the best validation epoch's, else the last) and
    that model's test accuracy; `interrupted` if Ctrl-C ended it."""

    rows: list[dict] = field(repr=False)
    out: Path
    model: MLP | None
    dataset: Dataset | None = field(default=None, repr=False)  # what it was trained and tested on
    best_epoch: int | None = None
    test_accuracy: float = math.nan
    interrupted: bool = False

    @classmethod
    def from_csv(cls, rows: list[dict], **fields) -> History:
        """From metrics.csv's rows of text: numbers, and None for an empty cell."""
        numbers = [{k: None if v in ("", None) else int(v) if k == "epoch" else float(v) for k, v in r.items()} for r in rows]
        return cls(numbers, **fields)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> list:
        """A column by name: history["val_accuracy"] is one value an epoch."""
        return [row[column] for row in self.rows]

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, list(self.rows[0]) if self.rows else [])
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in self.rows)

    def plot(self) -> plots.Picture:
        """The learning curves (loss, accuracy, learning rate), the kept epoch marked."""
        text = [{k: "" if v is None else str(v) for k, v in row.items()} for row in self.rows]
        return plots.curves(text, self.best_epoch)

    def confusion(self) -> plots.Picture:
        """The confusion matrix of the kept model on the test set."""
        model, dataset = self._kept("confusion")
        counts = plots.confusion_matrix(dataset.y_test, model.predict(dataset.x_test), len(dataset.classes))
        return plots.confusion(counts, dataset.classes)

    def mistakes(self) -> plots.Picture:
        """The test images the kept model gets wrong, with their true and predicted classes."""
        model, dataset = self._kept("mistakes")
        return plots.mistakes(dataset.x_test, dataset.y_test, model.predict(dataset.x_test), dataset.classes)

    def _kept(self, caller: str) -> tuple[MLP, Dataset]:
        """The kept model and its data set, or a ValueError saying which this history lacks."""
        if self.model is None or self.dataset is None:
            lacking = "model" if self.model is None else "data set"
            raise ValueError(f"{caller}(): this history has no {lacking} to show (a run stopped before its "
                             f"{lacking} was made, {len(self.rows)} epochs)")
        return self.model, self.dataset

    def summary(self) -> str:
        """One line: how many epochs, where, the learning rate if it never changed, the kept epoch
        and its test accuracy (or, if interrupted, the last finished epoch's)."""
        n, rate = len(self.rows), self._constant_rate()
        epochs = f"{n} epoch{'s' * (n != 1)}{f' at learning rate {rate:g}' if rate is not None else ''} in {self.out}"
        if self.interrupted:
            if not n:
                return f"interrupted during epoch 1 in {self.out}, before any epoch was saved"
            return f"{epochs}, then interrupted: test accuracy {_percent(self.rows[-1].get('test_accuracy'))} at epoch {n}"
        kept = f", kept epoch {self.best_epoch}" if self.best_epoch else ""
        return f"{epochs}{kept}: test accuracy {_percent(self.test_accuracy)}"

    def _columns(self) -> list[tuple[str, str, list[str]]]:
        """(group, heading, cells) of each column shown: the epoch, the loss and the accuracy of each part the
        run measured (train, val, test), seconds, samples/s, and the learning rate if it changed."""
        def column(key: str, form) -> list[str]:
            return ["-" if row.get(key) is None else form(row[key]) for row in self.rows]

        def measured(key: str) -> bool:
            return any(row.get(key) is not None for row in self.rows)

        parts = [part for part in ("train", "val", "test") if measured(f"{part}_loss")]
        columns = [("", "epoch", column("epoch", str))] * measured("epoch")
        columns += [("loss", part, column(f"{part}_loss", "{:.4g}".format)) for part in parts]
        columns += [("accuracy", part, column(f"{part}_accuracy", _percent)) for part in parts if measured(f"{part}_accuracy")]
        columns += [("", heading, column(key, form)) for key, heading, form in
                    (("seconds", "seconds", "{:.3g}".format), ("samples_per_s", "samples/s", "{:,.0f}".format))
                    if measured(key)]
        if measured("lr") and self._constant_rate() is None:
            columns.append(("", "learning rate", column("lr", "{:g}".format)))
        return columns

    def _constant_rate(self) -> float | None:
        """The learning rate of every epoch, if it is one number, else None."""
        rates = {row.get("lr") for row in self.rows}
        return rates.pop() if len(rates) == 1 and None not in rates else None

    def __str__(self) -> str:
        """The summary line and the table, as plain text (a terminal, a text export of a notebook)."""
        columns = self._columns()
        headings = tuple(f"{heading} {'acc' if group == 'accuracy' else group}".rstrip() for group, heading, _ in columns)
        table = Table(headings, list(zip(*(cells for _, _, cells in columns))), right=tuple(range(len(columns))))
        return self.summary() + ("\n" + table.text() if self.rows else "")

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """The summary line, then the table, the loss and accuracy columns each under one heading."""
        columns = self._columns()
        grouped = any(group for group, _, _ in columns)
        top, below, seen = [], [], set()
        for group, heading, _ in columns:
            if not group:
                top.append(f'<th rowspan="2">{heading}</th>' if grouped else f"<th>{heading}</th>")
                continue
            if group not in seen:
                seen.add(group)
                top.append(f'<th colspan="{sum(g == group for g, _, _ in columns)}" '
                           f'style="text-align: center; border-bottom: 1px solid">{group}</th>')
            below.append(f"<th>{heading}</th>")
        head = "".join(f"<tr>{''.join(cells)}</tr>" for cells in (top, below) if cells)
        body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
                       for cells in zip(*(cells for _, _, cells in columns)))
        table = f"<table><thead>{head}</thead><tbody>{body}</tbody></table>" if self.rows else ""
        return f"<p>{html.escape(self.summary())}</p>{table}"


def _percent(fraction: float | None) -> str:
    """A fraction as a percentage, 0.92345 as 92.35%; a missing one as a dash."""
    return "-" if fraction is None or math.isnan(fraction) else f"{100 * fraction:.2f}%"
