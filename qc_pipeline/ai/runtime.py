"""Run the registered models with onnxruntime: one session per model, created once and reused.

:class:`Scorer` turns decoded pixels into ``ai.<model>.<label>`` measurements (a probability in
0..1 each), which ``thresholds/ai.yaml`` judges like any other metric. For a CT or MR series the
artifact model reads up to ``max_slices`` (manifest) evenly sampled slices in one batch and the
series score is the highest slice score; the acceptability model reads the metric features of the
same slices. A radiograph is one image.

Sessions are thread-safe (onnxruntime's ``run``); a process keeps one :class:`Scorer` per models
folder (:func:`shared_scorer`), so a flow's threads share them and each Dask worker process loads
them once. Thread counts come from ``$QC_AI_THREADS`` (intra-op; default 1, since the flow already
runs studies in parallel).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from qc_pipeline.ai.features import encode_missing, slice_features
from qc_pipeline.ai.preprocess import channels, sample_slices, to_working_grid
from qc_pipeline.ai.registry import RegisteredModel, default_models_dir, describe_problems, load_models, provenance_of
from qc_pipeline.ai.specs import SCORE_UNIT, score_metric
from qc_pipeline.domain import Measurement
from qc_pipeline.errors import DegenerateInputError, ModelError
from qc_pipeline.rules.schema import Rule

logger = logging.getLogger(__name__)

THREADS_ENV: Final = "QC_AI_THREADS"
DEFAULT_MAX_SLICES: Final = 8
"""Slices of a series the models read when their manifest does not say (``preprocessing.max_slices``)."""


def _threads() -> int:
    value = os.environ.get(THREADS_ENV, "1")
    try:
        threads = int(value)
    except ValueError:
        raise ModelError(f"${THREADS_ENV}={value!r} is not a whole number of threads") from None
    if threads < 1:
        raise ModelError(f"${THREADS_ENV}={threads} must be at least 1")
    return threads


def _session(model: RegisteredModel, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelError(f"model {model.name}: onnxruntime cannot load {model.path}: {exc}") from exc
    inputs = session.get_inputs()
    expected = model.manifest.input
    if len(inputs) != 1 or inputs[0].name != expected.name:
        raise ModelError(
            f"model {model.name}: {model.path} takes inputs {[i.name for i in inputs]}, the manifest says [{expected.name!r}]"
        )
    found = [d if isinstance(d, int) else None for d in inputs[0].shape]
    if found[1:] != expected.shape[1:]:
        raise ModelError(f"model {model.name}: {model.path} takes shape {found}, the manifest says {expected.shape}")
    if model.manifest.output.name not in {o.name for o in session.get_outputs()}:
        raise ModelError(f"model {model.name}: {model.path} has no output {model.manifest.output.name!r}")
    return session


class Scorer:
    """The registered models, each with its onnxruntime session."""

    def __init__(
        self,
        models: Mapping[str, RegisteredModel],
        *,
        threads: int = 1,
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        self._models: dict[str, RegisteredModel] = {}
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._unavailable = dict(unavailable or {})
        for name, model in models.items():
            try:
                self._sessions[name] = _session(model, threads)
            except Exception as exc:  # onnxruntime refuses the file: only this model's scores are lost
                reason = (
                    str(exc)
                    if isinstance(exc, ModelError)
                    else (f"model {name}: {model.path} cannot be loaded by onnxruntime: {exc}")
                )
                logger.error("AI model %s unavailable: %s", name, reason)
                self._unavailable[name] = reason
                continue
            self._models[name] = model

    @classmethod
    def load(cls, directory: Path | None = None) -> Scorer:
        """Load and check every model of ``directory``. A model that is missing, corrupt or
        mismatched is left out on its own (``unavailable`` says why); raises ModelError only when
        no model at all can be used."""
        models, problems = load_models(directory)
        for name in sorted(problems):
            logger.error("AI model %s unavailable: %s", name, problems[name])
        scorer = cls(models, threads=_threads(), unavailable=problems)
        if not scorer.models:
            raise ModelError(describe_problems(scorer.unavailable))
        return scorer

    @property
    def unavailable(self) -> Mapping[str, str]:
        """Model name -> why it cannot be used (its rules do not run)."""
        return self._unavailable

    def unavailable_for(self, modality: str) -> dict[str, str]:
        """The models of ``modality`` (artifacts, acceptability) that cannot be used, with why."""
        return {n: r for n, r in self._unavailable.items() if n.startswith(f"{modality.lower()}_")}

    @property
    def models(self) -> Mapping[str, RegisteredModel]:
        return self._models

    def pin_mismatches(self, rules: Iterable[Rule]) -> dict[str, tuple[str, str]]:
        """Enabled rules pinned (``model_pin``) to a model other than the one loaded: rule id ->
        (model name, the loaded model's pin). Those rules were not evaluated with this model and
        must not fire; a model that is not loaded at all gives no scores, so none of its rules is listed."""
        found: dict[str, tuple[str, str]] = {}
        for rule in rules:
            if (
                not rule.enabled
                or rule.model_pin is None
                or (model := self._models.get(rule.scored_model or "")) is None
            ):
                continue
            if model.pin != rule.model_pin:
                found[rule.id] = (model.name, model.pin)
        return found

    @property
    def provenance(self) -> dict[str, str]:
        return provenance_of(self._models)

    def run(self, name: str, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The raw outputs of model ``name`` on a prepared batch ``x`` (rows: inputs; columns: labels)."""
        model = self._models[name]
        (out,) = self._sessions[name].run([model.manifest.output.name], {model.manifest.input.name: x})
        out = np.asarray(out, dtype=np.float32)
        if model.manifest.output.column is not None:
            out = out[:, model.manifest.output.column : model.manifest.output.column + 1]
        return out

    def slice_indices(self, modality: str, n_slices: int) -> list[int]:
        """Which of a series' ``n_slices`` slices (in order) :meth:`score` reads."""
        return sample_slices(n_slices, max_slices=self._max_slices(modality))

    def _max_slices(self, modality: str) -> int:
        for kind in ("artifacts", "acceptability"):
            if (model := self._models.get(f"{modality.lower()}_{kind}")) is not None:
                return int(model.manifest.preprocessing.get("max_slices", DEFAULT_MAX_SLICES))
        return DEFAULT_MAX_SLICES

    def score(
        self,
        modality: str,
        slices: Sequence[npt.NDArray[np.floating]],
        *,
        pixel_mm: float | None,
        stored_range: tuple[float, float] | None = None,
        presampled: bool = False,
    ) -> list[Measurement]:
        """The scores of one radiograph (one slice) or one series (its slices, in order).

        ``presampled``: ``slices`` are already the ones :meth:`slice_indices` picks out of the
        series (the caller decoded only those); else they are the whole series and sampled here.

        ``pixel_mm`` is the native in-plane pixel size (None when unknown); ``stored_range``
        (DR) the smallest and largest storable value. Raises DegenerateInputError when the pixels
        cannot be scored (too small, not finite).
        """
        modality = modality.upper()
        if modality not in ("DR", "CT", "MR"):
            raise DegenerateInputError(f"no models for modality {modality!r}")
        artifacts = self._models.get(f"{modality.lower()}_artifacts")
        acceptability = self._models.get(f"{modality.lower()}_acceptability")
        if artifacts is None and acceptability is None:
            return []  # both unavailable: the caller records why (unavailable_for)
        chosen = list(range(len(slices))) if presampled else self.slice_indices(modality, len(slices))
        if not chosen:
            raise DegenerateInputError("no slices to score")
        picked = [np.asarray(slices[i], dtype=np.float32) for i in chosen]
        where = "1 image" if len(chosen) == 1 else f"max over {len(chosen)} sampled slices"
        out: list[Measurement] = []
        # Each slice is resampled to the working grid once, for both models.
        grids = [to_working_grid(s) for s in picked]
        if artifacts is not None:
            x = np.stack([channels(g, modality, stored_range=stored_range) for g in grids])
            scores = self.run(artifacts.name, x).max(axis=0)
            out += [
                Measurement(
                    score_metric(artifacts.name, label),
                    float(value),
                    SCORE_UNIT,
                    detail=f"{where}; model {artifacts.name} {artifacts.provenance}",
                )
                for label, value in zip(artifacts.manifest.labels, scores, strict=True)
            ]
        if acceptability is not None:
            features = slice_features(
                picked,
                modality,
                pixel_mm=pixel_mm,
                stored_range=stored_range,
                names=acceptability.manifest.preprocessing["features"],
                grids=grids,
            )
            (value,) = self.run(acceptability.name, encode_missing(features[None]))[0]
            label = acceptability.manifest.labels[0]
            out.append(
                Measurement(
                    score_metric(acceptability.name, label),
                    float(value),
                    SCORE_UNIT,
                    detail=f"metric features of {where}; model {acceptability.name} {acceptability.provenance}",
                )
            )
        return out


_lock = threading.Lock()


@functools.cache
def _shared(directory: Path) -> Scorer:
    return Scorer.load(directory)


def shared_scorer(directory: Path | None = None) -> Scorer:
    """This process's Scorer for ``directory`` (default models folder), loaded on first use."""
    with _lock:
        return _shared((directory or default_models_dir()).resolve())
