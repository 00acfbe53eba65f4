"""How good the AI scores are at one site, judged by its own radiologists' per-finding labels.

``qc-pipeline models validate --labels FILE`` joins the labels of ``models export-labels`` (one row
per judged finding, and one row per image series of an audited machine pass) with the AI scores the
pipeline stored for the same series, and reports per AI score and per site (institution), with
95 % intervals:

- **AUC** of the score for "the reviewer saw this artifact on the series", with a percentile
  bootstrap interval resampling whole studies (:func:`qc_pipeline.modeltools.evaluation.auc_interval`).
- **PPV** of the score's flags (score above its limit: its rule's in ``thresholds/ai.yaml``, else
  the model's operating point; a score at the limit passes, as the rules judge): the share of flagged labelled series on which the reviewer confirmed the
  artifact; exact interval.
- **False-flag rate**: the share of the series labelled free of the artifact that the score flags;
  exact interval.
- **AI-only confirmed catches**: flagged series with the artifact confirmed where no objective
  finding of the same artifact was confirmed on that series: what the AI adds.

Which series count for a score ``ai.<model>.<label>`` — the label's artifact ``a`` is the one its
name implies (``thresholds/evaluation/finding_review.yaml``, ``implied``, as the reviewer's choice
starts there):

- positive: a finding on the series was confirmed with the artifact seen ``a``;
- negative: the series of an audited pass the reviewer judged clean, or a series on which a finding
  implying ``a`` was rejected and none was confirmed as ``a``;
- anything else (a series failed in an audit without a confirmed finding of ``a``, a study-level
  finding, a series with no stored score) is left out: its label for ``a`` is not known.

Pure functions: rows and scores in, figures out; the command reads the file and the database.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from qc_pipeline.modeltools.evaluation import LEVEL, auc_interval, clopper_pearson

ALL_SITES: Final = "*"
"""The site key of the figures over every site together."""

SeriesKey = tuple[str, str]
"""(StudyInstanceUID, SeriesInstanceUID)."""


@dataclass(frozen=True)
class Rate:
    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None


@dataclass(frozen=True)
class ScoreFigures:
    score: str
    """``ai.<model>.<label>``."""
    artifact: str
    site: str
    """An institution, or :data:`ALL_SITES`."""
    positives: int
    negatives: int
    studies: int
    """Distinct studies behind the labelled series (the bootstrap's effective n)."""
    auc: float | None
    auc_low: float | None
    auc_high: float | None
    ppv: Rate | None
    false_flags: Rate | None
    ai_only_catches: int

    def as_dict(self) -> dict[str, Any]:
        def rate(r: Rate | None) -> dict[str, Any] | None:
            return None if r is None else {"k": r.k, "n": r.n, "value": r.value, "low": r.low, "high": r.high}

        return {
            "score": self.score,
            "artifact": self.artifact,
            "site": self.site,
            "positives": self.positives,
            "negatives": self.negatives,
            "studies": self.studies,
            "auc": self.auc,
            "auc_low": self.auc_low,
            "auc_high": self.auc_high,
            "ppv": rate(self.ppv),
            "false_flags": rate(self.false_flags),
            "ai_only_catches": self.ai_only_catches,
        }


@dataclass
class _SeriesLabels:
    confirmed: set[str]
    """Artifacts seen (confirmed findings' reason codes)."""
    confirmed_objective: set[str]
    """Artifacts confirmed on an objective (non-AI) finding."""
    rejected: set[str]
    """Artifacts implied by rejected findings."""
    clean: bool = False


def series_labels(rows: Iterable[Mapping[str, str]], implied: Callable[[str], str]) -> dict[SeriesKey, _SeriesLabels]:
    """The per-series labels of an ``export-labels`` file (rows without a series are left out)."""
    out: dict[SeriesKey, _SeriesLabels] = {}
    for row in rows:
        series = (row.get("series_instance_uid") or "").strip()
        if not series:
            continue
        key = (row["study_instance_uid"], series)
        labels = out.setdefault(key, _SeriesLabels(set(), set(), set()))
        judgement = row.get("judgement", "")
        if judgement == "confirm":
            labels.confirmed.add(row["reason_code"])
            if not (row.get("model") or "").strip():
                labels.confirmed_objective.add(row["reason_code"])
        elif judgement == "reject":
            labels.rejected.add(implied(row.get("finding_code") or ""))
        elif judgement == "clean":
            labels.clean = True
    return out


ANY_ARTIFACT: Final = "any"
"""The artifact of an acceptability score (``...acceptability.unacceptable``): positive when any
artifact was confirmed on the series, negative when the series was judged clean."""


def artifact_of(score: str, implied: Callable[[str], str]) -> str:
    return ANY_ARTIFACT if score.endswith(".unacceptable") else implied(score)


def _label_of(labels: _SeriesLabels, artifact: str) -> int | None:
    if artifact == ANY_ARTIFACT:
        return 1 if labels.confirmed else (0 if labels.clean else None)
    if artifact in labels.confirmed:
        return 1
    if labels.clean or artifact in labels.rejected:
        return 0
    return None


def validate(
    rows: Iterable[Mapping[str, str]],
    scores: Mapping[SeriesKey, Mapping[str, float]],
    sites: Mapping[str, str],
    thresholds: Mapping[str, float],
    implied: Callable[[str], str],
    *,
    level: float = LEVEL,
) -> list[ScoreFigures]:
    """Figures per score (``thresholds``' keys: ``ai.<model>.<label>`` -> its limit) and
    site. ``scores``: the stored score values per series; ``sites``: StudyInstanceUID ->
    institution. A score with no labelled series gives no row."""
    labels = series_labels(rows, implied)
    out: list[ScoreFigures] = []
    for score, threshold in sorted(thresholds.items()):
        artifact = artifact_of(score, implied)
        by_site: dict[str, list[tuple[SeriesKey, int, float, bool]]] = defaultdict(list)
        for key, series in labels.items():
            y = _label_of(series, artifact)
            value = scores.get(key, {}).get(score)
            if y is None or value is None or not math.isfinite(value):
                continue
            objective = (
                bool(series.confirmed_objective) if artifact == ANY_ARTIFACT else artifact in series.confirmed_objective
            )
            item = (key, y, float(value), objective)
            by_site[sites.get(key[0], "")].append(item)
            by_site[ALL_SITES].append(item)
        for site in sorted(by_site, key=lambda s: (s != ALL_SITES, s)):
            out.append(_figures(score, artifact, site, by_site[site], threshold, level))
    return out


def _figures(
    score: str,
    artifact: str,
    site: str,
    items: Sequence[tuple[SeriesKey, int, float, bool]],
    threshold: float,
    level: float,
) -> ScoreFigures:
    y = [i[1] for i in items]
    p = [i[2] for i in items]
    flagged = [v > threshold for v in p]  # as the rules judge: a value at the limit passes
    studies = [i[0][0] for i in items]
    positives, negatives = sum(y), len(y) - sum(y)
    auc = auc_interval(y, p, groups=studies, level=level) if positives and negatives else None
    tp = sum(1 for f, t in zip(flagged, y, strict=True) if f and t)
    fp = sum(1 for f, t in zip(flagged, y, strict=True) if f and not t)

    def rate(k: int, n: int) -> Rate | None:
        if n == 0:
            return None
        low, high = clopper_pearson(k, n, level)
        return Rate(k, n, low, high)

    ai_only = sum(1 for (_, t, v, objective) in items if t and v > threshold and not objective)
    return ScoreFigures(
        score=score,
        artifact=artifact,
        site=site,
        positives=positives,
        negatives=negatives,
        studies=len(set(studies)),
        auc=None if auc is None else auc.estimate,
        auc_low=None if auc is None or math.isnan(auc.low) else auc.low,
        auc_high=None if auc is None or math.isnan(auc.high) else auc.high,
        ppv=rate(tp, tp + fp),
        false_flags=rate(fp, negatives),
        ai_only_catches=ai_only,
    )


def _pct(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "—"
    return f"{100 * rate.value:.0f}% ({rate.k}/{rate.n}; {100 * rate.low:.0f}–{100 * rate.high:.0f})"


def table(figures: Sequence[ScoreFigures], site_label: Callable[[str], str]) -> list[list[str]]:
    """Rows for a printed table (header first, both languages)."""
    rows = [
        [
            "AI评分 score",
            "伪影 artifact",
            "机构 site",
            "阳性/阴性 pos/neg",
            "AUC (95% CI)",
            "阳性预测值 PPV",
            "误报率 false flags",
            "仅AI检出 AI-only",
        ]
    ]
    for f in figures:
        auc = (
            "—"
            if f.auc is None
            else (f"{f.auc:.2f}" + ("" if f.auc_low is None else f" ({f.auc_low:.2f}–{f.auc_high:.2f})"))
        )
        rows.append(
            [
                f.score,
                f.artifact,
                site_label(f.site),
                f"{f.positives}/{f.negatives}",
                auc,
                _pct(f.ppv),
                _pct(f.false_flags),
                str(f.ai_only_catches),
            ]
        )
    return rows


def stored_scores(store: Any, study_uids: Iterable[str]) -> tuple[dict[SeriesKey, dict[str, float]], dict[str, str]]:
    """The AI scores of the current decisions of ``study_uids``, per series, and each study's
    institution (the register's name): what :func:`validate` joins the labels with."""
    from sqlalchemy import select

    from qc_pipeline.institutions import default_register
    from qc_pipeline.store.models import DecisionRecord, MetricRecord, StudyRecord

    canonical = default_register().canonical
    wanted = sorted(set(study_uids))
    scores: dict[SeriesKey, dict[str, float]] = defaultdict(dict)
    sites: dict[str, str] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for uid, institution, series, name, value in conn.execute(
                select(
                    StudyRecord.study_instance_uid,
                    StudyRecord.institution,
                    MetricRecord.series_instance_uid,
                    MetricRecord.name,
                    MetricRecord.value,
                )
                .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
                .join(MetricRecord, MetricRecord.decision_id == DecisionRecord.id)
                .where(
                    DecisionRecord.is_current.is_(True),
                    StudyRecord.study_instance_uid.in_(chunk),
                    MetricRecord.name.like("ai.%"),
                    MetricRecord.series_instance_uid.is_not(None),
                )
            ):
                sites[uid] = canonical(institution or "")
                scores[(uid, series)][name] = float(value)
    return dict(scores), sites


# -- calibration: what the site's labels say each score's limit should be -------------------------


@dataclass(frozen=True)
class Calibration:
    score: str
    artifact: str
    clean: int
    """Clean (negative) labelled series behind the conformal threshold."""
    positives: int
    false_flag_rate: float
    """The target: at most this share of clean series flagged."""
    threshold: float | None
    """Flag when the score is above it; None when the clean series are too few for the target."""
    why_none: str | None
    isotonic: tuple[tuple[float, float], ...]
    """(score, probability) breakpoints of the isotonic fit; empty without both classes."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "artifact": self.artifact,
            "clean_series": self.clean,
            "positive_series": self.positives,
            "false_flag_rate": self.false_flag_rate,
            "threshold": self.threshold,
            "why_no_threshold": self.why_none,
            "isotonic": [list(p) for p in self.isotonic],
        }


def conformal_threshold(clean_scores: Sequence[float], false_flag_rate: float) -> float | None:
    """The split-conformal limit for clean series: with the n clean scores sorted, the
    ceil((n + 1)(1 - a))-th smallest; a new clean series from the same site then scores above it
    with probability at most ``a`` (Vovk et al. 2005; Angelopoulos & Bates 2021, eq. 1). None when
    that rank exceeds n: the clean series are too few for the rate asked (n < 1/a - 1)."""
    if not 0 < false_flag_rate < 1:
        raise ValueError(f"the false-flag rate must be between 0 and 1, got {false_flag_rate}")
    ordered = sorted(clean_scores)
    rank = math.ceil((len(ordered) + 1) * (1 - false_flag_rate))
    return None if rank > len(ordered) else float(ordered[rank - 1])


def calibrate(
    rows: Iterable[Mapping[str, str]],
    scores: Mapping[SeriesKey, Mapping[str, float]],
    score_names: Iterable[str],
    implied: Callable[[str], str],
    *,
    false_flag_rate: float = 0.05,
) -> list[Calibration]:
    """Per score: the conformal threshold of its clean series and an isotonic fit of P(artifact |
    score) where both classes are labelled (sklearn ``IsotonicRegression``, clipped to [0, 1])."""
    from sklearn.isotonic import IsotonicRegression

    labels = series_labels(rows, implied)
    out = []
    for score in sorted(set(score_names)):
        artifact = artifact_of(score, implied)
        pairs = [
            (y, float(v))
            for key, series in labels.items()
            if (y := _label_of(series, artifact)) is not None
            and (v := scores.get(key, {}).get(score)) is not None
            and math.isfinite(v)
        ]
        if not pairs:
            continue
        clean = [v for y, v in pairs if y == 0]
        positives = len(pairs) - len(clean)
        threshold = conformal_threshold(clean, false_flag_rate) if clean else None
        why = None
        if threshold is None:
            needed = math.ceil(1 / false_flag_rate - 1)
            why = f"{len(clean)} clean series; a false-flag rate of {false_flag_rate:g} needs at least {needed}"
        points: tuple[tuple[float, float], ...] = ()
        if clean and positives:
            fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                [v for _, v in pairs], [y for y, _ in pairs]
            )
            points = tuple((float(x), float(y)) for x, y in zip(fit.X_thresholds_, fit.y_thresholds_, strict=True))
        out.append(Calibration(score, artifact, len(clean), positives, false_flag_rate, threshold, why, points))
    return out
