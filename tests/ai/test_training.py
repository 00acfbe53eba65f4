"""The training command end to end on a tiny budget: data -> torch -> ONNX -> manifest -> registry."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the 'models' extra (./bootstrap test installs it)")

from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, load_registry
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.modeltools import dataset
from qc_pipeline.modeltools.training import TrainingConfig, train_all


def test_held_out_sources_never_appear_in_training():
    for modality, split in dataset.REAL_SOURCES.items():
        assert not set(split["train"]) & set(split["test"]), modality
    seeds = {name: set(r) for name, r in dataset.PHANTOM_SEEDS.items()}
    assert not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    train = {s.name.split("#")[0] for s in dataset.load_sources("MR", "train")}
    test = {s.name.split("#")[0] for s in dataset.load_sources("MR", "test")}
    assert not train & test


def test_samples_are_reproducible_and_labelled():
    a = dataset.build_set("CT", "test", 6)
    b = dataset.build_set("CT", "test", 6)
    assert all(np.array_equal(x.x, y.x) and np.array_equal(x.labels, y.labels) for x, y in zip(a, b, strict=True))
    clean = dataset.build_set("DR", "test", 5, clean=True)
    assert all(s.real and not s.labels.any() for s in clean)


@pytest.fixture(scope="module")
def labels_csv(tmp_path_factory) -> Path:
    """A label file as ``qc-pipeline review export-labels`` writes it, over two demo CT studies."""
    from qc_pipeline.review.labels import LABEL_COLUMNS
    from qc_pipeline.samples.demo import write_demo_studies
    from qc_pipeline.sources import FolderSource

    root = tmp_path_factory.mktemp("labels")
    write_demo_studies(root / "demo")
    rows = []
    for case, decision in (("real_ct", "pass"), ("noisy_ct", "fail"), ("real_mr", "pass")):
        source = FolderSource(root / "demo" / case)
        (entry,) = list(source.discover())
        study = source.load(entry)
        rows.append(
            {
                "study_instance_uid": entry.study_instance_uid,
                "series_instance_uids": ";".join(sorted({i.ref.series_instance_uid for i in study.images})),
                "modality": "MR" if case.endswith("mr") else "CT",
                "human_decision": decision,
                "source_uri": source.uri,
            }
        )
    rows.append({**rows[0], "study_instance_uid": "1.2.3.404", "human_decision": "pass"})  # gone from its source
    path = root / "labels.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_centre_labels_become_features_with_the_radiologists_decision(labels_csv: Path):
    from qc_pipeline.ai.features import FEATURES
    from qc_pipeline.modeltools.centre_labels import centre_features

    found = centre_features(labels_csv, "CT")
    assert found.labels == [0, 1]  # real_ct passed, noisy_ct failed; the MR row is another model's
    assert all(f.shape == (len(FEATURES["CT"]),) for f in found.features)
    assert not np.array_equal(found.features[0], found.features[1])
    assert np.isfinite(found.features[1][FEATURES["CT"].index("ct.noise_hu")])
    assert found.skipped == {"study no longer in its source": 1}


def test_a_label_file_without_the_export_columns_is_refused(tmp_path: Path):
    from qc_pipeline.errors import ConfigError
    from qc_pipeline.modeltools.centre_labels import centre_features

    path = tmp_path / "labels.csv"
    path.write_text("study,label\n1.2.3,fail\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lacks the columns study_instance_uid, series_instance_uids"):
        centre_features(path, "CT")


def test_train_exports_onnx_models_the_registry_accepts(tmp_path: Path, labels_csv: Path):
    out = tmp_path / "models"
    out.mkdir()
    for path in DEFAULT_MODELS_DIR.glob("*_a*.*"):  # the four models not trained here
        if path.suffix in (".onnx", ".json") and not path.name.startswith("ct_"):
            shutil.copy2(path, out / path.name)
    config = TrainingConfig(n_train=48, n_val=32, n_metric_train=24, epochs=1, version="0.0.test", labels=labels_csv)
    written = train_all(out, config, names=("ct_artifacts", "ct_acceptability"))
    assert [p.name for p in written] == ["ct_artifacts.json", "ct_acceptability.json"]
    manifest = json.loads(written[0].read_text(encoding="utf-8"))
    assert manifest["version"] == "0.0.test" and manifest["training"]["n_train"] == 48
    assert set(manifest["decision_thresholds"]) == {"excess_noise", "streaks", "rings", "motion"}
    acceptability = json.loads(written[1].read_text(encoding="utf-8"))
    assert acceptability["training"]["centre_labels"] == {
        "file": "labels.csv",
        "series": 2,
        "fail": 1,
        "skipped": {"study no longer in its source": 1},
    }
    assert (out / "ct_artifacts.md").read_text(encoding="utf-8").startswith("# ct_artifacts")
    scorer = Scorer(load_registry(out))
    assert scorer.provenance["ct_artifacts"].startswith("0.0.test@")
    volume = np.full((3, 64, 64), -1000.0, dtype=np.float32)
    volume[:, 16:48, 16:48] = 40.0
    scores = scorer.score("CT", list(volume), pixel_mm=2.0)
    assert len(scores) == 5 and all(0.0 <= m.value <= 1.0 for m in scores)
