"""The image-quality check: pixels from the source, one decode per series, limits from thresholds/."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pydicom
import pytest

from qc_pipeline.checks import image_quality
from qc_pipeline.checks.image_quality import METRIC_LABELS, METRIC_UNITS, check_image_quality
from qc_pipeline.domain import Severity, Verdict
from qc_pipeline.errors import SourceError
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.samples.demo import write_demo_studies
from qc_pipeline.sources import FolderSource

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iq-demo")
    write_demo_studies(root)
    return root


def loaded(folder: Path):
    source = FolderSource(folder)
    (entry,) = list(source.discover())
    return source, source.load(entry)


def codes(findings) -> set[str]:
    return {f.code for f in findings}


def test_every_metric_has_a_bilingual_label_and_a_unit():
    scores = {m for m in METRIC_UNITS if m.startswith("ai.")}
    assert set(METRIC_LABELS) == set(METRIC_UNITS) - scores
    assert all(en and zh and en != zh for en, zh in METRIC_LABELS.values())
    for score in scores:  # the AI scores are named from their model's spec
        en, zh = image_quality.metric_label(score)
        assert en.startswith("AI score") or en.startswith("metric-based AI score"), en
        assert "AI评分" in zh


def test_noisy_ct_fails_with_metric_value_limit_and_series(demo, thresholds):
    source, study = loaded(demo / "noisy_ct")
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    (finding,) = [f for f in result.findings if f.severity is not Severity.INFO]
    assert finding.code == "image_quality.ct.noise.fail"
    assert "image noise (global noise level)" in finding.message and "above the limit 55 HU" in finding.message
    assert "图像噪声" in finding.message_zh and "高于限值 55 HU" in finding.message_zh
    assert finding.limit == "≤ 55 HU"
    value = float(finding.value.split()[0])
    assert 70 < value < 90  # the phantom's noise SD is 80 HU
    assert finding.series_instance_uid == study.images[0].ref.series_instance_uid
    noise = [m for m in result.measurements if m.metric == "ct.noise_hu"]
    assert len(noise) == 1 and noise[0].value == pytest.approx(value, rel=0.01)
    # One measurement per CT metric, for the one series.
    assert sorted(m.metric for m in result.measurements) == sorted(k for k in METRIC_UNITS if k.startswith("ct."))


def test_clean_phantoms_and_real_images_are_not_flagged(demo, thresholds):
    for case in ("phantom_ct_chest", "phantom_mr_brain", "phantom_dr_chest", "real_cr_chest", "real_ct"):
        source, study = loaded(demo / case)
        result = check_image_quality(study, thresholds, source, item_modality=None, item_code=None)
        assert result.measurements, case
        assert {f.severity for f in result.findings} <= {Severity.INFO}, (case, [f.message for f in result.findings])


def test_per_item_limit_wins(demo, thresholds):
    source, study = loaded(demo / "phantom_ct_chest")  # noise about 10 HU
    rule = thresholds.rules["image_quality.ct.noise.review"]
    strict = dataclasses.replace(
        thresholds, rules={**thresholds.rules, rule.id: rule.model_copy(update={"per_item": {"YB-036": 5.0}})}
    )
    chest = check_image_quality(study, strict, source, item_modality="CT", item_code="YB-036")
    other = check_image_quality(study, strict, source, item_modality="CT", item_code="YB-037")
    assert "image_quality.ct.noise.review" in codes(chest.findings)
    assert "image_quality.ct.noise.review" not in codes(other.findings)
    assert next(f for f in chest.findings if f.code == rule.id).limit == "≤ 5 HU"


def test_sharp_kernel_noise_is_measured_but_not_judged(demo, thresholds, tmp_path):
    folder = tmp_path / "lung"
    shutil.copytree(demo / "noisy_ct", folder)
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.ConvolutionKernel = "B70f"
        ds.save_as(path)
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    assert not any(f.code.startswith("image_quality.ct.noise") for f in result.findings)
    (noise,) = [m for m in result.measurements if m.metric == "ct.noise_hu"]
    assert noise.value > 70 and "kernel 'B70f' → OTHER (lexicon ct_kernels)" in noise.detail


def test_undecodable_series_goes_to_review_and_the_rest_is_measured(demo, thresholds, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(demo / "phantom_ct_chest", folder)
    first = sorted(folder.glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.Rows, ds.Columns = 32, 128  # same byte count, another matrix: the series cannot be stacked
    ds.save_as(first)
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    (finding,) = result.findings
    assert finding.code == "image_quality.pixels.not_decoded" and finding.severity is Severity.REVIEW
    assert "mixed matrix sizes" in finding.message and "像素数据无法用于图像质量指标计算" in finding.message_zh
    assert result.measurements == ()


def test_a_metric_bug_is_a_review_finding_not_a_crash(demo, thresholds, monkeypatch):
    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(image_quality.mr, "measure", broken)
    source, study = loaded(demo / "phantom_mr_brain")
    decision = judge(study, thresholds, now=NOW, pixels=source)
    errors = [f for f in decision.findings if f.code == "image_quality.metric.error"]
    assert len(errors) == 5  # one per series, each named
    assert {f.series_instance_uid for f in errors} == {i.ref.series_instance_uid for i in study.images}
    assert "ZeroDivisionError" in errors[0].message
    assert decision.verdict is Verdict.REVIEW
    assert decision.item is not None  # the other checks ran


def test_source_failure_propagates_for_a_retry(demo, thresholds):
    class Broken:
        @contextlib.contextmanager
        def pixel_files(self, instances):
            raise SourceError("cloud went away")
            yield []  # pragma: no cover

    _, study = loaded(demo / "phantom_dr_chest")
    with pytest.raises(SourceError, match="cloud went away"):
        judge(study, thresholds, now=NOW, pixels=Broken())


def test_without_a_pixel_source_nothing_is_measured(demo, thresholds):
    _, study = loaded(demo / "noisy_ct")
    decision = judge(study, thresholds, now=NOW)
    assert decision.measurements == ()
    assert decision.verdict is Verdict.PASS


def test_measurements_are_deterministic_and_stored_per_series(demo, thresholds):
    source, study = loaded(demo / "phantom_mr_brain")
    first = judge(study, thresholds, now=NOW, pixels=source)
    again = judge(source.load(next(iter(source.discover()))), thresholds, now=NOW, pixels=source)
    assert first.measurements == again.measurements
    assert len({m.series_instance_uid for m in first.measurements}) == 5
    assert all(m.unit == METRIC_UNITS[m.metric] for m in first.measurements)
