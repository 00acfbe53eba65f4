"""Series roles: each series of a study as the pipeline reads it (MR sequence, CT phase/slice, DR view/side)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.catalog.series_roles import describe_series
from qc_pipeline.domain import DRRole, InstanceRef, MRRole, SeriesKind, SeriesSummary
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.sources.base import LoadedInstance, LoadedStudy, StudyEntry

STUDY = "1.2.826.0.1.3680043.10.2424"
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"


@pytest.fixture(scope="module")
def vocabulary():
    return load_pipeline_thresholds().catalog.vocabulary


def obj(series: int, number: int | None, modality: str, sop_class: str, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID = f"{STUDY}.{series}"
    ds.Modality = modality
    ds.SOPClassUID = sop_class
    if number is not None:
        ds.SeriesNumber = number
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def study(*objects: Dataset) -> LoadedStudy:
    loaded = LoadedStudy(entry=StudyEntry(study_instance_uid=STUDY, locations=(), fingerprint="f" * 64))
    for i, ds in enumerate(objects):
        ref = InstanceRef(f"{ds.SeriesInstanceUID}.{i}", ds.SOPClassUID, ds.SeriesInstanceUID, f"{i}.dcm")
        loaded.instances.append(LoadedInstance(ref=ref, dataset=ds, pixel_data=None, is_image=ds.Modality != "SR"))
    return loaded


def flair(**attrs: object) -> Dataset:
    """A Siemens dark-fluid TIRM: IR spin echo, TR 9000 ms, TE 81 ms, TI 2500 ms, axial."""
    values: dict[str, object] = dict(
        SeriesDescription="t2_tirm_tra_dark-fluid",
        ProtocolName="t2_tirm_tra_dark-fluid",
        Manufacturer="SIEMENS",
        ScanningSequence="SE\\IR",
        SequenceVariant="SK\\SP\\MP\\OSP",
        RepetitionTime=9000,
        EchoTime=81,
        InversionTime=2500,
        ImageType="ORIGINAL\\PRIMARY\\M\\ND",
        ImageOrientationPatient=AXIAL,
    )
    return obj(3, 3, "MR", MR_IMAGE, **{**values, **attrs})


def test_mr_series_carries_the_sequence_identification_with_its_evidence(vocabulary):
    (series,) = describe_series(study(flair(), flair()), vocabulary)
    assert (series.kind, series.n_instances, series.description) == (SeriesKind.MR, 2, "t2_tirm_tra_dark-fluid")
    role = series.role
    assert isinstance(role, MRRole)
    assert (role.weighting, role.plane, role.fat_suppressed, role.post_contrast) == ("T2_FLAIR", "AXIAL", False, False)
    assert "TI 2500 ms" in role.evidence[0] and "FLAIR" in role.evidence[0]
    assert any("ImageOrientationPatient" in e for e in role.evidence)


def test_mr_series_named_flair_without_inversion_says_why_it_is_not_one(vocabulary):
    """A 'FLAIR' name on a short-TR gradient echo: the parameters say T1, the evidence says so."""
    ds = flair(
        ScanningSequence="GR",
        SequenceVariant="SP",
        RepetitionTime=250,
        EchoTime=2.5,
        InversionTime=None,
        ImageOrientationPatient=SAGITTAL,
        ContrastBolusAgent="Gadovist",
    )
    del ds.InversionTime
    (series,) = describe_series(study(ds), vocabulary)
    assert series.role.weighting != "T2_FLAIR"
    assert series.role.plane == "SAGITTAL" and series.role.post_contrast is True
    assert any("conflict" in e for e in series.role.evidence)
    assert any("Gadovist" in e for e in series.role.evidence)


def test_ct_series_phase_slice_and_localizer(vocabulary):
    plain = obj(2, 2, "CT", CT_IMAGE, SeriesDescription="Chest 5mm", SliceThickness="5", ConvolutionKernel="B31f")
    enhanced = obj(
        4, 4, "CT", CT_IMAGE, SeriesDescription="Chest C+ 1mm", SliceThickness="1.25", ContrastBolusAgent="Iopromide"
    )
    scout = obj(1, 1, "CT", CT_IMAGE, SeriesDescription="Topogram", ImageType="ORIGINAL\\PRIMARY\\LOCALIZER")
    by_number = {s.series_number: s.role for s in describe_series(study(enhanced, plain, scout), vocabulary)}
    assert list(by_number) == [1, 2, 4]  # ordered by SeriesNumber
    assert (by_number[1].phase, by_number[1].kernel_class, by_number[1].slice_mm) == ("LOCALIZER", "UNKNOWN", None)
    assert "ImageType LOCALIZER/SCOUT on every image" in by_number[1].evidence
    # the same description completeness reads: the kernel is classified from the lexicon's table
    assert (by_number[2].phase, by_number[2].slice_mm, by_number[2].kernel_class) == ("PLAIN", 5.0, "SOFT_TISSUE")
    assert "kernel 'B31f' → SOFT_TISSUE" in by_number[2].evidence
    assert (by_number[4].phase, by_number[4].slice_mm, by_number[4].kernel_class) == ("POST_CONTRAST", 1.25, "UNKNOWN")
    assert "ContrastBolusAgent (0018,0010) 'Iopromide'" in by_number[4].evidence
    assert by_number[4].evidence[-1] == "acquisition: unknown"


def test_dr_series_view_and_side(vocabulary):
    # a Chinese DR system leaves ViewPosition empty: the series name names the view
    frontal = obj(1, 1, "DX", DX_IMAGE, SeriesDescription="胸部后前位", ImageLaterality="")
    lateral = obj(2, 2, "DX", DX_IMAGE, ViewPosition="LL", Laterality="L")
    unnamed = obj(3, None, "CR", DX_IMAGE)
    first, second, third = describe_series(study(unnamed, lateral, frontal), vocabulary)
    assert first.role == DRRole(
        view="PA", laterality=None, evidence=("view PA from SeriesDescription (0008,103E) '胸部后前位'",)
    )
    assert (second.role.view, second.role.laterality) == ("LAT", "L")
    assert second.role.evidence == (
        "view LAT from ViewPosition (0018,5101) 'LL'",
        "side from Laterality (0020,0060) 'L'",
    )
    assert third.series_number is None and third.kind is SeriesKind.DR and third.role.view is None
    assert third.role.evidence[0].startswith("no view")


def test_non_image_series_have_no_role(vocabulary):
    sr = obj(99, 99, "SR", DOSE_SR, SeriesDescription="Dose Report")
    ct, report = describe_series(study(obj(2, 2, "CT", CT_IMAGE), sr), vocabulary)
    assert (report.kind, report.role, report.modality, report.n_instances) == (SeriesKind.NON_IMAGE, None, "SR", 1)
    assert report.as_dict() == {
        "series_instance_uid": f"{STUDY}.99",
        "series_number": 99,
        "description": "Dose Report",
        "modality": "SR",
        "n_instances": 1,
        "kind": "non_image",
        "role": None,
    }
    assert ct.kind is SeriesKind.CT


def test_renaming_and_reordering_the_files_does_not_change_the_roles(vocabulary):
    objects = [flair(), obj(2, 2, "CT", CT_IMAGE, SliceThickness="5"), obj(99, 99, "SR", DOSE_SR)]
    assert describe_series(study(*objects), vocabulary) == describe_series(study(*reversed(objects)), vocabulary)


def test_json_form_round_trips(vocabulary):
    described = describe_series(
        study(flair(), obj(2, 2, "CT", CT_IMAGE, SliceThickness="5"), obj(99, 99, "SR", DOSE_SR)), vocabulary
    )
    assert tuple(SeriesSummary.from_dict(s.as_dict()) for s in described) == described
    mr = next(s for s in described if s.kind is SeriesKind.MR).as_dict()
    assert set(mr["role"]) == {"weighting", "plane", "fat_suppressed", "post_contrast", "evidence"}
    assert isinstance(mr["role"]["evidence"], list)


def test_a_role_of_the_wrong_kind_is_refused():
    with pytest.raises(ValueError, match=r"kind CT takes CTRole, got DRRole"):
        SeriesSummary("1.2.3", 1, None, "CT", 1, SeriesKind.CT, DRRole(view=None, laterality=None))
    with pytest.raises(ValueError, match=r"not a stored series .*'kind'"):
        SeriesSummary.from_dict({"series_instance_uid": "1.2.3", "n_instances": 1})
