"""The model registry and onnxruntime scoring with the shipped models in models/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, load_registry, provenance_of
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.ai.specs import MODEL_SPECS, score_metric
from qc_pipeline.cli import main
from qc_pipeline.errors import DegenerateInputError, ModelError
from qc_pipeline.samples import phantoms


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.load(DEFAULT_MODELS_DIR)


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    target.mkdir()
    for path in DEFAULT_MODELS_DIR.iterdir():
        if path.suffix in (".onnx", ".json"):
            shutil.copy2(path, target / path.name)
    return target


def test_every_shipped_model_is_registered_with_its_checksum_and_spec():
    models = load_registry(DEFAULT_MODELS_DIR)
    assert set(models) == set(MODEL_SPECS)
    for name, model in models.items():
        assert model.manifest.labels == list(MODEL_SPECS[name].labels)
        assert model.path.stat().st_size < 5_000_000  # small enough for git
        assert model.manifest.decision_thresholds.keys() == set(model.manifest.labels)
    assert all(v.count("@") == 1 and len(v.split("@")[1]) == 12 for v in provenance_of(models).values())


def test_a_corrupted_model_file_is_refused_naming_the_file(models_copy: Path):
    path = models_copy / "ct_artifacts.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        ModelError, match=r"model ct_artifacts: .*ct_artifacts\.onnx is corrupt or was replaced: sha256"
    ):
        load_registry(models_copy)


def test_a_deleted_model_file_is_refused(models_copy: Path):
    (models_copy / "mr_artifacts.onnx").unlink()
    with pytest.raises(ModelError, match=r"model mr_artifacts: file .*mr_artifacts\.onnx is missing"):
        load_registry(models_copy)


def test_a_missing_manifest_is_refused(models_copy: Path):
    (models_copy / "dr_acceptability.json").unlink()
    with pytest.raises(ModelError, match=r"lacks the manifest of dr_acceptability"):
        load_registry(models_copy)


def test_every_problem_of_a_models_folder_is_named_at_once(models_copy: Path):
    # an operator restoring a folder sees all that is wrong in one message, not one per attempt
    (models_copy / "ct_artifacts.onnx").write_bytes(b"not a model")
    (models_copy / "mr_artifacts.onnx").unlink()
    (models_copy / "dr_acceptability.json").unlink()
    with pytest.raises(ModelError, match=r"^3 problems: ") as caught:
        load_registry(models_copy)
    message = str(caught.value)
    assert message.startswith("3 problems: (1) model ct_artifacts: ")
    assert "ct_artifacts.onnx is corrupt or was replaced" in message
    assert "(2) model mr_artifacts: file " in message and "mr_artifacts.onnx is missing" in message
    assert (
        "(3) models folder " in message
        and "lacks the manifest of dr_acceptability (expected dr_acceptability.json" in message
    )


def test_a_manifest_with_other_labels_is_refused(models_copy: Path):
    path = models_copy / "dr_artifacts.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["labels"] = ["acceptable"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelError, match=r"does not match model dr_artifacts: expected DR image labels"):
        load_registry(models_copy)


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (
            lambda m: m["preprocessing"].update(channels=["global", "detail", "polar"]),
            r"\['global', 'detail', 'polar'\]",
        ),
        (lambda m: m["input"].update(shape=[None, 4, 128, 128]), r"shape \[None, 4, 128, 128\]"),
    ],
    ids=["other-channels", "other-channel-count"],
)
def test_a_model_trained_on_other_input_channels_is_refused(models_copy: Path, change, found):
    """A models folder of another qc-pipeline version: the preprocessing would feed it the wrong input."""
    path = models_copy / "ct_artifacts.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(
        ModelError,
        match=rf"model ct_artifacts was trained on the input channels .*{found}.*this qc-pipeline builds "
        r"\['global', 'detail', 'wide'\]: retrain it \(qc-pipeline models train --model ct_artifacts\)",
    ):
        load_registry(models_copy)


def test_a_model_whose_input_differs_from_its_manifest_is_refused(models_copy: Path):
    # swap two models' files and fix the checksums: the registry passes, the session check refuses
    ct, mr = models_copy / "ct_artifacts.json", models_copy / "ct_acceptability.onnx"
    manifest = json.loads(ct.read_text(encoding="utf-8"))
    shutil.copy2(mr, models_copy / "ct_artifacts.onnx")
    import hashlib

    manifest["sha256"] = hashlib.sha256((models_copy / "ct_artifacts.onnx").read_bytes()).hexdigest()
    ct.write_text(json.dumps(manifest), encoding="utf-8")
    scorer = Scorer(load_registry(models_copy))
    assert "ct_artifacts" not in scorer.models and set(scorer.models) == set(MODEL_SPECS) - {"ct_artifacts"}
    assert re.match(r"model ct_artifacts: .* takes (inputs|shape)", scorer.unavailable["ct_artifacts"])
    assert scorer.unavailable_for("CT") == {"ct_artifacts": scorer.unavailable["ct_artifacts"]}
    assert scorer.unavailable_for("MR") == {}


def test_a_scorer_with_no_usable_model_at_all_is_refused(models_copy: Path):
    for path in models_copy.glob("*.onnx"):
        path.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"^6 problems: \(1\) model ct_acceptability: .*corrupt or was replaced"):
        Scorer.load(models_copy)


def test_models_list_shows_names_versions_and_hashes():
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name, model in load_registry(DEFAULT_MODELS_DIR).items():
        line = next(line for line in result.output.splitlines() if line.strip().startswith(name))
        assert model.manifest.version in line and model.manifest.sha256[:16] in line


def test_models_list_on_a_corrupted_folder_is_a_clear_error_not_a_traceback(models_copy: Path):
    (models_copy / "ct_artifacts.onnx").write_bytes(b"not a model")
    result = CliRunner().invoke(main, ["models", "list", "--dir", str(models_copy)])
    assert result.exit_code == 1
    assert (
        "错误 / error: 模型不可用" in result.output and "ct_artifacts" in result.output and "corrupt" in result.output
    )
    assert "Traceback" not in result.output


def test_scores_are_probabilities_one_per_label_plus_acceptability(scorer: Scorer):
    volume = phantoms.ct_water_cylinder(n_slices=12, size=128, noise_sd_hu=8.0, seed=3).astype(np.float32)
    scores = scorer.score("CT", list(volume), pixel_mm=1.5)
    names = [m.metric for m in scores]
    assert names == [score_metric("ct_artifacts", label) for label in MODEL_SPECS["ct_artifacts"].labels] + [
        "ai.ct_acceptability.unacceptable"
    ]
    assert all(0.0 <= m.value <= 1.0 and m.unit == "probability" for m in scores)
    assert "max over 8 sampled slices" in scores[0].detail and "ct_artifacts 2026" in scores[0].detail


def test_scoring_is_deterministic_and_ignores_slice_count_beyond_the_sample(scorer: Scorer):
    volume = phantoms.mr_head_phantom(n_slices=10, size=96, noise_sigma=5.0, seed=2).astype(np.float32)
    first = [m.value for m in scorer.score("MR", list(volume), pixel_mm=1.0)]
    assert first == [m.value for m in scorer.score("MR", list(volume), pixel_mm=1.0)]


def test_noise_raises_the_ct_noise_score(scorer: Scorer):
    quiet = phantoms.ct_water_cylinder(n_slices=4, size=256, noise_sd_hu=5.0, seed=4).astype(np.float32)
    noisy = phantoms.ct_water_cylinder(n_slices=4, size=256, noise_sd_hu=90.0, seed=4).astype(np.float32)
    label = score_metric("ct_artifacts", "excess_noise")
    q = next(m.value for m in scorer.score("CT", list(quiet), pixel_mm=1.0) if m.metric == label)
    n = next(m.value for m in scorer.score("CT", list(noisy), pixel_mm=1.0) if m.metric == label)
    assert n > 0.5 > q


def test_unscorable_pixels_raise_degenerate_input(scorer: Scorer):
    with pytest.raises(DegenerateInputError, match=r"at least 8x8"):
        scorer.score("DR", [np.zeros((4, 4), np.float32)], pixel_mm=None, stored_range=(0, 4095))
    with pytest.raises(DegenerateInputError, match=r"no models for modality 'US'"):
        scorer.score("US", [np.zeros((64, 64), np.float32)], pixel_mm=None)


def test_an_acceptability_model_naming_a_metric_this_version_does_not_measure_is_refused(models_copy: Path):
    path = models_copy / "ct_acceptability.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["preprocessing"]["features"][2] = "ct.noise_power_spectrum_peak"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(
        ModelError,
        match=r"model ct_acceptability reads the metric features .*this qc-pipeline "
        r"measures no ct\.noise_power_spectrum_peak: retrain it",
    ):
        load_registry(models_copy)


def test_a_metric_added_to_this_version_does_not_change_what_an_acceptability_model_reads(
    scorer: Scorer, monkeypatch: pytest.MonkeyPatch
):
    # Training takes FEATURES; inference takes the manifest's list. Adding a metric (here: one more
    # name in FEATURES) must not widen the vector fed to a model trained before it.
    from qc_pipeline.ai import features

    volume = phantoms.ct_water_cylinder(n_slices=8, size=128, noise_sd_hu=8.0, seed=3).astype(np.float32)
    before = [
        m for m in scorer.score("CT", list(volume), pixel_mm=0.7) if m.metric == "ai.ct_acceptability.unacceptable"
    ]
    monkeypatch.setitem(features.FEATURES, "CT", (*features.FEATURES["CT"], "ct.noise_measured_hu"))
    after = [
        m for m in scorer.score("CT", list(volume), pixel_mm=0.7) if m.metric == "ai.ct_acceptability.unacceptable"
    ]
    assert [m.value for m in after] == [m.value for m in before] and len(after) == 1
