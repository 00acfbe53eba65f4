"""What a QC run says reaches Prefect: the library's records are flow-run logs, each run
publishes an artifact and returns its numbers."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest

from flows.qc_flow import qc_run
from flows.run_report import ARTIFACT_KEY
from tests.flows.conftest import GOOD_STUDY, TRUNCATED_STUDY


async def _read_back(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return logs, artifacts


def test_library_logs_and_the_run_artifact_reach_prefect(prefect_harness, mixed_folder, tmp_path, monkeypatch, request):
    # The tests' Prefect logs at WARNING (tests/conftest.py); a served flow logs at INFO.
    run_logger = logging.getLogger("prefect.flow_runs")
    request.addfinalizer(functools.partial(run_logger.setLevel, run_logger.level))
    run_logger.setLevel(logging.INFO)  # setLevel, not .level: it also clears the isEnabledFor cache
    monkeypatch.setenv("QC_REVIEW_URL", "https://qc.example.org/review")
    db = f"sqlite:///{tmp_path / 'results.sqlite'}"
    state = qc_run(str(mixed_folder), db_url=db, return_state=True)
    summary = state.result()
    assert summary["judged"] == 4 and summary["verdicts"]  # the numbers are the flow's result
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()  # logs are sent in the background
    logs, artifacts = asyncio.run(_read_back(state.state_details.flow_run_id))
    by_logger = [(log.name, log.message) for log in logs]
    done = [m for n, m in by_logger if m.startswith("done: ")]
    assert done and done[0].startswith("done: 4 studies judged"), by_logger
    # a per-study line of the library (qc_pipeline.pipeline), not only Prefect's own run logger
    assert any(n == "qc_pipeline.pipeline" and f"study {GOOD_STUDY}:" in m for n, m in by_logger), by_logger
    assert any(TRUNCATED_STUDY in m for n, m in by_logger if n.startswith("qc_pipeline")), by_logger
    (artifact,) = [a for a in artifacts if a.key == ARTIFACT_KEY]
    assert artifact.type == "markdown"
    text = artifact.data
    assert f"run id: `{summary['run_id']}`" in text and "(Asia/Shanghai)" in text.splitlines()[0]
    assert "judged: **4** of" in text
    assert "四川省人民医院" in text  # the by-institution table
    assert "[https://qc.example.org/review](https://qc.example.org/review)" in text
    assert "duration:" in text


def test_library_records_outside_a_run_stay_silent(recwarn):
    from flows.logs import forward_library_logs

    forward_library_logs()
    logging.getLogger("qc_pipeline.pipeline").warning("outside any flow run")
    assert not [w for w in recwarn if "flow run id" in str(w.message)]


def test_the_run_report_gives_the_pixel_data_fetched_only_when_some_was():
    from collections import Counter

    from flows.run_report import run_markdown

    summary = {
        "run_id": "r1",
        "source": "https://cloud/dicom-web",
        "listing": "full",
        "judged": 4,
        "studies": 4,
        "unchanged": 0,
        "leased": 0,
        "verdicts": {"pass": 4},
        "thresholds_version": "t",
        "pipeline_version": "p",
        "pixel_bytes_fetched": 80_000_000,
    }
    text = run_markdown(summary, {"医院 A": Counter({"pass": 4})}, [], 12.0, review_url="")
    assert "拉取像素数据 / pixel data fetched: 80.0 MB (20.0 MB / study)" in text
    folder = run_markdown({**summary, "pixel_bytes_fetched": 0}, {}, [], 12.0, review_url="")
    assert "pixel data fetched" not in folder


def test_the_run_report_names_verdicts_in_words_and_its_time_in_the_site_zone():
    import datetime as dt
    from collections import Counter

    from flows.run_report import run_markdown

    summary = {
        "run_id": "0f1e2d3c-run",
        "source": "file:///in",
        "listing": "full",
        "judged": 3,
        "studies": 3,
        "unchanged": 0,
        "leased": 0,
        "verdicts": {"pass": 2, "not_applicable": 1},
        "thresholds_version": "t",
        "pipeline_version": "p",
    }
    finished = dt.datetime(2026, 12, 5, 8, 28, tzinfo=dt.UTC)
    text = run_markdown(
        summary,
        {"四川省人民医院": Counter({"pass": 2, "not_applicable": 1})},
        [],
        5.0,
        review_url="",
        finished=finished,
        zone="Asia/Shanghai",
    )
    title = text.splitlines()[0]
    assert title == "# 质控运行 / QC run 2026-12-05 16:28 (Asia/Shanghai)"  # UTC 08:28 is 16:28 in Chongqing
    assert "0f1e2d3c" not in title and "- 运行编号 / run id: `0f1e2d3c-run`" in text
    assert "| 合格 / pass | 2 |" in text and "| 不适用 / n/a | 1 |" in text
    assert "| 机构 / institution | 合格 / pass | 待复核 / review | 不合格 / fail | 不适用 / n/a |" in text
    assert "| 四川省人民医院 | 2 | 0 | 0 | 1 |" in text
    assert "not_applicable" not in text


@pytest.mark.parametrize("verbose", [False, True])
def test_the_clis_logging_settings_let_a_spawned_flow_run_log_to_prefect(verbose, monkeypatch):
    """`serve` runs each flow in a fresh (spawned) process that sets Prefect's logging up from the
    environment the command set: that configuration must load, or Prefect's run loggers (the
    "done:" line) lose their API handler while the library's records still arrive."""
    import os
    import subprocess
    import sys

    from qc_pipeline.cli import _quiet_prefect

    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING")}
    monkeypatch.setattr(os, "environ", environ)  # what the command sets stays in this copy
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # not this test process's handlers
    _quiet_prefect(verbose)
    child_env = dict(environ)
    probe = (
        "import logging, logging.config\n"
        "from prefect.logging.configuration import DEFAULT_LOGGING_SETTINGS_PATH, load_logging_config\n"
        "logging.config.dictConfig(load_logging_config(DEFAULT_LOGGING_SETTINGS_PATH))\n"
        "run = logging.getLogger('prefect.flow_runs')\n"
        "print(logging.getLevelName(run.getEffectiveLevel()), [type(h).__name__ for h in run.handlers])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=child_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["INFO", "['APILogHandler']"]


def test_a_batch_of_small_studies_logs_its_verdicts_in_one_record(prefect_harness, mixed_folder, tmp_path):
    # Each log record is a call to the Prefect API and a row on its server: a task judging small
    # studies in a batch sends one record, a line per study, not a record per study.
    state = qc_run(
        str(mixed_folder), db_url=f"sqlite:///{tmp_path / 'results.sqlite'}", batch_size=8, return_state=True
    )
    summary = state.result()
    assert summary["judged"] == 4 and summary["failed"] == 0
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    logs, _ = asyncio.run(_read_back(state.state_details.flow_run_id))
    verdict_records = [
        log.message for log in logs if log.name == "qc_pipeline.pipeline" and "studies judged" in log.message
    ]
    assert len(verdict_records) == 1, [(log.name, log.message) for log in logs]
    (record,) = verdict_records
    lines = record.splitlines()
    assert lines[0] == "4 of 4 studies judged:"
    # the same line a study judged alone gets: how an operator finds its verdict in the run's log
    assert any(line.startswith(f"study {GOOD_STUDY}: ") and line.endswith("(inserted)") for line in lines[1:]), lines
    assert any(line.startswith(f"study {TRUNCATED_STUDY}: fail") for line in lines[1:]), lines
    assert len(lines) == 5
    per_study = [log.message for log in logs if log.message.startswith(f"study {GOOD_STUDY}:")]
    assert not per_study  # no record of its own besides the batch's
