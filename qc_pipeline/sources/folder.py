"""The folder source, the embedded default: DICOM files anywhere below a directory.

Read-only: files are opened for reading and never modified, moved or deleted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pydicom

from qc_pipeline.domain import InstanceRef
from qc_pipeline.errors import SourceError
from qc_pipeline.io.dicom import is_image, open_bounded, read_header, study_keys_from_head, text
from qc_pipeline.io.readahead import read_ahead
from qc_pipeline.sources.base import (
    LoadedInstance,
    LoadedStudy,
    ProblemKind,
    ReadProblem,
    StudyEntry,
    combine_fingerprints,
    patient_key,
    uid_for_unreadable,
)

logger = logging.getLogger(__name__)

FINGERPRINT_HEAD_BYTES = 64 * 1024
"""A file's fingerprint hashes its size and first 64 KiB: every header, without reading pixels."""


FILE_TIMES_ENV = "QC_FILE_TIMES_ARE_UPLOAD_TIMES"
"""Set to 1 when the files' modification times are the times they were uploaded (e.g. a folder the
upload service writes into and nobody copies): only then does the folder give an upload time."""


class FolderSource:
    """Studies stored as files below ``root`` (any depth, any file names).

    The upload time is unknown: a file's modification time is when it was last written, and a
    plain ``cp -r`` (or an unzip, a backup restore) makes a study uploaded on time look days
    late. Only when the operator says the file times are upload times
    (``file_times_are_upload_times``, default ``$QC_FILE_TIMES_ARE_UPLOAD_TIMES``) is the
    latest file time taken as the time the study was received.
    """

    def __init__(self, root: Path | str, *, file_times_are_upload_times: bool | None = None) -> None:
        if file_times_are_upload_times is None:
            file_times_are_upload_times = os.environ.get(FILE_TIMES_ENV, "").strip().lower() in {"1", "true", "yes"}
        self.file_times_are_upload_times = file_times_are_upload_times
        self.root = Path(root).expanduser().resolve()
        self.skipped: list[str] = []
        """Files of the last scan that are not DICOM (relative paths): listed, not judged."""
        if not self.root.is_dir():
            raise SourceError(f"source folder {self.root} does not exist or is not a folder")

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r})"

    def check(self) -> None:
        try:
            with os.scandir(self.root) as entries:
                next(entries, None)
        except OSError as exc:  # gone since it was opened, no permission, a dead network mount
            reason = exc.strerror or type(exc).__name__
            raise SourceError(f"source folder {self.root} cannot be read: {reason}") from None

    def _files(self) -> Iterator[Path]:
        """Every file that may be DICOM, at any depth. Directory links are followed (NAS and PACS
        exports link study folders), each real folder once (no loop). Files that are plainly not
        DICOM (a DICOMDIR index, text, pictures, archives...: see :func:`_not_dicom`) are listed
        in ``self.skipped`` and logged once, never judged as failed studies."""

        def on_error(exc: OSError) -> None:
            logger.warning("cannot list %s: %s", exc.filename, exc.strerror)

        self.skipped = []
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=on_error, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen:  # reached again through a link: already read
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                if _not_dicom(path):
                    self.skipped.append(self._relative(path))
                    continue
                yield path
        if self.skipped:
            logger.warning("skipped %d files that are not DICOM: %s", len(self.skipped), ", ".join(self.skipped))

    def files(self) -> Iterator[Path]:
        """The files a run would read (``skipped`` lists the others once the scan is done)."""
        return self._files()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def discover(self) -> Iterator[StudyEntry]:
        """Group every file by StudyInstanceUID, reading only the first tags of each header.

        A file whose StudyInstanceUID cannot be read is a study of its own (with a stable
        synthetic UID) so that it gets a verdict instead of vanishing.
        """
        groups: dict[str, list[tuple[str, str]]] = {}
        identity: dict[str, tuple[str | None, str | None]] = {}
        for path in read_ahead(self._files(), FINGERPRINT_HEAD_BYTES):
            location = self._relative(path)
            try:
                with path.open("rb") as fp:
                    head = fp.read(FINGERPRINT_HEAD_BYTES)
                size = path.stat().st_size
            except OSError as exc:
                logger.warning("cannot read %s: %s", location, exc.strerror)
                head, size = b"", -1
            file_print = f"{location}|{size}|{hashlib.sha256(head).hexdigest()}"
            study_uid, patient_id, study_date = _keys(path, head) if size > 0 else (None, None, None)
            if study_uid is None:
                yield StudyEntry(
                    study_instance_uid=uid_for_unreadable(location),
                    locations=(location,),
                    fingerprint=combine_fingerprints([file_print]),
                    uid_readable=False,
                )
                continue
            groups.setdefault(study_uid, []).append((location, file_print))
            if identity.get(study_uid, (None, None))[0] is None:
                identity[study_uid] = (patient_key(patient_id), study_date)
        for study_uid in sorted(groups):
            members = groups[study_uid]
            key, day = identity.get(study_uid, (None, None))
            yield StudyEntry(
                study_instance_uid=study_uid,
                locations=tuple(loc for loc, _ in members),
                fingerprint=combine_fingerprints([fp for _, fp in members]),
                patient_key=key,
                study_date=day,
            )

    def load(self, entry: StudyEntry) -> LoadedStudy:
        study = LoadedStudy(entry=entry)
        latest_mtime: float | None = None
        for location in entry.locations:
            path = self.root / location
            result = read_header(path)
            try:
                mtime = path.stat().st_mtime
                latest_mtime = mtime if latest_mtime is None else max(latest_mtime, mtime)
            except OSError:
                pass
            if result.dataset is None:
                study.problems.append(ReadProblem(location, ProblemKind.UNREADABLE, result.error or "unreadable"))
                continue
            ds = result.dataset
            sop_uid = text(ds, "SOPInstanceUID")
            series_uid = text(ds, "SeriesInstanceUID")
            if sop_uid is None or series_uid is None:
                missing = " and ".join(
                    k for k, v in (("SOPInstanceUID", sop_uid), ("SeriesInstanceUID", series_uid)) if v is None
                )
                study.problems.append(ReadProblem(location, ProblemKind.MISSING_UID, f"{missing} missing"))
                continue
            ref = InstanceRef(
                sop_instance_uid=sop_uid,
                sop_class_uid=text(ds, "SOPClassUID") or "",
                series_instance_uid=series_uid,
                location=location,
                size_bytes=result.size_bytes,
            )
            study.instances.append(
                LoadedInstance(
                    ref=ref, dataset=ds, pixel_data=result.pixel_data, is_image=is_image(ds, result.pixel_data)
                )
            )
        if latest_mtime is not None and self.file_times_are_upload_times:
            study.received_at = dt.datetime.fromtimestamp(latest_mtime, tz=dt.UTC)
        return study

    pixel_files_are_loaded_files = True
    """``pixel_files`` gives the files ``load`` read the headers from: the checks decode them with
    those headers instead of parsing each file again."""

    def pixel_files(self, instances: Sequence[InstanceRef]) -> AbstractContextManager[list[Path]]:
        """The instances' own files: the folder already holds them (nothing is copied)."""
        return nullcontext([self.root / inst.location for inst in instances])


NOT_DICOM_SUFFIXES = frozenset(
    {
        ".txt",
        ".csv",
        ".tsv",
        ".json",
        ".xml",
        ".html",
        ".htm",
        ".pdf",
        ".doc",
        ".docx",
        ".xls",
        ".xlsx",
        ".log",
        ".ini",
        ".jpg",
        ".jpeg",
        ".png",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".nii",
        ".gz",
        ".nrrd",
        ".mha",
        ".mhd",
        ".zip",
        ".rar",
        ".7z",
        ".tar",
        ".exe",
        ".dll",
        ".md",
        ".db",
        ".sqlite",
    }
)
"""Suffixes of files that are not DICOM instances (a file with one of them is still read when it
carries the DICOM preamble: a misleading name never hides an image)."""


def _not_dicom(path: Path) -> bool:
    """A DICOMDIR (a media index, no image) or a file with a non-DICOM suffix and no ``DICM`` mark at
    byte 128. Anything else, readable or not, is judged (a damaged image must fail, not vanish)."""
    if path.name.upper() != "DICOMDIR" and path.suffix.lower() not in NOT_DICOM_SUFFIXES:
        return False
    try:
        with path.open("rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return head[128:132] != b"DICM" or path.name.upper() == "DICOMDIR"


def _keys(path: Path, head: bytes) -> tuple[str | None, str | None, str | None]:
    """``(StudyInstanceUID, PatientID, StudyDate)`` from the file's first bytes where they are plain
    to read there, else by pydicom from the file; each None when it cannot be read."""
    keys = study_keys_from_head(head)
    if keys is None:
        return _read_keys(path)
    return _cleaned_keys(keys.get)


def _read_keys(path: Path) -> tuple[str | None, str | None, str | None]:
    """``(StudyInstanceUID, PatientID, StudyDate)``, each None when it cannot be read."""
    try:
        with open_bounded(path) as fp:
            ds = pydicom.dcmread(
                fp, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "PatientID", "StudyDate"], force=True
            )
    except Exception:  # any parse failure means: no readable UID
        return None, None, None

    def value(keyword: str) -> object:
        try:
            return ds.get(keyword)
        except Exception:
            return None

    return _cleaned_keys(value)


def _cleaned_keys(value: Callable[[str], object]) -> tuple[str | None, str | None, str | None]:
    def clean(keyword: str) -> str | None:
        found = value(keyword)
        if not isinstance(found, str):
            return None
        found = found.strip().rstrip("\x00").strip()
        return found or None

    uid = clean("StudyInstanceUID")
    if uid is None or len(uid) > 64:
        return None, None, None
    return uid, clean("PatientID"), clean("StudyDate")
