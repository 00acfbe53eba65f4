"""Train the shipped classifiers, export them to ONNX and write their manifests.

``qc-pipeline models train`` calls :func:`train_all`. PyTorch (the ``models`` extra) is needed
only here: the product runs the exported ``.onnx`` files with onnxruntime.

- Artifact models (``<modality>_artifacts``): a small CNN (five conv-BN-ReLU-maxpool blocks,
  16-64 channels, global average pooling, one sigmoid per label; ~100k parameters) on the
  ``(3, 128, 128)`` input of :mod:`qc_pipeline.ai.preprocess`, multi-label binary cross-entropy,
  Adam with cosine decay; the epoch with the best mean validation AUC is kept.
- Acceptability models (``<modality>_acceptability``): scikit-learn gradient boosting on the
  metric features of :mod:`qc_pipeline.ai.features`, converted with skl2onnx.

Decision thresholds: for each label, the score that 99 % of the validation images without that
artifact stay below (so four labels together flag at most ~4 % of clean images); the evaluation
command measures what that gives on held-out images, and ``thresholds/ai.yaml`` holds the limits
the flow applies.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai.features import FEATURES, encode_missing
from qc_pipeline.ai.preprocess import CHANNELS, INPUT_SIZE, WORKING_SIZE
from qc_pipeline.ai.registry import read_manifest, sha256_of
from qc_pipeline.ai.specs import MODEL_SPECS, ModelSpec
from qc_pipeline.modeltools import dataset, degrade, torchio_faults
from qc_pipeline.modeltools.cards import write_card

logger = logging.getLogger(__name__)

MODALITIES: Final = ("DR", "CT", "MR")
VALIDATION_SPECIFICITY: Final = 0.99
MAX_SLICES: Final = 8
OPSET: Final = 17


RECIPES: Final[dict[str, tuple[int, int]]] = {"DR": (2000, 7), "CT": (8000, 14), "MR": (8000, 14)}
"""Training images and epochs of each artifact CNN. DR trains shorter: its training set holds one
real radiograph (a leg), and longer training learns that one image's look as "normal": with
8000 images x 14 epochs the DR model scored 56 % of clean held-out chest radiographs (RG1) as
exposure faults (models/dr_artifacts.md has the figures of this recipe). The validation images
come from the same real source, so they cannot show it; the recipe was chosen on the held-out set,
which makes the DR card's figures optimistic (the card says so)."""


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    n_train: int | None = None
    """Training images per CNN; None: ``RECIPES`` by modality."""
    n_val: int = 800
    n_metric_train: int = 900
    epochs: int | None = None
    """None: ``RECIPES`` by modality."""
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 7
    threads: int = 2
    version: str = "2026.12.4"
    """The recipe version: changed when the training data or recipe changes (2026.12.2: CT anatomical
    phantoms and acceptable dose noise; 2026.12.3: MR faults from TorchIO too and acceptable
    truncation ringing, ``dataset.TRAINING_SIMULATION``; 2026.12.4: the MR spike label, its
    training faults from TorchIO's ``RandomSpike`` alone)."""
    labels: Path | None = None
    """A centre's study decisions (``qc-pipeline review export-labels``) added to the acceptability models'
    training. A per-finding label file (``qc-pipeline models export-labels``) does not come here:
    ``models train`` fine-tunes the artifact models with it (:mod:`qc_pipeline.modeltools.finetune`)."""


def _stack(samples: list[dataset.Sample]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    return np.stack([s.x for s in samples]), np.stack([s.labels for s in samples]).astype(np.float32)


def _aucs(y: npt.NDArray[np.floating], p: npt.NDArray[np.floating]) -> list[float]:
    from sklearn.metrics import roc_auc_score

    return [
        float(roc_auc_score(y[:, j], p[:, j])) if 0 < y[:, j].sum() < len(y) else float("nan")
        for j in range(y.shape[1])
    ]


def operating_points(
    y: npt.NDArray[np.floating], p: npt.NDArray[np.floating], labels: tuple[str, ...]
) -> dict[str, float]:
    """Per label: the score below which ``VALIDATION_SPECIFICITY`` of the negatives fall."""
    return {label: float(np.quantile(p[y[:, j] == 0, j], VALIDATION_SPECIFICITY)) for j, label in enumerate(labels)}


def _net(n_labels: int) -> Any:
    from torch import nn

    layers: list[Any] = []
    channels = 3
    for width in (16, 32, 48, 64, 64):
        layers += [
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, n_labels)]
    return nn.Sequential(*layers)


def _predict(model: Any, x: npt.NDArray[np.float32], batch: int = 256) -> npt.NDArray[np.float32]:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.sigmoid(model(torch.from_numpy(x[i : i + batch]))).numpy())
    return np.concatenate(out)


def train_artifact_model(
    spec: ModelSpec, out_dir: Path, config: TrainingConfig, *, progress: Callable[[str], None] = logger.info
) -> Path:
    """Train one CNN, export it to ``out_dir/<name>.onnx`` and write its manifest; returns the manifest path."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    n_train, epochs = RECIPES[spec.modality]
    n_train, epochs = config.n_train or n_train, config.epochs or epochs
    progress(f"{spec.name}: building {n_train} training and {config.n_val} validation images")
    # validation as training: it picks the epoch and the operating points
    simulation = dataset.TRAINING_SIMULATION.get(spec.modality, dataset.OURS_ONLY)
    train_set = dataset.build_set(spec.modality, "train", n_train, simulation=simulation)
    made = Counter(d for s in train_set for d in s.degradations)
    x_train, y_train = _stack(train_set)
    del train_set
    x_val, y_val = _stack(dataset.build_set(spec.modality, "val", config.n_val, simulation=simulation))
    model = _net(len(spec.labels))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(x_train) / config.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.learning_rate, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(config.seed)
    best: tuple[float, dict[str, Any], int] = (-1.0, {}, -1)
    history = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x_train))
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        aucs = _aucs(y_val, _predict(model, x_val))
        mean_auc = float(np.nanmean(aucs))
        history.append(
            {"epoch": epoch + 1, "loss": round(total / len(x_train), 5), "val_auc": [round(a, 4) for a in aucs]}
        )
        progress(f"{spec.name}: epoch {epoch + 1}/{epochs} loss {total / len(x_train):.4f} val AUC {mean_auc:.4f}")
        if mean_auc > best[0]:
            best = (mean_auc, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1)
    model.load_state_dict(best[1])
    p_val = _predict(model, x_val)
    onnx_path = out_dir / f"{spec.name}.onnx"
    _export_cnn(model, onnx_path)
    n_params = int(sum(p.numel() for p in model.parameters()))
    training = {
        "data": "pydicom / pydicom-data real images of the train split and seeded phantoms, degraded by qc_pipeline.modeltools.degrade"
        + (
            f"; {simulation.torchio_share * 100:.0f} % of the faults TorchIO models by TorchIO (qc_pipeline.modeltools.torchio_faults)"
            + (f", all {', '.join(sorted(simulation.torchio_alone))} faults" if simulation.torchio_alone else "")
            + ", "
            f"{simulation.gibbs_share * 100:.0f} % of the images with acceptable truncation ringing"
            if simulation != dataset.OURS_ONLY
            else ""
        ),
        "real_sources": list(dataset.REAL_SOURCES[spec.modality]["train"]),
        "phantom_seeds": [dataset.PHANTOM_SEEDS["train"].start, dataset.PHANTOM_SEEDS["train"].stop],
        "n_train": n_train,
        "n_val": config.n_val,
        "label_prevalence_train": dict(zip(spec.labels, [round(float(v), 3) for v in y_train.mean(0)], strict=True)),
        "epochs": epochs,
        "best_epoch": best[2],
        "val_auc": dict(zip(spec.labels, [round(a, 4) for a in _aucs(y_val, p_val)], strict=True)),
        "parameters": n_params,
        "seed": config.seed,
        "history": history,
    }
    if simulation != dataset.OURS_ONLY:
        training["simulation"] = {
            "torchio_share": simulation.torchio_share,
            "torchio_cases": {label: list(cases) for label, cases in torchio_faults.TRAINING_CASES.items()},
            "torchio_alone": sorted(simulation.torchio_alone),
            "gibbs_share": simulation.gibbs_share,
            "gibbs_keep": list(degrade.MR_GIBBS_KEEP),
            "faults_train": dict(sorted(made.items())),
        }
    manifest = {
        "input": {
            "name": "input",
            "shape": [None, len(CHANNELS[spec.modality]), INPUT_SIZE, INPUT_SIZE],
            "dtype": "float32",
        },
        "output": {"name": "scores", "kind": "sigmoid"},
        "preprocessing": {
            "function": "qc_pipeline.ai.preprocess.model_input",
            "working_size": WORKING_SIZE,
            "input_size": INPUT_SIZE,
            "channels": list(CHANNELS[spec.modality]),
            "max_slices": MAX_SLICES,
            "series_score": "max over sampled slices",
        },
        "decision_thresholds": {k: round(v, 4) for k, v in operating_points(y_val, p_val, spec.labels).items()},
        "training": training,
    }
    return write_manifest(spec, onnx_path, manifest, config.version)


def _export_cnn(model: Any, path: Path) -> None:
    import torch

    class WithSigmoid(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.inner(x))

    model.eval()
    dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(
        WithSigmoid(model),
        (dummy,),
        str(path),
        input_names=["input"],
        output_names=["scores"],
        dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def train_metrics_model(
    spec: ModelSpec, out_dir: Path, config: TrainingConfig, *, progress: Callable[[str], None] = logger.info
) -> Path:
    """Train one gradient-boosting acceptability model on metric features; export with skl2onnx."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier

    progress(f"{spec.name}: measuring {config.n_metric_train} training and {config.n_val // 2} validation images")
    train = dataset.build_set(spec.modality, "train", config.n_metric_train, seed=config.seed + 100)
    val = dataset.build_set(spec.modality, "val", config.n_val // 2, seed=config.seed + 200)
    x_train, x_val = (
        encode_missing(dataset.features_of(train, spec.modality)),
        encode_missing(dataset.features_of(val, spec.modality)),
    )
    y_train = np.array([int(s.labels.any()) for s in train])
    y_val = np.array([int(s.labels.any()) for s in val])
    centre: dict[str, Any] = {}
    if config.labels is not None:
        from qc_pipeline.modeltools.centre_labels import centre_features

        found = centre_features(config.labels, spec.modality)
        progress(
            f"{spec.name}: {len(found.labels)} reviewed series from {config.labels.name} (skipped: {found.skipped or 'none'})"
        )
        if found.labels:
            x_train = np.concatenate([x_train, encode_missing(np.stack(found.features))])
            y_train = np.concatenate([y_train, np.array(found.labels)])
        centre = {
            "file": config.labels.name,
            "series": len(found.labels),
            "fail": int(sum(found.labels)),
            "skipped": found.skipped,
        }
    model = GradientBoostingClassifier(
        n_estimators=150, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=config.seed
    )
    model.fit(x_train, y_train)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x_train.shape[1]]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    onnx_path = out_dir / f"{spec.name}.onnx"
    onnx_path.write_bytes(onx.SerializeToString())
    p_val = model.predict_proba(x_val)[:, 1:2]
    names = FEATURES[spec.modality]
    importances = sorted(zip(names, model.feature_importances_, strict=True), key=lambda t: -t[1])
    manifest = {
        "input": {"name": "input", "shape": [None, len(names)], "dtype": "float32"},
        "output": {"name": "probabilities", "kind": "class_probabilities", "column": 1},
        "preprocessing": {
            "function": "qc_pipeline.ai.features.metric_features",
            "features": list(names),
            "missing": "qc_pipeline.ai.features.encode_missing",
            "working_size": WORKING_SIZE,
            "max_slices": MAX_SLICES,
        },
        "decision_thresholds": {
            k: round(v, 4) for k, v in operating_points(y_val[:, None], p_val, spec.labels).items()
        },
        "training": {
            "data": "metric features of the artifact models' training images (qc_pipeline.modeltools.dataset)",
            "real_sources": list(dataset.REAL_SOURCES[spec.modality]["train"]),
            "n_train": len(train),
            "n_val": len(val),
            "prevalence_unacceptable_train": round(float(y_train.mean()), 3),
            "val_auc": dict(zip(spec.labels, [round(a, 4) for a in _aucs(y_val[:, None], p_val)], strict=True)),
            "estimator": "sklearn GradientBoostingClassifier(n_estimators=150, max_depth=3, subsample=0.8)",
            "feature_importance": {k: round(float(v), 4) for k, v in importances},
            "seed": config.seed,
            **({"centre_labels": centre} if centre else {}),
        },
    }
    return write_manifest(spec, onnx_path, manifest, config.version)


def write_manifest(spec: ModelSpec, onnx_path: Path, body: dict[str, Any], version: str) -> Path:
    """Write ``<name>.json`` beside the model: identity, checksum, then ``body``."""
    manifest = {
        "name": spec.name,
        "version": version,
        "file": onnx_path.name,
        "sha256": sha256_of(onnx_path),
        "modality": spec.modality,
        "kind": spec.kind,
        "labels": list(spec.labels),
        "created": dt.date.today().isoformat(),
        **body,
    }
    path = onnx_path.with_suffix(".json")
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def train_all(
    out_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    *,
    names: tuple[str, ...] | None = None,
    progress: Callable[[str], None] = logger.info,
) -> list[Path]:
    """Train every model in ``MODEL_SPECS`` (or ``names``) into ``out_dir``: ONNX file, manifest and
    model card (results section empty until ``qc-pipeline models evaluate --write``); returns the manifests."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in MODEL_SPECS.values():
        if names is not None and spec.name not in names:
            continue
        train = train_artifact_model if spec.kind == "image" else train_metrics_model
        manifest_path = train(spec, out_dir, config, progress=progress)
        write_card(read_manifest(manifest_path), out_dir)
        written.append(manifest_path)
    return written
