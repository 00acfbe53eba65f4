"""The evaluation command's figures: checked against scikit-learn on known arrays, and end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from qc_pipeline.ai.features import FEATURES
from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, read_manifest
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.ai.specs import MODEL_SPECS, score_metrics
from qc_pipeline.metrics.registry import REGISTRY, Direction, fault_side
from qc_pipeline.modeltools.cards import card_text
from qc_pipeline.modeltools.evaluation import (
    CARD_END,
    CARD_START,
    COUNTERPARTS,
    _at_limit,
    comparison_features,
    evaluate,
    fault_score,
    label_metrics,
    markdown_table,
    objective_comparison,
    write_results,
)
from qc_pipeline.pipeline import load_pipeline_thresholds


def test_label_metrics_match_scikit_learn_and_hand_counts():
    rng = np.random.default_rng(0)
    y = np.array([0] * 80 + [1] * 20)
    p = np.clip(np.concatenate([rng.normal(0.2, 0.1, 80), rng.normal(0.7, 0.15, 20)]), 0, 1)
    m = label_metrics(y, p, limit=0.5)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["sensitivity_at_limit"] == pytest.approx(np.mean(p[y == 1] > 0.5))
    assert m["specificity_at_limit"] == pytest.approx(np.mean(p[y == 0] <= 0.5))
    threshold = np.quantile(p[y == 0], 0.95)
    assert m["sensitivity_at_95_specificity"] == pytest.approx(np.mean(p[y == 1] > threshold))
    # perfectly calibrated constant prediction: ECE 0
    assert label_metrics(np.array([0, 1, 0, 1]), np.full(4, 0.5), None)["ece"] == pytest.approx(0.0)


def test_the_auc_is_also_given_apart_for_images_from_real_sources_and_from_phantoms():
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 50)
    real = np.arange(100) < 60
    p = np.where(real, 0.2 + 0.6 * y, rng.uniform(0, 1, 100))  # real: separated; phantoms: chance
    m = _at_limit(y, p, (0.5, False), real)
    assert m["auc_real_sources"] == pytest.approx(1.0)
    assert m["auc_phantoms"] == pytest.approx(roc_auc_score(y[~real], p[~real]))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p)) and (m["limit"], m["enabled"]) == (0.5, False)
    # a subset without positives has no AUC (n/a in the card), not an error
    assert np.isnan(_at_limit(y, p, None, y == 0)["auc_real_sources"])


def test_an_objective_metric_becomes_a_fault_score_in_which_unmeasured_images_rank_lowest():
    values = np.array([3.0, np.nan, 10.0, 1.0])
    assert list(fault_score(values, "above")) == [3.0, 0.0, 10.0, 1.0]
    assert list(fault_score(values, "below")) == [-3.0, -11.0, -10.0, -1.0]  # a low SNR is the fault
    assert list(fault_score(np.full(2, np.nan), "above")) == [0.0, 0.0]


def test_every_counterpart_is_a_metric_the_flow_measures_and_judges_a_known_label():
    known = score_metrics()
    for score_id, metric in COUNTERPARTS.items():
        model = MODEL_SPECS[score_id.split(".")[1]]
        assert score_id in known and model.kind == "image", score_id
        assert metric in comparison_features(model.modality), score_id
    # the MR non-uniformity label is compared with N4's bias field, which the shipped model does not read
    assert COUNTERPARTS["ai.mr_artifacts.nonuniformity"] == "mr.inu_range_percent"
    assert "mr.inu_range_percent" not in FEATURES["MR"]
    assert comparison_features("MR")[: len(FEATURES["MR"])] == FEATURES["MR"]


def test_every_counterpart_is_registered_and_its_fault_side_follows_the_registered_direction():
    expected_side = {Direction.LOWER_BETTER: "above", Direction.HIGHER_BETTER: "below"}
    for score_id, metric in COUNTERPARTS.items():
        assert metric in REGISTRY, score_id
        assert REGISTRY[metric].direction in expected_side, (score_id, REGISTRY[metric].direction)
        assert fault_side(metric) == expected_side[REGISTRY[metric].direction], score_id
    # the one higher-is-better counterpart: a low MR SNR is the noise fault
    assert fault_side(COUNTERPARTS["ai.mr_artifacts.noise"]) == "below"
    assert fault_side(COUNTERPARTS["ai.ct_artifacts.rings"]) == "above"


def test_a_metric_without_a_single_fault_side_or_not_registered_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'dr.deviation_index' is in_range: it has no single fault side"):
        fault_side("dr.deviation_index")
    with pytest.raises(ValueError, match=r"'mr.fov_coverage_percent' is context"):
        fault_side("mr.fov_coverage_percent")
    with pytest.raises(KeyError, match=r"'mr.nonexistent' is not in qc_pipeline.metrics.registry"):
        fault_side("mr.nonexistent")


def test_the_objective_comparison_scores_the_counterpart_and_the_model_on_the_same_images():
    rng = np.random.default_rng(2)
    n = 60
    y = np.zeros((n, 4), dtype=int)
    y[::3, 2] = 1  # rings on every third image
    features = rng.normal(0.0, 1.0, (n, len(comparison_features("CT"))))
    ring = comparison_features("CT").index("ct.ring_hu")
    features[:, ring] = np.where(y[:, 2] == 1, 12.0, 1.0) + rng.uniform(0, 0.5, n)  # separates rings perfectly
    features[1, ring] = np.nan  # a negative the metric could not measure
    p = rng.uniform(0, 1, (n, 4))
    real = np.arange(n) < 40
    out = objective_comparison("ct_artifacts", features, y, p, real, load_pipeline_thresholds())
    assert set(out) == {"excess_noise", "streaks", "rings"}  # CT motion has no objective counterpart
    rings = out["rings"]
    assert (rings["metric"], rings["direction"]) == ("ct.ring_hu", "above")
    assert rings["rules"] == {"image_quality.ct.ring.review": True}  # the shipped rule, enabled
    assert rings["auc"] == pytest.approx(1.0) and rings["auc_real_sources"] == pytest.approx(1.0)
    assert rings["measured_share"] == pytest.approx((n - 1) / n)
    assert rings["model_auc"] == pytest.approx(roc_auc_score(y[:, 2], p[:, 2]))
    assert rings["model_auc_real_sources"] == pytest.approx(roc_auc_score(y[real, 2], p[real, 2]))
    assert out["streaks"]["rules"] == {}  # recorded, not judged: no rule on ct.streak_index


def test_evaluate_writes_the_json_and_the_card_tables(tmp_path: Path):
    models = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS_DIR, models)
    thresholds = load_pipeline_thresholds()
    results = evaluate(Scorer.load(models), thresholds, n_test=24, n_test_metrics=12, n_clean=8)
    # every label is measured at its rule's limit, enabled or not, and says which
    rules = {r.metric: r for r in thresholds.rules.values() if r.metric and r.metric.startswith("ai.")}
    for name, model in results["models"].items():
        for label, m in model["labels"].items():
            rule = rules[f"ai.{name}.{label}"]
            assert (m["limit"], m["enabled"]) == (rule.limit, rule.enabled), (name, label)
    # every label also has its AUC apart on the images from real sources and from phantoms
    assert all(
        {"auc_real_sources", "auc_phantoms"} <= set(m)
        for model in results["models"].values()
        for m in model["labels"].values()
    )
    disabled = [m for model in results["models"].values() for m in model["labels"].values() if not m["enabled"]]
    assert disabled  # the shipped thresholds keep some labels off (model cards: below the targets)
    assert set(results["models"]) == {
        "dr_artifacts",
        "ct_artifacts",
        "mr_artifacts",
        "dr_acceptability",
        "ct_acceptability",
        "mr_acceptability",
    }
    assert set(results["clean_real_flag_rate"]) == {"DR", "CT", "MR"}
    # each artifact label with an objective counterpart is compared with it on the same images
    for name in ("dr_artifacts", "ct_artifacts", "mr_artifacts"):
        compared = {lb for lb in MODEL_SPECS[name].labels if f"ai.{name}.{lb}" in COUNTERPARTS}
        assert set(results["models"][name]["objective"]) == compared
    table = markdown_table(results)
    assert (
        "| rings | `ct.ring_hu` (above) | on |" in table
        and "| streaks | `ct.streak_index` (above) | no rule |" in table
    )
    assert (
        "### ct_artifacts" in table
        and "| streaks |" in table
        and "False flags on 8 clean held-out real CT images" in table
    )
    assert table.count(" (off) |") == len(disabled)
    # the flow's clean flag rate counts enabled rules only; each label's own rate is at its limit
    for modality, clean in results["clean_real_flag_rate"].items():
        art = f"{modality.lower()}_artifacts"
        on = [lb for lb, m in results["models"][art]["labels"].items() if m["enabled"]]
        assert clean[art] >= max([clean["by_label"][lb] for lb in on], default=0.0)
        assert clean[art] <= sum(clean["by_label"][lb] for lb in on) + 1e-9
    written = write_results(results, models)
    saved = json.loads((models / "evaluation.json").read_text(encoding="utf-8"))
    assert saved["sizes"] == {"test_images": 24, "test_images_metrics": 12, "clean_real_images": 8}
    card = (models / "mr_artifacts.md").read_text(encoding="utf-8")
    block = card[card.index(CARD_START) : card.index(CARD_END)]
    assert "| motion_ghosting |" in block and models / "mr_artifacts.md" in written
    # the card rows follow the model's label order, also when written again from the saved JSON
    # (whose keys are sorted): re-writing a card from evaluation.json changes nothing
    write_results(saved, models)
    assert (models / "mr_artifacts.md").read_text(encoding="utf-8") == card
    assert markdown_table(saved) == table  # the printed tables too, model by model in the same order
    assert (
        block.index("| motion_ghosting |")
        < block.index("| noise |")
        < block.index("| wrap_around |")
        < block.index("| nonuniformity |")
    )


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_each_shipped_card_is_what_the_code_writes_from_its_manifest_around_the_evaluation_tables(name: str):
    # A card is written by `models train` (cards.card_text) and its results section by `models evaluate
    # --write`; text edited in cards.py since must reach every shipped card of the modality.
    def outside_results(text: str) -> str:
        return text[: text.index(CARD_START)] + text[text.index(CARD_END) :]

    shipped = (DEFAULT_MODELS_DIR / f"{name}.md").read_text(encoding="utf-8")
    written = card_text(read_manifest(DEFAULT_MODELS_DIR / f"{name}.json"))
    assert outside_results(shipped) == outside_results(written)


def test_the_objective_counterparts_are_measured_on_the_image_as_acquired_as_the_flow_measures():
    """The comparison's metrics come from the image at its acquisition matrix and pixel size, through
    the same measure() the flow calls; keeping that image changes none of the samples."""
    from qc_pipeline.ai.preprocess import WORKING_SIZE
    from qc_pipeline.metrics import ct
    from qc_pipeline.modeltools import dataset

    plain = dataset.build_set("CT", "test", 6, seed=7)
    kept = dataset.build_set("CT", "test", 6, seed=7, keep_native=True)
    assert all(
        np.array_equal(a.x, b.x) and np.array_equal(a.labels, b.labels) for a, b in zip(plain, kept, strict=True)
    )
    assert plain[0].native is None
    with pytest.raises(ValueError, match="keep_native"):
        dataset.native_features_of(plain, "CT", ("ct.noise_hu",))
    values = dataset.native_features_of(kept, "CT", ("ct.noise_hu", "ct.streak_index"))
    for sample, row in zip(kept, values, strict=True):
        assert sample.native is not None
        if sample.pixel_mm is not None:  # one field of view, two pixel sizes
            assert sample.native_mm * max(sample.native.shape) == pytest.approx(
                sample.pixel_mm * WORKING_SIZE, rel=0.01
            )
        measured = {
            m.metric: m.value
            for m in ct.measure(
                sample.native[None], spacing_mm=(None, sample.native_mm, sample.native_mm), body_part=None
            )
        }
        expected = [measured[k] if measured[k] is not None else np.nan for k in ("ct.noise_hu", "ct.streak_index")]
        np.testing.assert_allclose(row, np.asarray(expected, dtype=np.float32), equal_nan=True)
    # at the acquisition matrix, not on the working grid: the two differ where resampling smooths
    grid = dataset.features_of(kept, "CT", ("ct.noise_hu",))[:, 0]
    assert not np.allclose(grid, values[:, 0], equal_nan=True)
