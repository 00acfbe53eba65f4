"""Deterministic UIDs of the structured reports (SR) the pipeline writes back to the source.

Every UID is a ``2.25`` UID (PS3.5 B.2) made of a name-based UUID (version 5, in the pipeline's own
namespace) of the study's StudyInstanceUID, so that any process, on any day, finds the same ones
(``pydicom.uid.generate_uid(prefix=None)`` would ignore its entropy sources and draw a random one):

- the SR series of a study is always the same series: a re-judgement, or a person's decision,
  adds a new instance to it, never a new series;
- version *n* of the report is InstanceNumber *n*, and its SOPInstanceUID depends only on the
  study and *n*: sending the same version twice stores one object, not two;
- the source recognises the SR series as ours (:func:`is_own_series`) and leaves it out of what it
  lists and reads, so a report never becomes an upload to judge nor changes the study's content
  fingerprint.
"""

from __future__ import annotations

import uuid
from typing import Final

SR_SERIES_NUMBER: Final = 9901
"""SeriesNumber of the SR series (high, out of the way of the modality's own series)."""
NAMESPACE: Final = uuid.UUID("3b7e6f0a-9c41-5d2e-8f13-6a0d4c2b7e95")
"""The pipeline's UUID namespace for SR UIDs (fixed: changing it would orphan every SR series)."""


def _uid(*parts: str) -> str:
    return f"2.25.{uuid.uuid5(NAMESPACE, chr(0).join(parts)).int}"


def sr_series_uid(study_instance_uid: str) -> str:
    """The SeriesInstanceUID of the study's quality-control SR series."""
    return _uid("sr-series", study_instance_uid)


def sr_instance_uid(study_instance_uid: str, version: int) -> str:
    """The SOPInstanceUID of version ``version`` (1, 2, ...) of the study's SR."""
    if version < 1:
        raise ValueError(f"an SR version starts at 1; got {version}")
    return _uid("sr-instance", study_instance_uid, str(version))


def is_own_series(study_instance_uid: str, series_instance_uid: str | None) -> bool:
    """True when the series is the pipeline's own SR series of this study."""
    return series_instance_uid is not None and series_instance_uid == sr_series_uid(study_instance_uid)


DEVICE_OBSERVER_UID: Final = _uid("device-observer", "qc-pipeline")
"""The Device Observer UID of the pipeline in its reports (the same on every site and version)."""
