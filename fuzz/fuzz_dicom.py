"""Coverage-guided fuzzing (atheris / libFuzzer) of DICOM ingestion and the header checks (bad input must give a finding, never a crash).

Each input is written as the one file of a study folder, then goes the way an upload does:
``FolderSource.discover`` (grouping by StudyInstanceUID), ``FolderSource.load`` (``read_header``:
header, pixel-data length checks), and ``pipeline.judge`` with every check, pixels included
(image-quality metrics decode what they can). A crash is any exception escaping, or a decision
carrying ``integrity.check.error`` (the checks' safety net: an unexpected exception inside a
check), or a study without a verdict or without a finding.

    .venv/bin/python fuzz/fuzz_dicom.py --seeds /tmp/qc-fuzz-corpus     # write the seed corpus
    .venv/bin/python fuzz/fuzz_dicom.py /tmp/qc-fuzz-corpus -max_total_time=300 -max_len=65536 \\
        -rss_limit_mb=2048 -artifact_prefix=/tmp/qc-fuzz-

Seeds: pydicom's and pydicom-data's test files up to 64 KiB and the generated bad cases of
``tests.support.bad_inputs``. A crash leaves ``/tmp/qc-fuzz-crash-<sha1>``; turn it into a
case in ``tests/hardening/test_fuzz_regressions.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: the seeds' generator is tests.support

with atheris.instrument_imports(include=["qc_pipeline", "pydicom"]):
    from qc_pipeline.pipeline import CHECK_ERROR_RULE, judge, load_pipeline_thresholds
    from qc_pipeline.sources.folder import FolderSource

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MAX_SEED_BYTES = 64 * 1024

logging.disable(logging.CRITICAL)
warnings.simplefilter("ignore")
THRESHOLDS = load_pipeline_thresholds()
ROOT = Path(tempfile.mkdtemp(prefix="qc-fuzz-"))
FILE = ROOT / "IM0001.dcm"


class FuzzFinding(AssertionError):
    """What the fuzzer reports as a crash."""


def check_one(data: bytes) -> None:
    """Judge ``data`` as a one-file upload; raise ``FuzzFinding`` on anything but a clear verdict."""
    FILE.write_bytes(data)
    source = FolderSource(ROOT)
    entries = list(source.discover())
    if len(entries) != 1:
        raise FuzzFinding(f"one file gave {len(entries)} studies")
    decision = judge(source.load(entries[0]), THRESHOLDS, now=NOW, pixels=source)
    if not decision.findings:
        raise FuzzFinding(f"verdict {decision.verdict} without any finding")
    for finding in decision.findings:
        if finding.code == CHECK_ERROR_RULE:
            raise FuzzFinding(f"a check crashed: {finding.message}")
        if not finding.message or not finding.message_zh:
            raise FuzzFinding(f"{finding.code} without a message")


def test_one_input(data: bytes) -> None:
    check_one(data)


def write_seeds(out: Path) -> int:
    from pydicom.data import get_testdata_files

    from tests.support.bad_inputs import write_all

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for path in sorted(Path(p) for p in get_testdata_files() if Path(p).is_file()):
        if path.stat().st_size <= MAX_SEED_BYTES:
            shutil.copy(path, out / f"pydicom-{path.parent.name}-{path.name}")
            n += 1
    generated = Path(tempfile.mkdtemp(prefix="qc-fuzz-gen-"))
    for name, paths in write_all(generated).items():
        for path in paths:
            if path.stat().st_size <= MAX_SEED_BYTES:
                shutil.copy(path, out / f"generated-{name}-{path.name}")
                n += 1
    shutil.rmtree(generated)
    return n


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--seeds":
        print(f"{write_seeds(Path(argv[2]))} seed files in {argv[2]}")
        return
    atheris.Setup(argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("QC_LANG", "en")
    main(sys.argv)
