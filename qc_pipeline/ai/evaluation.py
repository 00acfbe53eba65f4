"""Held-out evaluation of the shipped models, run through onnxruntime exactly as the flow runs them.

``qc-pipeline models evaluate`` calls :func:`evaluate` and prints :func:`markdown_table`; with
``--write`` it stores ``models/evaluation.json`` and rewrites the results section of each model
card (``models/<name>.md``), so the cards show what the command prints. The test images are made
from the held-out sources and seeds of :mod:`qc_pipeline.ai.dataset` (never seen in training);
the same code and models give the same numbers.

Per model and label: ROC AUC, overall and apart on the images made from real sources and from
phantoms (a label that separates phantoms but not real images lacks real images); sensitivity at
95 % specificity (the threshold set on the test negatives); sensitivity and specificity at the
limit of ``thresholds/ai.yaml`` (enabled or not: a disabled rule's row shows what enabling it
would do); Brier score and expected calibration error (10 equal-width bins). On clean real
images (held-out real sources, random framing, no degradation): the share each label flags at
its limit, and the share flagged by the model and by all models of the modality together through
the enabled rules, as the flow would flag them.

Beside the model, the objective metric that judges the same fault (:data:`COUNTERPARTS`), on the
same held-out images: its AUC next to the model's, overall and on real sources, with the share of
images it could measure and the state of its rules in ``thresholds/``. The metric is computed on
the working grid, as the acceptability models read it (:mod:`qc_pipeline.ai.features`); the flow
computes it on the native series, so the figure compares detectors, not the rule's limit. Where
the metric separates a fault better than the model, its rule is the one to rely on.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai import dataset
from qc_pipeline.ai.features import FEATURES, encode_missing
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.ai.specs import MODEL_SPECS, score_metric
from qc_pipeline.ai.training import features_of
from qc_pipeline.rules.loader import Thresholds

logger = logging.getLogger(__name__)

N_TEST: Final = 1200
N_TEST_METRICS: Final = 450
N_CLEAN: Final = 300
SPECIFICITY: Final = 0.95
CARD_START: Final = "<!-- evaluation:start (written by qc-pipeline models evaluate --write) -->"
CARD_END: Final = "<!-- evaluation:end -->"

COUNTERPARTS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType({
    # DR exposure is judged mainly by the header's deviation index, which the training images
    # lack; relative noise is the pixel-based check of under-exposure.
    "ai.dr_artifacts.exposure_fault": ("dr.noise_relative_percent", "above"),
    "ai.dr_artifacts.saturation": ("dr.clipped_stored_max_percent", "above"),
    "ai.dr_artifacts.blur_motion": ("dr.blur_effect", "above"),
    "ai.dr_artifacts.collimation_cutoff": ("dr.edge_anatomy_percent", "above"),
    "ai.ct_artifacts.excess_noise": ("ct.noise_hu", "above"),
    "ai.ct_artifacts.streaks": ("ct.streak_index", "above"),
    "ai.ct_artifacts.rings": ("ct.ring_hu", "above"),
    "ai.mr_artifacts.motion_ghosting": ("mr.ghosting_percent", "above"),
    "ai.mr_artifacts.noise": ("mr.snr", "below"),
    "ai.mr_artifacts.wrap_around": ("mr.wrap_percent", "above"),
    "ai.mr_artifacts.nonuniformity": ("mr.piu_percent", "below"),
})
"""Score id -> (objective metric, the direction in which it signals the fault): the metric of
:mod:`qc_pipeline.metrics` that judges the same fault as the label. CT motion has none."""


def _auc(y: npt.NDArray[np.integer], p: npt.NDArray[np.floating]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def _ece(y: npt.NDArray[np.integer], p: npt.NDArray[np.floating], bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(float(p[inside].mean()) - float(y[inside].mean()))
    return total


def label_metrics(y: npt.NDArray[np.integer], p: npt.NDArray[np.floating], limit: float | None) -> dict[str, float]:
    """AUC, sensitivity at 95 % specificity, sensitivity/specificity at ``limit``, Brier, ECE."""
    negatives, positives = p[y == 0], p[y == 1]
    out = {
        "n_positive": int(len(positives)),
        "n_negative": int(len(negatives)),
        "auc": _auc(y, p),
        "sensitivity_at_95_specificity": float(np.mean(positives > np.quantile(negatives, SPECIFICITY)))
        if len(positives) and len(negatives) else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": _ece(y, p),
    }
    if limit is not None:
        out["limit"] = limit
        out["sensitivity_at_limit"] = float(np.mean(positives > limit)) if len(positives) else float("nan")
        out["specificity_at_limit"] = float(np.mean(negatives <= limit)) if len(negatives) else float("nan")
    return out


def limits_from(thresholds: Thresholds) -> dict[str, tuple[float, bool]]:
    """Score id -> (limit, enabled): the lowest enabled ``above`` limit of ``thresholds/ai.yaml`` on
    it, else the lowest disabled one (what the label would do if a centre enabled its rule)."""
    limits: dict[str, tuple[float, bool]] = {}
    for rule in thresholds.rules.values():
        if not (rule.metric and rule.metric.startswith("ai.") and rule.when == "above" and rule.limit is not None):
            continue
        candidate = (rule.limit, rule.enabled)
        known = limits.get(rule.metric)
        if known is None or (candidate[1], -candidate[0]) > (known[1], -known[0]):
            limits[rule.metric] = candidate
    return limits


def _at_limit(
    y: npt.NDArray[np.integer], p: npt.NDArray[np.floating], limit: tuple[float, bool] | None,
    real: npt.NDArray[np.bool_],
) -> dict[str, Any]:
    """:func:`label_metrics` at the rule's limit, with the AUC on the images made from real sources
    and on those made from phantoms apart (``real``): where the two differ, real images are what a
    label lacks, not training."""
    out: dict[str, Any] = label_metrics(y, p, None if limit is None else limit[0])
    if limit is not None:
        out["enabled"] = limit[1]
    out["auc_real_sources"] = _auc(y[real], p[real])
    out["auc_phantoms"] = _auc(y[~real], p[~real])
    return out


def fault_score(values: npt.NDArray[np.floating], direction: str) -> npt.NDArray[np.float64]:
    """An objective metric as a score that rises with the fault (negated where ``direction`` is
    ``below``). An unmeasured value (NaN) ranks below every measured one: the flow raises no
    finding on a metric it could not measure."""
    score = np.asarray(values, dtype=np.float64) * (1.0 if direction == "above" else -1.0)
    finite = np.isfinite(score)
    floor = score[finite].min() - 1.0 if finite.any() else 0.0
    return np.where(finite, score, floor)


def objective_comparison(
    model: str, features: npt.NDArray[np.floating], y: npt.NDArray[np.integer], p: npt.NDArray[np.floating],
    real: npt.NDArray[np.bool_], thresholds: Thresholds,
) -> dict[str, Any]:
    """Label -> the AUC of its objective counterpart (:data:`COUNTERPARTS`) and of the model's score
    on the same images (``features``: :func:`features_of` rows, ``y`` / ``p``: labels and scores
    in the model's label order), with the share measured and the counterpart's rules (id -> enabled)."""
    spec = MODEL_SPECS[model]
    out: dict[str, Any] = {}
    for j, label in enumerate(spec.labels):
        counterpart = COUNTERPARTS.get(score_metric(model, label))
        if counterpart is None:
            continue
        metric, direction = counterpart
        values = features[:, FEATURES[spec.modality].index(metric)]
        score = fault_score(values, direction)
        out[label] = {
            "metric": metric,
            "direction": direction,
            "rules": {r.id: r.enabled for r in thresholds.rules.values() if r.metric == metric and r.when == direction},
            "measured_share": float(np.mean(np.isfinite(values))),
            "auc": _auc(y[:, j], score),
            "auc_real_sources": _auc(y[real, j], score[real]),
            "model_auc": _auc(y[:, j], p[:, j]),
            "model_auc_real_sources": _auc(y[real, j], p[real, j]),
        }
    return out


def evaluate(
    scorer: Scorer, thresholds: Thresholds, *, progress: Callable[[str], None] = logger.info,
    n_test: int = N_TEST, n_test_metrics: int = N_TEST_METRICS, n_clean: int = N_CLEAN,
) -> dict[str, Any]:
    """Evaluate every model of ``scorer`` on the held-out sets (see the module docstring)."""
    limits = limits_from(thresholds)
    results: dict[str, Any] = {"models": {}, "clean_real_flag_rate": {}, "sizes": {
        "test_images": n_test, "test_images_metrics": n_test_metrics, "clean_real_images": n_clean}}
    for modality in ("DR", "CT", "MR"):
        artifacts = MODEL_SPECS[f"{modality.lower()}_artifacts"]
        acceptability = MODEL_SPECS[f"{modality.lower()}_acceptability"]
        progress(f"{modality}: {n_test} held-out test images")
        test = dataset.build_set(modality, "test", n_test)
        x = np.stack([s.x for s in test])
        y = np.stack([s.labels for s in test])
        p = scorer.run(artifacts.name, x)
        real = np.array([s.real for s in test])
        results["models"][artifacts.name] = {
            "version": scorer.models[artifacts.name].provenance,
            "labels": {
                label: _at_limit(y[:, j], p[:, j], limits.get(score_metric(artifacts.name, label)), real)
                for j, label in enumerate(artifacts.labels)
            },
            "real_share_of_test": float(np.mean(real)),
        }
        progress(f"{modality}: metric features of {n_test_metrics} held-out test images")
        test_m = dataset.build_set(modality, "test", n_test_metrics, seed=dataset.SET_SEEDS["test"] + 1)
        features = features_of(test_m, modality)
        pm = scorer.run(acceptability.name, encode_missing(features))[:, 0]
        labels_m = np.stack([s.labels for s in test_m])
        ym = labels_m.any(axis=1).astype(int)
        real_m = np.array([s.real for s in test_m])
        label = acceptability.labels[0]
        results["models"][acceptability.name] = {
            "version": scorer.models[acceptability.name].provenance,
            "labels": {label: _at_limit(ym, pm, limits.get(score_metric(acceptability.name, label)), real_m)},
        }
        results["models"][artifacts.name]["objective"] = objective_comparison(
            artifacts.name, features, labels_m, scorer.run(artifacts.name, np.stack([s.x for s in test_m])), real_m, thresholds
        )
        progress(f"{modality}: {n_clean} clean held-out real images")
        clean = dataset.build_set(modality, "test", n_clean, clean=True)
        pc = scorer.run(artifacts.name, np.stack([s.x for s in clean]))
        pa = scorer.run(acceptability.name, encode_missing(features_of(clean, modality)))[:, 0]
        art = [limits.get(score_metric(artifacts.name, lb), (np.inf, False)) for lb in artifacts.labels]
        acc = limits.get(score_metric(acceptability.name, label), (np.inf, False))
        at_limit = pc > np.array([limit for limit, _ in art])
        enabled = np.array([on for _, on in art])
        flagged_art = (at_limit & enabled).any(axis=1)  # as the flow flags: enabled rules only
        flagged_acc = (pa > acc[0]) & acc[1]
        results["clean_real_flag_rate"][modality] = {
            "sources": sorted({s.source.split("#")[0] for s in clean}),
            artifacts.name: float(flagged_art.mean()),
            acceptability.name: float(flagged_acc.mean()),
            "any_model": float((flagged_art | flagged_acc).mean()),
            # each label at its limit, enabled or not: what enabling a rule would add
            "by_label": {lb: float(at_limit[:, j].mean()) for j, lb in enumerate(artifacts.labels)},
            "by_label_acceptability": {label: float((pa > acc[0]).mean())},
        }
    return results


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def model_table(name: str, results: Mapping[str, Any]) -> str:
    """The held-out table of one model (Markdown)."""
    model = results["models"][name]
    modality = MODEL_SPECS[name].modality
    clean = results["clean_real_flag_rate"][modality]
    clean_by_label = {**clean.get("by_label", {}), **clean.get("by_label_acceptability", {})}
    lines = [
        "| label | n pos / neg | AUC | AUC real / phantom | sens. @ 95 % spec. | limit | sens. @ limit | spec. @ limit "
        "| clean real flagged @ limit | Brier | ECE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    # the model's label order (evaluation.json is written with sorted keys)
    order = {label: i for i, label in enumerate(MODEL_SPECS[name].labels)}
    for label, m in sorted(model["labels"].items(), key=lambda item: order.get(item[0], len(order))):
        limit = "none" if "limit" not in m else _f(m["limit"], 2) + ("" if m.get("enabled", True) else " (off)")
        flagged = clean_by_label.get(label) if "limit" in m else None
        lines.append(
            f"| {label} | {m['n_positive']} / {m['n_negative']} | {_f(m['auc'])} "
            f"| {_f(m.get('auc_real_sources', float('nan')))} / {_f(m.get('auc_phantoms', float('nan')))} "
            f"| {_f(m['sensitivity_at_95_specificity'])} "
            f"| {limit} | {_f(m.get('sensitivity_at_limit', float('nan')))} "
            f"| {_f(m.get('specificity_at_limit', float('nan')))} | {'n/a' if flagged is None else f'{100 * flagged:.1f} %'} "
            f"| {_f(m['brier'])} | {_f(m['ece'])} |"
        )
    lines += [
        "",
        f"False flags on {results['sizes']['clean_real_images']} clean held-out real {modality} images "
        f"({', '.join(clean['sources'])}; random framing), with the enabled rules only, as the flow flags them: "
        f"this model {100 * clean[name]:.1f} %, all {modality} models together {100 * clean['any_model']:.1f} %. "
        "(off): the rule is disabled in `thresholds/ai.yaml`; its row shows what enabling it would do. "
        "AUC real / phantom: on the test images made from the held-out real sources and from the held-out phantom seeds.",
    ]
    objective = model.get("objective") or {}
    if objective:
        lines += [
            "",
            "| label | objective metric | its rule | measured on | AUC metric / model | AUC real: metric / model |",
            "|---|---|---|---:|---:|---:|",
        ]
        for label, o in sorted(objective.items(), key=lambda item: order.get(item[0], len(order))):
            rules = o["rules"]
            state = "no rule" if not rules else ("on" if any(rules.values()) else "off")
            lines.append(
                f"| {label} | `{o['metric']}` ({o['direction']}) | {state} | {100 * o['measured_share']:.0f} % "
                f"| {_f(o['auc'])} / {_f(o['model_auc'])} | {_f(o['auc_real_sources'])} / {_f(o['model_auc_real_sources'])} |"
            )
        lines += [
            "",
            f"Objective metric beside the model, on the same {results['sizes']['test_images_metrics']} held-out images "
            "(those of the acceptability model): the metric of `qc_pipeline/metrics` that judges the same fault, computed "
            "on the working grid (the flow computes it on the native series), and whether a rule in `thresholds/` judges "
            "it in that direction. An image on which the metric could not be measured counts as not flagged"
            + (" (the noise, ghosting and wrap metrics need air beside the object, which many random crops lack)"
               if modality == "MR" else "")
            + ". Where the metric's AUC is the higher, its rule is the better detector of the fault.",
        ]
    return "\n".join(lines)


def markdown_table(results: Mapping[str, Any]) -> str:
    """Every model's table, in ``MODEL_SPECS`` order (also when ``results`` was read back from the sorted JSON)."""
    names = [name for name in MODEL_SPECS if name in results["models"]]
    return "\n\n".join(f"### {name} ({results['models'][name]['version']})\n\n{model_table(name, results)}" for name in names)


def write_results(results: Mapping[str, Any], models_dir: Path) -> list[Path]:
    """``evaluation.json`` and the results section of every model card that has the markers."""
    written = [models_dir / "evaluation.json"]
    written[0].write_text(json.dumps(results, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in results["models"]:
        card = models_dir / f"{name}.md"
        if not card.is_file():
            continue
        text = card.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(CARD_START) + r".*?" + re.escape(CARD_END), re.DOTALL)
        if not pattern.search(text):
            continue
        block = f"{CARD_START}\n{model_table(name, results)}\n{CARD_END}"
        card.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")
        written.append(card)
    return written
