"""The quality-control result of a study as a DICOM Comprehensive SR (highdicom).

The report is built from a stored result (``ResultStore.results()``: the current machine decision,
a standing human decision, the eligibility facts) and the headers of the study's evaluated
instances, which it references (Current Requested Procedure Evidence) and from which it takes the
patient and study attributes. It lives in the study, in the pipeline's own SR series
(``uids.sr_series_uid``): version *n* is InstanceNumber *n*, and each version after the first
names its predecessor (Predecessor Documents Sequence).

Content tree (codes from DCM where one exists, else the private scheme :data:`SCHEME`)::

    CONTAINER  (99QCPIPE, QC-REPORT, "Image quality control report")
      HAS OBS CONTEXT   device observer: qc-pipeline (DCM 121005/121012/121013)
      CONTAINS CODE     (DCM 121058 "Procedure reported") = item code (99QCPIPE), meaning: English name
        HAS PROPERTIES TEXT (99QCPIPE, ITEM-NAME-ZH) = Chinese name
      CONTAINS CODE     (99QCPIPE, QC-VERDICT) = final verdict (pass/review/fail/not_applicable)
      CONTAINS CODE     (99QCPIPE, MACHINE-VERDICT) = the machine's verdict
      CONTAINS CODE     (99QCPIPE, QC-VERDICT-BASIS) = machine | human
        (human) HAS PROPERTIES TEXT review action, reason code, reviewer; DATETIME decided at
      CONTAINS DATE     (99QCPIPE, ELIGIBLE-UNTIL)        when the result may be recognised until
      CONTAINS TEXT     (99QCPIPE, RECOGNITION-MARK)      the mark of the item's list, if any
      CONTAINS DATETIME (99QCPIPE, DECIDED-AT)            when the machine decided
      CONTAINS CONTAINER (DCM 121070 "Findings")
        CONTAINS CODE   (DCM 121071 "Finding") = finding code (99QCPIPE)
          HAS PROPERTIES CODE severity, TEXT category, TEXT message (en), TEXT message (zh)
          HAS PROPERTIES NUM (99QCPIPE, QC-VALUE) value with its UCUM unit, or TEXT when not a number
          HAS PROPERTIES TEXT (99QCPIPE, QC-LIMIT) what the rule allows
          HAS PROPERTIES IMAGE (DCM 121112 "Source of Measurement") the instance, when one is named
      CONTAINS TEXT     (DCM 111001 "Algorithm Name") qc-pipeline
        (with DCM 111003 "Algorithm Version", 111002 "Algorithm Parameters": thresholds version)
      CONTAINS TEXT     (99QCPIPE, THRESHOLDS-VER), one (99QCPIPE, AI-MODEL) per model "name=version"

Private codes: the scheme designator ``99QCPIPE`` (PS3.16 8.2: a ``99`` prefix is a local
scheme) holds the pipeline's own concepts and its rule and item codes, which have no standard
code; a code longer than 16 characters is written as a Long Code Value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import highdicom as hd
from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ContainerContentItem,
    ContentItem,
    DateContentItem,
    DateTimeContentItem,
    ImageContentItem,
    NumContentItem,
    TextContentItem,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, TM

from qc_pipeline import __version__
from qc_pipeline.recognition.uids import DEVICE_OBSERVER_UID, SR_SERIES_NUMBER, sr_instance_uid, sr_series_uid

SCHEME: Final = "99QCPIPE"
"""Private coding scheme designator of the pipeline's own concepts, rule codes and item codes."""
MANUFACTURER: Final = "qc-pipeline"
SERIES_DESCRIPTION: Final = "QC result / 质控结果"

ROOT: Final = CodedConcept("QC-REPORT", SCHEME, "Image quality control report")
PROCEDURE_REPORTED: Final = CodedConcept("121058", "DCM", "Procedure reported")
ITEM_NAME_ZH: Final = CodedConcept("ITEM-NAME-ZH", SCHEME, "Examination item name (Chinese)")
VERDICT: Final = CodedConcept("QC-VERDICT", SCHEME, "Quality control verdict")
MACHINE_VERDICT: Final = CodedConcept("MACHINE-VERDICT", SCHEME, "Quality control verdict of the pipeline")
VERDICT_BASIS: Final = CodedConcept("QC-VERDICT-BASIS", SCHEME, "Basis of the verdict")
REVIEW_ACTION: Final = CodedConcept("REVIEW-ACTION", SCHEME, "Human review action")
REVIEW_REASON: Final = CodedConcept("REVIEW-REASON", SCHEME, "Human review reason code")
REVIEWER: Final = CodedConcept("REVIEWER", SCHEME, "Reviewer")
REVIEWED_AT: Final = CodedConcept("REVIEWED-AT", SCHEME, "Human review date and time")
ELIGIBLE_UNTIL: Final = CodedConcept("ELIGIBLE-UNTIL", SCHEME, "Recognition eligible until")
RECOGNITION_MARK: Final = CodedConcept("RECOGNITION-MARK", SCHEME, "Recognition mark")
DECIDED_AT: Final = CodedConcept("DECIDED-AT", SCHEME, "Quality control decision date and time")
FINDINGS: Final = CodedConcept("121070", "DCM", "Findings")
FINDING: Final = CodedConcept("121071", "DCM", "Finding")
SEVERITY: Final = CodedConcept("SEVERITY", SCHEME, "Finding severity")
CATEGORY: Final = CodedConcept("CATEGORY", SCHEME, "Finding category")
MESSAGE_EN: Final = CodedConcept("MESSAGE-EN", SCHEME, "Finding message (English)")
MESSAGE_ZH: Final = CodedConcept("MESSAGE-ZH", SCHEME, "Finding message (Chinese)")
VALUE: Final = CodedConcept("QC-VALUE", SCHEME, "Value found")
LIMIT: Final = CodedConcept("QC-LIMIT", SCHEME, "Limit allowed by the rule")
SOURCE_OF_MEASUREMENT: Final = CodedConcept("121112", "DCM", "Source of Measurement")
THRESHOLDS_VERSION: Final = CodedConcept("THRESHOLDS-VER", SCHEME, "Thresholds version")
AI_MODEL: Final = CodedConcept("AI-MODEL", SCHEME, "AI model and version")

VERDICT_CODES: Final = {
    "pass": CodedConcept("pass", SCHEME, "Pass / 合格"),
    "review": CodedConcept("review", SCHEME, "Review / 待复核"),
    "fail": CodedConcept("fail", SCHEME, "Fail / 不合格"),
    "not_applicable": CodedConcept("not_applicable", SCHEME, "Not applicable / 不适用"),
}
BASIS_CODES: Final = {
    "machine": CodedConcept("machine", SCHEME, "Pipeline decision"),
    "human": CodedConcept("human", SCHEME, "Standing human decision"),
}
SEVERITY_CODES: Final = {
    "info": CodedConcept("info", SCHEME, "Information"),
    "review": CodedConcept("review", SCHEME, "Needs review"),
    "fail": CodedConcept("fail", SCHEME, "Fail"),
}
UNITS: Final = {
    "": CodedConcept("1", "UCUM", "no units"),
    "mm": CodedConcept("mm", "UCUM", "millimeter"),
    "cm": CodedConcept("cm", "UCUM", "centimeter"),
    "HU": CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit"),
    "%": CodedConcept("%", "UCUM", "percent"),
    "s": CodedConcept("s", "UCUM", "second"),
    "ms": CodedConcept("ms", "UCUM", "millisecond"),
    "min": CodedConcept("min", "UCUM", "minute"),
    "h": CodedConcept("h", "UCUM", "hour"),
    "d": CodedConcept("d", "UCUM", "day"),
    "mAs": CodedConcept("mA.s", "UCUM", "milliampere second"),
    "kV": CodedConcept("kV", "UCUM", "kilovolt"),
    "mGy": CodedConcept("mGy", "UCUM", "milligray"),
}
_NUMBER: Final = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S.*?)?\s*$")
_PATIENT_SEX: Final = frozenset({"M", "F", "O"})
_EVIDENCE_TYPE2: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def _code(value: str, meaning: str) -> CodedConcept:
    """A code of the private scheme; its meaning cut to the 64 characters DICOM allows."""
    meaning = " ".join(meaning.split()) or value
    return CodedConcept(value, SCHEME, meaning if len(meaning) <= 64 else meaning[:63] + "…")


def unit_code(unit: str) -> CodedConcept:
    """The UCUM code of a unit as the checks write it; an unknown unit as a UCUM annotation
    (``{text}``, which UCUM reads as 1 with that note)."""
    known = UNITS.get(unit)
    if known is not None:
        return known
    clean = re.sub(r"[{}\s]", "_", unit)[:60]
    return CodedConcept("{" + clean + "}", "UCUM", unit[:64])


def _value_item(value: str) -> NumContentItem | TextContentItem:
    """``12.5 mm`` as a NUM with its unit; anything that is not one number (with a unit) as TEXT."""
    match = _NUMBER.match(value)
    if match is not None:
        number, unit = match.group(1), match.group(2) or ""
        if " " not in unit:  # "12 of 30 slices" is text, not a number with a unit
            parsed = float(number)
            return NumContentItem(VALUE, parsed, unit_code(unit), relationship_type="HAS PROPERTIES")
    return TextContentItem(VALUE, value, relationship_type="HAS PROPERTIES")


def _datetime(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _dicom_dt(value: dt.datetime) -> dt.datetime:
    """A DICOM DT in UTC without microseconds (what the text shows is what is stored)."""
    return value.astimezone(dt.UTC).replace(microsecond=0)


def evidence_datasets(headers: Sequence[Dataset]) -> list[Dataset]:
    """The evaluated instances as highdicom wants its evidence: the UIDs of each instance, and the
    patient and study attributes (empty when the header has none: they are type 2 in the SR)."""
    out: list[Dataset] = []
    for header in headers:
        ds = Dataset()
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            setattr(ds, keyword, header.get(keyword, ""))
        if not (ds.StudyInstanceUID and ds.SeriesInstanceUID and ds.SOPInstanceUID and ds.SOPClassUID):
            continue
        for keyword in _EVIDENCE_TYPE2:
            setattr(ds, keyword, _valid(keyword, header.get(keyword)))
        out.append(ds)
    return out


def _valid(keyword: str, value: Any) -> Any:
    """The header's value, or empty when the SR cannot carry it as written: a study is often
    judged *because* its header is wrong (PatientSex ``X``, a date ``20261345``), and its report
    must still be written. The report is about the study; the source keeps the header as it is."""
    if value is None or value == "":
        return ""
    try:
        if keyword == "PatientSex":
            return str(value) if str(value) in _PATIENT_SEX else ""
        if keyword in ("PatientBirthDate", "StudyDate"):
            return "" if DA(str(value)) is None else str(value)
        if keyword == "StudyTime":
            return "" if TM(str(value)) is None else str(value)
    except (ValueError, TypeError, OverflowError):
        return ""
    return value


def _set_children(item: ContentItem, children: Sequence[ContentItem]) -> None:
    """``item.ContentSequence = children``: highdicom's ``ContentItem.__setattr__`` wraps the list in a
    ContentSequence, though it annotates its value as a DataElement or a pydicom Sequence only."""
    item.ContentSequence = children  # type: ignore[assignment]


def _finding_item(finding: Mapping[str, Any], classes: Mapping[str, str]) -> CodeContentItem:
    item = CodeContentItem(FINDING, _code(finding["code"], finding["code"]), relationship_type="CONTAINS")
    severity = str(finding["severity"])
    children: list[Any] = [
        CodeContentItem(
            SEVERITY, SEVERITY_CODES.get(severity) or _code(severity, severity), relationship_type="HAS PROPERTIES"
        ),
        TextContentItem(CATEGORY, str(finding["category"]), relationship_type="HAS PROPERTIES"),
        TextContentItem(MESSAGE_EN, finding["message"] or "-", relationship_type="HAS PROPERTIES"),
    ]
    if finding.get("message_zh"):
        children.append(TextContentItem(MESSAGE_ZH, finding["message_zh"], relationship_type="HAS PROPERTIES"))
    if finding.get("value"):
        children.append(_value_item(str(finding["value"])))
    if finding.get("limit"):
        children.append(TextContentItem(LIMIT, str(finding["limit"]), relationship_type="HAS PROPERTIES"))
    sop = finding.get("sop_instance_uid")
    if sop and sop in classes:  # an instance of the evidence: referenced (the SR names what it judged)
        children.append(ImageContentItem(SOURCE_OF_MEASUREMENT, classes[sop], sop, relationship_type="HAS PROPERTIES"))
    _set_children(item, children)
    return item


def _verdict_code(verdict: str) -> CodedConcept:
    return VERDICT_CODES.get(verdict) or _code(verdict, verdict)


def content(result: Mapping[str, Any], evidence: Sequence[Dataset]) -> ContainerContentItem:
    """The content tree of the report of ``result`` (a ``ResultStore.results()`` dict)."""
    classes = {str(e.SOPInstanceUID): str(e.SOPClassUID) for e in evidence}
    root = ContainerContentItem(ROOT)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID,
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=f"qc-pipeline {__version__}"[:64],
        ),
    )
    items: list[Any] = list(hd.sr.ObservationContext(observer_device_context=device))
    item = result.get("item")
    if item:
        procedure = CodeContentItem(
            PROCEDURE_REPORTED, _code(item["code"], item.get("name_en") or item["code"]), relationship_type="CONTAINS"
        )
        if item.get("name_zh"):
            _set_children(
                procedure, [TextContentItem(ITEM_NAME_ZH, item["name_zh"], relationship_type="HAS PROPERTIES")]
            )
        items.append(procedure)
    human = result.get("human_decision")
    items.append(CodeContentItem(VERDICT, _verdict_code(result["final_verdict"]), relationship_type="CONTAINS"))
    items.append(CodeContentItem(MACHINE_VERDICT, _verdict_code(result["verdict"]), relationship_type="CONTAINS"))
    basis = CodeContentItem(VERDICT_BASIS, BASIS_CODES["human" if human else "machine"], relationship_type="CONTAINS")
    if human:
        review: list[Any] = [TextContentItem(REVIEW_ACTION, str(human["action"]), relationship_type="HAS PROPERTIES")]
        if human.get("reason_code"):
            review.append(TextContentItem(REVIEW_REASON, str(human["reason_code"]), relationship_type="HAS PROPERTIES"))
        if human.get("reviewer"):
            review.append(TextContentItem(REVIEWER, str(human["reviewer"]), relationship_type="HAS PROPERTIES"))
        if (at := _datetime(human.get("decided_at"))) is not None:
            review.append(DateTimeContentItem(REVIEWED_AT, _dicom_dt(at), relationship_type="HAS PROPERTIES"))
        _set_children(basis, review)
    items.append(basis)
    if result.get("eligible_until"):
        items.append(
            DateContentItem(
                ELIGIBLE_UNTIL, dt.date.fromisoformat(result["eligible_until"]), relationship_type="CONTAINS"
            )
        )
    if result.get("recognition_mark"):
        items.append(TextContentItem(RECOGNITION_MARK, str(result["recognition_mark"]), relationship_type="CONTAINS"))
    if (decided := _datetime(result.get("decided_at"))) is not None:
        items.append(DateTimeContentItem(DECIDED_AT, _dicom_dt(decided), relationship_type="CONTAINS"))
    findings = ContainerContentItem(FINDINGS, relationship_type="CONTAINS")
    _set_children(findings, [_finding_item(f, classes) for f in result.get("findings") or ()])
    items.append(findings)
    provenance = result.get("provenance") or {}
    algorithm = hd.sr.AlgorithmIdentification(
        name=MANUFACTURER,
        version=str(provenance.get("pipeline_version") or __version__)[:64],
        parameters=[f"thresholds {provenance.get('thresholds_version')}"],
    )
    for part in algorithm:
        part.RelationshipType = "CONTAINS"
        items.append(part)
    items.append(
        TextContentItem(
            THRESHOLDS_VERSION, str(provenance.get("thresholds_version") or "-"), relationship_type="CONTAINS"
        )
    )
    for name, version in sorted((provenance.get("models") or {}).items()):
        items.append(TextContentItem(AI_MODEL, f"{name}={version}", relationship_type="CONTAINS"))
    _set_children(root, items)
    return root


def build_sr(
    result: Mapping[str, Any],
    evidence: Sequence[Dataset],
    *,
    version: int,
    predecessors: Sequence[Dataset] = (),
) -> hd.sr.ComprehensiveSR:
    """Version ``version`` of the study's quality-control report.

    ``evidence``: the evaluated instances' headers (:func:`evidence_datasets`), all of the study;
    ``predecessors``: the earlier versions (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
    SOPClassUID each). ValueError when there is no evidence of the study.
    """
    study_uid = str(result["study_instance_uid"])
    own = [e for e in evidence if str(e.StudyInstanceUID) == study_uid]
    if not own:
        raise ValueError(f"no instance of study {study_uid} to reference: the SR needs its evaluated instances")
    final = result["final_verdict"]
    return hd.sr.ComprehensiveSR(
        evidence=own,
        content=content(result, own),
        series_instance_uid=sr_series_uid(study_uid),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sr_instance_uid(study_uid, version),
        instance_number=version,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=final != "review",
        previous_versions=list(predecessors) or None,
        series_description=SERIES_DESCRIPTION,
        specific_character_set="ISO_IR 192",
    )
