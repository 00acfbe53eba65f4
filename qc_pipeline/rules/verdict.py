"""From findings to a verdict, and from a verdict to recognition eligibility."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable

from qc_pipeline.domain import Category, Finding, Severity, Verdict, worst_severity
from qc_pipeline.rules.schema import EligibilityConfig


def decide_verdict(findings: Iterable[Finding], *, candidate: bool) -> Verdict:
    """``fail`` if any fail-severity finding, else ``review`` if any review-severity finding,
    else ``pass``; ``not_applicable`` for a study that is not a recognition candidate.

    A study that is not a candidate but has a fail-severity ``integrity`` finding (a file that
    could not be read, so what it was meant to be is unknown) still fails: an unreadable upload
    is a defect whatever it was.
    """
    findings = list(findings)
    if not candidate:
        broken = any(f.severity is Severity.FAIL and f.category is Category.INTEGRITY for f in findings)
        return Verdict.FAIL if broken else Verdict.NOT_APPLICABLE
    worst = worst_severity(findings)
    if worst is Severity.FAIL:
        return Verdict.FAIL
    if worst is Severity.REVIEW:
        return Verdict.REVIEW
    return Verdict.PASS


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months, clamped to the month's last day (Nov 30 + 3 -> Feb 28)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def eligibility(
    verdict: Verdict,
    *,
    study_date: dt.date | None,
    modalities: Iterable[str],
    config: EligibilityConfig,
) -> tuple[bool, dt.date | None]:
    """``(eligible, eligible_until)``: only a ``pass`` is eligible, until study date + window.

    The window is the shortest of the study's modalities' windows (default 3 months).
    """
    if verdict is not Verdict.PASS or study_date is None:
        return False, None
    months = min(
        (config.per_modality_months.get(m, config.default_months) for m in modalities),
        default=config.default_months,
    )
    return True, add_months(study_date, months)
