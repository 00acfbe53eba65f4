"""The domain model: study references, findings, verdicts and decisions.

Plain frozen dataclasses and enums, no I/O. Everything else in the package speaks these types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final


class Verdict(StrEnum):
    """The outcome of quality control for one study."""

    PASS = "pass"
    REVIEW = "review"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


VERDICT_LABELS: Final[dict[str, tuple[str, str]]] = {
    Verdict.PASS.value: ("pass", "合格"),
    Verdict.REVIEW.value: ("review", "待复核"),
    Verdict.FAIL.value: ("fail", "不合格"),
    Verdict.NOT_APPLICABLE.value: ("n/a", "不适用"),
}
"""Verdict -> (English, Chinese) words shown to users (CLI, review app, reports)."""


class Severity(StrEnum):
    """How much a finding weighs in the verdict. Ordered: info < review < fail."""

    INFO = "info"
    REVIEW = "review"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.REVIEW: 1, Severity.FAIL: 2}


class Category(StrEnum):
    """What a finding is about; the data-quality dimensions the QC centre reports on."""

    METADATA = "metadata"
    TIMELINESS = "timeliness"
    COMPLETENESS = "completeness"
    CONTINUITY = "continuity"
    INTEGRITY = "integrity"
    IMAGE_QUALITY = "image_quality"
    AI = "ai"
    CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """One stored DICOM object of a study, as the source knows it."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    location: str
    """Where the source finds it: a file path relative to the folder, or a DICOMweb URL."""
    size_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SeriesRef:
    series_instance_uid: str
    modality: str | None
    instances: tuple[InstanceRef, ...]
    series_number: int | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class StudyRef:
    study_instance_uid: str
    series: tuple[SeriesRef, ...]

    @property
    def instances(self) -> tuple[InstanceRef, ...]:
        return tuple(i for s in self.series for i in s.instances)


@dataclass(frozen=True, slots=True)
class ItemRef:
    """A recognition item of the catalog (filled in once the catalog lands)."""

    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One observation about a study, with the rule that produced it.

    ``code`` is the id of the rule in ``thresholds/``; ``message`` is a sentence a radiologist can
    read (English), ``message_zh`` the same in Chinese; ``value`` is what was found and ``limit``
    what the rule allows, both as text so that dates, tags and numbers fit alike.
    """

    code: str
    category: Category
    severity: Severity
    message: str
    message_zh: str = ""
    value: str | None = None
    limit: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "category": str(self.category),
            "severity": str(self.severity),
            "message": self.message,
            "message_zh": self.message_zh,
            "value": self.value,
            "limit": self.limit,
            "series_instance_uid": self.series_instance_uid,
            "sop_instance_uid": self.sop_instance_uid,
        }


class Unmeasured(StrEnum):
    """Why a metric has no value: the two answers are judged differently."""

    NOT_APPLICABLE = "not_applicable"
    """The metric is undefined for this image by design (a tight crop with no air, a series whose
    coding invalidates it): recorded, not a sign of a defect."""
    UNMEASURABLE = "unmeasurable"
    """The image does not look as the metric needs (air that is not noise-like, no object found,
    ROIs that cannot be placed): the reason may be the defect itself, so a person looks."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """The value of one objective image-quality metric on one series (or one radiograph).

    ``metric`` is a stable dotted id (``ct.noise_hu``) that rules in ``thresholds/`` name in their
    ``metric`` field; ``value`` is None when the metric could not be measured on this image, and
    ``detail`` then says why (otherwise, optionally, how or where it was measured). Values are
    never rounded here. ``unmeasured`` says which kind of reason that is; a metric that gives
    None without saying is taken as UNMEASURABLE (never fail open).
    """

    metric: str
    value: float | None
    unit: str
    detail: str = ""
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    unmeasured: Unmeasured | None = None


class SeriesKind(StrEnum):
    """What a series of a study is, for the role the pipeline gives it."""

    MR = "MR"
    CT = "CT"
    DR = "DR"
    """CR, DX and DR radiographs."""
    NON_IMAGE = "non_image"
    """Structured reports (dose reports), key object selections, presentation states: no role."""
    OTHER = "other"
    """Images of another modality (OT, PT, US, ...): no role."""


@dataclass(frozen=True, slots=True)
class MRRole:
    """An MR series as the sequence identification read it.

    ``weighting`` is the value of ``catalog.mr_sequences.Weighting`` (T1, T2, PD, T2_FLAIR, STIR,
    DWI, ADC, SWI, ..., OTHER, UNKNOWN); ``plane`` the value of its ``Plane``, None when unknown.
    """

    weighting: str
    plane: str | None
    fat_suppressed: bool
    post_contrast: bool
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CTRole:
    """A CT series: contrast phase (PLAIN, POST_CONTRAST, LOCALIZER, ...), kernel class, slice."""

    phase: str | None
    kernel_class: str | None
    slice_mm: float | None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DRRole:
    """A radiograph series: its view (PA, LATERAL, ...; ``+``-joined when its images differ) and side."""

    view: str | None
    laterality: str | None
    evidence: tuple[str, ...] = ()


SeriesRole = MRRole | CTRole | DRRole
_ROLE_TYPES: Final[dict[SeriesKind, type[MRRole] | type[CTRole] | type[DRRole]]] = {
    SeriesKind.MR: MRRole,
    SeriesKind.CT: CTRole,
    SeriesKind.DR: DRRole,
}


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One series of a study, as the pipeline understood it when it judged the study.

    ``role`` is set for MR, CT and DR image series (of the type that ``kind`` names) and None for
    the others. ``as_dict``/``from_dict`` give and read its JSON form (``results --format json``).
    """

    series_instance_uid: str
    series_number: int | None
    description: str | None
    modality: str | None
    n_instances: int
    kind: SeriesKind
    role: SeriesRole | None = None

    def __post_init__(self) -> None:
        expected = _ROLE_TYPES.get(self.kind)
        if self.role is not None and not isinstance(self.role, expected or ()):
            wanted = "no role" if expected is None else expected.__name__
            raise ValueError(
                f"series {self.series_instance_uid}: kind {self.kind.value} takes {wanted}, "
                f"got {type(self.role).__name__}"
            )

    def as_dict(self) -> dict[str, Any]:
        role = None
        if self.role is not None:
            role = {f.name: getattr(self.role, f.name) for f in fields(self.role)}
            role["evidence"] = list(self.role.evidence)
        return {
            "series_instance_uid": self.series_instance_uid,
            "series_number": self.series_number,
            "description": self.description,
            "modality": self.modality,
            "n_instances": self.n_instances,
            "kind": self.kind.value,
            "role": role,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeriesSummary:
        """The series from its ``as_dict`` form; ValueError naming the key when it does not fit.

        Role keys this version does not know are left out, so that a newer writer's rows read.
        """
        try:
            kind = SeriesKind(data["kind"])
            raw_role = data.get("role")
            role: SeriesRole | None = None
            if raw_role is not None:
                role_type = _ROLE_TYPES.get(kind)
                if role_type is None:
                    raise ValueError(f"kind {kind.value} takes no role")
                known = {f.name for f in fields(role_type)}
                values = {k: v for k, v in raw_role.items() if k in known}
                values["evidence"] = tuple(str(e) for e in raw_role.get("evidence") or ())
                role = role_type(**values)
            return cls(
                series_instance_uid=str(data["series_instance_uid"]),
                series_number=data.get("series_number"),
                description=data.get("description"),
                modality=data.get("modality"),
                n_instances=int(data["n_instances"]),
                kind=kind,
                role=role,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored series (expected the keys of SeriesSummary.as_dict): {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Provenance:
    """What produced a decision, so that it can be reproduced and audited."""

    pipeline_version: str
    thresholds_version: str
    models: Mapping[str, str] = field(default_factory=dict)
    """Model name -> "version@sha256-prefix" for every model that scored the study."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline_version": self.pipeline_version,
            "thresholds_version": self.thresholds_version,
            "models": dict(sorted(self.models.items())),
        }


@dataclass(frozen=True, slots=True)
class StudySummary:
    """The study-level header values that results and reports are keyed on."""

    study_instance_uid: str
    patient_id: str | None = None
    patient_sex: str | None = None
    patient_birth_date: dt.date | None = None
    accession_number: str | None = None
    institution: str | None = None
    modalities: tuple[str, ...] = ()
    study_date: dt.date | None = None
    study_time: dt.time | None = None
    study_description: str | None = None
    n_series: int = 0
    n_instances: int = 0
    received_at: dt.datetime | None = None
    """When the source received the study's last object (UTC), where the source knows."""
    upload_delay_h: float | None = None
    """received_at minus the acquisition time (StudyDate/StudyTime), in hours."""

    @property
    def modality(self) -> str | None:
        """The study's modalities joined by ``,`` (e.g. ``CT`` or ``CT,SR``), or None."""
        return ",".join(self.modalities) or None


@dataclass(frozen=True, slots=True)
class PriorStudy:
    """Another study of the same patient, as stored: for consistency across studies."""

    study_instance_uid: str
    study_date: dt.date | None
    patient_sex: str | None
    patient_birth_date: dt.date | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one study, its reasons and its provenance."""

    study: StudySummary
    verdict: Verdict
    findings: tuple[Finding, ...]
    provenance: Provenance
    content_fingerprint: str
    """Hash of the study's content as the source listed it; a change means judge again."""
    decided_at: dt.datetime
    eligible: bool = False
    eligible_until: dt.date | None = None
    item: ItemRef | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Study-level numbers (e.g. upload delay in hours), by name."""
    measurements: tuple[Measurement, ...] = ()
    """Image-quality metrics per series / image (``qc_pipeline.metrics``)."""
    source_uri: str | None = None
    series: tuple[SeriesSummary, ...] = ()
    """Every series of the study with the role the checks gave it (``catalog.series_roles``)."""

    @property
    def study_instance_uid(self) -> str:
        return self.study.study_instance_uid

    @property
    def reasons(self) -> tuple[Finding, ...]:
        """Findings that weigh in the verdict (review or fail), worst first."""
        return tuple(
            sorted(
                (f for f in self.findings if f.severity is not Severity.INFO),
                key=lambda f: -f.severity.rank,
            )
        )


def worst_severity(findings: Iterable[Finding]) -> Severity | None:
    """The highest severity among ``findings``, or None when there are none."""
    worst: Severity | None = None
    for f in findings:
        if worst is None or f.severity.rank > worst.rank:
            worst = f.severity
    return worst
