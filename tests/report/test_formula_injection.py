"""Untrusted text (InstitutionName) in the report workbook is text, never a formula."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from openpyxl import load_workbook

from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.samples.population import INSTITUTIONS, generate_population
from qc_pipeline.store import ResultStore

HOSTILE = '=HYPERLINK("http://x","click")'


def test_an_institution_name_that_looks_like_a_formula_is_written_as_text(tmp_path: Path) -> None:
    institutions = (dataclasses.replace(INSTITUTIONS[0], name=HOSTILE), *INSTITUTIONS[1:])
    with ResultStore.open(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        generate_population(store, scale=0.2, institutions=institutions)
        files = write_report(store, Period.parse("2026H2"), tmp_path / "out", lang="en", pdf=False)

    wb = load_workbook(files.xlsx)  # not read-only: data_type is the stored cell type
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]
    formulas = [f"{c.parent.title}!{c.coordinate}={c.value!r}" for c in cells if c.data_type == "f"]
    assert formulas == []
    shown = [c for c in cells if isinstance(c.value, str) and HOSTILE in c.value]
    assert all(c.value.startswith("'" + HOSTILE) for c in shown)  # the name, and headers built from it
    assert sum(c.value == "'" + HOSTILE for c in shown) >= 10
    assert {c.data_type for c in shown} == {"s"}
    numbers = [c for c in cells if isinstance(c.value, int | float) and not isinstance(c.value, bool)]
    assert numbers and {c.data_type for c in numbers} == {"n"}  # numbers stay numbers
