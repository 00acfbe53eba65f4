"""The review app reads like a radiologist's page, not a developer's: metrics per series with the
judged ones first, no rule or metric ids in the visible text, a study without an accession number
named as such, and buttons that match what the user may still do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qc_pipeline.review import service
from qc_pipeline.review.accounts import authenticate
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore
from tests.review.conftest import CASES, PASSWORDS, Judged, form_token, sign_in
from tests.review.test_security import (  # noqa: F401  (fixtures)
    CASE_CODE,
    GRADER,
    full_app,
    full_client,
    sign_in_as,
    spot_config,
)


class _Visible(HTMLParser):
    """The text a person sees: text nodes outside <script>/<style>/<head>, plus alt and title."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._hidden += 1
        for name, value in attrs:
            if name in ("alt", "title", "placeholder") and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "\n".join(parser.parts)


DOTTED_ID = re.compile(r"\b[a-z][a-z0-9_]*(?:\.[a-z0-9_]+){2,}\b")
"""A rule id like ``image_quality.ct.noise_hu.review`` (three dotted lowercase words or more)."""


def ids_in(text: str, metric_ids: set[str]) -> list[str]:
    found = DOTTED_ID.findall(text)
    found += [m for m in metric_ids if re.search(rf"(?<![\w.]){re.escape(m)}(?![\w.])", text)]
    return found


def metric_ids(store: ResultStore, thresholds: Thresholds, judged: Judged) -> set[str]:
    """Every metric id of the demo studies and every rule's metric (ids with ``_`` or ``.``: a bare
    word like ``snr`` is also plain text)."""
    names = {r.metric for r in _rules(thresholds)}
    for name in CASES:
        view = service.study_view(store, thresholds, judged.decisions[name].study_instance_uid)
        names |= {m.metric for m in view.metric_rows} | {m["metric"] for m in view.ai_scores}
    return {n for n in names if n and ("_" in n or "." in n)}


def _rules(thresholds: Thresholds) -> list[Any]:
    from qc_pipeline.checks.image_quality import rules_by_metric

    return [r for rules in rules_by_metric(thresholds).values() for r in rules]


def zh(client: TestClient, url: str) -> Any:
    return client.get(url + ("&" if "?" in url else "?") + "lang=zh")


@pytest.fixture
def zh_client(full_client: TestClient) -> Iterator[TestClient]:
    yield full_client


def test_no_rule_or_metric_id_in_the_chinese_pages(
    full_client: TestClient, app_store: ResultStore, thresholds: Thresholds, judged: Judged
) -> None:
    ids = metric_ids(app_store, thresholds, judged)
    assert "upload_delay_h" in ids and any("." in i for i in ids)  # the scan looks for real ids
    pages: dict[str, str] = {}
    token = sign_in_as(full_client, "dr.wang")
    key = judged.decisions["age_mismatch"].study_instance_uid
    full_client.post(f"/studies/{key}/claim", data={"csrf_token": token})  # an audit event with a study
    pages["queue"] = zh(full_client, "/queue").text
    for name in CASES:
        pages[name] = zh(full_client, "/studies/" + judged.decisions[name].study_instance_uid).text
    full_client.post("/logout", data={"csrf_token": token})
    token = sign_in_as(full_client, "qc.li")
    pages["audit"] = zh(full_client, "/audit").text
    full_client.post("/logout", data={"csrf_token": token})
    sign_in_as(full_client, GRADER)
    pages["spot-check case"] = zh(full_client, f"/spot-checks/{CASE_CODE}").text
    pages["spot-check series"] = zh(full_client, f"/spot-checks/{CASE_CODE}/series/0").text
    forbidden = zh(full_client, "/queue")
    assert forbidden.status_code == 403
    pages["403"] = forbidden.text
    leaks = {name: ids_in(visible_text(html), ids) for name, html in pages.items()}
    assert {name: found for name, found in leaks.items() if found} == {}
    # and the words are Chinese: the 403 page, the audit's event names, severities
    assert "此页面仅供复核医师和质控管理员使用" in visible_text(pages["403"])
    assert "认领" in visible_text(pages["audit"]) and "sign_in" not in visible_text(pages["audit"])
    assert "需复核" in visible_text(pages["age_mismatch"])


def test_the_403_page_follows_the_language(full_client: TestClient) -> None:
    sign_in_as(full_client, GRADER)
    en = full_client.get("/queue?lang=en")
    assert en.status_code == 403 and "graders see their spot-check cases only" in en.text
    assert 'html lang="en"' in en.text
    cn = full_client.get("/queue?lang=zh")
    assert "此页面仅供复核医师和质控管理员使用" in cn.text and 'lang="zh-CN"' in cn.text


def _metrics_section(html: str) -> str:
    start = html.index('id="metrics"')
    return html[start : html.index("</section>", start)]


def test_metrics_are_grouped_by_series_with_judged_ones_first_and_the_rest_folded(
    client: TestClient, app_store: ResultStore, thresholds: Thresholds, judged: Judged
) -> None:
    sign_in(client)
    uid = judged.decisions["ghosted_mr"].study_instance_uid
    view = service.study_view(app_store, thresholds, uid)
    section = _metrics_section(client.get(f"/studies/{uid}").text)
    series_with_metrics = {m.series_instance_uid for m in view.metric_rows if m.series_instance_uid}
    assert len(series_with_metrics) >= 1
    for s in view.series:
        if s.series_instance_uid not in series_with_metrics:
            continue
        # the group names the series by number and description, not by a UID tail
        head = re.search(rf'<h3[^>]*data-series="{re.escape(s.series_instance_uid)}"[^>]*>(.*?)</h3>', section, re.S)
        assert head, f"no heading for series {s.series_number}"
        assert str(s.series_number) in head.group(1) and (s.description or "") in head.group(1)
        assert s.series_instance_uid[-12:] not in visible_text(head.group(1))
    judged_rows = [m for m in view.metric_rows if m.limits]
    unjudged = [m for m in view.metric_rows if not m.limits]
    assert judged_rows and unjudged
    # judged metrics are in the open tables, the rest inside <details> (closed: no "open" attribute)
    opened = re.sub(r"<details.*?</details>", "", section, flags=re.S)
    folded = "".join(re.findall(r"<details>.*?</details>", section, flags=re.S))
    for m in judged_rows:
        assert m.label_en in opened, m.metric
        assert m.limits in opened
    for m in unjudged:
        assert m.label_en in folded and m.label_en not in opened.replace(folded, ""), m.metric
    assert "<details open" not in section and "<script" not in section


def test_upload_delay_is_named_not_its_id(client: TestClient, judged: Judged) -> None:
    sign_in(client)
    page = client.get("/studies/" + judged.decisions["age_mismatch"].study_instance_uid + "?lang=zh").text
    text = visible_text(page)
    assert "upload_delay_h" not in text and "上传延迟" in text


def test_a_study_without_accession_is_named_by_a_labelled_uid(client: TestClient, judged: Judged) -> None:
    sign_in(client)
    decision = judged.decisions["missing_accession_institution"]
    assert not decision.study.accession_number
    uid = decision.study_instance_uid
    queue = visible_text(client.get("/queue?lang=zh").text)
    assert "无检查号" in queue and "UID …" + uid[-8:] in queue
    assert uid[-16:] not in queue  # the old unlabelled tail that read like an accession number
    study = visible_text(client.get(f"/studies/{uid}?lang=en").text)
    assert "no accession" in study and "UID …" + uid[-8:] in study


def test_after_a_decision_the_claim_and_form_give_way_to_the_decision(client: TestClient, judged: Judged) -> None:
    token = sign_in(client)
    uid = judged.decisions["age_mismatch"].study_instance_uid
    client.post(f"/studies/{uid}/claim", data={"csrf_token": token})
    page = client.get(f"/studies/{uid}").text
    decision_id = re.search(r'name="decision_id" value="(\d+)"', page).group(1)
    done = client.post(
        f"/studies/{uid}/decision",
        data={
            "csrf_token": token,
            "verdict": "pass",
            "reason_code": "metadata_error",
            "decision_id": decision_id,
            "reason_text": "PatientAge typed wrong",
        },
    )
    assert done.status_code == 303
    page = client.get(f"/studies/{uid}").text
    assert 'id="decision-form"' not in page, "the decision form is still offered after the decision"
    assert "/claim" not in page and "/release" not in page, "claim/release buttons after the decision"
    assert 'data-testid="decided"' in page and "dr.wang" in page


def test_a_second_reviewer_sees_the_claim_before_submitting(
    client: TestClient, app_store: ResultStore, judged: Judged
) -> None:
    uid = judged.decisions["age_mismatch"].study_instance_uid
    other = authenticate(app_store, "dr.zhao", PASSWORDS["dr.zhao"])
    assert other is not None
    service.claim(app_store, uid, other)
    sign_in(client)
    page = client.get(f"/studies/{uid}").text
    assert 'data-testid="claimed-by"' in page and "dr.zhao" in visible_text(page)
    assert 'id="decision-form"' not in page, "a form the server will refuse is offered"
    queue = client.get("/queue").text
    row = re.search(rf'<tr data-study="{re.escape(uid)}">.*?</tr>', queue, re.S).group(0)
    assert "/claim" not in row and "dr.zhao" in row


def test_a_failed_sign_in_keeps_the_user_name(client: TestClient) -> None:
    token = form_token(client.get("/login").text)
    failed = client.post("/login", data={"username": "dr.wang", "password": "wrong", "csrf_token": token})
    assert failed.status_code == 401
    assert re.search(r'<input name="username"[^>]*value="dr.wang"', failed.text)
    crafted = client.post("/login", data={"username": '"><b>x', "password": "wrong", "csrf_token": token})
    assert "<b>x" not in crafted.text  # escaped
