"""pydicom's malformed and unusual test files: each one gets a verdict with a clear finding."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from qc_pipeline.domain import Verdict
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.sources import FolderSource

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

# name -> (expected verdict, a finding code that must be there)
CORPUS = {
    "MR_truncated.dcm": (Verdict.FAIL, "integrity.pixel_data.truncated"),
    "no_meta.dcm": (Verdict.FAIL, "integrity.file.unreadable"),
    "meta_missing_tsyntax.dcm": (Verdict.FAIL, "integrity.header.missing_uid"),
    "badVR.dcm": (Verdict.NOT_APPLICABLE, "catalog.no_images"),  # RT Dose: not a recognition image
    "test-SR.dcm": (Verdict.NOT_APPLICABLE, "integrity.non_image.skipped"),
    "rtplan.dcm": (Verdict.NOT_APPLICABLE, "integrity.non_image.skipped"),
    # Enhanced MR of the head without patient data: a brain item that fails on metadata.
    "emri_small_jpeg_2k_lossless_too_short.dcm": (Verdict.FAIL, "metadata.patient_id.missing"),
    "emri_small_big_endian.dcm": (Verdict.FAIL, "completeness.mr.sequence_missing"),
    "JPEG2000.dcm": (Verdict.NOT_APPLICABLE, "catalog.modality.not_candidate"),
    # MR without an order naming a body part: no recognition item (the metadata is still checked)
    "MR_small_RLE.dcm": (Verdict.NOT_APPLICABLE, "catalog.item.unmatched"),
    "ExplVR_BigEndNoMeta.dcm": (Verdict.NOT_APPLICABLE, "integrity.non_image.skipped"),  # an RT plan
    "UN_sequence.dcm": (Verdict.FAIL, "integrity.header.missing_uid"),
    "rtplan_truncated.dcm": (Verdict.NOT_APPLICABLE, "integrity.non_image.skipped"),
    "waveform_ecg.dcm": (Verdict.NOT_APPLICABLE, "integrity.non_image.skipped"),
    "image_dfl.dcm": (Verdict.NOT_APPLICABLE, "catalog.modality.not_candidate"),  # deflated, OT
    "MR_small_padded.dcm": (Verdict.NOT_APPLICABLE, "metadata.patient_birth_date.missing"),
}


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> dict[str, object]:
    """Each file judged on its own (several of them share a StudyInstanceUID)."""
    thresholds = load_pipeline_thresholds()
    out: dict[str, object] = {}
    for name in CORPUS:
        path = get_testdata_file(name)
        assert path is not None, f"pydicom test file {name} is missing"
        root = tmp_path_factory.mktemp(Path(name).stem)
        shutil.copy(path, root / name)
        source = FolderSource(root)
        (entry,) = list(source.discover())
        out[name] = judge(source.load(entry), thresholds, now=NOW)
    return out


def test_every_file_is_judged(judged):
    assert set(judged) == set(CORPUS)


def test_complete_encapsulated_and_padded_files_are_not_truncated(judged):
    for name in ("MR_small_RLE.dcm", "MR_small_padded.dcm", "emri_small_big_endian.dcm", "image_dfl.dcm"):
        assert "integrity.pixel_data.truncated" not in {f.code for f in judged[name].findings}, name
    # emri_small_jpeg_2k_lossless_too_short.dcm is whole as a file: its JPEG 2000 codestream is
    # short inside a complete fragment, which only decoding finds (the image-quality stage).


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_verdict_and_finding(judged, name):
    decision = judged[name]
    verdict, code = CORPUS[name]
    assert decision.verdict is verdict, [f.code for f in decision.findings]
    assert code in {f.code for f in decision.findings}
    for finding in decision.findings:
        assert finding.message and finding.message_zh
    if decision.verdict is Verdict.FAIL:
        assert decision.reasons, "a fail must say why"
