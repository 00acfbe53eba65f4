"""The recognition API against the ASGI app on SQLite (one test on PostgreSQL): tokens and scopes,
minimum-necessary lookup answers, idempotent events, the rate limit, the audit and the OpenAPI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from qc_pipeline.recognition.api import PREFIX
from qc_pipeline.store.recognition import RecognitionApiCall, RecognitionEvent, revoke_token, sha256_hex
from qc_pipeline.store.review import NonRecognition
from tests.recognition.conftest import (
    ISSUER,
    LIMIT,
    PATIENT_ID,
    PATIENT_NAME,
    UID_FAIL,
    UID_PASS,
    Api,
    auth,
)

STUDY_KEYS = {
    "study_instance_uid",
    "item",
    "institution",
    "study_date",
    "verdict",
    "eligible_until",
    "recognition_mark",
    "viewer_url",
}
BY_PATIENT = {"patient_id": PATIENT_ID, "issuer": ISSUER}


def event(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "event_id": "his-b-2026-000001",
        "study_instance_uid": UID_PASS,
        "outcome": "recognised",
        "receiving_institution": ISSUER,
        "department": "呼吸内科",
        "at": "2026-12-05T10:00:00+08:00",
    }
    body.update(changes)
    return body


def calls(api: Api) -> list[RecognitionApiCall]:
    with api.store.reading("read the audit") as session:
        return list(session.scalars(select(RecognitionApiCall).order_by(RecognitionApiCall.id)).all())


# -- authentication and scopes -------------------------------------------------------------------


def test_no_token_is_refused_with_401(api: Api) -> None:
    response = api.client.get(f"{PREFIX}/studies", params=BY_PATIENT)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert PATIENT_ID not in response.text


def test_a_wrong_or_revoked_token_is_refused_with_401(api: Api) -> None:
    assert api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup + "x")).status_code == 401
    assert api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup)).status_code == 200
    with api.store.writing("revoke") as session:
        assert revoke_token(session, "his-lookup")
    response = api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup))
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "a valid bearer token is required"


def test_a_lookup_only_token_cannot_post_events(api: Api) -> None:
    response = api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.lookup))
    assert response.status_code == 403
    assert "'events' scope" in response.json()["detail"]["error"]
    with api.store.reading("count") as session:
        assert session.scalar(select(func.count(RecognitionEvent.id))) == 0


def test_only_the_sha256_of_a_token_is_stored(api: Api) -> None:
    with api.store.engine.connect() as conn:
        dump = json.dumps(
            [list(r) for r in conn.exec_driver_sql("SELECT * FROM recognition_tokens").all()], default=str
        )
    assert api.lookup not in dump and sha256_hex(api.lookup) in dump


# -- lookup: minimum necessary, eligible only ----------------------------------------------------


def test_lookup_by_patient_returns_only_the_listed_fields_of_eligible_studies(api: Api) -> None:
    response = api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup))
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"as_of", "studies"}
    (study,) = answer["studies"]  # the failed study of the same patient is not recognisable
    assert set(study) == STUDY_KEYS
    assert study["study_instance_uid"] == UID_PASS
    assert study["item"] == {"code": "YB-001", "name_zh": "胸部CT平扫", "name_en": "CT chest plain"}
    assert study["institution"] == ISSUER
    assert study["verdict"] == "pass"
    assert study["eligible_until"] == (api.today + dt.timedelta(days=27)).isoformat()
    assert study["recognition_mark"] == "渝北HR"
    assert study["viewer_url"] == f"https://cloud.example/viewer?study={UID_PASS}&acc=ACC-P"
    for secret in (PATIENT_NAME, PATIENT_ID, "Noise too high", "噪声过高", "门诊胸部扫描"):
        assert secret not in response.text, secret


def test_a_failed_study_is_not_returned_by_accession(api: Api) -> None:
    failed = api.client.get(f"{PREFIX}/studies", params={"accession": "ACC-F"}, headers=auth(api.lookup))
    assert failed.status_code == 200 and failed.json()["studies"] == []
    passed = api.client.get(f"{PREFIX}/studies", params={"accession": "ACC-P"}, headers=auth(api.lookup))
    assert [s["study_instance_uid"] for s in passed.json()["studies"]] == [UID_PASS]
    assert UID_FAIL not in failed.text + passed.text


def test_patient_id_without_a_registered_issuer_is_refused(api: Api) -> None:
    missing = api.client.get(f"{PREFIX}/studies", params={"patient_id": PATIENT_ID}, headers=auth(api.lookup))
    assert missing.status_code == 422 and "issuer" in missing.json()["detail"]["error"]
    unknown = api.client.get(
        f"{PREFIX}/studies", params={**BY_PATIENT, "issuer": "某不存在医院"}, headers=auth(api.lookup)
    )
    assert unknown.status_code == 422 and "not a registered institution" in unknown.json()["detail"]["error"]
    other = api.client.get(
        f"{PREFIX}/studies", params={**BY_PATIENT, "issuer": "四川大学华西医院"}, headers=auth(api.lookup)
    )
    assert other.status_code == 200 and other.json()["studies"] == []  # same PatientID at another hospital


# -- events ------------------------------------------------------------------------------------


def test_an_event_is_idempotent_on_its_id(api: Api) -> None:
    first = api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.both))
    assert first.status_code == 201, first.text
    again = api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.both))
    assert again.status_code == 200
    assert again.json() == first.json()
    with api.store.reading("count") as session:
        assert session.scalar(select(func.count(RecognitionEvent.id))) == 1


def test_reusing_an_event_id_with_another_body_is_a_409(api: Api) -> None:
    assert api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.both)).status_code == 201
    other = event(outcome="not_recognised", reason_code="condition_changed")
    response = api.client.post(f"{PREFIX}/events", json=other, headers=auth(api.both))
    assert response.status_code == 409
    assert "already used with another body" in response.json()["detail"]["error"]
    with api.store.reading("read") as session:
        assert session.scalars(select(RecognitionEvent.outcome)).all() == ["recognised"]


def test_a_non_recognition_needs_a_known_reason_and_is_recorded_as_one(api: Api) -> None:
    no_reason = api.client.post(f"{PREFIX}/events", json=event(outcome="not_recognised"), headers=auth(api.both))
    assert no_reason.status_code == 422 and "reason_code is required" in no_reason.text
    bad = api.client.post(
        f"{PREFIX}/events", json=event(outcome="not_recognised", reason_code="bored"), headers=auth(api.both)
    )
    assert bad.status_code == 422 and "unknown reason_code 'bored'" in bad.text
    ok = api.client.post(
        f"{PREFIX}/events",
        json=event(outcome="not_recognised", reason_code="condition_changed"),
        headers=auth(api.both),
    )
    assert ok.status_code == 201, ok.text
    with api.store.reading("read") as session:
        (nr,) = session.scalars(select(NonRecognition)).all()
    assert (nr.reason_code, nr.receiving_institution, nr.recorded_by) == ("condition_changed", ISSUER, "api:his-b")


def test_an_event_for_another_institution_or_an_unknown_study_is_refused(api: Api) -> None:
    other = api.client.post(
        f"{PREFIX}/events", json=event(receiving_institution="四川大学华西医院"), headers=auth(api.both)
    )
    assert other.status_code == 403 and "token's own" in other.json()["detail"]["error"]
    unknown = api.client.post(f"{PREFIX}/events", json=event(study_instance_uid="1.2.3.4"), headers=auth(api.both))
    assert unknown.status_code == 404 and "no study" in unknown.json()["detail"]["error"]


# -- rate limit, audit, OpenAPI -------------------------------------------------------------------


def test_calls_beyond_the_limit_get_429_with_retry_after(api: Api) -> None:
    for _ in range(LIMIT):
        assert (
            api.client.get(f"{PREFIX}/studies", params={"accession": "ACC-P"}, headers=auth(api.lookup)).status_code
            == 200
        )
    api.clock[0] += 20.0
    refused = api.client.get(f"{PREFIX}/studies", params={"accession": "ACC-P"}, headers=auth(api.lookup))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "40"
    # another token has its own budget; the window slides
    assert api.client.get(f"{PREFIX}/studies", params={"accession": "ACC-P"}, headers=auth(api.both)).status_code == 200
    api.clock[0] += 41.0
    assert (
        api.client.get(f"{PREFIX}/studies", params={"accession": "ACC-P"}, headers=auth(api.lookup)).status_code == 200
    )


def test_every_call_is_audited_without_identifiers_in_clear(api: Api) -> None:
    api.client.get(f"{PREFIX}/studies", params=BY_PATIENT)
    api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup))
    api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.lookup))
    rows = calls(api)
    assert [(r.token_name, r.method, r.route, r.status) for r in rows] == [
        (None, "GET", f"{PREFIX}/studies", 401),
        ("his-lookup", "GET", f"{PREFIX}/studies", 200),
        ("his-lookup", "POST", f"{PREFIX}/events", 403),
    ]
    expected = sha256_hex(json.dumps({"issuer": ISSUER, "patient_id": PATIENT_ID}, sort_keys=True))
    assert rows[0].query_hash == rows[1].query_hash == expected
    with api.store.engine.connect() as conn:
        dump = json.dumps(
            [list(r) for r in conn.exec_driver_sql("SELECT * FROM recognition_api_calls").all()],
            default=str,
            ensure_ascii=False,
        )
    assert PATIENT_ID not in dump and ISSUER not in dump


def test_openapi_describes_the_routes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    lookup, post = spec["paths"][f"{PREFIX}/studies"]["get"], spec["paths"][f"{PREFIX}/events"]["post"]
    assert lookup["summary"] == "Recognisable studies of a patient or an accession"
    assert "no patient name" in lookup["description"]
    assert post["summary"] == "Record what the receiving hospital did with a result"
    assert "Idempotent on `event_id`" in post["description"]
    assert {"401", "403", "429"} <= set(lookup["responses"]) and "409" in post["responses"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert set(spec["components"]["schemas"]["RecognisableStudy"]["properties"]) == STUDY_KEYS


@pytest.mark.postgres
def test_lookup_and_event_on_postgresql(api_any_backend: Api) -> None:
    api = api_any_backend
    found = api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.both)).json()["studies"]
    assert [s["study_instance_uid"] for s in found] == [UID_PASS]
    assert api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.both)).status_code == 201
    assert api.client.post(f"{PREFIX}/events", json=event(), headers=auth(api.both)).status_code == 200
    assert [r.status for r in calls(api)] == [200, 201, 200]


def test_an_answer_that_cannot_be_audited_is_withheld(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import qc_pipeline.recognition.api as api_module
    from qc_pipeline.errors import StoreError

    def broken(*_args: object) -> None:
        raise StoreError("cannot audit a recognition API call: disk full")

    monkeypatch.setattr(api_module, "_write_audit", broken)
    response = api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup))
    assert response.status_code == 503
    assert response.json()["error"] == "audit unavailable; retry later"
    assert UID_PASS not in response.text


def test_repeated_calls_without_a_valid_token_are_throttled_per_client(api: Api) -> None:
    for _ in range(LIMIT):
        assert api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth("qcr_guess")).status_code == 401
    refused = api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth("qcr_guess"))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    # a valid token keeps its own budget
    assert api.client.get(f"{PREFIX}/studies", params=BY_PATIENT, headers=auth(api.lookup)).status_code == 200


# -- findings, for the QC centre's systems only ----------------------------------------------------


def test_findings_need_their_own_scope_and_carry_no_patient_data(api: Api) -> None:
    from qc_pipeline.store.recognition import create_token

    url = f"{PREFIX}/studies/{UID_FAIL}/findings"
    refused = api.client.get(url, headers=auth(api.both))  # lookup + events: a hospital's clinic system
    assert refused.status_code == 403 and "'findings' scope" in refused.json()["detail"]["error"]
    with api.store.writing("a QC-centre token") as session:
        qc = create_token(session, name="qc-centre", institution=ISSUER, scopes=["findings"])
    answer = api.client.get(url, headers=auth(qc))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["verdict"], body["machine_verdict"], body["eligible"]) == ("fail", "fail", False)
    (finding,) = body["findings"]
    assert finding == {
        "code": "ct.noise.high",
        "category": "image_quality",
        "severity": "fail",
        "message_en": "Noise too high",
        "message_zh": "噪声过高",
        "value": "42 HU",
        "limit": "30 HU",
    }
    assert PATIENT_ID not in answer.text and PATIENT_NAME not in answer.text
    assert api.client.get(f"{PREFIX}/studies/1.2.3.4/findings", headers=auth(qc)).status_code == 404
    assert api.client.get(f"{PREFIX}/studies?accession=ACC-F", headers=auth(qc)).status_code == 403  # no lookup scope
    audited = [c for c in calls(api) if c.token_name == "qc-centre"]
    assert [c.status for c in audited] == [200, 404, 403]
