"""Text from outside (DICOM attributes, a grader's comment) written to CSV and XLSX as text, never
as a formula.

Excel, LibreOffice and Google Sheets take a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return as a formula when a CSV file is opened, and openpyxl writes a string that
begins with ``=`` as a formula cell: an InstitutionName of ``=HYPERLINK("http://x","click")``
would become a live link (or a DDE call) in the reviewer's spreadsheet. Following the OWASP "CSV
Injection" guidance, such text is prefixed with a single quote; in XLSX the cell is also typed as a
string. Only strings are escaped: numbers (negative ones included), dates, booleans and None are
written as they are.

Every CSV and XLSX writer of the package goes through :func:`cell_value` (or
:func:`append_row`); a reader of a file we wrote undoes the prefix with :func:`unescape_text`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol, TypeVar

logger = logging.getLogger(__name__)

FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make a spreadsheet read a cell as a formula (OWASP, CSV Injection)."""
QUOTE: Final = "'"
"""The prefix that keeps such a cell text."""

T = TypeVar("T")


class _Cell(Protocol):
    value: Any
    data_type: str


class _Sheet(Protocol):
    """The part of an openpyxl worksheet that :func:`append_row` uses."""

    @property
    def max_row(self) -> int: ...

    def append(self, iterable: list[Any]) -> None: ...

    def iter_rows(self, *, min_row: int, max_row: int, max_col: int) -> Iterable[tuple[_Cell, ...]]: ...


def _needs_quote(text: str) -> bool:
    # quotes already in front count too, so that text typed with a leading quote survives the round trip
    return text.lstrip(QUOTE).startswith(FORMULA_TRIGGERS)


def escape_text(text: str) -> str:
    """``text`` with a single quote in front when it begins (after any quotes of its own) with a
    formula trigger, else unchanged."""
    return QUOTE + text if _needs_quote(text) else text


def unescape_text(text: str) -> str:
    """Undo :func:`escape_text` (``unescape_text(escape_text(t)) == t`` for every ``t``): one quote
    is removed where :func:`escape_text` put it, in front of a trigger; other text is unchanged."""
    return text[len(QUOTE) :] if text.startswith(QUOTE) and _needs_quote(text) else text


def cell_value(value: T) -> T | str:
    """A value for a CSV or XLSX cell: strings escaped, anything else unchanged."""
    return escape_text(value) if isinstance(value, str) else value


def csv_row(row: Mapping[str, T]) -> dict[str, T | str]:
    """A ``csv.DictWriter`` row with every string value escaped."""
    return {k: cell_value(v) for k, v in row.items()}


def unescape_row(row: Mapping[str, T]) -> dict[str, T | str]:
    """A ``csv.DictReader`` row of a file written with :func:`csv_row`, as it was before escaping."""
    return {k: unescape_text(v) if isinstance(v, str) else v for k, v in row.items()}


def append_row(sheet: _Sheet, values: Iterable[Any]) -> None:
    """Append ``values`` to an openpyxl worksheet with every string escaped and its cell typed as a
    string (``data_type`` ``"s"``), so that no text is ever stored as a formula."""
    cells = [cell_value(v) for v in values]
    sheet.append(cells)
    if not cells:
        return
    row = sheet.max_row  # append() writes after the last row, so the row just written is the last
    for written in sheet.iter_rows(min_row=row, max_row=row, max_col=len(cells)):
        for cell in written:
            if isinstance(cell.value, str):
                cell.data_type = "s"
