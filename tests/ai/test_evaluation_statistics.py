"""The statistics of the evaluation against independent computations (scipy, sklearn, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import zoom
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import roc_auc_score

from qc_pipeline.modeltools import dataset
from qc_pipeline.modeltools.evaluation import (
    LEAKAGE_LIMIT,
    auc_interval,
    clopper_pearson,
    false_flags_by_image,
    leakage,
    per_source,
)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 2), (1, 2), (3, 17), (17, 17), (40, 300)])
def test_clopper_pearson_is_scipys_exact_binomial_interval(k, n):
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_clopper_pearson_refuses_impossible_counts():
    with pytest.raises(ValueError, match="need 0 <= k <= n"):
        clopper_pearson(3, 2)


def test_false_flags_count_distinct_images_not_crops():
    # 300 crops of 3 images; 5 crops of image B flagged: 1 image of 3, not 5 of 300
    images = ["A"] * 100 + ["B"] * 100 + ["C"] * 100
    flagged = [False] * 300
    for i in range(100, 105):
        flagged[i] = True
    rate = false_flags_by_image(images, flagged)
    expected = binomtest(1, 3).proportion_ci(confidence_level=0.95, method="exact")
    assert (rate.estimate, rate.n) == (pytest.approx(1 / 3), 3)
    assert (rate.low, rate.high) == pytest.approx((expected.low, expected.high))
    none = false_flags_by_image(["A", "A", "B"], [False, False, False])
    assert (none.estimate, none.n, none.low) == (0.0, 2, 0.0) and none.high == pytest.approx(1 - 0.025**0.5)


def scores(n_pos: int, n_neg: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    p = np.r_[rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)].round(1)  # rounded: ties
    return y, p


def test_auc_interval_estimate_is_sklearns_and_the_bootstrap_is_seeded():
    y, p = scores(40, 60, 1.0, 1)
    a = auc_interval(y, p, n_boot=500)
    assert a.estimate == pytest.approx(roc_auc_score(y, p))
    assert a.low < a.estimate < a.high and a.n == 100
    assert auc_interval(y, p, n_boot=500) == a  # the same seed, the same interval
    assert auc_interval(y, p, n_boot=500, seed=7) != a


def test_auc_interval_agrees_with_scipys_percentile_bootstrap():
    y, p = scores(60, 90, 0.8, 2)
    ours = auc_interval(y, p, n_boot=3000)
    theirs = bootstrap(
        (y, p),
        lambda yy, pp: roc_auc_score(yy, pp),
        paired=True,
        vectorized=False,
        n_resamples=3000,
        method="percentile",
        random_state=np.random.default_rng(3),
    ).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.02) and ours.high == pytest.approx(theirs.high, abs=0.02)


def test_grouped_bootstrap_counts_crops_of_one_image_once():
    # 10 images, each seen as 20 near-identical crops: 200 rows but 10 independent draws
    y1, p1 = scores(5, 5, 1.0, 4)
    y, p = np.repeat(y1, 20), np.repeat(p1, 20) + np.random.default_rng(5).normal(0, 0.01, 200)
    images = np.repeat(np.arange(10), 20)
    naive, grouped = auc_interval(y, p, n_boot=500), auc_interval(y, p, groups=images, n_boot=500)
    assert (naive.n, grouped.n) == (200, 10)
    assert grouped.estimate == naive.estimate == pytest.approx(roc_auc_score(y, p))
    assert grouped.high - grouped.low > 2 * (naive.high - naive.low)


def test_per_source_reports_each_real_source_the_worst_fold_and_phantoms_apart():
    y_good, p_good = scores(30, 30, 3.0, 6)
    y_poor, p_poor = scores(30, 30, 0.3, 7)
    y_ph, p_ph = scores(30, 30, 0.0, 8)  # phantoms worst of all: still never the worst fold
    y_one = np.ones(5, int)  # a source with positives only: no fold
    y = np.r_[y_good, y_poor, y_ph, y_one]
    p = np.r_[p_good, p_poor, p_ph, np.zeros(5)]
    sources = ["good"] * 60 + ["poor"] * 60 + ["phantom-1"] * 60 + ["one"] * 5
    real = [True] * 120 + [False] * 60 + [True] * 5
    figures = per_source(y, p, sources, real, n_boot=300)
    assert set(figures.folds) == {"good", "poor"} and figures.worst == "poor"
    assert figures.folds["poor"].estimate == pytest.approx(roc_auc_score(y_poor, p_poor))
    assert figures.folds["good"].estimate == pytest.approx(roc_auc_score(y_good, p_good))
    assert figures.phantoms is not None and figures.phantoms.estimate == pytest.approx(roc_auc_score(y_ph, p_ph))
    assert figures.phantoms.n == 60


def test_leakage_finds_near_copies_with_numpys_correlation():
    rng = np.random.default_rng(9)
    training = [rng.normal(size=(32, 32)) for _ in range(4)]
    copy = training[2] + rng.normal(0, 0.1, (32, 32))  # r ~ 0.995
    other = rng.normal(size=(32, 32))
    found = leakage([other, copy, np.zeros((32, 32))], training)
    assert [(i, j) for i, j, _ in found] == [(1, 2)]
    assert found[0][2] == pytest.approx(np.corrcoef(copy.ravel(), training[2].ravel())[0, 1])
    assert leakage([other], training, limit=0.0)[0][2] == pytest.approx(
        max(np.corrcoef(other.ravel(), t.ravel())[0, 1] for t in training)
    )


def on_grid(source: dataset.SourceImage, n: int = 64) -> np.ndarray:
    image = source.image.astype(np.float64)
    return zoom(image, (n / image.shape[0], n / image.shape[1]), order=1)


@pytest.mark.parametrize("modality", ["DR", "CT", "MR"])
def test_no_held_out_real_image_is_a_near_copy_of_a_training_image(modality):
    train = [on_grid(s) for s in dataset.load_sources(modality, "train") if s.real]
    test = [on_grid(s) for s in dataset.load_sources(modality, "test") if s.real]
    assert test and train
    assert leakage(test, train, limit=LEAKAGE_LIMIT) == []


def test_held_out_phantoms_are_near_copies_of_training_phantoms_so_they_stay_out_of_the_gate():
    """Measured: every held-out MR phantom correlates >= 0.95 with a training phantom (same
    anatomy, other noise); their figures test memory and are reported apart."""
    train = [on_grid(s) for s in dataset.load_sources("MR", "train") if not s.real]
    test = [on_grid(s) for s in dataset.load_sources("MR", "test") if not s.real]
    assert len(leakage(test, train)) == len(test)


def test_label_figures_carry_the_real_folds_the_worst_fold_phantoms_apart_and_effective_n():
    from qc_pipeline.modeltools.evaluation import _at_limit

    y_a, p_a = scores(20, 20, 3.0, 10)
    y_b, p_b = scores(20, 20, 0.2, 11)
    y_ph, p_ph = scores(20, 20, 2.0, 12)
    y, p = np.r_[y_a, y_b, y_ph], np.r_[p_a, p_b, p_ph]
    real = np.r_[np.ones(80, bool), np.zeros(40, bool)]
    images = ["A.dcm#0"] * 40 + ["B.dcm#0"] * 20 + ["B.dcm#1"] * 20 + [f"phantom-{i}" for i in range(40)]
    m = _at_limit(y, p, (0.5, False), real, images)
    assert set(m["real_folds"]) == {"A.dcm", "B.dcm"} and m["worst_fold"] == "B.dcm"
    assert m["real_folds"]["B.dcm"]["auc"] == pytest.approx(roc_auc_score(y_b, p_b))
    assert m["auc_lower_95_worst_fold"] == m["real_folds"]["B.dcm"]["low"] < m["real_folds"]["A.dcm"]["low"]
    assert m["phantoms"]["auc"] == pytest.approx(roc_auc_score(y_ph, p_ph))
    assert m["effective_n_real_images"] == 3  # A.dcm#0, B.dcm#0, B.dcm#1: not 80 crops


def test_ai_only_catches_count_faulty_real_images_the_objective_rule_misses():
    from qc_pipeline.modeltools.evaluation import ai_only_catches

    y = np.array([1, 1, 1, 1, 0, 1])
    p = np.array([0.9, 0.9, 0.2, 0.9, 0.9, 0.9])
    metric = np.array([10.0, 50.0, 10.0, np.nan, 10.0, 10.0])  # an unmeasured value flags nothing
    real = np.array([True, True, True, True, True, False])
    images = ["a", "b", "c", "a", "d", "phantom"]
    # 0: AI only; 1: both; 2: AI misses; 3: AI only (same image a); 4: clean; 5: phantom
    assert ai_only_catches(y, p, 0.5, metric, 35.0, "above", real, images) == {"crops": 2, "images": 1}
    # without an enabled objective rule every AI catch on a faulty real image is an AI-only catch
    assert ai_only_catches(y, p, 0.5, metric, None, "above", real, images) == {"crops": 3, "images": 2}
    # below 20 flags crops 0 (10); crop 1 (50) and crop 3 (unmeasured) are then caught by the AI only
    assert ai_only_catches(y, p, 0.5, metric, 20.0, "below", real, images) == {"crops": 2, "images": 2}


def test_series_level_scores_each_clean_held_out_real_file_whole_as_the_flow_does():
    from qc_pipeline.ai.preprocess import model_input
    from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR
    from qc_pipeline.ai.runtime import Scorer
    from qc_pipeline.modeltools.evaluation import series_level_clean

    scorer = Scorer.load(DEFAULT_MODELS_DIR)
    limits = {"ai.ct_artifacts.streaks": (0.5, False), "ai.ct_artifacts.motion": (0.99, True)}
    out = series_level_clean(scorer, "CT", limits)
    real = [s for s in dataset.load_sources("CT", "test") if s.real]
    assert set(out["files"]) == {s.name.split("#")[0] for s in real}
    for source in real:  # one frame per held-out CT file: its score is the model on the whole native image
        x = model_input(np.asarray(source.image, dtype=np.float32), "CT", stored_range=None)[None]
        direct = scorer.run("ct_artifacts", x)[0]
        got = out["files"][source.name.split("#")[0]]
        assert got["ai.ct_artifacts.streaks"] == pytest.approx(float(direct[1]), abs=1e-6)
    assert set(out["flagged"]) == set(limits)  # only scores with a rule
    k = sum(v["ai.ct_artifacts.streaks"] > 0.5 for v in out["files"].values())
    flagged = out["flagged"]["ai.ct_artifacts.streaks"]
    expected = binomtest(k, len(real)).proportion_ci(confidence_level=0.95, method="exact")
    assert (flagged["rate"], flagged["n"]) == (k / len(real), len(real))
    assert (flagged["low"], flagged["high"]) == pytest.approx((expected.low, expected.high))
