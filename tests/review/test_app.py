"""The review web app over HTTP: sign-in, CSRF, anonymous refusal on every route, pages, JSON API."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from qc_pipeline.review.accounts import MAX_FAILED_SIGN_INS, authenticate, set_active, set_password
from qc_pipeline.review.app import CSRF_HEADER, SESSION_COOKIE
from qc_pipeline.store import ResultStore
from tests.review.conftest import PASSWORDS, Judged, form_token, legacy_flag, sign_in

SAMPLE_PATH_VALUES = {"uid": "1.2.3", "series_uid": "4.5.6", "code": "forensic", "finding_id": "1"}


def uid(judged: Judged, name: str) -> str:
    return judged.decisions[name].study_instance_uid


def test_every_route_refuses_anonymous_visitors(client: TestClient) -> None:
    """Walk the app's own route table, so a route added later (extra routers too) is covered."""
    walked = 0
    table = client.app.state.route_table  # type: ignore[attr-defined]
    assert {path for path, _methods, public in table if public} == {"/login"}
    for path_template, methods, public in table:
        if public:
            continue
        path = path_template.format(**SAMPLE_PATH_VALUES)
        for method in methods:
            response = client.request(method, path, data={"csrf_token": "x"})
            walked += 1
            if path.startswith("/api/") or method != "GET":
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.json() == {"error": "sign in first", "error_zh": "请先登录"}
            else:
                assert response.status_code == 303, (method, path, response.status_code)
                assert response.headers["location"].startswith("/login?next=")
    assert walked >= 17
    mounts = [r.path for r in client.app.routes if isinstance(r, Mount)]  # type: ignore[attr-defined]
    assert mounts == ["/static"]
    # What is public shows no data: the sign-in form and the style sheet.
    assert client.get("/static/review.css").status_code == 200
    assert client.get("/docs").status_code in (401, 404) and client.get("/openapi.json").status_code in (401, 404)


def test_sign_in_sets_a_hardened_session_cookie(client: TestClient) -> None:
    token = form_token(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "dr.wang", "password": PASSWORDS["dr.wang"], "csrf_token": token}
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    me = client.get("/api/me").json()
    assert me == {"username": "dr.wang", "display_name": "王医生", "role": "reviewer"}


def test_sign_in_is_refused_without_csrf_or_with_a_wrong_password(client: TestClient) -> None:
    response = client.post("/login", data={"username": "dr.wang", "password": PASSWORDS["dr.wang"]})
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    token = form_token(client.get("/login").text)
    response = client.post("/login", data={"username": "dr.wang", "password": "not-the-password", "csrf_token": token})
    assert response.status_code == 401 and "Wrong user name or password." in response.text
    response = client.post("/login", data={"username": "nobody", "password": "whatever-123", "csrf_token": token})
    assert response.status_code == 401
    assert client.get("/api/me").status_code == 401


def test_a_locked_out_name_gets_a_clear_message_not_a_session(client: TestClient) -> None:
    token = form_token(client.get("/login").text)
    for _ in range(MAX_FAILED_SIGN_INS):
        response = client.post("/login", data={"username": "dr.zhao", "password": "a-wrong-guess", "csrf_token": token})
        assert response.status_code == 401
    response = client.post(
        "/login", data={"username": "dr.zhao", "password": PASSWORDS["dr.zhao"], "csrf_token": token}
    )
    assert response.status_code == 429 and "too many failed sign-ins" in response.text
    assert "set-cookie" not in response.headers and client.get("/api/me").status_code == 401
    client.get("/login?lang=zh")
    response = client.post(
        "/login", data={"username": "dr.zhao", "password": PASSWORDS["dr.zhao"], "csrf_token": token}
    )
    assert response.status_code == 429 and "登录失败次数过多" in response.text
    sign_in(client)  # another user is not locked out


def test_every_form_needs_the_csrf_token(client: TestClient, judged: Judged) -> None:
    token = sign_in(client)
    study = uid(judged, "age_mismatch")
    for path in (f"/studies/{study}/claim", f"/studies/{study}/decision", "/logout"):
        assert client.post(path, data={"verdict": "pass"}).status_code == 403
        assert client.post(path, data={"csrf_token": "forged-" + token[7:]}).status_code == 403
    assert client.post(f"/api/studies/{study}/claim").status_code == 403
    assert client.post(f"/api/studies/{study}/claim", headers={CSRF_HEADER: token}).status_code == 200
    # Every form the pages render carries the token.
    page = client.get(f"/studies/{study}").text
    forms = re.findall(r"<form method=\"post\".*?</form>", page, flags=re.S)
    assert forms and all(f'name="csrf_token" value="{token}"' in f for f in forms)


def test_queue_page_lists_the_flagged_studies_with_filters(client: TestClient, judged: Judged) -> None:
    sign_in(client)
    page = client.get("/queue")
    assert page.status_code == 200
    listed = re.findall(r'data-study="([^"]+)"', page.text)
    assert uid(judged, "age_mismatch") in listed and uid(judged, "phantom_ct_chest") not in listed
    assert len(listed) == 5
    assert re.findall(r'data-study="([^"]+)"', client.get("/queue?modality=MR").text) == [uid(judged, "ghosted_mr")]
    assert client.get("/queue?date_from=31.10.2026").status_code == 400
    api = client.get("/api/queue", params={"verdict": "review"}).json()
    assert api["total"] == 2 and [r["verdict"] for r in api["rows"]] == ["review", "review"]


def test_study_page_shows_images_findings_metrics_and_the_viewer_link(client: TestClient, judged: Judged) -> None:
    sign_in(client)
    study = uid(judged, "ghosted_mr")
    page = client.get(f"/studies/{study}").text
    decision = judged.decisions["ghosted_mr"]
    assert str(decision.study.patient_id) in page  # identifiers for signed-in users only
    assert "ghosting ratio" in page and "mr.ghosting_percent" in page and "(fail)" in page
    assert "orange: air along the phase-encode direction" in page
    assert f'href="https://cloud.example.cn/viewer?study={study}"' in page
    images = re.findall(r'src="(/studies/[^"]+\.png)"', page)
    assert len(images) == len({m.series_instance_uid for m in decision.measurements})
    png = client.get(images[0])
    assert (
        png.status_code == 200
        and png.headers["content-type"] == "image/png"
        and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    )
    assert client.get(f"/studies/{study}/images/9.9.9.png").status_code == 404
    assert client.get("/studies/1.2.3").status_code == 404


def test_truncated_series_still_gets_an_image_and_unknown_studies_a_clear_error(
    client: TestClient, judged: Judged
) -> None:
    sign_in(client)
    page = client.get(f"/studies/{uid(judged, 'truncated_file')}").text
    assert "1 file(s) with truncated pixel data left out" in page


def test_override_through_the_form_changes_eligibility(
    client: TestClient, judged: Judged, app_store: ResultStore
) -> None:
    token = sign_in(client)
    study = uid(judged, "age_mismatch")
    page = client.get(f"/studies/{study}").text
    assert 'data-testid="eligibility" class="no">not eligible' in page
    decision_id = re.search(r'name="decision_id" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post(
        f"/studies/{study}/decision",
        data={
            "csrf_token": token,
            "verdict": "pass",
            "reason_code": "metadata_error",
            "reason_text": "age field wrong, images fine",
            "decision_id": decision_id,
        },
    )
    assert response.status_code == 303 and response.headers["location"] == f"/studies/{study}"
    page = client.get(f"/studies/{study}").text
    assert "Decision saved." in page
    assert 'data-testid="eligibility" class="ok">eligible' in page and "from the human decision" in page
    assert "age field wrong, images fine" in page  # in the history
    (row,) = app_store.results(study_instance_uid=study)
    assert row["human_decision"]["reviewer"] == "dr.wang" and row["eligible"] is True
    # An invalid decision is explained on the page (303 back to it, the message flashed).
    response = client.post(
        f"/studies/{study}/decision", data={"csrf_token": token, "verdict": "maybe", "reason_code": "other"}
    )
    assert response.status_code == 303
    assert "the decision must be pass or fail" in client.get(f"/studies/{study}").text


def test_json_api_decision_and_claims(client: TestClient, judged: Judged, app_store: ResultStore) -> None:
    token = sign_in(client)
    study = uid(judged, "clipped_dr")
    headers = {CSRF_HEADER: token}
    detail = client.get(f"/api/studies/{study}").json()
    assert detail["verdict"] == "fail" and detail["decision_id"] > 0 and detail["human_decision"] is None
    assert client.post(f"/api/studies/{study}/claim", headers=headers).json()["claimed_by"] == "dr.wang"

    other = TestClient(client.app, follow_redirects=False)
    other_token = sign_in(other, "dr.zhao")
    refused = other.post(f"/api/studies/{study}/claim", headers={CSRF_HEADER: other_token})
    assert refused.status_code == 409 and "dr.wang is reviewing this study" in refused.json()["error"]
    body = {"verdict": "fail", "reason_code": "image_quality_poor", "decision_id": detail["decision_id"]}
    assert (
        other.post(f"/api/studies/{study}/decision", json=body, headers={CSRF_HEADER: other_token}).status_code == 409
    )

    bad = client.post(
        f"/api/studies/{study}/decision", content=b"[1]", headers={**headers, "content-type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"] == "the request body must be a JSON object"
    saved = client.post(f"/api/studies/{study}/decision", json=body, headers=headers)
    assert saved.status_code == 200
    assert saved.json()["human_decision"]["action"] == "confirm" and saved.json()["eligible"] is False


def test_study_level_negative_list_flags_are_withdrawn(client: TestClient, judged: Judged) -> None:
    study = uid(judged, "age_mismatch")
    token = sign_in(client)
    refused = client.post(f"/api/studies/{study}/flags", json={"reason_code": "forensic"}, headers={CSRF_HEADER: token})
    assert refused.status_code == 403
    assert client.get("/audit").status_code == 403

    admin = TestClient(client.app, follow_redirects=False)
    admin_token = sign_in(admin, "qc.li")
    gone = admin.post(
        f"/api/studies/{study}/flags", json={"reason_code": "patient_request"}, headers={CSRF_HEADER: admin_token}
    )
    assert gone.status_code == 410 and "receiving visit" in gone.json()["error"]
    page = admin.get(f"/studies/{study}").text
    assert 'id="flag-form"' not in page and 'data-testid="negative-list-note"' in page and "§4(三)" in page
    store = client.app.state.store
    legacy_flag(
        store, study, authenticate(store, "qc.li", PASSWORDS["qc.li"]), reason_code="patient_request", note=None
    )
    page = client.get(f"/studies/{study}").text
    assert "Patient request" in page and "negative list:" not in page  # shown, not withdrawing the study


def test_language_switch_and_default(client: TestClient) -> None:
    assert "Sign in" in client.get("/login").text
    page = client.get("/login?lang=zh").text
    assert "登录" in page and 'lang="zh-CN"' in page
    sign_in(client)
    assert "复核队列" in client.get("/queue").text  # the choice survives signing in


def test_a_password_change_or_disabled_account_ends_the_session(client: TestClient, app_store: ResultStore) -> None:
    sign_in(client)
    assert client.get("/api/me").status_code == 200
    set_password(app_store, "dr.wang", "a-brand-new-password")
    assert client.get("/api/me").status_code == 401
    token = form_token(client.get("/login").text)
    client.post("/login", data={"username": "dr.wang", "password": "a-brand-new-password", "csrf_token": token})
    assert client.get("/api/me").status_code == 200
    set_active(app_store, "dr.wang", False)
    assert client.get("/api/me").status_code == 401


def test_sign_out(client: TestClient) -> None:
    token = sign_in(client)
    assert client.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
    assert client.get("/api/me").status_code == 401


def test_patient_identifiers_never_reach_the_logs(
    client: TestClient, judged: Judged, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = sign_in(client)
    for name in ("age_mismatch", "ghosted_mr"):
        study = uid(judged, name)
        client.get(f"/studies/{study}")
        client.post(
            f"/studies/{study}/decision",
            data={"csrf_token": token, "verdict": "fail", "reason_code": "finding_confirmed"},
        )
    logged = caplog.text
    assert "decision" in logged
    for name in ("age_mismatch", "ghosted_mr"):
        summary = judged.decisions[name].study
        assert summary.patient_id and summary.patient_id not in logged
