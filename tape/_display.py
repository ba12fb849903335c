"""Tables of the engine's objects (a tape, a traced program, an array of Vars, a model), as plain
text for `show()` and print, and as HTML for a notebook (Jupyter's `_repr_html_`), from the same rows."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

KEPT = 20  # rows an HTML table (and repr) keeps at each end when it leaves out its middle
# The caption on one line at the table's left, however narrow the table (a VarArray's three columns
# would wrap it: a caption is as wide as its table), and the table at the left of the output (JupyterLab
# centres tables, which would put the caption's start mid-output)
CAPTION_STYLE = "white-space: nowrap; text-align: left; contain: inline-size"
TABLE_STYLE = "font-family: monospace; margin-left: 0"


class Rows:
    """`n` rows made by `row(i)` only when read: a notebook's table of a long tape or a large
    array formats the rows it shows, not the ones it leaves out."""

    def __init__(self, n: int, row: Callable[[int], tuple[str, ...]]) -> None:
        self.n, self.row = n, row

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[str, ...]:
        return self.row(i)

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return map(self.row, range(self.n))


@dataclass(repr=False)
class Table:
    """Rows of text cells under a header: `str()` gives them aligned, `repr()` (what a terminal or a
    notebook's text export shows) the caption and, of a long table, its ends; HTML for a notebook."""

    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]  # a list, or Rows made when read
    notes: list[str] = field(default_factory=list)  # lines below the table
    caption: str = ""  # a line above it, in HTML and repr
    right: tuple[int, ...] = ()  # the columns aligned right in text

    def text(self, shown: Sequence[int | None] | None = None) -> str:
        """Every row aligned under the header (or the rows `shown`, None for a row saying how
        many were left out), then the notes."""
        shown = range(len(self.rows)) if shown is None else shown
        rows = [self.header, *(self.rows[i] for i in shown if i is not None)]
        widths = [max(len(row[c]) for row in rows) for c in range(len(self.header))]
        lines = ["  ".join(cell.rjust(w) if c in self.right else cell.ljust(w)
                           for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
        if None in shown:
            lines.insert(1 + KEPT, f"... {self._left_out()}")
        return "\n".join(lines + self.notes)

    def __repr__(self) -> str:
        return "\n".join([self.caption] * bool(self.caption) + [self.text(self._shown())])

    def _shown(self) -> list[int | None]:
        """The rows a display shows: all of a short table; of a long one the first and last
        KEPT, and None between them for the rows left out."""
        n = len(self.rows)
        return list(range(n)) if n <= 2 * KEPT + 1 else [*range(KEPT), None, *range(n - KEPT, n)]

    def _left_out(self) -> str:
        return f"{len(self.rows) - 2 * KEPT:,} rows left out"

    def html(self) -> str:
        """The table in HTML, every text escaped; of a long one the first and last KEPT rows, and
        between them a row saying how many were left out."""
        left_out = f'<tr><td colspan="{len(self.header)}"><i>{self._left_out()}</i></td></tr>'
        rows = [left_out if i is None else _row(self.rows[i], "td") for i in self._shown()]
        caption = f'<caption style="{CAPTION_STYLE}">{html.escape(self.caption)}</caption>' if self.caption else ""
        notes = "".join(f"<div>{html.escape(note)}</div>" for note in self.notes)
        return (f'<table style="{TABLE_STYLE}">{caption}<thead>{_row(self.header, "th")}</thead>'
                f"<tbody>{''.join(rows)}</tbody></table>{notes}")

    def __str__(self) -> str:
        return self.text()

    _repr_html_ = html


def _row(cells: tuple[str, ...], tag: str) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in cells) + "</tr>"
