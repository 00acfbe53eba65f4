"""The one protocol every study source implements: discover cheaply, then load one study."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydicom.dataset import Dataset

from qc_pipeline.domain import InstanceRef, SeriesRef, StudyRef
from qc_pipeline.io.dicom import PixelDataCheck

UNREADABLE_UID_NAMESPACE = uuid.UUID("6f1c5a52-3b0e-4d8e-9a57-2f7c0c1e9d11")


@dataclass(frozen=True, slots=True)
class StudyEntry:
    """A study as discovery lists it: small, picklable, enough to load it later.

    ``fingerprint`` changes whenever the study's content does (an instance added, removed or
    rewritten), which is what makes a study be judged again.
    """

    study_instance_uid: str
    locations: tuple[str, ...]
    fingerprint: str
    uid_readable: bool = True
    """False for a file whose StudyInstanceUID could not be read: a study of its own."""
    patient_key: str | None = None
    """A hash of the PatientID (never the ID itself): studies of one patient are judged in order."""
    study_date: str | None = None
    """StudyDate as written (YYYYMMDD), for that order."""


class ProblemKind(StrEnum):
    UNREADABLE = "unreadable"
    MISSING_UID = "missing_uid"


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """A file of a study that could not be used, and why (turned into a finding by checks)."""

    location: str
    kind: ProblemKind
    reason: str


@dataclass(frozen=True, slots=True)
class LoadedInstance:
    ref: InstanceRef
    dataset: Dataset
    """The header, without pixel data."""
    pixel_data: PixelDataCheck | None
    is_image: bool


@dataclass(slots=True)
class LoadedStudy:
    """Everything the checks need about one study: headers, read problems, arrival time."""

    entry: StudyEntry
    instances: list[LoadedInstance] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    received_at: dt.datetime | None = None
    """When the source received the study's last object (UTC), if the source knows."""
    received_at_is_upper_bound: bool = False
    """``received_at`` is when the pipeline first saw the study (the server gives no upload time):
    the study was received then or earlier, so the delay is at most the one computed."""

    @property
    def study_instance_uid(self) -> str:
        return self.entry.study_instance_uid

    @property
    def images(self) -> list[LoadedInstance]:
        return [i for i in self.instances if i.is_image]

    def ref(self) -> StudyRef:
        by_series: dict[str, list[LoadedInstance]] = {}
        for inst in self.instances:
            by_series.setdefault(inst.ref.series_instance_uid, []).append(inst)
        series = []
        for uid, members in by_series.items():
            first = members[0].dataset
            number = first.get("SeriesNumber")
            series.append(
                SeriesRef(
                    series_instance_uid=uid,
                    modality=str(first.get("Modality", "") or "") or None,
                    instances=tuple(m.ref for m in members),
                    series_number=int(number) if isinstance(number, int | float) else None,
                    description=str(first.get("SeriesDescription", "") or "") or None,
                )
            )
        return StudyRef(study_instance_uid=self.study_instance_uid, series=tuple(series))


@runtime_checkable
class StudySource(Protocol):
    """Where studies come from. Implementations never modify, move or delete what they read."""

    @property
    def uri(self) -> str: ...

    def check(self) -> None:
        """Raise ``SourceError`` when the source cannot be read at all (unreachable, access
        refused); cheap, reads no study. Run before a flow starts, so that what no retry mends
        is said at once."""
        ...

    def discover(self) -> Iterator[StudyEntry]:
        """List the studies now in the source, grouped by StudyInstanceUID."""
        ...

    def load(self, entry: StudyEntry) -> LoadedStudy:
        """Read the headers of one study. Bad files become ``problems``, not exceptions;
        only a failure of the source itself raises ``SourceError``."""
        ...

    def pixel_files(self, instances: Sequence[InstanceRef]) -> AbstractContextManager[list[Path]]:
        """Local files holding these instances' pixel data (one series), valid inside the context;
        only a failure of the source raises (``SourceError``)."""
        ...


def uid_for_unreadable(location: str) -> str:
    """A stable, valid UID (2.25 form) standing for the study of a file with no readable UID."""
    return f"2.25.{uuid.uuid5(UNREADABLE_UID_NAMESPACE, location).int}"


def patient_key(patient_id: str | None) -> str | None:
    """A stable, non-reversible key for a PatientID (for ordering work, never for display)."""
    if not patient_id:
        return None
    return hashlib.sha256(b"qc-pipeline patient\0" + patient_id.encode("utf-8", "replace")).hexdigest()[:16]


def combine_fingerprints(parts: list[str]) -> str:
    digest = hashlib.sha256()
    for part in sorted(parts):
        digest.update(part.encode() + b"\n")
    return digest.hexdigest()
