"""Every malformed or unusual file pydicom and pydicom-data ship, and the generated bad cases of
``tests.support.bad_inputs``: each gets a verdict with a clear finding, in bounded memory.

Judged directly (``pipeline.judge`` on the folder source, pixels included); one flow run over the
whole corpus at the end checks the run completes with one current verdict per study.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tracemalloc
from pathlib import Path

import pytest
from pydicom.data import get_testdata_files

from qc_pipeline.domain import Decision, Verdict
from qc_pipeline.pipeline import CHECK_ERROR_RULE, judge, load_pipeline_thresholds
from qc_pipeline.sources import FolderSource
from qc_pipeline.sources.folder import NOT_DICOM_SUFFIXES
from tests.support.bad_inputs import CASES, write_all, write_case

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MEMORY_BOUND_BYTES = 64 * 1024**2
"""Peak Python allocations while one lying or garbage file is discovered, loaded and judged."""
CORPUS_MEMORY_BOUND_BYTES = 500 * 1024**2
"""Peak over any one shipped test file (the largest is a 7 MB radiograph, decoded as float32)."""


def shipped_files() -> list[Path]:
    """pydicom's test files and pydicom-data's (installed, found offline), directories excluded."""
    files = sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())
    assert len(files) > 200, "pydicom-data is not installed: the corpus would be pydicom's files only"
    return files


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


def judge_folder(root: Path, thresholds) -> list[Decision]:
    source = FolderSource(root)
    return [judge(source.load(e), thresholds, now=NOW, pixels=source) for e in source.discover()]


def assert_clear(decision: Decision, what: str) -> None:
    assert decision.findings, f"{what}: a verdict without any finding"
    for finding in decision.findings:
        assert finding.message.strip() and finding.message_zh.strip(), f"{what}: {finding.code} lacks a message"
    codes = {f.code for f in decision.findings}
    assert CHECK_ERROR_RULE not in codes, f"{what}: the checks crashed: {decision.findings}"
    if decision.verdict in (Verdict.FAIL, Verdict.REVIEW):
        assert decision.reasons, f"{what}: a {decision.verdict} must say why"


@pytest.fixture(scope="module")
def shipped_judged(tmp_path_factory, thresholds) -> dict[str, tuple[list[Decision], int]]:
    """Each shipped file alone in a folder, judged with its pixels; the peak allocation of each."""
    out = {}
    for path in shipped_files():
        root = tmp_path_factory.mktemp("shipped")
        shutil.copy(path, root / path.name)
        tracemalloc.start()
        try:
            decisions = judge_folder(root, thresholds)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        out[f"{path.parent.name}/{path.name}"] = (decisions, peak)
        shutil.rmtree(root)
    return out


def test_every_shipped_file_gets_one_clear_verdict(shipped_judged):
    for name, (decisions, _peak) in shipped_judged.items():
        skipped = Path(name).suffix.lower() in NOT_DICOM_SUFFIXES or Path(name).name.upper() == "DICOMDIR"
        if skipped and not decisions:
            continue  # a media index, or a text/picture file without the DICM mark: listed as skipped, not a study
        assert len(decisions) == 1, f"{name}: {len(decisions)} studies from one file"
        assert_clear(decisions[0], name)


def test_shipped_corpus_covers_the_kinds_of_bad_input(shipped_judged):
    codes = {f.code for decisions, _ in shipped_judged.values() for d in decisions for f in d.findings}
    verdicts = {d.verdict for decisions, _ in shipped_judged.values() for d in decisions}
    assert verdicts >= {Verdict.FAIL, Verdict.NOT_APPLICABLE, Verdict.REVIEW}
    assert {
        "integrity.file.unreadable",  # no preamble and no UIDs, not DICOM
        "integrity.pixel_data.truncated",
        "integrity.header.missing_uid",
        "integrity.non_image.skipped",  # SR, RT plans, waveforms
        "catalog.modality.not_candidate",  # US, OT, PT, NM...
    } <= codes


def test_shipped_files_are_judged_in_bounded_memory(shipped_judged):
    worst = max(shipped_judged.items(), key=lambda kv: kv[1][1])
    assert worst[1][1] < CORPUS_MEMORY_BOUND_BYTES, f"{worst[0]} peaked at {worst[1][1] / 1e6:.0f} MB"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_generated_case(case, tmp_path, thresholds):
    write_case(case, tmp_path / case.name)
    (decision,) = judge_folder(tmp_path / case.name, thresholds)
    assert_clear(decision, case.name)
    codes = {f.code for f in decision.findings}
    assert decision.verdict is case.verdict, sorted(codes)
    assert case.code in codes


@pytest.mark.parametrize(
    "name", ["lying_header", "lying_frames", "lying_header_compressed", "dicm_garbage", "not_dicom"]
)
def test_lying_and_garbage_files_cost_no_memory(name, tmp_path, thresholds):
    """60,000² headers, 2·10⁹ frames, garbage element lengths: nothing near their claimed size is
    allocated (before the bounded reader, a 4 KB file of noise after DICM allocated 2.7 GB)."""
    (case,) = [c for c in CASES if c.name == name]
    write_case(case, tmp_path / name)
    tracemalloc.start()
    try:
        (decision,) = judge_folder(tmp_path / name, thresholds)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decision.verdict is case.verdict
    assert peak < MEMORY_BOUND_BYTES, f"{name}: peak {peak / 1e6:.0f} MB"


def test_names_in_chinese_character_sets_are_read(tmp_path, thresholds):
    for name in ("gb18030_name", "utf8_name"):
        (case,) = [c for c in CASES if c.name == name]
        write_case(case, tmp_path / name)
        source = FolderSource(tmp_path / name)
        (entry,) = source.discover()
        study = source.load(entry)
        assert str(study.images[0].dataset.PatientName) == "Wang^Xiaoming=王^小明"
        assert "metadata.patient_name.invalid" not in {f.code for f in judge(study, thresholds, now=NOW).findings}


@pytest.mark.prefect
def test_one_flow_run_over_the_whole_corpus(prefect_harness, tmp_path):
    """Shipped files and generated cases in one folder: the run completes, each study discovered
    has exactly one current decision, and a second run judges nothing."""
    from flows.qc_flow import run
    from qc_pipeline.store import ResultStore

    root = tmp_path / "incoming"
    for k, path in enumerate(shipped_files()):
        (root / "shipped" / f"{k:03d}").mkdir(parents=True)
        shutil.copy(path, root / "shipped" / f"{k:03d}" / path.name)
    write_all(root / "generated")
    expected = {e.study_instance_uid for e in FolderSource(root).discover()}
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"

    first = run(root, db_url=url, now=NOW)
    assert first["failed"] == 0 and first["judged"] == first["studies"] == len(expected)
    second = run(root, db_url=url, now=NOW)
    assert second["judged"] == 0 and second["unchanged"] == len(expected)
    with ResultStore.open(url) as store:
        results = store.results()
        assert sorted(r["study_instance_uid"] for r in results) == sorted(expected)
        assert all(r["history_count"] == 1 for r in results)
