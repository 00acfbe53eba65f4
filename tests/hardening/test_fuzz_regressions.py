"""Inputs the fuzz target (fuzz/fuzz_dicom.py) made crash, each judged now with a clear verdict.

Each file in ``fuzz_crashes/`` is the crashing input as libFuzzer wrote it, renamed after what it
broke:

- ``rle-segment-overrun.dcm``: RLE Lossless pixel data whose segment runs past the frame;
  pylibjpeg-rle (Rust) panicked, and its pyo3 ``PanicException`` is no ``Exception``, so it went
  through every ``except Exception`` and took the whole run down. Fixed in
  ``qc_pipeline.io.pixels._decode``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from qc_pipeline.domain import Verdict
from qc_pipeline.pipeline import CHECK_ERROR_RULE, judge, load_pipeline_thresholds
from qc_pipeline.sources import FolderSource

CRASHES = Path(__file__).resolve().parent / "fuzz_crashes"
EXPECTED = {"rle-segment-overrun.dcm": (Verdict.FAIL, "image_quality.pixels.not_decoded")}  # fails on metadata too


def test_every_crash_file_has_an_expectation():
    assert {p.name for p in CRASHES.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crash_input_gets_a_clear_verdict(name, tmp_path):
    shutil.copy(CRASHES / name, tmp_path / name)
    source = FolderSource(tmp_path)
    (entry,) = source.discover()
    decision = judge(
        source.load(entry), load_pipeline_thresholds(), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), pixels=source
    )
    codes = {f.code for f in decision.findings}
    verdict, code = EXPECTED[name]
    assert CHECK_ERROR_RULE not in codes
    assert decision.verdict is verdict and code in codes, sorted(codes)
