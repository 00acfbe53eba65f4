"""Study sources: the folder (embedded default) and, later, the DICOMweb imaging cloud."""

from __future__ import annotations

from pathlib import Path

from qc_pipeline.sources.base import LoadedStudy, StudyEntry, StudySource
from qc_pipeline.sources.folder import FolderSource

__all__ = ["FolderSource", "LoadedStudy", "StudyEntry", "StudySource", "open_source"]


def open_source(spec: str | Path) -> StudySource:
    """The source named by ``spec``: a DICOMweb URL (``http(s)://host/dicom-web``) or a folder
    path (or ``file://`` URI)."""
    text = str(spec)
    if text.startswith(("http://", "https://")):
        from qc_pipeline.sources.dicomweb import DicomWebSource

        return DicomWebSource(text)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        text = unquote(urlparse(text).path)
    return FolderSource(Path(text))
