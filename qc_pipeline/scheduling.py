"""In which order and in which groups the studies of a run are judged: plain Python, no Prefect.

The QC flow (``flows/qc_flow.py``) submits one task per *unit* this module plans, bounded in
flight, and collects them; everything it decides about order lives here, testable on its own:

- **Order.** By patient, then study date, then StudyInstanceUID: a patient's studies are judged
  oldest first, so the checks that compare a study with the patient's earlier ones (sex or
  birth date changed) see them stored.
- **Per-patient chains.** A unit waits for the last earlier unit holding a study of the same
  patient (whatever happened to it: one study that could not be judged must not hold back the
  next), and for nothing else, so different patients run in parallel.
- **Batches.** A study of at most :data:`SMALL_STUDY_FILES` files costs about as much to judge as
  a Prefect task costs to run; with ``batch_size`` > 1 such studies are judged that many to a
  unit, consecutive in patient order. A CT or MR series stays a unit of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from qc_pipeline.sources.base import StudyEntry

SMALL_STUDY_FILES: Final = 8
"""A study of at most this many files is small: its own work (tens of milliseconds) is of the
order of a Prefect task's cost, so with ``batch_size`` several are judged in one task."""


@dataclass(frozen=True, slots=True)
class Unit:
    """Studies judged in one task, and the earlier units it must wait for."""

    index: int
    entries: tuple[StudyEntry, ...]
    after: tuple[int, ...]
    """Indices of earlier units holding a study of the same patient (the last one per patient)."""
    batched: bool
    """Small studies grouped ``batch_size`` at a time (else one study, judged alone)."""


def submission_order(entries: Iterable[StudyEntry]) -> list[StudyEntry]:
    """By patient, study date, StudyInstanceUID (studies without a patient key first)."""
    return sorted(entries, key=lambda e: (e.patient_key or "", e.study_date or "", e.study_instance_uid))


def is_small(entry: StudyEntry) -> bool:
    return len(entry.locations) <= SMALL_STUDY_FILES


def group(ordered: Sequence[StudyEntry], batch_size: int) -> list[list[StudyEntry]]:
    """The studies in ``ordered``'s order, small ones grouped ``batch_size`` at a time (consecutive
    in that order), every other one alone; a last, shorter group of small ones at the end. A
    group still open when a larger study of one of its patients comes is closed first, so a
    patient's studies keep their order (a group is submitted before the larger study)."""
    units: list[list[StudyEntry]] = []
    small: list[StudyEntry] = []
    for entry in ordered:
        if batch_size > 1 and is_small(entry):
            small.append(entry)
            if len(small) == batch_size:
                units.append(small)
                small = []
        else:
            if small and entry.patient_key and any(e.patient_key == entry.patient_key for e in small):
                units.append(small)  # the patient's earlier small studies go first, not after this one
                small = []
            units.append([entry])
    if small:
        units.append(small)
    return units


def plan(entries: Iterable[StudyEntry], batch_size: int | None = None) -> list[Unit]:
    """The units of a run, in submission order, each with the units it waits for."""
    size = batch_size or 1
    last_of_patient: dict[str, int] = {}
    units = []
    for index, members in enumerate(group(submission_order(entries), size)):
        after = sorted(
            {last_of_patient[e.patient_key] for e in members if e.patient_key and e.patient_key in last_of_patient}
        )
        units.append(Unit(index, tuple(members), tuple(after), batched=size > 1 and is_small(members[0])))
        for entry in members:
            if entry.patient_key:
                last_of_patient[entry.patient_key] = index
    return units
