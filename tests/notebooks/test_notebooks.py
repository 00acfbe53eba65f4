"""Every notebook in notebooks/ runs top to bottom without an error (so it cannot rot)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["ai_training_data.ipynb", "calibration.ipynb"]


EXPECTED: dict[str, tuple[str, ...]] = {
    # The population was built, measured and turned into proposals.
    "calibration.ipynb": (" measurements of ", "proposed by qc_pipeline.report.calibration"),
    # The sources and a training set were built, the shipped CT model scored a held-out slice at
    # rising noise, and the held-out table was read from models/evaluation.json.
    "ai_training_data.ipynb": (
        "RG1_UNCR.dcm",
        "64 training images",
        "excess_noise score",
        "### ct_artifacts (2026.",
        "| excess_noise |",
    ),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.delenv("QC_CALIBRATION_DB", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("QC_DB_URL", f"sqlite:///{tmp_path / 'unused.sqlite'}")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    missing = [marker for marker in EXPECTED[path.name] if marker not in text]
    assert not missing, (missing, text[-3000:])
