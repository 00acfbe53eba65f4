"""Leave-one-real-source-out retraining of an artifact model (a reduced training budget).

The shipped models are evaluated on the real sources held out from their training (the cards'
folds), but every other real source is only ever trained on. Here each real patient is held out in
turn: the artifact CNN is trained again, with the same recipe at a smaller budget, on the other
real sources and the training phantoms, and scored on crops of the left-out patient's images
(faults made by :mod:`qc_pipeline.modeltools.degrade`, as in the evaluation). Printed per fold and
label: the AUC with a bootstrap interval that resamples the patient's distinct images (frames of
its files; a file of one image gives no interval), so it says how stable the figure is over that
patient's images, not over patients; and the worst fold per label.

    .venv/bin/python -m benchmarks.loso --modality MR            # 4 folds, about 10 minutes on 2 cores
    .venv/bin/python -m benchmarks.loso --modality CT            # 6 folds
    .venv/bin/python -m benchmarks.loso --modality MR --small    # a quick check of the script

Needs the ``models`` extra (PyTorch). The figures are of models trained with ``--n-train`` images
for ``--epochs`` epochs, not of the shipped ones (8000 images, 14 epochs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks._results import write_results
from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.modeltools import dataset
from qc_pipeline.modeltools.evaluation import _interval, auc_interval
from qc_pipeline.modeltools.training import TrainingConfig, train_artifact_model

# Files of one patient leave together (dataset.REAL_SOURCES says which).
SAME_PATIENT = {"examples_overlay.dcm": "MR-SIEMENS-DICOM-WithOverlays.dcm"}


def patients(modality: str) -> dict[str, tuple[str, ...]]:
    """Real source files by patient."""
    files = [*dataset.REAL_SOURCES[modality]["train"], *dataset.REAL_SOURCES[modality]["test"]]
    out: dict[str, list[str]] = {}
    for name in files:
        out.setdefault(SAME_PATIENT.get(name, name), []).append(name)
    return {k: tuple(v) for k, v in out.items()}


@contextlib.contextmanager
def held_out(modality: str, left_out: tuple[str, ...]) -> Iterator[None]:
    """``dataset.REAL_SOURCES`` with ``left_out`` as the only test source of ``modality``."""
    original = dataset.REAL_SOURCES[modality]
    everything = [*original["train"], *original["test"]]
    dataset.REAL_SOURCES[modality] = {  # type: ignore[index]
        "train": tuple(n for n in everything if n not in left_out),
        "test": left_out,
    }
    try:
        yield
    finally:
        dataset.REAL_SOURCES[modality] = original  # type: ignore[index]


def fold(modality: str, left_out: tuple[str, ...], config: TrainingConfig, n_test: int, work: Path) -> dict[str, Any]:
    spec = MODEL_SPECS[f"{modality.lower()}_artifacts"]
    out_dir = work / "-".join(left_out).replace(".", "_")
    out_dir.mkdir(parents=True)
    started = time.monotonic()
    with held_out(modality, left_out):
        train_artifact_model(spec, out_dir, config, progress=lambda m: print(f"    {m}", flush=True))
        real = [s for s in dataset.load_sources(modality, "test") if s.real]
        rng = np.random.default_rng([dataset.SET_SEEDS["test"], sum(map(ord, modality))])
        test = [dataset.make_sample(real, modality, rng) for _ in range(n_test)]
    # the exported ONNX file through onnxruntime, as the flow runs a model
    session = ort.InferenceSession(str(out_dir / f"{spec.name}.onnx"), providers=["CPUExecutionProvider"])
    p = np.asarray(session.run(None, {"input": np.stack([s.x for s in test])})[0])
    y = np.stack([s.labels for s in test])
    labels = {
        label: _interval(auc_interval(y[:, j], p[:, j], groups=[s.source for s in test]))
        | {"positives": int(y[:, j].sum()), "negatives": int((1 - y[:, j]).sum())}
        for j, label in enumerate(spec.labels)
    }
    return {
        "left_out": list(left_out),
        "trained_on": [n for n in patients(modality) if n not in left_out],
        "seconds": round(time.monotonic() - started, 1),
        "labels": labels,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=["DR", "CT", "MR"], default="MR")
    parser.add_argument(
        "--n-train", type=int, default=2000, help="training images per fold (shipped: DR 2000, CT/MR 8000)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fold (shipped: DR 7, CT/MR 14)")
    parser.add_argument("--n-test", type=int, default=400, help="crops of the left-out patient")
    parser.add_argument("--small", action="store_true", help="64 images, 1 epoch, 40 crops: a quick check")
    args = parser.parse_args(argv)
    n_train, epochs, n_test = (64, 1, 40) if args.small else (args.n_train, args.epochs, args.n_test)
    config = dataclasses.replace(TrainingConfig(), n_train=n_train, epochs=epochs, n_val=max(64, n_train // 5))
    folds = []
    with tempfile.TemporaryDirectory(prefix="qc-loso-") as tmp:
        for patient, files in patients(args.modality).items():
            print(f"{args.modality}: leaving out {patient} ({', '.join(files)})", flush=True)
            folds.append(fold(args.modality, files, config, n_test, Path(tmp)))
            row = folds[-1]
            print(
                "  "
                + " | ".join(
                    f"{label} {v['auc']:.3f} [{v['low']:.3f}, {v['high']:.3f}] ({v['positives']}+/{v['negatives']}-)"
                    for label, v in row["labels"].items()
                ),
                flush=True,
            )
    print(f"\n| left-out patient | {' | '.join(MODEL_SPECS[f'{args.modality.lower()}_artifacts'].labels)} |")
    print("|---|" + "---|" * len(folds[0]["labels"]))
    for row in folds:
        cells = [f"{v['auc']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for v in row["labels"].values()]
        print(f"| {row['left_out'][0]} | {' | '.join(cells)} |")
    worst = {
        label: min(folds, key=lambda r, lb=label: np.nan_to_num(r["labels"][lb]["auc"], nan=2.0))
        for label in folds[0]["labels"]
    }
    print(
        "| worst fold | "
        + " | ".join(f"{w['labels'][lb]['auc']:.3f} ({w['left_out'][0]})" for lb, w in worst.items())
        + " |"
    )
    out = write_results(
        f"loso-{args.modality.lower()}", folds, small=args.small, n_train=n_train, epochs=epochs, n_test=n_test
    )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
