"""The review rules on the results database (SQLite and PostgreSQL): queue, claims, human
decisions and how they weigh on eligibility, negative-list flags, labels."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io

import pytest
from dateutil.relativedelta import relativedelta

from qc_pipeline.domain import Provenance
from qc_pipeline.review import service
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.review.labels import LABEL_COLUMNS, label_rows, labels_csv
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore
from tests.review.conftest import Accounts, Judged, legacy_flag

pytestmark = pytest.mark.usefixtures("accounts")


def uid(judged: Judged, name: str) -> str:
    return judged.decisions[name].study_instance_uid


def pending_uids(store: ResultStore, **filters: object) -> list[str]:
    return [r.study_instance_uid for r in service.queue(store, service.QueueFilters(**filters)).rows]  # type: ignore[arg-type]


def test_queue_holds_review_and_fail_studies_oldest_first(store: ResultStore, judged: Judged) -> None:
    found = service.queue(store, service.QueueFilters())
    flagged = [
        n for n in ("age_mismatch", "missing_accession_institution", "ghosted_mr", "clipped_dr", "truncated_file")
    ]
    assert found.total == len(flagged)
    assert {r.study_instance_uid for r in found.rows} == {uid(judged, n) for n in flagged}
    dates = [r.study_date for r in found.rows]
    assert dates == sorted(dates)  # the demo's study dates all differ and are known
    assert found.options["modalities"] == ["CT", "DX", "MR"]
    first = found.rows[0]
    assert first.reasons and all(r["severity"] in ("review", "fail") for r in first.reasons)


def test_queue_filters(store: ResultStore, judged: Judged) -> None:
    assert pending_uids(store, verdict="review") == [
        uid(judged, "age_mismatch"),
        uid(judged, "missing_accession_institution"),
    ]
    assert pending_uids(store, modality="MR") == [uid(judged, "ghosted_mr")]
    assert set(pending_uids(store, modality="DX")) == {
        uid(judged, "clipped_dr"),
        uid(judged, "missing_accession_institution"),
    }
    assert pending_uids(store, category="integrity") == [uid(judged, "truncated_file")]
    assert set(pending_uids(store, category="image_quality")) == {uid(judged, "ghosted_mr"), uid(judged, "clipped_dr")}
    item = judged.decisions["ghosted_mr"].item
    assert item is not None and pending_uids(store, item=item.code) == [uid(judged, "ghosted_mr")]
    day = judged.decisions["age_mismatch"].study.study_date
    assert pending_uids(store, date_from=day, date_to=day) == [uid(judged, "age_mismatch")]
    institution = judged.decisions["ghosted_mr"].study.institution
    assert uid(judged, "ghosted_mr") in pending_uids(store, institution=institution)
    assert uid(judged, "missing_accession_institution") not in pending_uids(store, institution=institution)
    with pytest.raises(ReviewError, match="status must be pending, decided or all; got 'later'"):
        service.QueueFilters(status="later")
    with pytest.raises(ReviewError, match="verdict must be review or fail; got 'pass'"):
        service.QueueFilters(verdict="pass")


def test_claims_keep_two_reviewers_apart(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    study = uid(judged, "age_mismatch")
    expires = service.claim(store, study, accounts.reviewer)
    assert expires > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=service.CLAIM_MINUTES - 1)
    service.claim(store, study, accounts.reviewer)  # renewing one's own claim is fine
    (row,) = [r for r in service.queue(store, service.QueueFilters()).rows if r.study_instance_uid == study]
    assert row.claimed_by == "dr.wang"
    with pytest.raises(ReviewError, match="dr.wang is reviewing this study") as info:
        service.claim(store, study, accounts.other_reviewer)
    assert info.value.status == 409
    with pytest.raises(ReviewError, match="dr.wang is reviewing this study"):
        service.decide(
            store,
            thresholds,
            study,
            accounts.other_reviewer,
            verdict="fail",
            reason_code="finding_confirmed",
            reason_text="",
        )
    with pytest.raises(ReviewError, match="the claim is dr.wang's: only they or a QC administrator") as refused:
        service.release(store, study, accounts.other_reviewer)  # not theirs: refused, and it stays
    assert refused.value.status == 403
    assert service.study_view(store, thresholds, study).claimed_by == "dr.wang"
    service.release(store, study, accounts.reviewer)
    service.claim(store, study, accounts.other_reviewer)
    assert service.study_view(store, thresholds, study).claimed_by == "dr.zhao"


def test_an_expired_claim_can_be_taken_over(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    from sqlalchemy import update

    from qc_pipeline.store.review import ReviewClaim

    study = uid(judged, "ghosted_mr")
    service.claim(store, study, accounts.reviewer)
    with store.writing("age the claim") as session:
        session.execute(update(ReviewClaim).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert service.study_view(store, thresholds, study).claimed_by is None
    service.claim(store, study, accounts.other_reviewer)
    assert service.study_view(store, thresholds, study).claimed_by == "dr.zhao"


def test_override_to_pass_makes_the_study_eligible_and_results_show_both(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    study = uid(judged, "age_mismatch")
    service.claim(store, study, accounts.reviewer)
    result = service.decide(
        store,
        thresholds,
        study,
        accounts.reviewer,
        verdict="pass",
        reason_code="metadata_error",
        reason_text="PatientAge typed wrong; images fine",
    )
    assert result["verdict"] == "review"  # the machine's verdict is kept as it was
    assert result["final_verdict"] == "pass"
    human = result["human_decision"]
    assert human["verdict"] == "pass" and human["action"] == "override" and human["reviewer"] == "dr.wang"
    assert human["reason_code"] == "metadata_error" and human["reason_text"] == "PatientAge typed wrong; images fine"
    assert result["eligible"] is True and result["eligibility_basis"] == "human"
    study_date = judged.decisions["age_mismatch"].study.study_date
    assert study_date is not None
    assert result["eligible_until"] == (study_date + relativedelta(months=3)).isoformat()  # site window: 3 months
    assert result["machine_eligible"] is False and result["machine_eligible_until"] is None
    assert study not in pending_uids(store)
    assert pending_uids(store, status="decided") == [study]
    assert service.study_view(store, thresholds, study).claimed_by is None  # deciding released the claim

    history = store.history(study)
    assert len(history) == 1
    (entry,) = history[0].human_decisions
    assert entry["verdict"] == "pass" and entry["stands"] is True and entry["machine_verdict"] == "review"


def test_confirming_a_fail_keeps_it_ineligible(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    study = uid(judged, "clipped_dr")
    result = service.decide(
        store, thresholds, study, accounts.reviewer, verdict="fail", reason_code="image_quality_poor", reason_text=""
    )
    assert result["human_decision"]["action"] == "confirm"
    assert result["eligible"] is False and result["eligibility_basis"] == "human"


def test_a_decision_survives_rescoring_but_not_new_content(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    name = "age_mismatch"
    study = uid(judged, name)
    service.decide(
        store,
        thresholds,
        study,
        accounts.reviewer,
        verdict="pass",
        reason_code="false_positive",
        reason_text="age is right",
    )
    original = judged.decisions[name]
    rescored = dataclasses.replace(
        original,
        provenance=Provenance("9.9.9", "thresholds-v2", {}),
        decided_at=original.decided_at + dt.timedelta(days=1),
    )
    store.save_decision(rescored, run_id=None)
    (row,) = store.results(study_instance_uid=study)
    assert row["history_count"] == 2 and row["human_decision"]["verdict"] == "pass" and row["eligible"] is True
    assert study not in pending_uids(store)

    changed = dataclasses.replace(
        rescored, content_fingerprint="0" * 64, decided_at=rescored.decided_at + dt.timedelta(days=1)
    )
    store.save_decision(changed, run_id=None)
    (row,) = store.results(study_instance_uid=study)
    assert row["human_decision"] is None and row["final_verdict"] == "review"
    assert row["eligible"] is False and row["eligibility_basis"] == "machine"
    assert study in pending_uids(store)
    history = store.history(study)
    assert [len(h.human_decisions) for h in history] == [1, 0, 0]
    assert history[0].human_decisions[0]["stands"] is False
    assert label_rows(store) == []  # the label was about content the study no longer has


def test_a_stale_form_is_refused(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    study = uid(judged, "ghosted_mr")
    seen = service.study_view(store, thresholds, study).decision_id
    store.save_decision(dataclasses.replace(judged.decisions["ghosted_mr"], content_fingerprint="1" * 64), run_id=None)
    with pytest.raises(ReviewError, match="the study was judged again since you opened it") as info:
        service.decide(
            store,
            thresholds,
            study,
            accounts.reviewer,
            verdict="fail",
            reason_code="finding_confirmed",
            reason_text="",
            decision_id=seen,
        )
    assert info.value.status == 409


def test_decision_input_is_checked(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    study = uid(judged, "ghosted_mr")

    def decide(**kwargs: object) -> None:
        args = {"verdict": "pass", "reason_code": "false_positive", "reason_text": "ok", **kwargs}
        service.decide(store, thresholds, study, accounts.reviewer, **args)  # type: ignore[arg-type]

    with pytest.raises(ReviewError, match="the decision must be pass or fail; got 'review'"):
        decide(verdict="review")
    with pytest.raises(ReviewError, match="unknown reason code 'because'"):
        decide(reason_code="because")
    with pytest.raises(ReviewError, match=r"an override \(or the reason 'other'\) needs an explanation"):
        decide(reason_text="   ")
    with pytest.raises(ReviewError, match=r"an override \(or the reason 'other'\) needs an explanation"):
        decide(verdict="fail", reason_code="other", reason_text="")
    with pytest.raises(ReviewError, match="the text has 2001 characters; at most 2000"):
        decide(reason_text="x" * 2001)
    with pytest.raises(ReviewError, match="only review and fail studies are reviewed") as info:
        service.decide(
            store,
            thresholds,
            uid(judged, "phantom_ct_chest"),
            accounts.reviewer,
            verdict="fail",
            reason_code="image_quality_poor",
            reason_text="",
        )
    assert info.value.status == 409
    with pytest.raises(ReviewError, match="no study '1.2.3' in the results database") as info:
        service.decide(
            store,
            thresholds,
            "1.2.3",
            accounts.reviewer,
            verdict="fail",
            reason_code="image_quality_poor",
            reason_text="",
        )
    assert info.value.status == 404


def test_study_level_flags_are_withdrawn_earlier_ones_stay_readable(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    """The negative list (Yubei plan §4(三)) concerns a receiving visit, not the study: no new
    study-level flag; a flag set before migration 0011 is shown and cleared, and no longer
    withdraws the study from recognition."""
    study = uid(judged, "age_mismatch")
    service.decide(
        store, thresholds, study, accounts.reviewer, verdict="pass", reason_code="false_positive", reason_text="fine"
    )
    with pytest.raises(ReviewError, match="only QC administrators") as info:
        service.set_flag(store, study, accounts.reviewer, reason_code="forensic", note=None)
    assert info.value.status == 403
    with pytest.raises(ReviewError, match="study-level negative-list flags are withdrawn") as info:
        service.set_flag(store, study, accounts.admin, reason_code="forensic", note="court request 2026-118")
    assert info.value.status == 410 and "接诊" in info.value.message_zh
    legacy_flag(store, study, accounts.admin, reason_code="forensic", note="court request 2026-118")
    (row,) = store.results(study_instance_uid=study)
    assert row["eligible"] is True and row["eligibility_basis"] == "human"
    assert row["negative_flags"] == [
        {
            "reason_code": "forensic",
            "note": "court request 2026-118",
            "set_by": "qc.li",
            "set_at": row["negative_flags"][0]["set_at"],
        }
    ]
    (label,) = label_rows(store)
    assert label["negative_list"] == "forensic"  # the label export still reads them

    service.clear_flag(store, study, accounts.admin, reason_code="forensic")
    (row,) = store.results(study_instance_uid=study)
    assert row["eligible"] is True and row["eligibility_basis"] == "human" and row["negative_flags"] == []
    with pytest.raises(ReviewError, match="the study has no active flag 'forensic'"):
        service.clear_flag(store, study, accounts.admin, reason_code="forensic")


def test_labels_export(thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts) -> None:
    service.decide(
        store,
        thresholds,
        uid(judged, "ghosted_mr"),
        accounts.reviewer,
        verdict="fail",
        reason_code="image_quality_poor",
        reason_text="ghosts over the brain stem (patient 张三)",
    )
    service.decide(
        store,
        thresholds,
        uid(judged, "age_mismatch"),
        accounts.other_reviewer,
        verdict="pass",
        reason_code="metadata_error",
        reason_text="age typo",
    )
    text = labels_csv(label_rows(store))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert [r["study_instance_uid"] for r in rows] == [uid(judged, "ghosted_mr"), uid(judged, "age_mismatch")]
    mr = rows[0]
    ghosted = judged.decisions["ghosted_mr"]
    assert mr["machine_verdict"] == "fail" and mr["human_decision"] == "fail" and mr["action"] == "confirm"
    assert mr["reason_code"] == "image_quality_poor" and mr["modality"] == "MR"
    assert mr["item_code"] == (ghosted.item.code if ghosted.item else "")
    assert set(mr["series_instance_uids"].split(";")) == {m.series_instance_uid for m in ghosted.measurements}
    assert "image_quality.mr.ghosting.fail" in mr["finding_codes"].split(";")
    assert mr["source_uri"] == ghosted.source_uri and mr["content_fingerprint"] == ghosted.content_fingerprint
    assert rows[1]["action"] == "override" and rows[1]["human_decision"] == "pass"
    assert "张三" not in text and "dr.wang" not in text and str(ghosted.study.patient_id) not in text


def test_metric_rows_put_values_beside_their_limits(thresholds: Thresholds, store: ResultStore, judged: Judged) -> None:
    view = service.study_view(store, thresholds, uid(judged, "ghosted_mr"))
    ghosting = [m for m in view.metric_rows if m.metric == "mr.ghosting_percent"]
    assert ghosting and any(m.beyond == "fail" for m in ghosting)
    assert all("(review)" in m.limits and "(fail)" in m.limits for m in ghosting)
    assert any(s["metric"] == "ai.mr_artifacts.motion_ghosting" for s in view.ai_scores)  # the shipped models scored it
    assert view.decidable and view.patient["id"] == judged.decisions["ghosted_mr"].study.patient_id


def test_ai_scores_are_shown_when_stored(thresholds: Thresholds, store: ResultStore, judged: Judged) -> None:
    from qc_pipeline.domain import Measurement

    base = judged.decisions["clipped_dr"]
    series = base.measurements[0].series_instance_uid
    scored = dataclasses.replace(
        base,
        measurements=(
            *[m for m in base.measurements if not m.metric.startswith("ai.")],  # the shipped models' scores, replaced
            Measurement("ai.dr_artifacts.saturation", 0.87, "", series_instance_uid=series),
        ),
        provenance=Provenance(
            base.provenance.pipeline_version, base.provenance.thresholds_version, {"dr_artifacts": "1.0@ab12cd"}
        ),
    )
    store.save_decision(scored, run_id=None)
    view = service.study_view(store, thresholds, base.study_instance_uid)
    assert view.ai_scores == [{"metric": "ai.dr_artifacts.saturation", "value": 0.87, "series_instance_uid": series}]
    assert all(not m.metric.startswith("ai.") for m in view.metric_rows)
    assert view.result["provenance"]["models"] == {"dr_artifacts": "1.0@ab12cd"}


def test_audit_records_who_did_what(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts
) -> None:
    study = uid(judged, "clipped_dr")
    service.claim(store, study, accounts.reviewer)
    service.decide(
        store, thresholds, study, accounts.reviewer, verdict="fail", reason_code="image_quality_poor", reason_text=""
    )
    events = service.audit_events(store).events
    assert [(e["event"], e["username"]) for e in events[:2]] == [("decision", "dr.wang"), ("claim", "dr.wang")]
    assert events[0]["detail"] == "confirm fail->fail (image_quality_poor)" and events[0]["study_instance_uid"] == study


def test_a_human_pass_past_its_window_is_not_eligible_in_the_review_app(
    thresholds: Thresholds, store: ResultStore, judged: Judged, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qc_pipeline import eligibility

    study = uid(judged, "age_mismatch")
    service.claim(store, study, accounts.reviewer)
    service.decide(
        store,
        thresholds,
        study,
        accounts.reviewer,
        verdict="pass",
        reason_code="metadata_error",
        reason_text="PatientAge typed wrong; images fine",
    )
    study_date = judged.decisions["age_mismatch"].study.study_date
    assert study_date is not None
    day_after = dt.datetime.combine(study_date + relativedelta(months=3, days=1), dt.time(12), tzinfo=dt.UTC)
    monkeypatch.setattr(eligibility, "_clock", lambda: day_after)
    result = service.study_view(store, thresholds, study).result
    assert result["final_verdict"] == "pass" and result["eligibility_basis"] == "human"
    assert result["eligible"] is False and [r["code"] for r in result["eligibility_reasons"]] == ["window.ended"]
