"""Held-out evaluation of the shipped models, run through onnxruntime exactly as the flow runs them.

``qc-pipeline models evaluate`` calls :func:`evaluate` and prints :func:`markdown_table`; with
``--write`` it stores ``models/evaluation.json`` and rewrites the results section of each model
card (``models/<name>.md``), so the cards show what the command prints. The test images are made
from the held-out sources and seeds of :mod:`qc_pipeline.modeltools.dataset` (never seen in training);
the same code and models give the same numbers.

Per model and label: ROC AUC, overall and apart on the images made from real sources and from
phantoms (a label that separates phantoms but not real images lacks real images); sensitivity at
95 % specificity (the threshold set on the test negatives); sensitivity and specificity at the
limit of ``thresholds/ai.yaml`` (enabled or not: a disabled rule's row shows what enabling it
would do); Brier score and expected calibration error (10 equal-width bins). On clean real
images (held-out real sources, random framing, no degradation): the share each label flags at
its limit, and the share flagged by the model and by all models of the modality together through
the enabled rules, as the flow would flag them; the same per label over distinct images with its
exact interval; and each clean held-out real file scored whole as the flow scores a series
(:func:`series_level_clean`). For the gate of ``thresholds/ai.yaml``: the AUC per held-out real
source file with its bootstrap interval and the worst of them, the phantoms apart, the effective n
(distinct real images) and the faulty real images caught only by the AI (:func:`ai_only_catches`).
These folds are the held-out real sources of one trained model, not models retrained without each
source: a true leave-one-source-out needs one training run per fold (``models train``).

Beside the model, the objective metric that judges the same fault (:data:`COUNTERPARTS`), on the
same held-out images: its AUC next to the model's, overall and on real sources, with the share of
images it could measure and the state of its rules in ``thresholds/``. The metric is measured as
the flow measures it: on the image as acquired (CT/MR: at its simulated acquisition matrix, after
the degradations; DR: as presented), at its own pixel size, through the modality's ``measure``
(:func:`dataset.native_features_of`), not on the models' 256-pixel working grid. Where the metric
separates a fault better than the model, its rule is the one to rely on.

The statistics of an honest evaluation (the functions at the end of this module). A held-out set made of many crops of a few real images has an effective size of a few images:
the figures here count distinct images (and sources), report intervals, and keep phantoms apart.

- :func:`auc_interval`: ROC AUC with a seeded percentile-bootstrap 95 % interval; with ``groups``
  the bootstrap resamples whole groups (all crops of one image), so correlated crops are not
  counted as independent evidence.
- :func:`clopper_pearson`: the exact binomial interval of a rate.
- :func:`false_flags_by_image`: a clean image is falsely flagged when any of its crops (or
  slices: the flow flags a series on its highest slice) is; the rate is over distinct images.
- :func:`per_source`: the figures apart for each real source (the images made from it), the
  worst fold named; phantoms reported apart and never the worst fold.
- :func:`leakage`: the held-out images that correlate at or above a limit with a training image.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai.features import FEATURES, encode_missing, measured_metrics
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.ai.specs import MODEL_SPECS, score_metric
from qc_pipeline.metrics.registry import fault_side
from qc_pipeline.modeltools import dataset
from qc_pipeline.modeltools.cards import CARD_END, CARD_START
from qc_pipeline.rules.loader import Thresholds

logger = logging.getLogger(__name__)

N_TEST: Final = 1200
N_TEST_METRICS: Final = 450
N_CLEAN: Final = 300
SPECIFICITY: Final = 0.95

COUNTERPARTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # DR exposure is judged mainly by the header's deviation index, which the training images
        # lack; relative noise is the pixel-based check of under-exposure.
        "ai.dr_artifacts.exposure_fault": "dr.noise_relative_percent",
        "ai.dr_artifacts.saturation": "dr.clipped_stored_max_percent",
        "ai.dr_artifacts.blur_motion": "dr.blur_effect",
        "ai.dr_artifacts.collimation_cutoff": "dr.edge_anatomy_percent",
        "ai.ct_artifacts.excess_noise": "ct.noise_hu",
        "ai.ct_artifacts.streaks": "ct.streak_index",
        "ai.ct_artifacts.rings": "ct.ring_hu",
        "ai.mr_artifacts.motion_ghosting": "mr.ghosting_percent",
        "ai.mr_artifacts.noise": "mr.snr",
        "ai.mr_artifacts.wrap_around": "mr.wrap_percent",
        # N4's bias field, as the label's degradation (a smooth multiplicative field); PIU also moves
        # with anatomy
        "ai.mr_artifacts.nonuniformity": "mr.inu_range_percent",
    }
)
"""Score id -> objective metric: the metric of :mod:`qc_pipeline.metrics` that judges the same fault
as the label. The side on which it signals the fault comes from the metric's direction in
:mod:`qc_pipeline.metrics.registry` (:func:`~qc_pipeline.metrics.registry.fault_side`). CT motion and
the MR spike have none (no metric of the pipeline measures a k-space spike's stripes)."""


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
        if len(positives) and len(negatives)
        else float("nan"),
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
    y: npt.NDArray[np.integer],
    p: npt.NDArray[np.floating],
    limit: tuple[float, bool] | None,
    real: npt.NDArray[np.bool_],
    images: Sequence[str] | None = None,
) -> dict[str, Any]:
    """:func:`label_metrics` at the rule's limit, with the AUC on the images made from real sources
    and on those made from phantoms apart (``real``): where the two differ, real images are what a
    label lacks, not training. With ``images`` (the source image of each test image): the AUC of
    each real source file apart with its interval, the worst of them, and the phantoms apart
    (:func:`source_figures`)."""
    out: dict[str, Any] = label_metrics(y, p, None if limit is None else limit[0])
    if limit is not None:
        out["enabled"] = limit[1]
    out["auc_real_sources"] = _auc(y[real], p[real])
    out["auc_phantoms"] = _auc(y[~real], p[~real])
    if images is not None:
        out.update(source_figures(y, p, real, images))
    return out


def _interval(value: Interval | None) -> dict[str, float] | None:
    return None if value is None else {"auc": value.estimate, "low": value.low, "high": value.high, "n": value.n}


def source_figures(
    y: npt.NDArray[np.integer],
    p: npt.NDArray[np.floating],
    real: npt.NDArray[np.bool_],
    images: Sequence[str],
) -> dict[str, Any]:
    """The AUC with its bootstrap interval per real source file (the fold of the images made from it),
    the worst fold, the phantoms apart, and the effective n: distinct real source images."""
    files = [name.split("#")[0] for name in images]
    figures = per_source(y, p, files, real)
    real_images = {name for name, r in zip(images, real, strict=True) if r}
    return {
        "real_folds": {name: _interval(v) for name, v in figures.folds.items()},
        "worst_fold": figures.worst,
        "auc_lower_95_worst_fold": None if figures.worst is None else figures.folds[figures.worst].low,
        "phantoms": _interval(figures.phantoms),
        "effective_n_real_images": len(real_images),
    }


def ai_only_catches(
    y: npt.NDArray[np.integer],
    p: npt.NDArray[np.floating],
    limit: float,
    objective: npt.NDArray[np.floating],
    objective_limit: float | None,
    direction: str,
    real: npt.NDArray[np.bool_],
    images: Sequence[str],
) -> dict[str, int]:
    """Faulty real test images the label flags at ``limit`` that the objective rule (``objective``
    values, flagged ``direction`` of ``objective_limit``; none: no rule, so nothing is caught by it)
    does not: as crops, and as distinct source images with at least one such catch."""
    if objective_limit is None:
        caught_objectively = np.zeros(len(y), dtype=bool)
    else:
        values = np.asarray(objective, dtype=float)
        with np.errstate(invalid="ignore"):
            caught_objectively = (values > objective_limit) if direction == "above" else (values < objective_limit)
        caught_objectively &= np.isfinite(values)
    only = (y == 1) & real & (p > limit) & ~caught_objectively
    return {"crops": int(only.sum()), "images": len({images[int(i)] for i in np.flatnonzero(only)})}


def fault_score(values: npt.NDArray[np.floating], direction: str) -> npt.NDArray[np.float64]:
    """An objective metric as a score that rises with the fault (negated where ``direction`` is
    ``below``). An unmeasured value (NaN) ranks below every measured one: the flow raises no
    finding on a metric it could not measure."""
    score = np.asarray(values, dtype=np.float64) * (1.0 if direction == "above" else -1.0)
    finite = np.isfinite(score)
    floor = score[finite].min() - 1.0 if finite.any() else 0.0
    return np.where(finite, score, floor)


def comparison_features(modality: str) -> tuple[str, ...]:
    """The model's features, then every other metric the flow measures for ``modality`` (sorted)."""
    model = FEATURES[modality]
    return model + tuple(sorted(measured_metrics(modality) - set(model)))


def objective_comparison(
    model: str,
    features: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    p: npt.NDArray[np.floating],
    real: npt.NDArray[np.bool_],
    thresholds: Thresholds,
    images: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Label -> the AUC of its objective counterpart (:data:`COUNTERPARTS`) and of the model's score
    on the same images (``features``: :func:`dataset.native_features_of` rows, ``y`` / ``p``: labels and scores
    in the model's label order; columns as :func:`comparison_features`), with the share measured and the counterpart's rules (id -> enabled)."""
    spec = MODEL_SPECS[model]
    out: dict[str, Any] = {}
    for j, label in enumerate(spec.labels):
        metric = COUNTERPARTS.get(score_metric(model, label))
        if metric is None:
            continue
        direction = fault_side(metric)
        values = features[:, comparison_features(spec.modality).index(metric)]
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
        limit = limits_from(thresholds).get(score_metric(model, label))
        if images is not None and limit is not None:
            on = [
                r.limit
                for r in thresholds.rules.values()
                if r.metric == metric and r.when == direction and r.enabled and r.limit is not None
            ]
            objective_limit = (min(on) if direction == "above" else max(on)) if on else None
            out[label]["ai_only_catches"] = ai_only_catches(
                y[:, j], p[:, j], limit[0], values, objective_limit, direction, real, images
            )
    return out


def series_level_clean(scorer: Scorer, modality: str, limits: Mapping[str, tuple[float, bool]]) -> dict[str, Any]:
    """The clean held-out real source files scored as the flow scores a series: every frame of the
    file at its native size through :meth:`Scorer.score` (the slices it samples, the production
    preprocessing, the highest slice score), not random crops. Per score: the files flagged at the
    rule's limit (enabled or not), with the exact interval over distinct files; and each file's scores."""
    by_file: dict[str, list[dataset.SourceImage]] = {}
    for source in dataset.load_sources(modality, "test"):
        if source.real:
            by_file.setdefault(source.name.split("#")[0], []).append(source)
    scores: dict[str, dict[str, float]] = {}
    for name, frames in sorted(by_file.items()):
        measured = scorer.score(
            modality, [f.image for f in frames], pixel_mm=frames[0].pixel_mm, stored_range=frames[0].stored_range
        )
        scores[name] = {m.metric: float(m.value) for m in measured if m.value is not None}
    flagged: dict[str, dict[str, float]] = {}
    for metric in sorted({metric for values in scores.values() for metric in values}):
        limit = limits.get(metric)
        if limit is None:
            continue
        names = [name for name in scores if metric in scores[name]]
        flagged[metric] = _rate(false_flags_by_image(names, [scores[n][metric] > limit[0] for n in names]))
    return {"files": scores, "flagged": flagged}


def evaluate(
    scorer: Scorer,
    thresholds: Thresholds,
    *,
    progress: Callable[[str], None] = logger.info,
    n_test: int = N_TEST,
    n_test_metrics: int = N_TEST_METRICS,
    n_clean: int = N_CLEAN,
) -> dict[str, Any]:
    """Evaluate every model of ``scorer`` on the held-out sets (see the module docstring)."""
    limits = limits_from(thresholds)
    results: dict[str, Any] = {
        "models": {},
        "clean_real_flag_rate": {},
        "sizes": {"test_images": n_test, "test_images_metrics": n_test_metrics, "clean_real_images": n_clean},
    }
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
                label: _at_limit(
                    y[:, j], p[:, j], limits.get(score_metric(artifacts.name, label)), real, [s.source for s in test]
                )
                for j, label in enumerate(artifacts.labels)
            },
            "real_share_of_test": float(np.mean(real)),
        }
        progress(f"{modality}: metric features of {n_test_metrics} held-out test images")
        test_m = dataset.build_set(
            modality, "test", n_test_metrics, seed=dataset.SET_SEEDS["test"] + 1, keep_native=True
        )
        # The acceptability model is fed its own features as at inference (on the working grid);
        # the objective counterparts are every metric the flow measures, measured as the flow
        # measures them: on the image as acquired, at its own pixel size.
        features = dataset.features_of(test_m, modality)
        native = dataset.native_features_of(test_m, modality, comparison_features(modality))
        pm = scorer.run(acceptability.name, encode_missing(features))[:, 0]
        labels_m = np.stack([s.labels for s in test_m])
        ym = labels_m.any(axis=1).astype(int)
        real_m = np.array([s.real for s in test_m])
        label = acceptability.labels[0]
        results["models"][acceptability.name] = {
            "version": scorer.models[acceptability.name].provenance,
            "labels": {
                label: _at_limit(
                    ym, pm, limits.get(score_metric(acceptability.name, label)), real_m, [s.source for s in test_m]
                )
            },
        }
        results["models"][artifacts.name]["objective"] = objective_comparison(
            artifacts.name,
            native,
            labels_m,
            scorer.run(artifacts.name, np.stack([s.x for s in test_m])),
            real_m,
            thresholds,
            [s.source for s in test_m],
        )
        progress(f"{modality}: {n_clean} clean held-out real images")
        clean = dataset.build_set(modality, "test", n_clean, clean=True)
        pc = scorer.run(artifacts.name, np.stack([s.x for s in clean]))
        pa = scorer.run(acceptability.name, encode_missing(dataset.features_of(clean, modality)))[:, 0]
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
            # the same over distinct images (an image is flagged when any of its crops is), with the exact interval
            "by_label_images": {
                lb: _rate(false_flags_by_image([s.source for s in clean], at_limit[:, j]))
                for j, lb in enumerate(artifacts.labels)
            },
            "by_label_acceptability_images": {
                label: _rate(false_flags_by_image([s.source for s in clean], pa > acc[0]))
            },
            "series_level": series_level_clean(scorer, modality, limits),
        }
    return results


def _rate(value: Interval) -> dict[str, float]:
    return {"rate": value.estimate, "low": value.low, "high": value.high, "n": value.n}


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
    lines += evidence_table(name, results)
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
            "(those of the acceptability model): the metric of `qc_pipeline/metrics` that judges the same fault, measured "
            "as the flow measures it (on the image as acquired, at its own pixel size, not on the models' 256-px grid), "
            "and whether a rule in `thresholds/` judges "
            "it in that direction. An image on which the metric could not be measured counts as not flagged"
            + (
                " (the noise, ghosting and wrap metrics need air beside the object, which many random crops lack)"
                if modality == "MR"
                else ""
            )
            + ". Where the metric's AUC is the higher, its rule is the better detector of the fault.",
        ]
    return "\n".join(lines)


def evidence_table(name: str, results: Mapping[str, Any]) -> list[str]:
    """The figures the gate of ``thresholds/ai.yaml`` reads, per label (Markdown lines; none for
    results written before they were measured)."""
    model = results["models"][name]
    modality = MODEL_SPECS[name].modality
    clean = results["clean_real_flag_rate"][modality]
    by_image = {**clean.get("by_label_images", {}), **clean.get("by_label_acceptability_images", {})}
    if not by_image:
        return []
    order = {label: i for i, label in enumerate(MODEL_SPECS[name].labels)}
    objective = model.get("objective") or {}
    lines = [
        "",
        "| label | worst real fold: AUC [95 % CI] | other real folds | phantoms apart: AUC [95 % CI] "
        "| false flags over distinct clean real images [exact 95 % CI] | series level, as the flow scores: files flagged [exact 95 % CI] "
        "| caught only by the AI (real images / crops) | effective n (real images) |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    for label, m in sorted(model["labels"].items(), key=lambda item: order.get(item[0], len(order))):
        folds = m.get("real_folds") or {}
        worst = m.get("worst_fold")

        def ci(v: Mapping[str, float] | None) -> str:
            return "n/a" if v is None else f"{_f(v['auc'])} [{_f(v['low'])}, {_f(v['high'])}] (n {v['n']})"

        others = "; ".join(f"{k}: {ci(v)}" for k, v in sorted(folds.items()) if k != worst) or "none"
        rate = by_image.get(label)
        flags = (
            "n/a"
            if rate is None
            else (f"{round(rate['rate'] * rate['n'])} of {rate['n']} [{_f(rate['low'], 2)}, {_f(rate['high'], 2)}]")
        )
        series = (clean.get("series_level") or {}).get("flagged", {}).get(score_metric(name, label))
        series_text = (
            "n/a"
            if series is None
            else (
                f"{round(series['rate'] * series['n'])} of {series['n']} [{_f(series['low'], 2)}, {_f(series['high'], 2)}]"
            )
        )
        only = (objective.get(label) or {}).get("ai_only_catches")
        caught = "not measured" if only is None else f"{only['images']} / {only['crops']}"
        lines.append(
            f"| {label} | {'n/a' if worst is None else f'{worst}: ' + ci(folds[worst])} | {others} "
            f"| {ci(m.get('phantoms'))} | {flags} | {series_text} | {caught} | {m.get('effective_n_real_images', 'n/a')} |"
        )
    lines += [
        "",
        "The figures the gate of `thresholds/ai.yaml` reads. A fold is the test images made from one held-out real "
        "source file; its interval is a seeded bootstrap over those images (n: images), but the images of one fold are "
        "crops of one real image, so the effective n is the number of distinct real images. Phantoms are reported "
        "apart and never enter the gate: many held-out phantoms are near copies of training phantoms (correlation >= 0.95). "
        "A clean image counts as falsely flagged when any of its crops is flagged at the limit. Series level: each clean "
        "held-out real file scored whole, as the flow scores a series (its sampled slices at native size, the highest "
        "slice score). Caught only by the AI: "
        "faulty real test images the label flags at its limit that no enabled objective rule on its counterpart flags "
        "(the metric measured as the flow measures it); not measured where the label has no objective counterpart.",
    ]
    return lines


def markdown_table(results: Mapping[str, Any]) -> str:
    """Every model's table, in ``MODEL_SPECS`` order (also when ``results`` was read back from the sorted JSON)."""
    names = [name for name in MODEL_SPECS if name in results["models"]]
    return "\n\n".join(
        f"### {name} ({results['models'][name]['version']})\n\n{model_table(name, results)}" for name in names
    )


def _as_is(text: str) -> Callable[[re.Match[str]], str]:
    """A replacement for ``re.sub`` that puts ``text`` in as it is (a string would have its backslashes read)."""
    return lambda _match: text


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
        card.write_text(pattern.sub(_as_is(block), text), encoding="utf-8")
        written.append(card)
    return written


# --- statistics of an honest evaluation -------------------------------------------------------

LEVEL: Final = 0.95
N_BOOTSTRAP: Final = 2000
SEED: Final = 20261205
LEAKAGE_LIMIT: Final = 0.95
"""A held-out image correlating this much with a training image (Pearson, on the working grid) is
a near copy of it: it tests memory, not generalisation."""


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int
    """The effective size: distinct images (or groups) behind the figure."""


def _rank_auc(y: npt.NDArray[np.integer], p: npt.NDArray[np.floating]) -> float:
    """Mann-Whitney AUC (ties count one half); NaN without both classes."""
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_interval(
    y: Sequence[int] | npt.NDArray[np.integer],
    p: Sequence[float] | npt.NDArray[np.floating],
    *,
    groups: Sequence[object] | None = None,
    n_boot: int = N_BOOTSTRAP,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """AUC of scores ``p`` for labels ``y`` with a percentile-bootstrap interval (seeded: the same
    inputs give the same interval). ``groups``: resample whole groups (e.g. the source image of
    each crop); the effective n is then the number of groups. Resamples lacking a class are
    drawn again (at most ten times the requested number); NaN bounds when none has both."""
    y_arr, p_arr = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"{len(y_arr)} labels for {len(p_arr)} scores")
    keys = (
        np.arange(len(y_arr)) if groups is None else np.unique(np.asarray(groups, dtype=object), return_inverse=True)[1]
    )
    members = [np.flatnonzero(keys == g) for g in range(int(keys.max()) + 1)] if len(keys) else []
    estimate = _rank_auc(y_arr, p_arr)
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(10 * n_boot):
        if len(values) == n_boot or not members:
            break
        picked = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        value = _rank_auc(y_arr[picked], p_arr[picked])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return Interval(estimate, float("nan"), float("nan"), len(members))
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), len(members))


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a rate of ``k`` in ``n``."""
    from scipy.stats import beta

    if not 0 <= k <= n or n < 1:
        raise ValueError(f"{k} of {n}: need 0 <= k <= n and n >= 1")
    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def false_flags_by_image(
    images: Sequence[object], flagged: Sequence[bool] | npt.NDArray[np.bool_], level: float = LEVEL
) -> Interval:
    """The share of distinct clean images flagged (an image is flagged when any of its crops or
    slices is), with its exact interval; n is the number of distinct images."""
    if len(images) != len(flagged):
        raise ValueError(f"{len(images)} image names for {len(flagged)} flags")
    by_image: dict[object, bool] = {}
    for image, flag in zip(images, flagged, strict=True):
        by_image[image] = by_image.get(image, False) or bool(flag)
    k, n = sum(by_image.values()), len(by_image)
    low, high = clopper_pearson(k, n, level)
    return Interval(k / n, low, high, n)


@dataclass(frozen=True)
class SourceFigures:
    folds: dict[str, Interval]
    """Real source -> AUC of the images made from it (positives and negatives of that source)."""
    worst: str | None
    """The real source whose fold has the lowest AUC lower bound (None: no fold could be measured)."""
    phantoms: Interval | None
    """All phantom images together, reported apart: never a fold, never the worst."""


def per_source(
    y: Sequence[int] | npt.NDArray[np.integer],
    p: Sequence[float] | npt.NDArray[np.floating],
    sources: Sequence[str],
    real: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    images: Sequence[object] | None = None,
    n_boot: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> SourceFigures:
    """The AUC with its interval for each real source apart and for the phantoms apart; the worst
    real fold is the one with the lowest lower bound (a fold with one class only is left out).
    ``images`` groups the bootstrap (default: each source's images are independent draws)."""
    y_arr, p_arr = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    src, is_real = np.asarray(sources, dtype=object), np.asarray(real, dtype=bool)
    groups = None if images is None else np.asarray(images, dtype=object)
    folds: dict[str, Interval] = {}
    for name in sorted({s for s, r in zip(src, is_real, strict=True) if r}):
        mask = (src == name) & is_real
        if 0 < y_arr[mask].sum() < mask.sum():
            folds[name] = auc_interval(
                y_arr[mask], p_arr[mask], groups=None if groups is None else groups[mask], n_boot=n_boot, seed=seed
            )
    measured = {k: v for k, v in folds.items() if not math.isnan(v.low)}
    worst = min(measured, key=lambda k: measured[k].low) if measured else None
    phantom = ~is_real
    phantoms = (
        auc_interval(
            y_arr[phantom], p_arr[phantom], groups=None if groups is None else groups[phantom], n_boot=n_boot, seed=seed
        )
        if 0 < y_arr[phantom].sum() < phantom.sum()
        else None
    )
    return SourceFigures(folds, worst, phantoms)


def leakage(
    held_out: Sequence[npt.NDArray[np.floating]],
    training: Sequence[npt.NDArray[np.floating]],
    *,
    limit: float = LEAKAGE_LIMIT,
) -> list[tuple[int, int, float]]:
    """(held-out index, training index, Pearson r) of each held-out image whose highest correlation
    with a training image of the same shape reaches ``limit`` (the pair with that highest r).
    Images are compared as they are (give them on one grid); a constant image correlates with none."""

    def standardised(image: npt.NDArray[np.floating]) -> npt.NDArray[np.float64] | None:
        flat = np.asarray(image, dtype=np.float64).ravel()
        sd = flat.std()
        return None if sd == 0 or not np.isfinite(sd) else (flat - flat.mean()) / (sd * np.sqrt(flat.size))

    train = [(j, standardised(t), np.shape(t)) for j, t in enumerate(training)]
    found = []
    for i, image in enumerate(held_out):
        z = standardised(image)
        if z is None:
            continue
        best: tuple[int, float] | None = None
        for j, zt, shape in train:
            if zt is None or shape != np.shape(image):
                continue
            r = float(z @ zt)
            if best is None or r > best[1]:
                best = (j, r)
        if best is not None and best[1] >= limit:
            found.append((i, best[0], best[1]))
    return found
