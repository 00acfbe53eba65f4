"""The regional imaging cloud as a source: QIDO-RS to list, WADO-RS metadata to read headers.

Credentials come from a Prefect Secret block named by ``QC_DICOMWEB_SECRET_BLOCK`` (or the
``secret_block`` argument), else from the environment — ``QC_DICOMWEB_USER`` and
``QC_DICOMWEB_PASSWORD`` (basic) or ``QC_DICOMWEB_TOKEN`` (bearer) — never from results or logs;
a URL carrying ``user:password@`` has them taken out before it is stored or shown. Requests have
timeouts and are retried with backoff on connection errors and 502/503/504. No gzip:
``Accept-Encoding: identity``. Headers come from WADO-RS metadata; pixel data is fetched only by ``pixel_files``, per series.

Incremental runs (``list_changes``): when the server is Orthanc (its REST API answers beside
``/dicom-web``), its change log gives the studies that became stable since the cursor, and
``LastUpdate`` the upload time; on other servers a QIDO-RS StudyDate window with an overlap is
listed, and every study once a day (late uploads of old exams). ``QC_DICOMWEB_ORTHANC``: ``auto``
(default), ``off``, or the REST root URL when it is not the parent of ``/dicom-web``.

Write-back (``store_instances``): the pipeline's quality-control SR goes back to the study by
STOW-RS, to the source URL or to ``QC_DICOMWEB_STOW_URL`` when the server takes stores elsewhere.
The SR series (``recognition.uids.sr_series_uid``) is the pipeline's own: listing and reading leave
it out, so a report is never judged as an upload nor changes the study's content fingerprint.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from qc_pipeline.domain import InstanceRef
from qc_pipeline.errors import SourceError
from qc_pipeline.io.dicom import PixelDataCheck, is_image, text
from qc_pipeline.io.frames import object_with_frames, subset_header
from qc_pipeline.recognition.uids import is_own_series
from qc_pipeline.sources.base import (
    LoadedInstance,
    LoadedStudy,
    ProblemKind,
    ReadProblem,
    StudyEntry,
    combine_fingerprints,
    patient_key,
)
from qc_pipeline.sources.incremental import Listing, ListingMode
from qc_pipeline.sources.orthanc import OrthancRest, looks_like_orthanc, rest_root

logger = logging.getLogger(__name__)

USER_ENV: Final = "QC_DICOMWEB_USER"
PASSWORD_ENV: Final = "QC_DICOMWEB_PASSWORD"
TOKEN_ENV: Final = "QC_DICOMWEB_TOKEN"
SECRET_BLOCK_ENV: Final = "QC_DICOMWEB_SECRET_BLOCK"
ORTHANC_ENV: Final = "QC_DICOMWEB_ORTHANC"
STOW_URL_ENV: Final = "QC_DICOMWEB_STOW_URL"
"""Where STOW-RS stores go, when not to the source URL (same credentials)."""
SECRET_TTL_S: Final = 300.0
FETCH_ONE_BY_ONE_MAX: Final = 64
"""Instances of a series fetched one request each, at most; more are streamed with the series. A
CT's metrics and AI sample about 38 slices whatever its length, so a 300-slice series costs 38
requests and an eighth of its bytes; an MR series, read whole, comes in one stream when long."""
"""How long a Secret block's value is reused before it is read again (rotation)."""
CURSOR_ORTHANC: Final = "orthanc-changes"
"""Cursor kind: the last Orthanc change sequence number covered."""
CURSOR_QIDO: Final = "qido-study-date"
"""Cursor kind: JSON ``{"listed_on": date, "full_listing_at": datetime}`` of the QIDO window."""
WINDOW_OVERLAP_DAYS: Final = 7
"""A QIDO window run lists StudyDate >= (last listing date - this many days)."""
FULL_LISTING_EVERY: Final = dt.timedelta(hours=24)
"""Without a change feed, every study is listed this often (catches late uploads of old exams)."""
MAX_CHANGED_STUDIES: Final = 2000
"""At most this many changed studies per run (the rest in the next run)."""
PAGE_SIZE: Final = 500
TIMEOUT_S: Final = (5.0, 60.0)
"""(connect, read) timeouts in seconds."""

FRAMES_ACCEPT: Final = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
"""Frames as stored (PS3.18 §8.7.3.5.2: ``transfer-syntax=*`` asks for no transcoding); the server
names each part's transfer syntax in its Content-Type (``image/jp2; transfer-syntax=...``)."""


def multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a ``multipart/related`` message (RFC 2387): each part's headers (lower-case
    names) and content. A message without a boundary is one part with no headers (some servers
    send a single frame so). dicomweb-client's own parser keeps only the contents, and the frames'
    transfer syntax is in the part headers."""
    boundary = None
    for item in content_type.split(";")[1:]:
        name, _, value = item.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip().strip('"').encode("latin-1")
    if not boundary:
        return [({}, body)]
    parts = []
    for piece in (b"\r\n" + body).split(b"\r\n--" + boundary)[1:]:
        if piece.startswith(b"--"):
            break  # the closing delimiter
        head, _, content = piece.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n"):
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


def transfer_syntax_of(content_type: str) -> str | None:
    """The ``transfer-syntax`` parameter of a media type, wherever it stands (a part's own type, or
    inside the quoted ``type`` of a multipart message)."""
    for item in content_type.replace('"', ";").split(";"):
        name, _, value = item.strip().partition("=")
        if name.lower() == "transfer-syntax" and value.strip() and value.strip() != "*":
            return value.strip()
    return None


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


def _bulk_data_emptied(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A WADO-RS metadata object with each bulk data reference (``BulkDataURI``: the pixel data,
    large binary values) replaced by an empty inline value, at any depth of its sequences.

    What ``Dataset.from_json`` then makes is what it makes with a bulk data handler that returns
    ``b""`` (the headers only, as a folder's are read), without its cost: pydicom inspects the
    handler's signature for every element of every instance, a third of the time it takes to
    build the 300 datasets of a CT from their metadata.
    """
    out: dict[str, Any] = {}
    for tag, element in obj.items():
        if isinstance(element, Mapping):
            if "BulkDataURI" in element and "vr" in element:
                element = {"vr": element["vr"], "InlineBinary": ""}
            elif element.get("vr") == "SQ" and isinstance(element.get("Value"), list):
                items = [_bulk_data_emptied(item) if isinstance(item, Mapping) else item for item in element["Value"]]
                element = {**element, "Value": items}
        out[tag] = element
    return out


def _strip_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)).rstrip("/")
    return clean, (parts.username, parts.password or "")


_secret_cache: dict[str, tuple[float, object]] = {}
_secret_lock = threading.Lock()
_orthanc_roots: dict[str, str | None] = {}
"""Per DICOMweb URL: Orthanc's REST root, or None when the server is not Orthanc (per process)."""


def _secret_value(block: str) -> object:
    """The value of the Prefect Secret block ``block`` (cached for ``SECRET_TTL_S``)."""
    with _secret_lock:
        cached = _secret_cache.get(block)
        if cached is not None and time.monotonic() - cached[0] < SECRET_TTL_S:
            return cached[1]
    try:
        from prefect.blocks.system import Secret

        # Secret.load is typed as the block or a coroutine (a coroutine only inside an event loop)
        value = cast("Secret[Any]", Secret.load(block)).get()
    except ValueError as exc:  # no block of that name (the message names the block, not its value)
        reason = " ".join(str(exc).split())[:200]
        raise SourceError(
            f"cannot load the DICOMweb credentials from Prefect Secret block {block!r}: {reason}"
        ) from None
    except Exception as exc:  # the Prefect API is unreachable, or the block is not a Secret
        raise SourceError(
            f"cannot load the DICOMweb credentials from Prefect Secret block {block!r} ({type(exc).__name__}): "
            "is the Prefect API reachable and the block a Secret?"
        ) from None
    with _secret_lock:
        _secret_cache[block] = (time.monotonic(), value)
    return value


def _auth_from_secret(block: str) -> tuple[str, str] | str:
    """``(user, password)`` for basic auth, or a bearer token, from a Secret block holding a token
    (text), ``{"token": ...}`` or ``{"username": ..., "password": ...}``."""
    value = _secret_value(block)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        if value.get("token"):
            return str(value["token"])
        user = value.get("username", value.get("user"))
        if user:
            return str(user), str(value.get("password") or "")
        keys = ", ".join(sorted(map(str, value))) or "none"
    else:
        keys = type(value).__name__
    raise SourceError(
        f'Prefect Secret block {block!r} must hold a token (text), {{"token": ...}} or '
        f'{{"username": ..., "password": ...}}; found {keys}'
    )


def _session(credentials: tuple[str, str] | None, secret_block: str | None = None) -> requests.Session:
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
    if secret_block:
        auth = _auth_from_secret(secret_block)
        if isinstance(auth, str):
            session.headers["Authorization"] = f"Bearer {auth}"
        else:
            session.auth = auth
        logger.debug("DICOMweb credentials from Prefect Secret block %r", secret_block)
    elif token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user is not None:
        session.auth = (user, password or "")
    elif credentials is not None:
        session.auth = credentials
    return session


def _parse_window(position: str) -> tuple[dt.date, dt.datetime] | None:
    """``(listed_on, full_listing_at)`` of a QIDO window cursor; None if it cannot be read."""
    try:
        state = json.loads(position)
        full_at = dt.datetime.fromisoformat(state["full_listing_at"])
        if full_at.tzinfo is None:
            return None
        return dt.date.fromisoformat(state["listed_on"]), full_at
    except (ValueError, KeyError, TypeError):
        return None


class DicomWebSource:
    """Studies on a DICOMweb server (the regional imaging cloud; Orthanc in the tests)."""

    fetches_frames = True
    """:meth:`pixel_files` retrieves single frames of a multi-frame instance when asked."""

    def __init__(
        self,
        url: str,
        *,
        search_filters: Mapping[str, str] | None = None,
        secret_block: str | None = None,
        orthanc: str | None = None,
    ) -> None:
        """``secret_block``: a Prefect Secret block with the credentials (default
        ``$QC_DICOMWEB_SECRET_BLOCK``). ``orthanc``: ``auto`` (default ``$QC_DICOMWEB_ORTHANC``
        or ``auto``: use Orthanc's REST API when the server is Orthanc), ``off``, or its REST root."""
        self._url, url_credentials = _strip_credentials(url)
        if url_credentials is not None:
            logger.warning(
                "credentials in the DICOMweb URL are used but not stored; prefer %s/%s", USER_ENV, PASSWORD_ENV
            )
        self._secret_block = secret_block or os.environ.get(SECRET_BLOCK_ENV) or None
        self._orthanc_setting = (orthanc or os.environ.get(ORTHANC_ENV) or "auto").strip()
        self._session = _session(url_credentials, self._secret_block)
        self._client = DICOMwebClient(self._url, session=self._session, timeout=TIMEOUT_S)
        # One retry policy, in the session (urllib3): dicomweb-client's own would retry every
        # failure, connection refused included, five times with exponential waits (~45 s).
        self._client.set_http_retry_params(retry=False)
        self._filters = dict(search_filters or {})
        self._stow_url = _strip_credentials(os.environ.get(STOW_URL_ENV) or self._url)[0]
        self._fetched: dict[str, int] = {}
        self._fetched_lock = threading.Lock()

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
                where = (
                    f"Prefect Secret block {self._secret_block!r}"
                    if self._secret_block
                    else f"{USER_ENV}/{PASSWORD_ENV} or {TOKEN_ENV}"
                )
                raise SourceError(
                    f"DICOMweb server {self._url} refused the credentials (HTTP {status}) while trying to {what}: "
                    f"check {where}"
                ) from None
            raise SourceError(f"DICOMweb server {self._url} answered HTTP {status} while trying to {what}") from None
        except requests.ConnectionError:
            raise SourceError(f"cannot reach DICOMweb server {self._url} while trying to {what}") from None
        except requests.Timeout:
            raise SourceError(f"DICOMweb server {self._url} timed out while trying to {what}") from None
        except requests.RequestException as exc:
            raise SourceError(
                f"DICOMweb request to {self._url} failed while trying to {what}: {type(exc).__name__}"
            ) from None

    def check(self) -> None:
        """One QIDO-RS search for a single study: the server answers and accepts the credentials."""
        self._call(
            "check the connection",
            self._client.search_for_studies,
            limit=1,
            fields=["StudyInstanceUID"],
            search_filters=dict(self._filters) or None,
        )

    def discover(self) -> Iterator[StudyEntry]:
        """QIDO-RS: every study (paged), then its instances for the content fingerprint."""
        return self._search(self._filters)

    def _search(self, filters: Mapping[str, str]) -> Iterator[StudyEntry]:
        offset = 0
        while True:
            page = self._call(
                "search for studies",
                self._client.search_for_studies,
                offset=offset,
                limit=PAGE_SIZE,
                fields=["PatientID", "StudyDate"],
                search_filters=dict(filters) or None,
            )
            for study in page:
                entry = self._entry(study)
                if entry is not None:
                    yield entry
            if len(page) < PAGE_SIZE:
                return
            offset += len(page)

    def _entry(self, study: Mapping[str, Any]) -> StudyEntry | None:
        """A study of a QIDO-RS answer, with its instances listed for the content fingerprint."""
        uid = _first(study, _TAG_STUDY_UID)
        if uid is None:
            return None
        instances = self._call(
            f"list the instances of study {uid}",
            self._client.search_for_instances,
            study_instance_uid=uid,
            fields=["SeriesInstanceUID", "SOPInstanceUID"],
            get_remaining=True,
        )
        theirs = [i for i in instances if not is_own_series(uid, _first(i, _TAG_SERIES_UID))]
        if instances and not theirs:  # only our own report is left of the study: nothing to judge
            return None
        sops = [s for s in (_first(i, _TAG_SOP_UID) for i in theirs) if s]
        return StudyEntry(
            study_instance_uid=uid,
            locations=tuple(sorted(sops)),
            fingerprint=combine_fingerprints(sops),
            patient_key=patient_key(_first(study, _TAG_PATIENT_ID)),
            study_date=_first(study, _TAG_STUDY_DATE),
        )

    def entry_for(self, study_instance_uid: str) -> StudyEntry | None:
        """The study with this UID as ``discover`` would list it; None if the server no longer has it."""
        found = self._call(
            f"search for study {study_instance_uid}",
            self._client.search_for_studies,
            fields=["PatientID", "StudyDate"],
            search_filters={"StudyInstanceUID": study_instance_uid},
        )
        for study in found:
            if _first(study, _TAG_STUDY_UID) == study_instance_uid:
                entry = self._entry(study)
                return entry if entry is not None and entry.locations else None
        return None

    # -- incremental listing ----------------------------------------------------------------

    def _rest(self, what: str, path: str, *, missing_ok: bool = False, post: str | None = None) -> Any:
        """One request to Orthanc's REST API (same session, credentials, timeouts and errors)."""
        root = self._orthanc_root()
        if root is None:  # pragma: no cover - only called through an OrthancRest
            raise SourceError(f"{self._url} is not an Orthanc server")

        def request() -> Any:
            url = f"{root}{path}"
            if post is None:
                response = self._session.get(url, timeout=TIMEOUT_S)
            else:
                response = self._session.post(url, data=post.encode(), timeout=TIMEOUT_S)
            if missing_ok and response.status_code == 404:
                return None
            response.raise_for_status()
            return response.json()

        return self._call(what, request)

    def _orthanc(self) -> OrthancRest | None:
        """Orthanc's REST API beside this DICOMweb root, or None (not Orthanc, or turned off)."""
        root = self._orthanc_root()
        return None if root is None else OrthancRest(root, self._rest)

    def _orthanc_root(self) -> str | None:
        setting = self._orthanc_setting
        if setting.lower() in ("off", "no", "false", "0"):
            return None
        if setting.lower() not in ("auto", ""):
            return setting.rstrip("/")
        if self._url not in _orthanc_roots:
            root = rest_root(self._url)
            found = None
            if root is not None:

                def probe() -> requests.Response:
                    return self._session.get(f"{root}/system", timeout=TIMEOUT_S)

                what = "ask whether the server is Orthanc"
                response = self._call(what, probe)
                if response.status_code in (401, 403):
                    return None  # not decided, not cached: QIDO-RS will say whether the credentials are wrong
                if response.status_code not in (200, 404):
                    raise SourceError(
                        f"DICOMweb server {self._url} answered HTTP {response.status_code} while trying to {what}"
                    )
                try:
                    found = root if response.status_code == 200 and looks_like_orthanc(response.json()) else None
                except ValueError:
                    found = None
            _orthanc_roots[self._url] = found
            logger.info("DICOMweb server %s: %s", self._url, "Orthanc, change log used" if found else "not Orthanc")
        return _orthanc_roots[self._url]

    def list_changes(self, cursor_kind: str | None, position: str | None, *, now: dt.datetime | None = None) -> Listing:
        """The studies new or changed since the cursor ``position`` (see the module docstring)."""
        rest = self._orthanc()
        if rest is not None:
            return self._orthanc_changes(rest, position if cursor_kind == CURSOR_ORTHANC else None)
        return self._qido_window(position if cursor_kind == CURSOR_QIDO else None, now or dt.datetime.now(dt.UTC))

    def _orthanc_changes(self, rest: OrthancRest, position: str | None) -> Listing:
        last = rest.last_change()
        since = int(position) if position is not None and position.isdigit() else None
        if since is not None and since > last:
            logger.warning(
                "Orthanc at %s has fewer changes (%d) than the cursor (%d): a new database? listing every study",
                self._url,
                last,
                since,
            )
            since = None
        if since is None:  # position taken before listing: what arrives meanwhile is listed again next time
            return Listing(tuple(self.discover()), CURSOR_ORTHANC, str(last), ListingMode.FULL)
        changes = rest.stable_studies_since(since, max_studies=MAX_CHANGED_STUDIES)
        entries = [e for e in (self.entry_for(uid) for uid in rest.study_uids(changes.study_ids)) if e is not None]
        return Listing(tuple(entries), CURSOR_ORTHANC, str(changes.last_seq), ListingMode.CHANGES)

    def _qido_window(self, position: str | None, now: dt.datetime) -> Listing:
        today = now.astimezone(dt.UTC).date()
        window = _parse_window(position) if position is not None else None
        if window is None and position is not None:
            logger.warning("unreadable QIDO cursor %r for %s: listing every study", position, self._url)
        if window is None or now - window[1] >= FULL_LISTING_EVERY:
            new = {"listed_on": today.isoformat(), "full_listing_at": now.astimezone(dt.UTC).isoformat()}
            return Listing(tuple(self.discover()), CURSOR_QIDO, json.dumps(new), ListingMode.FULL)
        listed_on, full_at = window
        since = min(listed_on, today) - dt.timedelta(days=WINDOW_OVERLAP_DAYS)
        filters = {**self._filters, "StudyDate": f"{since:%Y%m%d}-"}
        new = {"listed_on": today.isoformat(), "full_listing_at": full_at.isoformat()}
        return Listing(tuple(self._search(filters)), CURSOR_QIDO, json.dumps(new), ListingMode.WINDOW)

    def load(self, entry: StudyEntry) -> LoadedStudy:
        """WADO-RS metadata of the whole study: headers only, no pixel data transferred."""
        study = LoadedStudy(entry=entry)
        metadata = self._call(
            f"read the metadata of study {entry.study_instance_uid}",
            self._client.retrieve_study_metadata,
            entry.study_instance_uid,
        )
        for obj in metadata:
            if is_own_series(entry.study_instance_uid, _first(obj, _TAG_SERIES_UID)):
                continue  # the pipeline's own SR: not part of what is judged
            sop = _first(obj, _TAG_SOP_UID) or "?"
            location = f"{entry.study_instance_uid}/{_first(obj, _TAG_SERIES_UID) or '?'}/{sop}"
            has_pixels = "7FE00010" in obj
            try:
                ds = Dataset.from_json(_bulk_data_emptied(obj))
                for _ in ds:  # convert every element now, so a bad value surfaces here
                    pass
            except Exception as exc:  # malformed JSON metadata from the server
                study.problems.append(
                    ReadProblem(location, ProblemKind.UNREADABLE, f"metadata cannot be parsed: {exc}")
                )
                continue
            sop_uid, series_uid = text(ds, "SOPInstanceUID"), text(ds, "SeriesInstanceUID")
            if sop_uid is None or series_uid is None:
                study.problems.append(
                    ReadProblem(location, ProblemKind.MISSING_UID, "SOPInstanceUID or SeriesInstanceUID missing")
                )
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
        rest = self._orthanc()
        if rest is not None:  # when Orthanc received the study's last instance (upload timeliness)
            study.received_at = rest.received_at(entry.study_instance_uid)
        else:  # no upload time on this server: it was received when first seen, or earlier
            study.received_at = dt.datetime.now(dt.UTC)
            study.received_at_is_upper_bound = True
        return study

    @contextlib.contextmanager
    def pixel_files(
        self,
        instances: Sequence[InstanceRef],
        frames: Mapping[str, tuple[Dataset, tuple[int, ...]]] | None = None,
    ) -> Iterator[list[Path]]:
        """WADO-RS: fetch the instances (of one series) as stored, into a temporary folder.

        The stored transfer syntax is asked for (``transfer-syntax=*``: no transcoding on the
        server). Up to :data:`FETCH_ONE_BY_ONE_MAX` instances are fetched one by one (the CT
        metrics and the AI ask for a sample of a series: the rest never crosses the network);
        more through the series' multipart stream, keeping only the instances asked for. The bytes
        received count towards the study's :meth:`take_fetched_bytes`. The files are deleted when
        the context ends.

        ``frames`` (SOPInstanceUID -> the instance's loaded header, 0-based frames): of these
        multi-frame instances only the frames named are retrieved (WADO-RS frame retrieval, stored
        transfer syntax), and each file holds only them (:mod:`qc_pipeline.io.frames`).
        """
        if not instances:
            yield []
            return
        parts = [inst.location.split("/") for inst in instances]
        study_uid, series_uid = parts[0][0], parts[0][1]
        parted = dict(frames or {})
        wanted = {inst.sop_instance_uid for inst in instances if inst.sop_instance_uid not in parted}
        media = (("application/dicom", "*"),)
        received = 0
        with tempfile.TemporaryDirectory(prefix="qc-pixels-") as tmp:
            found: dict[str, Path] = {}

            def keep(ds: Dataset) -> None:
                nonlocal received
                sop = text(ds, "SOPInstanceUID")
                if sop not in wanted or sop in found:  # streamed with the series, not asked for
                    received += len(ds.get("PixelData") or b"")  # its pixel data, the bulk of it
                    return
                path = Path(tmp) / f"{len(found):06d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                received += path.stat().st_size
                found[sop] = path

            what = f"retrieve the pixel data of series {series_uid}"
            try:
                for sop_uid, (header, numbers) in parted.items():
                    data, syntax = self._call(
                        f"retrieve {len(numbers)} frames of instance {sop_uid}",
                        self._frames,
                        study_uid,
                        series_uid,
                        sop_uid,
                        numbers,
                    )
                    if data is None:
                        continue  # gone since listed: said below with the others
                    received += sum(len(d) for d in data)
                    path = Path(tmp) / f"{len(found):06d}.dcm"
                    object_with_frames(subset_header(header, numbers), data, syntax).save_as(
                        path, enforce_file_format=True
                    )
                    found[sop_uid] = path
                if wanted and len(wanted) <= FETCH_ONE_BY_ONE_MAX:

                    def one(sop_uid: str) -> Dataset | None:
                        try:
                            return self._client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=media)
                        except requests.HTTPError as exc:  # gone since listed: said below with the others
                            if exc.response is not None and exc.response.status_code == 404:
                                return None
                            raise

                    for inst in instances:
                        if inst.sop_instance_uid not in wanted:
                            continue
                        if (ds := self._call(what, one, inst.sop_instance_uid)) is not None:
                            keep(ds)
                elif wanted:

                    def keep_series() -> None:
                        for ds in self._client.iter_series(study_uid, series_uid, media_types=media):
                            keep(ds)

                    self._call(what, keep_series)
            finally:
                with self._fetched_lock:
                    self._fetched[study_uid] = self._fetched.get(study_uid, 0) + received
            missing = {inst.sop_instance_uid for inst in instances} - found.keys()
            if missing:
                raise SourceError(
                    f"DICOMweb server {self._url} did not return {len(missing)} of {len(instances)} instances of series "
                    f"{series_uid} (e.g. {sorted(missing)[0]})"
                )
            yield [found[inst.sop_instance_uid] for inst in instances]

    def _frames(
        self, study_uid: str, series_uid: str, sop_uid: str, numbers: Sequence[int]
    ) -> tuple[list[bytes] | None, str]:
        """WADO-RS frame retrieval of ``numbers`` (0-based) in the stored transfer syntax: the
        frames in the order asked and their transfer syntax, or (None, "") when the instance is
        gone (HTTP 404)."""
        url = f"{self._url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/" + ",".join(
            str(n + 1) for n in numbers
        )
        response = self._session.get(url, headers={"Accept": FRAMES_ACCEPT}, timeout=TIMEOUT_S)
        if response.status_code == 404:
            return None, ""
        response.raise_for_status()
        parts = multipart_parts(response.headers.get("Content-Type", ""), response.content)
        syntaxes = {transfer_syntax_of(headers.get("content-type", "")) for headers, _ in parts}
        syntaxes.discard(None)
        if not syntaxes:  # no transfer syntax per part: the message's type says it, if anything
            syntaxes = {transfer_syntax_of(response.headers.get("Content-Type", ""))} - {None}
        if len(syntaxes) != 1 or len(parts) != len(numbers):
            raise SourceError(
                f"DICOMweb server {self._url} answered the frames of instance {sop_uid} with {len(parts)} parts "
                f"for {len(numbers)} frames in transfer syntax {sorted(map(str, syntaxes)) or 'not given'}"
            )
        return [content for _, content in parts], str(next(iter(syntaxes)))

    def store_instances(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS: store ``datasets`` on the server (the source URL, or ``QC_DICOMWEB_STOW_URL``).
        One attempt; SourceError when the server cannot be reached, refuses, or reports an
        instance it did not store."""
        if not datasets:
            return
        client = self._client
        if self._stow_url != self._url:
            client = DICOMwebClient(self._stow_url, session=self._session, timeout=TIMEOUT_S)
            client.set_http_retry_params(retry=False)
        answer = self._call(
            f"store {len(datasets)} instance(s) at {self._stow_url}", client.store_instances, list(datasets)
        )
        failed = list(getattr(answer, "FailedSOPSequence", None) or ())
        if failed:
            first = failed[0]
            raise SourceError(
                f"DICOMweb server {self._stow_url} did not store {len(failed)} of {len(datasets)} instance(s) "
                f"(e.g. {first.get('ReferencedSOPInstanceUID', '?')}, failure reason {first.get('FailureReason', '?')})"
            )

    def take_fetched_bytes(self, study_instance_uid: str) -> int:
        """Bytes of DICOM instances (pixel data as stored, with their headers) fetched for the
        study's image-quality checks since the last call; the count is then forgotten."""
        with self._fetched_lock:
            return self._fetched.pop(study_instance_uid, 0)
