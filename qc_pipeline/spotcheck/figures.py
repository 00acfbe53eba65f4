"""The figures of a period's spot check, computed from the stored grades and kept for the
evaluation report (``spot_check_summaries``; read them back with :func:`stored_figures`).

The reference is the cross-region reviewer's answer "recognisable yes/no" (reading 1). The
machine says "recognisable" when its verdict is ``pass`` (only a pass is eligible); ``fail`` is
the verdict whose sensitivity and specificity are reported (positive = not recognisable).

- machine vs reviewer: Cohen's kappa with its 95 % interval (2x2: machine pass / not pass ×
  reviewer recognisable / not); sensitivity and specificity of ``fail`` (Wilson intervals);
- the same per region of the studies (how far one region's reviewers trust the other's verdicts);
- inter-region: studies read by both regions (second readings): kappa on recognisable and a
  linearly weighted kappa on the grade scale;
- per institution: discordance rate (machine and reviewer disagree on recognisability), misses
  (machine pass, reviewer not recognisable) and over-calls (machine fail, reviewer recognisable);
- yield: share of checked studies found not recognisable, overall and by machine verdict.

The draw over-samples review/fail studies, so sample proportions are not population
proportions: ``population_weighted`` gives the point estimates weighted back to the population
(weight = population / graded studies of the stratum group the minimum applies to: its studies
share one verdict, hence one sampling rate).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from qc_pipeline.errors import DegenerateInputError, SpotCheckError
from qc_pipeline.spotcheck.config import SpotCheckConfig
from qc_pipeline.spotcheck.draw import PRIMARY_READING, SECOND_READING, Period, group_label
from qc_pipeline.spotcheck.stats import cohen_kappa, confusion, weighted_share, wilson
from qc_pipeline.store import ResultStore
from qc_pipeline.store.spotcheck import (
    SpotCheckAssignment,
    SpotCheckCase,
    SpotCheckDraw,
    SpotCheckGrade,
    SpotCheckSummary,
    read_session,
    write_session,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GradedCase:
    institution: str
    region: str
    stratum: str
    machine_verdict: str
    recognisable: bool
    grade: str
    second: tuple[str, bool, str] | None
    """The second reading (grade, recognisable, reviewer region), when there is one."""

    @property
    def machine_recognisable(self) -> bool:
        return self.machine_verdict == "pass"


def _kappa(table: list[list[float]], **kwargs: Any) -> dict[str, Any]:
    try:
        k = cohen_kappa(table, **kwargs)
    except DegenerateInputError as exc:
        return {"value": None, "why": str(exc), "table": table}
    return {"value": k.kappa, "se": k.se, "ci": [k.ci_low, k.ci_high], "n": k.n, "table": table}


def _share(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"k": 0, "n": 0, "p": None, "ci": None}
    p = wilson(k, n)
    return {"k": k, "n": n, "p": p.p, "ci": [p.ci_low, p.ci_high]}


def _two_by_two(
    cases: Sequence[GradedCase], weight: Callable[[GradedCase], float] = lambda c: 1.0
) -> list[list[float]]:
    """Rows: machine recognisable yes/no; columns: reviewer recognisable yes/no."""
    t = [[0.0, 0.0], [0.0, 0.0]]
    for c in cases:
        t[0 if c.machine_recognisable else 1][0 if c.recognisable else 1] += weight(c)
    return t


def machine_vs_reviewer(cases: Sequence[GradedCase]) -> dict[str, Any]:
    """Kappa, sensitivity and specificity of ``fail`` for these graded cases."""
    defective = [not c.recognisable for c in cases]
    failed = [c.machine_verdict == "fail" for c in cases]
    tp, fn, fp, tn = confusion(defective, failed)
    return {
        "n": len(cases),
        "kappa": _kappa(_two_by_two(cases)),
        "fail_sensitivity": _share(tp, tp + fn),
        "fail_specificity": _share(tn, tn + fp),
        "agreement": _share(sum(c.machine_recognisable == c.recognisable for c in cases), len(cases)),
    }


def compute_figures(
    cases: Sequence[GradedCase],
    *,
    config: SpotCheckConfig,
    strata_population: dict[str, int],
    n_drawn: int,
    n_assignments: int,
    n_graded: int,
) -> dict[str, Any]:
    """Every figure of the module docstring, as a JSON-ready dict."""
    region_names = {r.code: {"zh": r.name_zh, "en": r.name_en} for r in config.regions}
    by_region: dict[str, Any] = {}
    for region in sorted({c.region for c in cases}):
        subset = [c for c in cases if c.region == region]
        by_region[region] = {"name": region_names.get(region), **machine_vs_reviewer(subset)}

    institutions = []
    for name in sorted({c.institution for c in cases}):
        subset = [c for c in cases if c.institution == name]
        institutions.append(
            {
                "institution": name,
                "region": subset[0].region,
                "n": len(subset),
                "discordance": _share(sum(c.machine_recognisable != c.recognisable for c in subset), len(subset)),
                "missed": sum(c.machine_recognisable and not c.recognisable for c in subset),
                "overcalled": sum(c.machine_verdict == "fail" and c.recognisable for c in subset),
                "not_recognisable": _share(sum(not c.recognisable for c in subset), len(subset)),
            }
        )

    double = [c for c in cases if c.second is not None]
    order = config.grade_order
    grade_table = [[0.0] * len(order) for _ in order]
    for c in double:
        assert c.second is not None
        if c.grade in order and c.second[0] in order:
            grade_table[order.index(c.grade)][order.index(c.second[0])] += 1
    recog_table = [[0.0, 0.0], [0.0, 0.0]]
    for c in double:
        assert c.second is not None
        recog_table[0 if c.recognisable else 1][0 if c.second[1] else 1] += 1
    inter_region = {
        "n": len(double),
        "recognisable_kappa": _kappa(recog_table),
        "grade_kappa_linear": _kappa(grade_table, weights="linear"),
        "grade_agreement": _share(sum(c.second is not None and c.grade == c.second[0] for c in double), len(double)),
        "grades": order,
    }

    by_verdict = {}
    for verdict in ("pass", "review", "fail"):
        subset = [c for c in cases if c.machine_verdict == verdict]
        by_verdict[verdict] = {
            "not_recognisable": _share(sum(not c.recognisable for c in subset), len(subset)),
            "grades": dict(Counter(c.grade for c in subset)),
        }
    graded_per_stratum = Counter(c.stratum for c in cases)

    def weight(c: GradedCase) -> float:
        return strata_population.get(c.stratum, 0) / graded_per_stratum[c.stratum]

    weighted: dict[str, Any] = {}
    if cases:
        weights = [weight(c) for c in cases]
        weighted["kappa"] = _kappa(_two_by_two(cases, weight))["value"]
        weighted["not_recognisable"] = weighted_share([not c.recognisable for c in cases], weights)
        defective = [c for c in cases if not c.recognisable]
        sound = [c for c in cases if c.recognisable]
        weighted["fail_sensitivity"] = (
            weighted_share([c.machine_verdict == "fail" for c in defective], [weight(c) for c in defective])
            if defective
            else None
        )
        weighted["fail_specificity"] = (
            weighted_share([c.machine_verdict != "fail" for c in sound], [weight(c) for c in sound]) if sound else None
        )
        weighted["population"] = sum(strata_population.get(s, 0) for s in graded_per_stratum)
    return {
        "progress": {"drawn": n_drawn, "assignments": n_assignments, "graded": n_graded, "cases_graded": len(cases)},
        "machine_vs_reviewer": machine_vs_reviewer(cases),
        "by_region": by_region,
        "inter_region": inter_region,
        "institutions": institutions,
        "yield": {
            "not_recognisable": _share(sum(not c.recognisable for c in cases), len(cases)),
            "missed_by_machine": _share(sum(c.machine_recognisable and not c.recognisable for c in cases), len(cases)),
            "by_verdict": by_verdict,
        },
        "population_weighted": weighted,
    }


def summarise(
    store: ResultStore, config: SpotCheckConfig, period: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Compute the figures of ``period`` from the stored grades of every draw within it (the
    monthly draws of a half-year), store them (replacing the previous ones of the period) and
    return them."""
    now = now or dt.datetime.now(dt.UTC)
    wanted = Period.parse(period)
    with read_session(store) as session:
        draws = [
            d
            for d in session.scalars(select(SpotCheckDraw).order_by(SpotCheckDraw.period)).all()
            if _within(Period.parse(d.period), wanted)
        ]
        if not draws:
            raise SpotCheckError(
                f"no draw lies within period {period!r}: qc-pipeline spot-check draw --period {period}"
            )
        rows = (
            session.execute(
                select(SpotCheckCase, SpotCheckAssignment, SpotCheckGrade)
                .join(SpotCheckAssignment, SpotCheckAssignment.case_id == SpotCheckCase.id)
                .outerjoin(SpotCheckGrade, SpotCheckGrade.assignment_id == SpotCheckAssignment.id)
                .where(SpotCheckCase.draw_id.in_([d.id for d in draws]))
            )
            .tuples()
            .all()
        )
        period_of = {d.id: d.period for d in draws}
        minimum_keys = {d.id: list(d.sampling["minimum_keys"]) for d in draws}
        draw_info: list[dict[str, Any]] = [
            {
                "period": d.period,
                "seed": d.seed,
                "config_hash": d.config_hash,
                "config_version": d.config_version,
                "population_size": d.population_size,
                "n_drawn": d.n_drawn,
                "created_at": d.created_at.isoformat(),
                "strata": len(d.strata),
                "underfilled_strata": sum(1 for s in d.strata if s["underfilled"]),
            }
            for d in draws
        ]
        strata_population = {f"{d.period}|{s['stratum']}": s["population"] for d in draws for s in d.strata}
    readings: dict[int, dict[int, tuple[SpotCheckAssignment, SpotCheckGrade | None]]] = defaultdict(dict)
    case_of: dict[int, SpotCheckCase] = {}
    for case, assignment, grade in rows:
        case_of[case.id] = case
        readings[case.id][assignment.reading] = (assignment, grade)
    cases = []
    for case_id, by_reading in readings.items():
        primary = by_reading.get(PRIMARY_READING)
        if primary is None or primary[1] is None:
            continue
        second = by_reading.get(SECOND_READING)
        case = case_of[case_id]
        cases.append(
            GradedCase(
                institution=case.institution,
                region=case.region,
                stratum=f"{period_of[case.draw_id]}|{group_label(case.stratum, minimum_keys[case.draw_id])}",
                machine_verdict=case.machine_verdict,
                recognisable=primary[1].recognisable,
                grade=primary[1].grade,
                second=None
                if second is None or second[1] is None
                else (second[1].grade, second[1].recognisable, second[0].reviewer_region),
            )
        )
    figures = {
        "period": period,
        "computed_at": now.isoformat(),
        "draws": draw_info,
        **compute_figures(
            cases,
            config=config,
            strata_population=strata_population,
            n_drawn=sum(d["n_drawn"] for d in draw_info),
            n_assignments=len(rows),
            n_graded=sum(g is not None for _c, _a, g in rows),
        ),
    }
    with write_session(store) as session:
        stored = session.scalars(select(SpotCheckSummary).where(SpotCheckSummary.period == period)).one_or_none()
        if stored is None:
            session.add(SpotCheckSummary(period=period, computed_at=now, figures=figures))
        else:
            stored.computed_at, stored.figures = now, figures
    logger.info("spot-check figures of %s: %d graded studies", period, len(cases))
    return figures


def stored_figures(store: ResultStore, period: str | None = None) -> dict[str, dict[str, Any]]:
    """The stored figures by period (all periods, or only ``period``): for the evaluation report."""
    query = select(SpotCheckSummary).order_by(SpotCheckSummary.period)
    if period is not None:
        query = query.where(SpotCheckSummary.period == period)
    with read_session(store) as session:
        return {s.period: dict(s.figures) for s in session.scalars(query).all()}


def _within(inner: Period, outer: Period) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end
