"""Agreement statistics against independent implementations (scikit-learn, statsmodels) and
hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.spotcheck.stats import cohen_kappa, confusion, weighted_share, wilson

TABLES = [
    [[20, 5], [10, 15]],  # po 0.7, pe 0.5 -> kappa 0.4 (hand-computed)
    [[45, 15], [25, 15]],  # Wikipedia's "Cohen's kappa" worked example: kappa 0.1304
    [[88, 14, 18], [10, 40, 10], [2, 6, 12]],
    [[11, 3, 1, 0], [2, 9, 4, 1], [0, 3, 7, 2], [1, 0, 2, 6]],
    [[0, 4], [6, 0]],  # complete disagreement: kappa < 0
]


def ratings(table: list[list[int]]) -> tuple[list[int], list[int]]:
    """Rater-1 and rater-2 labels reproducing a contingency table (for scikit-learn)."""
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [i] * count
            b += [j] * count
    return a, b


def test_kappa_of_hand_computed_tables() -> None:
    k = cohen_kappa([[20, 5], [10, 15]])
    assert (k.observed_agreement, k.expected_agreement) == pytest.approx((0.7, 0.5), abs=1e-15)
    assert k.kappa == pytest.approx(0.4, abs=1e-15)
    assert cohen_kappa([[45, 15], [25, 15]]).kappa == pytest.approx(0.1304, abs=5e-5)  # Wikipedia, 4 decimals


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_se_and_interval_match_statsmodels_and_sklearn(table, weights) -> None:
    ours = cohen_kappa(table, weights=weights)
    # statsmodels: the same asymptotic variance (Fleiss, Cohen & Everitt 1969) and a normal CI;
    # wt=None with weights=None is unweighted, "linear"/"quadratic" build the same weight matrices.
    ref = cohens_kappa(np.asarray(table), wt=weights) if weights else cohens_kappa(np.asarray(table))
    assert ours.kappa == pytest.approx(ref.kappa, rel=1e-12, abs=1e-12)
    assert ours.se == pytest.approx(ref.std_kappa, rel=1e-9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ref.kappa_low, ref.kappa_upp), rel=1e-9, abs=1e-12)
    # scikit-learn: the point estimate from raw labels (it has no standard error)
    a, b = ratings(table)
    assert ours.kappa == pytest.approx(cohen_kappa_score(a, b, weights=weights), rel=1e-12, abs=1e-12)


def test_kappa_interval_level_follows_alpha() -> None:
    k95, k99 = cohen_kappa(TABLES[2]), cohen_kappa(TABLES[2], alpha=0.01)
    assert k99.ci_low < k95.ci_low < k95.kappa < k95.ci_high < k99.ci_high
    assert (k95.ci_high - k95.kappa) / k95.se == pytest.approx(1.959963984540054, rel=1e-12)  # z(0.975)


def test_kappa_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(DegenerateInputError, match=r"same category \(expected agreement 1\)"):
        cohen_kappa([[7, 0], [0, 0]])
    with pytest.raises(DegenerateInputError, match="the table is empty"):
        cohen_kappa([[0, 0], [0, 0]])
    with pytest.raises(ValueError, match=r"square with at least 2 categories, got shape \(2, 3\)"):
        cohen_kappa([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="finite, non-negative counts"):
        cohen_kappa([[1, -2], [3, 4]])
    with pytest.raises(ValueError, match="weights must be None, 'linear' or 'quadratic', got 'cubic'"):
        cohen_kappa([[1, 2], [3, 4]], weights="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        cohen_kappa([[1, 2], [3, 4]], alpha=5)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 13), (60, 70), (10, 10), (1, 1), (500, 1000)])
def test_wilson_matches_statsmodels(k, n) -> None:
    ours = wilson(k, n)
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (ours.ci_low, ours.ci_high) == pytest.approx((low, high), rel=1e-9, abs=1e-12)
    assert ours.p == k / n


def test_proportion_errors_and_confusion() -> None:
    with pytest.raises(DegenerateInputError, match=r"a proportion of 0 cases is undefined \(k=0, n=0\)"):
        wilson(0, 0)
    with pytest.raises(ValueError, match="k must be between 0 and n=3, got 4"):
        wilson(4, 3)
    assert confusion([True, True, False, False, True], [True, False, True, False, True]) == (2, 1, 1, 1)
    with pytest.raises(ValueError, match=r"differ in length \(2 vs 1\)"):
        confusion([True, False], [True])
    assert weighted_share([True, False, True], [1.0, 2.0, 1.0]) == 0.5
    with pytest.raises(DegenerateInputError, match="no weight"):
        weighted_share([], [])
