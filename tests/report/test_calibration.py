"""Site action limits from a population of measurements (TG-232 style)."""

from __future__ import annotations

import numpy as np
import pytest

from qc_pipeline.report.calibration import action_limit, distribution, distributions, proposals_yaml, propose_limits
from qc_pipeline.rules.schema import Rule


def _rule(severity: str = "review", when: str = "above", limit: float = 30.0) -> Rule:
    return Rule(
        id=f"image_quality.ct.noise.{severity}",
        severity=severity,
        units="HU",
        source="test",
        description="test rule",
        metric="ct.noise_hu",
        when=when,
        limit=limit,
    )


def test_distribution_matches_numpy():
    values = np.random.default_rng(4).normal(12.0, 3.0, 200)
    d = distribution("ct.noise_hu", "CT", values)
    assert d.n == 200
    assert d.mean == pytest.approx(float(values.mean()))
    assert d.sd == pytest.approx(float(values.std(ddof=1)))
    assert (d.p05, d.median, d.p95) == pytest.approx(tuple(np.percentile(values, [5, 50, 95])))
    assert d.minimum == values.min() and d.maximum == values.max()


def test_distribution_ignores_non_finite_and_refuses_empty():
    assert distribution("m.x", "g", [1.0, float("nan"), 3.0, float("inf")]).n == 2
    with pytest.raises(ValueError, match="no finite values for metric 'm.x'"):
        distribution("m.x", "g", [float("nan")])


def test_distributions_group_by_key():
    rows = [{"metric": "ct.noise_hu", "value": v, "institution": inst} for v, inst in [(1, "A"), (2, "A"), (5, "B")]]
    out = distributions(rows, by="institution")
    assert [(d.group, d.n, d.mean) for d in out] == [("A", 2, 1.5), ("B", 1, 5.0)]


def test_action_limits_sd_and_percentile():
    values = np.arange(1.0, 101.0)  # mean 50.5, sd 29.01
    sd = float(values.std(ddof=1))
    assert action_limit(values, when="above") == pytest.approx(50.5 + 2 * sd)
    assert action_limit(values, when="below", k=1.0) == pytest.approx(50.5 - sd)
    assert action_limit(values, when="above", method="percentile", percentile=95) == pytest.approx(
        float(np.percentile(values, 95))
    )
    assert action_limit(values, when="below", method="percentile", percentile=95) == pytest.approx(
        float(np.percentile(values, 5))
    )


def test_action_limit_refuses_bad_input():
    with pytest.raises(ValueError, match="3 values: an action limit needs at least 5"):
        action_limit([1.0, 2.0, 3.0], when="above")
    with pytest.raises(ValueError, match="when must be 'above' or 'below'"):
        action_limit(range(10), when="over")
    with pytest.raises(ValueError, match="method must be 'sd' or 'percentile'"):
        action_limit(range(10), when="above", method="iqr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"percentile must be in \(50, 100\)"):
        action_limit(range(10), when="above", method="percentile", percentile=40)


def test_proposals_only_for_review_rules_and_big_enough_groups():
    rng = np.random.default_rng(7)
    rows = [{"metric": "ct.noise_hu", "value": v, "modality": "CT"} for v in rng.normal(20.0, 4.0, 50)]
    rows += [{"metric": "ct.noise_hu", "value": v, "modality": "PT"} for v in (10.0, 11.0)]  # too few
    proposals = propose_limits(rows, [_rule("review", limit=25.0), _rule("fail", limit=50.0)], by="modality")
    assert [(p.rule_id, p.group, p.n) for p in proposals] == [("image_quality.ct.noise.review", "CT", 50)]
    values = np.array([r["value"] for r in rows[:50]])
    assert proposals[0].proposed_limit == pytest.approx(values.mean() + 2 * values.std(ddof=1))
    assert proposals[0].share_beyond_current == pytest.approx(float((values > 25.0).mean()))
    text = proposals_yaml(proposals, source="unit test")
    assert "image_quality.ct.noise.review (ct.noise_hu above), group CT: n=50" in text
