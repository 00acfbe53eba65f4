"""Incremental listing: a source that can say what changed since a stored cursor position.

A run asks ``list_changes(kind, position)`` with the cursor the results store holds for the
source (``ResultStore.cursor``), judges every entry listed, and only then stores the returned
position (``ResultStore.advance_cursor``). A run that dies half-way therefore loses nothing: the
next one lists the same studies again and skips those already judged (content fingerprints).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from qc_pipeline.sources.base import StudyEntry


class ListingMode(StrEnum):
    FULL = "full"
    """Every study in the source (first run, a reset server, or the periodic full listing)."""
    CHANGES = "changes"
    """Only studies a change feed reported since the cursor (Orthanc ``/changes``)."""
    WINDOW = "window"
    """Studies in a QIDO-RS StudyDate window since the cursor, with an overlap."""


@dataclass(frozen=True, slots=True)
class Listing:
    """What one run has to look at, and where the cursor goes once all of it is stored."""

    entries: tuple[StudyEntry, ...]
    cursor_kind: str
    """What ``position`` means; a stored cursor of another kind is ignored (full listing)."""
    position: str
    """The cursor position covering every entry listed here."""
    mode: ListingMode


@runtime_checkable
class IncrementalSource(Protocol):
    """A source that can list only what changed since a cursor position."""

    @property
    def uri(self) -> str: ...

    def list_changes(self, cursor_kind: str | None, position: str | None, *, now: dt.datetime | None = None) -> Listing:
        """The studies new or changed since ``position`` (everything when it is None or of
        another kind), and the position to store once they are all judged."""
        ...
