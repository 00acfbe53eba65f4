"""The regional imaging cloud as a source: QIDO-RS to list, WADO-RS metadata to read headers.

Credentials come from the environment — ``QC_DICOMWEB_USER`` and ``QC_DICOMWEB_PASSWORD`` (basic)
or ``QC_DICOMWEB_TOKEN`` (bearer) — never from results or logs; a URL carrying ``user:password@``
has them taken out before it is stored or shown. Requests have timeouts and are retried with
backoff on connection errors and 502/503/504. No gzip: ``Accept-Encoding: identity``.
Pixel data is not fetched here (headers only).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from qc_pipeline.domain import InstanceRef
from qc_pipeline.errors import SourceError
from qc_pipeline.io.dicom import PixelDataCheck, is_image, text
from qc_pipeline.sources.base import (
    LoadedInstance,
    LoadedStudy,
    ProblemKind,
    ReadProblem,
    StudyEntry,
    combine_fingerprints,
    patient_key,
)

logger = logging.getLogger(__name__)

USER_ENV: Final = "QC_DICOMWEB_USER"
PASSWORD_ENV: Final = "QC_DICOMWEB_PASSWORD"
TOKEN_ENV: Final = "QC_DICOMWEB_TOKEN"
PAGE_SIZE: Final = 500
TIMEOUT_S: Final = (5.0, 60.0)
"""(connect, read) timeouts in seconds."""

_TAG_STUDY_UID: Final = "0020000D"
_TAG_SERIES_UID: Final = "0020000E"
_TAG_SOP_UID: Final = "00080018"
_TAG_PATIENT_ID: Final = "00100020"
_TAG_STUDY_DATE: Final = "00080020"


def _first(obj: Mapping[str, Any], tag: str) -> str | None:
    element = obj.get(tag) or {}
    values = element.get("Value") or []
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):  # PN
        value = value.get("Alphabetic")
    return str(value).strip() or None if value is not None else None


def _strip_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)).rstrip("/")
    return clean, (parts.username, parts.password or "")


def _session(credentials: tuple[str, str] | None) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=3,
        connect=3,
        read=2,
        backoff_factor=0.5,
        status_forcelist=(429, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Accept-Encoding"] = "identity"
    token = os.environ.get(TOKEN_ENV)
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user is not None:
        session.auth = (user, password or "")
    elif credentials is not None:
        session.auth = credentials
    return session


class DicomWebSource:
    """Studies on a DICOMweb server (the regional imaging cloud; Orthanc in the tests)."""

    def __init__(self, url: str, *, search_filters: Mapping[str, str] | None = None) -> None:
        self._url, url_credentials = _strip_credentials(url)
        if url_credentials is not None:
            logger.warning("credentials in the DICOMweb URL are used but not stored; prefer %s/%s", USER_ENV, PASSWORD_ENV)
        self._client = DICOMwebClient(self._url, session=_session(url_credentials), timeout=TIMEOUT_S)
        # One retry policy, in the session (urllib3): dicomweb-client's own would retry every
        # failure, connection refused included, five times with exponential waits (~45 s).
        self._client.set_http_retry_params(retry=False)
        self._filters = dict(search_filters or {})

    @property
    def uri(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"DicomWebSource({self._url!r})"

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a DICOMweb request; turn transport and HTTP failures into one-line SourceErrors."""
        try:
            return func(*args, **kwargs)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise SourceError(
                    f"DICOMweb server {self._url} refused the credentials (HTTP {status}) while trying to {what}: "
                    f"check {USER_ENV}/{PASSWORD_ENV} or {TOKEN_ENV}"
                ) from None
            raise SourceError(f"DICOMweb server {self._url} answered HTTP {status} while trying to {what}") from None
        except requests.ConnectionError:
            raise SourceError(f"cannot reach DICOMweb server {self._url} while trying to {what}") from None
        except requests.Timeout:
            raise SourceError(f"DICOMweb server {self._url} timed out while trying to {what}") from None
        except requests.RequestException as exc:
            raise SourceError(f"DICOMweb request to {self._url} failed while trying to {what}: {type(exc).__name__}") from None

    def discover(self) -> Iterator[StudyEntry]:
        """QIDO-RS: every study (paged), then its instances for the content fingerprint."""
        offset = 0
        while True:
            page = self._call(
                "search for studies",
                self._client.search_for_studies,
                offset=offset,
                limit=PAGE_SIZE,
                fields=["PatientID", "StudyDate"],
                search_filters=self._filters or None,
            )
            for study in page:
                uid = _first(study, _TAG_STUDY_UID)
                if uid is None:
                    continue
                instances = self._call(
                    f"list the instances of study {uid}",
                    self._client.search_for_instances,
                    study_instance_uid=uid,
                    fields=["SeriesInstanceUID", "SOPInstanceUID"],
                    get_remaining=True,
                )
                sops = [s for s in (_first(i, _TAG_SOP_UID) for i in instances) if s]
                yield StudyEntry(
                    study_instance_uid=uid,
                    locations=tuple(sorted(sops)),
                    fingerprint=combine_fingerprints(sops),
                    patient_key=patient_key(_first(study, _TAG_PATIENT_ID)),
                    study_date=_first(study, _TAG_STUDY_DATE),
                )
            if len(page) < PAGE_SIZE:
                return
            offset += len(page)

    def load(self, entry: StudyEntry) -> LoadedStudy:
        """WADO-RS metadata of the whole study: headers only, no pixel data transferred."""
        study = LoadedStudy(entry=entry)
        metadata = self._call(
            f"read the metadata of study {entry.study_instance_uid}",
            self._client.retrieve_study_metadata,
            entry.study_instance_uid,
        )
        for obj in metadata:
            sop = _first(obj, _TAG_SOP_UID) or "?"
            location = f"{entry.study_instance_uid}/{_first(obj, _TAG_SERIES_UID) or '?'}/{sop}"
            has_pixels = "7FE00010" in obj
            try:
                ds = Dataset.from_json(obj, bulk_data_uri_handler=lambda *_: b"")
                for _ in ds:  # convert every element now, so a bad value surfaces here
                    pass
            except Exception as exc:  # malformed JSON metadata from the server
                study.problems.append(ReadProblem(location, ProblemKind.UNREADABLE, f"metadata cannot be parsed: {exc}"))
                continue
            sop_uid, series_uid = text(ds, "SOPInstanceUID"), text(ds, "SeriesInstanceUID")
            if sop_uid is None or series_uid is None:
                study.problems.append(ReadProblem(location, ProblemKind.MISSING_UID, "SOPInstanceUID or SeriesInstanceUID missing"))
                continue
            if "PixelData" in ds:
                del ds.PixelData  # headers only, as the folder source reads them
            # The server holds the pixel data whole or not at all; its size is checked when the
            # pixels are retrieved for the image-quality metrics.
            pixel = PixelDataCheck(present=has_pixels or is_image(ds, None))
            ref = InstanceRef(
                sop_instance_uid=sop_uid,
                sop_class_uid=text(ds, "SOPClassUID") or "",
                series_instance_uid=series_uid,
                location=location,
            )
            study.instances.append(LoadedInstance(ref=ref, dataset=ds, pixel_data=pixel, is_image=is_image(ds, pixel)))
        return study
