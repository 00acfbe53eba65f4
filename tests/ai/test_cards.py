"""The hand-written part of a model card (known limits, experiment history) lives in
``models/<name>.limits.md``: the card generator reads it and retraining keeps it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, MODELS_DIR_ENV, read_manifest
from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.modeltools.cards import card_text, known_limits, limits_path, write_card

NAME = "mr_artifacts"


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_every_shipped_model_has_its_hand_written_limits_in_its_card(name: str):
    text = limits_path(name, DEFAULT_MODELS_DIR).read_text(encoding="utf-8").strip()
    assert text.startswith("- ")
    card = (DEFAULT_MODELS_DIR / f"{name}.md").read_text(encoding="utf-8")
    assert f"## Known limits\n\n{text}\n" in card


def test_a_card_reads_the_limits_of_its_own_folder_first(tmp_path: Path):
    limits_path(NAME, tmp_path).write_text("- Edited by hand after an experiment.\n", encoding="utf-8")
    card = card_text(read_manifest(DEFAULT_MODELS_DIR / f"{NAME}.json"), models_dir=tmp_path)
    assert "## Known limits\n\n- Edited by hand after an experiment.\n" in card
    assert known_limits(NAME, DEFAULT_MODELS_DIR) not in card


def test_a_card_written_into_a_new_folder_keeps_the_limits_of_the_model_in_use(tmp_path: Path):
    # What `models train` does: the new folder gets a copy of the hand-written file, so
    # installing the trained files by copying them into models/ keeps the text.
    shipped = limits_path(NAME, DEFAULT_MODELS_DIR).read_text(encoding="utf-8")
    card = write_card(read_manifest(DEFAULT_MODELS_DIR / f"{NAME}.json"), tmp_path)
    assert limits_path(NAME, tmp_path).read_text(encoding="utf-8") == shipped
    assert shipped.strip() in card.read_text(encoding="utf-8")


def test_writing_a_card_never_rewrites_the_hand_written_limits(tmp_path: Path):
    limits_path(NAME, tmp_path).write_text("- Kept.\n", encoding="utf-8")
    write_card(read_manifest(DEFAULT_MODELS_DIR / f"{NAME}.json"), tmp_path)
    assert limits_path(NAME, tmp_path).read_text(encoding="utf-8") == "- Kept.\n"


def test_a_model_without_limits_gets_a_card_that_says_which_file_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "in-use"))  # a models folder without the file
    with caplog.at_level(logging.WARNING, logger="qc_pipeline.modeltools.cards"):
        card = card_text(read_manifest(DEFAULT_MODELS_DIR / f"{NAME}.json"), models_dir=tmp_path)
    assert (
        "## Known limits\n\n- (no known limits written yet: write them in `mr_artifacts.limits.md` beside the model)\n"
        in card
    )
    assert "mr_artifacts has no known limits" in caplog.text


def test_the_card_of_a_model_trained_on_two_simulators_says_which_faults_each_made(tmp_path: Path):
    manifest = read_manifest(DEFAULT_MODELS_DIR / f"{NAME}.json")
    training = {k: v for k, v in manifest.training.items() if k != "simulation"}
    ours_only = card_text(manifest.model_copy(update={"training": training}), models_dir=tmp_path)
    assert "Second simulator" not in ours_only and "Gibbs" not in ours_only.split("## Known limits")[0]
    simulation = {
        "torchio_share": 0.5,
        "torchio_cases": {"motion_ghosting": ["ghosting", "motion"], "noise": ["noise"]},
        "gibbs_share": 0.3,
        "gibbs_keep": [0.6, 0.9],
        "faults_train": {"motion_ghosting:degrade": 7, "motion_ghosting:torchio.motion": 3, "noise:torchio.noise": 2},
    }
    card = card_text(
        manifest.model_copy(update={"training": {**training, "simulation": simulation}}), models_dir=tmp_path
    )
    data = card.split("## Data")[1].split("## Split")[0]
    assert (
        "- Second simulator: 50 % of the faults" in data and "motion_ghosting: ghosting, motion; noise: noise" in data
    )
    assert "5 of the 12 training faults came from TorchIO" in data
    assert "30 % of the training images (clean or not) carry truncation (Gibbs) ringing" in data
    assert "60-90 %" in data
