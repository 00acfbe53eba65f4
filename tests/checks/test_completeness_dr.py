"""DR completeness: Chinese view words, obliques of opposite sides, images without view
information, erect vs supine abdomen."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.checks.completeness import check_completeness
from qc_pipeline.domain import Severity
from qc_pipeline.pipeline import load_pipeline_thresholds


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


def _images(*series: dict[str, str]) -> list[Dataset]:
    out = []
    for n, tags in enumerate(series, start=1):
        ds = Dataset()
        ds.Modality = "DX"
        ds.SeriesInstanceUID = f"1.2.{n}"
        for key, value in tags.items():
            setattr(ds, key, value)
        out.append(ds)
    return out


def _check(thresholds, code: str, *series: dict[str, str]):
    catalog = thresholds.catalog
    return check_completeness(catalog.by_code(code), _images(*series), thresholds, catalog)


@pytest.mark.parametrize("words", ["胸部 正位", "胸部正位", "胸片正位", "胸部 后前位", "CHEST PA", "胸部正位片"])
def test_chest_frontal_words_are_the_pa_on_a_chest(thresholds, words):
    assert _check(thresholds, "YB-001", {"SeriesDescription": words}) == []


def test_a_chest_ap_by_viewposition_is_still_not_a_pa(thresholds):
    (finding,) = _check(thresholds, "YB-001", {"SeriesDescription": "胸部", "ViewPosition": "AP"})
    assert finding.code == "completeness.dr.view_missing" and "PA view missing" in finding.message


def test_zheng_wei_is_still_frontal_elsewhere(thresholds):
    assert _check(thresholds, "YB-019", {"SeriesDescription": "颈椎 正位"}, {"SeriesDescription": "颈椎 侧位"}) == []


@pytest.mark.parametrize(
    "pair",
    [
        ({"ViewPosition": "LAO"}, {"ViewPosition": "RAO"}),
        ({"SeriesDescription": "颈椎 左前斜位"}, {"SeriesDescription": "颈椎 右前斜位"}),
        ({"SeriesDescription": "颈椎 左斜位"}, {"SeriesDescription": "颈椎 右斜位"}),
        ({"SeriesDescription": "C-SPINE LAO"}, {"SeriesDescription": "C-SPINE RAO"}),
        ({"ViewPosition": "LPO"}, {"ViewPosition": "RPO"}),
    ],
)
def test_obliques_of_opposite_sides_complete_both_obliques(thresholds, pair):
    assert _check(thresholds, "YB-026", *pair) == []


@pytest.mark.parametrize(
    ("pair", "shown"),
    [
        (({"ViewPosition": "LAO"}, {"ViewPosition": "LAO"}), "LAO, LAO"),
        (({"SeriesDescription": "腰椎 左斜位"}, {"SeriesDescription": "腰椎 左斜位"}), "LO, LO"),
        (({"SeriesDescription": "腰椎 右前斜"}, {"SeriesDescription": "腰椎 右前斜位"}), "RAO, RAO"),
        (({"ViewPosition": "LAO"}, {"ViewPosition": "RPO"}), "LAO, RPO"),  # both show the right side
    ],
)
def test_two_obliques_of_one_side_are_not_both_obliques(thresholds, pair, shown):
    (finding,) = _check(thresholds, "YB-029", *pair)
    assert finding.code == "completeness.dr.view_missing" and finding.severity is Severity.FAIL
    assert "same side" in finding.message and shown in finding.message
    assert "同侧" in finding.message_zh


def test_obliques_whose_side_nothing_tells_are_not_failed(thresholds):
    assert _check(thresholds, "YB-026", {"SeriesDescription": "颈椎 斜位"}, {"SeriesDescription": "颈椎 斜位"}) == []


def test_an_image_without_view_information_is_no_view(thresholds):
    findings = _check(thresholds, "YB-002", {"SeriesDescription": "胸部 正位"}, {"SeriesDescription": "胸部"})
    (finding,) = findings
    assert finding.code == "completeness.dr.view_unknown" and finding.severity is Severity.REVIEW
    assert "1 image(s)" in finding.message and "lateral" in finding.message
    assert "1 幅" in finding.message_zh and "侧位" in finding.message_zh


def test_without_any_image_for_the_view_it_is_missing(thresholds):
    (finding,) = _check(thresholds, "YB-002", {"SeriesDescription": "胸部 正位"})
    assert finding.code == "completeness.dr.view_missing" and "lateral view missing" in finding.message


def test_unknown_images_fill_at_most_their_number_of_views(thresholds):
    findings = _check(thresholds, "YB-028", {"SeriesDescription": "腰椎"})  # flexion + extension needed
    assert sorted(f.code for f in findings) == ["completeness.dr.view_missing", "completeness.dr.view_unknown"]


@pytest.mark.parametrize(
    ("code", "image", "contradicts"),
    [
        ("YB-024", {"SeriesDescription": "腹部 立位 正位"}, False),
        ("YB-024", {"SeriesDescription": "腹部 卧位 正位"}, True),
        ("YB-024", {"SeriesDescription": "ABDOMEN SUPINE AP"}, True),
        ("YB-024", {"SeriesDescription": "腹部 正位"}, False),  # posture unknown: not a fail
        ("YB-025", {"SeriesDescription": "腹部 仰卧位 正位"}, False),
        ("YB-025", {"SeriesDescription": "腹部 侧卧水平位"}, False),
        ("YB-025", {"SeriesDescription": "ABDOMEN ERECT AP"}, True),
        ("YB-025", {"SeriesDescription": "腹部 正位", "PatientPosition": "HFS"}, False),
    ],
)
def test_abdomen_posture_is_checked_where_the_item_names_it(thresholds, code, image, contradicts):
    findings = _check(thresholds, code, image)
    if not contradicts:
        assert findings == []
        return
    (finding,) = findings
    assert finding.code == "completeness.dr.posture" and finding.severity is Severity.FAIL
    wanted = "erect" if code == "YB-024" else "supine"
    assert wanted in finding.message and ("立位" if code == "YB-024" else "卧位") in finding.message_zh
