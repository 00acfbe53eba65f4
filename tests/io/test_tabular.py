"""The one escape every CSV and XLSX writer uses (OWASP, CSV Injection)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from openpyxl import Workbook

from qc_pipeline.io.tabular import append_row, cell_value, csv_row, escape_text, unescape_text


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","click")'])
def test_text_that_a_spreadsheet_would_run_gets_a_quote_and_comes_back_unchanged(text: str) -> None:
    assert escape_text(text) == "'" + text
    assert unescape_text(escape_text(text)) == text


@pytest.mark.parametrize(
    "text", ["", "渝州测试医院", "Hospital = A", "'quoted", "'", "''", "2.25.1", "—", "\nx", "＝1+1"]
)
def test_other_text_is_left_alone_both_ways(text: str) -> None:
    assert escape_text(text) == text
    assert unescape_text(text) == text


@pytest.mark.parametrize("text", ["'=x", "''+x", "'-1"])
def test_text_with_its_own_quote_before_a_trigger_gets_one_more_and_comes_back_unchanged(text: str) -> None:
    assert escape_text(text) == "'" + text
    assert unescape_text(escape_text(text)) == text


@pytest.mark.parametrize("value", [-2, -2.5, 0, 3, Decimal("-1.5"), True, None, dt.date(2026, 1, 2)])
def test_only_strings_are_escaped_numbers_stay_numbers(value: object) -> None:
    assert cell_value(value) is value


def test_csv_rows_are_escaped_and_read_back_with_unescape() -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["a", "b", "n"], lineterminator="\n")
    writer.writeheader()
    writer.writerow(csv_row({"a": "=1+1", "b": "ok", "n": -3}))
    assert buffer.getvalue().splitlines()[1] == "'=1+1,ok,-3"
    (row,) = csv.DictReader(io.StringIO(buffer.getvalue()))
    assert {k: unescape_text(v) for k, v in row.items()} == {"a": "=1+1", "b": "ok", "n": "-3"}


def test_append_row_never_writes_a_formula_cell() -> None:
    ws = Workbook().active
    append_row(ws, ["=1+1", "@x", -4, None, "text"])
    append_row(ws, [])
    append_row(ws, ["-2+3"])
    cells = {c.coordinate: (c.value, c.data_type) for row in ws.iter_rows() for c in row if c.value is not None}
    assert cells == {
        "A1": ("'=1+1", "s"),
        "B1": ("'@x", "s"),
        "C1": (-4, "n"),
        "E1": ("text", "s"),
        "A3": ("'-2+3", "s"),
    }


def test_the_label_file_keeps_its_values_and_runs_nothing(tmp_path) -> None:
    from qc_pipeline.modeltools.centre_labels import read_rows
    from qc_pipeline.review.labels import LABEL_COLUMNS, labels_csv

    row = {c: "" for c in LABEL_COLUMNS} | {
        "study_instance_uid": "=1+1",
        "modality": "@x",
        "source_uri": "-2+3",
        "human_decision": "pass",
        "item_code": "'quoted",
    }
    text = labels_csv([row])
    assert [
        v for r in csv.DictReader(io.StringIO(text)) for v in r.values() if v.startswith(("=", "+", "-", "@"))
    ] == []
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    assert read_rows(tmp_path / "labels.csv") == [row]
