"""The review web app: FastAPI, server-rendered Jinja2 pages in Chinese and English, a JSON API.

``create_app(store, thresholds, secret_key=...)`` builds the app; ``qc-pipeline review serve``
runs it with uvicorn.

Security:

- Sessions are Starlette's signed cookies (itsdangerous), HttpOnly, SameSite=Lax, ``Secure`` with
  ``https_only``; they carry the user id and a stamp of the password hash, so a password change
  or a disabled account ends every session at once.
- Every route but ``/login`` and ``/static`` needs a signed-in user: pages redirect anonymous
  visitors to ``/login`` (303), ``/api/...`` answers 401. Routers added with ``extra_routers``
  get the same protection.
- Every state-changing request (POST) carries the session's CSRF token: the ``csrf_token``
  form field or the ``X-CSRF-Token`` header (the JSON API). Sign-in too.
- Patient identifiers appear only on pages for signed-in users, never in URLs or logs.

Extending (the spot-check mode of issue 8): pass ``extra_routers=[router]`` (mounted with the
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
import secrets
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from qc_pipeline.config import default_lang
from qc_pipeline.review import service
from qc_pipeline.review.accounts import SignInLocked, User, authenticate, load_user
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.review.i18n import CATEGORIES, DECISION_REASONS, LANGS, NEGATIVE_FLAGS, VERDICTS, label, pick, translator
from qc_pipeline.review.images import StudyImages, render_study
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore

logger = logging.getLogger(__name__)

PACKAGE_DIR: Final = Path(__file__).resolve().parent
SESSION_COOKIE: Final = "qc_review_session"
SESSION_MAX_AGE_S: Final = 8 * 3600
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
IMAGE_CACHE_STUDIES: Final = 32


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
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(CSRF_FIELD)  # cached: the handler reads the same form
    if not isinstance(expected, str) or not isinstance(sent, str) or not hmac.compare_digest(expected, sent):
        raise HTTPException(status_code=403, detail="csrf")


def current_user(request: Request) -> User:
    """The signed-in user, or NotSignedIn."""
    user_id, stamp = request.session.get("user_id"), request.session.get("stamp")
    if not isinstance(user_id, int) or not isinstance(stamp, str):
        raise NotSignedIn
    store: ResultStore = request.app.state.store
    user = load_user(store, user_id, stamp)
    if user is None:
        request.session.pop("user_id", None)
        raise NotSignedIn
    return user


def require_admin(user: User = Depends(current_user)) -> User:
    if not user.is_admin:
        raise ReviewError("QC administrators only", "仅限质控管理员", status=403)
    return user


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
        "msg": lambda row: (row.get("message_zh") or row.get("message")) if lang == "zh" else row.get("message"),
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, {**shared, **(context or {})}, status_code=status)


def _flash(request: Request, kind: str, en: str, zh: str) -> None:
    request.session["flash"] = {"kind": kind, "en": en, "zh": zh}


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/queue"


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
) -> FastAPI:
    """The review app on ``store`` (see the module docstring for the extension points).

    ``viewer_url`` is the imaging cloud viewer's URL template, with ``{study_instance_uid}`` and
    ``{accession_number}`` placeholders (values URL-encoded).
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
    templates = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    templates.env.loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader([str(p) for p in extra_templates]), jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates"))]
    )
    app.state.store = store
    app.state.thresholds = thresholds
    app.state.templates = templates
    app.state.viewer_url = viewer_url
    app.state.default_lang = lang if lang in LANGS else default_lang()
    app.state.extra_nav = list(extra_nav)
    app.state.images = _ImageCache()
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")

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
                {"error": "the form expired or came from elsewhere (CSRF); reload the page",
                 "error_zh": "表单已过期或来源不明，请刷新页面后重试"},
                status_code=403,
            )
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    app.state.route_table = []
    _include(app, _public_router(), public=True)
    for router, prefix in ((_pages_router(), ""), (_api_router(), "/api"), *((r, "") for r in extra_routers)):
        _include(app, router, prefix=prefix)
    return app


def _include(app: FastAPI, router: APIRouter, *, prefix: str = "", public: bool = False) -> None:
    """Mount ``router`` (signed-in users only, CSRF-checked, unless ``public``) and list its routes
    in ``app.state.route_table`` as ``(path, methods, public)`` (the anonymous-access test walks it)."""
    dependencies = [] if public else [Depends(current_user), Depends(csrf_protect)]
    app.include_router(router, prefix=prefix, dependencies=dependencies)
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r}: include sub-routers into the review app directly, not nested")
        app.state.route_table.append((prefix + route.path, frozenset(route.methods), public))


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
        try:
            user = authenticate(store, username.strip(), password) if username.strip() and password else None
        except SignInLocked as exc:
            return render(request, "login.html", {"next": _safe_next(next), "locked": exc}, status=exc.status)
        if user is None:
            return render(request, "login.html", {"next": _safe_next(next), "failed": True}, status=401)
        lang = request.session.get("lang")
        request.session.clear()  # a new session: nothing of the anonymous one is kept but the language
        request.session.update({"user_id": user.id, "stamp": user.session_stamp})
        if lang in LANGS:
            request.session["lang"] = lang
        csrf_token(request)
        return RedirectResponse(_safe_next(next), status_code=303)

    return router


def _study_images(request: Request, uid: str, view: service.StudyView) -> StudyImages:
    thresholds: Thresholds = request.app.state.thresholds
    try:
        factor = thresholds.limit("continuity.slice.missing")
    except Exception:  # thresholds without the rule: the default factor
        factor = 1.5
    cache: _ImageCache = request.app.state.images
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
            raise ReviewError(f"{name} must be a date like 2026-10-31; got {value!r}", "日期格式应为 2026-10-31") from None

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


def _pages_router() -> APIRouter:
    router = APIRouter()

    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/queue", status_code=303)

    @router.post("/logout")
    def logout(request: Request) -> Response:
        lang = request.session.get("lang")
        request.session.clear()
        if lang in LANGS:
            request.session["lang"] = lang
        return RedirectResponse("/login", status_code=303)

    @router.get("/queue")
    def queue_page(request: Request, user: User = Depends(current_user)) -> Response:
        filters = _filters(request)
        found = service.queue(request.app.state.store, filters)
        return render(
            request,
            "queue.html",
            {"user": user, "queue": found, "filters": filters, "categories": CATEGORIES, "verdicts": VERDICTS},
        )

    @router.get("/studies/{uid}")
    def study_page(request: Request, uid: str, user: User = Depends(current_user)) -> Response:
        view = service.study_view(request.app.state.store, request.app.state.thresholds, uid)
        images = _study_images(request, uid, view)
        return render(
            request,
            "study.html",
            {
                "user": user,
                "view": view,
                "r": view.result,
                "images": images,
                "viewer_link": _viewer_link(request, view.result),
                "reasons": DECISION_REASONS,
                "flags": NEGATIVE_FLAGS,
                "action_for": service.action_for,
            },
        )

    @router.get("/studies/{uid}/images/{series_uid}.png")
    def key_image(request: Request, uid: str, series_uid: str) -> Response:
        view = service.study_view(request.app.state.store, request.app.state.thresholds, uid)
        images = _study_images(request, uid, view)
        for image in images.images:
            if image.series_instance_uid == series_uid and image.png is not None:
                return Response(image.png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
        raise ReviewError("no key image for this series", "该序列没有关键图像", status=404)

    def _back(uid: str) -> Response:
        return RedirectResponse(f"/studies/{urllib.parse.quote(uid, safe='')}", status_code=303)

    def _attempt(request: Request, uid: str, action: Any, ok_en: str, ok_zh: str) -> Response:
        try:
            action()
        except ReviewError as exc:
            if exc.status == 404:
                raise
            _flash(request, "error", str(exc), exc.message_zh)
        else:
            _flash(request, "ok", ok_en, ok_zh)
        return _back(uid)

    @router.post("/studies/{uid}/claim")
    def claim_form(request: Request, uid: str, user: User = Depends(current_user)) -> Response:
        return _attempt(request, uid, lambda: service.claim(request.app.state.store, uid, user),
                        "You are reviewing this study.", "您已认领此检查。")

    @router.post("/studies/{uid}/release")
    def release_form(request: Request, uid: str, user: User = Depends(current_user)) -> Response:
        return _attempt(request, uid, lambda: service.release(request.app.state.store, uid, user),
                        "Claim released.", "已释放认领。")

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
                request.app.state.store, request.app.state.thresholds, uid, user,
                verdict=verdict, reason_code=reason_code, reason_text=reason_text, decision_id=decision_id,
            )

        return _attempt(request, uid, save, "Decision saved.", "复核结论已保存。")

    @router.post("/studies/{uid}/flags")
    def flag_form(
        request: Request, uid: str, reason_code: str = Form(""), note: str = Form(""), user: User = Depends(current_user)
    ) -> Response:
        return _attempt(
            request, uid, lambda: service.set_flag(request.app.state.store, uid, user, reason_code=reason_code, note=note),
            "Negative-list flag set.", "已加入负面清单。",
        )

    @router.post("/studies/{uid}/flags/{code}/clear")
    def unflag_form(request: Request, uid: str, code: str, user: User = Depends(current_user)) -> Response:
        return _attempt(
            request, uid, lambda: service.clear_flag(request.app.state.store, uid, user, reason_code=code),
            "Negative-list flag cleared.", "已取消负面清单标记。",
        )

    @router.get("/audit")
    def audit_page(request: Request, user: User = Depends(require_admin)) -> Response:
        return render(request, "audit.html", {"user": user, "events": service.audit_events(request.app.state.store)})

    return router


def _api_router() -> APIRouter:
    router = APIRouter()

    @router.get("/me")
    def me(user: User = Depends(current_user)) -> dict[str, Any]:
        return {"username": user.username, "display_name": user.display_name, "role": user.role}

    @router.get("/queue")
    def api_queue(request: Request) -> dict[str, Any]:
        found = service.queue(request.app.state.store, _filters(request))
        return {"total": found.total, "rows": [asdict(r) for r in found.rows], "options": found.options}

    @router.get("/studies/{uid}")
    def api_study(request: Request, uid: str) -> dict[str, Any]:
        view = service.study_view(request.app.state.store, request.app.state.thresholds, uid)
        return {
            **view.result,
            "decision_id": view.decision_id,
            "history": view.history,
            "metric_rows": [asdict(m) for m in view.metric_rows],
            "ai_scores": view.ai_scores,
            "claimed_by": view.claimed_by,
            "claim_expires_at": view.claim_expires_at,
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
            request.app.state.store, request.app.state.thresholds, uid, user,
            verdict=str(body.get("verdict", "")), reason_code=str(body.get("reason_code", "")),
            reason_text=str(body.get("reason_text") or ""), decision_id=decision_id,
        )

    @router.post("/studies/{uid}/flags")
    async def api_flag(request: Request, uid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        body = await _json_body(request)
        await _in_thread(
            service.set_flag, request.app.state.store, uid, user,
            reason_code=str(body.get("reason_code", "")), note=str(body.get("note") or ""),
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
