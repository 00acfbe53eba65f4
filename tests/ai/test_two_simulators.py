"""The MR artifact model trains on faults from two simulators (ours and TorchIO's; the spike from
TorchIO's alone) and on acceptable truncation ringing; the held-out test images keep our simulator
alone (the spike from our own one-point k-space spike)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("torch", reason="TorchIO's faults are in the 'models' extra (./bootstrap test installs it)")
pytest.importorskip("torchio", reason="TorchIO's faults are in the 'models' extra (./bootstrap test installs it)")

from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.modeltools import dataset, degrade, torchio_faults

MR_TRAINING = dataset.TRAINING_SIMULATION["MR"]


@pytest.fixture(scope="module")
def mr_training_set() -> list[dataset.Sample]:
    return dataset.build_set("MR", "train", 160, simulation=MR_TRAINING)


def test_mr_training_faults_come_from_both_simulators(mr_training_set):
    made = Counter(d for s in mr_training_set for d in s.degradations)
    shared = [label for label in torchio_faults.TRAINING_CASES if label not in MR_TRAINING.torchio_alone]
    for label in shared:
        assert made[f"{label}:degrade"] > 0, label
        assert sum(made[f"{label}:torchio.{case}"] for case in torchio_faults.TRAINING_CASES[label]) > 0, label
    # TorchIO has no fold-over model: wrap-around stays ours alone
    assert made["wrap_around:degrade"] > 0 and not any(d.startswith("wrap_around:torchio") for d in made)
    # about half of the faults of the shared labels (P_MR_TORCHIO = 0.5): 3 SD of a binomial around it
    ours = sum(made[f"{label}:degrade"] for label in shared)
    theirs = sum(n for d, n in made.items() if ":torchio." in d and d.split(":")[0] in shared)
    total = ours + theirs
    assert abs(theirs - total * dataset.P_MR_TORCHIO) <= 3 * np.sqrt(total * 0.25)


def test_the_spike_label_trains_on_torchios_random_spike_alone(mr_training_set):
    # TorchIO's RandomSpike (a maintained k-space spike model) makes every training spike; ours
    # (degrade.mr_kspace_spike) makes none of them
    assert MR_TRAINING.torchio_alone == torchio_faults.TORCHIO_ALONE == {"spike"}
    assert torchio_faults.TRAINING_CASES["spike"] == ("spike",)
    case = torchio_faults.cases()["spike"]
    assert case.label == "spike" and type(case.make()).__name__ == "RandomSpike"
    made = Counter(d for s in mr_training_set for d in s.degradations)
    assert made["spike:torchio.spike"] > 0 and made["spike:degrade"] == 0
    assert {d for d in made if d.startswith("spike:")} == {"spike:torchio.spike"}
    spiked = [s for s in mr_training_set if s.labels[MODEL_SPECS["mr_artifacts"].labels.index("spike")]]
    assert len(spiked) == made["spike:torchio.spike"]


def test_the_held_out_spikes_are_ours():
    # the card's spike figures are measured with a simulator the model did not train on
    made = Counter(d for s in dataset.build_set("MR", "test", 60) for d in s.degradations)
    assert made["spike:degrade"] > 0 and not any(":torchio." in d for d in made)


def test_each_sample_records_what_made_its_labels(mr_training_set):
    labels = MODEL_SPECS["mr_artifacts"].labels
    for s in mr_training_set:
        named = {d.split(":")[0] for d in s.degradations}
        assert named == {label for label, y in zip(labels, s.labels, strict=True) if y}


def test_two_builds_with_the_same_seed_are_identical(mr_training_set):
    again = dataset.build_set("MR", "train", 160, simulation=MR_TRAINING)
    for a, b in zip(mr_training_set, again, strict=True):
        assert np.array_equal(a.x, b.x) and np.array_equal(a.labels, b.labels) and a.degradations == b.degradations
    other = dataset.build_set("MR", "train", 16, simulation=MR_TRAINING, seed=12)
    assert not all(np.array_equal(a.x, b.x) for a, b in zip(mr_training_set, other, strict=False))


def test_torchio_faults_leave_the_callers_torch_stream_alone():
    # the network's initial weights are drawn from torch's global stream after the training set is built
    import torch

    image = np.full((48, 48), 100.0, dtype=np.float32)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    torchio_faults.degrade_with_torchio(image, "bias_field", seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_held_out_and_default_sets_keep_our_simulator_alone():
    # the evaluation's figures stay comparable from one model to the next; TorchIO's faults on held-out
    # images are external.evaluate_torchio's
    for s in dataset.build_set("MR", "test", 40):
        assert all(d.endswith(":degrade") for d in s.degradations)
    assert dataset.TRAINING_SIMULATION.get("CT", dataset.OURS_ONLY) == dataset.OURS_ONLY


def test_ct_and_dr_faults_stay_hand_written_even_with_a_torchio_share():
    # no library models collimation cut-off or detector rings (degrade's docstring)
    heavy = dataset.Simulation(torchio_share=1.0, gibbs_share=1.0)
    for modality in ("CT", "DR"):
        made = {d for s in dataset.build_set(modality, "train", 24, simulation=heavy) for d in s.degradations}
        assert made and all(d.endswith(":degrade") for d in made), modality


def box() -> np.ndarray:
    image = np.zeros((96, 96), dtype=np.float32)
    image[28:68, 30:66] = 200.0
    return image


@pytest.mark.parametrize("seed", range(6))
def test_gibbs_ringing_overshoots_at_edges_and_keeps_the_level(seed):
    clean = box()
    rung = degrade.mr_gibbs_ringing(clean, np.random.default_rng(seed))
    # Gibbs overshoot of a truncated step: ~9 % (Gibbs 1899); at a corner truncated along both axes
    # the two multiply (1.09^2 = 1.19); a few % more from the discrete, one-sample-asymmetric window
    assert 1.05 < rung.max() / 200.0 < 1.25
    # the level far from the edges stays (the k-space centre is kept): 2 % of ringing left there
    assert abs(rung[48, 45:50].mean() / 200.0 - 1.0) < 0.02
    # the total signal moves by a few % at most (the magnitude folds the negative lobes up)
    assert abs(rung.sum() / clean.sum() - 1.0) < 0.08


def test_gibbs_ringing_is_drawn_only_for_mr_training_images(monkeypatch):
    src = next(s for s in dataset.load_sources("MR", "train") if s.name.startswith("MR-SIEMENS"))
    calls: list[int] = []
    ring = degrade.mr_gibbs_ringing

    def counting(image, rng):
        calls.append(1)
        return ring(image, rng)

    monkeypatch.setattr(degrade, "mr_gibbs_ringing", counting)

    def drawn(**kwargs) -> int:
        calls.clear()
        for seed in range(40):
            dataset._augment(src, "MR", np.random.default_rng(seed), **kwargs)
        return len(calls)

    assert drawn(variation=True) == 0  # the default: none (the held-out sets)
    assert drawn(variation=False, gibbs=1.0) == 0  # clean evaluation images stay as their source has them
    # P_MR_GIBBS of 40 draws: 3 SD of a binomial around it
    assert abs(drawn(variation=True, gibbs=dataset.P_MR_GIBBS) - 40 * dataset.P_MR_GIBBS) <= 3 * np.sqrt(40 * 0.21)
    calls.clear()
    assert dataset.build_set("CT", "train", 8, simulation=dataset.Simulation(gibbs_share=1.0)) and not calls


def test_the_shipped_mr_model_was_trained_on_both_simulators_as_the_code_makes_them():
    import json

    from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR

    training = json.loads((DEFAULT_MODELS_DIR / "mr_artifacts.json").read_text(encoding="utf-8"))["training"]
    simulation = training["simulation"]
    assert simulation["torchio_share"] == MR_TRAINING.torchio_share
    assert simulation["gibbs_share"] == MR_TRAINING.gibbs_share
    assert simulation["torchio_cases"] == {k: list(v) for k, v in torchio_faults.TRAINING_CASES.items()}
    assert simulation["torchio_alone"] == sorted(MR_TRAINING.torchio_alone) == ["spike"]
    made = simulation["faults_train"]
    assert all(
        made[f"{label}:torchio.{case}"] > 0 for label, cases in torchio_faults.TRAINING_CASES.items() for case in cases
    )
    # the manifest counts the spike: every one TorchIO's, none ours
    assert made["spike:torchio.spike"] > 0 and "spike:degrade" not in made
    assert training["label_prevalence_train"]["spike"] > 0 and "spike" in training["val_auc"]
    assert sum(made.values()) <= 2 * training["n_train"]  # at most two faults per image


def test_the_shipped_mr_model_scores_the_five_labels_of_its_spec():
    import json

    import onnxruntime as ort

    from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, load_registry

    labels = MODEL_SPECS["mr_artifacts"].labels
    assert labels == ("motion_ghosting", "noise", "wrap_around", "nonuniformity", "spike")
    manifest = json.loads((DEFAULT_MODELS_DIR / "mr_artifacts.json").read_text(encoding="utf-8"))
    assert tuple(manifest["labels"]) == labels and set(manifest["decision_thresholds"]) == set(labels)
    assert "mr_artifacts" in load_registry(DEFAULT_MODELS_DIR)  # the registry accepts it against the spec
    x = np.stack([s.x for s in dataset.build_set("MR", "test", 4)])
    session = ort.InferenceSession(str(DEFAULT_MODELS_DIR / "mr_artifacts.onnx"), providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, {"input": x})
    assert scores.shape == (4, len(labels)) and ((scores >= 0) & (scores <= 1)).all()
