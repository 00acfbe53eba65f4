"""The scheduled deployments and the ``serve`` command that serves them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flows.deployments import DEFAULT_INGEST_CRON, DEFAULT_RESCORE_CRON, ingest_deployment, rescore_deployment
from qc_pipeline.cli import main
from qc_pipeline.errors import ConfigError
from qc_pipeline.pipeline import load_pipeline_thresholds


def test_ingest_deployment_has_a_cron_schedule():
    deployment = ingest_deployment("/data/incoming", cron="*/5 * * * *", timezone="Asia/Shanghai")
    assert deployment.name == "qc-ingest"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "*/5 * * * *"
    assert schedule.schedule.timezone == "Asia/Shanghai"
    assert deployment.parameters == {
        "source": "/data/incoming",
        "db_url": None,
        "thresholds_dir": None,
        "workers": None,
        "dask_address": None,
        "threads": None,
        "write_back": False,
    }
    assert deployment.concurrency_limit == 1
    assert DEFAULT_INGEST_CRON == "*/10 * * * *"
    asked = ingest_deployment("https://cloud/dicom-web", write_back=True, threads=6)
    assert asked.parameters["write_back"] is True
    assert asked.parameters["threads"] == 6


def test_rescore_deployment_runs_nightly_on_dask_when_asked():
    deployment = rescore_deployment(timezone="Asia/Chongqing", dask_address="tcp://10.0.0.5:8786")
    assert (deployment.name, deployment.flow_name) == ("qc-rescore", "qc-rescore")
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 2 * * *", "Asia/Chongqing")
    assert deployment.parameters == {
        "db_url": None,
        "thresholds_dir": None,
        "workers": None,
        "dask_address": "tcp://10.0.0.5:8786",
        "threads": None,
        "limit": None,
    }
    assert DEFAULT_RESCORE_CRON == "30 2 * * *"
    with pytest.raises(ConfigError, match=r"number of Dask workers must be at least 1, got 0"):
        rescore_deployment(workers=0)


@pytest.fixture
def served(monkeypatch):
    """The serve loop replaced: the deployments it was given, instead of a long-running server."""

    calls: list[tuple] = []
    monkeypatch.setattr("flows.serving.serve_until_signal", lambda deployments, **kw: calls.append(tuple(deployments)))
    monkeypatch.setattr("qc_pipeline.cli._prefect_api_problem", lambda: None)  # an API that answers
    # `serve --secret-block` sets this variable for the served flows: set-then-delete makes
    # monkeypatch record its original state, so it is restored after the test.
    monkeypatch.setenv("QC_DICOMWEB_SECRET_BLOCK", "")
    monkeypatch.delenv("QC_DICOMWEB_SECRET_BLOCK")
    return calls


def test_serve_serves_ingestion_and_rescoring_in_the_site_time_zone(served, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "serve",
            str(tmp_path),
            "--cron",
            "*/5 * * * *",
            "--rescore-cron",
            "0 3 * * *",
            "--workers",
            "2",
            "--rescore-limit",
            "50000",
            "--spot-check-cron",
            "0 5 3 * *",
        ],
    )
    assert result.exit_code == 0, result.output
    (deployments,) = served
    ingest, rescore, spot_check = deployments
    site_tz = load_pipeline_thresholds().site.timezone
    assert [(d.name, d.schedules[0].schedule.cron, d.schedules[0].schedule.timezone) for d in deployments] == [
        ("qc-ingest", "*/5 * * * *", site_tz),
        ("qc-rescore", "0 3 * * *", site_tz),
        ("qc-spot-check-draw", "0 5 3 * *", site_tz),
    ]
    assert ingest.parameters["source"] == str(tmp_path) and ingest.parameters["workers"] == 2
    assert (rescore.parameters["workers"], rescore.parameters["limit"]) == (2, 50000)


def test_serve_without_rescoring_and_bad_options(served, tmp_path):
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--rescore-cron", "off", "--spot-check-cron", "off"])
    assert result.exit_code == 0, result.output
    assert [d.name for d in served[0]] == ["qc-ingest"]

    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--cron", "every ten minutes"])
    assert result.exit_code == 2 and "定时计划（cron）无效" in result.output
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--workers", "2", "--dask-address", "tcp://h:8786"])
    assert result.exit_code == 2 and "give --workers or --dask-address, not both" in result.output
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert len(served) == 1


@pytest.mark.prefect
def test_serve_checks_the_secret_block_before_serving(prefect_harness, served):
    result = CliRunner().invoke(main, ["serve", "http://127.0.0.1:9/dicom-web", "--secret-block", "no-such-block"])
    assert result.exit_code == 1
    assert "cannot load the DICOMweb credentials from Prefect Secret block 'no-such-block'" in result.output
    assert served == []
