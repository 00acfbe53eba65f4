"""Each file's header is parsed once per study and each series measured once (throughput).

The folder source reads every header when it loads the study; the image-quality check decodes the
same files and must take those headers instead of parsing each file again, and the native CT
metrics are computed once per series.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from qc_pipeline.io import dicom as dicom_io
from qc_pipeline.io import pixels as pixels_io
from qc_pipeline.metrics import ct
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series
from qc_pipeline.sources import folder as folder_source
from qc_pipeline.sources.folder import FolderSource

SLICES, SIZE = 10, 64
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def write_chest_ct(out: Path, n_slices: int = SLICES) -> list[Path]:
    """A plain chest CT study of ``n_slices`` slices (one series) that maps to a recognition item."""
    volume = phantoms.ct_water_cylinder(n_slices=n_slices, size=SIZE, noise_sd_hu=12.0, seed=1)
    study_uid = derive_uid("headers-once", "study", n_slices)
    return write_series(
        volume,
        out,
        patient=PatientInfo(name="Once^Headers", id="ONCE0001", sex="O", birth_date=dt.date(1970, 1, 1), age="056Y"),
        study=StudyInfo(
            study_instance_uid=study_uid,
            date=dt.date(2026, 11, 1),
            time=dt.time(9, 0),
            accession_number="ONCE",
            institution_name="Benchmark",
            description="胸部CT平扫",
        ),
        series=SeriesInfo(
            series_instance_uid=derive_uid(study_uid, "series"),
            modality="CT",
            number=2,
            description="胸部平扫 5mm",
            body_part="CHEST",
            protocol_name="胸部常规平扫 Chest routine",
        ),
        geometry=Geometry(pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=5.0),
    )


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


def test_each_header_is_parsed_once_and_each_series_measured_once(tmp_path, thresholds, monkeypatch):
    paths = write_chest_ct(tmp_path / "study")
    source = FolderSource(tmp_path)
    (entry,) = list(source.discover())

    parsed: Counter[str] = Counter()
    real_read_header = dicom_io.read_header

    def counting_read_header(path):
        parsed[Path(path).name] += 1
        return real_read_header(path)

    native_measures: list[tuple[int, ...]] = []
    real_measure = ct.measure

    def counting_measure(volume, *args, **kwargs):
        if np.shape(volume) == (SLICES, SIZE, SIZE):  # the native volume (the AI's working grid differs)
            native_measures.append(np.shape(volume))
        return real_measure(volume, *args, **kwargs)

    for module in (folder_source, pixels_io):
        monkeypatch.setattr(module, "read_header", counting_read_header)
    monkeypatch.setattr(ct, "measure", counting_measure)

    study = source.load(entry)
    decision = judge(study, thresholds, now=NOW, source_uri=source.uri, others=[], pixels=source)

    assert any(m.metric.startswith("ct.") and m.value is not None for m in decision.measurements), (
        "the CT metrics were not measured, so the test says nothing"
    )
    assert parsed == Counter({p.name: 1 for p in paths}), f"headers parsed more than once per study: {parsed}"
    assert len(native_measures) == 1, f"ct.measure ran {len(native_measures)} times on the native series"
