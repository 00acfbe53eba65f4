"""The run's plan (``qc_pipeline.scheduling``): order, per-patient chains and batches, without Prefect."""

from __future__ import annotations

from qc_pipeline.scheduling import SMALL_STUDY_FILES, plan, submission_order
from qc_pipeline.sources import StudyEntry
from tests.support.imports import imported_by


def _entry(uid: str, *, files: int = 1, patient: str | None = None, date: str | None = None) -> StudyEntry:
    return StudyEntry(uid, tuple(f"/{uid}/{k}.dcm" for k in range(files)), "fp", patient_key=patient, study_date=date)


def _uids(units) -> list[list[str]]:
    return [[e.study_instance_uid for e in u.entries] for u in units]


def test_a_patients_studies_run_oldest_first_and_each_waits_for_the_one_before() -> None:
    entries = [
        _entry("p1-new", patient="P1", date="20261002"),
        _entry("p2", patient="P2", date="20261001"),
        _entry("p1-old", patient="P1", date="20261001"),
        _entry("anon"),
    ]
    assert [e.study_instance_uid for e in submission_order(entries)] == ["anon", "p1-old", "p1-new", "p2"]
    units = plan(entries)
    assert _uids(units) == [["anon"], ["p1-old"], ["p1-new"], ["p2"]]
    assert [u.after for u in units] == [(), (), (1,), ()]  # only the same patient's earlier study
    assert not any(u.batched for u in units)


def test_small_studies_are_batched_and_a_batch_waits_for_each_patients_last_unit() -> None:
    big = SMALL_STUDY_FILES + 1
    entries = [
        _entry("a1", patient="A", date="1"),
        _entry("a2", files=big, patient="A", date="2"),
        _entry("a3", patient="A", date="3"),
        _entry("b1", patient="B"),
        _entry("c1", files=big, patient="C"),
    ]
    units = plan(entries, batch_size=2)
    # in patient order a1 (small), a2 (large), a3, b1 (small), c1 (large): a1's open batch is closed
    # before a2, so patient A's studies keep their order; a3 and b1 share a batch
    assert _uids(units) == [["a1"], ["a2"], ["a3", "b1"], ["c1"]]
    assert [u.batched for u in units] == [True, False, True, False]
    assert [u.after for u in units] == [(), (0,), (1,), ()]


def test_planning_does_not_need_prefect() -> None:
    assert imported_by("import qc_pipeline.scheduling", ["prefect", "qc_pipeline.scheduling"]) == [
        "qc_pipeline.scheduling"
    ]
