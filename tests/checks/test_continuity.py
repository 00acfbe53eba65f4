"""Series continuity on hand-built slice stacks: what fires, where, and what must not move.

Stacks are built from a known origin, orientation and spacing, so every expected position
(e.g. the dropped slice of index 7 at z = 7 × 2.5 mm) is known by construction.
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from qc_pipeline.checks.continuity import RULE_IDS, check_series_continuity
from qc_pipeline.domain import Category, Severity
from qc_pipeline.rules.loader import default_thresholds_dir, load_thresholds

SERIES = "1.2.826.0.1.3680043.10.1717.7"
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


@pytest.fixture(scope="module")
def thresholds():
    return load_thresholds()


def normal_of(iop: list[float]) -> list[float]:
    r, c = iop[:3], iop[3:]
    return [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]]


def tilted_axial(degrees: float) -> list[float]:
    a = math.radians(degrees)
    return [1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a)]


def image(index: int, *, iop: list[float], spacing: float, origin: tuple[float, float, float], number: int) -> Dataset:
    n = normal_of(iop)
    ds = Dataset()
    ds.SOPInstanceUID = f"{SERIES}.{number}.{index}"
    ds.SeriesInstanceUID = SERIES
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = number
    ds.ImageOrientationPatient = iop
    ds.ImagePositionPatient = [round(o + index * spacing * k, 4) for o, k in zip(origin, n, strict=True)]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = spacing
    ds.Rows = ds.Columns = 512
    return ds


def stack(
    n: int = 20,
    *,
    iop: list[float] = AXIAL,
    spacing: float = 2.5,
    origin: tuple[float, float, float] = (-180.0, -180.0, 0.0),
    drop: tuple[int, ...] = (),
    first_number: int = 1,
) -> list[Dataset]:
    return [
        image(i, iop=iop, spacing=spacing, origin=origin, number=first_number + i) for i in range(n) if i not in drop
    ]


def codes(findings) -> list[str]:
    return sorted(f.code for f in findings)


def check(datasets, thresholds):
    return check_series_continuity(datasets, thresholds, series_instance_uid=SERIES)


def test_rule_ids_match_the_thresholds_file(thresholds):
    import yaml

    data = yaml.safe_load((default_thresholds_dir() / "continuity.yaml").read_text(encoding="utf-8"))
    assert {r["id"] for r in data["rules"]} == RULE_IDS
    assert RULE_IDS <= thresholds.rules.keys()
    assert thresholds.rule("continuity.slice.missing").severity is Severity.FAIL
    assert thresholds.limit("continuity.slice.missing") == 1.5


def test_clean_stack_has_no_findings(thresholds):
    assert check(stack(), thresholds) == []


@pytest.mark.parametrize("iop", [AXIAL, SAGITTAL, CORONAL, tilted_axial(10), tilted_axial(35)])
def test_clean_stacks_in_every_orientation(thresholds, iop):
    assert check(stack(iop=iop, origin=(-100.0, 20.0, 35.0)), thresholds) == []


def test_dropped_slice_names_its_position(thresholds):
    findings = check(stack(drop=(7,)), thresholds)
    assert codes(findings) == ["continuity.instance_number.gap", "continuity.slice.missing"]
    missing = next(f for f in findings if f.code == "continuity.slice.missing")
    assert missing.severity is Severity.FAIL and missing.category is Category.CONTINUITY
    assert "missing slice(s) near z = 17.5 mm" in missing.message  # index 7 × 2.5 mm
    assert "z = 17.5 mm" in missing.message_zh
    assert missing.value == "z = 17.5 mm"
    assert missing.limit == "1.5 × median spacing"
    assert missing.series_instance_uid == SERIES
    gap = next(f for f in findings if f.code == "continuity.instance_number.gap")
    assert gap.value == "8" and "InstanceNumber (0020,0013)" in gap.message


def test_instance_number_gaps_are_listed_as_ranges(thresholds):
    findings = check(stack(drop=(3, 4, 5, 9)), thresholds)
    gap = next(f for f in findings if f.code == "continuity.instance_number.gap")
    assert gap.value == "4-6, 10"
    assert "skips 4 number(s) between 1 and 20" in gap.message


def test_two_adjacent_dropped_slices_are_both_named(thresholds):
    findings = check(stack(drop=(7, 8)), thresholds)
    missing = next(f for f in findings if f.code == "continuity.slice.missing")
    assert missing.value == "z = 17.5 mm; z = 20.0 mm"


def test_dropped_slice_in_a_sagittal_stack_is_named_by_x(thresholds):
    # Sagittal normal is -x: slice i lies at x = 30 - 4 i.
    findings = check(stack(iop=SAGITTAL, spacing=4.0, origin=(30.0, -120.0, 100.0), drop=(5,)), thresholds)
    missing = next(f for f in findings if f.code == "continuity.slice.missing")
    assert missing.value == "x = 10.0 mm"


def test_dropped_slice_in_an_oblique_stack_is_named_along_the_normal(thresholds):
    findings = check(stack(iop=tilted_axial(35), spacing=3.0, origin=(0.0, 0.0, 0.0), drop=(4,)), thresholds)
    missing = next(f for f in findings if f.code == "continuity.slice.missing")
    assert missing.value == "12.0 mm along the slice normal"  # origin projects to 0; 4 × 3 mm


def test_slightly_uneven_spacing_is_not_a_missing_slice(thresholds):
    datasets = stack()
    for ds in datasets[10:]:  # one step of 3.7 mm (1.48 × 2.5): under the 1.5 limit
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            ds.ImagePositionPatient[2] + 1.2,
        ]
    assert check(datasets, thresholds) == []


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_order_gives_the_same_findings(thresholds, seed):
    datasets = stack(drop=(3, 12))
    datasets[5].PixelSpacing = [0.8, 0.8]
    expected = [f.as_dict() for f in check(datasets, thresholds)]
    assert len(expected) == 3
    shuffled = list(datasets)
    random.Random(seed).shuffle(shuffled)
    assert [f.as_dict() for f in check(shuffled, thresholds)] == expected


def test_duplicate_instance_numbers(thresholds):
    datasets = stack()
    datasets[-1].InstanceNumber = 19  # 1..19 all present, 19 twice
    findings = check(datasets, thresholds)
    assert codes(findings) == ["continuity.instance_number.duplicate"]
    assert findings[0].value == "19" and "19 (×2)" in findings[0].message
    assert findings[0].severity is Severity.REVIEW


def test_duplicate_position(thresholds):
    datasets = stack()
    extra = image(5, iop=AXIAL, spacing=2.5, origin=(-180.0, -180.0, 0.0), number=21)
    findings = check(datasets + [extra], thresholds)
    assert codes(findings) == ["continuity.slice.duplicate_position"]
    assert findings[0].value == "z = 12.5 mm"
    assert "InstanceNumber 6, InstanceNumber 21" in findings[0].message


def test_one_slice_of_another_orientation(thresholds):
    datasets = stack()
    odd = image(20, iop=SAGITTAL, spacing=2.5, origin=(-180.0, -180.0, 0.0), number=21)
    findings = check(datasets + [odd], thresholds)
    assert codes(findings) == ["continuity.orientation.inconsistent"]
    f = findings[0]
    assert f.severity is Severity.FAIL
    assert f.sop_instance_uid == odd.SOPInstanceUID
    assert "ImageOrientationPatient (0020,0037)" in f.message and "SAGITTAL" in f.message
    assert "InstanceNumber 21" in f.message and "20 images have 1\\0\\0\\0\\1\\0 (AXIAL)" in f.message


def test_a_slice_replaced_by_another_orientation_also_leaves_a_gap(thresholds):
    datasets = stack()
    datasets[9].ImageOrientationPatient = tilted_axial(15)
    findings = check(datasets, thresholds)
    assert codes(findings) == ["continuity.orientation.inconsistent", "continuity.slice.missing"]
    assert "15.0° off" in findings[0].message


def test_missing_orientation_on_one_slice(thresholds):
    datasets = stack()
    del datasets[4].ImageOrientationPatient
    findings = check(datasets, thresholds)
    assert "continuity.orientation.inconsistent" in codes(findings)
    assert "missing or unreadable on InstanceNumber 5" in findings[0].message


def test_angled_blocks_are_checked_as_stacks_of_their_own(thresholds):
    """Disc-angled axial blocks of a spine series: two orientations of 5 slices each."""
    block_a = stack(5, iop=tilted_axial(8), origin=(0.0, 0.0, 0.0), spacing=4.0)
    block_b = stack(5, iop=tilted_axial(-12), origin=(0.0, 0.0, 60.0), spacing=4.0, first_number=6)
    assert check(block_a + block_b, thresholds) == []
    gapped = stack(5, iop=tilted_axial(-12), origin=(0.0, 0.0, 60.0), spacing=4.0, first_number=6, drop=(2,))
    assert "continuity.slice.missing" in codes(check(block_a + gapped, thresholds))


def test_one_slice_of_another_pixel_spacing(thresholds):
    datasets = stack()
    datasets[4].PixelSpacing = [0.9, 0.9]
    findings = check(datasets, thresholds)
    assert codes(findings) == ["continuity.pixel_spacing.inconsistent"]
    f = findings[0]
    assert f.severity is Severity.REVIEW and f.sop_instance_uid == datasets[4].SOPInstanceUID
    assert "PixelSpacing (0028,0030)" in f.message and "0.9\\0.9 on InstanceNumber 5" in f.message
    assert f.value == "0.7\\0.7 ×19 | 0.9\\0.9 ×1"


def test_pixel_spacing_within_tolerance_is_constant(thresholds):
    datasets = stack()
    datasets[4].PixelSpacing = [0.7004, 0.7]  # 0.4 µm: DS rounding, under the 0.001 mm limit
    assert check(datasets, thresholds) == []


def test_one_slice_of_another_matrix(thresholds):
    datasets = stack()
    datasets[11].Rows = datasets[11].Columns = 256
    findings = check(datasets, thresholds)
    assert codes(findings) == ["continuity.matrix.inconsistent"]
    assert "256\\256 on InstanceNumber 12" in findings[0].message
    assert "Rows\\Columns (0028,0010/0011)" in findings[0].message


def test_localizers_are_ignored(thresholds):
    datasets = stack(first_number=4)
    for number, iop in ((1, SAGITTAL), (2, CORONAL), (3, AXIAL)):
        scout = image(0, iop=iop, spacing=2.5, origin=(0.0, 0.0, 500.0), number=number)
        scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        scout.Rows, scout.Columns, scout.PixelSpacing = 256, 1024, [1.2, 1.2]
        datasets.append(scout)
    assert check(datasets, thresholds) == []


def test_fewer_than_three_slices_are_not_checked_for_spacing(thresholds):
    far_apart = [image(i, iop=AXIAL, spacing=2.5, origin=(-180.0, -180.0, 0.0), number=n) for i, n in ((0, 1), (9, 2))]
    assert check(far_apart, thresholds) == []
    assert check([], thresholds) == []
    assert check(stack(1), thresholds) == []


def test_diffusion_b_values_at_the_same_positions_are_not_duplicates(thresholds):
    b0 = stack(10)
    b1000 = stack(10, first_number=11)
    for ds in b0:
        ds.DiffusionBValue = 0
    for ds in b1000:
        ds.DiffusionBValue = 1000
    assert check(b0 + b1000, thresholds) == []
    del b1000[4]  # slice at z = 10.0 of the b = 1000 images
    findings = [f for f in check(b0 + b1000, thresholds) if f.code == "continuity.slice.missing"]
    assert [f.value for f in findings] == ["z = 10.0 mm"]


def test_repeated_stack_without_tags_is_not_duplicates(thresholds):
    """Three dynamic phases of the same 8 positions, no tag telling them apart."""
    phases = [ds for p in range(3) for ds in stack(8, first_number=1 + 8 * p)]
    assert check(phases, thresholds) == []
    del phases[8 + 3]  # phase 2 lacks the slice at z = 7.5
    findings = check(phases, thresholds)
    missing = [f for f in findings if f.code == "continuity.slice.missing"]
    assert len(missing) == 1 and missing[0].value == "z = 7.5 mm" and "(2 of 3)" in missing[0].message


def test_disabled_rule_gives_no_finding(thresholds):
    rule = thresholds.rules["continuity.slice.missing"]
    disabled = dataclasses.replace(
        thresholds, rules={**thresholds.rules, rule.id: rule.model_copy(update={"enabled": False})}
    )
    assert codes(check(stack(drop=(7,)), disabled)) == ["continuity.instance_number.gap"]


def test_stricter_limit_from_thresholds(thresholds):
    rule = thresholds.rules["continuity.slice.missing"]
    strict = dataclasses.replace(
        thresholds, rules={**thresholds.rules, rule.id: rule.model_copy(update={"limit": 1.2})}
    )
    datasets = stack()
    for ds in datasets[10:]:  # one 3.7 mm step: 1.48 × the median spacing
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            ds.ImagePositionPatient[2] + 1.2,
        ]
    assert codes(check(datasets, strict)) == ["continuity.slice.missing"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_garbled_geometry_does_not_crash(thresholds):
    datasets = stack()
    ds = datasets[6]
    ds[0x00200032] = RawDataElement(Tag(0x00200032), "DS", 8, b"a\\b\\c  ", 0, True, True)
    ds[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 2, b"x ", 0, True, True)
    findings = check(datasets, thresholds)
    # The unreadable position leaves a gap at z = 15.0 mm; the unreadable number a numbering gap.
    assert codes(findings) == ["continuity.instance_number.gap", "continuity.slice.missing"]
    assert next(f for f in findings if f.code == "continuity.slice.missing").value == "z = 15.0 mm"


# --- enhanced (multi-frame) objects ------------------------------------------------------------


def item(**values: object) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def enhanced(n_frames: int = 12, *, spacing: float = 3.0, drop: tuple[int, ...] = ()) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = f"{SERIES}.900"
    ds.SeriesInstanceUID = SERIES
    ds.Modality = "MR"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.Rows = ds.Columns = 256
    ds.SharedFunctionalGroupsSequence = Sequence(
        [
            item(
                PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=SAGITTAL)]),
                PixelMeasuresSequence=Sequence([item(PixelSpacing=[0.9, 0.9], SliceThickness=spacing)]),
            )
        ]
    )
    frames = []
    for k in range(n_frames):
        if k in drop:
            continue
        frames.append(
            item(
                PlanePositionSequence=Sequence([item(ImagePositionPatient=[20.0 - k * spacing, -100.0, 90.0])]),
                FrameContentSequence=Sequence([item(StackID="1", InStackPositionNumber=k + 1)]),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(frames)
    return ds


def test_enhanced_object_clean(thresholds):
    assert check([enhanced()], thresholds) == []


def test_enhanced_object_missing_frame_position(thresholds):
    findings = check([enhanced(drop=(6,))], thresholds)
    assert codes(findings) == ["continuity.slice.missing"]
    assert findings[0].value == "x = 2.0 mm"  # 20 - 6 × 3 mm
    assert f"multi-frame object {SERIES}.900" in findings[0].message


def test_enhanced_object_frame_with_other_pixel_spacing(thresholds):
    ds = enhanced()
    ds.PerFrameFunctionalGroupsSequence[3].PixelMeasuresSequence = Sequence([item(PixelSpacing=[1.1, 1.1])])
    findings = check([ds], thresholds)
    assert codes(findings) == ["continuity.pixel_spacing.inconsistent"]
    assert "1.1\\1.1 on frame 4" in findings[0].message


def test_enhanced_objects_of_one_frame_each_form_one_stack(thresholds):
    """Some scanners store an enhanced series as one single-frame object per slice."""
    whole = enhanced(8)
    objects = []
    for k, frame in enumerate(whole.PerFrameFunctionalGroupsSequence):
        if k == 5:
            continue  # x = 20 - 5 × 3 = 5.0 mm is missing
        ds = enhanced(1)
        ds.SOPInstanceUID = f"{SERIES}.{k + 1}"
        ds.InstanceNumber = k + 1
        ds.PerFrameFunctionalGroupsSequence = Sequence([frame])
        objects.append(ds)
    findings = check(objects, thresholds)
    assert codes(findings) == ["continuity.instance_number.gap", "continuity.slice.missing"]
    assert next(f for f in findings if f.code == "continuity.slice.missing").value == "x = 5.0 mm"


def test_enhanced_object_without_frames_does_not_crash(thresholds):
    ds = enhanced(1)
    ds.PerFrameFunctionalGroupsSequence = Sequence([])
    ds.NumberOfFrames = 0
    assert check([ds] + stack(3, first_number=2), thresholds) == []
