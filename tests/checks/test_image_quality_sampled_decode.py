"""A CT series is decoded only where it is measured (throughput), with the values of the whole.

The CT metrics sample at most 30 slices and the AI scorer 8; decoding the other slices of a
300-slice series is most of its cost (and of a JPEG 2000 one, nearly all). The image-quality check
decodes only the union of the two samples, and the measurements and AI scores are those computed
on the fully decoded series.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.io import pixels as pixels_io
from qc_pipeline.io.pixels import load_series
from qc_pipeline.metrics import ct
from qc_pipeline.pipeline import ai_scorer, judge, load_pipeline_thresholds
from qc_pipeline.sources.folder import FolderSource

from .test_image_quality_headers_once import write_chest_ct

SLICES = 70
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def _write_chest_ct(out: Path, n_slices: int = SLICES) -> list[Path]:
    return write_chest_ct(out, n_slices)


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    loaded = ai_scorer()
    assert isinstance(loaded, Scorer), f"the shipped models did not load: {loaded}"
    return loaded


def _judge_folder(root: Path, thresholds):
    source = FolderSource(root)
    (entry,) = list(source.discover())
    return judge(source.load(entry), thresholds, now=NOW, source_uri=source.uri, others=[], pixels=source)


def test_only_the_sampled_slices_of_a_ct_series_are_decoded(tmp_path, thresholds, scorer, monkeypatch):
    paths = _write_chest_ct(tmp_path / "study")
    decoded: list[str] = []
    real_decode = pixels_io._decode

    def counting_decode(path, *args, **kwargs):
        decoded.append(Path(path).name)
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(pixels_io, "_decode", counting_decode)
    decision = _judge_folder(tmp_path, thresholds)

    wanted = set(ct.sample_slices(SLICES).tolist()) | set(scorer.slice_indices("ct", SLICES))
    assert any(m.metric == "ct.noise_hu" and m.value is not None for m in decision.measurements)
    assert sorted(decoded) == sorted(paths[i].name for i in wanted), "decoded other files than the sampled slices"
    assert len(decoded) == len(wanted) < SLICES


def test_sampled_decoding_gives_the_values_of_the_whole_series(tmp_path, thresholds, scorer):
    paths = _write_chest_ct(tmp_path / "study")
    decision = _judge_folder(tmp_path, thresholds)

    full = load_series(paths)
    assert full.array.shape[0] == SLICES and full.slice_indices == tuple(range(SLICES))
    head = full.datasets[0]
    expected = ct.measure(
        full.array,
        spacing_mm=full.spacing_mm,
        body_part="CHEST",
        slice_thickness_mm=float(head.SliceThickness),
        scan_field_mm=None,
    )
    expected += scorer.score("ct", list(full.array), pixel_mm=full.spacing_mm[1])
    got = {m.metric: m for m in decision.measurements}
    for m in expected:
        assert m.metric in got, m.metric
        assert (
            got[m.metric].value == pytest.approx(m.value, rel=1e-6, abs=1e-9)
            if m.value is not None
            else got[m.metric].value is None
        ), m.metric
        assert got[m.metric].detail == m.detail, m.metric
    assert "of 30 sampled slices (70 in the series)" in got["ct.air_hu"].detail


def test_load_series_select_decodes_chosen_slices_of_a_multiframe_object(tmp_path):
    paths = _write_chest_ct(tmp_path / "study", n_slices=6)
    full = load_series(paths)
    # One enhanced-like multi-frame file per encoding: native and RLE (encapsulated, frame by frame).
    for syntax in (None, RLELossless):
        ds = pydicom.dcmread(paths[0])
        frames = np.stack([pydicom.dcmread(p).pixel_array for p in paths])
        ds.NumberOfFrames = len(paths)
        ds.PixelData = frames.tobytes()
        if syntax is not None:
            ds.compress(syntax, frames)
        target = tmp_path / f"multi-{syntax or 'native'}.dcm"
        ds.save_as(target, enforce_file_format=True)
        picked = load_series([target], select=lambda n: [4, 1])
        assert picked.slice_indices == (1, 4) and picked.n_slices == 6
        # The single file has one top-level position, so frames keep their stored order.
        np.testing.assert_array_equal(picked.array, full.array[[1, 4]])


def test_select_outside_the_series_is_a_programming_error(tmp_path):
    paths = _write_chest_ct(tmp_path / "study", n_slices=3)
    with pytest.raises(ValueError, match="outside 0..2"):
        load_series(paths, select=lambda n: [0, n])
