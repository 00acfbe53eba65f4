"""From findings to a verdict, and from a verdict to recognition eligibility."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

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


_VERDICT_ZH = {"pass": "合格", "review": "待复核", "fail": "不合格", "not_applicable": "不适用"}


@dataclass(frozen=True, slots=True)
class EligibilityReason:
    """Why a study is not eligible now (``code``, and a sentence in each language)."""

    code: str
    message: str
    message_zh: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "message_zh": self.message_zh}


@dataclass(frozen=True, slots=True)
class Eligibility:
    """A study's recognition eligibility on ``as_of`` (computed when read, never stored)."""

    eligible: bool
    until: dt.date | None
    """The end of the recognition window (study date + window), kept even once it has passed."""
    as_of: dt.date
    reasons: tuple[EligibilityReason, ...] = ()
    """Empty when eligible."""
    mark: str | None = None
    """The recognition mark the study may carry (e.g. 渝北HR), only when eligible."""


def eligibility_on(
    as_of: dt.date,
    *,
    eligible: bool,
    until: dt.date | None,
    final_verdict: str,
    qualification: EligibilityReason | None,
    mark: str | None,
) -> Eligibility:
    """Eligibility on ``as_of`` from the stored facts.

    ``eligible``/``until`` are what the verdict (or a standing human decision, whose verdict is
    ``final_verdict``) gave: a pass, with its window end. A passed study is eligible on ``as_of`` only while the window runs (``as_of``
    ≤ ``until``) and when its institution was qualified on the study date (``qualification`` is
    None; otherwise it is the reason it was not: seed 002 §4(一) recognises the results of
    qualified institutions only). Every reason that applies is given, not only the first.
    """
    reasons: list[EligibilityReason] = []
    if not eligible:
        reasons.append(
            EligibilityReason(
                "verdict.not_pass",
                f"the QC verdict is {final_verdict}, not pass",
                f"质控结论为{_VERDICT_ZH.get(final_verdict, final_verdict)}，非合格",
            )
        )
    elif until is None or as_of > until:
        end = "unknown" if until is None else until.isoformat()
        reasons.append(
            EligibilityReason(
                "window.ended",
                f"the recognition window ended on {end} (as of {as_of.isoformat()})",
                f"互认期限已于 {end} 结束（截至 {as_of.isoformat()}）",
            )
        )
    if qualification is not None:
        reasons.append(qualification)
    if reasons:
        return Eligibility(False, until, as_of, tuple(reasons))
    return Eligibility(True, until, as_of, (), mark)
