"""Studies named the way Chinese hospitals name them, each with the verdict it should get.

A real upload is often not a clean catalogue item: the chest PA is ordered as ``胸部正位`` with
ViewPosition empty, a CT angiography or a bedside film names a body part of an item, an order
combines two exams (``胸部+上腹部CT增强``), two obliques are of one side. Each case starts from the
complete sample study of an item (``catalog_studies.build_study``) and changes what the case is
about: the order text, a series dropped or renamed, a tag. Its expectation is the verdict, the
finding that decides it and a fragment of that finding's reason (English and Chinese).

Deterministic: UIDs derive from the case name.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydicom.dataset import Dataset

from qc_pipeline.catalog.items import Item
from qc_pipeline.samples.catalog_studies import STUDY_DATE, build_study, write_study
from qc_pipeline.samples.writer import derive_uid

Mutation = Callable[[list[Dataset]], list[Dataset]]
PET_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.128"


@dataclass(frozen=True)
class RealWorldCase:
    """One real-world naming case and what the pipeline must make of it."""

    name: str
    item_code: str
    """The catalogue item whose complete sample study the case starts from."""
    style: str
    order: str
    """StudyDescription (and RequestedProcedureDescription) as the hospital wrote it."""
    expected_verdict: str
    finding: str
    """The rule id of the finding that carries the reason."""
    reason: str
    """A fragment of that finding's English message."""
    reason_zh: str
    """A fragment of its Chinese message."""
    changes: tuple[Mutation, ...] = ()


def _plain_only(datasets: list[Dataset]) -> list[Dataset]:
    return [ds for ds in datasets if "ContrastBolusAgent" not in ds]


def _series(number: int, **tags: object) -> Mutation:
    def change(datasets: list[Dataset]) -> list[Dataset]:
        for ds in datasets:
            if int(ds.SeriesNumber) == number:
                for key, value in tags.items():
                    if value is None:
                        if key in ds:
                            delattr(ds, key)
                    else:
                        setattr(ds, key, value)
        return datasets

    return change


def _all(**tags: object) -> Mutation:
    def change(datasets: list[Dataset]) -> list[Dataset]:
        for ds in datasets:
            for key, value in tags.items():
                setattr(ds, key, value)
        return datasets

    return change


def _pet_series(datasets: list[Dataset]) -> list[Dataset]:
    """A PET series beside the CT, as a PET/CT uploads it (series 1 copied as modality PT)."""
    pet = []
    for ds in datasets:
        if int(ds.SeriesNumber) == 1:
            copy = deepcopy(ds)
            copy.Modality = "PT"
            copy.SOPClassUID = PET_SOP_CLASS
            copy.SeriesNumber = 90
            copy.SeriesDescription = copy.ProtocolName = "PET AC"
            pet.append(copy)
    return datasets + pet


NOT_ITEM: Final = "catalog.item.excluded"
AMBIGUOUS: Final = "catalog.item.ambiguous"
MATCHED: Final = "catalog.item.matched"

CASES: Final = (
    # Chinese DR view words and the items' own names
    RealWorldCase(
        "dr-chest-zhengwei",
        "YB-001",
        "zh",
        "胸部正位",
        "pass",
        MATCHED,
        "YB-001",
        "YB-001",
        (_series(1, SeriesDescription="胸部 正位", ProtocolName="胸部 正位"),),
    ),
    RealWorldCase("dr-chest-official-pa", "YB-001", "zh", "X线胸部站立后前位摄影", "pass", MATCHED, "YB-001", "YB-001"),
    RealWorldCase(
        "dr-chest-official-pa-lat", "YB-002", "zh", "胸部站立后前位及侧位摄影", "pass", MATCHED, "YB-002", "YB-002"
    ),
    RealWorldCase("dr-chest-erect-two-views", "YB-002", "zh", "胸部立位", "pass", MATCHED, "YB-002", "YB-002"),
    RealWorldCase("dr-chest-en-pa-lat", "YB-002", "ge", "Chest PA+LAT", "pass", MATCHED, "YB-002", "YB-002"),
    RealWorldCase("dr-chest-infant-by-age", "YB-003", "zh", "胸部正位", "pass", MATCHED, "YB-003", "YB-003"),
    # exams that are not on the list
    RealWorldCase(
        "ct-upper-abdomen-plain",
        "YB-047",
        "zh",
        "上腹部CT平扫",
        "not_applicable",
        NOT_ITEM,
        "plain CT of the upper abdomen",
        "非互认项目：上腹部CT平扫",
        (_plain_only,),
    ),
    RealWorldCase(
        "ct-pelvis-plain",
        "YB-048",
        "zh",
        "盆腔CT平扫",
        "not_applicable",
        NOT_ITEM,
        "plain CT of the pelvis",
        "非互认项目：盆腔CT平扫",
        (_plain_only,),
    ),
    RealWorldCase(
        "ct-lower-abdomen-plain",
        "YB-050",
        "en",
        "CT Lower Abdomen plain",
        "not_applicable",
        NOT_ITEM,
        "plain CT of the lower abdomen",
        "非互认项目：下腹部CT平扫",
        (_plain_only,),
    ),
    RealWorldCase(
        "ct-adrenal-plain",
        "YB-051",
        "zh",
        "肾上腺CT平扫",
        "not_applicable",
        NOT_ITEM,
        "plain CT of the adrenal",
        "非互认项目：肾上腺CT平扫",
        (_plain_only,),
    ),
    RealWorldCase(
        "ct-head-cta",
        "YB-045",
        "zh",
        "头颅CTA",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: CT angiography",
        "非互认项目：CT血管成像",
    ),
    RealWorldCase(
        "ct-head-perfusion",
        "YB-045",
        "zh",
        "头颅CT灌注成像(CTP)",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: CT perfusion",
        "非互认项目：CT灌注成像",
    ),
    RealWorldCase(
        "mr-head-mra",
        "YB-054",
        "siemens",
        "头颅MRA",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: MR angiography",
        "非互认项目：磁共振血管成像",
    ),
    RealWorldCase(
        "mr-head-mrv",
        "YB-054",
        "zh",
        "颅脑MRV",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: MR angiography",
        "非互认项目：磁共振血管成像",
    ),
    RealWorldCase(
        "dr-chest-bedside",
        "YB-001",
        "zh",
        "床旁胸片",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: bedside",
        "非互认项目：床旁",
    ),
    RealWorldCase(
        "dr-chest-portable",
        "YB-001",
        "en",
        "CHEST PORTABLE AP",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: bedside",
        "非互认项目：床旁",
    ),
    RealWorldCase(
        "ct-neck",
        "YB-037",
        "zh",
        "颈部CT平扫",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: neck",
        "非互认项目：颈部",
        (_all(BodyPartExamined="NECK"),),
    ),
    RealWorldCase(
        "ct-dental",
        "YB-035",
        "zh",
        "牙齿CT(CBCT)",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: dental",
        "非互认项目：口腔颌面",
    ),
    RealWorldCase(
        "ct-pet-ct-head-neck",
        "YB-034",
        "en",
        "PET/CT head and neck",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: PET/CT",
        "非互认项目：PET/CT",
    ),
    RealWorldCase(
        "ct-pet-modality",
        "YB-034",
        "zh",
        "头部CT平扫",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: PET/CT",
        "非互认项目：PET/CT",
        (_pet_series,),
    ),
    RealWorldCase(
        "ct-chest-abdomen-pelvis",
        "YB-036",
        "zh",
        "胸腹盆CT平扫",
        "not_applicable",
        NOT_ITEM,
        "not a recognition item: chest-abdomen-pelvis",
        "非互认项目：胸腹盆",
    ),
    # a person decides
    RealWorldCase(
        "ct-upper-abdomen-no-contrast-word",
        "YB-047",
        "zh",
        "上腹部CT",
        "review",
        AMBIGUOUS,
        "only plain series and the order names no contrast",
        "仅见平扫序列且申请未注明增强",
        (_plain_only,),
    ),
    RealWorldCase(
        "ct-combined-chest-upper-abdomen", "YB-049", "zh", "胸部+上腹部CT增强", "review", AMBIGUOUS, "YB-047", "YB-049"
    ),
    RealWorldCase(
        "dr-combined-cspine-views", "YB-019", "zh", "颈椎正侧位+双斜位", "review", AMBIGUOUS, "YB-026", "YB-019"
    ),
    RealWorldCase(
        "ct-head-plain-and-cta",
        "YB-034",
        "zh",
        "头颅CT平扫+CTA",
        "review",
        AMBIGUOUS,
        "not a recognition item: CT angiography",
        "非互认项目：CT血管成像",
    ),
    # DR views
    RealWorldCase(
        "dr-cspine-obliques-same-side",
        "YB-026",
        "siemens",
        "C-SPINE BOTH OBLIQUES",
        "fail",
        "completeness.dr.view_missing",
        "same side (LAO, LAO)",
        "同侧",
        (_series(2, ViewPosition="LAO", SeriesDescription="C-Spine LAO", ProtocolName="C-Spine LAO"),),
    ),
    RealWorldCase("dr-lspine-obliques-opposite", "YB-029", "zh", "腰椎双斜位", "pass", MATCHED, "YB-029", "YB-029"),
    RealWorldCase(
        "dr-chest-lateral-without-view",
        "YB-002",
        "zh",
        "胸部正侧位",
        "review",
        "completeness.dr.view_unknown",
        "1 image(s) have no view information",
        "1 幅图像无体位信息",
        (_series(2, SeriesDescription="胸部", ProtocolName="胸部"),),
    ),
    RealWorldCase(
        "dr-abdomen-erect-taken-supine",
        "YB-024",
        "zh",
        "立位腹部平片",
        "fail",
        "completeness.dr.posture",
        "must be taken erect",
        "应为立位",
        (_series(1, SeriesDescription="腹部 卧位 正位", ProtocolName="腹部 卧位 正位"),),
    ),
)


def build_case(case: RealWorldCase, items: dict[str, Item]) -> list[Dataset]:
    """The headers and tiny zero images of one case."""
    datasets = build_study(items[case.item_code], case.style, pixels=True)
    for change in case.changes:
        datasets = change(datasets)
    study_uid = str(derive_uid("real-world", case.name))
    for ds in datasets:
        ds.StudyDescription = case.order
        if "RequestedProcedureDescription" in ds:
            ds.RequestedProcedureDescription = case.order
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = str(derive_uid("real-world", case.name, ds.SeriesNumber))
        ds.SOPInstanceUID = str(derive_uid("real-world", case.name, ds.SeriesNumber, ds.InstanceNumber))
        ds.AccessionNumber = "RW" + study_uid[-10:]
    return datasets


def write_real_world_set(out_dir: Path, items: Iterable[Item]) -> list[tuple[RealWorldCase, str]]:
    """Write every case to ``out_dir/<case name>``; files arrive 30 min after the exam.
    Returns each case with its StudyInstanceUID."""
    by_code = {item.code: item for item in items}
    received = dt.datetime.combine(STUDY_DATE, dt.time(10, 45), tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    written = []
    for case in CASES:
        datasets = build_case(case, by_code)
        for path in write_study(datasets, out_dir / case.name):
            os.utime(path, (received, received))
        written.append((case, str(datasets[0].StudyInstanceUID)))
    return written
