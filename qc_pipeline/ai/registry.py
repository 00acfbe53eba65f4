"""The model registry: manifests in ``models/``, checked before a model is run.

Each model is two files in the models folder: ``<name>.onnx`` and its manifest ``<name>.json``
(written by ``qc-pipeline models train``): name, version, the ONNX file's sha256, modality,
kind, input and output, preprocessing, labels, decision thresholds and a training summary. The
registry reads every manifest, checks it against :data:`specs.MODEL_SPECS` and the file's
checksum, and refuses — with :class:`ModelError`, naming the file and what is wrong — a model
that is missing, corrupt or does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.errors import ModelError
from qc_pipeline.resources import MODELS, shipped_path

logger = logging.getLogger(__name__)

MODELS_DIR_ENV: Final = "QC_MODELS_DIR"
DEFAULT_MODELS_DIR: Final = shipped_path(MODELS)
"""The shipped models (package data: the repository's ``models/`` in a checkout, where training
writes; the wheel's copy once installed)."""


def default_models_dir() -> Path:
    """``$QC_MODELS_DIR``, else the shipped models."""
    value = os.environ.get(MODELS_DIR_ENV)
    return Path(value).expanduser() if value else DEFAULT_MODELS_DIR


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int | None]
    dtype: Literal["float32"] = "float32"


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["sigmoid", "class_probabilities"]
    column: int | None = None


class Manifest(BaseModel):
    """What ``models/<name>.json`` holds."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    modality: Literal["DR", "CT", "MR"]
    kind: Literal["image", "metrics"]
    labels: list[str]
    created: str
    input: TensorSpec
    output: OutputSpec
    preprocessing: dict[str, Any]
    decision_thresholds: dict[str, float]
    training: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    manifest: Manifest
    path: Path
    """The ONNX file (checksum verified when the registry was loaded)."""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def provenance(self) -> str:
        """``version@sha256-prefix``, as recorded in a decision's provenance."""
        return f"{self.manifest.version}@{self.manifest.sha256[:12]}"

    @property
    def pin(self) -> str:
        """``name@version+sha256``: what a rule of ``thresholds/ai.yaml`` names as the model it was evaluated with."""
        return f"{self.manifest.name}@{self.manifest.version}+{self.manifest.sha256}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model manifest {path} cannot be read: {exc}") from exc
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"model manifest {path}: {where}: {first['msg']}") from exc
    spec = MODEL_SPECS.get(manifest.name)
    if spec is None:
        raise ModelError(
            f"model manifest {path} names model {manifest.name!r}, unknown to this qc-pipeline ({', '.join(MODEL_SPECS)})"
        )
    if (manifest.modality, manifest.kind, tuple(manifest.labels)) != (spec.modality, spec.kind, spec.labels):
        raise ModelError(
            f"model manifest {path} does not match model {spec.name}: expected {spec.modality} {spec.kind} "
            f"labels {list(spec.labels)}, found {manifest.modality} {manifest.kind} labels {manifest.labels}"
        )
    if path.stem != manifest.name:
        raise ModelError(f"model manifest {path} is named {path.name} but describes model {manifest.name!r}")
    if manifest.kind == "image":
        from qc_pipeline.ai.preprocess import CHANNELS

        expected = list(CHANNELS[manifest.modality])
        found = manifest.preprocessing.get("channels")
        if found != expected or manifest.input.shape[1:2] != [len(expected)]:
            raise ModelError(
                f"model manifest {path}: model {manifest.name} was trained on the input channels {found} "
                f"(shape {manifest.input.shape}), this qc-pipeline builds {expected}: retrain it "
                f"(qc-pipeline models train --model {manifest.name}) or install the models of this version"
            )
    if manifest.kind == "metrics":
        from qc_pipeline.ai.features import measured_metrics

        names = manifest.preprocessing.get("features")
        known = measured_metrics(manifest.modality)
        unknown = sorted(set(names) - known) if isinstance(names, list) else None
        if not isinstance(names, list) or unknown or manifest.input.shape[1:2] != [len(names)]:
            raise ModelError(
                f"model manifest {path}: model {manifest.name} reads the metric features {names} "
                f"(input shape {manifest.input.shape}), "
                + (
                    f"and this qc-pipeline measures no {', '.join(unknown)}"
                    if unknown
                    else "which do not fit its input"
                )
                + f": retrain it (qc-pipeline models train --model {manifest.name}) or install the models of this version"
            )
    return manifest


def verify(manifest: Manifest, directory: Path) -> RegisteredModel:
    """The model file of ``manifest`` in ``directory``, after checking that it exists and its sha256."""
    path = directory / manifest.file
    if not path.is_file():
        raise ModelError(f"model {manifest.name}: file {path} is missing (the manifest {manifest.name}.json names it)")
    found = sha256_of(path)
    if found != manifest.sha256:
        raise ModelError(
            f"model {manifest.name}: {path} is corrupt or was replaced: sha256 {found[:16]}… does not match "
            f"the manifest's {manifest.sha256[:16]}…; restore the file or retrain (qc-pipeline models train)"
        )
    return RegisteredModel(manifest, path)


def load_models(directory: Path | None = None) -> tuple[dict[str, RegisteredModel], dict[str, str]]:
    """The usable models of ``directory`` (default: :func:`default_models_dir`), checked, and the
    problem of each model that is not usable: (name -> model, name -> reason).

    Every model is checked on its own, so one missing or corrupt file costs only that model's
    scores; a model that this version of qc-pipeline expects (``MODEL_SPECS``) but has no manifest
    for is a problem too. Raises ModelError only when the folder does not exist.
    """
    directory = directory or default_models_dir()
    if not directory.is_dir():
        raise ModelError(
            f"models folder {directory} does not exist (set {MODELS_DIR_ENV} or run qc-pipeline models train)"
        )
    models: dict[str, RegisteredModel] = {}
    problems: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        if path.stem not in MODEL_SPECS:
            continue  # e.g. evaluation.json
        try:
            manifest = read_manifest(path)
            models[manifest.name] = verify(manifest, directory)
        except ModelError as exc:
            problems[path.stem] = str(exc)
    for name in MODEL_SPECS:
        if name not in models and name not in problems:
            problems[name] = (
                f"models folder {directory} lacks the manifest of {name} (expected {name}.json; "
                "run qc-pipeline models train)"
            )
    return models, problems


def describe_problems(problems: Mapping[str, str]) -> str:
    """One sentence for one problem, a numbered list for several (in the order found: the
    manifests by file name, then the manifests that are missing)."""
    texts = list(problems.values())
    if len(texts) > 1:
        return f"{len(texts)} problems: " + "; ".join(f"({i}) {text}" for i, text in enumerate(texts, 1))
    return texts[0] if texts else ""


def load_registry(directory: Path | None = None) -> dict[str, RegisteredModel]:
    """Every model of ``directory`` (default: :func:`default_models_dir`), checked; name -> model.

    Raises one ModelError naming every missing, corrupt or mismatched model, and every model that
    this version of qc-pipeline expects (``MODEL_SPECS``) but has no manifest for: an operator
    restoring a models folder sees all that is wrong at once, not one problem per attempt.
    """
    models, problems = load_models(directory)
    if problems:
        raise ModelError(describe_problems(problems))
    return models


def provenance_of(models: Mapping[str, RegisteredModel]) -> dict[str, str]:
    return {name: model.provenance for name, model in sorted(models.items())}
