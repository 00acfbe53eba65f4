"""Objective image quality (图像质量): decode each series once, measure, compare with the limits.

Which images are measured: every radiograph of a DR item (CR/DX/DR images, one by one); every CT
or MR series of the study that is not a localizer (one decode per series). The metrics are the pure
functions of :mod:`qc_pipeline.metrics`; the limits are the rules of ``thresholds/`` that name a
``metric`` (``image_quality_*.yaml``). For each measurement the worst rule that fires gives one
finding (category ``image_quality``) with the value, the limit and the series, as
:func:`qc_pipeline.rules.evaluate.evaluate` decides (the tables and the review app show values with
the same function). The MR limits hold for structural magnitude series: on diffusion, ADC,
echo-planar, perfusion and fMRI series, derived maps and localizers the air, ghosting, wrap and PIU
metrics are not judged (:func:`mr_out_of_scope`: one ``info`` finding per series), and background
SNR under parallel imaging (:func:`parallel_imaging`) asks for review at most. A metric that cannot
be measured on an image says why, sorted by :class:`~qc_pipeline.domain.Unmeasured`: not
applicable by design (``info``), or not measurable because the image looks wrong for it
(``review`` for a metric with a limit, since the reason may be the defect itself; ``info`` for an
indicator without one). Lossy-compressed pixels give a ``review`` finding, and the metrics that
lossy coding invalidates (:data:`LOSSY_INVALIDATES`) are not judged on them. Pixels come from the source through
:class:`PixelSource` (a folder's own files, or a DICOMweb series fetched for the time of the
measurement), so memory holds one series at a time.

The same decoded pixels are scored by the ONNX classifiers (:mod:`qc_pipeline.ai`) when a
:class:`~qc_pipeline.ai.runtime.Scorer` is given: their ``ai.<model>.<label>`` scores are
measurements like the others, judged by the rules of ``thresholds/ai.yaml`` (category ``ai``).
When the models could not be loaded, every measured study gets one ``ai.model.unavailable``
finding that says why, instead of the scores.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, cast

from pydicom.dataset import Dataset

from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.ai.specs import score_labels, score_metrics
from qc_pipeline.catalog.ct_series import KernelClass, kernel_class
from qc_pipeline.catalog.items import Vocabulary, shipped_vocabulary
from qc_pipeline.catalog.mr_sequences import Weighting, cs_values, identify_series
from qc_pipeline.checks import dr_exposure
from qc_pipeline.checks.completeness import is_localizer
from qc_pipeline.domain import Finding, InstanceRef, Measurement, Severity, Unmeasured
from qc_pipeline.errors import DegenerateInputError, ModelError, NotApplicableError, SourceError
from qc_pipeline.io.dicom import HeaderRead, text
from qc_pipeline.io.frames import subset_header
from qc_pipeline.io.geometry import as_floats, header_value
from qc_pipeline.io.pixels import (
    DEFAULT_MAX_BYTES,
    Float32Array,
    load_image,
    load_series,
    lossy_compression,
    slice_order,
    stored_value_range,
)
from qc_pipeline.metrics import ct, dr, mr, registry
from qc_pipeline.rules.evaluate import applicable_rules, evaluate
from qc_pipeline.rules.loader import Thresholds
from qc_pipeline.rules.schema import Rule
from qc_pipeline.sources.base import LoadedInstance, LoadedStudy

logger = logging.getLogger(__name__)

NOT_APPLICABLE: Final = "image_quality.metric.not_applicable"
UNMEASURABLE: Final = "image_quality.metric.unmeasurable"
INDICATOR_UNMEASURABLE: Final = "image_quality.indicator.unmeasurable"
LOSSY: Final = "image_quality.pixels.lossy_compression"
NOT_DECODED: Final = "image_quality.pixels.not_decoded"
METRIC_ERROR: Final = "image_quality.metric.error"
AI_UNAVAILABLE: Final = "ai.model.unavailable"
AI_PIN_MISMATCH: Final = "ai.model.pin_mismatch"
AI_NOT_SCORED: Final = "ai.score.not_scored"
AI_MR_OUT_OF_DOMAIN: Final = frozenset({Weighting.DWI, Weighting.ADC, Weighting.BOLD, Weighting.PERFUSION})
"""MR series the artifact models were not trained on: echo-planar diffusion, fMRI and perfusion
images and their maps (low SNR and EPI ghosts by design, flagged as motion ghosting on clean studies)."""
AI_ERROR: Final = "ai.score.error"
PARALLEL_IMAGING: Final = "image_quality.mr.parallel_imaging"
METRIC_RULE_IDS: Final = frozenset(
    {
        "image_quality.dr.deviation_index_high.review",
        "image_quality.dr.deviation_index_low.review",
        "image_quality.dr.deviation_index_low.fail",
        "image_quality.dr.deviation_index_vendor_high.review",
        "image_quality.dr.deviation_index_vendor_low.review",
        "image_quality.dr.clipped_stored_max.review",
        "image_quality.dr.clipped_stored_max.fail",
        "image_quality.dr.pileup_max.review",
        "image_quality.dr.pileup_max.fail",
        "image_quality.dr.noise_relative.review",
        "image_quality.dr.burnout_anatomy.review",
        "image_quality.dr.burnout_anatomy.fail",
        "image_quality.ct.air_high.review",
        "image_quality.ct.air_low.review",
        "image_quality.ct.soft_tissue_high.review",
        "image_quality.ct.soft_tissue_low.review",
        "image_quality.ct.noise.review",
        "image_quality.ct.noise.fail",
        "image_quality.ct.truncation.review",
        "image_quality.ct.coverage.review",
        "image_quality.ct.ring.review",
        "image_quality.mr.snr.review",
        "image_quality.mr.ghosting.review",
        "image_quality.mr.ghosting.fail",
        "image_quality.mr.wrap.review",
    }
)
"""The limits on measured metrics in ``thresholds/image_quality_{dr,ct,mr}.yaml``: named here like
every other rule id, so a typo in one is rejected on load instead of adding a rule nobody meant
(the AI score rules of ``ai.yaml`` are not listed: their ids follow their models)."""
RULE_IDS: Final = frozenset(
    {
        NOT_APPLICABLE,
        UNMEASURABLE,
        INDICATOR_UNMEASURABLE,
        LOSSY,
        NOT_DECODED,
        METRIC_ERROR,
        AI_UNAVAILABLE,
        AI_PIN_MISMATCH,
        AI_NOT_SCORED,
        AI_ERROR,
        PARALLEL_IMAGING,
        *dr_exposure.RULE_IDS,
        *METRIC_RULE_IDS,
    }
)

DR_MODALITIES: Final = frozenset({"CR", "DX", "DR"})
METRIC_UNITS: Final = {**dr.METRICS, **ct.METRICS, **mr.METRICS, **score_metrics()}
"""Every metric the pipeline measures (the AI scores included) -> its unit; rules may name only these."""

MAX_SERIES_BYTES: Final = DEFAULT_MAX_BYTES
"""Memory budget of one decoded series (float32); a larger series is not measured, and says so."""


class PixelSource(Protocol):
    """What the image-quality check needs of a study source: local files holding some pixels."""

    def pixel_files(self, instances: Sequence[InstanceRef]) -> AbstractContextManager[list[Path]]:
        """Paths of files holding these instances' pixel data, valid inside the context.

        A source that can retrieve single frames says so with ``fetches_frames = True`` and takes
        ``frames``: SOPInstanceUID -> (the instance's loaded header, the 0-based frames wanted); the
        file of such an instance then holds only those frames (:mod:`qc_pipeline.io.frames`)."""
        ...


class FramePixelSource(Protocol):
    """A :class:`PixelSource` that retrieves single frames (``fetches_frames = True``)."""

    def pixel_files(
        self, instances: Sequence[InstanceRef], frames: Mapping[str, tuple[Dataset, tuple[int, ...]]] | None = None
    ) -> AbstractContextManager[list[Path]]: ...


def _loaded_headers(
    pixels: PixelSource, instances: Sequence[LoadedInstance], paths: Sequence[Path]
) -> list[HeaderRead] | None:
    """The headers the source loaded, to decode with instead of parsing each file again, when its
    pixel files are the very files it read them from (``pixel_files_are_loaded_files``: a folder);
    None otherwise (e.g. DICOMweb: the headers came from JSON metadata, the files are fetched now)."""
    if not getattr(pixels, "pixel_files_are_loaded_files", False) or len(instances) != len(paths):
        return None
    return [
        HeaderRead(path=path, size_bytes=inst.ref.size_bytes or 0, dataset=inst.dataset, pixel_data=inst.pixel_data)
        for path, inst in zip(paths, instances, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class ImageQuality:
    measurements: tuple[Measurement, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """One thing decoded once: a series (CT/MR) or one radiograph (DR)."""

    kind: str  # "dr" | "ct" | "mr"
    series_instance_uid: str
    instances: tuple[LoadedInstance, ...]
    label_en: str
    label_zh: str


def series_label(ds: Dataset) -> tuple[str, str]:
    number = text(ds, "SeriesNumber")
    description = text(ds, "SeriesDescription") or text(ds, "ProtocolName")
    en = " ".join(
        p for p in (f"series {number}" if number else "series", f"'{description}'" if description else "") if p
    )
    zh = " ".join(p for p in (f"序列 {number}" if number else "序列", f"“{description}”" if description else "") if p)
    return en, zh


def _targets(study: LoadedStudy, item_modality: str | None) -> Iterator[Target]:
    by_series: dict[str, list[LoadedInstance]] = {}
    for inst in study.images:
        if inst.pixel_data is not None and inst.pixel_data.truncated:
            continue  # integrity has already failed the file; decoding it says nothing more
        by_series.setdefault(inst.ref.series_instance_uid, []).append(inst)
    for series_uid, members in by_series.items():
        first = members[0].dataset
        modality = (text(first, "Modality") or "").upper()
        en, zh = series_label(first)
        if modality in DR_MODALITIES and item_modality in (None, "DR"):
            for inst in members:
                number = text(inst.dataset, "InstanceNumber")
                suffix_en, suffix_zh = (f", image {number}", f" 第 {number} 幅") if number else ("", "")
                yield Target("dr", series_uid, (inst,), en + suffix_en, zh + suffix_zh)
        elif modality in ("CT", "MR") and item_modality in (None, modality):
            if any(is_localizer(m.dataset) for m in members):
                continue
            yield Target(modality.lower(), series_uid, tuple(members), en, zh)


def _float_tag(ds: Dataset, keyword: str) -> float | None:
    value = as_floats(ds.get(keyword), count=1)
    return value[0] if value is not None else None


@dataclass(frozen=True, slots=True)
class _Decoded:
    """The pixels of one target, as the AI scorer reads them."""

    slices: Sequence[Float32Array]
    """One (row, col) array per image or slice."""
    pixel_mm: float | None
    stored_range: tuple[float, float] | None
    vendor_indicator: dr.VendorIndicator | None = None
    """DR: the vendor exposure indicator read from the header, if any."""
    presampled: bool = False
    """``slices`` are only those the scorer reads (the others were not decoded)."""


@dataclass(frozen=True, slots=True)
class _CtSample:
    """Which slices of a CT series are decoded, decided from its headers before any pixel data is
    read: the CT metrics' sample and the AI scorer's, out of ``n_slices``."""

    n_slices: int
    """Slices in the whole series."""
    chosen: tuple[int, ...]
    """Slices decoded (indices in the series' order), ascending."""
    instances: tuple[int, ...]
    """The target's instances that hold them (indices into ``target.instances``), ascending."""
    select: tuple[int, ...]
    """The chosen slices as indices into the order of the slices of ``instances`` alone."""
    n_fetched: int
    """Slices the files of ``instances`` hold, by the headers."""
    frames: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    """Multi-frame instances fetched in part (index into ``target.instances`` -> its frames to
    fetch, 0-based): a source that retrieves single frames fetches only these of them."""

    def select_in(self, n: int) -> tuple[int, ...]:
        """``select`` for files that hold ``n`` slices; files that hold another number than
        their headers said are not the study's files (a source serving other data)."""
        if n != self.n_fetched:
            raise DegenerateInputError(
                f"the pixel files hold {n} slices where the study's headers list {self.n_fetched}: "
                "the files do not match the headers"
            )
        return self.select


def _ct_sample(
    target: Target,
    ai_slices: Callable[[int], Sequence[int]] | None,
    *,
    only_needed_instances: bool,
    only_needed_frames: bool = False,
) -> _CtSample:
    """The slices to decode; with ``only_needed_instances`` the instances to fetch are only those
    holding them (a source that transfers pixel data), else all (local files: opening costs
    nothing, only the chosen slices are decoded). With ``only_needed_frames`` too (a source that
    retrieves single frames), a multi-frame instance is fetched as only its chosen frames, when
    the object they make is ordered as the whole one is (else it is fetched whole)."""
    datasets = [i.dataset for i in target.instances]
    order = slice_order(datasets, [i.ref.location for i in target.instances])
    n = len(order)
    chosen = sorted({*ct.sample_slices(n).tolist(), *(ai_slices(n) if ai_slices is not None else ())})
    if not only_needed_instances:
        return _CtSample(n, tuple(chosen), tuple(range(len(target.instances))), tuple(chosen), n)
    instances = sorted({order[i][0] for i in chosen})
    frames: dict[int, tuple[int, ...]] = {}
    if only_needed_frames:
        held = Counter(instance for instance, _frame in order)
        for instance in instances:
            wanted_frames = tuple(sorted(order[i][1] for i in chosen if order[i][0] == instance))
            if held[instance] > 1 and len(wanted_frames) < held[instance]:
                frames[instance] = wanted_frames
        if frames and not _frames_keep_order(datasets, instances, frames, order, chosen):
            frames = {}
    wanted = set(instances)
    fetched = [
        k
        for k, (instance, frame) in enumerate(order)
        if instance in wanted and (instance not in frames or frame in frames[instance])
    ]
    at = {k: j for j, k in enumerate(fetched)}
    return _CtSample(n, tuple(chosen), tuple(instances), tuple(at[i] for i in chosen), len(fetched), frames)


def _frames_keep_order(
    datasets: Sequence[Dataset],
    instances: Sequence[int],
    frames: Mapping[int, tuple[int, ...]],
    order: Sequence[tuple[int, int]],
    chosen: Sequence[int],
) -> bool:
    """Whether the objects fetched with only ``frames`` of some instances stack their slices in the
    order the whole series has them (a frame without a position among frames with one would not)."""
    reduced = [subset_header(datasets[i], frames[i]) if i in frames else datasets[i] for i in instances]
    try:
        got = [
            (instances[k], frames[instances[k]][f] if instances[k] in frames else f) for k, f in slice_order(reduced)
        ]
    except DegenerateInputError:
        return False
    wanted = set(instances)
    expected = [
        (instance, frame)
        for instance, frame in order
        if instance in wanted and (instance not in frames or frame in frames[instance])
    ]
    return got == expected


def _measure_target(
    target: Target,
    paths: list[Path],
    vendors: dr_exposure.IndicatorTable | None = None,
    noise_reference_mm: float = ct.NOISE_REFERENCE_MM,
    headers: Sequence[HeaderRead] | None = None,
    ai_slices: Callable[[int], Sequence[int]] | None = None,
    sample: _CtSample | None = None,
) -> tuple[list[Measurement], _Decoded]:
    """Decode the target once (with ``headers`` when the source read them from these files) and
    measure it once; the decoded pixels go on to the AI scorer.

    A CT series decodes only the slices its metrics sample and those ``ai_slices`` (the AI
    scorer's choice, given the number of slices) names (``sample``, made by :func:`_ct_sample`;
    ``paths`` are the files of its ``instances``): the metrics and the scores are those of the
    whole series, at a fraction of the decoding (most of a large series' cost). MR metrics read
    every slice, so an MR series is decoded whole."""
    if target.kind == "dr":
        image = load_image(paths[0], max_bytes=MAX_SERIES_BYTES, header=headers[0] if headers else None)
        ds = image.dataset
        stored = stored_value_range(image)
        indicator = dr_exposure.read_indicator(ds, vendors) if vendors is not None else None
        measured = dr.measure(
            image.array,
            spacing_mm=image.spacing_mm,
            stored_range=stored,
            exposure_index=_float_tag(ds, "ExposureIndex"),
            target_exposure_index=_float_tag(ds, "TargetExposureIndex"),
            deviation_index=_float_tag(ds, "DeviationIndex"),
            vendor_indicator=indicator,
        )
        pixel_mm = image.spacing_mm[0] if image.spacing_mm else None
        return measured, _Decoded([image.array], pixel_mm, stored, indicator)
    if target.kind == "ct":
        sample = sample if sample is not None else _ct_sample(target, ai_slices, only_needed_instances=False)
        volume = load_series(paths, max_bytes=MAX_SERIES_BYTES, headers=headers, select=sample.select_in)
        at = {index: k for k, index in enumerate(sample.chosen)}
        n = sample.n_slices
        head = volume.datasets[0]
        # The in-plane spacing only: the slice spacing of a subset of the files is not the series'.
        measured = ct.measure(
            volume.array[[at[i] for i in ct.sample_slices(n).tolist()]],
            spacing_mm=volume.spacing_mm,
            body_part=_body_part(head),
            slice_thickness_mm=_float_tag(head, "SliceThickness"),
            scan_field_mm=_float_tag(head, "DataCollectionDiameter"),
            reference_thickness_mm=noise_reference_mm,
            n_slices=n,
        )
        if ai_slices is None:
            return measured, _Decoded([], volume.spacing_mm[1], None, presampled=True)
        return measured, _Decoded(
            [volume.array[at[i]] for i in ai_slices(n)], volume.spacing_mm[1], None, presampled=True
        )
    volume = load_series(paths, max_bytes=MAX_SERIES_BYTES, headers=headers)
    decoded = _Decoded(list(volume.array), volume.spacing_mm[1], None)
    measured = mr.measure(
        volume.array,
        spacing_mm=volume.spacing_mm,
        phase_encode_direction=text(volume.datasets[0], "InPlanePhaseEncodingDirection"),
    )
    return measured, decoded


def _score(
    scorer: Scorer, target: Target, decoded: _Decoded, thresholds: Thresholds, sop: str | None
) -> tuple[list[Measurement], Finding | None]:
    """The AI scores of one target, or a finding saying why there are none."""
    if target.kind == "mr":
        weighting = identify_series([instance.dataset for instance in target.instances]).weighting
        if weighting in AI_MR_OUT_OF_DOMAIN:
            return [], thresholds.finding(
                AI_NOT_SCORED,
                f"{target.label_en}: not scored by the AI models: {weighting.label} series are outside what "
                "the MR models were trained on (structural T1/T2/PD/FLAIR images; see models/mr_artifacts.md)",
                f"{target.label_zh}：未进行AI评分（{weighting.label} 序列不在MR模型的训练范围内，"
                "模型仅针对T1/T2/PD/FLAIR结构像训练）",
                value=weighting.value,
                series_instance_uid=target.series_instance_uid,
                sop_instance_uid=sop,
            )
    try:
        return scorer.score(
            target.kind,
            decoded.slices,
            pixel_mm=decoded.pixel_mm,
            stored_range=decoded.stored_range,
            presampled=decoded.presampled,
        ), None
    except DegenerateInputError as exc:
        return [], thresholds.finding(
            AI_NOT_SCORED,
            f"{target.label_en}: not scored by the AI models: {exc}",
            f"{target.label_zh}：未能进行AI评分（{exc}）",
            series_instance_uid=target.series_instance_uid,
            sop_instance_uid=sop,
        )
    except Exception as exc:  # a model failing must not cost the study its other checks
        logger.exception("AI scoring failed on series %s", target.series_instance_uid)
        return [], thresholds.finding(
            AI_ERROR,
            f"{target.label_en}: AI scoring stopped with an unexpected error ({type(exc).__name__}: {exc}); please report it",
            f"{target.label_zh}：AI评分意外中断（{type(exc).__name__}），请人工复核并报告此问题",
            value=type(exc).__name__,
            series_instance_uid=target.series_instance_uid,
            sop_instance_uid=sop,
        )


def _models_missing(scorer: Scorer, target: Target, thresholds: Thresholds, sop: str | None) -> list[Finding | None]:
    """One finding per model of the target's modality that could not be loaded: only its scores
    (and so only its rules) are missing; the other models scored the series."""
    return [
        thresholds.finding(
            AI_UNAVAILABLE,
            f"{target.label_en}: not scored by AI model {name}: {reason}",
            f"{target.label_zh}：AI模型 {name} 不可用，未给出该模型的评分（{reason}）",
            value=name,
            series_instance_uid=target.series_instance_uid,
            sop_instance_uid=sop,
        )
        for name, reason in sorted(scorer.unavailable_for(target.kind).items())
    ]


def _pins_mismatched(
    scorer: Scorer,
    mismatched: dict[str, tuple[str, str]],
    target: Target,
    thresholds: Thresholds,
    sop: str | None,
) -> list[Finding | None]:
    """One info finding per model of the target's modality whose rules are off because the model
    loaded is not the one they were evaluated with (their pins)."""
    by_model: dict[str, list[str]] = {}
    for rule_id, (name, _) in mismatched.items():
        if name.startswith(f"{target.kind}_"):
            by_model.setdefault(name, []).append(rule_id)
    findings: list[Finding | None] = []
    for name, rule_ids in sorted(by_model.items()):
        loaded = scorer.models[name].pin
        pinned = sorted({thresholds.rule(r).model_pin or "" for r in rule_ids})
        off = ", ".join(sorted(rule_ids))
        findings.append(
            thresholds.finding(
                AI_PIN_MISMATCH,
                f"{target.label_en}: AI model {name} is {loaded}, not the model the rules {off} were evaluated with "
                f"({', '.join(pinned)}): those rules are off until the model is evaluated and the pins in thresholds/ai.yaml updated",
                f"{target.label_zh}：AI模型 {name} 为 {loaded}，不是规则 {off} 评估时所用的模型（{', '.join(pinned)}），"
                "这些规则暂停生效，需重新评估模型并更新 thresholds/ai.yaml 中的版本锁定",
                value=loaded,
                limit=", ".join(pinned),
                series_instance_uid=target.series_instance_uid,
                sop_instance_uid=sop,
            )
        )
    return findings


def ai_unavailable_finding(error: ModelError, thresholds: Thresholds) -> Finding | None:
    """The one finding of a study whose pixels could not be scored because the models are unusable."""
    return thresholds.finding(
        AI_UNAVAILABLE,
        f"Not scored by the AI models: {error}",
        f"AI模型不可用，本检查未进行AI评分：{error}",
        value="models unavailable",
    )


def _body_part(ds: Dataset) -> str | None:
    value = text(ds, "BodyPartExamined")
    return value.upper() if value else None


def rules_by_metric(thresholds: Thresholds, *, turned_off: Collection[str] = ()) -> dict[str, list[Rule]]:
    """The enabled rules on measured metrics, by metric id (less the ids in ``turned_off``)."""
    rules: dict[str, list[Rule]] = {}
    for rule in thresholds.rules.values():
        if rule.metric is not None and rule.enabled and rule.id not in turned_off:
            rules.setdefault(rule.metric, []).append(rule)
    return rules


def judge_measurement(
    m: Measurement,
    target: Target,
    modality: str,
    item_code: str | None,
    rules: list[Rule],
    thresholds: Thresholds,
    *,
    max_severity: Severity | None = None,
    reason: tuple[str, str] | None = None,
) -> Finding | None:
    """The finding of the worst rule that ``m`` breaks (None when it breaks none), as
    :func:`qc_pipeline.rules.evaluate.evaluate` decides: used by the checks and by the population
    generator, which judges synthetic values the same way. ``max_severity`` caps the rules that
    apply; ``reason`` (English, Chinese: why they are capped) is added to the message."""
    if m.value is None:
        return None
    judged = evaluate(rules, m.metric, m.value, modality=modality, item_code=item_code, max_severity=max_severity)
    if judged.fired is None:
        return None
    rule, limit = judged.fired.rule, judged.fired.value
    label_en, label_zh = metric_label(m.metric)
    unit = unit_suffix(m.unit, label_en)
    shown = registry.format_value(m.metric, m.value, limit=limit)
    relation_en = "above" if rule.when == "above" else "below"
    relation_zh = "高于" if rule.when == "above" else "低于"
    return thresholds.finding(
        rule.id,
        f"{target.label_en}: {label_en} {shown}{unit} is {relation_en} the limit {limit:g}{unit} "
        f"({rule.description.rstrip('.')}){'; ' + reason[0] if reason else ''}",
        f"{target.label_zh}：{label_zh} {shown}{unit}，{relation_zh}限值 {limit:g}{unit}"
        + (f"（{reason[1]}）" if reason else ""),
        value=f"{shown}{unit}",
        limit=f"{judged.fired.text}{unit}",
        series_instance_uid=target.series_instance_uid,
        sop_instance_uid=m.sop_instance_uid,
    )


def check_image_quality(
    study: LoadedStudy,
    thresholds: Thresholds,
    pixels: PixelSource,
    *,
    item_modality: str | None,
    item_code: str | None,
    scorer: Scorer | ModelError | None = None,
) -> ImageQuality:
    """Measure every series (or radiograph) of ``study`` once and judge the values.

    ``scorer``: the AI models to run on the same pixels; a ModelError (the models could not be
    loaded) gives one ``ai.model.unavailable`` finding; None runs no models.
    Raises SourceError only when the source fails to deliver pixels (a retryable failure of the
    source, not of the data).
    """
    mismatched = scorer.pin_mismatches(thresholds.rules.values()) if isinstance(scorer, Scorer) else {}
    rules = rules_by_metric(thresholds, turned_off=mismatched)
    vocabulary = thresholds.catalog.vocabulary if thresholds.catalog is not None else None
    reference = thresholds.parameters.get("ct.noise_reference_thickness_mm")
    noise_reference_mm = reference.value if reference is not None else ct.NOISE_REFERENCE_MM
    measurements: list[Measurement] = []
    findings: list[Finding | None] = []
    targets = list(_targets(study, item_modality))
    vendors = dr_exposure.vendor_table(thresholds.directory) if any(t.kind == "dr" for t in targets) else None
    if targets and isinstance(scorer, ModelError):
        findings.append(ai_unavailable_finding(scorer, thresholds))
    for target in targets:
        sop = target.instances[0].ref.sop_instance_uid if target.kind == "dr" else None
        try:
            ai_slices = (
                functools.partial(scorer.slice_indices, target.kind)
                if isinstance(scorer, Scorer) and target.kind == "ct"
                else None
            )
            # A source that fetches pixel data (DICOMweb) fetches only the sampled instances, and
            # of a multi-frame instance only the sampled frames when it can retrieve frames.
            sample = (
                _ct_sample(
                    target,
                    ai_slices,
                    only_needed_instances=not getattr(pixels, "pixel_files_are_loaded_files", False),
                    only_needed_frames=getattr(pixels, "fetches_frames", False),
                )
                if target.kind == "ct"
                else None
            )
            needed = target.instances if sample is None else tuple(target.instances[i] for i in sample.instances)
            frames = (
                {
                    target.instances[i].ref.sop_instance_uid: (target.instances[i].dataset, wanted)
                    for i, wanted in sample.frames.items()
                }
                if sample is not None
                else {}
            )
            refs = [i.ref for i in needed]
            fetch = (
                cast(FramePixelSource, pixels).pixel_files(refs, frames=frames) if frames else pixels.pixel_files(refs)
            )
            with fetch as paths:
                headers = _loaded_headers(pixels, needed, paths)
                raw, decoded = _measure_target(target, paths, vendors, noise_reference_mm, headers, ai_slices, sample)
        except SourceError:
            raise
        except NotApplicableError as exc:  # e.g. a series larger than the memory budget, whole
            findings.append(
                thresholds.finding(
                    NOT_APPLICABLE,
                    f"{target.label_en}: the image-quality metrics are not applicable: {exc}",
                    f"{target.label_zh}：图像质量指标不适用（{exc}）",
                    series_instance_uid=target.series_instance_uid,
                    sop_instance_uid=sop,
                )
            )
            continue
        except DegenerateInputError as exc:
            findings.append(
                thresholds.finding(
                    NOT_DECODED,
                    f"{target.label_en}: pixel data could not be used for the image-quality metrics: {exc}",
                    f"{target.label_zh}：像素数据无法用于图像质量指标计算（{exc}）",
                    series_instance_uid=target.series_instance_uid,
                    sop_instance_uid=sop,
                )
            )
            continue
        except Exception as exc:  # a bug in a metric must not cost the study its other checks
            logger.exception("image-quality metrics failed on series %s", target.series_instance_uid)
            findings.append(
                thresholds.finding(
                    METRIC_ERROR,
                    f"{target.label_en}: the image-quality metrics stopped with an unexpected error "
                    f"({type(exc).__name__}: {exc}); please report it",
                    f"{target.label_zh}：图像质量指标计算意外中断（{type(exc).__name__}），请人工复核并报告此问题",
                    value=type(exc).__name__,
                    series_instance_uid=target.series_instance_uid,
                    sop_instance_uid=sop,
                )
            )
            continue
        modality = (text(target.instances[0].dataset, "Modality") or "").upper()
        if isinstance(scorer, Scorer):
            scores, problem = _score(scorer, target, decoded, thresholds, sop)
            raw = [*raw, *scores]
            findings.append(problem)
            findings.extend(_models_missing(scorer, target, thresholds, sop))
            if scores:
                findings.extend(_pins_mismatched(scorer, mismatched, target, thresholds, sop))
        lossy = lossy_compression(target.instances[0].dataset)
        if lossy is not None:
            findings.append(
                thresholds.finding(
                    LOSSY,
                    f"{target.label_en}: lossy-compressed pixel data ({lossy}): noise and saturation metrics are not judged",
                    f"{target.label_zh}：像素数据为有损压缩（{lossy}），噪声与饱和类指标不予判定",
                    value=lossy,
                    series_instance_uid=target.series_instance_uid,
                    sop_instance_uid=sop,
                )
            )
        unmeasured: dict[tuple[str, str], list[Measurement]] = {}
        by_design = _unmeasured_by_design(target)
        out_of_scope = mr_out_of_scope(target, thresholds) if target.kind == "mr" else None
        accelerated = parallel_imaging(target.instances[0].dataset) if target.kind == "mr" else None
        scoped_out: list[Measurement] = []
        for m in raw:
            m = dataclasses.replace(m, series_instance_uid=target.series_instance_uid, sop_instance_uid=sop)
            if out_of_scope is not None and m.metric in MR_SEQUENCE_BOUND:
                read = "" if m.value is None else f" (read {registry.format_value(m.metric, m.value)})"
                m = dataclasses.replace(
                    m,
                    value=None,
                    unmeasured=Unmeasured.NOT_APPLICABLE,
                    detail=f"not applicable: {out_of_scope[0]}{read}; {m.detail}".rstrip("; "),
                )
                measurements.append(m)
                scoped_out.append(m)
                continue
            if accelerated is not None and m.metric == "mr.snr" and m.value is not None:
                m = dataclasses.replace(m, detail=f"{m.detail}; parallel imaging: {accelerated}".lstrip("; "))
            if m.value is not None and not math.isfinite(m.value):
                m = dataclasses.replace(
                    m,
                    value=None,
                    detail=f"the metric gave {m.value} (no finite value)",
                    unmeasured=Unmeasured.UNMEASURABLE,
                )
            if m.value is not None and lossy is not None and m.metric in LOSSY_INVALIDATES:
                m = dataclasses.replace(
                    m,
                    value=None,
                    unmeasured=Unmeasured.NOT_APPLICABLE,
                    detail=f"lossy compression ({lossy}) invalidates this metric "
                    f"(it read {registry.format_value(m.metric, m.value)})",
                )
            if m.value is None:
                m = dataclasses.replace(m, unmeasured=_unmeasured_kind(m))
                if by_design is not None and m.unmeasured is Unmeasured.UNMEASURABLE:
                    m = dataclasses.replace(m, unmeasured=Unmeasured.NOT_APPLICABLE, detail=f"{m.detail}; {by_design}")
            measurements.append(m)
            if m.value is None:
                applies = _judged(m.metric, target, vocabulary) is None and bool(
                    applicable_rules(rules.get(m.metric, []), m.metric, modality=modality, item_code=item_code)
                )
                code = (
                    NOT_APPLICABLE
                    if m.unmeasured is Unmeasured.NOT_APPLICABLE
                    else UNMEASURABLE
                    if applies
                    else INDICATOR_UNMEASURABLE
                )
                unmeasured.setdefault((code, m.detail or "no reason given"), []).append(m)
                continue
            if m.metric == "dr.vendor_exposure_indicator":
                findings.append(
                    dr_exposure.range_finding(
                        decoded.vendor_indicator,
                        m,
                        thresholds,
                        label_en=target.label_en,
                        label_zh=target.label_zh,
                        series_instance_uid=target.series_instance_uid,
                        sop_instance_uid=sop,
                    )
                )
            not_judged = _judged(m.metric, target, vocabulary)
            if not_judged is not None:
                measurements[-1] = dataclasses.replace(m, detail="; ".join(d for d in (m.detail, not_judged) if d))
                unmeasured.setdefault((NOT_APPLICABLE, not_judged), []).append(m)
                continue
            capped = accelerated is not None and m.metric == "mr.snr"
            findings.append(
                judge_measurement(
                    m,
                    target,
                    modality,
                    item_code,
                    rules.get(m.metric, []),
                    thresholds,
                    max_severity=Severity.REVIEW if capped else None,
                    reason=(
                        f"parallel imaging ({accelerated}): background SNR is unreliable with multi-channel coils "
                        "and parallel imaging (Dietrich et al. 2007), so it asks for review at most",
                        f"检测到并行采集（{accelerated}）：多通道线圈与并行采集下背景法信噪比不可靠，最多提请复核",
                    )
                    if capped
                    else None,
                )
            )
            if capped:
                findings.append(
                    thresholds.finding(
                        PARALLEL_IMAGING,
                        f"{target.label_en}: parallel imaging ({accelerated}): the background SNR is judged at most "
                        "'review' (Dietrich et al. 2007, JMRI 26:375)",
                        f"{target.label_zh}：检测到并行采集（{accelerated}），背景法信噪比最多判为“复核”",
                        value=accelerated,
                        series_instance_uid=target.series_instance_uid,
                        sop_instance_uid=sop,
                    )
                )
        if scoped_out and out_of_scope is not None:
            names = [metric_label(m.metric) for m in scoped_out]
            findings.append(
                thresholds.finding(
                    NOT_APPLICABLE,
                    f"{target.label_en}: not applicable: {out_of_scope[0]}: {', '.join(n[0] for n in names)} are not "
                    "judged (their limits hold for structural magnitude images)",
                    f"{target.label_zh}：不适用：{out_of_scope[1]}，{'、'.join(n[1] for n in names)}不予判定"
                    "（其限值仅适用于结构像幅度图像）",
                    value=", ".join(m.metric for m in scoped_out),
                    series_instance_uid=target.series_instance_uid,
                    sop_instance_uid=sop,
                )
            )
        findings.extend(_unmeasured_findings(unmeasured, target, sop, thresholds))
    return ImageQuality(tuple(measurements), tuple(f for f in findings if f is not None))


LOSSY_INVALIDATES: Final = frozenset(
    {
        "dr.clipped_stored_max_percent",
        "dr.clipped_stored_min_percent",
        "dr.pileup_max_percent",
        "dr.pileup_min_percent",
        "dr.noise_sd",
        "dr.noise_relative_percent",
        "dr.snr",
        "ct.noise_hu",
        "ct.noise_measured_hu",
        "ct.streak_index",
        "mr.snr",
        "mr.cnr",
        "mr.fber",
        "mr.efc",
        "mr.piu_percent",
    }
)
"""Metrics that lossy coding invalidates: it removes noise (noise SD, SNR, CNR, the air energy of
FBER, the entropy of EFC, the high-frequency power of the streak index) and spreads values that
were pinned at one level (clipping and pile-up), and the block artefacts move the 1 cm^2 means of
PIU. On a lossy image they are not applicable (not judged, not stored)."""

HEADER_METRICS: Final = frozenset(
    {"dr.exposure_index", "dr.deviation_index", "dr.vendor_exposure_indicator", "dr.deviation_index_vendor"}
)
"""Metrics read from the header, not measured on the pixels: when absent they are not applicable
here (the exposure is judged where it is recorded)."""

_UNMEASURED_TEXT: Final = {
    NOT_APPLICABLE: ("not applicable", "不适用"),
    UNMEASURABLE: ("could not be measured", "无法测量"),
    INDICATOR_UNMEASURABLE: ("could not be measured (indicator without a limit)", "无法测量（无限值的参考指标）"),
}


def _unmeasured_kind(m: Measurement) -> Unmeasured:
    """Why ``m`` has no value: as the metric says; a header value that is absent is not applicable;
    anything else the metric did not sort is unmeasurable (never fail open)."""
    if m.unmeasured is not None:
        return m.unmeasured
    return Unmeasured.NOT_APPLICABLE if m.metric in HEADER_METRICS else Unmeasured.UNMEASURABLE


EPI_WEIGHTINGS: Final = AI_MR_OUT_OF_DOMAIN
"""Echo-planar series and their maps, whatever ScanningSequence says: diffusion (and ADC), BOLD
fMRI, perfusion (the series the AI models are kept off, for the same reason)."""


def _unmeasured_by_design(target: Target) -> str | None:
    """Why a metric that could not be measured on this target is not applicable by design, or None.

    Echo-planar series (ScanningSequence (0018,0020) EP, or :data:`EPI_WEIGHTINGS`) put N/2
    ghosts and low-SNR noise in the air by design, and ADC maps
    hold computed values, not magnitude noise; their air is not expected to be noise-like.
    """
    if target.kind != "mr":
        return None
    ds = target.instances[0].dataset
    if "EP" in cs_values(ds.get("ScanningSequence")):
        return "echo-planar series (ScanningSequence EP): ghosts and low-SNR air are expected by design"
    weighting = identify_series([instance.dataset for instance in target.instances]).weighting
    if weighting in EPI_WEIGHTINGS:
        return f"{weighting.label} series: the air is not magnitude noise by design"
    return None


MR_SEQUENCE_BOUND: Final = frozenset(
    {"mr.snr", "mr.cnr", "mr.fber", "mr.ghosting_percent", "mr.piu_percent", "mr.wrap_percent", "mr.inu_range_percent"}
)
"""MR metrics whose limits hold for structural magnitude images only: the air-background noise
metrics (SNR, CNR, FBER), ghosting and wrap (EPI puts N/2 ghosts and low-SNR air there by design)
and PIU and the N4 bias field (a map's values are not signal intensity). They are not judged on the series of
:func:`mr_out_of_scope`."""
MR_OUT_OF_SCOPE: Final = frozenset(
    {Weighting.DWI, Weighting.ADC, Weighting.BOLD, Weighting.PERFUSION, Weighting.LOCALIZER}
)
"""Weightings (:func:`~qc_pipeline.catalog.mr_sequences.identify_series`) whose series the
structural limits do not judge: diffusion and its ADC map, fMRI, perfusion, localizers."""
DERIVED_MAP_TYPES: Final = frozenset(
    {
        "ADC",
        "ADC_MAP",
        "EADC",
        "FA",
        "COLFA",
        "FA_COLOR",
        "TENSOR",
        "TENSOR_B0",
        "MD",
        "TRACEW",
        "EXP",
        "T1_MAP",
        "T2_MAP",
        "T2STAR_MAP",
        "R2STAR",
        "MAP",
        "CBF",
        "CBV",
        "MTT",
        "TTP",
        "RCBF",
        "RCBV",
    }
)
"""ImageType (0008,0008) values of a computed map: with DERIVED, the series holds computed values
(diffusion, relaxometry, perfusion maps), not a magnitude image."""


def mr_out_of_scope(target: Target, thresholds: Thresholds) -> tuple[str, str] | None:
    """Why the structural MR limits do not judge this series, (English, Chinese), or None.

    Diffusion, ADC, perfusion and fMRI series and localizers (by :func:`identify_series` with the
    catalog's vocabulary), echo-planar series (ScanningSequence (0018,0020) EP) and derived maps
    (ImageType DERIVED with a map value, :data:`DERIVED_MAP_TYPES`).
    """
    datasets = [instance.dataset for instance in target.instances]
    vocabulary = thresholds.catalog.vocabulary if thresholds.catalog is not None else None
    info = identify_series(datasets, vocabulary=vocabulary)
    if info.weighting is Weighting.LOCALIZER:
        return "localizer", "定位像"
    if info.weighting in MR_OUT_OF_SCOPE:
        return f"{info.weighting.label} series", f"{info.weighting.label} 序列"
    ds = datasets[0]
    if "EP" in cs_values(ds.get("ScanningSequence")):
        return "echo-planar series (ScanningSequence EP)", "平面回波（EPI）序列"
    image_type = cs_values(ds.get("ImageType"))
    if "DERIVED" in image_type and DERIVED_MAP_TYPES & set(image_type):
        shown = "\\".join(image_type)
        return f"derived map (ImageType {shown})", f"后处理参数图（ImageType {shown}）"
    return None


_ACCELERATION_WORDS: Final = re.compile(
    r"(?:^|[^A-Z])(IPAT|GRAPPA|MSENSE|SENSE|ASSET|ARC|CAIPI|CAIPIRINHA|HYPERSENSE)(?:$|[^A-Z])", re.IGNORECASE
)
"""Parallel-imaging names in SequenceName / ScanOptions: Siemens iPAT (GRAPPA, mSENSE, CAIPIRINHA),
GE ASSET / ARC / HyperSense (ScanOptions ASSET_GEMS, ARC_GEMS), Philips SENSE."""
_SIEMENS_PAT: Final = re.compile(r"(?:^|[_\d])p([2-8])$", re.IGNORECASE)
"""Siemens SequenceName suffix ``p2``..``p8``: the iPAT acceleration factor (``*tse2d1_15p2``)."""


def _cs(ds: Dataset, keyword: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in cs_values(ds.get(keyword)))


def parallel_imaging(ds: Dataset) -> str | None:
    """What in the header says the series was acquired with parallel imaging, or None.

    ParallelReductionFactorInPlane (0018,9069) > 1, ParallelAcquisition (0018,9077) YES,
    ParallelAcquisitionTechnique (0018,9078) other than NONE (also inside the enhanced MR
    functional groups' MRModifierSequence); Siemens iPAT/GRAPPA/mSENSE or a ``p2`` suffix in
    SequenceName (0018,0024); GE ASSET/ARC in ScanOptions (0018,0022) or ASSET factors (0043,1083)
    below 1; Philips SENSE in ScanOptions or in a text element of the private group 2005. With
    parallel imaging the background noise is neither Rayleigh nor uniform over the image, so the
    background SNR is unreliable (Dietrich et al. 2007, JMRI 26:375).
    """
    modifiers = [ds]
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in (ds.get(groups) or [])[:1]:
            modifiers.extend((item.get("MRModifierSequence") or [])[:1])
    for item in modifiers:
        factor = as_floats(item.get("ParallelReductionFactorInPlane"), count=1)
        if factor is not None and factor[0] > 1:
            return f"ParallelReductionFactorInPlane (0018,9069) {factor[0]:g}"
        if "YES" in {v.upper() for v in _cs(item, "ParallelAcquisition")}:
            return "ParallelAcquisition (0018,9077) YES"
        technique = [v for v in _cs(item, "ParallelAcquisitionTechnique") if v and v.upper() != "NONE"]
        if technique:
            return f"ParallelAcquisitionTechnique (0018,9078) {technique[0]}"
    sequence = text(ds, "SequenceName") or ""
    if _ACCELERATION_WORDS.search(sequence) or _SIEMENS_PAT.search(sequence):
        return f"SequenceName (0018,0024) {sequence}"
    for option in _cs(ds, "ScanOptions"):
        if _ACCELERATION_WORDS.search(option):
            return f"ScanOptions (0018,0022) {option}"
    asset = ds.get((0x0043, 0x1083))
    if asset is not None:
        values = cs_values(asset.value) if not isinstance(asset.value, bytes) else ()
        factors = [float(v) for v in values if _is_number(v)]
        if any(0 < f < 1 for f in factors):
            return "GE ASSET factors (0043,1083) " + "\\".join(str(v) for v in values)
    for element in ds:
        if element.tag.group == 0x2005 and element.VR in ("CS", "LO", "SH", "ST", "LT"):
            value = element.value if isinstance(element.value, str) else " ".join(str(v) for v in element.value or ())
            if re.search(r"(?:^|[^A-Z])SENSE(?:$|[^A-Z])", value, re.IGNORECASE) and "NO" not in value.upper().split():
                return f"Philips {element.tag} {value.strip()}"
    return None


def _is_number(value: object) -> bool:
    try:
        return math.isfinite(float(str(value)))
    except ValueError:
        return False


def _unmeasured_findings(
    groups: dict[tuple[str, str], list[Measurement]], target: Target, sop: str | None, thresholds: Thresholds
) -> Iterator[Finding | None]:
    """One finding per rule and reason: the metrics that share a reason are named together."""
    for (code, reason), members in groups.items():
        names = [metric_label(m.metric) for m in members]
        en, zh = _UNMEASURED_TEXT[code]
        yield thresholds.finding(
            code,
            f"{target.label_en}: {', '.join(n[0] for n in names)} {en}: {reason}",
            f"{target.label_zh}：{'、'.join(n[1] for n in names)}{zh}（{reason}）",
            value=", ".join(m.metric for m in members),
            series_instance_uid=target.series_instance_uid,
            sop_instance_uid=sop,
        )


METRIC_LABELS: Final[dict[str, tuple[str, str]]] = registry.labels()
"""Metric id -> (English, Chinese) name for messages, from :mod:`qc_pipeline.metrics.registry`."""
_SCORE_LABELS: Final = score_labels()


def unit_suffix(unit: str, label: str = "") -> str:
    """`` HU`` for a unit; nothing for a dimensionless ratio ("1"), no unit, or a unit the metric's
    label already ends with ("deviation index DI")."""
    return f" {unit}" if unit and unit not in ("1", "probability") and not label.endswith(unit) else ""


JUDGED_KERNELS: Final = frozenset({KernelClass.SOFT_TISSUE, KernelClass.BRAIN, KernelClass.UNKNOWN})
"""Kernel classes (lexicon ``ct_kernels``) whose noise is judged: soft-tissue and standard kernels
(Christianson et al. 2015 measured standard reconstructions), and kernels the table does not know
(never fail open). Sharp (bone, lung, other sharp) kernels have 2-5x the noise by design."""


def _judged(metric: str, target: Target, vocabulary: Vocabulary | None = None) -> str | None:
    """None when the metric's rules apply to this target, else why they do not."""
    if metric == "ct.noise_hu":
        kernel = header_value(target.instances[0].dataset, "ConvolutionKernel")
        label, reason = kernel_class(kernel, vocabulary or shipped_vocabulary())
        if label not in JUDGED_KERNELS:
            return f"{reason} (lexicon ct_kernels): noise is judged on soft-tissue and standard kernels only"
    return None


def metric_label(metric: str) -> tuple[str, str]:
    """(English, Chinese) name of a metric for messages; the id itself when it has none."""
    return METRIC_LABELS.get(metric) or _SCORE_LABELS.get(metric, (metric, metric))


def known_metrics() -> frozenset[str]:
    return frozenset(METRIC_UNITS)
