"""The same flow on a Dask cluster (prefect-dask's DaskTaskRunner): one task per study."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.errors import ConfigError

from .conftest import GOOD_STUDY, SR_STUDY, TRUNCATED_STUDY


def verdicts(db_url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    result = CliRunner().invoke(main, ["results", "--db", db_url, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {
        r["study_instance_uid"]: (r["verdict"], tuple(sorted(f["code"] for f in r["findings"])))
        for r in json.loads(result.output)
    }


@pytest.mark.prefect
def test_the_flow_runs_on_a_dask_cluster_one_task_per_study(prefect_harness, mixed_folder, tmp_path, monkeypatch):
    from distributed import LocalCluster, get_worker

    from flows import qc_flow

    threads_db, dask_db = f"sqlite:///{tmp_path / 'threads.sqlite'}", f"sqlite:///{tmp_path / 'dask.sqlite'}"
    assert qc_flow.run(mixed_folder, db_url=threads_db)["judged"] == 4

    real_process_entry, log = qc_flow.process_entry, tmp_path / "workers.log"

    def record_the_worker(source, entry, *args, **kwargs):
        # Dask ships the task pickled (a copy of this closure): record in a file, not a list.
        with log.open("a", encoding="utf-8") as out:
            out.write(f"{entry.study_instance_uid} {get_worker().address}\n")  # raises outside a Dask worker
        return real_process_entry(source, entry, *args, **kwargs)

    monkeypatch.setattr(qc_flow, "process_entry", record_the_worker)
    # Threaded workers: the same process (the patch above applies), yet real Dask scheduling.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        summary = qc_flow.run(mixed_folder, db_url=dask_db, dask_address=cluster.scheduler_address)
        workers = set(cluster.scheduler_info["workers"])
    assert summary["judged"] == 4 and summary["failed"] == 0
    seen = [tuple(line.split()) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(seen) == 4 and {uid for uid, _ in seen} >= {GOOD_STUDY, TRUNCATED_STUDY, SR_STUDY}
    assert {address for _, address in seen} <= workers
    assert verdicts(dask_db) == verdicts(threads_db)


def test_dask_options_are_checked():
    from flows.qc_flow import dask_task_runner

    assert dask_task_runner() is None
    local = dask_task_runner(workers=2)
    assert local.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }
    assert dask_task_runner(dask_address="tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    with pytest.raises(ConfigError, match=r"local Dask workers or the address of a Dask cluster, not both"):
        dask_task_runner(workers=2, dask_address="tcp://10.0.0.5:8786")
    with pytest.raises(ConfigError, match=r"number of Dask workers must be at least 1, got 0"):
        dask_task_runner(workers=0)
    with pytest.raises(ConfigError, match=r"threads per Dask worker must be at least 1, got 0"):
        dask_task_runner(workers=1, threads_per_worker=0)


@pytest.mark.prefect
def test_run_command_takes_the_dask_options(prefect_harness, mixed_folder, tmp_path):
    from click.testing import CliRunner
    from distributed import LocalCluster

    from qc_pipeline.cli import main

    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    result = CliRunner().invoke(
        main, ["run", str(mixed_folder), "--db", db, "--workers", "2", "--dask-address", "tcp://h:1"]
    )
    assert result.exit_code == 2 and "give --workers or --dask-address, not both" in result.output
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        result = CliRunner().invoke(
            main, ["run", str(mixed_folder), "--db", db, "--dask-address", cluster.scheduler_address]
        )
        prefixes = set(cluster.scheduler.task_prefixes)  # kinds of task the cluster's scheduler ran
    assert result.exit_code == 0, result.output
    assert "4 已质控 judged" in result.output
    assert prefixes, "the judging tasks did not run on the Dask cluster"
