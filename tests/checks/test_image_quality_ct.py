"""CT noise judged at a reference slice thickness, on soft and standard kernels only (the lexicon's
kernel table), and truncation judged against the scan field, on the demo's CT phantoms."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pydicom
import pytest

from qc_pipeline.catalog.ct_series import KernelClass, kernel_class
from qc_pipeline.catalog.items import shipped_vocabulary
from qc_pipeline.checks.image_quality import check_image_quality
from qc_pipeline.domain import Severity
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.samples.demo import write_demo_studies
from qc_pipeline.sources import FolderSource


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iq-ct-demo")
    write_demo_studies(root)
    return root


def rewritten(demo: Path, case: str, folder: Path, **tags: object):
    shutil.copytree(demo / case, folder)
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(path)
    source = FolderSource(folder)
    (entry,) = list(source.discover())
    return source, source.load(entry)


def noise_findings(result):
    return [f for f in result.findings if f.code.startswith("image_quality.ct.noise")]


def by_metric(result):
    return {m.metric: m for m in result.measurements}


def test_a_thin_reconstruction_is_judged_at_the_reference_thickness(demo, thresholds, tmp_path):
    # the noisy demo CT (80 HU at 5 mm) relabelled as a 0.625 mm reconstruction: 80 HU at 0.625 mm
    # is 80 x sqrt(0.625 / 5) = 28 HU at 5 mm, within the chest limit of 35 HU
    source, study = rewritten(demo, "noisy_ct", tmp_path / "thin", SliceThickness=0.625)
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    assert noise_findings(result) == []
    found = by_metric(result)
    assert 70 < found["ct.noise_measured_hu"].value < 90
    assert found["ct.noise_hu"].value == pytest.approx(found["ct.noise_measured_hu"].value * (0.625 / 5) ** 0.5)
    assert "0.625 mm" in found["ct.noise_hu"].detail and "5 mm" in found["ct.noise_hu"].detail


def test_the_head_items_own_noise_limit_holds_on_the_normalised_value(demo, thresholds, tmp_path):
    source, study = rewritten(demo, "noisy_ct", tmp_path / "head", SliceThickness=0.625, ConvolutionKernel="Hr38")
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-034")
    (finding,) = noise_findings(result)
    assert finding.code == "image_quality.ct.noise.review" and finding.limit == "≤ 15 HU"
    assert 25 < float(finding.value.split()[0]) < 32  # 28 HU at 5 mm, not the 80 HU measured at 0.625 mm


@pytest.mark.parametrize(
    "kernel", ["Hr38", "Hr40", "Br40d", "B30f", "Qr40", "STANDARD", "SOFT", "B", "UB", "FC21", "B_SOFT_B", "H_SOFT_A"]
)
def test_soft_and_standard_kernels_are_judged(demo, thresholds, tmp_path, kernel):
    source, study = rewritten(demo, "noisy_ct", tmp_path / "soft", ConvolutionKernel=kernel)
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    assert [f.code for f in noise_findings(result)] == ["image_quality.ct.noise.fail"]


@pytest.mark.parametrize(
    "kernel",
    [
        "H60s",
        "I70f",
        "Br64",
        "Bl57",
        "Hr68",
        "U70u",
        "BONE",
        "LUNG",
        "DETAIL",
        "YC",
        "L",
        "FC52",
        "B_SHARP_C",
        "H_SHARP_A",
    ],
)
def test_sharp_bone_and_lung_kernels_noise_is_not_applicable_by_design(demo, thresholds, tmp_path, kernel):
    source, study = rewritten(demo, "noisy_ct", tmp_path / "sharp", ConvolutionKernel=kernel)
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    assert noise_findings(result) == []
    (info,) = [
        f
        for f in result.findings
        if f.code == "image_quality.metric.not_applicable" and "ct.noise_hu" in (f.value or "")
    ]
    assert info.severity is Severity.INFO and info.value == "ct.noise_hu"
    assert f"kernel {kernel!r}" in info.message and "image noise" in info.message
    assert kernel in info.message_zh and "不适用" in info.message_zh
    assert by_metric(result)["ct.noise_hu"].value > 70  # measured and stored, not judged


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("Jr40", KernelClass.BRAIN),
        ("Jr64", KernelClass.BONE),
        ("U70u", KernelClass.BONE),
        ("U90u", KernelClass.BONE),
        ("Hr38h", KernelClass.BRAIN),
        ("Qr59", KernelClass.OTHER),
        ("I70f", KernelClass.OTHER),
        ("H60s", KernelClass.BONE),
        ("YC", KernelClass.OTHER),
        ("FC13", KernelClass.SOFT_TISSUE),
    ],
)
def test_kernel_table_covers_the_vendor_families(kernel, expected):
    assert kernel_class(kernel, shipped_vocabulary())[0] is expected


def test_the_check_passes_slice_thickness_and_scan_field_to_the_metrics(demo, thresholds, tmp_path, monkeypatch):
    from qc_pipeline.checks import image_quality

    seen = {}
    real = image_quality.ct.measure

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(image_quality.ct, "measure", spy)
    source, study = rewritten(
        demo, "phantom_ct_chest", tmp_path / "tags", DataCollectionDiameter=500, SliceThickness=1.25
    )
    check_image_quality(study, thresholds, source, item_modality="CT", item_code="YB-036")
    assert seen["scan_field_mm"] == 500.0 and seen["slice_thickness_mm"] == 1.25


def test_the_reference_thickness_is_read_from_the_ct_thresholds_file(demo, thresholds, tmp_path):
    reference = thresholds.parameters["ct.noise_reference_thickness_mm"]
    assert reference.value == 5.0 and reference.units == "mm" and "Hsieh" in reference.source
    # a site that states its limits at 2.5 mm: 80 HU at 0.625 mm is 80 x sqrt(0.625 / 2.5) = 40 HU there
    site = dataclasses.replace(
        thresholds,
        parameters={**thresholds.parameters, reference.id: reference.model_copy(update={"value": 2.5})},
    )
    source, study = rewritten(demo, "noisy_ct", tmp_path / "site", SliceThickness=0.625)
    result = check_image_quality(study, site, source, item_modality="CT", item_code="YB-036")
    (finding,) = noise_findings(result)
    assert finding.code == "image_quality.ct.noise.review" and 35 < float(finding.value.split()[0]) < 45
    assert "normalised to 2.5 mm" in by_metric(result)["ct.noise_hu"].detail


def test_a_misspelt_parameter_is_rejected(tmp_path):
    from qc_pipeline.errors import ConfigError
    from qc_pipeline.rules.loader import default_thresholds_dir, load_thresholds

    folder = tmp_path / "thresholds"
    shutil.copytree(default_thresholds_dir(), folder)
    path = folder / "image_quality_ct.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "id: ct.noise_reference_thickness_mm", "id: ct.noise_reference_thicknes_mm"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="ct.noise_reference_thicknes_mm"):
        load_thresholds(folder)
