"""The recognition API for hospital systems: which of a patient's studies are recognisable now,
and what the receiving hospital did with them.

``create_recognition_app(store)`` builds an ASGI app of its own (FastAPI), with the routes under
``/api/recognition/v1`` and its OpenAPI description at ``/openapi.json``; ``qc-pipeline
recognition serve`` runs it beside the review app (another port, or another path of the reverse
proxy). It is deliberately not one of the review app's ``extra_routers``: those are mounted with
the review app's signed-in-user and CSRF dependencies and under its session middleware, which a
hospital system (no browser, no session cookie) can never satisfy, and exempting a path there
would weaken the review app's own "every route needs a session" rule. Here every route needs a
bearer token instead:

- Tokens belong to one hospital system and one registered institution, with scopes ``lookup``,
  ``events`` and/or ``findings`` (the last for the QC centre's own systems only) (``qc-pipeline recognition token create|revoke``); only their SHA-256 is
  stored. No token, an unknown or revoked one: 401; a token without the route's scope: 403.
- Each token may make ``calls_per_minute`` calls a minute (in memory, per process): then 429 with
  ``Retry-After``. Calls without a valid token are limited the same way per client address.
- Every call, refused ones too, is audited in ``recognition_api_calls``: token name, method,
  route, status, client and a SHA-256 of the query values (patient identifiers are never kept in
  clear). When the audit row cannot be written the answer is 503: no unaudited disclosure.
- Minimum necessary data: a lookup answers, per eligible study, only its UID, item, institution,
  study date, verdict, eligible-until, recognition mark and viewer link; never findings, patient
  names or identifiers (the response model is the list of fields, so nothing else can slip out).
  A study's findings (code, severity, both messages, value and limit) come from a route of their
  own that needs the ``findings`` scope.
- Eligibility is judged at read time (``EligibilityPolicy``: the window, the institution's
  qualification, a standing human decision), exactly as every other output reads results.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from qc_pipeline.domain import ItemRef
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.errors import StoreError
from qc_pipeline.institutions import Institution, Register, default_register
from qc_pipeline.review.negative_list import load_negative_list
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import StudyRecord
from qc_pipeline.store.recognition import (
    EventConflict,
    TokenInfo,
    audit_call,
    record_event,
    token_for,
)

logger = logging.getLogger(__name__)

PREFIX: Final = "/api/recognition/v1"
VIEWER_ENV: Final = "QC_VIEWER_URL_TEMPLATE"
CALLS_PER_MINUTE: Final = 60
"""Default calls per token per minute: a clinic's lookups are one per patient visit; a script
looping over patients is stopped."""
UID_PATTERN: Final = r"^[0-9]+(\.[0-9]+)*$"

_bearer = HTTPBearer(
    auto_error=False, description="A hospital system's token (`qc-pipeline recognition token create`)."
)


# -- models: the API's contract (OpenAPI schema) ---------------------------------------------------


class Item(BaseModel):
    code: str
    name_zh: str | None
    name_en: str | None


def _item(item: ItemRef | None) -> Item | None:
    return None if item is None else Item(code=item.code, name_zh=item.name_zh, name_en=item.name_en)


class RecognisableStudy(BaseModel):
    """One study recognisable today: these fields and no others."""

    study_instance_uid: str
    item: Item | None
    institution: str | None = Field(description="The registered institution's name (as written when unregistered).")
    study_date: dt.date | None
    verdict: str = Field(description="`pass` (a standing human decision, else the machine's).")
    eligible_until: dt.date | None = Field(description="The last day the result may be recognised.")
    recognition_mark: str | None = Field(description="The mark the result carries (e.g. the regional list's).")
    viewer_url: str | None = Field(description="Link to the imaging cloud viewer (none when not configured).")


class LookupAnswer(BaseModel):
    as_of: dt.date = Field(description="The day eligibility was judged on (site clock).")
    studies: list[RecognisableStudy]


class FindingOut(BaseModel):
    code: str
    category: str
    severity: str = Field(description="`info`, `review` or `fail`.")
    message_en: str
    message_zh: str | None
    value: str | None
    limit: str | None


class StudyFindings(BaseModel):
    """A study's QC result with its reasons: for QC-centre systems (scope `findings`)."""

    study_instance_uid: str
    item: Item | None
    institution: str | None
    verdict: str = Field(description="The final verdict (a standing human decision, else the machine's).")
    machine_verdict: str
    eligible: bool
    findings: list[FindingOut]


class EventIn(BaseModel):
    """What the receiving hospital did with a study's result at a visit."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    study_instance_uid: Annotated[str, Field(max_length=64, pattern=UID_PATTERN)]
    outcome: Literal["recognised", "not_recognised"]
    reason_code: str | None = Field(
        default=None, description="Required when not recognised: a code of the negative list (Yubei plan §4(三))."
    )
    receiving_institution: Annotated[str, Field(min_length=1, max_length=200)]
    department: Annotated[str | None, Field(max_length=200)] = None
    note: Annotated[str | None, Field(max_length=2000)] = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _reason_matches_outcome(self) -> EventIn:
        if self.outcome == "not_recognised" and not self.reason_code:
            raise ValueError("reason_code is required when the outcome is not_recognised")
        if self.outcome == "recognised" and self.reason_code:
            raise ValueError("reason_code is only for not_recognised")
        if self.reason_code and load_negative_list().get(self.reason_code) is None:
            codes = ", ".join(r.code for r in load_negative_list().reasons)
            raise ValueError(f"unknown reason_code {self.reason_code!r}; one of {codes}")
        return self


class EventOut(BaseModel):
    event_id: str
    study_instance_uid: str
    outcome: str
    reason_code: str | None
    receiving_institution: str
    department: str | None
    at: dt.datetime
    recorded_at: dt.datetime


# -- mechanisms ---------------------------------------------------------------------------------


class RateLimit:
    """At most ``limit`` calls per key in a sliding ``window`` of seconds (in memory, per process)."""

    def __init__(self, limit: int, window: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1; got {limit}")
        self._limit, self._window, self._clock = limit, window, clock
        self._calls: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """0 when the call is allowed (and counted), else the seconds until one is."""
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(key, collections.deque())
            while calls and calls[0] <= now - self._window:
                calls.popleft()
            if len(calls) >= self._limit:
                return calls[0] + self._window - now
            calls.append(now)
            return 0.0


def viewer_link(template: str | None, study_instance_uid: str, accession_number: str | None) -> str | None:
    """``template`` with ``{study_instance_uid}`` and ``{accession_number}`` filled in, URL-encoded."""
    if not template:
        return None
    values = collections.defaultdict(
        str,
        {
            "study_instance_uid": urllib.parse.quote(study_instance_uid, safe=""),
            "accession_number": urllib.parse.quote(accession_number or "", safe=""),
        },
    )
    return template.format_map(values)


def _refuse(status: int, en: str, zh: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": en, "error_zh": zh}, headers=headers)


def _token(scope: str) -> Callable[..., TokenInfo]:
    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> TokenInfo:
        limit: RateLimit = request.app.state.rate_limit
        info = None
        if credentials is not None and credentials.credentials:
            store: ResultStore = request.app.state.store
            with store.reading("check a recognition API token") as session:
                info = token_for(session, credentials.credentials)
        if info is None:  # throttled per client address too: a flood of bad tokens must not load the database
            client = request.client.host if request.client is not None else "unknown"
            _throttle(limit, f"client:{client}")
            raise _refuse(401, "a valid bearer token is required", "需要有效的访问令牌", {"WWW-Authenticate": "Bearer"})
        request.state.token_name = info.name
        _throttle(limit, f"token:{info.name}")
        if scope not in info.scopes:
            raise _refuse(403, f"this token lacks the {scope!r} scope", f"此令牌无 {scope} 权限")
        return info

    return check


def _throttle(limit: RateLimit, key: str) -> None:
    wait = limit.wait(key)
    if wait > 0:
        raise _refuse(
            429,
            "too many calls; retry later",
            "调用过于频繁，请稍后重试",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _same_institution(register: Register, a: str, b: str) -> bool:
    ra, rb = register.resolve(a), register.resolve(b)
    return ra is rb if ra is not None and rb is not None else a.strip() == b.strip()


# -- routes -------------------------------------------------------------------------------------


def recognition_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["recognition"])

    @router.get(
        "/studies",
        response_model=LookupAnswer,
        summary="Recognisable studies of a patient or an accession",
        description=(
            "The studies recognisable today (窗口期内、可互认的检查) of a patient — `patient_id` with "
            "`issuer`, the registered institution that issued the identifier — or of an accession "
            "number (`accession`, optionally with `issuer`). Eligibility is judged at the time of the "
            "call: the recognition window, the institution's qualification and any standing human "
            "decision. Only the listed fields are returned: no findings, no patient name or identifier. "
            "Scope: `lookup`."
        ),
        responses={
            401: {"description": "No valid token"},
            403: {"description": "Token lacks the `lookup` scope"},
            422: {"description": "Neither patient_id+issuer nor accession, or an unknown issuer"},
            429: {"description": "Rate limit; see Retry-After"},
        },
    )
    def lookup(
        request: Request,
        patient_id: Annotated[str | None, Query(max_length=64, description="PatientID as the issuer wrote it.")] = None,
        issuer: Annotated[
            str | None, Query(max_length=200, description="Registered institution issuing the PatientID.")
        ] = None,
        accession: Annotated[str | None, Query(max_length=64, description="Accession number.")] = None,
        _token_info: TokenInfo = Depends(_token("lookup")),
    ) -> LookupAnswer:
        store: ResultStore = request.app.state.store
        register: Register = request.app.state.register
        if (patient_id is None) == (accession is None):
            raise _refuse(
                422,
                "give either patient_id (with issuer) or accession",
                "请提供 patient_id（及 issuer）或 accession 之一",
            )
        if patient_id is not None and issuer is None:
            raise _refuse(
                422,
                "patient_id needs issuer: identifiers are unique only within their institution",
                "patient_id 须与 issuer 同时提供：患者ID仅在签发机构内唯一",
            )
        wanted: Institution | None = None
        if issuer is not None:
            wanted = register.resolve(issuer)
            if wanted is None:
                raise _refuse(422, "issuer is not a registered institution", "issuer 不是已登记的机构")
        column = StudyRecord.patient_id if patient_id is not None else StudyRecord.accession_number
        with store.reading("look up recognisable studies") as session:
            uids = session.scalars(
                select(StudyRecord.study_instance_uid).where(column == (patient_id or accession))
            ).all()
        policy = EligibilityPolicy.current(register=register)
        template = request.app.state.viewer_url_template
        found: list[RecognisableStudy] = []
        for uid in sorted(uids):
            for r in store.study_results(study_instance_uid=uid, policy=policy):
                if not r.eligible or (wanted is not None and register.resolve(r.institution) is not wanted):
                    continue
                found.append(
                    RecognisableStudy(
                        study_instance_uid=r.study_instance_uid,
                        item=_item(r.item),
                        institution=r.registered_institution or r.institution,
                        study_date=r.study_date,
                        verdict=str(r.final_verdict),
                        eligible_until=r.eligible_until,
                        recognition_mark=r.recognition_mark,
                        viewer_url=viewer_link(template, r.study_instance_uid, r.accession_number),
                    )
                )
        found.sort(key=lambda s: (s.study_date or dt.date.min, s.study_instance_uid), reverse=True)
        return LookupAnswer(as_of=policy.as_of, studies=found)

    @router.get(
        "/studies/{study_instance_uid}/findings",
        response_model=StudyFindings,
        summary="A study's QC findings (QC centre only)",
        description=(
            "The final and machine verdicts of one judged study and its findings, worst first (code, "
            "category, severity, the message in English and Chinese, value and limit). For the QC "
            "centre's own systems: no patient name or identifier. Scope: `findings`."
        ),
        responses={
            401: {"description": "No valid token"},
            403: {"description": "Token lacks the `findings` scope"},
            404: {"description": "No judged study with this UID"},
            429: {"description": "Rate limit; see Retry-After"},
        },
    )
    def study_findings(
        request: Request,
        study_instance_uid: Annotated[str, Path(max_length=64, pattern=UID_PATTERN)],
        _token_info: TokenInfo = Depends(_token("findings")),
    ) -> StudyFindings:
        store: ResultStore = request.app.state.store
        request.state.audit_values = {"study_instance_uid": study_instance_uid}
        policy = EligibilityPolicy.current(register=request.app.state.register)
        results = store.study_results(study_instance_uid=study_instance_uid, policy=policy)
        if not results:
            raise _refuse(404, "no judged study with this UID", "未找到已判定的该检查")
        r = results[0]
        order = {"fail": 0, "review": 1, "info": 2}
        findings = sorted(r.findings, key=lambda f: order.get(f.severity, 3))
        return StudyFindings(
            study_instance_uid=r.study_instance_uid,
            item=_item(r.item),
            institution=r.registered_institution or r.institution,
            verdict=str(r.final_verdict),
            machine_verdict=str(r.verdict),
            eligible=r.eligible,
            findings=[
                FindingOut(
                    code=f.code,
                    category=str(f.category),
                    severity=str(f.severity),
                    message_en=f.message,
                    message_zh=f.message_zh,
                    value=f.value,
                    limit=f.limit,
                )
                for f in findings
            ],
        )

    @router.post(
        "/events",
        response_model=EventOut,
        status_code=201,
        summary="Record what the receiving hospital did with a result",
        description=(
            "A recognition event (互认记录): the receiving hospital recognised the study's result, or did "
            "not, for one of the ten negative-list reasons (`reason_code`, Yubei plan §4(三)). The "
            "receiving institution must be the token's own. Idempotent on `event_id`: the same body "
            "again answers 200 with the stored event; another body under the same `event_id` answers "
            "409. Scope: `events`."
        ),
        responses={
            200: {"description": "Already recorded (same body)", "model": EventOut},
            401: {"description": "No valid token"},
            403: {"description": "Token lacks the `events` scope, or another institution's event"},
            404: {"description": "No judged study with this UID"},
            409: {"description": "event_id reused with another body"},
            429: {"description": "Rate limit; see Retry-After"},
        },
    )
    def post_event(request: Request, event: EventIn, token_info: TokenInfo = Depends(_token("events"))) -> Response:
        store: ResultStore = request.app.state.store
        request.state.audit_values = {"event_id": event.event_id, "study_instance_uid": event.study_instance_uid}
        if not _same_institution(request.app.state.register, event.receiving_institution, token_info.institution):
            raise _refuse(403, "the receiving institution must be the token's own", "接收机构须为令牌所属机构")
        body = event.model_dump()
        for attempt in (1, 2):  # a concurrent post of the same event_id loses the insert race: read it back
            try:
                with store.writing("record a recognition event") as session:
                    stored, created = record_event(session, token_name=token_info.name, body=body)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
            except EventConflict as exc:
                raise _refuse(409, str(exc), "此 event_id 已用于另一内容") from None
            except LookupError as exc:
                raise _refuse(404, str(exc), "未找到已判定的该检查") from None
            except ValueError as exc:
                raise _refuse(422, str(exc), "记录被拒绝") from None
        return JSONResponse(EventOut(**stored).model_dump(mode="json"), status_code=201 if created else 200)

    return router


# -- the app ------------------------------------------------------------------------------------


def create_recognition_app(
    store: ResultStore,
    *,
    viewer_url_template: str | None = None,
    register: Register | None = None,
    calls_per_minute: int = CALLS_PER_MINUTE,
    rate_clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The recognition API on ``store`` (see the module docstring). ``viewer_url_template``
    defaults to ``$QC_VIEWER_URL_TEMPLATE``, e.g. ``https://cloud.example/viewer?study={study_instance_uid}``."""
    app = FastAPI(
        title="qc-pipeline recognition API",
        version="1",
        description="Lookup of recognisable imaging studies and recording of recognition events, for hospital systems.",
        docs_url=None,
        redoc_url=None,  # the interactive pages load scripts from a CDN; the JSON is enough
    )
    app.state.store = store
    app.state.register = register if register is not None else default_register()
    app.state.viewer_url_template = (
        viewer_url_template if viewer_url_template is not None else os.environ.get(VIEWER_ENV)
    )
    app.state.rate_limit = RateLimit(calls_per_minute, 60.0, clock=rate_clock)

    @app.middleware("http")
    async def _audit(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        route = request.scope.get("route")
        values = getattr(request.state, "audit_values", None)
        if values is None and request.query_params:
            values = {k: ",".join(request.query_params.getlist(k)) for k in sorted(request.query_params.keys())}
        try:
            await run_in_threadpool(
                _write_audit,
                store,
                {
                    "token_name": getattr(request.state, "token_name", None),
                    "method": request.method,
                    "route": getattr(route, "path", None) or _path_shape(request.url.path),
                    "status": response.status_code,
                    "query_values": values,
                    "client": request.client.host if request.client is not None else None,
                },
            )
        except StoreError:
            logger.exception("recognition API: cannot write the audit row; answering 503")
            return JSONResponse(
                {"error": "audit unavailable; retry later", "error_zh": "审计记录失败，请稍后重试"}, status_code=503
            )
        response.headers["Cache-Control"] = "no-store"
        return response

    app.include_router(recognition_router())
    return app


def _write_audit(store: ResultStore, fields: dict[str, Any]) -> None:
    with store.writing("audit a recognition API call") as session:
        audit_call(session, **fields)


def _path_shape(path: str) -> str:
    """An unmatched path, with anything that could be an identifier blanked (it is audited)."""
    return re.sub(r"[^/a-z]+", "*", path)[:128]
