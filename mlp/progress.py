"""A one-line text progress bar on stderr: downloads and training epochs. In a terminal and in a
Jupyter notebook (whose output area also draws a carriage return as a new start of the line) it
is redrawn in place."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """`label [#####-----] 50% text`, redrawn in place (at most ten times a second) while it
    runs; where stderr is neither a terminal nor a notebook (a log, CI) only the finished line
    is written."""

    WIDTH = 30

    def __init__(self, label: str, total: int = 0, shown: bool | None = None) -> None:
        self.label, self.total = label, total
        self.shown = _live(sys.stderr) if shown is None else shown
        self.drawn, self.last = "", 0.0

    def due(self, done: int) -> bool:
        """Whether `update(done, ...)` would redraw the bar now (so its text is worth making)."""
        return self.shown and (done >= self.total or time.monotonic() - self.last >= 0.1)

    def update(self, done: int, text: str = "") -> None:
        if not self.due(done):
            return
        self.last = time.monotonic()
        self._write("\r" + self._line(done, text))

    def finish(self, text: str = "") -> None:
        """End the bar: its final line with `text`, or (without text) just end a drawn line."""
        if text:
            self._write("\r" + self._line(self.total, text) + "\n")
        elif self.drawn:
            self._write("\n")
        self.drawn = ""

    def _line(self, done: int, text: str) -> str:
        if not self.total:
            return f"{self.label} {text}"
        fraction = min(done / self.total, 1.0)
        filled = round(fraction * self.WIDTH)
        line = f"{self.label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {fraction:4.0%} {text}"
        return line.ljust(len(self.drawn))  # cover a longer previous line

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()
        self.drawn = text.strip("\r\n")


def _live(stream) -> bool:
    """Whether `stream` shows a redrawn line: a terminal, or a Jupyter kernel's output."""
    return stream.isatty() or type(stream).__module__.startswith("ipykernel")
