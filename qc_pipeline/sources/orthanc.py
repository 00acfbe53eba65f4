"""Orthanc's own REST API, beside its DICOMweb plugin: the change log and upload times.

``GET /changes?since=N&limit=M`` is a durable, ordered log (it survives restarts). A
``StableStudy`` event fires ``StableAge`` seconds after a study's last instance arrived, and again
each time instances are added: the events are de-duplicated here, and a study that grew has a
new content fingerprint, so it is judged again. ``LastUpdate`` of ``/studies/{id}`` (UTC, seconds)
is when Orthanc last received an instance of the study: the upload time for timeliness.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

CHANGES_PAGE: Final = 1000
"""Change-log entries asked for per request."""
STABLE_STUDY: Final = "StableStudy"
DICOMWEB_SUFFIX: Final = "/dicom-web"
_TIME_FORMAT: Final = "%Y%m%dT%H%M%S"


class RestGet(Protocol):
    def __call__(self, what: str, path: str, *, missing_ok: bool = False, post: str | None = None) -> Any: ...


def rest_root(dicomweb_url: str) -> str | None:
    """Orthanc's REST root for its DICOMweb root (``http://h:8042/dicom-web`` -> ``http://h:8042``);
    None when the URL does not end with the plugin's default root."""
    parts = urlsplit(dicomweb_url.rstrip("/"))
    if not parts.path.endswith(DICOMWEB_SUFFIX):
        return None
    path = parts.path[: -len(DICOMWEB_SUFFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def looks_like_orthanc(system: Any) -> bool:
    """Whether a ``GET /system`` answer is Orthanc's."""
    return isinstance(system, dict) and "ApiVersion" in system and "Version" in system and "DicomAet" in system


def parse_orthanc_time(value: object) -> dt.datetime | None:
    """Orthanc's ``YYYYMMDDTHHMMSS`` timestamps (UTC) as aware datetimes; None if absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class StudyChanges:
    """Studies that became stable (again) after a change sequence number."""

    study_ids: tuple[str, ...]
    """Orthanc ids, de-duplicated, in the order of their first event."""
    last_seq: int
    """The sequence number that covers every event read."""


class OrthancRest:
    """The few REST calls the DICOMweb source makes when the server is Orthanc.

    ``get`` performs one request relative to ``root`` and turns transport and HTTP failures into
    ``SourceError`` (the DICOMweb source's own error handling); with ``missing_ok`` a 404 gives None.
    """

    def __init__(self, root: str, get: RestGet) -> None:
        self.root = root.rstrip("/")
        self._get = get

    def last_change(self) -> int:
        """The newest change sequence number (0 on an empty server)."""
        return int(self._get("read the Orthanc change log", "/changes?last")["Last"])

    def stable_studies_since(self, since: int, *, max_studies: int) -> StudyChanges:
        """``StableStudy`` events after ``since``, at most ``max_studies`` distinct studies.

        When the limit stops the reading early, ``last_seq`` is the sequence number of the last
        event taken, so the next call continues exactly there.
        """
        if max_studies < 1:
            raise ValueError(f"max_studies must be at least 1, got {max_studies}")
        seen: dict[str, None] = {}
        position = since
        while True:
            page = self._get("read the Orthanc change log", f"/changes?since={position}&limit={CHANGES_PAGE}")
            changes = page.get("Changes") or []
            for change in changes:
                position = int(change["Seq"])
                if change.get("ChangeType") == STABLE_STUDY and change.get("ResourceType") == "Study":
                    seen.setdefault(str(change["ID"]), None)
                    if len(seen) >= max_studies:
                        return StudyChanges(tuple(seen), position)
            if page.get("Done", True) or not changes:
                # "Last" can be ahead of the last event returned (events of deleted resources).
                return StudyChanges(tuple(seen), max(position, int(page.get("Last", position))))

    def study_uid(self, orthanc_id: str) -> str | None:
        """The StudyInstanceUID of an Orthanc study id; None if the study was deleted since."""
        study = self._get(f"read study {orthanc_id}", f"/studies/{orthanc_id}", missing_ok=True)
        if not study:
            return None
        uid = (study.get("MainDicomTags") or {}).get("StudyInstanceUID")
        return str(uid) if uid else None

    def study_uids(self, orthanc_ids: tuple[str, ...]) -> list[str]:
        """StudyInstanceUIDs of Orthanc study ids, in order, skipping studies deleted since."""
        uids: dict[str, None] = {}
        for orthanc_id in orthanc_ids:
            uid = self.study_uid(orthanc_id)
            if uid is None:
                logger.info("study %s was deleted from Orthanc after its change event", orthanc_id)
                continue
            uids.setdefault(uid, None)
        return list(uids)

    def received_at(self, study_instance_uid: str) -> dt.datetime | None:
        """When Orthanc last received an instance of the study (``LastUpdate``, UTC)."""
        found = self._get(f"look up study {study_instance_uid}", "/tools/lookup", post=study_instance_uid)
        ids = [r["ID"] for r in found or [] if isinstance(r, dict) and r.get("Type") == "Study"]
        if not ids:
            return None
        study = self._get(f"read study {study_instance_uid}", f"/studies/{ids[0]}", missing_ok=True)
        return None if not study else parse_orthanc_time(study.get("LastUpdate"))


__all__ = [
    "CHANGES_PAGE",
    "OrthancRest",
    "StudyChanges",
    "looks_like_orthanc",
    "parse_orthanc_time",
    "rest_root",
]
