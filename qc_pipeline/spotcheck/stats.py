"""Agreement statistics: pure functions, counts in, numbers out; no I/O, no rounding.

- Cohen's kappa (unweighted or weighted) with its large-sample standard error and a normal
  confidence interval: Fleiss, Cohen & Everitt (1969), Psychol. Bull. 72:323, eq. for the
  variance under the alternative; the same formula as SAS PROC FREQ and
  ``statsmodels.stats.inter_rater.cohens_kappa`` (the tests compare with it and with
  ``sklearn.metrics.cohen_kappa_score``).
- Proportions (sensitivity, specificity, discordance, yield) with the Wilson score interval:
  Wilson (1927), JASA 22:209; recommended over the Wald interval for small n and proportions near
  0 or 1 (Brown, Cai & DasGupta 2001, Stat. Sci. 16:101).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

from qc_pipeline.errors import DegenerateInputError

MIN_KAPPA_N = 10
"""Fewest cases for which a kappa and its interval are shown. Site default, not from a standard: the
interval uses the large-sample standard error, which says nothing useful on a handful of cases
(n = 3 gave "0.00 (0.00–0.00)")."""

KappaWeights = Literal["linear", "quadratic"] | None


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (e.g. 0.05 for a 95 % interval), got {alpha}")
    return NormalDist().inv_cdf(1 - alpha / 2)


@dataclass(frozen=True, slots=True)
class Kappa:
    kappa: float
    se: float
    """Large-sample standard error under the alternative (for the confidence interval)."""
    ci_low: float
    ci_high: float
    n: float
    observed_agreement: float
    expected_agreement: float


def cohen_kappa(table: npt.ArrayLike, *, weights: KappaWeights = None, alpha: float = 0.05) -> Kappa:
    """Cohen's kappa of a square contingency table (rows: rater 1, columns: rater 2, categories
    in the same order; for weights, that order is the ordinal scale).

    kappa = (p_o - p_e) / (1 - p_e) with agreement weights w_ij (1 on the diagonal; linear
    1 - |i-j|/(k-1), quadratic 1 - (i-j)^2/(k-1)^2), p_o = sum w_ij p_ij, p_e = sum w_ij p_i. p_.j;
    Var = [sum p_ij (w_ij - (wbar_i. + wbar_.j)(1 - kappa))^2 - (kappa - p_e(1 - kappa))^2]
          / (n (1 - p_e)^2), wbar_i. = sum_j w_ij p_.j, wbar_.j = sum_i w_ij p_i.
    CI: kappa +/- z_(1-alpha/2) * SE. Raises DegenerateInputError when kappa is undefined
    (p_e = 1: both raters used one and the same category only) or the table is empty.
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise ValueError(f"table must be square with at least 2 categories, got shape {t.shape}")
    if (t < 0).any() or not np.isfinite(t).all():
        raise ValueError("table must hold finite, non-negative counts")
    n = float(t.sum())
    if n == 0:
        raise DegenerateInputError("no ratings: the table is empty")
    k = t.shape[0]
    idx = np.arange(k, dtype=float)
    if weights is None:
        w = np.eye(k)
    elif weights == "linear":
        w = 1 - np.abs(idx[:, None] - idx[None, :]) / (k - 1)
    elif weights == "quadratic":
        w = 1 - (idx[:, None] - idx[None, :]) ** 2 / (k - 1) ** 2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    p = t / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    po = float((w * p).sum())
    pe = float((w * np.outer(rows, cols)).sum())
    if math.isclose(pe, 1.0, abs_tol=1e-12):
        raise DegenerateInputError(
            "kappa is undefined: both raters put every study in the same category (expected agreement 1)"
        )
    kappa = (po - pe) / (1 - pe)
    wbar_row = w @ cols  # wbar_i.
    wbar_col = rows @ w  # wbar_.j
    term = (p * (w - (wbar_row[:, None] + wbar_col[None, :]) * (1 - kappa)) ** 2).sum()
    var = (term - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    se = math.sqrt(max(float(var), 0.0))
    z = _z(alpha)
    return Kappa(kappa, se, kappa - z * se, kappa + z * se, n, po, pe)


@dataclass(frozen=True, slots=True)
class Proportion:
    k: int
    n: int
    p: float
    ci_low: float
    ci_high: float


def wilson(k: int, n: int, *, alpha: float = 0.05) -> Proportion:
    """``k`` of ``n`` with the Wilson score interval:
    (p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    if n <= 0:
        raise DegenerateInputError(f"a proportion of 0 cases is undefined (k={k}, n={n})")
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n={n}, got {k}")
    z = _z(alpha)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Proportion(k, n, p, max(0.0, centre - half), min(1.0, centre + half))


def confusion(reference: Sequence[bool], test: Sequence[bool]) -> tuple[int, int, int, int]:
    """(true positives, false negatives, false positives, true negatives) of ``test`` against
    ``reference`` (True = positive)."""
    if len(reference) != len(test):
        raise ValueError(f"reference and test differ in length ({len(reference)} vs {len(test)})")
    tp = sum(r and t for r, t in zip(reference, test, strict=True))
    fn = sum(r and not t for r, t in zip(reference, test, strict=True))
    fp = sum(t and not r for r, t in zip(reference, test, strict=True))
    return tp, fn, fp, len(reference) - tp - fn - fp


def weighted_share(flags: Sequence[bool], weights: Sequence[float]) -> float:
    """sum(w where flag) / sum(w): a proportion weighted back to the population
    (Horvitz-Thompson with w = stratum population / stratum sample)."""
    total = float(sum(weights))
    if total <= 0:
        raise DegenerateInputError("no weight: nothing to estimate from")
    return float(sum(w for f, w in zip(flags, weights, strict=True) if f)) / total
