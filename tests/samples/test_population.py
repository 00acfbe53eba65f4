"""The generated population (qc_pipeline.samples.population): seeded, idempotent, production-shaped."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from qc_pipeline.rules import decide_verdict
from qc_pipeline.samples.population import (
    INSTITUTIONS,
    PERIODS,
    generate_population,
    institution_regions,
    load_population_thresholds,
    make_decisions,
)
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, RunRecord, StudyRecord

SCALE = 0.2  # ~100 studies: enough for every institution and period, fast


@pytest.fixture(scope="module")
def thresholds():
    return load_population_thresholds()


@pytest.fixture(scope="module")
def decisions(thresholds):
    return make_decisions(thresholds, scale=SCALE)


def test_same_seed_same_population_other_seed_other(thresholds, decisions) -> None:
    again = make_decisions(thresholds, scale=SCALE)
    assert [(d.study_instance_uid, d.verdict, d.findings, d.measurements) for d in again] == [
        (d.study_instance_uid, d.verdict, d.findings, d.measurements) for d in decisions
    ]
    other = make_decisions(thresholds, seed=7, scale=SCALE)
    assert {d.study_instance_uid for d in other}.isdisjoint(d.study_instance_uid for d in decisions)


def test_institutions_regions_periods_and_items(thresholds, decisions) -> None:
    regions = institution_regions()
    assert set(regions.values()) == {"chongqing", "sichuan"}
    assert all(name not in {"四川大学华西医院", "重庆医科大学附属第一医院"} for name in regions)
    seen = Counter((d.study.institution, d.study.study_date < PERIODS[1][0]) for d in decisions)
    assert set(seen) == {(i.name, first) for i in INSTITUTIONS for first in (True, False)}
    for d in decisions:
        assert PERIODS[0][0] <= d.study.study_date <= PERIODS[1][1]
        assert len(d.study_instance_uid) <= 64
        if d.item is not None:  # real item codes of the catalog in force
            assert thresholds.catalog.by_code(d.item.code).name_zh == d.item.name_zh
    modalities = Counter(thresholds.catalog.by_code(d.item.code).modality for d in decisions if d.item)
    assert set(modalities) == {"DR", "CT", "MR"}


def test_findings_use_real_rules_and_the_verdict_rule(thresholds, decisions) -> None:
    for d in decisions:
        for f in d.findings:
            rule = thresholds.rule(f.code)  # raises ConfigError for an unknown id
            assert f.severity == rule.severity
        assert d.verdict == decide_verdict(d.findings, candidate=d.item is not None)
        assert d.eligible == (str(d.verdict) == "pass")
        assert d.metrics["upload_delay_h"] == d.study.upload_delay_h
    metrics = {m.metric for d in decisions for m in d.measurements}
    assert {"ct.noise_hu", "mr.snr", "dr.deviation_index"} <= metrics
    codes = {f.code.split(".")[0] for d in decisions for f in d.findings if str(f.severity) != "info"}
    assert {"image_quality", "completeness", "metadata"} <= codes
    # late upload is measured per institution (info findings), it sends no study to a radiologist
    late = [f for d in decisions for f in d.findings if f.code.startswith("timeliness.upload_delay.")]
    assert late and {str(f.severity) for f in late if "negative" not in f.code} == {"info"}


def test_verdict_mixes_differ_and_one_institution_is_clearly_worse(decisions) -> None:
    # Not passed = fail or review: an over-exposure (DI > +3) is a review, not a fail (AAPM TG-116).
    fail_rate = {}
    for inst in INSTITUTIONS:
        mine = [d for d in decisions if d.study.institution == inst.name]
        fail_rate[inst.code] = sum(str(d.verdict) != "pass" for d in mine) / len(mine)
    worst = max(fail_rate, key=fail_rate.__getitem__)
    assert worst == "CQC"
    assert fail_rate["CQC"] > 2 * max(v for k, v in fail_rate.items() if k != "CQC")


def test_stored_through_save_decision_and_idempotent(tmp_path: Path, thresholds) -> None:
    with ResultStore.open(f"sqlite:///{tmp_path / 'pop.sqlite'}") as store:
        first = generate_population(store, thresholds, scale=SCALE)
        assert first.outcomes == {"inserted": first.n_studies}
        assert first.run_id is not None
        again = generate_population(store, thresholds, scale=SCALE)
        assert again.outcomes == {"unchanged": first.n_studies} and again.run_id is None
        with store.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(StudyRecord)) == first.n_studies
            assert conn.scalar(select(func.count()).select_from(DecisionRecord)) == first.n_studies
            assert conn.scalar(select(func.count()).select_from(RunRecord)) == 1
        rows = store.results()
        assert {r["institution"] for r in rows} == {i.name for i in INSTITUTIONS}
        assert sum(1 for r in rows if r["verdict"] == "pass") == first.verdicts["pass"]
        assert dt.date.fromisoformat(rows[-1]["study_date"]) <= PERIODS[1][1]


def test_scale_must_be_positive(thresholds) -> None:
    with pytest.raises(ValueError, match="scale must be positive"):
        make_decisions(thresholds, scale=0)
