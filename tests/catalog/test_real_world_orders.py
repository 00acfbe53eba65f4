"""Study -> item on orders as Chinese hospitals write them: view words, exams that are not on
the list, combined orders. Each case names the item, or why the study is not an item (both
languages), or the candidates a person must choose between."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.catalog.classify import classify
from qc_pipeline.catalog.items import load_catalog
from qc_pipeline.rules import default_thresholds_dir


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(default_thresholds_dir() / "items", ["yubei-2023.yaml"])


def _study(modality: str, order: str, series: list[dict[str, str]] | None = None, **study_tags: str) -> list[Dataset]:
    """One dataset per series; ``series`` items are tag -> value (SeriesDescription, ViewPosition...)."""
    out = []
    for n, tags in enumerate(series or [{}], start=1):
        ds = Dataset()
        ds.Modality = tags.pop("Modality", modality) if isinstance(tags, dict) else modality
        ds.StudyDescription = order
        ds.SeriesInstanceUID = f"1.2.{n}"
        for key, value in {**study_tags, **tags}.items():
            setattr(ds, key, value)
        out.append(ds)
    return out


# (modality, order, series tags, study tags, expected item)
CHEST_ORDERS = [
    ("DX", "胸部正位", [{"SeriesDescription": "胸部 正位"}], {}, "YB-001"),
    ("DX", "DR胸部正位", [{"SeriesDescription": "胸部正位"}], {}, "YB-001"),
    ("DX", "胸部正位片", [{}], {}, "YB-001"),
    ("DX", "胸片正位", [{}], {}, "YB-001"),
    ("DX", "胸部后前位", [{}], {}, "YB-001"),
    ("DX", "胸部立位", [{"SeriesDescription": "胸部 正位"}], {}, "YB-001"),
    ("DX", "胸部站立位", [{"ViewPosition": "PA"}], {}, "YB-001"),
    ("DX", "胸部立位", [{"SeriesDescription": "胸部正位"}, {"SeriesDescription": "胸部侧位"}], {}, "YB-002"),
    ("DX", "胸部站立后前位摄影", [{}], {}, "YB-001"),
    ("DX", "X线胸部站立后前位摄影", [{}], {}, "YB-001"),
    ("DX", "X线 胸部站立后前位摄影", [{}], {}, "YB-001"),
    ("DX", "胸部站立后前位及侧位摄影", [{}], {}, "YB-002"),
    ("DX", "X线胸部站立后前位及侧位摄影", [{}], {}, "YB-002"),
    ("DX", "胸部正侧位", [{}], {}, "YB-002"),
    ("DX", "胸部正侧位片", [{}], {}, "YB-002"),
    ("DX", "CHEST PA", [{}], {}, "YB-001"),
    ("DX", "Chest PA+LAT", [{}], {}, "YB-002"),
    ("CR", "CHEST PA AND LATERAL", [{}], {}, "YB-002"),
    ("DX", "胸片", [{"ViewPosition": "PA"}], {}, "YB-001"),
    ("DX", "胸部正位", [{}], {"PatientAge": "018M"}, "YB-003"),
    (
        "DX",
        "胸片",
        [{"SeriesDescription": "胸部 正位"}],
        {"PatientBirthDate": "20250301", "StudyDate": "20261014"},
        "YB-003",
    ),
    ("DX", "胸部正位", [{}], {"PatientAge": "045Y"}, "YB-001"),
    ("DX", "婴幼儿胸部正位", [{}], {}, "YB-003"),
]


@pytest.mark.parametrize(("modality", "order", "series", "tags", "expected"), CHEST_ORDERS)
def test_chest_orders_map_to_one_item(catalog, modality, order, series, tags, expected):
    match = classify(_study(modality, order, [dict(s) for s in series], **tags), catalog)
    assert match.item is not None and match.item.code == expected, (match.candidates, match.evidence)
    assert match.not_item is None


def test_the_infant_age_limit_comes_from_the_catalogue(catalog):
    limit = catalog.by_code("YB-003").requires.max_age_years.value
    just_under = f"{int(limit * 12) - 1:03d}M"
    just_over = f"{int(limit * 12) + 1:03d}M"
    assert classify(_study("DX", "胸部正位", PatientAge=just_under), catalog).item.code == "YB-003"
    match = classify(_study("DX", "胸部正位", PatientAge=just_over), catalog)
    assert match.item.code == "YB-001"
    assert any("YB-003" in e and "age" in e for e in match.evidence), match.evidence


# (modality, order, extra study tags, series tags, English reason fragment, Chinese reason fragment)
OFF_LIST = [
    ("CT", "上腹部CT平扫", {}, [{}], "plain CT of the upper abdomen", "上腹部CT平扫"),
    ("CT", "CT 盆腔平扫", {}, [{}], "plain CT of the pelvis", "盆腔CT平扫"),
    ("CT", "下腹部CT平扫", {}, [{}], "plain CT of the lower abdomen", "下腹部CT平扫"),
    ("CT", "肾上腺CT平扫", {}, [{}], "plain CT of the adrenal", "肾上腺CT平扫"),
    ("CT", "CT Upper Abdomen without contrast", {}, [{}], "plain CT of the upper abdomen", "上腹部CT平扫"),
    ("CT", "头颅CTA", {}, [{}], "CT angiography", "CT血管成像"),
    ("CT", "头颈部CTA", {}, [{}], "CT angiography", "CT血管成像"),
    ("CT", "CT 冠状动脉成像 CTA", {}, [{}], "CT angiography", "CT血管成像"),
    ("CT", "颅脑CTV", {}, [{}], "CT angiography", "CT血管成像"),
    ("CT", "胸部CT血管成像", {}, [{}], "CT angiography", "CT血管成像"),
    ("CT", "肺动脉CTA", {}, [{}], "CT angiography", "CT血管成像"),
    ("CT", "头颅CT灌注 CTP", {}, [{}], "CT perfusion", "CT灌注成像"),
    ("MR", "头颅MRA", {}, [{}], "MR angiography", "磁共振血管成像"),
    ("MR", "颅脑MRV", {}, [{}], "MR angiography", "磁共振血管成像"),
    ("MR", "头颅磁共振血管成像", {}, [{}], "MR angiography", "磁共振血管成像"),
    ("MR", "头颅MR灌注成像", {}, [{}], "MR perfusion", "磁共振灌注成像"),
    ("DX", "床旁胸片", {}, [{}], "bedside", "床旁"),
    ("DX", "床边胸部正位", {}, [{}], "bedside", "床旁"),
    ("DX", "CHEST PORTABLE", {}, [{}], "bedside", "床旁"),
    ("DX", "Bedside chest AP", {}, [{}], "bedside", "床旁"),
    ("DX", "移动DR胸部", {}, [{}], "bedside", "床旁"),
    ("CT", "颈部CT平扫", {}, [{}], "neck", "颈部"),
    ("MR", "颈部MR平扫", {}, [{}], "neck", "颈部"),
    ("CT", "", {}, [{"BodyPartExamined": "NECK"}], "neck", "颈部"),
    ("CT", "牙齿CT", {}, [{"BodyPartExamined": "HEAD"}], "dental", "口腔"),
    ("CT", "口腔颌面部CBCT", {}, [{}], "dental", "口腔"),
    ("CT", "Dental CT", {}, [{"BodyPartExamined": "SINUS"}], "dental", "口腔"),
    ("CT", "PET/CT 头颈部", {}, [{}], "PET", "PET"),
    ("CT", "头部CT平扫", {}, [{"Modality": "PT"}, {"Modality": "CT"}, {"Modality": "CT"}], "PET", "PET"),
    ("CT", "胸腹盆CT平扫", {}, [{}], "chest-abdomen-pelvis", "胸腹盆"),
    ("CT", "全腹+胸部CT平扫", {}, [{}], "chest-abdomen-pelvis", "胸腹盆"),
    ("CT", "CT CAP with contrast", {}, [{}], "chest-abdomen-pelvis", "胸腹盆"),
    ("CT", "Chest/Abdomen/Pelvis CT", {}, [{}], "chest-abdomen-pelvis", "胸腹盆"),
]


@pytest.mark.parametrize(("modality", "order", "tags", "series", "en", "zh"), OFF_LIST)
def test_off_list_exams_are_not_items(catalog, modality, order, tags, series, en, zh):
    match = classify(_study(modality, order, [dict(s) for s in series], **tags), catalog)
    assert match.item is None and not match.ambiguous, (match.item, match.candidates, match.evidence)
    assert match.not_item is not None, match.evidence
    reason_en, reason_zh = match.not_item
    assert reason_en.startswith("not a recognition item: ") and en in reason_en
    assert reason_zh.startswith("非互认项目：") and zh in reason_zh


# Orders that name an item and something else: the candidates a person chooses between.
COMBINED = [
    ("CT", "胸部+上腹部CT增强", [{}], {"YB-049", "YB-047"}),
    ("CT", "头颅+胸部CT平扫", [{}], {"YB-034", "YB-036"}),
    ("DX", "颈椎正侧位+双斜位", [{}], {"YB-019", "YB-026"}),
    ("DX", "腰椎正侧位+双斜位", [{}], {"YB-021", "YB-029"}),
    ("DX", "腰椎正侧位+过伸过屈位", [{}], {"YB-021", "YB-028"}),
    ("MR", "头颅+颈椎MR平扫", [{}], {"YB-054", "YB-056"}),
    ("CT", "头颅CT平扫+CTA", [{}], {"YB-034"}),
    ("MR", "头颅MR平扫+MRA", [{}], {"YB-054"}),
    ("CT", "上腹部CT", [{}], {"YB-047"}),  # enhanced-only item, no contrast word, only plain series
]


@pytest.mark.parametrize(("modality", "order", "series", "expected"), COMBINED)
def test_combined_orders_go_to_review_naming_each_candidate(catalog, modality, order, series, expected):
    match = classify(_study(modality, order, [dict(s) for s in series]), catalog)
    assert match.item is None and match.ambiguous, (match.item, match.evidence)
    assert {i.code for i in match.candidates} == expected
    assert match.doubt is not None or len(expected) > 1


# One part clearly has no item: the other part is the item.
ONE_PART_IS_AN_ITEM = [
    ("CT", "胸部+上腹部CT平扫", "YB-036"),  # a plain upper abdomen is not an item
    ("DX", "头颅+胸部正位", "YB-001"),  # no DR item for the skull
]


@pytest.mark.parametrize(("modality", "order", "expected"), ONE_PART_IS_AN_ITEM)
def test_a_combined_order_whose_other_part_has_no_item(catalog, modality, order, expected):
    match = classify(_study(modality, order), catalog)
    assert match.item is not None and match.item.code == expected, match.evidence
    assert any("not a recognition item" in e or "no " in e for e in match.evidence), match.evidence


def test_series_names_naming_several_structures_do_not_make_a_combined_order(catalog):
    # chest CT with a lung-window series and a spine MR with a whole-spine localizer
    chest = _study("CT", "胸部CT平扫", [{"SeriesDescription": "肺窗 1mm"}, {"SeriesDescription": "纵隔窗 5mm"}])
    assert classify(chest, catalog).item.code == "YB-036"
    spine = _study(
        "MR",
        "",
        [
            {"SeriesDescription": "localizer 颈胸腰椎"},
            {"SeriesDescription": "腰椎 sag T2"},
            {"SeriesDescription": "腰椎 sag T1"},
            {"SeriesDescription": "腰椎 tra T2"},
        ],
    )
    match = classify(spine, catalog)
    assert match.item is not None and match.item.code == "YB-058", match.evidence
    # an angiography series inside a routine brain MR does not make the study an MRA
    brain = _study("MR", "头颅MR平扫", [{"SeriesDescription": "t2_tse_tra"}, {"SeriesDescription": "tof_3d_MRA"}])
    assert classify(brain, catalog).item.code == "YB-054"


def test_exclusion_words_near_item_words_do_not_exclude(catalog):
    # 齿状突 (the dens) is the open-mouth view of the cervical spine, not a dental exam
    assert classify(_study("DX", "颈椎张口位(齿状突)"), catalog).item.code == "YB-027"
    # the order names the cervical spine; BodyPartExamined NECK is how some vendors tag it
    match = classify(_study("CT", "颈椎CT平扫", [{"BodyPartExamined": "NECK"}]), catalog)
    assert match.item.code == "YB-037"


# --- the samples set, judged by the whole pipeline -------------------------------------------


def test_real_world_samples_get_their_verdict_finding_and_reason(tmp_path):
    import datetime as dt

    from qc_pipeline.pipeline import judge, load_pipeline_thresholds
    from qc_pipeline.samples.real_world import CASES, write_real_world_set
    from qc_pipeline.sources import FolderSource

    thresholds = load_pipeline_thresholds()
    written = write_real_world_set(tmp_path, thresholds.catalog.items)
    assert len(written) == len(CASES) and len({uid for _, uid in written}) == len(CASES)
    now = dt.datetime(2026, 10, 20, 4, 0, tzinfo=dt.UTC)
    wrong = {}
    for case, uid in written:
        source = FolderSource(tmp_path / case.name)
        (entry,) = list(source.discover())
        decision = judge(source.load(entry), thresholds, now=now)
        assert decision.study.study_instance_uid == uid
        hits = [f for f in decision.findings if f.code == case.finding]
        reasons = [(f.message, f.message_zh) for f in hits]
        ok = str(decision.verdict) == case.expected_verdict and any(
            case.reason in en and case.reason_zh in zh for en, zh in reasons
        )
        if not ok:
            wrong[case.name] = (
                str(decision.verdict),
                [
                    (f.code, f.severity, f.message)
                    for f in decision.findings
                    if f.severity != "info" or f.code.startswith("catalog")
                ],
            )
    assert wrong == {}


@pytest.mark.parametrize(
    ("modality", "order", "expected"),
    [
        ("CT", "颈椎CT平扫(颈部)", "YB-037"),  # the neck is no item; the cervical spine is
        ("CT", "胸部CT增强(肺动脉期)", "YB-049"),  # a phase name, not a pulmonary CTA
        ("MR", "颅脑MR平扫+DWI", "YB-054"),
        ("DX", "腹部平片 立位", "YB-024"),
    ],
)
def test_orders_near_exclusion_words_keep_their_item(catalog, modality, order, expected):
    match = classify(_study(modality, order), catalog)
    assert match.item is not None and match.item.code == expected, match.evidence


def test_abdomen_posture_from_the_images_picks_the_item(catalog):
    erect = classify(_study("DX", "腹部平片", [{"SeriesDescription": "腹部 立位"}]), catalog)
    supine = classify(_study("DX", "腹部平片", [{"SeriesDescription": "腹部 仰卧位"}]), catalog)
    assert (erect.item.code, supine.item.code) == ("YB-024", "YB-025")
    assert any("images' views" in e for e in erect.evidence)


def test_a_view_meaning_for_an_unknown_body_part_is_a_clear_error(tmp_path):
    import shutil

    from qc_pipeline.errors import ConfigError

    items = default_thresholds_dir() / "items"
    shutil.copy(items / "yubei-2023.yaml", tmp_path / "yubei-2023.yaml")
    text = (
        (items / "lexicon.yaml")
        .read_text(encoding="utf-8")
        .replace("body_part_views:\n  CHEST:", "body_part_views:\n  CHESTT:")
    )
    (tmp_path / "lexicon.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="body_part_views names body parts with no words in body_parts: CHESTT"):
        load_catalog(tmp_path, ["yubei-2023.yaml"])
