"""The evaluation command's figures: checked against scikit-learn on known arrays, and end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from qc_pipeline.ai.evaluation import CARD_END, CARD_START, _at_limit, evaluate, label_metrics, markdown_table, write_results
from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR
from qc_pipeline.ai.runtime import Scorer
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
    assert all({"auc_real_sources", "auc_phantoms"} <= set(m) for model in results["models"].values() for m in model["labels"].values())
    disabled = [m for model in results["models"].values() for m in model["labels"].values() if not m["enabled"]]
    assert disabled  # the shipped thresholds keep some labels off (model cards: below the targets)
    assert set(results["models"]) == {"dr_artifacts", "ct_artifacts", "mr_artifacts", "dr_acceptability", "ct_acceptability", "mr_acceptability"}
    assert set(results["clean_real_flag_rate"]) == {"DR", "CT", "MR"}
    table = markdown_table(results)
    assert "### ct_artifacts" in table and "| streaks |" in table and "False flags on 8 clean held-out real CT images" in table
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
    assert block.index("| motion_ghosting |") < block.index("| noise |") < block.index("| wrap_around |") < block.index("| nonuniformity |")
