"""The MR artifact model judged with a second simulator: TorchIO's k-space faults on held-out real images."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torchio", reason="the second simulator is in the 'models' extra (./bootstrap test installs it)")

from qc_pipeline.ai.registry import default_models_dir
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.modeltools.external import evaluate_torchio, markdown
from qc_pipeline.modeltools.torchio_faults import degrade_with_torchio
from qc_pipeline.pipeline import load_pipeline_thresholds


def _object() -> np.ndarray:
    image = np.zeros((96, 96), dtype=np.float32)
    image[28:68, 30:66] = 200.0
    return image


def test_each_torchio_fault_does_what_its_name_says_and_is_reproducible():
    clean = _object()
    outside = clean == 0
    ghosted = degrade_with_torchio(clean, "ghosting", seed=1)
    assert ghosted[outside].mean() > 1.0  # ghosts put signal where there was none
    noisy = degrade_with_torchio(clean, "noise", seed=1)
    assert 200 / 8 * 0.5 < noisy[outside].std() < 200 / 3 * 1.5  # background SD at the label's SNR range
    biased = degrade_with_torchio(clean, "bias_field", seed=3)
    inside = biased[~outside]
    assert inside.max() / inside.min() > 1.2 and biased[outside].max() == 0.0  # a multiplicative field
    assert np.array_equal(degrade_with_torchio(clean, "motion", seed=5), degrade_with_torchio(clean, "motion", seed=5))
    assert not np.array_equal(degrade_with_torchio(clean, "motion", seed=5), clean)
    assert (degrade_with_torchio(clean, "spike", seed=2) >= 0).all()  # magnitude stays a magnitude


def test_the_shipped_mr_model_on_torchio_faults_reports_each_label_with_its_interval():
    results = evaluate_torchio(Scorer.load(default_models_dir()), load_pipeline_thresholds(), n=8)
    labels = results["labels"]
    assert set(labels) == {"motion_ghosting", "noise", "wrap_around", "nonuniformity", "spike"}
    assert labels["motion_ghosting"]["faults"] == ["ghosting", "motion"] and labels["wrap_around"]["faults"] == []
    # the spike is a label since 2026.12.4: TorchIO's spikes are scored against it, with their interval
    assert labels["spike"]["faults"] == ["spike"] and labels["spike"]["auc"]["n"] == 2
    noise = labels["noise"]["auc"]
    # Two source images: the bootstrap resamples images, so the effective n is 2.
    assert noise["n"] == 2 and noise["low"] <= noise["auc"] <= noise["high"]
    # Heavy noise is noise to any simulator: the shipped model separates it (0.99-1.0 at n=120).
    assert noise["auc"] > 0.9
    assert set(results["any_label_flagged"]) == {"clean", "ghosting", "motion", "noise", "bias_field", "spike"}
    assert all(v["n"] == 8 for v in results["any_label_flagged"].values())
    table = markdown(results)
    assert "| noise | noise |" in table and "| spike | spike |" in table
