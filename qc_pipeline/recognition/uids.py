"""Deterministic UIDs of the structured reports (SR) the pipeline writes back to the source.

Every UID is a ``2.25`` UID derived from the study's StudyInstanceUID (``pydicom.uid.generate_uid``
with fixed entropy sources), so that any process, on any day, finds the same ones:

- the SR series of a study is always the same series: a re-judgement, or a person's decision,
  adds a new instance to it, never a new series;
- version *n* of the report is InstanceNumber *n*, and its SOPInstanceUID depends only on the
  study and *n*: sending the same version twice stores one object, not two;
- the source recognises the SR series as ours (:func:`is_own_series`) and leaves it out of what it
  lists and reads, so a report never becomes an upload to judge nor changes the study's content
  fingerprint.
"""

from __future__ import annotations

from typing import Final

from pydicom.uid import generate_uid

SR_SERIES_NUMBER: Final = 9901
"""SeriesNumber of the SR series (high, out of the way of the modality's own series)."""
_SERIES_SALT: Final = "qc-pipeline quality-control SR series"
_INSTANCE_SALT: Final = "qc-pipeline quality-control SR instance"


def sr_series_uid(study_instance_uid: str) -> str:
    """The SeriesInstanceUID of the study's quality-control SR series."""
    return generate_uid(prefix=None, entropy_srcs=[_SERIES_SALT, study_instance_uid])


def sr_instance_uid(study_instance_uid: str, version: int) -> str:
    """The SOPInstanceUID of version ``version`` (1, 2, ...) of the study's SR."""
    if version < 1:
        raise ValueError(f"an SR version starts at 1; got {version}")
    return generate_uid(prefix=None, entropy_srcs=[_INSTANCE_SALT, study_instance_uid, str(version)])


def is_own_series(study_instance_uid: str, series_instance_uid: str | None) -> bool:
    """True when the series is the pipeline's own SR series of this study."""
    return series_instance_uid is not None and series_instance_uid == sr_series_uid(study_instance_uid)
