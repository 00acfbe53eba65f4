"""Half-year evaluation periods (``2026H2`` = 2026-07-01 .. 2026-12-31, study date in site time)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

_PATTERN: Final = re.compile(r"^\s*(\d{4})\s*-?\s*[Hh]\s*([12])\s*$")


@dataclass(frozen=True, order=True, slots=True)
class Period:
    year: int
    half: int
    """1 (January-June) or 2 (July-December)."""

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2026H2`` or ``2026-H2`` (case and spaces ignored); ValueError saying the expected form otherwise."""
        match = _PATTERN.match(text or "")
        if not match:
            raise ValueError(f"period {text!r} is not a half-year: expected e.g. 2026H1, 2026H2 or 2026-H2")
        year = int(match.group(1))
        if not 1900 <= year <= 9998:
            raise ValueError(f"period {text!r}: year {year} is out of range")
        return cls(year, int(match.group(2)))

    @classmethod
    def of(cls, day: dt.date) -> Period:
        return cls(day.year, 1 if day.month <= 6 else 2)

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, 1 if self.half == 1 else 7, 1)

    @property
    def end(self) -> dt.date:
        """The last day (inclusive)."""
        return dt.date(self.year, 6, 30) if self.half == 1 else dt.date(self.year, 12, 31)

    @property
    def previous(self) -> Period:
        return Period(self.year, 1) if self.half == 2 else Period(self.year - 1, 2)

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def months(self) -> list[str]:
        """``YYYY-MM`` of the period's six months."""
        first = self.start.month
        return [f"{self.year}-{m:02d}" for m in range(first, first + 6)]

    def __str__(self) -> str:
        return f"{self.year}H{self.half}"

    def label(self, lang: str) -> str:
        if lang == "zh":
            return f"{self.year}年{'上' if self.half == 1 else '下'}半年（{self}）"
        return f"{'first' if self.half == 1 else 'second'} half of {self.year} ({self})"
