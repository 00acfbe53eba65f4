"""Nightly re-scoring: studies decided with other thresholds are judged again from their source."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.pipeline import load_pipeline_thresholds

from .conftest import SR_STUDY

pytestmark = pytest.mark.prefect


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def results(db_url: str) -> dict[str, dict]:
    code, out = invoke("results", "--db", db_url, "--format", "json")
    assert code == 0, out
    return {r["study_instance_uid"]: r for r in json.loads(out)}


def test_rescore_judges_again_what_other_thresholds_decided(prefect_harness, mixed_folder, tmp_path):
    thresholds = tmp_path / "thresholds"
    shutil.copytree(load_pipeline_thresholds().directory, thresholds)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, out = invoke("run", str(mixed_folder), "--db", db, "--thresholds", str(thresholds))
    assert code == 0 and "4 已质控 judged" in out, out
    old_version = load_pipeline_thresholds(thresholds).version

    code, out = invoke("rescore", "--db", db, "--thresholds", str(thresholds))
    assert code == 0 and "0 项需重新质控 to re-score, 0 已质控 judged" in out, out

    # A reviewed edit of the thresholds (any byte) gives them a new version: every decision is stale.
    timeliness = thresholds / "timeliness.yaml"
    timeliness.write_text(timeliness.read_text(encoding="utf-8") + "\n# reviewed 2026-11-23\n", encoding="utf-8")
    new_version = load_pipeline_thresholds(thresholds).version
    assert new_version != old_version
    shutil.rmtree(mixed_folder / "reports")  # the SR-only study has left the source meanwhile
    code, out = invoke("rescore", "--db", db, "--thresholds", str(thresholds), "--workers", "2")
    assert code == 0, out
    assert "4 项需重新质控 to re-score, 3 已质控 judged, 1 已不在数据源 missing, 0 失败 failed" in out
    rows = results(db)
    for uid, row in rows.items():
        expected = (1, old_version) if uid == SR_STUDY else (2, new_version)
        assert (row["history_count"], row["provenance"]["thresholds_version"]) == expected, uid

    # A source that cannot be read: a clear error, exit 1, the decisions stay.
    timeliness.write_text(timeliness.read_text(encoding="utf-8") + "# reviewed again\n", encoding="utf-8")
    shutil.move(mixed_folder, tmp_path / "moved")
    result = CliRunner().invoke(main, ["rescore", "--db", db, "--thresholds", str(thresholds)])
    assert result.exit_code == 1
    assert "4 of 4 studies could not be re-scored; the next run retries them" in result.output
    assert "部分检查未能重新质控" in result.output
    assert results(db) == rows


def test_rescore_refuses_both_dask_options(tmp_path):
    result = CliRunner().invoke(
        main,
        ["rescore", "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", "--workers", "2", "--dask-address", "tcp://h:8786"],
    )
    assert result.exit_code == 2
    assert "give --workers or --dask-address, not both" in result.output
