"""Decoding only the sampled slices changes no decision: on the demo studies, the catalog sample
studies and a long CT (whole and as one multi-frame object), every verdict, finding and
measurement is the same as when every slice is decoded.

"Every slice decoded" is the image-quality check with its CT sample widened to the whole series
(each file, each frame decoded, as before sampling); the metrics and the AI then pick their own
slices out of the whole decoded series.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest

from qc_pipeline.checks import image_quality
from qc_pipeline.io import pixels as pixels_io
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.samples import write_demo_studies
from qc_pipeline.samples.catalog_studies import write_catalog_set
from qc_pipeline.sources.folder import FolderSource

from .test_image_quality_headers_once import write_chest_ct

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
LONG = 60


def _multiframe(paths: list[Path], out: Path) -> None:
    """The same CT as one multi-frame object (frames in stored order, one position)."""
    ds = pydicom.dcmread(paths[0])
    frames = np.stack([pydicom.dcmread(p).pixel_array for p in paths])
    ds.NumberOfFrames = len(paths)
    ds.PixelData = frames.tobytes()
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), "multi-frame"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key in ("StudyInstanceUID", "SeriesInstanceUID"):
        setattr(ds, key, pydicom.uid.generate_uid(entropy_srcs=[str(ds.get(key)), "multi-frame"]))
    out.mkdir(parents=True)
    ds.save_as(out / "multi.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studies")
    write_demo_studies(root / "demo")
    write_catalog_set(root / "catalog", load_pipeline_thresholds().catalog.items)
    long_ct = write_chest_ct(root / "long" / "ct", n_slices=LONG)
    _multiframe(long_ct, root / "long-multiframe" / "ct")
    return root


def _comparable(decision) -> dict:
    """What a decision says about the study (not when it was made or by which run)."""
    return {
        "verdict": decision.verdict,
        "findings": [dataclasses.asdict(f) for f in decision.findings],
        "measurements": [dataclasses.asdict(m) for m in decision.measurements],
        "metrics": dict(decision.metrics),
        "item": decision.item,
    }


def _judge_all(root: Path, thresholds) -> dict[str, dict]:
    source = FolderSource(root)
    return {
        entry.study_instance_uid: _comparable(
            judge(source.load(entry), thresholds, now=NOW, source_uri=source.uri, others=[], pixels=source)
        )
        for entry in source.discover()
    }


def _every_slice(real):
    def widened(target, ai_slices, **how):
        sample = real(target, ai_slices, **how)
        everything = tuple(range(sample.n_slices))
        return dataclasses.replace(
            sample,
            chosen=everything,
            instances=tuple(range(len(target.instances))),
            select=everything,
            n_fetched=sample.n_slices,
            frames={},  # every frame of a multi-frame object
        )

    return widened


def test_sampled_decoding_changes_no_verdict_finding_or_measurement(studies, monkeypatch):
    thresholds = load_pipeline_thresholds()
    decoded: list[int] = []
    real_decode_frames = pixels_io._decode_frames

    def counting(path, ds, rows, cols, n_frames, wanted):
        decoded.append(len(wanted))
        return real_decode_frames(path, ds, rows, cols, n_frames, wanted)

    monkeypatch.setattr(pixels_io, "_decode_frames", counting)
    sampled = _judge_all(studies, thresholds)
    sampled_frames = sum(decoded)

    decoded.clear()
    with monkeypatch.context() as m:
        m.setattr(image_quality, "_ct_sample", _every_slice(image_quality._ct_sample))
        full = _judge_all(studies, thresholds)
    full_frames = sum(decoded)

    assert len(sampled) > 90 and sampled.keys() == full.keys()
    # The two long CTs decode 30 + 8 (overlapping) of their 60 slices each; nothing else changes.
    assert 2 * (LONG - 38) <= full_frames - sampled_frames < 2 * LONG, (full_frames, sampled_frames)
    differing = {uid: (full[uid], sampled[uid]) for uid in full if full[uid] != sampled[uid]}
    assert differing == {}
    noise = [m for d in sampled.values() for m in d["measurements"] if m["metric"] == "ct.noise_hu"]
    assert sum(m["value"] is not None for m in noise) >= 3, "too few CT series measured for the comparison to mean much"
