"""Drift of the AI models: per model label and institution, the weekly share of series the rule
flags, against a control chart (a p-chart), and the median score against the previous period.

A model that worked when it was evaluated can stop working at a site: a new scanner, a software
update, a changed protocol. Nothing in a single study says so; the share of series it flags does.
The chart (Montgomery, Introduction to Statistical Quality Control, 7th ed., ch. 7, the p-chart):

- baseline p0: the share flagged at the institution in the previous period when it scored at least
  ``min_baseline_series`` series there, else the share over all institutions in this period;
- each week (ISO week, Monday first) with at least ``min_series_per_week`` series is out of band
  when its share p_w lies outside p0 ± k·sqrt(p0(1 - p0) / n_w), k = ``sigmas``;
- an alarm when any week is out of band. The report lists the rule, not the study: the QC centre
  looks at the model and the site's recent changes.

Pure functions over the report's facts; the limits that say what "flagged" is are the rules of
``thresholds/ai.yaml`` as the pipeline applies them.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored series: when, where, its score, and whether a rule flagged it."""

    study_date: dt.date
    institution: str
    score: float
    flagged: bool
    current: bool
    """In the report's period (else in the previous one)."""


@dataclass(frozen=True, slots=True)
class Week:
    monday: dt.date
    n: int
    flagged: int

    @property
    def share(self) -> float:
        return self.flagged / self.n if self.n else 0.0


@dataclass(frozen=True, slots=True)
class Chart:
    """One model label at one institution over the period."""

    n: int
    flagged: int
    baseline: float
    baseline_source: str
    """``previous`` (the institution's previous period) or ``region`` (all institutions now)."""
    baseline_n: int
    weeks: tuple[Week, ...]
    out_of_band: tuple[Week, ...]
    median_score: float | None
    previous_median_score: float | None

    @property
    def share(self) -> float:
        return self.flagged / self.n if self.n else 0.0

    @property
    def alarm(self) -> bool:
        return bool(self.out_of_band)


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def weeks_of(scored: Iterable[Scored]) -> tuple[Week, ...]:
    by_week: dict[dt.date, list[bool]] = {}
    for s in scored:
        by_week.setdefault(monday(s.study_date), []).append(s.flagged)
    return tuple(Week(m, len(f), sum(f)) for m, f in sorted(by_week.items()))


def out_of_band(weeks: Sequence[Week], baseline: float, *, sigmas: float, min_n: int) -> tuple[Week, ...]:
    """The weeks whose flagged share lies outside baseline ± sigmas·sqrt(p(1 - p) / n).

    A baseline of 0 or 1 has no spread: any week that differs from it is out of band (a rule that
    never flagged and now does, or the reverse, is worth a look).
    """
    out = []
    for w in weeks:
        if w.n < min_n:
            continue
        half = sigmas * math.sqrt(baseline * (1.0 - baseline) / w.n)
        if w.share > baseline + half + 1e-12 or w.share < baseline - half - 1e-12:
            out.append(w)
    return tuple(out)


def chart(
    here: Sequence[Scored],
    region_now: Sequence[Scored],
    *,
    sigmas: float,
    min_series_per_week: int,
    min_baseline_series: int,
) -> Chart | None:
    """The chart of one label at one institution (``here``: its series of both periods;
    ``region_now``: every institution's series of this period); None when it scored none now."""
    now = [s for s in here if s.current]
    if not now:
        return None
    before = [s for s in here if not s.current]
    if len(before) >= min_baseline_series:
        pool, source = before, "previous"
    else:
        pool, source = list(region_now), "region"
    baseline = sum(s.flagged for s in pool) / len(pool)
    weeks = weeks_of(now)
    return Chart(
        n=len(now),
        flagged=sum(s.flagged for s in now),
        baseline=baseline,
        baseline_source=source,
        baseline_n=len(pool),
        weeks=weeks,
        out_of_band=out_of_band(weeks, baseline, sigmas=sigmas, min_n=min_series_per_week),
        median_score=statistics.median(s.score for s in now),
        previous_median_score=statistics.median(s.score for s in before) if before else None,
    )
