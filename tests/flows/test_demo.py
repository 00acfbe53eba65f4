"""`qc-pipeline demo` end to end: every sample case gets the verdict and reasons it was built for."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.samples.demo import demo_cases
from tests.demo_expectations import assert_demo_rows

pytestmark = pytest.mark.prefect


def test_demo_prints_every_case_and_stores_the_expected_verdicts(prefect_harness, tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--lang", "en"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cases = demo_cases()
    for case in cases:
        assert case.name in result.output
    assert "QC verdicts" in result.output and "不合格 fail" in result.output

    result = CliRunner().invoke(main, ["results", "--db", f"sqlite:///{out / 'results.sqlite'}", "--format", "json"])
    rows = {r["study_instance_uid"]: r for r in json.loads(result.output)}
    assert len(rows) == len(cases)
    assert_demo_rows(rows, cases)

    # The demo again on the same folder: nothing judged twice.
    again = CliRunner().invoke(main, ["demo", "--out", str(out)], catch_exceptions=False)
    assert again.exit_code == 0
    assert f"{len(cases)} 无变化 unchanged" in again.output
