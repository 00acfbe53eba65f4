"""A simulated site, end to end: studies with known defects judged by the pipeline (AI scores
stored per series), radiologists confirm each finding with the artifact seen and audit the clean
passes in the review workflow, `models export-labels` writes the labels, and `models validate`
reports each AI score's figures from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from qc_pipeline.cli import main
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.review import service
from qc_pipeline.review.finding_review import AuditShare, judge_finding, load_finding_review
from qc_pipeline.rules import load_thresholds
from qc_pipeline.samples.demo import DEMO_NOW, write_demo_studies
from qc_pipeline.sources import FolderSource
from qc_pipeline.store import ResultStore
from tests.review.conftest import make_accounts

DEFECTS = {"noisy_ct": "CT", "ghosted_mr": "MR", "clipped_dr": "DR", "overexposed_dr": "DR"}
CLEAN = {"phantom_ct_chest": "CT", "phantom_mr_brain": "MR", "phantom_dr_chest": "DR"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("site")
    studies = root / "studies"
    write_demo_studies(studies)
    url = f"sqlite:///{root / 'results.sqlite'}"
    pipeline_thresholds = load_pipeline_thresholds()
    uids: dict[str, str] = {}
    with ResultStore.open(url) as store:
        for name in (*DEFECTS, *CLEAN):
            source = FolderSource(studies / name, file_times_are_upload_times=True)
            (entry,) = list(source.discover())
            decision = judge(
                source.load(entry), pipeline_thresholds, now=DEMO_NOW, source_uri=source.uri, pixels=source
            )
            store.save_decision(decision, run_id=None)
            uids[name] = decision.study_instance_uid
        accounts = make_accounts(store)
        thresholds = load_thresholds()
        audit_all = load_finding_review().model_copy(
            update={"audit": AuditShare(share=1.0, salt="s", source="[D] test")}
        )
        for name in DEFECTS:  # the reviewer confirms every finding with the artifact its code implies
            service.claim(store, uids[name], accounts.reviewer)
            view = service.study_view(store, thresholds, uids[name], review_config=audit_all)
            for item in view.finding_items:
                judge_finding(
                    store,
                    audit_all,
                    uids[name],
                    accounts.reviewer,
                    finding_id=item["id"],
                    judgement="confirm",
                    reason_code=audit_all.implied_artifact(item["code"]),
                )
        for name in CLEAN:  # audited passes judged clean
            service.claim(store, uids[name], accounts.reviewer)
            service.decide(
                store,
                thresholds,
                uids[name],
                accounts.reviewer,
                verdict="pass",
                reason_code="image_quality_acceptable",
                reason_text=None,
                review_config=audit_all,
            )
    return url, uids


def test_validate_reports_each_score_from_the_sites_own_labels(site, tmp_path: Path) -> None:
    url, uids = site
    labels = tmp_path / "labels.csv"
    runner = CliRunner()
    exported = runner.invoke(main, ["models", "export-labels", "--db", url, "--out", str(labels)])
    assert exported.exit_code == 0, exported.output
    out = tmp_path / "figures.json"
    result = runner.invoke(main, ["models", "validate", "--labels", str(labels), "--db", url, "--json", str(out)])
    assert result.exit_code == 0, result.output
    print(result.output)  # shown with pytest -s: the table the note quotes
    assert "AI 评分本单位验证 / AI scores validated by this site's labels" in result.output
    figures = {(f["score"], f["site"]): f for f in json.loads(out.read_text(encoding="utf-8"))}
    noise = figures[("ai.ct_artifacts.excess_noise", "*")]
    assert (noise["artifact"], noise["positives"], noise["negatives"]) == ("noise", 1, 1)  # noisy_ct vs the clean CT
    # independent check: the stored scores of the two labelled CT series, by sklearn
    with ResultStore.open(url) as store:
        stored = {r["study_instance_uid"]: r for r in store.results()}

    def series_score(name: str, metric: str) -> float:
        (value,) = [m["value"] for m in stored[uids[name]]["measurements"] if m["metric"] == metric]
        return value

    y, p = (
        [1, 0],
        [
            series_score("noisy_ct", "ai.ct_artifacts.excess_noise"),
            series_score("phantom_ct_chest", "ai.ct_artifacts.excess_noise"),
        ],
    )
    assert noise["auc"] == pytest.approx(roc_auc_score(y, p))
    accept = figures[("ai.ct_acceptability.unacceptable", "*")]
    assert (accept["artifact"], accept["positives"], accept["negatives"]) == ("any", 1, 1)
    ghost = figures[("ai.mr_artifacts.motion_ghosting", "*")]
    assert ghost["artifact"] == "ghosting" and ghost["positives"] >= 1 and ghost["negatives"] >= 1
    exposure = figures[("ai.dr_artifacts.exposure_fault", "*")]
    assert exposure["positives"] == 2 and exposure["negatives"] == 1  # clipped + overexposed vs the clean DR
    for f in figures.values():
        if f["false_flags"] is not None:
            assert (
                f["false_flags"]["n"] == f["negatives"]
                and 0 <= f["false_flags"]["low"] <= f["false_flags"]["high"] <= 1
            )


def test_calibrate_writes_a_signed_off_proposal_not_a_change(site, tmp_path: Path) -> None:
    import yaml

    url, _ = site
    labels = tmp_path / "labels.csv"
    runner = CliRunner()
    assert runner.invoke(main, ["models", "export-labels", "--db", url, "--out", str(labels)]).exit_code == 0
    before = (Path(__file__).resolve().parents[2] / "thresholds" / "ai.yaml").read_bytes()
    out = tmp_path / "ai_calibration.yaml"
    result = runner.invoke(
        main,
        ["models", "calibrate", "--labels", str(labels), "--db", url, "--false-flag-rate", "0.5", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    print(result.output)  # shown with pytest -s
    document = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert (
        document["source"].startswith("[D] proposed by qc-pipeline models calibrate")
        and "signed off" in document["source"]
    )
    by_score = {s["score"]: s for s in document["scores"]}
    noise = by_score["ai.ct_artifacts.excess_noise"]
    assert noise["clean_series"] == 1 and noise["threshold"] is not None  # 1 clean series: rank ceil(2 * 0.5) = 1
    assert noise["rule_limit"] == 0.5 and noise["isotonic"]  # the limit of its rule in thresholds/ai.yaml
    strict = runner.invoke(main, ["models", "calibrate", "--labels", str(labels), "--db", url, "--out", str(out)])
    assert strict.exit_code == 0
    ghost = {s["score"]: s for s in yaml.safe_load(out.read_text(encoding="utf-8"))["scores"]}[
        "ai.mr_artifacts.motion_ghosting"
    ]
    assert (
        ghost["threshold"] is None and "needs at least 19" in ghost["why_no_threshold"]
    )  # too few clean MR series at 5 %
    assert (Path(__file__).resolve().parents[2] / "thresholds" / "ai.yaml").read_bytes() == before  # nothing applied
    assert "仅为建议" in strict.output
