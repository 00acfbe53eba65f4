"""The review app in a real browser (Debian's headless Chromium through Playwright, no download):
a reviewer signs in, opens the queue and a study, overrides it and sees its eligibility change.

The last page is saved as a screenshot: ``$QC_REVIEW_SCREENSHOTS`` or ``build/review-screenshots/``
(git-ignored) at the repository root.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from qc_pipeline.domain import Decision
from qc_pipeline.review.accounts import authenticate
from qc_pipeline.review.app import create_app
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore
from tests.review.conftest import HIJACK_TARGET, PASSWORDS, SECRET, Judged, legacy_flag

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT_DIR = Path(
    os.environ.get("QC_REVIEW_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "review-screenshots")
)

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` on a loopback port. The socket is bound before the server thread starts, so the
    browser's first connection waits in the backlog instead of racing the start-up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def server(app_store: ResultStore, thresholds: Thresholds) -> Iterator[str]:
    app = create_app(
        app_store,
        thresholds,
        secret_key=SECRET,
        lang="zh",
        viewer_url="https://cloud.example.cn/viewer?study={study_instance_uid}",
    )
    with serve(app) as url:
        yield url


def test_reviewer_overrides_a_study_in_the_browser(server: str, judged: Judged, app_store: ResultStore) -> None:
    from playwright.sync_api import expect, sync_playwright

    study = judged.decisions["age_mismatch"].study_instance_uid
    accession = judged.decisions["age_mismatch"].study.accession_number
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{server}/queue")
            expect(page).to_have_url(f"{server}/login?next=/queue")  # anonymous: sent to sign in
            page.fill("input[name=username]", "dr.wang")
            page.fill("input[name=password]", PASSWORDS["dr.wang"])
            page.click("button[type=submit]")

            expect(page.locator("h1")).to_contain_text("复核队列")
            rows = page.locator("#queue tbody tr")
            expect(rows).to_have_count(5)  # the flagged demo studies
            page.click("a#lang-switch")
            expect(page.locator("h1")).to_contain_text("Review queue")

            page.click(f"text={accession}")
            expect(page).to_have_url(f"{server}/studies/{study}")
            image = page.locator("img.key-image").first
            expect(image).to_be_visible()
            assert page.evaluate("img => img.complete && img.naturalWidth > 0", image.element_handle())
            expect(page.locator("#findings")).to_contain_text("PatientAge")
            expect(page.locator("[data-testid=eligibility]")).to_have_text("not eligible")

            page.click("form[action$='/claim'] button")
            expect(page.locator("[data-testid=flash]")).to_have_text("You are reviewing this study.")
            page.check("input[name=verdict][value=pass]")
            page.select_option("select[name=reason_code]", "metadata_error")
            page.fill("textarea[name=reason_text]", "PatientAge was typed wrong; the images are fine")
            page.click("#decision-form button[type=submit]")

            expect(page.locator("[data-testid=flash]")).to_have_text("Decision saved.")
            expect(page.locator("[data-testid=eligibility]")).to_have_text("eligible")
            expect(page.locator("[data-testid=eligibility-basis]")).to_have_text("(from the human decision)")
            expect(page.locator("[data-testid=human-verdict]")).to_have_text("pass")
            expect(page.locator("#history")).to_contain_text("PatientAge was typed wrong")
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_DIR / "study-overridden.png"), full_page=True)

            page.goto(f"{server}/queue")
            expect(rows).to_have_count(4)  # decided: out of the queue
        finally:
            browser.close()
    (row,) = app_store.results(study_instance_uid=study)
    assert row["verdict"] == "review" and row["human_decision"]["verdict"] == "pass" and row["eligible"] is True


def test_a_crafted_uid_cannot_hijack_a_button_in_the_browser(
    server: str, judged: Judged, app_store: ResultStore, crafted: dict[str, Decision]
) -> None:
    """An administrator presses every button of the queue, with studies uploaded under UIDs made to
    turn "Claim" into "clear the flag of another study" and into "sign out": nothing of the kind."""
    from playwright.sync_api import expect, sync_playwright

    target = judged.decisions[HIJACK_TARGET].study_instance_uid
    admin = authenticate(app_store, "qc.li", PASSWORDS["qc.li"])
    assert admin is not None
    legacy_flag(app_store, target, admin, reason_code="other", note="kept back for the test")
    for decision in crafted.values():
        app_store.save_decision(decision, run_id=None)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{server}/login?lang=en")
            page.fill("input[name=username]", "qc.li")
            page.fill("input[name=password]", PASSWORDS["qc.li"])
            page.click("button[type=submit]")
            page.goto(f"{server}/queue?status=all")
            rows = page.locator("#queue tbody tr")
            expect(rows).to_have_count(7)  # the five flagged demo studies and the two crafted ones
            for decision in crafted.values():
                row = page.locator(f"#queue tbody tr[data-study='{decision.study_instance_uid}']")
                expect(row.locator("form")).to_have_count(0)  # no action on an invalid UID
                expect(row.locator("a")).to_have_attribute("href", re.compile(r"^/studies/id-\d+$"))
            buttons = page.locator("#queue form button")
            for n in range(buttons.count()):
                page.goto(f"{server}/queue?status=all")
                page.locator("#queue form button").nth(n).click()
                expect(page.locator("[data-testid=who]")).to_be_visible()  # still signed in
            page.goto(f"{server}/queue?status=all")
            page.locator(f"#queue tbody tr[data-study='{crafted['logout'].study_instance_uid}'] a").click()
            expect(page.locator("[data-testid=invalid-uid]")).to_be_visible()
            expect(page.locator("form[action^='/studies/']")).to_have_count(0)
        finally:
            browser.close()
    (row,) = app_store.results(study_instance_uid=target)
    assert [f["reason_code"] for f in row["negative_flags"]] == ["other"]


def test_reviewer_judges_each_finding_with_one_click_in_the_browser(
    server: str, judged: Judged, app_store: ResultStore
) -> None:
    """No script runs (CSP): each finding is a small form, one click on Confirm or Reject; the
    artifact choice starts at the one the finding's code implies."""
    from playwright.sync_api import expect, sync_playwright

    from qc_pipeline.review.finding_labels import finding_label_rows
    from qc_pipeline.review.finding_review import load_finding_review
    from tests.review.test_finding_review import add_ai_finding

    study = judged.decisions["clipped_dr"].study_instance_uid
    add_ai_finding(app_store, study)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{server}/login?next=/studies/{study}")
            page.fill("input[name=username]", "dr.wang")
            page.fill("input[name=password]", PASSWORDS["dr.wang"])
            page.click("button[type=submit]")
            page.goto(f"{server}/studies/{study}?lang=en")
            expect(page.locator("#finding-review")).to_contain_text("Claim the study to judge its findings.")
            page.click("form[action$='/claim'] button")
            clipped = page.locator("#finding-judgements tr[data-code='image_quality.dr.clipped_stored_max.fail']")
            ai = page.locator("#finding-judgements tr[data-code^='ai.']")
            expect(clipped.locator("select[name=artifact]")).to_have_value("exposure")
            clipped.locator("button[value=confirm]").click()
            expect(page.locator("[data-testid=flash]")).to_have_text("Finding judged.")
            ai.locator("select[name=artifact]").select_option("other")
            ai.locator("button[value=reject]").click()
            expect(clipped.locator("[data-testid=judgement]")).to_contain_text("confirmed: Exposure")
            expect(ai.locator("[data-testid=judgement]")).to_contain_text("rejected: Other")
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_DIR / "finding-review.png"), full_page=True)
        finally:
            browser.close()
    rows = {
        (r["finding_code"], r["judgement"], r["reason_code"])
        for r in finding_label_rows(app_store, load_finding_review())
    }
    assert ("image_quality.dr.clipped_stored_max.fail", "confirm", "exposure") in rows
    assert any(code.startswith("ai.") and j == "reject" and reason == "other" for code, j, reason in rows)
