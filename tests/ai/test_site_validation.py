"""Per-site validation of the AI scores against reviewers' per-finding labels (pure part)."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from qc_pipeline.modeltools.site_validation import ALL_SITES, series_labels, table, validate

NOISE = "ai.ct_artifacts.excess_noise"
ACCEPT = "ai.ct_acceptability.unacceptable"


def implied(code: str) -> str:
    parts = set(code.split("."))
    for artifact, words in (("noise", {"excess_noise", "noise"}), ("streaks", {"streaks"})):
        if parts & words:
            return artifact
    return "other"


def row(study: str, series: str, judgement: str, reason: str = "", code: str = "", model: str = "") -> dict[str, str]:
    return {
        "study_instance_uid": study,
        "series_instance_uid": series,
        "judgement": judgement,
        "reason_code": reason,
        "finding_code": code,
        "model": model,
    }


def site_data():
    # Site A: 4 noisy series confirmed (2 by an AI finding only, 2 also by the objective noise
    # finding), 1 AI noise flag rejected, 5 audited clean series. Site B: 1 confirmed, 2 clean.
    rows = [
        row("a1", "s1", "confirm", "noise", NOISE, "ct_artifacts@1"),
        row("a2", "s1", "confirm", "noise", NOISE, "ct_artifacts@1"),
        row("a3", "s1", "confirm", "noise", "image_quality.ct.noise.review"),
        row("a4", "s1", "confirm", "noise", "image_quality.ct.noise.review"),
        row("a5", "s1", "reject", "other", NOISE, "ct_artifacts@1"),
        *(row(f"a{6 + i}", "s1", "clean") for i in range(5)),
        row("b1", "s1", "confirm", "noise", NOISE, "ct_artifacts@1"),
        row("b2", "s1", "clean"),
        row("b3", "s1", "clean"),
        row("a1", "", "confirm", "noise", "image_quality.ct.noise.review"),  # study-level: no series, left out
        row("a6", "s2", "not_clean"),  # failed audit without a confirmed finding: unknown, left out
    ]
    noise = {
        "a1": 0.9,
        "a2": 0.7,
        "a3": 0.4,
        "a4": 0.95,
        "a5": 0.8,
        "a6": 0.1,
        "a7": 0.2,
        "a8": 0.6,
        "a9": 0.05,
        "a10": 0.3,
        "b1": 0.2,
        "b2": 0.1,
        "b3": 0.7,
    }
    scores = {(s, "s1"): {NOISE: v, ACCEPT: v / 2} for s, v in noise.items()}
    scores[("a6", "s2")] = {NOISE: 0.99}
    sites = {s: ("医院A" if s.startswith("a") else "医院B") for s in noise}
    return rows, scores, sites


def test_figures_per_site_match_independent_computations():
    rows, scores, sites = site_data()
    figures = {(f.score, f.site): f for f in validate(rows, scores, sites, {NOISE: 0.5}, implied)}
    a = figures[(NOISE, "医院A")]
    assert (a.positives, a.negatives, a.studies) == (4, 6, 10)  # a5 (rejected) and 5 clean are negatives
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.7, 0.4, 0.95, 0.8, 0.1, 0.2, 0.6, 0.05, 0.3]
    assert a.auc == pytest.approx(roc_auc_score(y, p))
    assert a.auc_low is not None and a.auc_low <= a.auc <= a.auc_high
    # flags (>= 0.5): a1 a2 a4 true, a5 a8 false -> PPV 3/5, false flags 2/6
    assert (a.ppv.k, a.ppv.n) == (3, 5) and (a.false_flags.k, a.false_flags.n) == (2, 6)
    expected = binomtest(2, 6).proportion_ci(confidence_level=0.95, method="exact")
    assert (a.false_flags.low, a.false_flags.high) == pytest.approx((expected.low, expected.high))
    # AI-only: flagged and confirmed, no objective finding confirmed as noise on the series: a1, a2 (a4 had one)
    assert a.ai_only_catches == 2
    b = figures[(NOISE, "医院B")]
    assert (b.positives, b.negatives, b.ppv.k, b.ppv.n, b.false_flags.k) == (1, 2, 0, 1, 1)
    both = figures[(NOISE, ALL_SITES)]
    assert (both.positives, both.negatives) == (5, 8)


def test_acceptability_counts_any_confirmed_artifact_and_clean_series():
    rows, scores, sites = site_data()
    (f,) = [f for f in validate(rows, scores, sites, {ACCEPT: 0.3}, implied) if f.site == ALL_SITES]
    assert f.artifact == "any"
    assert (f.positives, f.negatives) == (5, 7)  # a5's rejected finding says nothing of other artifacts


def test_a_score_without_labelled_series_gives_no_figures_and_the_table_is_bilingual():
    rows, scores, sites = site_data()
    assert validate(rows, scores, sites, {"ai.ct_artifacts.streaks": 0.5}, implied) == []
    figures = validate(rows, scores, sites, {NOISE: 0.5}, implied)
    printed = table(figures, lambda s: "全部 all" if s == ALL_SITES else s)
    assert printed[0][0] == "AI评分 score" and printed[1][2] == "全部 all"
    assert printed[2][6].startswith("33% (2/6;")


def test_labels_of_one_series_combine():
    labels = series_labels(
        [
            row("x", "s", "confirm", "noise", NOISE, "m@1"),
            row("x", "s", "confirm", "noise", "obj"),
            row("x", "s", "reject", "other", "ai.ct_artifacts.streaks", "m@1"),
        ],
        implied,
    )
    (one,) = labels.values()
    assert one.confirmed == {"noise"} and one.confirmed_objective == {"noise"} and one.rejected == {"streaks"}


def test_the_conformal_limit_is_the_right_order_statistic_and_says_when_there_are_too_few():
    from qc_pipeline.modeltools.site_validation import conformal_threshold

    clean = [0.1 * i for i in range(10, 0, -1)]  # 1.0 ... 0.1, unordered on purpose
    assert conformal_threshold(clean, 0.2) == pytest.approx(0.9)  # ceil(11 * 0.8) = 9th smallest
    assert conformal_threshold(clean, 0.1) == pytest.approx(1.0)  # ceil(11 * 0.9) = 10th
    assert conformal_threshold(clean, 0.05) is None  # ceil(11 * 0.95) = 11 > 10 clean series
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal_threshold(clean, 0.0)
    # the guarantee, empirically: new clean scores from the same distribution exceed it at most ~a
    import numpy as np

    rng = np.random.default_rng(5)
    limit = conformal_threshold(list(rng.normal(size=199)), 0.1)
    assert float(np.mean(rng.normal(size=200_000) > limit)) <= 0.1 + 0.005


def test_calibration_gives_a_limit_per_score_and_an_isotonic_fit_where_both_classes_are_labelled():
    from qc_pipeline.modeltools.site_validation import calibrate

    rows, scores, sites = site_data()
    (noise,) = calibrate(rows, scores, [NOISE], implied, false_flag_rate=0.2)
    # 8 clean series (a5 rejected, a6-a10, b2, b3): ceil(9 * 0.8) = 8th smallest of their scores
    clean = sorted([0.8, 0.1, 0.2, 0.6, 0.05, 0.3, 0.1, 0.7])
    assert (noise.clean, noise.positives, noise.threshold) == (8, 5, pytest.approx(clean[7]))
    assert noise.isotonic and all(0 <= p <= 1 for _, p in noise.isotonic)
    assert [p for _, p in noise.isotonic] == sorted(p for _, p in noise.isotonic)  # monotone
    (strict,) = calibrate(rows, scores, [NOISE], implied, false_flag_rate=0.05)
    assert strict.threshold is None and "8 clean series; a false-flag rate of 0.05 needs at least 19" == strict.why_none
