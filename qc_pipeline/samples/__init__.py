"""Sample data for demos and tests: seeded phantoms, a DICOM writer and the demo study set.

``phantoms`` makes arrays (no I/O), ``writer`` turns arrays or real sample files into DICOM
files with derived UIDs, ``demo`` writes the demo set (good studies and known defects, each described).
"""

from __future__ import annotations

from qc_pipeline.samples.demo import DEMO_NOW, DEMO_REFERENCE_DATE, DEMO_SEED, DemoCase, demo_cases, write_demo_studies
from qc_pipeline.samples.writer import Geometry, PatientInfo, Plane, SeriesInfo, StudyInfo, derive_uid, write_series

__all__ = [
    "DEMO_NOW",
    "DEMO_REFERENCE_DATE",
    "DEMO_SEED",
    "DemoCase",
    "Geometry",
    "PatientInfo",
    "Plane",
    "SeriesInfo",
    "StudyInfo",
    "demo_cases",
    "derive_uid",
    "write_demo_studies",
    "write_series",
]
