"""Study -> recognition item: all 67 items, in Chinese, English and vendor styles, perturbed."""

from __future__ import annotations

import random

import pytest

from qc_pipeline.catalog.classify import classify
from qc_pipeline.catalog.items import load_catalog
from qc_pipeline.rules import default_thresholds_dir
from qc_pipeline.samples.catalog_studies import STYLES, build_study


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(default_thresholds_dir() / "items", ["yubei-2023.yaml"])


def test_catalog_has_the_67_items(catalog):
    assert len(catalog.items) == 67
    assert [len(catalog.for_modality(m)) for m in ("DR", "CT", "MR")] == [33, 20, 14]
    assert len({i.code for i in catalog.items}) == 67
    for item in catalog.items:
        req = item.requires
        sources = [getattr(req, name).source for name in type(req).model_fields if getattr(req, name) is not None]
        assert sources and all(sources), item.code


@pytest.mark.parametrize("style", STYLES)
def test_every_item_is_recognised(catalog, style):
    wrong = {}
    for item in catalog.items:
        match = classify(build_study(item, style), catalog)
        if match.item is None or match.item.code != item.code:
            wrong[item.code] = (match.item and match.item.code, match.evidence)
    assert wrong == {}


@pytest.mark.parametrize("seed", range(3))
def test_perturbations_leave_the_item_unchanged(catalog, seed):
    """Series order shuffled, descriptions re-cased and re-spaced: the same item."""
    rng = random.Random(seed)
    for item in catalog.items:
        style = rng.choice(STYLES)
        datasets = build_study(item, style)
        rng.shuffle(datasets)
        for ds in datasets:
            for keyword in ("StudyDescription", "SeriesDescription", "ProtocolName"):
                if keyword in ds:
                    value = str(ds.data_element(keyword).value)
                    value = value.upper() if rng.random() < 0.5 else value.lower()
                    ds.data_element(keyword).value = "  " + value.replace(" ", "   ") + " "
        match = classify(datasets, catalog)
        assert match.item is not None and match.item.code == item.code, (item.code, style, match.evidence)


# How hospitals actually write orders: (modality, StudyDescription, extra tags, expected item).
REAL_WORLD = [
    ("DX", "DR胸部正位", {}, "YB-001"),
    ("CR", "X线 胸部后前位", {}, "YB-001"),
    ("DX", "Chest 2 views PA/LAT", {}, "YB-002"),
    ("DX", "胸部正侧位片", {}, "YB-002"),
    ("DX", "胸片 婴幼儿", {}, "YB-003"),  # a bedside (床旁) film is not an item: test_real_world_orders
    ("DX", "R SHOULDER AP", {}, "YB-005"),
    ("DX", "左膝关节正侧位", {}, "YB-013"),
    ("DX", "KNEE RT AP+LAT", {}, "YB-014"),
    ("DX", "腰椎过屈过伸位", {}, "YB-028"),
    ("DX", "L-SPINE FLEX/EXT", {}, "YB-028"),
    ("DX", "颈椎张口位", {}, "YB-027"),
    ("DX", "C-SPINE ODONTOID", {}, "YB-027"),
    ("DX", "腹部立位平片", {}, "YB-024"),
    ("DX", "KUB supine", {}, "YB-025"),
    ("DX", "右胫腓骨正侧位", {}, "YB-030"),
    ("DX", "左股骨正侧位", {}, "YB-033"),
    ("CT", "头颅CT平扫", {}, "YB-034"),
    ("CT", "CT HEAD W/O CONTRAST", {}, "YB-034"),
    ("CT", "胸部CT平扫(肺窗+纵隔窗)", {}, "YB-036"),
    ("CT", "CT CHEST", {"BodyPartExamined": "CHEST"}, "YB-036"),
    ("CT", "上腹部CT平扫+增强(三期)", {}, "YB-047"),
    ("CT", "CT 肾上腺增强", {}, "YB-051"),
    ("CT", "鼻窦CT平扫", {}, "YB-035"),
    ("CT", "CT L-SPINE", {}, "YB-039"),
    ("MR", "头颅MRI平扫", {}, "YB-054"),
    ("MR", "MRI BRAIN W/O", {}, "YB-054"),
    ("MR", "垂体MR平扫", {}, "YB-055"),
    ("MR", "MR 腰椎平扫", {}, "YB-058"),
    ("MR", "MRI KNEE LEFT", {}, "YB-060"),
    ("MR", "右膝关节MR", {}, "YB-061"),
    ("MR", "双髋关节MRI平扫", {}, "YB-059"),
    ("MR", "头颅MR增强", {}, "YB-064"),
    ("MR", "颈椎MR平扫+增强", {}, "YB-065"),
]


@pytest.mark.parametrize(("modality", "description", "extra", "expected"), REAL_WORLD)
def test_real_world_descriptions(catalog, modality, description, extra, expected):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Modality = modality
    ds.StudyDescription = description
    ds.SeriesInstanceUID = "1.2.3"
    for key, value in extra.items():
        setattr(ds, key, value)
    match = classify([ds], catalog)
    assert match.item is not None and match.item.code == expected, match.evidence


def test_no_item_and_ambiguous(catalog):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Modality = "CT"
    ds.StudyDescription = "CT 冠状动脉成像 CTA"
    ds.SeriesInstanceUID = "1"
    match = classify([ds], catalog)
    assert match.item is None and not match.ambiguous
    ds.StudyDescription = "膝关节MR"  # side unknown: left or right knee
    ds.Modality = "MR"
    match = classify([ds], catalog)
    assert match.ambiguous and {i.code for i in match.candidates} == {"YB-060", "YB-061"}


def test_laterality_conflict_is_seen(catalog):
    item = catalog.by_code("YB-013")  # left knee AP and lateral
    match = classify(build_study(item, "zh", defect="left_vs_right"), catalog)
    assert match.item.code == "YB-013"  # what was ordered
    assert match.laterality == "L" and match.image_laterality == "R" and match.laterality_conflict


def test_new_list_is_a_data_file(tmp_path, catalog):
    import shutil

    items = default_thresholds_dir() / "items"
    shutil.copy(items / "lexicon.yaml", tmp_path / "lexicon.yaml")
    (tmp_path / "extra.yaml").write_text(
        """list: {id: cq-sc-2025, name_zh: 川渝互认项目（示例）, name_en: Example, source: test, version: '1'}
items:
  - code: CQSC-001
    number: 1
    modality: DR
    region_zh: 手部
    name_zh: 右手正位（大骨节病监测）
    name_en: Right hand PA (Kashin-Beck surveillance)
    body_part: HAND
    laterality: R
    variant: FRONTAL
    requires:
      views: {groups: [[PA]], source: WS/T 207-2010}
""",
        encoding="utf-8",
    )
    extra = load_catalog(tmp_path, ["extra.yaml"])
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Modality = "DX"
    ds.StudyDescription = "右手正位"
    ds.SeriesInstanceUID = "1"
    assert classify([ds], extra).item.code == "CQSC-001"
