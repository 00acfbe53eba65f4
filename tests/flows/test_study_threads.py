"""The flow judges a bounded number of studies at once on its own threads.

Prefect's default thread pool has no bound: with up to ``MAX_IN_FLIGHT`` studies submitted, that
many were read, decoded and measured at the same time (that many studies' pixels in memory, and
threads taking turns on the cores). The flow now runs its studies on a pool of ``threads``
threads: CPUs - 1 for a folder (at least one), CPUs + 4 for DICOMweb, or what the operator sets.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from flows import qc_flow
from flows.qc_flow import qc_run, study_threads
from qc_pipeline.errors import ConfigError
from tests.flows.conftest import write_instance


@pytest.fixture
def eight_studies(tmp_path):
    root = tmp_path / "incoming"
    for k in range(8):
        study = f"1.2.826.0.1.3680043.10.{2000 + k}"
        write_instance(root / str(k) / "1.dcm", study=study, series_no=1, instance_no=1, PatientID=f"P-T{k}")
    return root


def _count_concurrent(monkeypatch) -> dict[str, int]:
    """Replace the flow's ``process_entry`` with one that records how many studies run at once
    (each holds its thread a moment, so overlapping studies do overlap)."""
    real = qc_flow.process_entry
    seen = {"now": 0, "most": 0, "studies": 0}
    lock = threading.Lock()

    def counting(*args, **kwargs):
        with lock:
            seen["now"] += 1
            seen["studies"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            time.sleep(0.3)
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(qc_flow, "process_entry", counting)
    return seen


@pytest.mark.parametrize("threads", [1, 3])
def test_the_flow_judges_at_most_threads_studies_at_once(
    prefect_harness, eight_studies, tmp_path, monkeypatch, threads
):
    seen = _count_concurrent(monkeypatch)
    summary = qc_run(str(eight_studies), db_url=f"sqlite:///{tmp_path / 'r.sqlite'}", threads=threads)
    assert summary["judged"] == 8 and summary["failed"] == 0
    assert seen["studies"] == 8
    assert seen["most"] == threads  # never more; and the pool is used (the studies are independent)


def test_default_pool_leaves_a_cpu_to_the_rest_of_the_run_for_a_folder(
    prefect_harness, eight_studies, tmp_path, monkeypatch
):
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    seen = _count_concurrent(monkeypatch)
    qc_run(str(eight_studies), db_url=f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert seen["most"] == 2  # Prefect's own pool ran all eight at once


def test_default_pool_size_by_source_and_setting(monkeypatch):
    from prefect.settings import PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS, temporary_settings

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert study_threads("/data/incoming") == 3  # local files: a core each, one left to Prefect and the database
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert study_threads("/data/incoming") == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert study_threads("https://cloud.example/dicom-web") == 8  # waits on the network: CPUs + 4
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert study_threads("https://cloud.example/dicom-web") == 32
    assert study_threads("/data/incoming", 3) == 3
    with temporary_settings({PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS: 5}):
        assert study_threads("/data/incoming") == 5  # the operator's Prefect setting
        assert study_threads("/data/incoming", 2) == 2  # the flow's parameter first


def test_threads_below_one_are_refused(prefect_harness, tmp_path):
    with pytest.raises(ConfigError, match="threads must be at least 1, got 0"):
        study_threads("/data/incoming", 0)
    from flows.rescore_flow import rescore

    with pytest.raises(ConfigError, match="threads must be at least 1, got 0"):  # before any work
        rescore(db_url=f"sqlite:///{tmp_path / 'none.sqlite'}", threads=0)


def test_threads_with_dask_options_are_refused(mixed_folder, tmp_path):
    from click.testing import CliRunner

    from qc_pipeline.cli import main

    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    for dask in (["--workers", "2"], ["--dask-address", "tcp://h:1"]):
        result = CliRunner().invoke(main, ["run", str(mixed_folder), "--db", db, "--threads", "2", *dask])
        assert result.exit_code == 2, result.output
        assert "--threads is for judging in this process" in result.output
    result = CliRunner().invoke(main, ["rescore", "--db", db, "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output  # click's own range check
