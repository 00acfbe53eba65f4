"""`qc-pipeline results --format csv`: text from the studies is written as text, never as a formula."""

from __future__ import annotations

import csv
import datetime as dt
import io

from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.domain import Verdict
from qc_pipeline.io.tabular import FORMULA_TRIGGERS
from qc_pipeline.store import ResultStore

from .spotcheck.conftest import make_decision, save_all

HOSTILE = ("=1+1", "-2+3", "+cmd", "@x", "\tx")


def test_results_csv_writes_text_that_looks_like_a_formula_as_text(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultStore.open(url) as store:
        save_all(
            store,
            [
                make_decision(n, text, "CT", Verdict.FAIL, dt.date(2026, 10, 1), patient=text)
                for n, text in enumerate(HOSTILE)
            ],
        )
    result = CliRunner().invoke(main, ["results", "--db", url, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert sorted(r["institution"] for r in rows) == sorted("'" + t for t in HOSTILE)
    assert all(r["patient_id"] == r["institution"] for r in rows)
    assert [k for r in rows for k, v in r.items() if v.startswith(FORMULA_TRIGGERS)] == []
    assert {(r["eligible"], r["metrics"]) for r in rows} == {("False", '{"ai.score": 0.93}')}  # non-text as before
