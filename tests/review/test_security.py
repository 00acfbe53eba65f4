"""The review app against an attacker: graders that cannot unblind, crafted UIDs that cannot hijack
buttons, sessions that end, headers, sign-in flooding, audit, permissions and password policy.

The route × role matrix at the end walks the app's own route table (spot-check mode included), so
a route added later fails it until its expected status codes are written down.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from qc_pipeline.domain import Decision
from qc_pipeline.review import accounts, service
from qc_pipeline.review.accounts import create_user
from qc_pipeline.review.app import SECURITY_HEADERS, SESSION_COOKIE, SIGN_INS_PER_CLIENT, create_app
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.rules import Thresholds
from qc_pipeline.spotcheck.app import MAX_CROP_PX, app_options, blinded_png
from qc_pipeline.spotcheck.config import SpotCheckConfig, load_config
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord
from qc_pipeline.store.review import ReviewEvent
from qc_pipeline.store.spotcheck import SpotCheckAssignment, SpotCheckCase, SpotCheckDraw
from tests.review.conftest import HIJACK_TARGET, PASSWORDS, SECRET, Judged, form_token, legacy_flag, sign_in
from tests.spotcheck.conftest import CONFIG_YAML, use_test_register

GRADER = "cq-1"
"""A grader account named in the spot-check configuration (tests/spotcheck/conftest.py)."""
GRADER_PASSWORD = "grader-pass-1"
CASE_CODE = "CJ-TEST-CASE"
BLINDED_STUDY = "clipped_dr"


def uid(judged: Judged, name: str) -> str:
    return judged.decisions[name].study_instance_uid


@pytest.fixture
def spot_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SpotCheckConfig:
    use_test_register(monkeypatch, tmp_path)
    path = tmp_path / "spot_check.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return load_config(path)


def assign_case(
    store: ResultStore, study_uid: str, reviewer: str, code: str = CASE_CODE, period: str = "2026-10"
) -> None:
    """A drawn case of ``study_uid`` assigned to ``reviewer`` (the rows ``draw`` would write)."""
    now = dt.datetime.now(dt.UTC)
    with store.writing("draw a case") as session:
        study, decision = session.execute(
            StudyRecord.__table__.select()
            .with_only_columns(StudyRecord.id, DecisionRecord.id)
            .join(DecisionRecord.__table__, DecisionRecord.study_id == StudyRecord.id)
            .where(StudyRecord.study_instance_uid == study_uid, DecisionRecord.is_current.is_(True))
        ).one()
        draw = SpotCheckDraw(
            period=period,
            seed="t",
            config_hash="h",
            config_version="test-1",
            sampling={},
            population_size=1,
            population_digest="d",
            n_drawn=1,
            excluded={},
            strata=[],
            created_at=now,
            created_by="test",
        )
        session.add(draw)
        session.flush()
        case = SpotCheckCase(
            draw_id=draw.id,
            study_id=study,
            decision_id=decision,
            case_code=code,
            patient_pseudonym="P-TEST",
            stratum="s",
            machine_verdict="fail",
            institution="x",
            region="chongqing",
            modality="DX",
            item_code=None,
            sort_key="0",
        )
        session.add(case)
        session.flush()
        session.add(
            SpotCheckAssignment(
                case_id=case.id, reviewer=reviewer, reviewer_region="chongqing", reading=1, assigned_at=now
            )
        )


@pytest.fixture
def full_app(app_store: ResultStore, thresholds: Thresholds, judged: Judged, spot_config: SpotCheckConfig) -> Any:
    """The review app with the spot-check mode, a grader and one case of ``BLINDED_STUDY`` assigned to it."""
    create_user(app_store, GRADER, GRADER_PASSWORD, role="grader")
    assign_case(app_store, uid(judged, BLINDED_STUDY), GRADER)
    return create_app(app_store, thresholds, secret_key=SECRET, lang="en", **app_options(spot_config))


@pytest.fixture
def full_client(full_app: Any) -> Iterator[TestClient]:
    with TestClient(full_app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def sign_in_as(client: TestClient, username: str) -> str:
    """Sign in any account (grader too); returns the session's CSRF token."""
    password = GRADER_PASSWORD if username == GRADER else PASSWORDS[username]
    token = form_token(client.get("/login").text)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 303, response.text
    return form_token(client.get(response.headers["location"]).text)


# -- 1. graders ----------------------------------------------------------------------------------


def test_a_grader_reaches_no_study_route(full_client: TestClient, judged: Judged) -> None:
    """Every route of the app but the grader's own answers 403 to a grader: no queue, no study
    page, no image, no study API, no action (walked from the route table)."""
    token = sign_in_as(full_client, GRADER)
    table = full_client.app.state.route_table  # type: ignore[attr-defined]
    values = {
        "uid": uid(judged, BLINDED_STUDY),
        "series_uid": "1.2.3",
        "code": "other",
        "index": "0",
        "finding_id": "1",
    }
    own = {"/", "/logout", "/api/me", "/login"}
    walked = 0
    for template, methods, _public in table:
        if template in own or template.startswith("/spot-checks"):
            continue
        for method in methods:
            response = full_client.request(
                method, template.format(**values), data={"csrf_token": token}, headers={"X-CSRF-Token": token}
            )
            walked += 1
            assert response.status_code == 403, (method, template, response.status_code)
            assert "graders see their spot-check cases only" in response.text
    assert walked >= 15
    assert full_client.get("/").headers["location"] == "/spot-checks"
    listing = full_client.get("/spot-checks")
    assert listing.status_code == 200 and CASE_CODE in listing.text
    assert 'href="/queue"' not in listing.text  # no link to what it may not open


def test_a_grader_signs_in_to_its_cases_not_the_queue(full_client: TestClient) -> None:
    token = form_token(full_client.get("/login").text)
    response = full_client.post(
        "/login", data={"username": GRADER, "password": GRADER_PASSWORD, "csrf_token": token, "next": "/queue"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/spot-checks"


def test_reviewers_and_admins_do_not_grade(full_client: TestClient) -> None:
    """A reviewer or administrator can open every study: they must not grade blinded cases."""
    for name in ("dr.wang", "qc.li"):
        sign_in_as(full_client, name)
        response = full_client.get("/spot-checks")
        assert response.status_code == 403 and "is not a grader" in response.text
        full_client.cookies.clear()


def test_a_blinded_image_is_not_the_study_pages_image(full_client: TestClient, judged: Judged) -> None:
    """The grader's image of its case shares no bytes, hash, size or URL with the study page's."""
    study = uid(judged, BLINDED_STUDY)
    sign_in_as(full_client, "qc.li")
    page = full_client.get(f"/studies/{study}").text
    study_srcs = re.findall(r'<img src="([^"]+)"', page)
    assert study_srcs
    study_images = [full_client.get(src).content for src in study_srcs]
    full_client.cookies.clear()
    sign_in_as(full_client, GRADER)
    case_page = full_client.get(f"/spot-checks/{CASE_CODE}").text
    case_srcs = re.findall(r'<img src="([^"]+)"', case_page)
    assert case_srcs == [f"/spot-checks/{CASE_CODE}/images/0.png"]
    assert study not in case_page
    blinded = full_client.get(case_srcs[0])
    assert blinded.status_code == 200 and blinded.headers["cache-control"] == "no-store"
    hashes = {hashlib.sha256(png).hexdigest() for png in study_images}
    assert hashlib.sha256(blinded.content).hexdigest() not in hashes
    sizes = {Image.open(io.BytesIO(png)).size for png in study_images}
    assert Image.open(io.BytesIO(blinded.content)).size not in sizes


def test_blinded_png_changes_every_byte_but_not_what_a_grader_sees() -> None:
    rng = np.random.default_rng(7)  # a synthetic grey image with structure
    grey = (np.add.outer(np.arange(120), np.arange(160)) % 200 + rng.integers(0, 40, (120, 160))).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(grey).convert("RGB").save(out, format="PNG", optimize=True)
    original = out.getvalue()
    first, again, other = (
        blinded_png(original, "CJ-AAAA-AAAA"),
        blinded_png(original, "CJ-AAAA-AAAA"),
        blinded_png(original, "CJ-BBBB-BBBB"),
    )
    assert first == again and first != other and first != original  # seeded by the case code
    shown = np.asarray(Image.open(io.BytesIO(first)).convert("L"), dtype=np.int16)
    rows, cols = shown.shape
    assert 120 - 2 * MAX_CROP_PX <= rows <= 120 - 4 and 160 - 2 * MAX_CROP_PX <= cols <= 160 - 4
    # Find the crop, then the difference: at most one grey level anywhere (invisible when grading).
    best = min(
        (int(np.abs(grey[t : t + rows, left : left + cols].astype(np.int16) - shown).max()), t, left)
        for t in range(2, MAX_CROP_PX + 1)
        for left in range(2, MAX_CROP_PX + 1)
        if t + rows <= 120 and left + cols <= 160
    )
    assert best[0] <= 1


# -- 2. crafted StudyInstanceUIDs ----------------------------------------------------------------


class _Targets(HTMLParser):
    """Every href, action and src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "action", "src") and value is not None:
                self.targets.append((name, value))


def targets(html: str) -> list[tuple[str, str]]:
    parser = _Targets()
    parser.feed(html)
    return parser.targets


def save_crafted(store: ResultStore, crafted: dict[str, Decision]) -> dict[str, int]:
    ids = {}
    for name, decision in crafted.items():
        store.save_decision(decision, run_id=None)
        with store.reading("id") as session:
            ids[name] = session.scalars(
                StudyRecord.__table__.select()
                .with_only_columns(StudyRecord.id)
                .where(StudyRecord.study_instance_uid == decision.study_instance_uid)
            ).one()
    return ids


def test_a_crafted_uid_is_an_ingestion_finding(crafted: dict[str, Decision]) -> None:
    for decision in crafted.values():
        (finding,) = [f for f in decision.findings if f.code == "integrity.uid.invalid"]
        assert finding.value == decision.study_instance_uid
        assert "is not a valid DICOM UID" in finding.message and "不是合法的 DICOM UID" in finding.message_zh


def test_a_crafted_uid_cannot_hijack_a_button(
    client: TestClient, app_store: ResultStore, judged: Judged, crafted: dict[str, Decision]
) -> None:
    """The queue's and the study page's href/action values name such a study by its safe key,
    offer no action on it, and no value anywhere is a path the UID could bend."""
    target = uid(judged, HIJACK_TARGET)
    admin = accounts.authenticate(app_store, "qc.li", PASSWORDS["qc.li"])
    assert admin is not None
    legacy_flag(app_store, target, admin, reason_code="other", note="kept back for the test")
    ids = save_crafted(app_store, crafted)
    token = sign_in(client, "qc.li")
    queue = client.get("/queue?status=all").text
    found = targets(queue)
    for name, study_id in ids.items():
        assert ("href", f"/studies/id-{study_id}") in found, name
        assert not any(v.startswith(f"/studies/id-{study_id}/") for _k, v in found)  # no claim button
    for kind, value in found:
        assert "#" not in value and "/../" not in value and "/flags/other/clear" not in value, (kind, value)
    for name, study_id in ids.items():
        page = client.get(f"/studies/id-{study_id}")
        assert page.status_code == 200 and 'data-testid="invalid-uid"' in page.text, name
        assert crafted[name].study_instance_uid in page.text.replace("&amp;", "&").replace(
            "&#34;", '"'
        )  # shown as text
        posts = [v for k, v in targets(page.text) if k == "action" and v.startswith("/studies/")]
        assert posts == [], posts  # no claim, decision or flag form
        for kind, value in targets(page.text):
            assert "#" not in value and "/flags/other/clear" not in value, (kind, value)
    for _kind, action in [t for t in found if t[0] == "action" and t[1].startswith("/studies/")]:
        assert client.post(action, data={"csrf_token": token}).status_code == 303  # press every button
    (row,) = app_store.results(study_instance_uid=target)
    assert [f["reason_code"] for f in row["negative_flags"]] == ["other"]
    assert client.get("/api/me").status_code == 200  # still signed in
    with pytest.raises(ReviewError, match="not a valid DICOM UID") as refused:
        service.claim(app_store, f"id-{ids['logout']}", admin)
    assert refused.value.status == 409


def test_every_segment_of_a_study_url_is_encoded() -> None:
    from qc_pipeline.review.app import study_url

    assert study_url("id-7") == "/studies/id-7"
    assert study_url("1.2.3", "images", "4/5#.png") == "/studies/1.2.3/images/4%2F5%23.png"
    assert study_url("../logout#", "claim") == "/studies/..%2Flogout%23/claim"
    assert service.study_key("1.2.840.10008.1", 3) == "1.2.840.10008.1"
    assert service.study_key("2.25.1/flags/other/clear#", 3) == "id-3"


# -- 4. sessions ---------------------------------------------------------------------------------


def test_a_replayed_cookie_after_sign_out_is_refused(client: TestClient) -> None:
    token = sign_in(client, "dr.wang")
    stolen = client.cookies.get(SESSION_COOKIE)
    assert client.get("/api/me").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, stolen)
    assert client.get("/api/me").status_code == 401
    assert client.get("/queue").status_code == 303


def test_signing_in_again_ends_the_previous_session(client: TestClient) -> None:
    sign_in(client, "dr.wang")
    first = client.cookies.get(SESSION_COOKIE)
    sign_in(client, "dr.zhao")
    assert client.get("/api/me").json()["username"] == "dr.zhao"
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, first)
    assert client.get("/api/me").status_code == 401


def test_a_session_ends_at_its_absolute_lifetime_whatever_the_activity(
    app_store: ResultStore, thresholds: Thresholds, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [dt.datetime.now(dt.UTC)]
    monkeypatch.setattr(accounts, "_now", lambda: clock[0])
    app = create_app(app_store, thresholds, secret_key=SECRET, lang="en", session_lifetime=dt.timedelta(hours=2))
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        sign_in(c, "dr.wang")
        for _ in range(7):  # busy all along: every answer renews the cookie
            clock[0] += dt.timedelta(minutes=17)
            assert c.get("/api/me").status_code == 200
        renewed = c.cookies.get(SESSION_COOKIE)
        clock[0] += dt.timedelta(minutes=2)  # 2 h 1 min after the sign-in
        assert c.get("/api/me").status_code == 401
        c.cookies.clear()
        c.cookies.set(SESSION_COOKIE, renewed)  # the latest cookie, replayed: refused too
        assert c.get("/api/me").status_code == 401


def test_a_new_password_ends_the_users_sessions(client: TestClient) -> None:
    sign_in(client, "dr.wang")
    accounts.set_password(client.app.state.store, "dr.wang", "a-new-pass-2026")  # type: ignore[attr-defined]
    assert client.get("/api/me").status_code == 401


# -- 5. headers ----------------------------------------------------------------------------------


def test_every_answer_has_the_security_headers_and_patient_data_is_not_stored(
    client: TestClient, judged: Judged
) -> None:
    sign_in(client, "dr.wang")
    study = uid(judged, "clipped_dr")
    page = client.get(f"/studies/{study}")
    src = re.search(r'<img src="([^"]+)"', page.text)
    assert src
    for response in (
        client.get("/queue"),
        page,
        client.get(src.group(1)),
        client.get(f"/api/studies/{study}"),
        client.get("/api/queue"),
        client.get("/login"),
    ):
        assert response.status_code == 200
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        assert response.headers["cache-control"] == "no-store"
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    static = client.get("/static/review.css")
    assert static.headers["x-content-type-options"] == "nosniff" and "no-store" not in static.headers.get(
        "cache-control", ""
    )


# -- 6. sign-in flooding, audit ------------------------------------------------------------------


class _HookedHasher:
    """The test's hasher with a hook run before each verification."""

    def __init__(self, inner: Any, hook: Any) -> None:
        self._inner, self._hook = inner, hook

    def verify(self, stored: str, password: str) -> bool:
        self._hook()
        return bool(self._inner.verify(stored, password))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_sign_ins_are_limited_per_client_before_any_password_is_verified(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[int] = []
    monkeypatch.setattr(accounts, "_hasher", _HookedHasher(accounts._hasher, lambda: verified.append(1)))
    token = form_token(client.get("/login").text)
    for n in range(SIGN_INS_PER_CLIENT):
        name = f"guess{n:02d}"  # other names: the per-user lockout does not trigger
        assert (
            client.post("/login", data={"username": name, "password": "x-1234567", "csrf_token": token}).status_code
            == 401
        )
    response = client.post(
        "/login", data={"username": "dr.wang", "password": PASSWORDS["dr.wang"], "csrf_token": token}
    )
    assert response.status_code == 429 and "Too many sign-in attempts from this computer" in response.text
    assert len(verified) == SIGN_INS_PER_CLIENT and "set-cookie" not in response.headers


def test_the_password_is_verified_outside_the_write_transaction(
    app_store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a sign-in verifies its password, another writer (a reviewer's claim) gets through."""
    wrote: list[bool] = []

    def another_writer() -> None:
        def write() -> None:
            with app_store.writing("a claim meanwhile") as session:
                session.add(ReviewEvent(at=dt.datetime.now(dt.UTC), event="probe"))
            wrote.append(True)

        other = threading.Thread(target=write)
        other.start()
        other.join(timeout=10)
        assert not other.is_alive(), "the write waited for the sign-in's transaction"

    monkeypatch.setattr(accounts, "_hasher", _HookedHasher(accounts._hasher, another_writer))
    assert accounts.authenticate(app_store, "dr.wang", PASSWORDS["dr.wang"]) is not None
    assert wrote == [True]


def test_a_user_name_with_a_newline_is_refused_before_it_is_logged(
    client: TestClient, app_store: ResultStore, caplog: pytest.LogCaptureFixture
) -> None:
    token = form_token(client.get("/login").text)
    forged = "dr.wang\nINFO qc_pipeline.review.accounts: sign-in accepted for qc.li"
    with caplog.at_level(logging.INFO):
        for name in (forged, "dr.wang\x1b[2K"):
            response = client.post("/login", data={"username": name, "password": "whatever-1", "csrf_token": token})
            assert response.status_code == 401
    assert all("\n" not in r.getMessage() and "\x1b" not in r.getMessage() for r in caplog.records)
    assert "sign-in refused: malformed user name" in caplog.text
    with app_store.reading("audit") as session:
        rows = session.query(ReviewEvent).filter_by(detail="malformed user name").all()
    assert len(rows) == 2 and {r.username for r in rows} == {None} and {r.client for r in rows} == {"testclient"}
    with pytest.raises(ReviewError, match=r"user name 'x\\n' must be 2 to 64"):
        create_user(app_store, "x\n", "a-good-pass-1", role="reviewer")


def test_the_audit_pages_and_filters_and_records_clients_and_sign_outs(
    client: TestClient, app_store: ResultStore, judged: Judged
) -> None:
    for n in range(230):  # anonymous noise that used to push real events out of view
        with app_store.writing("noise") as session:
            session.add(
                ReviewEvent(at=dt.datetime.now(dt.UTC), username=f"bot{n}", event="sign_in_failed", client="10.0.0.9")
            )
    token = sign_in(client, "dr.wang")
    study = uid(judged, "clipped_dr")
    client.post(f"/studies/{study}/claim", data={"csrf_token": token})
    client.post("/logout", data={"csrf_token": token})
    sign_in(client, "qc.li")
    first = client.get("/audit")
    assert first.status_code == 200 and "1 / 3" in first.text and 'rel="next"' in first.text
    last = client.get("/audit?page=3")
    assert "3 / 3" in last.text and 'rel="prev"' in last.text
    claims = client.get("/audit?event=claim")
    rows = re.findall(
        r'<tr><td>[^<]+</td><td>([^<]+)</td><td data-event="([^"]+)">([^<]+)</td><td>([^<]+)</td>', claims.text
    )
    assert rows == [("dr.wang", "claim", "claimed a study", "testclient")]  # the code, and its words
    mine = client.get("/audit?username=dr.wang")
    events = re.findall(
        r'<tr><td>[^<]+</td><td>dr.wang</td><td data-event="([^"]+)">[^<]+</td><td>([^<]+)</td>', mine.text
    )
    assert events == [
        ("logout", "testclient"),
        ("claim", "testclient"),
        ("sign_in", "testclient"),
        ("user_created", "—"),
    ]
    found = service.audit_events(app_store, service.AuditFilters(event="sign_in_failed"), per_page=100)
    assert found.total == 230 and found.pages == 3 and len(found.events) == 100
    assert client.get("/audit?day_from=yesterday").status_code == 400


# -- 7. permissions and policy -------------------------------------------------------------------


def test_a_standing_decision_of_another_is_replaced_only_with_a_claim(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Any
) -> None:
    study = uid(judged, "clipped_dr")
    service.decide(
        store, thresholds, study, accounts.reviewer, verdict="fail", reason_code="image_quality_poor", reason_text=""
    )
    with pytest.raises(ReviewError, match="dr.wang decided this study already: claim it first") as refused:
        service.decide(
            store,
            thresholds,
            study,
            accounts.other_reviewer,
            verdict="pass",
            reason_code="image_quality_acceptable",
            reason_text="looks fine to me",
        )
    assert refused.value.status == 409
    (row,) = store.results(study_instance_uid=study)
    assert row["human_decision"]["reviewer"] == "dr.wang"
    service.claim(store, study, accounts.other_reviewer)
    service.decide(
        store,
        thresholds,
        study,
        accounts.other_reviewer,
        verdict="pass",
        reason_code="image_quality_acceptable",
        reason_text="looks fine to me",
    )
    (row,) = store.results(study_instance_uid=study)
    assert row["human_decision"]["reviewer"] == "dr.zhao"
    service.decide(
        store,
        thresholds,
        study,
        accounts.other_reviewer,
        verdict="pass",  # one's own: no claim needed
        reason_code="image_quality_acceptable",
        reason_text="still fine",
    )


def test_releasing_another_reviewers_claim_is_refused_in_the_app(client: TestClient, judged: Judged) -> None:
    study = uid(judged, "clipped_dr")
    token = sign_in(client, "dr.wang")
    client.post(f"/studies/{study}/claim", data={"csrf_token": token})
    client.cookies.clear()
    token = sign_in(client, "dr.zhao")
    response = client.post(f"/api/studies/{study}/release", headers={"X-CSRF-Token": token})
    assert response.status_code == 403 and "the claim is dr.wang's" in response.json()["error"]
    client.post(f"/studies/{study}/release", data={"csrf_token": token})
    page = client.get(f"/studies/{study}").text
    assert "the claim is dr.wang&#39;s" in page and "Claim released." not in page
    assert client.get(f"/api/studies/{study}").json()["claimed_by"] == "dr.wang"


@pytest.mark.parametrize(
    ("password", "match"),
    [
        ("aaaaaaaaaa", "at least 4 different characters"),
        ("abababababab", "at least 4 different characters"),
        ("abcdefghijkl", "mix at least two of"),
        ("Password123", "one of the most common passwords"),
        ("qwerty123456", "one of the most common passwords"),
        ("Dr.Wang.2026", None),
        ("影像科-复核-2026", None),
    ],
)
def test_new_passwords_have_a_minimum_strength(sqlite_url: str, password: str, match: str | None) -> None:
    with ResultStore.open(sqlite_url) as store:
        if match is None:
            assert create_user(store, "dr.wang", password, role="reviewer").username == "dr.wang"
        else:
            with pytest.raises(ReviewError, match=match):
                create_user(store, "dr.wang", password, role="reviewer")
    with ResultStore.open(sqlite_url) as store:
        with pytest.raises(ReviewError, match="one of the most common passwords .or the user name."):
            create_user(store, "dr.li.2026x", "DR.LI.2026X", role="reviewer")


def test_reviewers_do_not_see_server_paths(client: TestClient, judged: Judged) -> None:
    study = uid(judged, "clipped_dr")
    source = str(judged.root)
    sign_in(client, "dr.wang")
    assert "source_uri" not in client.get(f"/api/studies/{study}").json()
    assert source not in client.get(f"/studies/{study}").text
    client.cookies.clear()
    sign_in(client, "qc.li")
    assert source in client.get(f"/api/studies/{study}").json()["source_uri"]


# -- the route x role matrix ---------------------------------------------------------------------

ROLES = ("anonymous", "reviewer", "grader", "admin")
ACCOUNTS = {"reviewer": "dr.wang", "grader": GRADER, "admin": "qc.li"}
MATRIX: dict[tuple[str, str], tuple[int, int, int, int]] = {
    # (method, route): expected status for anonymous, reviewer, grader, admin
    ("GET", "/login"): (200, 200, 200, 200),
    ("POST", "/login"): (401, 401, 401, 401),  # with the form's token and a wrong password
    ("GET", "/"): (303, 303, 303, 303),
    ("POST", "/logout"): (401, 303, 303, 303),
    ("GET", "/api/me"): (401, 200, 200, 200),
    ("GET", "/queue"): (303, 200, 403, 200),
    ("GET", "/studies/{uid}"): (303, 200, 403, 200),
    ("GET", "/studies/{uid}/images/{series_uid}.png"): (303, 200, 403, 200),
    ("POST", "/studies/{uid}/claim"): (401, 303, 403, 303),
    ("POST", "/studies/{uid}/release"): (401, 303, 403, 303),  # 303: back to the page with the message
    ("POST", "/studies/{uid}/decision"): (401, 303, 403, 303),
    ("POST", "/studies/{uid}/findings/{finding_id}"): (401, 303, 403, 303),  # 303 back: "claim the study first"
    ("POST", "/studies/{uid}/flags"): (401, 303, 403, 303),  # reviewer: 303 back with "administrators only"
    ("POST", "/studies/{uid}/flags/{code}/clear"): (401, 303, 403, 404),  # admin: no such flag set
    ("GET", "/audit"): (303, 403, 403, 200),
    ("GET", "/api/queue"): (401, 200, 403, 200),
    ("GET", "/api/studies/{uid}"): (401, 200, 403, 200),
    ("POST", "/api/studies/{uid}/claim"): (401, 200, 403, 200),
    ("POST", "/api/studies/{uid}/release"): (401, 409, 403, 409),  # nobody holds a claim
    ("POST", "/api/studies/{uid}/decision"): (401, 200, 403, 200),
    ("POST", "/api/studies/{uid}/findings/{finding_id}"): (401, 409, 403, 409),  # nobody holds a claim
    ("POST", "/api/studies/{uid}/flags"): (401, 403, 403, 410),  # study-level flags are withdrawn
    ("POST", "/api/studies/{uid}/flags/{code}/clear"): (401, 403, 403, 404),  # no such flag set
    ("GET", "/spot-checks"): (303, 403, 200, 403),
    ("GET", "/spot-checks/{code}"): (303, 403, 200, 403),
    ("GET", "/spot-checks/{code}/images/{index}.png"): (303, 403, 200, 403),
    ("GET", "/spot-checks/{code}/series/{index}"): (303, 403, 200, 403),
    ("GET", "/spot-checks/{code}/series/{index}/slices/{slice_index}.png"): (303, 403, 200, 403),
    ("POST", "/spot-checks/{code}"): (401, 403, 303, 403),
}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/studies/{uid}/decision"): {"data": {"verdict": "fail", "reason_code": "image_quality_poor"}},
    ("POST", "/studies/{uid}/flags"): {"data": {"reason_code": "forensic"}},
    ("POST", "/api/studies/{uid}/decision"): {"json": {"verdict": "fail", "reason_code": "image_quality_poor"}},
    ("POST", "/api/studies/{uid}/flags"): {"json": {"reason_code": "forensic"}},
    ("POST", "/studies/{uid}/findings/{finding_id}"): {"data": {"judgement": "confirm", "artifact": "exposure"}},
    ("POST", "/api/studies/{uid}/findings/{finding_id}"): {"json": {"judgement": "confirm", "reason_code": "exposure"}},
    ("POST", "/spot-checks/{code}"): {"data": {"grade": "甲", "recognisable": "yes"}},
    ("POST", "/login"): {"data": {"username": "dr.wang", "password": "not-the-password"}},
}


def test_the_matrix_covers_every_route(full_app: Any) -> None:
    routes = {(m, path) for path, methods, _public in full_app.state.route_table for m in methods}
    assert routes == set(MATRIX), routes ^ set(MATRIX)


def finding_id(client: TestClient, study_uid: str) -> int:
    """The row id of the study's first review/fail finding (read from the store, whoever asks)."""
    from sqlalchemy import select

    from qc_pipeline.store.models import FindingRecord

    store: ResultStore = client.app.state.store  # type: ignore[attr-defined]
    with store.reading("t") as session:
        found = session.scalars(
            select(FindingRecord.id)
            .join(DecisionRecord, DecisionRecord.id == FindingRecord.decision_id)
            .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
            .where(
                StudyRecord.study_instance_uid == study_uid,
                DecisionRecord.is_current.is_(True),
                FindingRecord.severity.in_(("review", "fail")),
            )
            .order_by(FindingRecord.ordinal)
        ).first()
    assert found is not None
    return int(found)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "route"), sorted(MATRIX))
def test_route_role_matrix(full_client: TestClient, judged: Judged, method: str, route: str, role: str) -> None:
    """One request per route and role, with a real study and case; the status is the expected one."""
    token = (
        form_token(full_client.get("/login").text) if role == "anonymous" else sign_in_as(full_client, ACCOUNTS[role])
    )
    study = judged.decisions[BLINDED_STUDY]
    series = study.series[0].series_instance_uid
    values = {
        "uid": study.study_instance_uid,
        "series_uid": series,
        "code": CASE_CODE if route.startswith("/spot") else "forensic",
        "index": "0",
        "slice_index": "0",
        "finding_id": str(finding_id(full_client, study.study_instance_uid)),
    }
    body = BODIES.get((method, route), {"data": {}})
    kwargs: dict[str, Any] = {"headers": {"X-CSRF-Token": token}}
    if "data" in body:
        kwargs["data"] = {"csrf_token": token, **body["data"]}
    else:
        kwargs["json"] = body["json"]
    response = full_client.request(method, route.format(**values), **kwargs)
    expected = MATRIX[(method, route)][ROLES.index(role)]
    assert response.status_code == expected, (method, route, role, response.status_code, response.text[:300])
