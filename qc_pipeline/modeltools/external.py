"""A second simulator: the MR artifact model on held-out real images degraded by TorchIO.

The artifact models were first trained and evaluated on faults made by our own code
(:mod:`qc_pipeline.modeltools.degrade`) only. A model can learn the simulator rather than the fault,
and an evaluation with the same simulator cannot see that. TorchIO models the MR faults another way
(the transforms and their arguments: :mod:`qc_pipeline.modeltools.torchio_faults`).

:func:`evaluate_torchio` scores the shipped MR artifact model on crops of the held-out real MR
images (``dataset.REAL_SOURCES["MR"]["test"]``), clean and with each TorchIO fault, and reports per
label the AUC of clean against the faults the label names, with a bootstrap interval that
resamples whole source images (their effective n is the number of distinct source images, two), and
the share flagged at the label's limit, and the share of images any label flags. No interval is a
claim of performance on scanner data: two real images are two.

Since 2026.12.3 the MR artifact model trains on TorchIO's ghosting, motion, noise and bias field
too (half of those faults, :data:`torchio_faults.TRAINING_CASES`), and since 2026.12.4 on its
spike (all of the spike label's faults, :data:`torchio_faults.TORCHIO_ALONE`), with the same
transforms and ranges as here: this evaluation is then no longer an independent simulator for
any of its faults. It still measures held-out real images (other patients than the training
ones) and it still shows what the model learned of each simulator; the held-out test set of
``models evaluate`` measures the spike with our own simulator instead
(:func:`qc_pipeline.modeltools.degrade.mr_kspace_spike`), which the model never trained on. DR
collimation and CT rings, streaks and noise have no TorchIO or MONAI model; they stay hand-written.

Needs the ``models`` extra (PyTorch, TorchIO).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai.preprocess import channels, to_working_grid
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.ai.specs import MODEL_SPECS, score_metric
from qc_pipeline.modeltools import dataset
from qc_pipeline.modeltools.evaluation import _interval, auc_interval, clopper_pearson, limits_from
from qc_pipeline.modeltools.torchio_faults import cases as torchio_cases
from qc_pipeline.modeltools.torchio_faults import degrade_with_torchio
from qc_pipeline.rules import Thresholds

MODEL: Final = "mr_artifacts"
N_PER_CASE: Final = 120
"""Crops per case (clean and each fault): enough for the rates' intervals to be a few points wide;
the AUC's interval is set by the two source images, not by this."""
SEED: Final = 2026


def evaluate_torchio(
    scorer: Scorer, thresholds: Thresholds, *, n: int = N_PER_CASE, seed: int = SEED
) -> dict[str, Any]:
    """The figures of the module docstring, as a JSON-ready dict."""
    cases = torchio_cases()
    sources = [s for s in dataset.load_sources("MR", "test") if s.real]
    labels = MODEL_SPECS[MODEL].labels
    limits = limits_from(thresholds)
    scores: dict[str, npt.NDArray[np.floating]] = {}
    images: dict[str, list[str]] = {}
    for k, case in enumerate(["clean", *cases]):
        rng = np.random.default_rng([seed, k])
        xs, names = [], []
        for i in range(n):
            source = sources[int(rng.integers(0, len(sources)))]
            image, _mm, _matrix = dataset._augment(source, "MR", rng, variation=False)
            if case != "clean":
                image = degrade_with_torchio(image, case, seed * 1000 + k * n + i)
            xs.append(channels(to_working_grid(image), "MR"))
            names.append(source.name)
        scores[case] = scorer.run(MODEL, np.stack(xs))
        images[case] = names
    out: dict[str, Any] = {
        "model": scorer.models[MODEL].provenance,
        "sources": sorted({s.name for s in sources}),
        "n_per_case": n,
        "cases": {name: {"label": c.label, "transform": c.what} for name, c in cases.items()},
        "labels": {},
    }
    for j, label in enumerate(labels):
        limit = limits.get(score_metric(MODEL, label))
        faults = [name for name, c in cases.items() if c.label == label]
        row: dict[str, Any] = {"faults": faults, "limit": None if limit is None else limit[0]}
        if faults:
            p = np.concatenate([scores["clean"][:, j], *(scores[f][:, j] for f in faults)])
            y = np.concatenate([np.zeros(n, dtype=int), np.ones(n * len(faults), dtype=int)])
            groups = images["clean"] + [g for f in faults for g in images[f]]
            row["auc"] = _interval(auc_interval(y, p, groups=groups))
            row["by_fault_auc"] = {
                f: _interval(
                    auc_interval(
                        np.r_[np.zeros(n, int), np.ones(n, int)],
                        np.r_[scores["clean"][:, j], scores[f][:, j]],
                        groups=images["clean"] + images[f],
                    )
                )
                for f in faults
            }
        if limit is not None:
            row["flagged"] = {case: _share(scores[case][:, j] > limit[0]) for case in scores}
        out["labels"][label] = row
    at = np.array([limits.get(score_metric(MODEL, lb), (np.inf, False))[0] for lb in labels])
    out["any_label_flagged"] = {case: _share((scores[case] > at).any(axis=1)) for case in scores}
    return out


def _share(flags: npt.ArrayLike) -> dict[str, float]:
    flat = np.asarray(flags, dtype=bool).ravel()
    k, total = int(flat.sum()), len(flat)
    low, high = clopper_pearson(k, total)
    return {"rate": k / total, "low": low, "high": high, "n": total}


def markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown tables (for the card's known limits and the note)."""
    lines = [
        f"MR artifact model {results['model']} on {results['n_per_case']} crops per case of the held-out real "
        f"images {', '.join(results['sources'])} (TorchIO faults; AUC interval over the 2 source images).",
        "",
        "| label | TorchIO faults | AUC (95 % CI) | flagged at the limit: clean | flagged: faults |",
        "|---|---|---|---|---|",
    ]
    for label, row in results["labels"].items():
        auc = row.get("auc")
        text = "–" if auc is None else f"{auc['auc']:.3f} ({auc['low']:.3f}–{auc['high']:.3f})"
        flagged = row.get("flagged") or {}
        clean = flagged.get("clean")
        faults = ", ".join(f"{f} {flagged[f]['rate']:.0%}" for f in row["faults"] if f in flagged) or "–"
        lines.append(
            f"| {label} | {', '.join(row['faults']) or '–'} | {text} | "
            f"{'–' if clean is None else format(clean['rate'], '.0%')} | {faults} |"
        )
    anyf = results["any_label_flagged"]
    lines += [
        "",
        "Share flagged by any label at its limit: "
        + ", ".join(f"{case} {v['rate']:.0%} ({v['low']:.0%}–{v['high']:.0%})" for case, v in anyf.items()),
    ]
    return "\n".join(lines)
