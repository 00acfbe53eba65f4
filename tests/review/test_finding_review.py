"""Per-finding review (confirm/reject with the artifact seen), the audit share of machine passes,
and the per-series label export with provenance."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from qc_pipeline.cli import main
from qc_pipeline.review import service
from qc_pipeline.review.app import create_app
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.review.finding_labels import LABEL_COLUMNS, finding_label_rows
from qc_pipeline.review.finding_review import (
    AuditShare,
    FindingReviewConfig,
    audit_draw,
    is_audit_sample,
    judge_finding,
    load_finding_review,
    model_of,
)
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, FindingRecord, StudyRecord
from qc_pipeline.store.review import FindingReview, ReviewEvent
from tests.review.conftest import SECRET, Accounts, Judged, sign_in

SYNTHETIC_UIDS = [f"1.2.826.0.1.3680043.8.498.{1000 + i}.{i * 7919 % 104729}" for i in range(2000)]


def uid(judged: Judged, name: str) -> str:
    return judged.decisions[name].study_instance_uid


AI_FINDING = "ai.dr_artifacts.saturation.review"


def add_ai_finding(store: ResultStore, study_uid: str) -> None:
    """An AI review finding on the study's current decision, as the flow stores one when the rule
    is on (the shipped gate may keep every AI rule off, so the demo has none of its own)."""
    with store.writing("add an AI finding") as session:
        decision = session.scalars(
            select(DecisionRecord)
            .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
            .where(StudyRecord.study_instance_uid == study_uid, DecisionRecord.is_current.is_(True))
        ).one()
        series = session.scalars(
            select(FindingRecord.series_instance_uid).where(
                FindingRecord.decision_id == decision.id, FindingRecord.series_instance_uid.is_not(None)
            )
        ).first()
        session.add(
            FindingRecord(
                decision_id=decision.id,
                ordinal=999,
                code=AI_FINDING,
                category="ai",
                severity="review",
                message="AI score: saturation 0.959 is above the limit 0.5",
                message_zh="AI 评分：饱和 0.959 高于限值 0.5",
                value="0.959",
                limit_="0.5",
                series_instance_uid=series,
            )
        )


def with_share(share: float, salt: str = "test-salt") -> FindingReviewConfig:
    return load_finding_review().model_copy(update={"audit": AuditShare(share=share, salt=salt, source="[D] test")})


# -- the audit draw ------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.02, 0.1, 0.5])
def test_the_audit_share_is_drawn_within_a_binomial_bound_and_stable(share: float) -> None:
    """Of 2,000 synthetic UIDs the drawn fraction lies within 4 binomial standard deviations of the
    share (a false alarm about 1 in 16,000 per salt), and drawing again gives the same studies."""
    drawn = [u for u in SYNTHETIC_UIDS if is_audit_sample(u, share=share, salt="site-salt")]
    n = len(SYNTHETIC_UIDS)
    bound = 4 * math.sqrt(n * share * (1 - share))
    assert abs(len(drawn) - n * share) <= bound, (len(drawn), n * share, bound)
    assert drawn == [u for u in SYNTHETIC_UIDS if is_audit_sample(u, share=share, salt="site-salt")]
    other_salt = {u for u in SYNTHETIC_UIDS if is_audit_sample(u, share=share, salt="another-salt")}
    assert other_salt != set(drawn)  # the salt decides which studies: a site cannot predict them without it


def test_the_draw_is_nested_and_has_its_ends() -> None:
    """A larger share keeps every study a smaller one drew (one number per study); 0 draws none."""
    small = {u for u in SYNTHETIC_UIDS if is_audit_sample(u, share=0.05, salt="s")}
    large = {u for u in SYNTHETIC_UIDS if is_audit_sample(u, share=0.2, salt="s")}
    assert small < large
    assert not any(is_audit_sample(u, share=0.0, salt="s") for u in SYNTHETIC_UIDS)
    assert all(is_audit_sample(u, share=1.0, salt="s") for u in SYNTHETIC_UIDS)
    assert all(0.0 <= audit_draw(u, "s") < 1.0 for u in SYNTHETIC_UIDS[:50])


def test_the_shipped_vocabulary_is_bilingual_and_implies_artifacts_from_codes() -> None:
    config = load_finding_review()
    assert list(config.labels) == [
        "motion",
        "ghosting",
        "noise",
        "streaks",
        "rings",
        "wrap",
        "non_uniformity",
        "spike",
        "exposure",
        "collimation",
        "positioning",
        "other",
    ]
    assert all(re.search(r"[\u4e00-\u9fff]", zh) for _en, zh in config.labels.values())
    assert config.audit.source.startswith("[D]") and 0.0 < config.audit.share < 1.0
    assert config.implied_artifact("ai.mr_artifacts.motion_ghosting.review") == "ghosting"
    assert config.implied_artifact("ai.ct_artifacts.streaks.review") == "streaks"
    # the MR model's spike label has a code of its own: a reviewer's "other" must not read as a spike
    assert config.implied_artifact("ai.mr_artifacts.spike.review") == "spike"
    assert config.implied_artifact("image_quality.ct.ring.review") == "rings"
    assert config.implied_artifact("image_quality.dr.clipped_stored_max.fail") == "exposure"
    assert config.implied_artifact("ai.dr_artifacts.collimation_cutoff.review") == "collimation"
    assert config.implied_artifact("metadata.age_mismatch") == "other"


def test_an_unknown_implied_artifact_is_refused() -> None:
    data = load_finding_review().model_dump()
    data["implied"].append({"artifact": "sparkles", "words": ["x"]})
    with pytest.raises(ValueError, match="implied: unknown artifact sparkles"):
        FindingReviewConfig.model_validate(data)


def test_the_model_of_an_ai_finding_is_named_with_its_version() -> None:
    assert model_of("ai.mr_artifacts.noise.review", {"mr_artifacts": "2026.12.2"}) == "mr_artifacts@2026.12.2"
    assert model_of("ai.mr_artifacts.noise.review", {}) == "mr_artifacts@unknown"
    assert model_of("image_quality.mr.ghosting.fail", {"mr_artifacts": "x"}) is None


# -- the service ---------------------------------------------------------------------------------


def reviewable_ids(store: ResultStore, thresholds: Thresholds, study: str) -> list[dict]:
    view = service.study_view(store, thresholds, study, review_config=load_finding_review())
    return list(view.finding_items)


def test_a_finding_is_judged_only_by_the_claim_holder_and_a_new_judgement_supersedes(
    store: ResultStore, accounts: Accounts, judged: Judged, thresholds: Thresholds
) -> None:
    config = load_finding_review()
    study = uid(judged, "ghosted_mr")
    items = reviewable_ids(store, thresholds, study)
    assert items and all(i["severity"] in ("review", "fail") for i in items)
    first = items[0]
    with pytest.raises(ReviewError, match="claim the study first") as exc:
        judge_finding(
            store, config, study, accounts.reviewer, finding_id=first["id"], judgement="confirm", reason_code="ghosting"
        )
    assert exc.value.status == 409
    service.claim(store, study, accounts.reviewer)
    with pytest.raises(ReviewError, match="unknown artifact 'sparkles'"):
        judge_finding(
            store, config, study, accounts.reviewer, finding_id=first["id"], judgement="confirm", reason_code="sparkles"
        )
    with pytest.raises(ReviewError, match="confirm or reject"):
        judge_finding(
            store, config, study, accounts.reviewer, finding_id=first["id"], judgement="maybe", reason_code="ghosting"
        )
    with pytest.raises(ReviewError, match="no review or fail finding 999999") as missing:
        judge_finding(
            store, config, study, accounts.reviewer, finding_id=999999, judgement="confirm", reason_code="ghosting"
        )
    assert missing.value.status == 404
    judge_finding(
        store, config, study, accounts.reviewer, finding_id=first["id"], judgement="confirm", reason_code="noise"
    )
    judge_finding(
        store, config, study, accounts.reviewer, finding_id=first["id"], judgement="reject", reason_code="ghosting"
    )
    with store.reading("t") as session:
        rows = session.scalars(
            select(FindingReview).where(FindingReview.finding_id == first["id"]).order_by(FindingReview.id)
        ).all()
        assert [(r.judgement, r.reason_code, r.is_current) for r in rows] == [
            ("confirm", "noise", False),
            ("reject", "ghosting", True),
        ]
        assert rows[1].reviewer_role == "reviewer" and rows[1].audit_sample is False
        assert rows[1].content_fingerprint == judged.decisions["ghosted_mr"].content_fingerprint
        events = session.scalars(select(ReviewEvent.detail).where(ReviewEvent.event == "finding")).all()
    assert events == [f"confirm {first['code']} (noise)", f"reject {first['code']} (ghosting)"]
    (again,) = [i for i in reviewable_ids(store, thresholds, study) if i["id"] == first["id"]]
    assert again["judgement"]["judgement"] == "reject" and again["judgement"]["reviewer"] == "dr.wang"
    # another reviewer cannot judge while the claim is dr.wang's
    with pytest.raises(ReviewError, match="claim the study first"):
        judge_finding(
            store,
            config,
            study,
            accounts.other_reviewer,
            finding_id=first["id"],
            judgement="confirm",
            reason_code="ghosting",
        )


def test_a_machine_pass_is_judged_only_as_an_audit_sample(
    store: ResultStore, accounts: Accounts, judged: Judged, thresholds: Thresholds
) -> None:
    """A pass drawn for the audit is in the queue, marked, still ``pass``; a person may decide it.
    Not drawn: it is not in the queue and cannot be decided."""
    passed = uid(judged, "phantom_ct_chest")
    none = service.queue(store, service.QueueFilters(), audit=with_share(0.0))
    assert passed not in {r.study_instance_uid for r in none.rows}
    with pytest.raises(ReviewError, match="only review and fail studies"):
        service.decide(
            store,
            thresholds,
            passed,
            accounts.reviewer,
            verdict="pass",
            reason_code="image_quality_acceptable",
            reason_text=None,
            review_config=with_share(0.0),
        )
    everything = with_share(1.0)
    rows = {r.study_instance_uid: r for r in service.queue(store, service.QueueFilters(), audit=everything).rows}
    assert rows[passed].audit_sample and rows[passed].verdict == "pass"
    assert not rows[uid(judged, "ghosted_mr")].audit_sample
    (result,) = store.results(study_instance_uid=passed)
    assert result["verdict"] == "pass" and result["eligible"]  # the draw changes nothing by itself
    view = service.study_view(store, thresholds, passed, review_config=everything)
    assert view.audit_sample and view.decidable
    decided = service.decide(
        store,
        thresholds,
        passed,
        accounts.reviewer,
        verdict="pass",
        reason_code="image_quality_acceptable",
        reason_text=None,
        review_config=everything,
    )
    assert decided["human_decision"]["action"] == "confirm" and decided["eligible"]
    labels = [r for r in finding_label_rows(store, everything) if r["study_instance_uid"] == passed]
    series = {s.series_instance_uid for s in judged.decisions["phantom_ct_chest"].series}
    assert labels and {r["series_instance_uid"] for r in labels} <= series
    assert {(r["judgement"], r["audit_sample"], r["finding_code"], r["reviewer_role"]) for r in labels} == {
        ("clean", "true", "", "reviewer")
    }
    assert passed not in {
        r.study_instance_uid for r in service.queue(store, service.QueueFilters(), audit=everything).rows
    }


# -- through the app -----------------------------------------------------------------------------


def finding_forms(html: str) -> list[tuple[int, str]]:
    """(finding id, selected artifact) of each per-finding form on the study page."""
    out = []
    for block in re.findall(r'<form method="post" action="/studies/[^"]+/findings/(\d+)"(.*?)</form>', html, re.S):
        selected = re.search(r'<option value="([a-z_]+)" selected>', block[1])
        out.append((int(block[0]), selected.group(1) if selected else ""))
    return out


def test_a_reviewer_confirms_one_finding_and_rejects_another_and_the_export_shows_both(
    app_store: ResultStore, thresholds: Thresholds, judged: Judged, tmp_path: Path, sqlite_url: str
) -> None:
    """clipped_dr has objective findings and an AI one: the objective clipping is confirmed as
    exposure, the AI saturation rejected as a false alarm ('other')."""
    study = uid(judged, "clipped_dr")
    add_ai_finding(app_store, study)
    app = create_app(app_store, thresholds, secret_key=SECRET, lang="en")
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        token = sign_in(client)
        page = client.get(f"/studies/{study}").text
        assert finding_forms(page) == []  # no claim yet: nothing to click
        assert "Claim the study to judge its findings." in page
        assert client.post(f"/studies/{study}/claim", data={"csrf_token": token}).status_code == 303
        page = client.get(f"/studies/{study}").text
        forms = finding_forms(page)
        assert len(forms) >= 2, page
        items = {i["id"]: i for i in client.get(f"/api/studies/{study}").json()["finding_items"]}
        config = load_finding_review()
        assert all(selected == config.implied_artifact(items[fid]["code"]) for fid, selected in forms)
        confirm_id = next(fid for fid, _ in forms if items[fid]["code"] == "image_quality.dr.clipped_stored_max.fail")
        reject_id = next(fid for fid, _ in forms if items[fid]["code"] == AI_FINDING)
        decision_id = client.get(f"/api/studies/{study}").json()["decision_id"]
        r1 = client.post(
            f"/studies/{study}/findings/{confirm_id}",
            data={"csrf_token": token, "judgement": "confirm", "artifact": "exposure", "decision_id": decision_id},
        )
        r2 = client.post(
            f"/studies/{study}/findings/{reject_id}",
            data={"csrf_token": token, "judgement": "reject", "artifact": "other", "decision_id": decision_id},
        )
        assert r1.status_code == r2.status_code == 303
        assert r1.headers["location"] == f"/studies/{study}#finding-review"  # back where the reviewer clicked
        page = client.get(f"/studies/{study}").text
        assert re.search(rf'data-finding="{confirm_id}".*?<strong>confirmed</strong>: Exposure', page, re.S)
        assert re.search(rf'data-finding="{reject_id}".*?<strong>rejected</strong>: Other', page, re.S)
        forged = client.post(
            f"/studies/{study}/findings/{confirm_id}",
            data={"csrf_token": "forged", "judgement": "reject", "artifact": "other"},
        )
        assert forged.status_code == 403  # CSRF
    out = tmp_path / "finding-labels.csv"
    result = CliRunner().invoke(main, ["models", "export-labels", "--db", sqlite_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LABEL_COLUMNS
    by_code = {(r["finding_code"], r["judgement"]): r for r in rows}
    confirmed = by_code[(items[confirm_id]["code"], "confirm")]
    rejected = by_code[(items[reject_id]["code"], "reject")]
    assert (confirmed["reason_code"], rejected["reason_code"]) == ("exposure", "other")
    decision = judged.decisions["clipped_dr"]
    series_modality = {s.series_instance_uid: s.modality for s in decision.series}
    for row, item in ((confirmed, items[confirm_id]), (rejected, items[reject_id])):
        assert row["study_instance_uid"] == study
        assert row["modality"] == series_modality.get(item["series_instance_uid"] or "", row["modality"]) != ""
        assert row["series_instance_uid"] == (item["series_instance_uid"] or "")
        assert row["reviewer_role"] == "reviewer" and row["audit_sample"] == "false"
        assert row["content_fingerprint"] == decision.content_fingerprint
        assert row["decided_at"].endswith("+00:00")
    assert confirmed["model"] == ""  # objective
    assert rejected["model"] == "dr_artifacts@" + dict(decision.provenance.models)["dr_artifacts"]
    text = out.read_text(encoding="utf-8")
    assert "dr.wang" not in text and "王医生" not in text
    (stored,) = app_store.results(study_instance_uid=study)
    assert stored["patient_id"] and stored["patient_id"] not in text


def test_the_queue_page_marks_audit_samples(app_store: ResultStore, thresholds: Thresholds, judged: Judged) -> None:
    passed = uid(judged, "phantom_ct_chest")
    for share, shown in ((1.0, True), (0.0, False)):
        app = create_app(app_store, thresholds, secret_key=SECRET, lang="en", review_config=with_share(share))
        with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
            sign_in(client)
            queue = client.get("/queue").text
            row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*?{re.escape(passed)}(?:(?!</tr>).)*</tr>", queue, re.S)
            assert (row is not None) == shown
            if row is not None:
                assert 'data-testid="audit-sample">抽查 / audit sample<' in row.group(0)
                page = client.get(f"/studies/{passed}").text
                assert "it was drawn at random for a human check" in page
                assert client.get(f"/api/studies/{passed}").json()["audit_sample"] is True
            assert 'data-testid="audit-sample"' not in re.sub(
                rf"<tr[^>]*>(?:(?!</tr>).)*?{re.escape(passed)}(?:(?!</tr>).)*</tr>", "", queue, flags=re.S
            )  # no flagged study is marked as an audit sample


def test_a_finding_seen_on_an_older_decision_is_refused(
    store: ResultStore, accounts: Accounts, judged: Judged, thresholds: Thresholds
) -> None:
    study = uid(judged, "clipped_dr")
    view = service.study_view(store, thresholds, study, review_config=load_finding_review())
    service.claim(store, study, accounts.reviewer)
    with pytest.raises(ReviewError, match="judged again since you opened it") as exc:
        judge_finding(
            store,
            load_finding_review(),
            study,
            accounts.reviewer,
            finding_id=view.finding_items[0]["id"],
            judgement="confirm",
            reason_code="exposure",
            decision_id=view.decision_id + 1000,
        )
    assert exc.value.status == 409


def test_export_labels_refuses_a_database_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite"
    result = CliRunner().invoke(
        main, ["models", "export-labels", "--db", f"sqlite:///{missing}", "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 1
    assert "error" in result.output and not missing.exists() and not (tmp_path / "x.csv").exists()
