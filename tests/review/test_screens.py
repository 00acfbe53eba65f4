"""Screenshots of the review app's pages at the two screen sizes the hospitals use (1366×768 laptops,
1920×1080 reading-room monitors), in Chinese, taken by headless Chromium; each page must fit the
width (no sideways scrolling) and the queue's buttons must not wrap.

The PNGs go to ``<pytest tmp>/screens/`` and, when ``$QC_SCREENSHOT_DIR`` is set, are copied there
so that a person can look at them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qc_pipeline.review import service
from qc_pipeline.review.accounts import authenticate
from qc_pipeline.review.images import MIN_SIDE_PX
from qc_pipeline.rules import Thresholds
from qc_pipeline.spotcheck.app import MAX_CROP_PX
from qc_pipeline.store import ResultStore
from tests.review.conftest import PASSWORDS, Judged
from tests.review.test_browser import CHROMIUM, CHROMIUM_ARGS, serve
from tests.review.test_security import (  # noqa: F401  (fixtures)
    CASE_CODE,
    GRADER,
    GRADER_PASSWORD,
    assign_case,
    full_app,
    spot_config,
)

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")

VIEWPORTS = ((1366, 768), (1920, 1080))
MR_STUDY = "ghosted_mr"
CT_STUDY, CT_CASE = "phantom_ct_chest", "CJ-CT-VIEW"

FITS_WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"
WRAPPED_BUTTONS = """sel => [...document.querySelectorAll(sel)].filter(b => {
    const r = document.createRange(); r.selectNodeContents(b);
    const lines = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
    return lines.size > 1;
}).map(b => b.textContent.trim())"""
"""The buttons whose label runs over more than one line (their text's boxes start at two heights)."""
ROW_HEIGHTS = """sel => [...document.querySelectorAll(sel)].map(b => {
    const box = b.getBoundingClientRect(); return [box.top, box.height];
})"""


@pytest.fixture
def site(full_app: Any) -> Iterator[str]:
    with serve(full_app) as url:
        yield url


@pytest.fixture
def screens(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "screens"
    folder.mkdir()
    yield folder
    wanted = os.environ.get("QC_SCREENSHOT_DIR")
    if wanted:
        target = Path(wanted)
        target.mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy2(png, target / png.name)


def _sign_in(page: Any, site: str, username: str, password: str) -> None:
    page.goto(f"{site}/login?lang=zh")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()


def test_pages_fit_both_screens_and_the_queue_buttons_stay_on_one_line(
    site: str, screens: Path, judged: Judged, app_store: ResultStore, thresholds: Thresholds
) -> None:
    from playwright.sync_api import sync_playwright

    assign_case(app_store, judged.decisions[CT_STUDY].study_instance_uid, GRADER, code=CT_CASE, period="2026-09")
    mr = judged.decisions[MR_STUDY].study_instance_uid
    n_series = len(service.study_view(app_store, thresholds, mr).series)
    assert n_series >= 5, f"the MR study page is meant to show a multi-series study; it has {n_series}"
    other = authenticate(app_store, "dr.zhao", PASSWORDS["dr.zhao"])
    assert other is not None
    service.claim(app_store, judged.decisions["clipped_dr"].study_instance_uid, other)  # a claimed row too
    pages = {
        "queue": ("dr.wang", PASSWORDS["dr.wang"], "/queue"),
        "study-mr": ("dr.wang", PASSWORDS["dr.wang"], f"/studies/{mr}"),
        "audit": ("qc.li", PASSWORDS["qc.li"], "/audit"),
        "spot-check-case": (GRADER, GRADER_PASSWORD, f"/spot-checks/{CASE_CODE}"),
        "spot-check-ct-series": (GRADER, GRADER_PASSWORD, f"/spot-checks/{CT_CASE}/series/0?slice=3&preset=lung"),
    }
    overflow: dict[str, tuple[int, int]] = {}
    wrapped: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for width, height in VIEWPORTS:
                for name, (user, password, path) in pages.items():
                    context = browser.new_context(viewport={"width": width, "height": height})
                    page = context.new_page()
                    _sign_in(page, site, user, password)
                    response = page.goto(f"{site}{path}")
                    assert response is not None and response.status == 200, (name, response and response.status)
                    page.screenshot(path=str(screens / f"{name}-{width}x{height}.png"), full_page=True)
                    scroll, inner = page.evaluate(FITS_WIDTH)
                    if scroll > inner:
                        overflow[f"{name}@{width}"] = (scroll, inner)
                    if name == "spot-check-ct-series":  # the slice is shown whole, its pixels loaded
                        shown = page.evaluate(
                            "() => { const i = document.querySelector('#slice-image'); "
                            "return [i.complete, i.naturalWidth, i.getBoundingClientRect().right]; }"
                        )
                        assert shown[0] and shown[1] >= MIN_SIDE_PX - 2 * MAX_CROP_PX and shown[2] <= width, shown
                    if name == "queue":
                        assert page.locator("#queue td.actions button").count() >= 1
                        found = page.evaluate(WRAPPED_BUTTONS, "#queue button, .filters button, header button")
                        if found:
                            wrapped[f"{name}@{width}"] = found
                        heights = [h for _top, h in page.evaluate(ROW_HEIGHTS, "#queue td.actions button")]
                        assert max(heights) < 1.5 * min(heights), heights  # no button two lines tall
                    context.close()
        finally:
            browser.close()
    assert overflow == {}, "pages wider than the screen (scrollWidth, innerWidth)"
    assert wrapped == {}, "buttons whose label wraps"
    assert len(list(screens.glob("*.png"))) == len(pages) * len(VIEWPORTS)
