"""The DR image-quality judgement on written DICOM files: burn-out at the over-exposed end, the
deviation index above +3, and the exposure indicators of vendors without the IEC 62494-1 tags."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from qc_pipeline.checks import dr_exposure
from qc_pipeline.checks.image_quality import check_image_quality
from qc_pipeline.domain import Severity
from qc_pipeline.errors import ConfigError
from qc_pipeline.metrics import dr
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.rules.loader import default_thresholds_dir
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series
from qc_pipeline.sources import FolderSource
from tests.metrics.phantoms_dr import STORED_MAX, chest_phantom

BURNOUT_REVIEW = "image_quality.dr.burnout_anatomy.review"
BURNOUT_FAIL = "image_quality.dr.burnout_anatomy.fail"
DI_HIGH = "image_quality.dr.deviation_index_high.review"
CHEST_PA = "YB-001"
THRESHOLDS_DIR = default_thresholds_dir()


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


def write_dx(
    folder: Path,
    image: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    manufacturer: str | None = "QC Pipeline Phantoms",
    extra: dict[str, object] | None = None,
) -> Path:
    """One DX chest PA holding ``image`` (MONOCHROME2 values); MONOCHROME1 stores 4095 - image."""
    stored = image if photometric == "MONOCHROME2" else (STORED_MAX - image.astype(np.float64)).astype(np.uint16)
    uid = derive_uid("test-image-quality-dr", folder.name)
    write_series(
        stored,
        folder,
        patient=PatientInfo(name="Test^DR", id="DR0001", sex="F", birth_date=dt.date(1980, 1, 1)),
        study=StudyInfo(
            study_instance_uid=uid,
            date=dt.date(2026, 10, 1),
            time=dt.time(9, 0),
            accession_number="DR0001",
            institution_name="Test Hospital",
            description="胸部后前位",
        ),
        series=SeriesInfo(
            series_instance_uid=derive_uid(uid, "series"),
            modality="DX",
            number=1,
            description="胸部 后前位 PA",
            body_part="CHEST",
            manufacturer=manufacturer,
            extra={"ViewPosition": "PA", "PhotometricInterpretation": photometric, **(extra or {})},
        ),
        geometry=Geometry(pixel_spacing_mm=(1.4, 1.4)),
    )
    return folder


def judge_file(folder: Path, thresholds, item_code: str | None = CHEST_PA):
    source = FolderSource(folder)
    (entry,) = list(source.discover())
    return check_image_quality(source.load(entry), thresholds, source, item_modality="DR", item_code=item_code)


def flagged(result) -> dict[str, object]:
    return {f.code: f for f in result.findings if f.severity is not Severity.INFO}


def measured(result, metric: str):
    (m,) = [m for m in result.measurements if m.metric == metric]
    return m


# --- burn-out at the over-exposed end ---------------------------------------------------------


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_burned_out_lungs_fail_in_either_photometric_interpretation(tmp_path, thresholds, photometric) -> None:
    # Half of each lung pinned at the over-exposed end: high stored values in MONOCHROME1, low in
    # MONOCHROME2, with the direct-exposure background pinned at the same value. It passed before:
    # the dark end was never judged.
    phantom = chest_phantom(seed=11, burnout=0.5)
    result = judge_file(write_dx(tmp_path / photometric, phantom.image, photometric=photometric), thresholds)
    found = flagged(result)
    assert set(found) == {BURNOUT_FAIL}, [f.message for f in result.findings]
    finding = found[BURNOUT_FAIL]
    assert finding.severity is Severity.FAIL
    assert finding.limit == "≤ 10 %"  # the chest items' limit, not the default 25 %
    assert "anatomy burned out at the over-exposed end" in finding.message
    assert "pinned at its darkest value" in finding.message
    assert "过曝" in finding.message_zh
    value = measured(result, "dr.burnout_anatomy_percent")
    # Burned lung pixels / anatomy pixels of the phantom's truth, on the 256 px grid: the anatomy
    # found reaches about 1.7 px further down the body's soft edge (about 3.5 % more pixels, i.e.
    # 0.7 points at 19 %): tolerance 2 points.
    truth = 100.0 * np.count_nonzero(phantom.burned) / np.count_nonzero(phantom.body)
    assert value.value == pytest.approx(truth, abs=2.0)
    assert "the over-exposed end" in value.detail


def test_burned_out_lungs_outside_a_chest_item_use_the_default_limits(tmp_path, thresholds) -> None:
    phantom = chest_phantom(seed=11, burnout=0.5)  # about 19 % of the anatomy
    result = judge_file(write_dx(tmp_path / "other", phantom.image), thresholds, item_code=None)
    found = flagged(result)
    assert set(found) == {BURNOUT_REVIEW}
    assert found[BURNOUT_REVIEW].limit == "≤ 5 %"


@pytest.mark.parametrize(
    "shape",
    [
        {"body_semi_axes": (0.45, 0.36)},
        {"body_semi_axes": (0.34, 0.26)},
        {"body_semi_axes": (0.38, 0.3), "collimator": 0.06},  # inside an unmasked collimator shadow
    ],
)
def test_normal_chest_with_a_black_direct_exposure_background_passes(tmp_path, thresholds, shape) -> None:
    # The background is pinned at 0 (the over-exposed end) over 49 % to 72 % of the image: it
    # reaches the image edge (or the collimator shadow), so it is direct exposure, not burned-out anatomy.
    phantom = chest_phantom(seed=12, **shape)
    assert phantom.background_percent > 45.0
    result = judge_file(write_dx(tmp_path / "normal", phantom.image, photometric="MONOCHROME1"), thresholds)
    assert flagged(result) == {}, [f.message for f in result.findings]
    assert measured(result, "dr.burnout_anatomy_percent").value < 0.1
    assert measured(result, "dr.pileup_min_percent").value > 30.0  # the pinned background, not judged


def test_real_cr_chest_still_passes_against_the_chest_limits(tmp_path, thresholds) -> None:
    # pydicom-data RG1_UNCI: a real CR chest PA, MONOCHROME1, no exposure tags. Its header says the
    # pixels were once JPEG 2000 coded at 10:1 (LossyImageCompression 01), which withholds the
    # pile-up metrics (tests/checks/test_image_quality_never_fail_open.py); this test is about the
    # burn-out limits on real anatomy, so the copy drops that history.
    folder = tmp_path / "rg1"
    folder.mkdir()
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCI.dcm"))
    for keyword in ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(folder / "RG1_UNCI.dcm")
    result = judge_file(folder, thresholds, item_code=CHEST_PA)
    assert flagged(result) == {}, [f.message for f in result.findings]
    assert measured(result, "dr.burnout_anatomy_percent").value < 0.001  # 0.00045 %


# --- the deviation index above +3 --------------------------------------------------------------


def test_deviation_index_above_3_is_review_naming_tg116_and_is_still_stored(tmp_path, thresholds) -> None:
    phantom = chest_phantom(seed=13, background=300.0)
    folder = write_dx(
        tmp_path / "di",
        phantom.image,
        extra={"ExposureIndex": 895.0, "TargetExposureIndex": 400.0, "DeviationIndex": 3.5},
    )
    result = judge_file(folder, thresholds)
    found = flagged(result)
    assert set(found) == {DI_HIGH}
    assert found[DI_HIGH].severity is Severity.REVIEW
    assert "TG-116" in found[DI_HIGH].message and "repeat only if relevant anatomy is clipped" in found[DI_HIGH].message
    assert found[DI_HIGH].value == "3.5 DI" or found[DI_HIGH].value == "3.5"
    di = measured(result, "dr.deviation_index")
    assert di.value == 3.5 and "DeviationIndex (0018,1413)" in di.detail
    assert measured(result, "dr.exposure_index").value == 895.0


# --- vendor exposure indicators -----------------------------------------------------------------

OPENREM = Path(__file__).resolve().parents[1] / "data" / "dr_exposure"
"""Headers reduced from OpenREM's test files (source and licence in its README.md)."""
EXPOSURE_TAGS = ("ExposureIndex", "TargetExposureIndex", "DeviationIndex", "RelativeXRayExposure", "Sensitivity")
DI_LOW_REVIEW = "image_quality.dr.deviation_index_low.review"
DI_LOW_FAIL = "image_quality.dr.deviation_index_low.fail"
VENDOR_RANGE = "image_quality.dr.vendor_exposure_outside_range.review"
VENDOR_DI_LOW = "image_quality.dr.deviation_index_vendor_low.review"


def openrem_header(name: str) -> tuple[str, dict[str, object]]:
    ds = pydicom.dcmread(OPENREM / name)
    return str(ds.Manufacturer), {k: ds[k].value for k in EXPOSURE_TAGS if k in ds}


def judge_vendor(tmp_path: Path, thresholds, manufacturer: str, tags: dict[str, object]):
    phantom = chest_phantom(seed=14, background=300.0)  # clean: only exposure findings can fire
    folder = write_dx(tmp_path / "vendor", phantom.image, manufacturer=manufacturer, extra=tags)
    result = judge_file(folder, thresholds)
    return result, measured(result, "dr.deviation_index_vendor"), measured(result, "dr.vendor_exposure_indicator")


def test_kodak_ei_converts_to_di_with_its_source(tmp_path, thresholds) -> None:
    manufacturer, tags = openrem_header("DX-Im-Carestream_DR7500-1.dcm")
    assert manufacturer == "KODAK" and tags == {"RelativeXRayExposure": "1460"}
    result, di, vendor = judge_vendor(tmp_path, thresholds, manufacturer, tags)
    # Kodak EI = 1000 log10(X/mR) + 2000 (TG-116 Table I): DI = 10 (1460 - 2000) / 1000.
    assert di.value == pytest.approx(-5.4, abs=1e-9)
    assert di.detail.startswith("converted from the vendor indicator")
    assert measured(result, "dr.deviation_index").value is None  # the IEC DI is not pretended
    assert "RelativeXRayExposure (0018,1405) = 1460 read as Carestream/Kodak EI (mbel)" in di.detail
    assert "TG-116" in di.detail and "site default" in di.detail
    assert vendor.value == 1460.0
    found = flagged(result)
    # a converted DI rests on a site-default vendor target: review, never a fail on it
    assert set(found) == {VENDOR_DI_LOW}
    assert found[VENDOR_DI_LOW].severity is Severity.REVIEW and "-5.4" in found[VENDOR_DI_LOW].message


def test_siemens_exi_is_read_and_its_speed_class_is_not_an_s_value(tmp_path, thresholds) -> None:
    manufacturer, tags = openrem_header("DX-Im-SiemensMultix.dcm")
    assert tags == {"RelativeXRayExposure": "287", "Sensitivity": "400"}
    result, di, vendor = judge_vendor(tmp_path, thresholds, manufacturer, tags)
    # EXI ∝ exposure, target 250: DI = 10 log10(287 / 250) = 0.60 (the speed class 400 read as a
    # Fuji-style S would give 10 log10(200 / 400) = -3.0 and a fail).
    assert di.value == pytest.approx(10 * np.log10(287 / 250), abs=1e-9)
    assert "Siemens EXI" in di.detail and "DI = 10 log10(Siemens EXI / 250)" in di.detail
    assert vendor.value == 287.0
    assert flagged(result) == {}


def test_drgem_indicator_without_conversion_is_judged_against_the_vendor_range(tmp_path, thresholds) -> None:
    manufacturer, tags = openrem_header("DX-Im-DRGEM.dcm")
    assert manufacturer == "DRGEM" and tags == {"RelativeXRayExposure": "100", "Sensitivity": "0"}
    result, di, vendor = judge_vendor(tmp_path / "in", thresholds, manufacturer, tags)
    assert vendor.value == 100.0 and "judged against the vendor range 50-200" in vendor.detail
    assert di.value is None and "no published conversion to DI" in di.detail
    assert flagged(result) == {}

    result, _, vendor = judge_vendor(
        tmp_path / "out", thresholds, manufacturer, {**tags, "RelativeXRayExposure": "450"}
    )
    found = flagged(result)
    assert set(found) == {VENDOR_RANGE}
    finding = found[VENDOR_RANGE]
    assert finding.severity is Severity.REVIEW
    assert "DRGEM exposure indicator 450" in finding.message and "above the vendor range 50-200" in finding.message
    assert "site default" in finding.message and "厂商参考范围" in finding.message_zh
    assert finding.value == "450 vendor" and finding.limit == "50-200 vendor"


def test_iec_tags_win_and_a_vendor_tag_on_another_scale_is_not_converted(tmp_path, thresholds) -> None:
    manufacturer, tags = openrem_header("DX-Im-Carestream_DRX.dcm")
    result, _, vendor = judge_vendor(tmp_path, thresholds, manufacturer, tags)
    di = measured(result, "dr.deviation_index")
    assert di.value == pytest.approx(0.55) and di.detail == "DeviationIndex (0018,1413) from the header"
    # 256 is the IEC EI again, far below any Kodak EI: not read as one.
    assert vendor.value is None and "outside the plausible range 1000-3500" in vendor.detail
    assert flagged(result) == {}


def test_ge_iec_deviation_index_is_used(tmp_path, thresholds) -> None:
    manufacturer, tags = openrem_header("DX-Im-GE_XR220-3.dcm")
    result, _, vendor = judge_vendor(tmp_path, thresholds, manufacturer, tags)
    assert measured(result, "dr.deviation_index").value == pytest.approx(-1.8)
    assert vendor.value is None and "no vendor exposure indicator for this manufacturer" in vendor.detail
    assert set(flagged(result)) == {DI_LOW_REVIEW}


@pytest.mark.parametrize(
    ("manufacturer", "tags", "name", "expected_di"),
    [
        # Header values as literals: no Fuji/Konica/Agfa/Philips DX header is among OpenREM's test
        # files. Expected DIs from the published relations (TG-116 Table I), by hand.
        ("FUJIFILM Corporation", {"Sensitivity": "100"}, "Fuji S", 10 * np.log10(200 / 100)),  # S halves: +3
        ("FUJIFILM Corporation", {"RelativeXRayExposure": "400"}, "Fuji S", 10 * np.log10(200 / 400)),
        ("KONICA MINOLTA", {"Sensitivity": "200"}, "Konica S", 0.0),
        ("Agfa", {"RelativeXRayExposure": "2.26"}, "Agfa lgM", 10 * (2.26 - 1.96)),  # +0.3 lgM: +3
        ("Philips Medical Systems", {"RelativeXRayExposure": "560"}, "Philips EI_s", 10 * np.log10(400 / 560)),
        ("Carestream Health", {"RelativeXRayExposure": "2300"}, "Carestream/Kodak EI", (2300 - 2000) / 100),
    ],
)
def test_vendor_indicator_converts_to_di(manufacturer, tags, name, expected_di) -> None:
    ds = pydicom.Dataset()
    ds.Manufacturer = manufacturer
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    table = dr_exposure.vendor_table(THRESHOLDS_DIR)
    indicator = dr_exposure.read_indicator(ds, table)
    assert indicator is not None and indicator.name == name
    result = {
        m.metric: m
        for m in dr.measure(
            chest_phantom(seed=15).image.astype(np.float64),
            spacing_mm=None,
            stored_range=(0.0, STORED_MAX),
            exposure_index=None,
            target_exposure_index=None,
            deviation_index=None,
            vendor_indicator=indicator,
        )
    }
    assert result["dr.deviation_index"].value is None
    assert result["dr.deviation_index_vendor"].value == pytest.approx(expected_di, abs=1e-9)
    assert f"read as {name}" in result["dr.deviation_index_vendor"].detail
    assert "source:" in result["dr.deviation_index_vendor"].detail


def test_no_exposure_tag_at_all_leaves_the_pixel_estimate(tmp_path, thresholds) -> None:
    result, _, vendor = judge_vendor(tmp_path, thresholds, "QC Pipeline Phantoms", {})
    di = measured(result, "dr.deviation_index")
    assert di.value is None and "exposure estimated from pixels only" in di.detail
    assert vendor.value is None
    estimate = measured(result, "dr.pixel_exposure_voi_percent")
    assert estimate.value is not None and "ESTIMATE from pixel values" in estimate.detail
    assert flagged(result) == {}


def test_vendor_table_is_valid_and_rejects_a_malformed_row(tmp_path) -> None:
    table = dr_exposure.vendor_table(THRESHOLDS_DIR)
    assert {row.name for row in table.indicators} >= {
        "Carestream/Kodak EI",
        "Fuji S",
        "Konica S",
        "Agfa lgM",
        "Siemens EXI",
        "Philips EI_s",
        "DRGEM exposure indicator",
    }
    assert all(row.source for row in table.indicators)
    bad = tmp_path / "thresholds"
    (bad / "dr_exposure").mkdir(parents=True)
    (bad / "dr_exposure" / "vendor_indicators.yaml").write_text(
        "version: x\nindicators:\n  - {name: A, manufacturer_words: [a], tag: RelativeXRayExposure, unit: u,"
        " conversion: log, target: 1, source: abc}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="vendor_indicators.yaml: indicators\\[0\\].*per_decade"):
        dr_exposure.vendor_table(bad)
    assert dr_exposure.vendor_table(tmp_path / "nowhere").indicators == []
