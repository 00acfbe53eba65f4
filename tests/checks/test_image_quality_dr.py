"""The DR image-quality judgement on written DICOM files: burn-out at the over-exposed end, the
deviation index above +3, and the exposure indicators of vendors without the IEC 62494-1 tags."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from qc_pipeline.checks.image_quality import check_image_quality
from qc_pipeline.domain import Severity
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series
from qc_pipeline.sources import FolderSource
from tests.metrics.phantoms_dr import STORED_MAX, chest_phantom

BURNOUT_REVIEW = "image_quality.dr.burnout_anatomy.review"
BURNOUT_FAIL = "image_quality.dr.burnout_anatomy.fail"
DI_HIGH = "image_quality.dr.deviation_index_high.review"
CHEST_PA = "YB-001"


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


@pytest.mark.parametrize("body_semi_axes", [(0.45, 0.36), (0.34, 0.26)])
def test_normal_chest_with_a_black_direct_exposure_background_passes(tmp_path, thresholds, body_semi_axes) -> None:
    # The background is pinned at 0 (the over-exposed end) over 49 % and 72 % of the image: it
    # reaches the image edge, so it is direct exposure, not burned-out anatomy.
    phantom = chest_phantom(seed=12, body_semi_axes=body_semi_axes)
    assert phantom.background_percent > 45.0
    result = judge_file(write_dx(tmp_path / "normal", phantom.image, photometric="MONOCHROME1"), thresholds)
    assert flagged(result) == {}, [f.message for f in result.findings]
    assert measured(result, "dr.burnout_anatomy_percent").value < 0.1
    assert measured(result, "dr.pileup_min_percent").value > 30.0  # the pinned background, not judged


# --- the deviation index above +3 --------------------------------------------------------------


def test_deviation_index_above_3_is_review_naming_tg116_and_is_still_stored(tmp_path, thresholds) -> None:
    phantom = chest_phantom(seed=13, background=300.0)
    folder = write_dx(
        tmp_path / "di", phantom.image,
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
