"""The qualification rule and the fee exposure, on the studies of one institution and period.

Pure functions over ``StudyFacts``: no database, no thresholds loading. Rates are compared as
exact fractions, so that an institution exactly at a limit is treated as the rule says (at the
limit is within it), whatever the floating-point rounding of the percentages shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction

from qc_pipeline.report.config import FeeRules, FeeScheme, QualificationRule
from qc_pipeline.report.data import StudyFacts

PERCENT_PLACES = Decimal("0.1")


def percent(numerator: int, denominator: int) -> Decimal | None:
    """``numerator / denominator`` in percent, one decimal, half up; None when nothing to divide."""
    if denominator == 0:
        return None
    return (Decimal(numerator) * 100 / Decimal(denominator)).quantize(PERCENT_PLACES, rounding=ROUND_HALF_UP)


class Outcome(StrEnum):
    QUALIFIED = "qualified"
    """Passed the evaluation (评价合格)."""
    NOT_QUALIFIED = "not_qualified"
    """Failed the evaluation: the QC centre recommends suspending recognition (the health
    administration suspends or cancels it, DB50/T §(九))."""
    INSUFFICIENT = "insufficient_data"
    """Too few judged studies to evaluate: not evaluated this period."""


@dataclass(frozen=True, slots=True)
class CategoryShare:
    category: str
    failing: int
    limit_percent: Decimal
    within: bool


@dataclass(frozen=True, slots=True)
class Qualification:
    outcome: Outcome
    judged: int
    passed: int
    min_pass_rate_percent: Decimal
    pass_rate_ok: bool
    categories: tuple[CategoryShare, ...]

    @property
    def pass_rate(self) -> Decimal | None:
        return percent(self.passed, self.judged)

    def failed_criteria(self) -> list[str]:
        """``pass_rate`` and/or the categories above their limit (empty when qualified or not evaluated)."""
        if self.outcome is not Outcome.NOT_QUALIFIED:
            return []
        failed = [] if self.pass_rate_ok else ["pass_rate"]
        return failed + [c.category for c in self.categories if not c.within]


def final_verdict(study: StudyFacts, rule: QualificationRule) -> str:
    """The radiologist's verdict where one exists (and the rule uses them), else the machine's."""
    if rule.use_radiologist_decisions and study.human_verdict is not None:
        return study.human_verdict
    return study.verdict


def qualify(studies: Sequence[StudyFacts], rule: QualificationRule) -> Qualification:
    """Apply ``rule`` to one institution's studies of one period.

    judged = studies whose verdict is not ``not_applicable``; pass rate = passed / judged must be
    at least ``min_pass_rate_percent``; for each critical category, the studies with a
    fail-severity finding in it / judged must be at most ``max_fail_percent``. Fewer judged studies
    than ``min_judged_studies`` (zero included) is ``insufficient_data``.
    """
    judged = [s for s in studies if s.judged]
    passed = sum(1 for s in judged if final_verdict(s, rule) == "pass")
    n = len(judged)
    shares = []
    for critical in rule.critical_categories:
        failing = sum(1 for s in judged if s.fails_in([str(critical.category)]))
        within = n == 0 or Fraction(failing * 100, n) <= Fraction(critical.max_fail_percent)
        shares.append(CategoryShare(str(critical.category), failing, critical.max_fail_percent, within))
    pass_ok = n > 0 and Fraction(passed * 100, n) >= Fraction(rule.min_pass_rate_percent)
    if n < rule.min_judged_studies:
        outcome = Outcome.INSUFFICIENT
    elif pass_ok and all(c.within for c in shares):
        outcome = Outcome.QUALIFIED
    else:
        outcome = Outcome.NOT_QUALIFIED
    return Qualification(outcome, n, passed, rule.min_pass_rate_percent, pass_ok, tuple(shares))


class Exposure(StrEnum):
    """Why an exam's digital storage and retrieval service failed (the fee schemes' subject)."""

    NOT_UPLOADED = "not_uploaded"
    """In the hospital's exam log, never reached the cloud."""
    NOT_RETRIEVABLE = "not_retrievable"
    NO_IMAGES = "no_images"
    NO_REPORT = "no_report"


def storage_failures(study: StudyFacts, fees: FeeRules) -> list[Exposure]:
    """Storage/retrieval failures of an uploaded study (empty: the service works for it).

    Only the finding codes configured for each failure count (not info): a missing sequence or a
    thick reconstruction is a quality defect, judged by the verdict, not a storage failure."""
    codes = {f.code for f in study.findings if f.severity != "info"}
    out = []
    for reason, wanted in (
        (Exposure.NOT_RETRIEVABLE, fees.not_retrievable_codes),
        (Exposure.NO_IMAGES, fees.no_images_codes),
        (Exposure.NO_REPORT, fees.no_report_codes),
    ):
        if codes & set(wanted):
            out.append(reason)
    return out


@dataclass(frozen=True, slots=True)
class FeeExposure:
    scheme: FeeScheme
    exams: int
    """Exams of the scheme's modalities: uploaded studies plus logged exams never uploaded."""
    reasons: dict[Exposure, int]
    exposed: int
    yuan: Decimal | None
    """None where the scheme does not apply (not a public institution)."""


def fee_exposure(
    studies: Sequence[StudyFacts], missing_modalities: Sequence[str | None], fees: FeeRules, *, public: bool | None
) -> list[FeeExposure]:
    """Per scheme, separately (never summed across schemes): the exams of its modalities whose
    storage and retrieval service failed, and the deduction. ``missing_modalities``: one entry per
    logged exam with no upload (its modality group; None when the log did not say, counted in no
    scheme). ``public`` False: the schemes concern public institutions, yuan is None."""
    out = []
    for scheme in fees.schemes:
        mine = [s for s in studies if s.modality in scheme.modalities]
        reasons: dict[Exposure, int] = {r: 0 for r in Exposure}
        exposed = 0
        for s in mine:
            failures = storage_failures(s, fees)
            exposed += bool(failures)
            for r in failures:
                reasons[r] += 1
        missing = sum(1 for m in missing_modalities if m in scheme.modalities)
        reasons[Exposure.NOT_UPLOADED] = missing
        exposed += missing
        applies = public is not False or not fees.public_only
        out.append(
            FeeExposure(
                scheme, len(mine) + missing, reasons, exposed, scheme.yuan_per_exam * exposed if applies else None
            )
        )
    return out
