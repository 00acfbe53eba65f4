"""Read a quality-control SR back with highdicom (shared by the SR unit tests and the cloud tests)."""

from __future__ import annotations

import io
from typing import Any

import highdicom as hd
import pydicom
from highdicom.sr import CodedConcept
from highdicom.sr.utils import find_content_items
from pydicom.dataset import Dataset

SCHEME = "99QCPIPE"


def reencode(ds: Dataset) -> Dataset:
    """The dataset as a receiver reads it: written to bytes and parsed again."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def _code(item: Dataset) -> str:
    c = item.ConceptCodeSequence[0]
    return str(c.get("CodeValue") or c.get("LongCodeValue"))


def _one(ds: Dataset, name: CodedConcept) -> Dataset | None:
    found = find_content_items(ds, name=name)
    assert len(found) <= 1, f"{name.meaning} appears {len(found)} times"
    return found[0] if found else None


def read_report(ds: Dataset) -> dict[str, Any]:
    """What the SR says, read with highdicom's parser and generic content-item search only."""
    sr = hd.sr.ComprehensiveSR.from_dataset(ds)
    procedure = _one(sr, CodedConcept("121058", "DCM", "Procedure reported"))
    verdict = _one(sr, CodedConcept("QC-VERDICT", SCHEME, "x"))
    machine = _one(sr, CodedConcept("MACHINE-VERDICT", SCHEME, "x"))
    until = _one(sr, CodedConcept("ELIGIBLE-UNTIL", SCHEME, "x"))
    mark = _one(sr, CodedConcept("RECOGNITION-MARK", SCHEME, "x"))
    findings = []
    for f in find_content_items(sr, name=CodedConcept("121071", "DCM", "Finding"), recursive=True):
        entry: dict[str, Any] = {"code": _code(f)}
        for child in f.ContentSequence:
            key = str(
                child.ConceptNameCodeSequence[0].get("CodeValue") or child.ConceptNameCodeSequence[0].LongCodeValue
            )
            if child.ValueType == "NUM":
                measured = child.MeasuredValueSequence[0]
                entry["value"] = float(measured.NumericValue)
                entry["unit"] = str(measured.MeasurementUnitsCodeSequence[0].CodeValue)
            elif child.ValueType == "TEXT":
                entry[key] = str(child.TextValue)
            elif child.ValueType == "CODE":
                entry[key] = _code(child)
            elif child.ValueType == "IMAGE":
                entry["image"] = str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        findings.append(entry)
    evidence = (
        [
            str(sop.ReferencedSOPInstanceUID)
            for series in sr.get("CurrentRequestedProcedureEvidenceSequence", [])[0].ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        ]
        if "CurrentRequestedProcedureEvidenceSequence" in sr
        else []
    )
    return {
        "sop_class": str(sr.SOPClassUID),
        "study": str(sr.StudyInstanceUID),
        "series": str(sr.SeriesInstanceUID),
        "sop": str(sr.SOPInstanceUID),
        "instance_number": int(sr.InstanceNumber),
        "item_code": None if procedure is None else _code(procedure),
        "verdict": None if verdict is None else _code(verdict),
        "machine_verdict": None if machine is None else _code(machine),
        "eligible_until": None if until is None else str(until.Date),
        "mark": None if mark is None else str(mark.TextValue),
        "findings": findings,
        "evidence": sorted(evidence),
        "predecessors": [
            str(sop.ReferencedSOPInstanceUID)
            for study in sr.get("PredecessorDocumentsSequence", [])
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        ],
    }
