"""The review web app: FastAPI, server-rendered Jinja2 pages in Chinese and English, a JSON API.

``create_app(store, thresholds, secret_key=...)`` builds the app; ``qc-pipeline review serve``
runs it with uvicorn.

Security:

- Sessions live on the server (``review_sessions``, see ``accounts``): the signed cookie
  (itsdangerous; HttpOnly, SameSite=Lax, ``Secure`` with ``https_only``) carries a random session
  id and a stamp of the password hash. Signing out ends the session for good (a replayed cookie
  is refused); every session ends ``session_lifetime`` after its sign-in whatever the activity;
  a password change or a disabled account ends every session at once. The cookie's own
  ``max_age`` (renewed with each answer) is the idle limit.
- Every route but ``/login`` and ``/static`` needs a signed-in user: pages redirect anonymous
  visitors to ``/login`` (303), ``/api/...`` answers 401. Routers added with ``extra_routers``
  get the same protection.
- Roles: reviewers and QC administrators (``STAFF_ROLES``) use the queue, the study pages and
  the study API; a ``grader`` reaches only ``/``, ``/logout``, ``/api/me`` and the routers that
  admit graders (the spot-check mode), every other route answers 403: a grader who could open
  studies could unblind its cases. ``route_roles`` gives the roles of each route.
- Study URLs name a study by its ``service.study_key`` (a valid UID, else ``id-<n>``) and every
  path segment is percent-encoded (``study_url``): a crafted StudyInstanceUID cannot turn a
  button into another action.
- Sign-ins are limited per client address (``SIGN_INS_PER_CLIENT`` per ``SIGN_IN_WINDOW``,
  answered 429 before any password is verified) besides the per-user lockout of ``accounts``.
  The client address is the connection's (run uvicorn with ``--proxy-headers`` and
  ``--forwarded-allow-ips`` behind a proxy).
- Every answer carries a Content-Security-Policy (no scripts, no framing), X-Frame-Options,
  X-Content-Type-Options, Referrer-Policy; every answer but ``/static`` is ``no-store``.
- Every state-changing request (POST) carries the session's CSRF token: the ``csrf_token``
  form field or the ``X-CSRF-Token`` header (the JSON API). Sign-in too.
- Patient identifiers appear only on pages for signed-in users, never in URLs or logs.

Extending (as the blinded spot-check mode does): pass ``extra_routers=[router]`` (mounted with the
auth and CSRF dependencies above), ``extra_templates=[folder]`` (templates that
``{% extends "base.html" %}``), ``extra_nav=[("/spot-checks", ("Spot checks", "抽查"))]``; in
a handler, ``render(request, "page.html", {...})`` renders with the shared context, ``Depends(
current_user)`` / ``Depends(require_admin)`` give the signed-in :class:`User`, and
``request.app.state.store`` is the :class:`ResultStore`.
"""

from __future__ import annotations

import collections
import datetime as dt
import hmac
import logging
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile
from starlette.middleware.sessions import SessionMiddleware

from qc_pipeline import labels as names
from qc_pipeline.config import default_lang
from qc_pipeline.resources import REVIEW_STATIC, REVIEW_TEMPLATES, shipped_path
from qc_pipeline.review import service
from qc_pipeline.review.accounts import (
    DEFAULT_SESSION_LIFETIME,
    SignInLocked,
    User,
    authenticate,
    end_session,
    session_user,
    start_session,
)
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.review.finding_review import FindingReviewConfig, judge_finding, load_finding_review
from qc_pipeline.review.i18n import (
    AUDIT_EVENTS,
    CATEGORIES,
    DECISION_REASONS,
    LANGS,
    NEGATIVE_FLAGS,
    VERDICTS,
    label,
    pick,
    translator,
)
from qc_pipeline.review.images import StudyImages, render_study
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore

logger = logging.getLogger(__name__)

TEMPLATES_DIR: Final = shipped_path(REVIEW_TEMPLATES)
STATIC_DIR: Final = shipped_path(REVIEW_STATIC)
SESSION_COOKIE: Final = "qc_review_session"
SESSION_MAX_AGE_S: Final = 8 * 3600
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
IMAGE_CACHE_STUDIES: Final = 32
STAFF_ROLES: Final = frozenset({"reviewer", "qc_admin"})
ALL_ROLES: Final = frozenset({"reviewer", "qc_admin", "grader"})
SIGN_INS_PER_CLIENT: Final = 10
SIGN_IN_WINDOW_S: Final = 60.0
"""At most ``SIGN_INS_PER_CLIENT`` sign-in attempts per client address in ``SIGN_IN_WINDOW_S``
seconds (a person who mistypes needs a few; a script guessing passwords gets 429)."""
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class NotSignedIn(Exception):
    """Raised by ``current_user`` for an anonymous request; answered 303 (pages) or 401 (API)."""


# -- session, user, CSRF ------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


async def csrf_protect(request: Request) -> None:
    """Refuse a state-changing request without the session's CSRF token (403)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = request.session.get(CSRF_FIELD)
    sent: str | UploadFile | None = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(CSRF_FIELD)  # cached: the handler reads the same form
    if not isinstance(expected, str) or not isinstance(sent, str) or not hmac.compare_digest(expected, sent):
        raise HTTPException(status_code=403, detail="csrf")


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def current_user(request: Request) -> User:
    """The signed-in user of a live server-side session, or NotSignedIn."""
    sid, stamp = request.session.get("sid"), request.session.get("stamp")
    if not isinstance(sid, str) or not isinstance(stamp, str):
        raise NotSignedIn
    store: ResultStore = request.app.state.store
    user = session_user(store, sid, stamp, client=client_address(request))
    if user is None:
        for key in ("sid", "stamp", CSRF_FIELD):
            request.session.pop(key, None)
        raise NotSignedIn
    return user


def require_admin(user: User = Depends(current_user)) -> User:
    if not user.is_admin:
        raise ReviewError("QC administrators only", "仅限质控管理员", status=403)
    return user


def require_staff(user: User = Depends(current_user)) -> User:
    """Reviewers and QC administrators; graders are refused (403) so they cannot unblind cases."""
    if user.role not in STAFF_ROLES:
        raise ReviewError(
            "this page is for reviewers and QC administrators; graders see their spot-check cases only",
            "此页面仅供复核医师和质控管理员使用；抽查评分人只能查看分配给自己的抽查病例",
            status=403,
        )
    return user


def study_url(key: str, *parts: str) -> str:
    """``/studies/<key>/<parts...>`` with every segment percent-encoded (``/`` and ``#`` too)."""
    return "/".join(["/studies", *(urllib.parse.quote(p, safe="") for p in (key, *parts))])


def _lang(request: Request) -> str:
    wanted = request.query_params.get("lang")
    if wanted in LANGS:
        request.session["lang"] = wanted
    lang = request.session.get("lang")
    return lang if lang in LANGS else request.app.state.default_lang


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200) -> Response:
    """A page with the shared context: ``t`` (words), ``lang``, ``user``, ``csrf``, ``flash``, nav."""
    lang = _lang(request)
    user = context.get("user") if context else None
    flash = request.session.pop("flash", None)
    shared = {
        "t": translator(lang),
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "csrf": csrf_token(request),
        "flash": flash,
        "user": user,
        "nav": request.app.state.extra_nav,
        "pick": lambda pair: pick(pair, lang),
        "verdict_label": lambda code: label(VERDICTS, code, lang),
        "category_label": lambda code: label(CATEGORIES, code, lang),
        "reason_label": lambda code: label(DECISION_REASONS, code, lang),
        "flag_label": lambda code: label(NEGATIVE_FLAGS, code, lang),
        "severity_label": lambda code: names.severity_label(code, lang),
        "rule_label": lambda code: names.rule_label(code, lang),
        "metric_label": lambda code: names.metric_label(code, lang),
        "event_label": lambda code: label(AUDIT_EVENTS, code, lang),
        "artifact_label": lambda code: label(request.app.state.finding_review.labels, code, lang),
        "value_text": lambda value: _named_ids(value, lang),
        "local_time": lambda iso, seconds=False: _local_time(request.app, iso, seconds=seconds),
        "zone_name": _zone(request.app).key,
        "worst_first": lambda findings: sorted(findings, key=lambda f: _SEVERITY_ORDER.get(f.get("severity"), 3)),
        "msg": lambda row: (row.get("message_zh") or row.get("message")) if lang == "zh" else row.get("message"),
        "study_url": study_url,
        "home": _home(request.app, user),
        "grader_home": request.app.state.grader_home,
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, {**shared, **(context or {})}, status_code=status)


def _zone(app: FastAPI) -> ZoneInfo:
    """The site's zone (thresholds/site.yaml ``timezone``): times are shown to people in it."""
    return ZoneInfo(app.state.thresholds.site.timezone)


def _local_time(app: FastAPI, iso: str | dt.datetime | None, *, seconds: bool = False) -> str:
    """A stored UTC time (a datetime or ISO 8601) in the site's zone, ``2026-10-31 17:05``; "—" when None."""
    if not iso:
        return "—"
    when = iso if isinstance(iso, dt.datetime) else dt.datetime.fromisoformat(iso)
    when = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    return when.astimezone(_zone(app)).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


_SEVERITY_ORDER: Final = {"fail": 0, "review": 1, "info": 2}
_METRIC_ID: Final = re.compile(r"\b[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+\b")


def _named_ids(value: object, lang: str) -> str:
    """A finding's value as people read it: metric ids in it (``mr.snr, mr.cnr``) by their names."""
    if value is None:
        return ""
    return _METRIC_ID.sub(lambda m: names.metric_label(m.group(0), lang), str(value))


def _flash(request: Request, kind: str, en: str, zh: str) -> None:
    request.session["flash"] = {"kind": kind, "en": en, "zh": zh}


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/queue"


def _home(app: FastAPI, user: User | None) -> str:
    """Where a user starts: the queue, or the grader's home (the spot-check list)."""
    if user is not None and user.is_grader:
        return app.state.grader_home or "/"
    return "/queue"


class _Throttle:
    """At most ``limit`` events per key in a sliding ``window`` of seconds (in memory, per process)."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit, self._window = limit, window
        self._events: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._events) > 10_000:  # forget idle clients
                self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self._window}
            seen = self._events.setdefault(key, collections.deque())
            while seen and seen[0] <= now - self._window:
                seen.popleft()
            if len(seen) >= self._limit:
                return False
            seen.append(now)
            return True


# -- the app ------------------------------------------------------------------------------------


class _ImageCache:
    """Rendered key images of the last studies opened, by (study, machine decision)."""

    def __init__(self, size: int = IMAGE_CACHE_STUDIES) -> None:
        self._items: collections.OrderedDict[tuple[str, int], StudyImages] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: tuple[str, int], make: Any) -> StudyImages:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        made = make()
        with self._lock:
            self._items[key] = made
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return made


def create_app(
    store: ResultStore,
    thresholds: Thresholds,
    *,
    secret_key: str,
    viewer_url: str | None = None,
    https_only: bool = False,
    lang: str | None = None,
    extra_routers: Sequence[APIRouter] = (),
    extra_templates: Sequence[Path] = (),
    extra_nav: Sequence[tuple[str, tuple[str, str]]] = (),
    grader_home: str | None = None,
    session_lifetime: dt.timedelta = DEFAULT_SESSION_LIFETIME,
    review_config: FindingReviewConfig | None = None,
) -> FastAPI:
    """The review app on ``store`` (see the module docstring for the extension points).

    ``grader_home`` is where graders land after signing in (the spot-check list);
    ``session_lifetime`` the absolute lifetime of a session (the site's setting).

    ``viewer_url`` is the imaging cloud viewer's URL template, with ``{study_instance_uid}`` and
    ``{accession_number}`` placeholders (values URL-encoded).

    ``review_config`` gives the artifacts a finding is judged with and the audit share of machine
    passes (default: ``thresholds/evaluation/finding_review.yaml``).
    """
    if len(secret_key) < 32:
        raise ValueError("secret_key must have at least 32 characters (e.g. secrets.token_urlsafe(48))")
    app = FastAPI(title="qc-pipeline review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        https_only=https_only,
    )
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader([str(p) for p in extra_templates]), jinja2.FileSystemLoader(str(TEMPLATES_DIR))]
    )
    app.state.store = store
    app.state.thresholds = thresholds
    app.state.templates = templates
    app.state.viewer_url = viewer_url
    app.state.default_lang = lang if lang in LANGS else default_lang()
    app.state.extra_nav = list(extra_nav)
    app.state.images = _ImageCache()
    app.state.grader_home = grader_home
    app.state.session_lifetime = session_lifetime
    app.state.finding_review = review_config if review_config is not None else load_finding_review()
    app.state.sign_in_throttle = _Throttle(SIGN_INS_PER_CLIENT, SIGN_IN_WINDOW_S)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.exception_handler(NotSignedIn)
    async def _anonymous(request: Request, _exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "sign in first", "error_zh": "请先登录"}, status_code=401)
        if request.method == "GET":
            target = urllib.parse.quote(request.url.path, safe="/")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return JSONResponse({"error": "sign in first", "error_zh": "请先登录"}, status_code=401)

    @app.exception_handler(ReviewError)
    async def _review_error(request: Request, exc: ReviewError) -> Response:
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": str(exc), "error_zh": exc.message_zh}, status_code=exc.status)
        return render(request, "error.html", {"error": exc, "user": None}, status=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.detail == "csrf":
            return JSONResponse(
                {
                    "error": "the form expired or came from elsewhere (CSRF); reload the page",
                    "error_zh": "表单已过期或来源不明，请刷新页面后重试",
                },
                status_code=403,
            )
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    app.state.route_table = []
    app.state.route_roles = {}
    _include(app, _public_router(), public=True)
    _include(app, _session_router(), roles=ALL_ROLES)
    _include(app, _pages_router(), roles=STAFF_ROLES, dependencies=[Depends(require_staff)])
    _include(app, _api_router(), prefix="/api", roles=STAFF_ROLES, dependencies=[Depends(require_staff)])
    for router in extra_routers:
        _include(app, router, roles=getattr(router, "qc_roles", STAFF_ROLES))
    return app


def _include(
    app: FastAPI,
    router: APIRouter,
    *,
    prefix: str = "",
    public: bool = False,
    roles: frozenset[str] = frozenset(),
    dependencies: Sequence[Any] = (),
) -> None:
    """Mount ``router`` (signed-in users only, CSRF-checked, unless ``public``) and list its routes
    in ``app.state.route_table`` as ``(path, methods, public)`` (the anonymous-access test walks it)
    and in ``app.state.route_roles`` (path -> the roles it admits; the router enforces them)."""
    deps = [] if public else [Depends(current_user), Depends(csrf_protect), *dependencies]
    app.include_router(router, prefix=prefix, dependencies=deps)
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r}: include sub-routers into the review app directly, not nested")
        assert route.methods is not None  # FastAPI gives every APIRoute its methods (GET when none are named)
        app.state.route_table.append((prefix + route.path, frozenset(route.methods), public))
        app.state.route_roles[prefix + route.path] = frozenset() if public else roles


def _public_router() -> APIRouter:
    router = APIRouter()

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        return render(request, "login.html", {"next": _safe_next(next)})

    @router.post("/login", dependencies=[Depends(csrf_protect)])
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        next: str = Form("/queue"),
    ) -> Response:
        store: ResultStore = request.app.state.store
        client = client_address(request)
        throttle: _Throttle = request.app.state.sign_in_throttle
        if not throttle.allow(client):
            return render(
                request, "login.html", {"next": _safe_next(next), "throttled": True, "username": username}, status=429
            )
        try:
            user = (
                authenticate(store, username.strip(), password, client=client)
                if username.strip() and password
                else None
            )
        except SignInLocked as exc:
            return render(
                request,
                "login.html",
                {"next": _safe_next(next), "locked": exc, "username": username},
                status=exc.status,
            )
        if user is None:
            return render(
                request, "login.html", {"next": _safe_next(next), "failed": True, "username": username}, status=401
            )
        previous = request.session.get("sid")
        if isinstance(previous, str):  # signing in again in the same browser: the old session ends
            end_session(store, previous, None)
        sid = start_session(store, user, lifetime=request.app.state.session_lifetime, client=client)
        lang = request.session.get("lang")
        request.session.clear()  # a new session: nothing of the anonymous one is kept but the language
        request.session.update({"sid": sid, "stamp": user.session_stamp})
        if lang in LANGS:
            request.session["lang"] = lang
        csrf_token(request)
        target = _safe_next(next)
        if user.is_grader and not (request.app.state.grader_home and target.startswith(request.app.state.grader_home)):
            target = _home(request.app, user)
        return RedirectResponse(target, status_code=303)

    return router


def _session_router() -> APIRouter:
    """Routes of every signed-in user, whatever the role."""
    router = APIRouter()

    @router.get("/")
    def home(request: Request, user: User = Depends(current_user)) -> Response:
        target = _home(request.app, user)
        if target == "/":
            raise ReviewError("no page for graders here: the spot-check mode is off", "抽查模式未开启", status=403)
        return RedirectResponse(target, status_code=303)

    @router.post("/logout")
    def logout(request: Request, user: User = Depends(current_user)) -> Response:
        lang = request.session.get("lang")
        end_session(request.app.state.store, request.session["sid"], user)
        request.session.clear()
        if lang in LANGS:
            request.session["lang"] = lang
        return RedirectResponse("/login", status_code=303)

    @router.get("/api/me")
    def me(user: User = Depends(current_user)) -> dict[str, Any]:
        return {"username": user.username, "display_name": user.display_name, "role": user.role}

    return router


def _study_images(request: Request, view: service.StudyView) -> StudyImages:
    thresholds: Thresholds = request.app.state.thresholds
    try:
        factor = thresholds.limit("continuity.slice.missing")
    except Exception:  # thresholds without the rule: the default factor
        factor = 1.5
    cache: _ImageCache = request.app.state.images
    uid = view.result["study_instance_uid"]
    return cache.get(
        (uid, view.decision_id),
        lambda: render_study(view.result["source_uri"], uid, view.result["findings"], missing_factor=factor),
    )


def _viewer_link(request: Request, result: dict[str, Any]) -> str | None:
    template: str | None = request.app.state.viewer_url
    if not template:
        return None
    values = collections.defaultdict(
        str,
        {
            "study_instance_uid": urllib.parse.quote(result["study_instance_uid"], safe=""),
            "accession_number": urllib.parse.quote(result.get("accession_number") or "", safe=""),
        },
    )
    return template.format_map(values)


def _filters(request: Request) -> service.QueueFilters:
    q = request.query_params

    def date(name: str) -> dt.date | None:
        value = q.get(name) or None
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ReviewError(
                f"{name} must be a date like 2026-10-31; got {value!r}", "日期格式应为 2026-10-31"
            ) from None

    return service.QueueFilters(
        institution=q.get("institution") or None,
        modality=q.get("modality") or None,
        item=q.get("item") or None,
        category=q.get("category") or None,
        date_from=date("date_from"),
        date_to=date("date_to"),
        verdict=q.get("verdict") or None,
        status=q.get("status") or "pending",
    )


def _audit_filters(request: Request) -> service.AuditFilters:
    q = request.query_params
    try:
        return service.AuditFilters(
            event=q.get("event") or None,
            username=q.get("username") or None,
            day_from=dt.date.fromisoformat(q["day_from"]) if q.get("day_from") else None,
            day_to=dt.date.fromisoformat(q["day_to"]) if q.get("day_to") else None,
            page=int(q.get("page") or 1),
        )
    except ValueError:
        raise ReviewError(
            "audit filters: dates like 2026-10-31 and a page number", "审计筛选：日期格式应为 2026-10-31，页码为整数"
        ) from None


def _pages_router() -> APIRouter:
    router = APIRouter()

    @router.get("/queue")
    def queue_page(request: Request, user: User = Depends(current_user)) -> Response:
        filters = _filters(request)
        found = service.queue(request.app.state.store, filters, audit=request.app.state.finding_review)
        return render(
            request,
            "queue.html",
            {"user": user, "queue": found, "filters": filters, "categories": CATEGORIES, "verdicts": VERDICTS},
        )

    @router.get("/studies/{uid}")
    def study_page(request: Request, uid: str, user: User = Depends(current_user)) -> Response:
        view = service.study_view(
            request.app.state.store, request.app.state.thresholds, uid, review_config=request.app.state.finding_review
        )
        images = _study_images(request, view)
        return render(
            request,
            "study.html",
            {
                "user": user,
                "view": view,
                "r": service.for_user(view.result, user),
                "images": images,
                "viewer_link": _viewer_link(request, view.result),
                "reasons": DECISION_REASONS,
                "flags": NEGATIVE_FLAGS,
                "action_for": service.action_for,
                "artifacts": request.app.state.finding_review.labels,
            },
        )

    @router.get("/studies/{uid}/images/{series_uid}.png")
    def key_image(request: Request, uid: str, series_uid: str) -> Response:
        view = service.study_view(request.app.state.store, request.app.state.thresholds, uid)
        images = _study_images(request, view)
        for image in images.images:
            if image.series_instance_uid == series_uid and image.png is not None:
                return Response(image.png, media_type="image/png")
        raise ReviewError("no key image for this series", "该序列没有关键图像", status=404)

    def _back(key: str, anchor: str = "") -> Response:
        return RedirectResponse(study_url(key) + (f"#{anchor}" if anchor else ""), status_code=303)

    def _attempt(request: Request, uid: str, action: Any, ok_en: str, ok_zh: str, anchor: str = "") -> Response:
        try:
            action()
        except ReviewError as exc:
            if exc.status == 404:
                raise
            _flash(request, "error", str(exc), exc.message_zh)
        else:
            _flash(request, "ok", ok_en, ok_zh)
        return _back(uid, anchor)

    @router.post("/studies/{uid}/claim")
    def claim_form(request: Request, uid: str, user: User = Depends(current_user)) -> Response:
        return _attempt(
            request,
            uid,
            lambda: service.claim(request.app.state.store, uid, user),
            "You are reviewing this study.",
            "您已认领此检查。",
        )

    @router.post("/studies/{uid}/release")
    def release_form(request: Request, uid: str, user: User = Depends(current_user)) -> Response:
        return _attempt(
            request, uid, lambda: service.release(request.app.state.store, uid, user), "Claim released.", "已释放认领。"
        )

    @router.post("/studies/{uid}/decision")
    def decision_form(
        request: Request,
        uid: str,
        verdict: str = Form(""),
        reason_code: str = Form(""),
        reason_text: str = Form(""),
        decision_id: int | None = Form(None),
        user: User = Depends(current_user),
    ) -> Response:
        def save() -> None:
            service.decide(
                request.app.state.store,
                request.app.state.thresholds,
                uid,
                user,
                verdict=verdict,
                reason_code=reason_code,
                reason_text=reason_text,
                decision_id=decision_id,
                review_config=request.app.state.finding_review,
            )

        return _attempt(request, uid, save, "Decision saved.", "复核结论已保存。")

    @router.post("/studies/{uid}/findings/{finding_id}")
    def finding_form(
        request: Request,
        uid: str,
        finding_id: int,
        judgement: str = Form(""),
        artifact: str = Form(""),
        decision_id: int | None = Form(None),
        user: User = Depends(current_user),
    ) -> Response:
        def save() -> None:
            judge_finding(
                request.app.state.store,
                request.app.state.finding_review,
                uid,
                user,
                finding_id=finding_id,
                judgement=judgement,
                reason_code=artifact,
                decision_id=decision_id,
            )

        return _attempt(request, uid, save, "Finding judged.", "已记录对该质控发现的判断。", anchor="finding-review")

    @router.post("/studies/{uid}/flags")
    def flag_form(
        request: Request,
        uid: str,
        reason_code: str = Form(""),
        note: str = Form(""),
        user: User = Depends(current_user),
    ) -> Response:
        return _attempt(
            request,
            uid,
            lambda: service.set_flag(request.app.state.store, uid, user, reason_code=reason_code, note=note),
            "Negative-list flag set.",
            "已加入负面清单。",
        )

    @router.post("/studies/{uid}/flags/{code}/clear")
    def unflag_form(request: Request, uid: str, code: str, user: User = Depends(current_user)) -> Response:
        return _attempt(
            request,
            uid,
            lambda: service.clear_flag(request.app.state.store, uid, user, reason_code=code),
            "Negative-list flag cleared.",
            "已取消负面清单标记。",
        )

    @router.get("/audit")
    def audit_page(request: Request, user: User = Depends(require_admin)) -> Response:
        filters = _audit_filters(request)
        found = service.audit_events(request.app.state.store, filters)
        query = {
            k: v for k, v in request.query_params.items() if k in ("event", "username", "day_from", "day_to") and v
        }

        def page_link(page: int) -> str:
            return "/audit?" + urllib.parse.urlencode({**query, "page": page})

        return render(request, "audit.html", {"user": user, "audit": found, "filters": filters, "page_link": page_link})

    return router


def _api_router() -> APIRouter:
    router = APIRouter()

    @router.get("/queue")
    def api_queue(request: Request) -> dict[str, Any]:
        found = service.queue(request.app.state.store, _filters(request), audit=request.app.state.finding_review)
        return {"total": found.total, "rows": [asdict(r) for r in found.rows], "options": found.options}

    @router.get("/studies/{uid}")
    def api_study(request: Request, uid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        view = service.study_view(
            request.app.state.store, request.app.state.thresholds, uid, review_config=request.app.state.finding_review
        )
        return {
            **service.for_user(view.result, user),
            "study_key": view.study_key,
            "decision_id": view.decision_id,
            "history": view.history,
            "metric_rows": [asdict(m) for m in view.metric_rows],
            "ai_scores": view.ai_scores,
            "claimed_by": view.claimed_by,
            "claim_expires_at": view.claim_expires_at,
            "audit_sample": view.audit_sample,
            "finding_items": list(view.finding_items),
        }

    @router.post("/studies/{uid}/claim")
    def api_claim(request: Request, uid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        expires = service.claim(request.app.state.store, uid, user)
        return {"claimed_by": user.username, "expires_at": expires.isoformat()}

    @router.post("/studies/{uid}/release")
    def api_release(request: Request, uid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        service.release(request.app.state.store, uid, user)
        return {"released": True}

    @router.post("/studies/{uid}/decision")
    async def api_decision(request: Request, uid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        body = await _json_body(request)
        decision_id = body.get("decision_id")
        if decision_id is not None and not isinstance(decision_id, int):
            raise ReviewError(f"decision_id must be an integer; got {decision_id!r}", "decision_id 须为整数")
        return await _in_thread(
            service.decide,
            request.app.state.store,
            request.app.state.thresholds,
            uid,
            user,
            verdict=str(body.get("verdict", "")),
            reason_code=str(body.get("reason_code", "")),
            reason_text=str(body.get("reason_text") or ""),
            decision_id=decision_id,
            review_config=request.app.state.finding_review,
        )

    @router.post("/studies/{uid}/findings/{finding_id}")
    async def api_finding(
        request: Request, uid: str, finding_id: int, user: User = Depends(current_user)
    ) -> dict[str, Any]:
        body = await _json_body(request)
        decision_id = body.get("decision_id")
        if decision_id is not None and not isinstance(decision_id, int):
            raise ReviewError(f"decision_id must be an integer; got {decision_id!r}", "decision_id 须为整数")
        result: dict[str, Any] = await _in_thread(
            judge_finding,
            request.app.state.store,
            request.app.state.finding_review,
            uid,
            user,
            finding_id=finding_id,
            judgement=str(body.get("judgement", "")),
            reason_code=str(body.get("reason_code", "")),
            decision_id=decision_id,
        )
        return result

    @router.post("/studies/{uid}/flags")
    async def api_flag(request: Request, uid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        body = await _json_body(request)
        await _in_thread(
            service.set_flag,
            request.app.state.store,
            uid,
            user,
            reason_code=str(body.get("reason_code", "")),
            note=str(body.get("note") or ""),
        )
        return {"flagged": body.get("reason_code")}

    @router.post("/studies/{uid}/flags/{code}/clear")
    def api_unflag(request: Request, uid: str, code: str, user: User = Depends(current_user)) -> dict[str, Any]:
        service.clear_flag(request.app.state.store, uid, user, reason_code=code)
        return {"cleared": code}

    return router


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ReviewError("the request body must be a JSON object", "请求体须为 JSON 对象")
    return body


async def _in_thread(func: Any, *args: Any, **kwargs: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(func, *args, **kwargs)
