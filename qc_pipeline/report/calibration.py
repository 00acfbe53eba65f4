"""Calibrate site limits from the stored population of image-quality measurements.

AAPM TG-232 (2019) asks a site to set its own DR exposure action limits from its own DI
distribution (e.g. at +/- 1 SD and +/- 2 SD of the mean); the same reasoning applies to any metric
whose "normal" depends on scanners and protocols (patient CT noise differs 15-35 % between
scanners, Christianson et al. AJR 2015). This module turns rows of
:meth:`qc_pipeline.store.ResultStore.measurements` into per-group distributions and proposed
limits; ``notebooks/calibration.ipynb`` shows them. Nothing here changes ``thresholds/``: a QC
centre copies a proposal into its YAML after review, with the notebook run as its source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from qc_pipeline.rules.schema import Rule

MIN_GROUP_SIZE: Final = 5
"""Fewer values than this give no proposal: a SD or a percentile of 4 numbers is noise."""

GroupKey = Literal["modality", "item_code", "institution"]
Method = Literal["sd", "percentile"]


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of one metric's values in one group (e.g. metric ct.noise_hu, item YB-036)."""

    metric: str
    group: str
    n: int
    mean: float
    sd: float
    """Sample standard deviation (ddof=1); 0 for a single value."""
    p05: float
    median: float
    p95: float
    minimum: float
    maximum: float


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed limit for an existing rule, from one group's distribution."""

    rule_id: str
    metric: str
    group: str
    when: str
    current_limit: float
    proposed_limit: float
    method: str
    n: int
    share_beyond_current: float
    """Share of the group's values that the current limit flags (0..1)."""


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return array[np.isfinite(array)]


def distribution(metric: str, group: str, values: Iterable[float]) -> Distribution:
    """Mean, SD (ddof=1), 5th/50th/95th percentiles (linear interpolation), min and max."""
    array = _finite(values)
    if array.size == 0:
        raise ValueError(f"no finite values for metric {metric!r} in group {group!r}")
    p05, median, p95 = np.percentile(array, [5, 50, 95])
    return Distribution(
        metric=metric,
        group=group,
        n=int(array.size),
        mean=float(array.mean()),
        sd=float(array.std(ddof=1)) if array.size > 1 else 0.0,
        p05=float(p05),
        median=float(median),
        p95=float(p95),
        minimum=float(array.min()),
        maximum=float(array.max()),
    )


def distributions(rows: Sequence[Mapping[str, Any]], *, by: GroupKey) -> list[Distribution]:
    """One distribution per (metric, group) of measurement rows, sorted by metric then group."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        key = (str(row["metric"]), str(row.get(by) or "?"))
        groups.setdefault(key, []).append(row["value"])
    return [distribution(metric, group, values) for (metric, group), values in sorted(groups.items())]


def action_limit(
    values: Iterable[float], *, when: str, method: Method = "sd", k: float = 2.0, percentile: float = 97.5
) -> float:
    """A one-sided action limit from a site's own values.

    ``sd``: mean + k*SD for a rule that fires above, mean - k*SD below (TG-232's +/- 2 SD).
    ``percentile``: the ``percentile``-th percentile above, the (100 - ``percentile``)-th below,
    for skewed metrics where a SD means little.
    """
    array = _finite(values)
    if array.size < MIN_GROUP_SIZE:
        raise ValueError(f"{array.size} values: an action limit needs at least {MIN_GROUP_SIZE}")
    if when not in ("above", "below"):
        raise ValueError(f"when must be 'above' or 'below', got {when!r}")
    if method == "sd":
        sd = float(array.std(ddof=1))
        mean = float(array.mean())
        return mean + k * sd if when == "above" else mean - k * sd
    if method == "percentile":
        if not 50.0 < percentile < 100.0:
            raise ValueError(f"percentile must be in (50, 100), got {percentile!r}")
        q = percentile if when == "above" else 100.0 - percentile
        return float(np.percentile(array, q))
    raise ValueError(f"method must be 'sd' or 'percentile', got {method!r}")


def propose_limits(
    rows: Sequence[Mapping[str, Any]],
    rules: Iterable[Rule],
    *,
    by: GroupKey = "modality",
    method: Method = "sd",
    k: float = 2.0,
) -> list[Proposal]:
    """For every review-level rule on a measured metric, a limit per group with enough values.

    Fail-level rules are not proposed: "no radiologist would accept" is not a property of a
    site's distribution.
    """
    proposals = []
    by_metric: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        by_metric.setdefault(str(row["metric"]), {}).setdefault(str(row.get(by) or "?"), []).append(row["value"])
    for rule in rules:
        if rule.metric is None or rule.when is None or rule.limit is None or str(rule.severity) != "review":
            continue
        for group, values in sorted(by_metric.get(rule.metric, {}).items()):
            array = _finite(values)
            if array.size < MIN_GROUP_SIZE:
                continue
            limit = action_limit(array, when=rule.when, method=method, k=k)
            beyond = array > rule.limit if rule.when == "above" else array < rule.limit
            proposals.append(
                Proposal(
                    rule_id=rule.id,
                    metric=rule.metric,
                    group=group,
                    when=rule.when,
                    current_limit=rule.limit,
                    proposed_limit=limit,
                    method=f"mean {'+' if rule.when == 'above' else '-'} {k:g} SD" if method == "sd" else "percentile",
                    n=int(array.size),
                    share_beyond_current=float(beyond.mean()),
                )
            )
    return proposals


def proposals_yaml(proposals: Sequence[Proposal], *, source: str) -> str:
    """The proposals as ``per_item`` / limit lines to paste into a thresholds file after review."""
    lines = [f"# proposed by qc_pipeline.report.calibration; source: {source}"]
    for p in proposals:
        limit = float(f"{p.proposed_limit:.3g}") if math.isfinite(p.proposed_limit) else p.proposed_limit
        lines.append(
            f"# {p.rule_id} ({p.metric} {p.when}), group {p.group}: n={p.n}, {p.method} -> {limit:g} "
            f"(now {p.current_limit:g}, flags {100 * p.share_beyond_current:.0f} %)"
        )
    return "\n".join(lines) + "\n"
