"""``models train --labels`` with per-finding labels fine-tunes the artifact model of the labelled
modality, end to end on a tiny budget: demo MR studies judged by the pipeline, reviewed in the
review workflow, labels exported, the model fine-tuned from the shipped ONNX weights."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the 'models' extra (./bootstrap test installs it)")

from click.testing import CliRunner

from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, load_models
from qc_pipeline.cli import main
from qc_pipeline.modeltools import dataset
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.review import service
from qc_pipeline.review.finding_review import AuditShare, judge_finding, load_finding_review
from qc_pipeline.rules import load_thresholds
from qc_pipeline.samples.demo import DEMO_NOW, write_demo_studies
from qc_pipeline.sources import FolderSource
from qc_pipeline.store import ResultStore
from tests.review.conftest import make_accounts


def test_the_onnx_weights_read_back_into_torch_give_the_shipped_scores():
    import onnxruntime as ort
    import torch

    from qc_pipeline.modeltools.finetune import load_onnx_cnn

    models, _ = load_models(DEFAULT_MODELS_DIR)
    model = models["mr_artifacts"]
    net = load_onnx_cnn(model)  # checks itself against onnxruntime on a seeded batch
    x = np.random.default_rng(3).normal(0.5, 0.2, (2, 3, 128, 128)).astype(np.float32)  # another batch
    (reference,) = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        copy = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(copy, reference, atol=1e-4)  # float32 rounding of the folded convolutions


@pytest.fixture(scope="module")
def mr_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Two demo MR studies judged and reviewed: the ghosted one's findings confirmed as ghosting,
    the clean one audited and passed; returns the database URL and the exported label file."""
    root = tmp_path_factory.mktemp("mr_site")
    write_demo_studies(root / "studies")
    url = f"sqlite:///{root / 'results.sqlite'}"
    with ResultStore.open(url) as store:
        uids = {}
        for name in ("ghosted_mr", "phantom_mr_brain"):
            source = FolderSource(root / "studies" / name, file_times_are_upload_times=True)
            (entry,) = list(source.discover())
            decision = judge(
                source.load(entry), load_pipeline_thresholds(), now=DEMO_NOW, source_uri=source.uri, pixels=source
            )
            store.save_decision(decision, run_id=None)
            uids[name] = decision.study_instance_uid
        accounts = make_accounts(store)
        thresholds = load_thresholds()
        audit_all = load_finding_review().model_copy(
            update={"audit": AuditShare(share=1.0, salt="s", source="[D] test")}
        )
        service.claim(store, uids["ghosted_mr"], accounts.reviewer)
        view = service.study_view(store, thresholds, uids["ghosted_mr"], review_config=audit_all)
        assert view.finding_items, "the ghosted study must have findings to review"
        for item in view.finding_items:
            judge_finding(
                store,
                audit_all,
                uids["ghosted_mr"],
                accounts.reviewer,
                finding_id=item["id"],
                judgement="confirm",
                reason_code=audit_all.implied_artifact(item["code"]),
            )
        service.claim(store, uids["phantom_mr_brain"], accounts.reviewer)
        service.decide(
            store,
            thresholds,
            uids["phantom_mr_brain"],
            accounts.reviewer,
            verdict="pass",
            reason_code="image_quality_acceptable",
            reason_text=None,
            review_config=audit_all,
        )
    labels = root / "labels.csv"
    exported = CliRunner().invoke(main, ["models", "export-labels", "--db", url, "--out", str(labels)])
    assert exported.exit_code == 0, exported.output
    return url, labels


def test_train_with_finding_labels_fine_tunes_the_mr_model_and_records_the_labels(mr_site, tmp_path: Path):
    url, labels = mr_site
    out = tmp_path / "tuned"
    result = CliRunner().invoke(
        main,
        [
            "models",
            "train",
            "--labels",
            str(labels),
            "--db",
            url,
            "--out",
            str(out),
            "--epochs",
            "2",
            "--n-train",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "已微调 / fine-tuned" in result.output
    assert sorted(p.name for p in out.glob("*.onnx")) == ["mr_artifacts.onnx"]  # only the labelled modality
    manifest = json.loads((out / "mr_artifacts.json").read_text(encoding="utf-8"))
    shipped = json.loads((DEFAULT_MODELS_DIR / "mr_artifacts.json").read_text(encoding="utf-8"))
    assert manifest["sha256"] != shipped["sha256"]
    assert (out / "mr_artifacts.onnx").read_bytes() != (DEFAULT_MODELS_DIR / "mr_artifacts.onnx").read_bytes()
    with labels.open(encoding="utf-8", newline="") as handle:
        n_rows = sum(1 for _ in csv.DictReader(handle))
    site = manifest["training"]["site_labels"]
    assert site["sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    assert site["rows"] == n_rows and site["file"] == "labels.csv"
    assert site["per_label"]["motion_ghosting"]["positive"] >= 1  # the confirmed ghost
    assert site["per_label"]["motion_ghosting"]["negative"] >= 1  # the audited clean series
    assert manifest["training"]["fine_tuned_from"]["sha256"] == shipped["sha256"]
    models, problems = load_models(out)  # the registry accepts what was written (the other models are not there)
    assert set(models) == {"mr_artifacts"} and "mr_artifacts" not in problems
    # the written model scores differently from the shipped one on the same input: held-out MR
    # images, clean and degraded (uniform random pixels read as pure noise to the shipped 2026.12.3
    # model, its scores saturate at 0 and 1 and a fine-tuned copy's do too)
    import onnxruntime as ort

    x = np.stack([s.x for s in dataset.build_set("MR", "test", 8)])
    before, after = (
        ort.InferenceSession(str(d / "mr_artifacts.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[
            0
        ]
        for d in (DEFAULT_MODELS_DIR, out)
    )
    assert not np.allclose(before, after, atol=1e-4)


def test_finding_labels_refuse_the_acceptability_models(mr_site, tmp_path: Path):
    url, labels = mr_site
    result = CliRunner().invoke(
        main,
        [
            "models",
            "train",
            "--labels",
            str(labels),
            "--db",
            url,
            "--out",
            str(tmp_path / "o"),
            "--model",
            "mr_acceptability",
        ],
    )
    assert result.exit_code == 1
    assert "fine-tune the artifact models only, not mr_acceptability" in result.output


def test_a_reviewed_artifact_shared_by_two_labels_asks_for_one_of_them_not_both():
    import torch

    from qc_pipeline.ai.specs import MODEL_SPECS, score_metric
    from qc_pipeline.modeltools.finetune import SiteSeries, _max_logit_loss, label_groups
    from qc_pipeline.modeltools.site_validation import artifact_of

    implied = load_finding_review().implied_artifact
    spec = MODEL_SPECS["dr_artifacts"]
    groups = label_groups([artifact_of(score_metric(spec.name, label), implied) for label in spec.labels])
    assert groups == [[0, 1], [2], [3]]  # exposure_fault and saturation are both "exposure"
    # a confirmed "exposure" on an over-exposed image: exposure_fault high, saturation low
    logits = torch.tensor([[6.0, -6.0, -6.0, -6.0]])
    series = SiteSeries(
        "1.2",
        "1.2.3",
        np.zeros((1, 3, 4, 4), np.float32),
        np.array([1, 1, 0, 0], np.float32),
        np.array([1, 1, 1, 1], np.float32),
    )
    loss = float(_max_logit_loss(lambda x: logits, [series], groups))
    per_label = float(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    )
    assert loss < 0.01 < per_label  # per label, saturation would be pushed up although it is not there
