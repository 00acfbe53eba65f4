"""``models train`` never replaces the models in use unless told to (--force)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.ai import cli as ai_cli
from qc_pipeline.ai.cli import train_destination
from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR
from qc_pipeline.cli import main
from qc_pipeline.errors import ConfigError


def test_default_destination_is_a_new_versioned_folder_not_the_models_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(ai_cli, "TRAINED_DIR", tmp_path / "trained-models")
    destination = train_destination(None, "2027.1.1", force=False, models_dir=DEFAULT_MODELS_DIR)
    assert destination == tmp_path / "trained-models" / "2027.1.1"
    assert destination.resolve() != DEFAULT_MODELS_DIR.resolve()


def test_the_models_folder_in_use_needs_force(tmp_path: Path):
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(ConfigError, match=r"is the models folder in use.*--force"):
        train_destination(models, "2027.1.1", force=False, models_dir=models)
    assert train_destination(models, "2027.1.1", force=True, models_dir=models) == models


def test_a_folder_already_holding_models_needs_force(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "evaluation.json").write_text("{}")  # not a model manifest: no refusal
    assert train_destination(out, "v", force=False, models_dir=DEFAULT_MODELS_DIR) == out
    shutil.copy2(DEFAULT_MODELS_DIR / "ct_artifacts.json", out / "ct_artifacts.json")
    with pytest.raises(ConfigError, match=r"already holds models \(ct_artifacts\.json\)"):
        train_destination(out, "v", force=False, models_dir=DEFAULT_MODELS_DIR)


def test_train_command_refuses_the_models_folder_before_training_and_leaves_it_untouched(tmp_path: Path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    for path in DEFAULT_MODELS_DIR.glob("ct_artifacts.*"):
        shutil.copy2(path, models / path.name)
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    monkeypatch.setenv("QC_MODELS_DIR", str(models))

    def no_training(*args, **kwargs):  # the refusal must come first
        raise AssertionError("training started")

    monkeypatch.setattr("qc_pipeline.modeltools.training.train_all", no_training)
    result = CliRunner().invoke(main, ["models", "train", "--out", str(models), "--model", "ct_artifacts"])
    assert result.exit_code == 1, result.output
    assert "is the models folder in use" in result.output and "拒绝覆盖模型" in result.output
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before
    assert json.loads((models / "ct_artifacts.json").read_text())["name"] == "ct_artifacts"
