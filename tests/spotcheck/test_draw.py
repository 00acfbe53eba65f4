"""The draw: reproducible from its seed, strata and minimums respected, never drawn twice,
under-filled strata reported, blinded cross-region assignment; verify proves a draw."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter, defaultdict

import pytest
from sqlalchemy import select, update

from qc_pipeline.errors import SpotCheckError
from qc_pipeline.spotcheck.draw import (
    PRIMARY_READING,
    SECOND_READING,
    Candidate,
    Period,
    draw,
    draw_report,
    group_label,
    normalise_modality,
    select_sample,
    sort_key,
    verify,
)
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import StudyRecord
from qc_pipeline.store.spotcheck import (
    SpotCheckAssignment,
    SpotCheckCase,
    SpotCheckPopulation,
    read_session,
    write_session,
)

from .conftest import INSTITUTIONS, KEY, population, save_all

NOW = dt.datetime(2026, 11, 5, 4, 0, tzinfo=dt.UTC)


def drawn_cases(store: ResultStore) -> dict[str, SpotCheckCase]:
    with read_session(store) as session:
        rows = (
            session.execute(
                select(StudyRecord.study_instance_uid, SpotCheckCase).join(
                    SpotCheckCase, SpotCheckCase.study_id == StudyRecord.id
                )
            )
            .tuples()
            .all()
        )
    return dict(rows)


def assignments(store: ResultStore) -> list[tuple[SpotCheckCase, SpotCheckAssignment]]:
    with read_session(store) as session:
        return list(
            session.execute(
                select(SpotCheckCase, SpotCheckAssignment).join(
                    SpotCheckAssignment, SpotCheckAssignment.case_id == SpotCheckCase.id
                )
            )
            .tuples()
            .all()
        )


def test_periods() -> None:
    assert Period.parse("2026-10") == Period("2026-10", dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert Period.parse("2024-02").end == dt.date(2024, 2, 29)
    assert Period.parse("2026-Q4") == Period("2026-Q4", dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert Period.parse("2026-H1") == Period("2026-H1", dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    assert Period.parse("2026") == Period("2026", dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert Period.previous_month(dt.date(2026, 1, 5)).label == "2025-12"
    for bad in ("2026-13", "2026/10", "26-10", "2026-Q5", ""):
        with pytest.raises(SpotCheckError, match=r"is not one of YYYY-MM, YYYY-Qn, YYYY-Hn, YYYY"):
            Period.parse(bad)


def test_modality_and_stratum_labels() -> None:
    assert [normalise_modality(m) for m in ("CR", "DX,PR", "CT,SR", "SR,MR", "US", None)] == [
        "DR",
        "DR",
        "CT",
        "MR",
        "US",
        "-",
    ]
    assert (
        group_label("region=a|institution=b|modality=CT|item=YB-1|verdict=pass", ["region", "verdict"])
        == "region=a|verdict=pass"
    )


def test_the_same_seed_and_population_give_the_same_draw_whatever_the_insertion_order(tmp_path, config) -> None:
    decisions = population()
    shuffled = decisions[:]
    random.Random(5).shuffle(shuffled)
    picks = []
    for name, order in (("a", decisions), ("b", shuffled)):
        with ResultStore.open(f"sqlite:///{tmp_path / name}.sqlite") as store:
            save_all(store, order)
            report = draw(store, config, "2026-10", key=KEY, seed="20261105", now=NOW)
            picks.append((set(drawn_cases(store)), report.population_digest, [s.as_dict() for s in report.strata]))
    assert picks[0] == picks[1]
    with ResultStore.open(f"sqlite:///{tmp_path / 'c'}.sqlite") as store:
        save_all(store, decisions)
        draw(store, config, "2026-10", key=KEY, seed="another seed", now=NOW)
        assert set(drawn_cases(store)) != picks[0][0]


def test_strata_rates_and_minimums(populated, config) -> None:
    report = draw(populated, config, "2026-10", key=KEY, seed="7", now=NOW)
    assert report.created
    assert report.population_size == 4 * 2 * (18 + 6 + 6) + 1  # configured institutions, sampled verdicts
    assert report.excluded == {
        "already_drawn": 0,
        "verdict_not_sampled": {"not_applicable": 1},
        "unconfigured_institution": {"Unlisted Hospital": 1},
    }
    cases = drawn_cases(populated)
    assert len(cases) == report.n_drawn
    groups = Counter(group_label(c.stratum, config.sampling.minimum_keys) for c in cases.values())
    for s in report.strata:
        assert groups[s.stratum] == s.drawn
        # proportional share, rounded down or up, or the minimum; never more than the group holds
        assert s.drawn == min(s.population, max(config.sampling.minimum_per_stratum, s.drawn))
        assert math.floor(s.expected) - 1 <= s.drawn <= max(math.ceil(s.expected) + 1, 2)
    (single,) = [s for s in report.strata if s.population == 1]
    assert single.underfilled and single.drawn == 1 and "modality=MR" in single.stratum
    assert [s.stratum for s in report.underfilled] == [single.stratum]
    # every drawn study is of a sampled verdict and a configured institution
    assert {c.machine_verdict for c in cases.values()} <= {"pass", "review", "fail"}
    assert {c.institution for c in cases.values()} <= set(INSTITUTIONS)


def test_inclusion_follows_the_rates_on_a_large_population() -> None:
    # 3000 pass studies in 100 strata of 30: rate 0.1 -> 300 expected; randomised rounding keeps
    # the total within a few of it (each stratum gives 3); a minimum of 0 adds nothing.
    candidates = [Candidate(i, f"1.2.{i}", f"verdict=pass|item={i % 100}", "pass") for i in range(3000)]
    drawn, reports = select_sample(candidates, seed="s", rates={"pass": 0.1}, minimum=0, minimum_keys=["verdict"])
    assert len(drawn) == 300
    # strata of 7 at rate 0.1 (0.7 due): each gives 0 or 1; over 400 strata about 280
    small = [Candidate(i, f"1.3.{i}", f"verdict=pass|item={i % 400}", "pass") for i in range(2800)]
    drawn, _ = select_sample(small, seed="s", rates={"pass": 0.1}, minimum=0, minimum_keys=["verdict"])
    assert 240 <= len(drawn) <= 320  # binomial(400, 0.7): mean 280, sd 9.2 -> +/- 4 sd


def test_the_lowest_sort_keys_are_drawn() -> None:
    candidates = [Candidate(i, f"1.2.{i}", "verdict=fail", "fail") for i in range(10)]
    drawn, _ = select_sample(candidates, seed="x", rates={"fail": 0.5}, minimum=0, minimum_keys=["verdict"])
    lowest = sorted(candidates, key=lambda c: sort_key("x", c.study_instance_uid))[:5]
    assert drawn == {c.study_instance_uid for c in lowest}


def test_a_period_is_drawn_once_and_a_study_never_twice(populated, config) -> None:
    first = draw(populated, config, "2026-10", key=KEY, seed="1", now=NOW)
    again = draw(populated, config, "2026-10", key=KEY, seed="2", now=NOW + dt.timedelta(days=1))
    assert not again.created and again.seed == "1" and again.created_at == NOW
    assert again.n_drawn == first.n_drawn and again.assignments == first.assignments
    assert len(drawn_cases(populated)) == first.n_drawn
    # an overlapping period (the quarter) leaves out the studies October's draw took
    quarter = draw(populated, config, "2026-Q4", key=KEY, seed="3", now=NOW)
    assert quarter.excluded["already_drawn"] == first.n_drawn
    assert quarter.population_size == first.population_size - first.n_drawn
    cases = drawn_cases(populated)
    assert len(cases) == first.n_drawn + quarter.n_drawn  # study_id is unique across draws


def test_assignment_is_cross_region_balanced_and_blinded_by_pseudonyms(populated, config) -> None:
    report = draw(populated, config, "2026-10", key=KEY, seed="11", now=NOW)
    rows = assignments(populated)
    primary = [(c, a) for c, a in rows if a.reading == PRIMARY_READING]
    second = [(c, a) for c, a in rows if a.reading == SECOND_READING]
    assert len(primary) == report.n_drawn
    assert all(a.reviewer_region != c.region for c, a in primary)
    assert all(a.reviewer_region == c.region for c, a in second)
    assert 0 < len(second) < report.n_drawn
    loads: dict[str, Counter[str]] = defaultdict(Counter)
    for _c, a in rows:
        loads[a.reviewer_region][a.reviewer] += 1
    for counts in loads.values():  # reviewers of a region share its work within one study
        assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(report.assignments.values()) == len(rows)
    codes = [c.case_code for c, _a in primary]
    assert len(set(codes)) == len(codes)
    assert all(code.startswith("CJ-") and len(code) == 12 for code in codes)
    assert all(c.patient_pseudonym.startswith("P-") for c, _a in primary)


def test_verify_reproduces_a_draw_and_detects_tampering(populated, config) -> None:
    report = draw(populated, config, "2026-10", key=KEY, seed="99", now=NOW)
    result = verify(populated, "2026-10")
    assert result.ok and result.problems == [] and result.n_drawn == report.n_drawn
    with write_session(populated) as session:  # someone swaps a drawn study for another one
        drawn_row = session.scalars(select(SpotCheckPopulation).where(SpotCheckPopulation.drawn.is_(True))).first()
        other = session.scalars(select(SpotCheckPopulation).where(SpotCheckPopulation.drawn.is_(False))).first()
        session.execute(update(SpotCheckPopulation).where(SpotCheckPopulation.id == drawn_row.id).values(drawn=False))
        session.execute(update(SpotCheckPopulation).where(SpotCheckPopulation.id == other.id).values(drawn=True))
    result = verify(populated, "2026-10")
    assert not result.ok
    assert "2 studies differ between the re-draw and the recorded draw" in result.problems
    with pytest.raises(SpotCheckError, match=r"period '2026-11' has not been drawn"):
        verify(populated, "2026-11")


def test_draw_report_is_stored_with_seed_config_and_population(populated, config) -> None:
    draw(populated, config, "2026-10", key=KEY, seed="abc", now=NOW)
    report = draw_report(populated, "2026-10")
    assert report is not None
    assert (report.seed, report.config_hash, report.config_version) == ("abc", config.config_hash, "test-1")
    assert len(report.population_digest) == 64
    assert draw_report(populated, "2026-09") is None
    with pytest.raises(SpotCheckError, match="seed must have 1 to 40 printable characters"):
        draw(populated, config, "2026-09", key=KEY, seed="x" * 41)


def test_an_empty_period_draws_nothing(populated, config) -> None:
    report = draw(populated, config, "2025-01", key=KEY, seed="1", now=NOW)
    assert (report.created, report.population_size, report.n_drawn, report.strata) == (True, 0, 0, [])


def test_draw_on_both_backends(any_store, config) -> None:
    save_all(any_store, population(per_cell=2))
    report = draw(any_store, config, "2026-10", key=KEY, seed="pg", now=NOW)
    assert report.n_drawn > 0 and verify(any_store, "2026-10").ok
    assert draw(any_store, config, "2026-10", key=KEY, now=NOW).created is False
