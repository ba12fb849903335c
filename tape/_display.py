"""Tables of the engine's objects (a tape, a traced program, an array of Vars, a model), as plain
text for `show()` and print, and as HTML for a notebook (Jupyter's `_repr_html_`), from the same rows."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

KEPT = 20  # rows an HTML table keeps at each end when it leaves out its middle


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


@dataclass
class Table:
    """Rows of text cells under a header: `str()` gives them aligned, a notebook shows them as HTML."""

    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]  # a list, or Rows made when read
    notes: list[str] = field(default_factory=list)  # lines below the table
    caption: str = ""  # a line above it, in HTML only
    right: tuple[int, ...] = ()  # the columns aligned right in text

    def text(self) -> str:
        rows = [self.header, *self.rows]
        widths = [max(len(row[c]) for row in rows) for c in range(len(self.header))]
        lines = ["  ".join(cell.rjust(w) if c in self.right else cell.ljust(w)
                           for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
        return "\n".join(lines + self.notes)

    def html(self) -> str:
        """The table in HTML, every text escaped; of a long one the first and last KEPT rows, and
        between them a row saying how many were left out."""
        n = len(self.rows)
        shown = range(n) if n <= 2 * KEPT + 1 else [*range(KEPT), None, *range(n - KEPT, n)]
        left_out = f'<tr><td colspan="{len(self.header)}"><i>{n - 2 * KEPT:,} rows left out</i></td></tr>'
        rows = [left_out if i is None else _row(self.rows[i], "td") for i in shown]
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        notes = "".join(f"<div>{html.escape(note)}</div>" for note in self.notes)
        return (f'<table style="font-family: monospace">{caption}<thead>{_row(self.header, "th")}</thead>'
                f"<tbody>{''.join(rows)}</tbody></table>{notes}")

    __str__ = text
    _repr_html_ = html


def _row(cells: tuple[str, ...], tag: str) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in cells) + "</tr>"
