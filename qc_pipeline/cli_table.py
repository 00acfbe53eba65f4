"""Tables on the command line that fit the terminal they are read on.

At a terminal the table is fitted to its width: the table's steps abbreviate, then drop, columns
(least needed first) until every kept column has room for its narrowest readable width; a value
that must not wrap (a UID, an accession number, a date) is never split, and the rest of the width
goes to the columns that wrap (the reasons). When stdout is not a terminal (``demo > file``, a
pipe, a log), every column is written at its natural width, in full: nothing is abbreviated,
dropped, folded or cut.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

BORDER_PER_COLUMN: int = 3
"""Cells a column adds besides its text: one padding space each side and one border line (plus
one more border line for the whole table)."""


@dataclass(frozen=True)
class Column:
    """One column of a fitted table; its cells are rich markup strings, lines split by ``\\n``."""

    key: str
    header: str
    wrap: bool = True
    """Whether its values may wrap at spaces (reasons); False: each line of a value stays whole."""
    min_width: int = 10
    """Narrowest readable width of a wrapping column (a narrower value needs only its own width)."""
    max_width: int | None = None
    """At a terminal, the widest a wrapping column grows to (not applied to full rows)."""
    short: Callable[[str], str] | None = None
    """The abbreviated value, used when a ``("short", key)`` step applies."""
    short_header: str | None = None
    short_wraps: bool = False
    """Whether the abbreviated values may wrap at spaces (a name whose ``_`` became spaces)."""


Step = tuple[Literal["short", "drop"], str]


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def terminal_width() -> int | None:
    """The terminal's width (``$COLUMNS`` first, as :func:`shutil.get_terminal_size` reads it), or
    None when stdout is not a terminal: then tables are written in full."""
    return shutil.get_terminal_size().columns if stdout_is_terminal() else None


def _lines(markup: str) -> list[str]:
    from rich.text import Text

    return Text.from_markup(markup).plain.split("\n")


def _natural(column: Column, cells: Sequence[str], *, whole_header: bool = False) -> int:
    from rich.cells import cell_len

    words = [column.header] if whole_header else column.header.split()
    header = max((cell_len(w) for w in words), default=1)
    return max([header, *(cell_len(line) for cell in cells for line in _lines(cell))])


def _required(column: Column, cells: Sequence[str]) -> int:
    natural = _natural(column, cells)
    return min(natural, column.min_width) if column.wrap else natural


def fit_columns(
    columns: Sequence[Column], rows: Sequence[dict[str, str]], width: int | None, steps: Sequence[Step] = ()
) -> tuple[list[Column], list[list[str]], list[int]]:
    """The columns kept, the rows' cells and each column's width, for a terminal ``width`` (None:
    every column in full, at its natural width)."""
    kept = list(columns)
    values = {c.key: [row.get(c.key, "") for row in rows] for c in kept}

    def need() -> int:
        return sum(_required(c, values[c.key]) for c in kept) + BORDER_PER_COLUMN * len(kept) + 1

    if width is not None:
        for action, key in steps:
            if need() <= width:
                break
            index = next((i for i, c in enumerate(kept) if c.key == key), None)
            if index is None:
                continue
            if action == "drop" and len(kept) > 1:
                del kept[index]
            elif action == "short" and kept[index].short is not None:
                column = kept[index]
                values[key] = [column.short(v) for v in values[key]]  # type: ignore[misc]
                kept[index] = replace(
                    column,
                    header=column.short_header or column.header,
                    short=None,
                    wrap=column.wrap or column.short_wraps,
                )
    natural = [_natural(c, values[c.key], whole_header=width is None) for c in kept]
    if width is None:
        widths = natural
    else:
        wanted = [
            n if not c.wrap or c.max_width is None else min(n, c.max_width) for c, n in zip(kept, natural, strict=True)
        ]
        floor = [_required(c, values[c.key]) for c in kept]
        room = width - BORDER_PER_COLUMN * len(kept) - 1
        spare, asked = room - sum(floor), sum(w - f for w, f in zip(wanted, floor, strict=True))
        if spare >= asked:  # room for every column at its wanted width: the widest wrapping one gets the rest
            widths = list(wanted)
            wrapping = [i for i, c in enumerate(kept) if c.wrap]
            if wrapping:
                widest = max(wrapping, key=lambda i: natural[i])
                widths[widest] = min(natural[widest], widths[widest] + spare - asked)
        else:  # share what is left over the floors in proportion to what each column asks for
            share = max(spare, 0) / asked if asked else 0.0
            widths = [f + int((w - f) * share) for w, f in zip(wanted, floor, strict=True)]
    cells = [[values[c.key][i] for c in kept] for i in range(len(rows))]
    return kept, cells, widths


def print_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[dict[str, str]],
    *,
    steps: Sequence[Step] = (),
    width: int | None | Literal["terminal"] = "terminal",
    show_lines: bool = True,
    file: Any = None,
) -> None:
    """Print ``rows`` (cells by column key) fitted to ``width`` (default: the terminal's; None:
    full rows, as when stdout is not a terminal)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    target = terminal_width() if width == "terminal" else width
    kept, cells, widths = fit_columns(columns, rows, target, steps)
    table = Table(title=title, box=box.SQUARE, show_lines=show_lines)
    for column, w in zip(kept, widths, strict=True):
        # a column that must not wrap has its natural width: its values fit, its header may wrap at spaces
        table.add_column(column.header, width=w, overflow="fold")
    for row in cells:
        table.add_row(*row)
    total = sum(widths) + BORDER_PER_COLUMN * len(kept) + 1
    console_width = total if target is None else max(target, total)
    Console(width=console_width, soft_wrap=False, file=file).print(table)
