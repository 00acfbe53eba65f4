"""Small studies judged several to a task (``batch_size``): Prefect's cost per task is shared,
the verdicts are those of one task per study, and one study that fails does not take its batch
with it."""

from __future__ import annotations

import pytest

from flows import qc_flow
from flows.qc_flow import RunIncomplete, qc_run
from qc_pipeline.errors import ConfigError
from qc_pipeline.scheduling import SMALL_STUDY_FILES, group
from qc_pipeline.sources import StudyEntry
from tests.flows.conftest import GOOD_STUDY, TRUNCATED_STUDY


def _entry(uid: str, files: int, patient: str | None = None) -> StudyEntry:
    return StudyEntry(uid, tuple(f"/{uid}/{k}.dcm" for k in range(files)), "fp", patient_key=patient)


def test_small_studies_are_grouped_in_order_and_large_ones_stay_alone():
    big = SMALL_STUDY_FILES + 1
    entries = [_entry("a", 1), _entry("b", 2), _entry("c", big), _entry("d", 1), _entry("e", 1), _entry("f", 1)]
    assert [[e.study_instance_uid for e in unit] for unit in group(entries, 3)] == [["c"], ["a", "b", "d"], ["e", "f"]]
    assert [[e.study_instance_uid for e in unit] for unit in group(entries, 1)] == [[u] for u in "abcdef"]


def test_batched_run_gives_the_verdicts_of_one_task_per_study(prefect_harness, mixed_folder, tmp_path):
    one = qc_run(str(mixed_folder), db_url=f"sqlite:///{tmp_path / 'one.sqlite'}")
    batched = qc_run(str(mixed_folder), db_url=f"sqlite:///{tmp_path / 'batched.sqlite'}", batch_size=3)
    assert batched["judged"] == one["judged"] == 4
    assert batched["verdicts"] == one["verdicts"] and batched["failed"] == 0


def test_a_failing_study_of_a_batch_is_reported_and_the_others_are_judged(
    prefect_harness, mixed_folder, tmp_path, monkeypatch
):
    real = qc_flow.process_entry

    def failing(src, entry, *args, **kwargs):
        if entry.study_instance_uid == TRUNCATED_STUDY:
            raise ConfigError("a metric limit is missing")  # will not heal: no retry, next study
        return real(src, entry, *args, **kwargs)

    monkeypatch.setattr(qc_flow, "process_entry", failing)
    state = qc_run(str(mixed_folder), db_url=f"sqlite:///{tmp_path / 'r.sqlite'}", batch_size=8, return_state=True)
    assert state.is_failed()
    with pytest.raises(RunIncomplete, match="1 of 4 studies could not be judged"):
        state.result()
    from qc_pipeline.store import ResultStore

    with ResultStore.open(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        assert store.history(GOOD_STUDY)  # judged and stored
        assert not store.history(TRUNCATED_STUDY)


def test_batch_size_below_one_is_refused():
    with pytest.raises(ConfigError, match="batch size must be at least 1, got 0"):
        qc_flow.judge_entries(
            "x", [], db_url=None, thresholds_dir=None, thresholds_version="v", run_id="r", now=None, batch_size=0
        )
