"""The MR conformance set: real-scanner headers, the expected answer per series, and the score.

``manifest.csv`` holds the expected weighting (and plane where the name and the orientation
agree) of each series, judged from its protocol name and parameters; ``sources.csv`` says where
each file comes from (repository, commit, path, licence). Series whose answer cannot be known
are ``UNKNOWN`` in the manifest and left out of the score.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from qc_pipeline.catalog.mr_sequences import SequenceInfo

HERE = Path(__file__).parent
VENDORS = ("GE", "Siemens", "Philips", "Canon/Toshiba", "United Imaging", "Hitachi", "Hyperfine")


@dataclass(frozen=True)
class Case:
    series: str
    vendor: str
    description: str
    weighting: str
    """Expected weighting; "UNKNOWN" when it cannot be known (not scored)."""
    plane: str | None
    why: str
    files: tuple[Path, ...]

    @property
    def known(self) -> bool:
        return self.weighting != "UNKNOWN"

    def datasets(self) -> list[Dataset]:
        return [pydicom.dcmread(path) for path in self.files]


@dataclass(frozen=True)
class Outcome:
    case: Case
    info: SequenceInfo

    @property
    def weighting_ok(self) -> bool:
        return self.info.weighting.value == self.case.weighting

    @property
    def plane_ok(self) -> bool:
        return self.case.plane is None or (self.info.plane is not None and self.info.plane.value == self.case.plane)

    @property
    def ok(self) -> bool:
        return self.weighting_ok and self.plane_ok


def load_cases(root: Path = HERE) -> list[Case]:
    files: dict[str, list[Path]] = {}
    with (root / "sources.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            files.setdefault(row["series"], []).append(root / row["file"])
    cases = []
    with (root / "manifest.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            cases.append(
                Case(
                    series=row["series"],
                    vendor=row["vendor"],
                    description=row["description"],
                    weighting=row["weighting"],
                    plane=row["plane"] or None,
                    why=row["why"],
                    files=tuple(files[row["series"]]),
                )
            )
    return cases


def evaluate(cases: Sequence[Case], identify: Callable[[Sequence[Dataset]], SequenceInfo]) -> list[Outcome]:
    return [Outcome(case, identify(case.datasets())) for case in cases]


def table(outcomes: Sequence[Outcome]) -> list[tuple[str, int, int, float]]:
    """(vendor, known series, right, fraction right) per vendor, then "all"."""
    rows = []
    for vendor in (*VENDORS, "all"):
        scored = [o for o in outcomes if o.case.known and vendor in ("all", o.case.vendor)]
        if not scored:
            continue
        right = sum(o.ok for o in scored)
        rows.append((vendor, len(scored), right, right / len(scored)))
    return rows
