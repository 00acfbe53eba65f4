"""Fine-tune an artifact CNN on a site's per-finding labels (``qc-pipeline models export-labels``).

``qc-pipeline models train --labels FILE`` with a per-finding label file (columns
:data:`qc_pipeline.review.finding_labels.LABEL_COLUMNS`) fine-tunes the artifact model of each
modality the file labels, starting from the model in use:

1. **Starting weights.** The shipped ``<modality>_artifacts.onnx`` is read back into PyTorch:
   the export folded each BatchNorm into the convolution before it (``Conv`` with a bias, no
   ``BatchNormalization`` node), so :func:`folded_net` is the same CNN with biased convolutions
   and no BatchNorm, and :func:`load_onnx_cnn` copies the graph's initializers into it in order.
   The copy is checked: on a seeded batch it must give the ONNX model's scores (onnxruntime) to
   :data:`EQUIVALENCE_TOLERANCE`, else ModelError. No original training state is needed.
2. **Site series.** Each labelled series (:func:`qc_pipeline.modeltools.site_validation.series_labels`:
   the same positive/negative/unknown rule as ``models validate``) is read again from the source
   its study was judged from (``StudyRecord.source_uri`` in the results database), its slices
   sampled as the flow samples them (:func:`qc_pipeline.ai.preprocess.sample_slices`, the manifest's
   ``max_slices``) and preprocessed by :func:`qc_pipeline.ai.preprocess.model_input`. A label the
   reviewer did not judge is masked out of the loss.
3. **Loss.** The flow scores a series by the highest slice score, so the site loss is
   multiple-instance: binary cross-entropy on the series' max logit per label (masked); labels a
   reviewer's artifact code cannot tell apart (``dr_artifacts``' exposure_fault and saturation
   are both "exposure") are learnt as one, by their highest logit (:func:`label_groups`). To keep
   what the model learned (catastrophic forgetting), every step also sees a batch of the
   original training distribution (:func:`qc_pipeline.modeltools.dataset.build_set`, split
   ``train``; "replay"), fully labelled.
4. **Operating points** are measured again on the validation split
   (:func:`qc_pipeline.modeltools.training.operating_points`), and the manifest records the base
   model (name, version, sha256) and the label file's provenance (name, sha256, rows, series per
   label).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai.preprocess import INPUT_SIZE, model_input, sample_slices
from qc_pipeline.ai.registry import RegisteredModel, load_models
from qc_pipeline.ai.specs import ModelSpec, score_metric
from qc_pipeline.errors import ConfigError, ModelError, QCError

logger = logging.getLogger(__name__)

EQUIVALENCE_TOLERANCE: Final = 1e-4
"""Largest difference of a score between the ONNX model and its PyTorch copy (float32 rounding
of the folded convolutions is ~1e-6)."""
MODALITY_CODES: Final = {"DR": frozenset({"CR", "DX", "DR"}), "CT": frozenset({"CT"}), "MR": frozenset({"MR"})}


def is_finding_label_file(path: Path) -> bool:
    """Whether ``path``'s header is that of ``models export-labels`` (per-finding labels)."""
    from qc_pipeline.review.finding_labels import LABEL_COLUMNS

    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"label file {path} cannot be read: {exc}") from exc
    return all(c in header for c in LABEL_COLUMNS)


@dataclass(frozen=True)
class LabelFile:
    path: Path
    rows: list[dict[str, str]]
    sha256: str

    def provenance(self) -> dict[str, Any]:
        return {"file": self.path.name, "sha256": self.sha256, "rows": len(self.rows)}


def read_label_file(path: Path) -> LabelFile:
    from qc_pipeline.io.tabular import unescape_row

    raw = path.read_bytes()
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [unescape_row(r) for r in csv.DictReader(handle)]
    return LabelFile(path, rows, hashlib.sha256(raw).hexdigest())


# -- the CNN, read back from ONNX -------------------------------------------------------------------


def folded_net(n_labels: int) -> Any:
    """The artifact CNN of :func:`qc_pipeline.modeltools.training._net` with each BatchNorm folded
    into its convolution (what the ONNX export holds): conv(bias)-ReLU-maxpool x5, global average
    pooling, dropout, linear."""
    from torch import nn

    layers: list[Any] = []
    channels = 3
    for width in (16, 32, 48, 64, 64):
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=True), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, n_labels)]
    return nn.Sequential(*layers)


def load_onnx_cnn(model: RegisteredModel, *, seed: int = 0) -> Any:
    """A PyTorch copy of an artifact model's ONNX graph (raw logits out), checked against onnxruntime."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(model.path)).graph
    ops = [n.op_type for n in graph.node]
    expected = ["Conv", "Relu", "MaxPool"] * 5 + ["GlobalAveragePool", "Flatten", "Gemm", "Sigmoid"]
    if ops != expected:
        raise ModelError(
            f"model {model.name}: {model.path} is not the artifact CNN of qc_pipeline.modeltools.training "
            f"(nodes {ops[:6]}...); it cannot be fine-tuned, train it anew"
        )
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    params = [init[name] for n in graph.node if n.op_type in ("Conv", "Gemm") for name in n.input[1:]]
    net = folded_net(len(model.manifest.labels))
    targets = [p for p in net.parameters()]
    if len(params) != len(targets) or any(
        tuple(a.shape) != tuple(t.shape) for a, t in zip(params, targets, strict=True)
    ):
        raise ModelError(f"model {model.name}: the weights of {model.path} do not fit the artifact CNN's layers")
    with torch.no_grad():
        for array, target in zip(params, targets, strict=True):
            target.copy_(torch.from_numpy(np.array(array, dtype=np.float32)))
    net.eval()
    x = np.random.default_rng(seed).random((4, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    (reference,) = session.run([model.manifest.output.name], {model.manifest.input.name: x})
    with torch.no_grad():
        copy = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    gap = float(np.max(np.abs(copy - reference)))
    if gap > EQUIVALENCE_TOLERANCE:
        raise ModelError(f"model {model.name}: the PyTorch copy differs from {model.path} by {gap:.2g}")
    return net


# -- the site's labelled series ---------------------------------------------------------------------


@dataclass
class SiteSeries:
    study_instance_uid: str
    series_instance_uid: str
    x: npt.NDArray[np.float32]
    """(slices, 3, 128, 128) model inputs of the sampled slices."""
    y: npt.NDArray[np.float32]
    """Per label: 1 artifact seen, 0 judged free of it (value when masked: 0)."""
    mask: npt.NDArray[np.float32]
    """Per label: 1 when the reviewer's judgement says, 0 when unknown."""


@dataclass
class SiteSet:
    series: list[SiteSeries] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def counts(self, labels: tuple[str, ...]) -> dict[str, dict[str, int]]:
        return {
            label: {
                "positive": int(sum(s.mask[j] * s.y[j] for s in self.series)),
                "negative": int(sum(s.mask[j] * (1 - s.y[j]) for s in self.series)),
            }
            for j, label in enumerate(labels)
        }


def study_sources(store: Any, study_uids: set[str]) -> dict[str, str]:
    """StudyInstanceUID -> the source URI its study was judged from (the results store)."""
    from sqlalchemy import select

    from qc_pipeline.store.models import StudyRecord

    found: dict[str, str] = {}
    wanted = sorted(study_uids)
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for uid, uri in conn.execute(
                select(StudyRecord.study_instance_uid, StudyRecord.source_uri).where(
                    StudyRecord.study_instance_uid.in_(chunk)
                )
            ):
                if uri:
                    found[uid] = uri
    return found


def _series_inputs(source: Any, study: Any, series_uid: str, modality: str, max_slices: int) -> npt.NDArray[np.float32]:
    from qc_pipeline.io.pixels import load_image, load_series, stored_value_range

    refs = [
        inst.ref
        for inst in study.images
        if inst.ref.series_instance_uid == series_uid
        and str(inst.dataset.get("Modality", "")).upper() in MODALITY_CODES[modality]
    ]
    if not refs:
        return np.zeros((0, 3, 1, 1), dtype=np.float32)
    with source.pixel_files(refs) as paths, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if modality == "DR":
            images = [load_image(p) for p in paths]
            return np.stack([model_input(i.array, "DR", stored_range=stored_value_range(i)) for i in images])
        volume = load_series(paths)
        chosen = sample_slices(len(volume.array), max_slices=max_slices)
        return np.stack([model_input(volume.array[i], modality) for i in chosen])


def site_series(
    labels: LabelFile,
    spec: ModelSpec,
    sources: Mapping[str, str],
    implied: Callable[[str], str],
    *,
    max_slices: int,
) -> SiteSet:
    """The labelled series of ``spec``'s modality, with their model inputs and per-label targets."""
    from qc_pipeline.modeltools.site_validation import _label_of, artifact_of, series_labels
    from qc_pipeline.sources import open_source

    rows = [r for r in labels.rows if (r.get("modality") or "").upper() in MODALITY_CODES[spec.modality]]
    artifacts = [artifact_of(score_metric(spec.name, label), implied) for label in spec.labels]
    out = SiteSet()
    opened: dict[str, Any] = {}
    studies: dict[tuple[str, str], Any] = {}
    for (study_uid, series_uid), judged in series_labels(rows, implied).items():
        values = [_label_of(judged, a) for a in artifacts]
        if all(v is None for v in values):
            out.skip("no judgement on this model's artifacts")
            continue
        uri = sources.get(study_uid)
        if uri is None:
            out.skip("study not in the results database")
            continue
        try:
            source = opened.get(uri) or opened.setdefault(uri, open_source(uri))
            if (uri, study_uid) not in studies:
                entry = next((e for e in source.discover() if e.study_instance_uid == study_uid), None)
                studies[(uri, study_uid)] = None if entry is None else source.load(entry)
            study = studies[(uri, study_uid)]
            if study is None:
                out.skip("study no longer in its source")
                continue
            x = _series_inputs(source, study, series_uid, spec.modality, max_slices)
        except (QCError, OSError, ValueError) as exc:
            logger.warning("labelled series %s of study %s skipped: %s", series_uid, study_uid, exc)
            out.skip(type(exc).__name__)
            continue
        if not len(x):
            out.skip("series not in the study")
            continue
        y = np.array([v or 0 for v in values], dtype=np.float32)
        mask = np.array([v is not None for v in values], dtype=np.float32)
        out.series.append(SiteSeries(study_uid, series_uid, x, y, mask))
    return out


# -- fine-tuning ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FineTuneConfig:
    epochs: int = 6
    replay: int = 512
    """Images of the original training distribution seen alongside the site series."""
    n_val: int = 400
    learning_rate: float = 3e-4
    site_weight: float = 1.0
    """Weight of the site (multiple-instance) loss against the replay loss."""
    batch_series: int = 8
    batch_replay: int = 32
    seed: int = 7
    threads: int = 2


def label_groups(artifacts: list[str]) -> list[list[int]]:
    """The model's labels grouped by the artifact a reviewer names for them (first appearance order):
    ``dr_artifacts``' exposure_fault and saturation are both "exposure", so a confirmed "exposure"
    says that one of the two is there, not which."""
    groups: dict[str, list[int]] = {}
    for j, artifact in enumerate(artifacts):
        groups.setdefault(artifact, []).append(j)
    return list(groups.values())


def _max_logit_loss(net: Any, batch: list[SiteSeries], groups: list[list[int]]) -> Any:
    """Masked binary cross-entropy on each series' highest logit over its slices (the flow scores
    a series by its highest slice) and over the labels of one artifact group (a reviewer's
    artifact says "one of these", :func:`label_groups`; a negative pushes all of them down)."""
    import torch

    x = torch.from_numpy(np.concatenate([s.x for s in batch]))
    logits = net(x)
    bags, start = [], 0
    for s in batch:
        bags.append(logits[start : start + len(s.x)].max(dim=0).values)
        start += len(s.x)
    z = torch.stack(bags)
    z = torch.stack([z[:, g].max(dim=1).values for g in groups], dim=1)
    first = [g[0] for g in groups]  # every label of a group has the group's target and mask
    y = torch.from_numpy(np.stack([s.y[first] for s in batch]))
    mask = torch.from_numpy(np.stack([s.mask[first] for s in batch]))
    per = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none") * mask
    return per.sum() / mask.sum().clamp(min=1.0)


def finetune(
    net: Any,
    site: SiteSet,
    replay: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    config: FineTuneConfig,
    *,
    groups: list[list[int]],
    progress: Callable[[str], None] = logger.info,
) -> list[dict[str, float]]:
    """Fine-tune ``net`` in place on the site series plus replay images; returns the loss history."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    x_replay, y_replay = replay
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    steps = max(1, int(np.ceil(len(site.series) / config.batch_series)))
    for epoch in range(config.epochs):
        net.train()
        order = rng.permutation(len(site.series))
        site_total = replay_total = 0.0
        for step in range(steps):
            optimiser.zero_grad()
            chosen = [site.series[i] for i in order[step * config.batch_series : (step + 1) * config.batch_series]]
            site_loss = _max_logit_loss(net, chosen, groups) if chosen else torch.zeros(())
            loss = config.site_weight * site_loss
            if len(x_replay):
                idx = rng.choice(len(x_replay), size=min(config.batch_replay, len(x_replay)), replace=False)
                replay_loss = loss_fn(net(torch.from_numpy(x_replay[idx])), torch.from_numpy(y_replay[idx]))
                loss = loss + replay_loss
                replay_total += float(replay_loss.detach())
            loss.backward()
            optimiser.step()
            site_total += float(site_loss.detach())
        entry = {
            "epoch": epoch + 1,
            "site_loss": round(site_total / steps, 5),
            "replay_loss": round(replay_total / steps, 5),
        }
        history.append(entry)
        progress(
            f"fine-tune epoch {epoch + 1}/{config.epochs}: site loss {entry['site_loss']:.4f}, replay loss {entry['replay_loss']:.4f}"
        )
    net.eval()
    return history


def finetune_artifact_model(
    spec: ModelSpec,
    out_dir: Path,
    labels: LabelFile,
    *,
    sources: Mapping[str, str],
    base_dir: Path | None,
    config: FineTuneConfig,
    version: str,
    thresholds_dir: Path | None = None,
    progress: Callable[[str], None] = logger.info,
) -> Path | None:
    """Fine-tune ``spec``'s model of ``base_dir`` (default: the models in use) on the site series
    of ``labels`` (``sources``: StudyInstanceUID -> source URI, :func:`study_sources`); export ONNX and manifest into ``out_dir``. None when the file labels no series
    of the model's artifacts (nothing is written)."""
    import datetime as dt

    from qc_pipeline.ai.registry import default_models_dir
    from qc_pipeline.modeltools import dataset
    from qc_pipeline.modeltools.training import (
        _aucs,
        _export_cnn,
        _predict,
        _stack,
        operating_points,
        write_manifest,
    )
    from qc_pipeline.review.finding_review import load_finding_review

    base_dir = base_dir or default_models_dir()
    models, problems = load_models(base_dir)
    base = models.get(spec.name)
    if base is None:
        raise ModelError(f"no usable {spec.name} to fine-tune in {base_dir}: {problems.get(spec.name, 'missing')}")
    review = load_finding_review(thresholds_dir)
    max_slices = int(base.manifest.preprocessing.get("max_slices", 8))
    site = site_series(labels, spec, sources, review.implied_artifact, max_slices=max_slices)
    counts = site.counts(spec.labels)
    progress(f"{spec.name}: {len(site.series)} labelled site series {counts} (skipped: {site.skipped or 'none'})")
    if not site.series:
        return None
    net = load_onnx_cnn(base, seed=config.seed)
    progress(f"{spec.name}: weights of {base.path.name} ({base.pin}) read back into PyTorch and checked")
    simulation = dataset.TRAINING_SIMULATION.get(spec.modality, dataset.OURS_ONLY)  # as the base model trained
    replay = (
        _stack(dataset.build_set(spec.modality, "train", config.replay, seed=config.seed + 300, simulation=simulation))
        if config.replay
        else (
            np.zeros((0, 3, 1, 1), np.float32),
            np.zeros((0, len(spec.labels)), np.float32),
        )
    )
    x_val, y_val = _stack(dataset.build_set(spec.modality, "val", config.n_val, simulation=simulation))
    val_before = _aucs(y_val, _predict(net, x_val))
    from qc_pipeline.modeltools.site_validation import artifact_of

    groups = label_groups(
        [artifact_of(score_metric(spec.name, label), review.implied_artifact) for label in spec.labels]
    )
    history = finetune(net, site, replay, config, groups=groups, progress=progress)
    p_val = _predict(net, x_val)
    val_after = _aucs(y_val, p_val)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{spec.name}.onnx"
    _export_cnn(net, onnx_path)
    body = {
        "input": base.manifest.input.model_dump(),
        "output": base.manifest.output.model_dump(exclude_none=True),
        "preprocessing": dict(base.manifest.preprocessing),
        "decision_thresholds": {k: round(v, 4) for k, v in operating_points(y_val, p_val, spec.labels).items()},
        "training": {
            "data": "fine-tuned from the base model on a site's reviewed series (qc_pipeline.modeltools.finetune), "
            "with replay images of the training split",
            "fine_tuned_from": {"name": base.name, "version": base.manifest.version, "sha256": base.manifest.sha256},
            "site_labels": {
                **labels.provenance(),
                "series": len(site.series),
                "studies": len({s.study_instance_uid for s in site.series}),
                "per_label": counts,
                "skipped": site.skipped,
            },
            "replay_images": config.replay,
            "n_val": config.n_val,
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "loss": "masked binary cross-entropy on the series' max logit over slices and over the labels of one "
            "reviewed artifact (site) + binary cross-entropy (replay)",
            "label_groups": [[spec.labels[j] for j in g] for g in groups if len(g) > 1],
            "val_auc_before": dict(zip(spec.labels, [round(a, 4) for a in val_before], strict=True)),
            "val_auc": dict(zip(spec.labels, [round(a, 4) for a in val_after], strict=True)),
            "seed": config.seed,
            "history": history,
            "fine_tuned": dt.date.today().isoformat(),
        },
    }
    return write_manifest(spec, onnx_path, body, version)


def finetune_all(
    out_dir: Path,
    labels_path: Path,
    *,
    sources: Mapping[str, str],
    names: tuple[str, ...] | None = None,
    base_dir: Path | None = None,
    config: FineTuneConfig = FineTuneConfig(),
    version: str,
    thresholds_dir: Path | None = None,
    progress: Callable[[str], None] = logger.info,
) -> list[Path]:
    """Fine-tune the artifact model of each modality ``labels_path`` labels (or only ``names``);
    writes ONNX, manifest and card per model into ``out_dir``; returns the manifests."""
    from qc_pipeline.ai.registry import read_manifest
    from qc_pipeline.ai.specs import MODEL_SPECS
    from qc_pipeline.modeltools.cards import write_card

    labels = read_label_file(labels_path)
    present = {(r.get("modality") or "").upper() for r in labels.rows}
    chosen = [
        spec
        for spec in MODEL_SPECS.values()
        if spec.kind == "image" and (spec.name in names if names else bool(present & MODALITY_CODES[spec.modality]))
    ]
    not_image = [n for n in names or () if MODEL_SPECS[n].kind != "image"]
    if not_image:
        raise ConfigError(
            f"per-finding labels fine-tune the artifact models only, not {', '.join(not_image)} "
            "(the acceptability models take the study decisions of qc-pipeline review export-labels)"
        )
    written = []
    for spec in chosen:
        path = finetune_artifact_model(
            spec,
            out_dir,
            labels,
            sources=sources,
            base_dir=base_dir,
            config=config,
            version=version,
            thresholds_dir=thresholds_dir,
            progress=progress,
        )
        if path is None:
            progress(f"{spec.name}: no labelled series of its artifacts in {labels_path.name}: not written")
            continue
        write_card(read_manifest(path), out_dir)
        written.append(path)
    return written
