"""The spot-check mode of the review app: blinded pages where a reviewer grades their cases.

Mounted into the review app (``qc_pipeline.review.app.create_app``) with
``create_app(store, thresholds, secret_key=..., **app_options(config))``: the router gets the
app's sign-in and CSRF protection, the templates extend its ``base.html``.

Blinding: every page and image is built from :class:`~qc_pipeline.spotcheck.blinding.BlindCase`
(case code, patient pseudonym, modality, item, sex, age band, series count) and the key images
rendered without any finding marks; URLs carry the case code only. No institution, region,
machine verdict, findings, metrics, AI scores, dates, UIDs, accession numbers or patient IDs.
A reviewer sees only the cases assigned to their account; another case answers 404 with the
same message whether it exists or not.

Graders: only accounts of the ``grader`` role that the spot-check configuration names grade here,
and a grader reaches nothing but these pages (the review app refuses it every study route), so it
cannot look its cases up in the queue or the study API. The blinded images are rendered apart from
the study page's (their own cache, URLs by case code and index) and re-encoded by
:func:`blinded_png`: cropped by a few pixels, with seeded noise of one grey level and other PNG
settings, so that no byte, hash or size of a blinded image matches the study page's image.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from PIL import Image
from sqlalchemy import select

from qc_pipeline.errors import QCError, SpotCheckError
from qc_pipeline.resources import SPOTCHECK_TEMPLATES, shipped_path
from qc_pipeline.review.accounts import User
from qc_pipeline.review.app import current_user, render
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.review.images import StudyImages, render_study
from qc_pipeline.review.slices import (
    AUTO,
    PRESET_LABELS,
    OpenedStudy,
    open_series,
    presets_for,
    render_slice,
    slice_links,
)
from qc_pipeline.spotcheck.config import SpotCheckConfig
from qc_pipeline.spotcheck.grading import GradeInput, case_for, cases_for, record_grades
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import StudyRecord
from qc_pipeline.store.spotcheck import SpotCheckAssignment, SpotCheckCase, read_session

logger = logging.getLogger(__name__)
T = TypeVar("T")

TEMPLATES_DIR: Final = shipped_path(SPOTCHECK_TEMPLATES)
PREFIX: Final = "/spot-checks"
NAV: Final = (PREFIX, ("Spot checks", "交叉抽查"))
IMAGE_CACHE_CASES: Final = 16
GRADER_ROLES: Final = frozenset({"grader"})
MAX_CROP_PX: Final = 6
"""A blinded image loses 2 to ``MAX_CROP_PX`` pixels on each side (seeded by the case code)."""
NOISE_LEVELS: Final = 1
"""Seeded noise of at most this many grey levels of 255: below what a grader can see."""


def app_options(config: SpotCheckConfig) -> dict[str, Any]:
    """Keyword arguments for ``create_app`` that add the spot-check mode."""
    return {
        "extra_routers": [spot_check_router(config)],
        "extra_templates": [TEMPLATES_DIR],
        "extra_nav": [NAV],
        "grader_home": PREFIX,
    }


def blinded_png(png: bytes, case_code: str) -> bytes:
    """``png`` re-rendered for a grader: cropped by a few pixels on each side, seeded noise of
    ``NOISE_LEVELS`` grey level, saved with other PNG settings; the same for the same case."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(case_code.encode("utf-8")).digest()[:8], "big"))
    with Image.open(io.BytesIO(png)) as opened:
        pixels = np.asarray(opened.convert("RGB"), dtype=np.int16)
    rows, cols = pixels.shape[:2]
    top, bottom, left, right = (int(v) for v in rng.integers(2, MAX_CROP_PX + 1, size=4))
    if rows > top + bottom + 8 and cols > left + right + 8:
        pixels = pixels[top : rows - bottom, left : cols - right]
    pixels = pixels + rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=pixels.shape[:2], dtype=np.int16)[..., None]
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB").save(out, format="PNG", compress_level=9)
    return out.getvalue()


def _not_assigned(code: str) -> ReviewError:
    return ReviewError(f"case {code} is not assigned to you", f"该抽查病例 {code} 未分配给您", status=404)


def _study_source(store: ResultStore, code: str, reviewer: str) -> tuple[str | None, str]:
    """Where the images of a case are (internal: never shown)."""
    with read_session(store) as session:
        row = session.execute(
            select(StudyRecord.source_uri, StudyRecord.study_instance_uid)
            .join(SpotCheckCase, SpotCheckCase.study_id == StudyRecord.id)
            .join(SpotCheckAssignment, SpotCheckAssignment.case_id == SpotCheckCase.id)
            .where(SpotCheckCase.case_code == code, SpotCheckAssignment.reviewer == reviewer)
        ).first()
    if row is None:
        raise _not_assigned(code)
    return row[0], row[1]


class _CaseCache(Generic[T]):
    """What was made for the last cases opened, by case code; the assignment is checked on every
    request, cached or not."""

    def __init__(self, make: Callable[[str | None, str, str], T]) -> None:
        self._make = make
        self._items: collections.OrderedDict[str, T] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: ResultStore, code: str, reviewer: str) -> T:
        source_uri, uid = _study_source(store, code, reviewer)  # checks the assignment every time
        with self._lock:
            if code in self._items:
                self._items.move_to_end(code)
                return self._items[code]
        made = self._make(source_uri, uid, code)
        with self._lock:
            self._items[code] = made
            while len(self._items) > IMAGE_CACHE_CASES:
                self._items.popitem(last=False)
        return made


def _blinded_images(source_uri: str | None, uid: str, code: str) -> StudyImages:
    """Blinded key images: no finding marks, no series names, no UIDs."""
    rendered = render_study(source_uri, uid, findings=[])  # no findings: no marks that would tell
    for image in rendered.images:
        if image.png is not None:
            image.png = blinded_png(image.png, code)
        image.series_instance_uid = ""  # nothing of the study's UIDs travels with a blinded image
    return rendered


def _opened_series(source_uri: str | None, uid: str, code: str) -> OpenedStudy:
    """The series of a case for the series viewer (slice order, from the headers)."""
    try:
        return open_series(source_uri, uid)
    except QCError as exc:
        logger.warning("spot-check case %s: cannot open its series: %s", code, exc)
        raise ReviewError(
            "the images of this case cannot be read now", "该病例的图像暂时无法读取", status=503
        ) from None


def _series_index(opened: OpenedStudy, index: int) -> None:
    if not 0 <= index < len(opened.series):
        raise ReviewError("no such series", "没有该序列", status=404)


def spot_check_router(config: SpotCheckConfig) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    router.qc_roles = GRADER_ROLES  # type: ignore[attr-defined]  # read by the review app's _include
    images = _CaseCache(_blinded_images)
    series_cache = _CaseCache(_opened_series)

    def reviewer_of(user: User) -> str:
        if not user.is_grader:
            raise ReviewError(
                f"{user.username} is not a grader: spot checks are graded with grader accounts, which see no study",
                f"{user.username} 不是抽查评分人账户：抽查须使用评分人账户（该类账户看不到任何检查）",
                status=403,
            )
        if config.reviewer_region(user.username) is None:
            raise ReviewError(
                f"{user.username} is not a spot-check reviewer (add the account to the spot-check configuration)",
                f"{user.username} 不是交叉抽查审核人（请在抽查配置中添加该账户）",
                status=403,
            )
        return user.username

    @router.get("")
    def my_cases(request: Request, user: User = Depends(current_user)) -> Response:
        reviewer = reviewer_of(user)
        cases = cases_for(request.app.state.store, reviewer=reviewer)
        todo = [c for c in cases if c.grade is None]
        return render(request, "spot_checks.html", {"user": user, "cases": cases, "todo": len(todo)})

    @router.get("/{code}")
    def case_page(request: Request, code: str, user: User = Depends(current_user)) -> Response:
        reviewer = reviewer_of(user)
        store = request.app.state.store
        try:
            status = case_for(store, code, reviewer=reviewer)
        except SpotCheckError:
            raise _not_assigned(code) from None
        shown = images.get(store, code, reviewer)
        return render(
            request,
            "spot_check_case.html",
            {
                "user": user,
                "s": status,
                "c": status.case,
                "images": shown,
                "grades": config.grades,
                "reasons": config.reasons,
            },
        )

    @router.get("/{code}/images/{index}.png")
    def case_image(request: Request, code: str, index: int, user: User = Depends(current_user)) -> Response:
        reviewer = reviewer_of(user)
        shown = images.get(request.app.state.store, code, reviewer)
        if not 0 <= index < len(shown.images) or shown.images[index].png is None:
            raise ReviewError("no such image", "没有该图像", status=404)
        return Response(shown.images[index].png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.get("/{code}/series/{index}")
    def series_page(request: Request, code: str, index: int, user: User = Depends(current_user)) -> Response:
        """One series slice by slice at full resolution, in a window preset (links only, no script)."""
        reviewer = reviewer_of(user)
        store = request.app.state.store
        opened = series_cache.get(store, code, reviewer)
        _series_index(opened, index)
        stack = opened.series[index]
        q = request.query_params
        try:
            current = int(q.get("slice") or stack.n_slices // 2 + 1) - 1  # people count slices from 1
        except ValueError:
            raise ReviewError("slice must be a whole number", "层面编号须为整数") from None
        current = min(max(current, 0), stack.n_slices - 1)
        preset = q.get("preset") or AUTO
        if preset not in presets_for(stack.modality):
            preset = AUTO
        return render(
            request,
            "spot_check_series.html",
            {
                "user": user,
                "code": code,
                "index": index,
                "n_series": len(opened.series),
                "stack": stack,
                "current": current,
                "preset": preset,
                "presets": presets_for(stack.modality),
                "preset_labels": PRESET_LABELS,
                "links": slice_links(stack.n_slices, current),
            },
        )

    @router.get("/{code}/series/{index}/slices/{slice_index}.png")
    def slice_image(
        request: Request,
        code: str,
        index: int,
        slice_index: int,
        preset: str = AUTO,
        user: User = Depends(current_user),
    ) -> Response:
        reviewer = reviewer_of(user)
        opened = series_cache.get(request.app.state.store, code, reviewer)
        _series_index(opened, index)
        try:
            png = render_slice(opened, index, slice_index, preset)
        except ValueError as exc:
            raise ReviewError(str(exc), "没有该层面或窗位", status=404) from None
        except QCError as exc:
            logger.warning("spot-check case %s series %d slice %d: %s", code, index, slice_index, exc)
            raise ReviewError("this slice cannot be decoded", "该层面无法解码", status=422) from None
        return Response(blinded_png(png, code), media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.post("/{code}")
    async def grade_case(request: Request, code: str, user: User = Depends(current_user)) -> Response:
        reviewer = reviewer_of(user)
        form = await request.form()
        recognisable = form.get("recognisable")
        if recognisable not in ("yes", "no"):
            raise ReviewError("answer 'recognisable' yes or no", "请选择是否可互认")
        answer = GradeInput(
            case_code=code,
            reviewer=reviewer,
            grade=str(form.get("grade") or ""),
            recognisable=recognisable == "yes",
            reasons=tuple(str(r) for r in form.getlist("reasons")),
            comment=str(form.get("comment") or ""),
        )
        try:
            from starlette.concurrency import run_in_threadpool

            outcome = await run_in_threadpool(
                record_grades, request.app.state.store, config, [answer], via="app", replace=True
            )
        except SpotCheckError as exc:
            if "is not assigned to" in str(exc):
                raise _not_assigned(code) from None
            raise ReviewError(str(exc), "评分无效：请检查等级和原因", status=400) from None
        logger.info("spot-check case %s graded by %s (%s)", code, reviewer, outcome[(code, reviewer)])
        request.session["flash"] = {"kind": "ok", "en": f"{code}: grade saved", "zh": f"{code}：评分已保存"}
        return RedirectResponse(PREFIX, status_code=303)

    return router
