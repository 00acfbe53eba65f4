"""Discovery reads a file's study keys from its first bytes without pydicom where they are plain
to read; on every file we have, what it reads is what pydicom reads, or it leaves the file to
pydicom (and says so by returning None).

The files: pydicom's and pydicom-data's test and character-set files (many vendors, transfer
syntaxes and odd encodings), the generated bad inputs, the demo studies, the catalog sample studies and the real
scanner headers in ``tests/data``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_charset_files, get_testdata_files

from qc_pipeline.io.dicom import study_keys_from_head
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.samples import write_demo_studies
from qc_pipeline.samples.catalog_studies import write_catalog_set
from qc_pipeline.sources.folder import FINGERPRINT_HEAD_BYTES, _keys, _read_keys
from tests.support.bad_inputs import write_all
from tests.support.multiframe import one_object

DATA = Path(__file__).resolve().parents[1] / "data"


def _head(path: Path) -> bytes:
    with path.open("rb") as fp:
        return fp.read(FINGERPRINT_HEAD_BYTES)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("keys")
    write_all(root / "bad")
    write_demo_studies(root / "demo")
    write_catalog_set(root / "catalog", load_pipeline_thresholds().catalog.items)
    ct = sorted((root / "demo").rglob("*.dcm"))
    one_object(
        [p for p in ct if "ct" in p.parent.name.lower()][:4], root / "multi" / "one.dcm", per_frame_positions=True
    )
    shipped = [Path(p) for p in [*get_testdata_files(), *get_charset_files()] if Path(p).is_file()]
    ours = [p for p in root.rglob("*") if p.is_file()]
    real = [p for p in DATA.rglob("*") if p.is_file() and p.suffix.lower() not in {".md", ".csv", ".py", ".sqlite"}]
    return sorted(shipped) + sorted(ours) + sorted(real)


def test_the_fast_path_reads_what_pydicom_reads_or_leaves_the_file_to_it(files):
    fast = 0
    differing = []
    for path in files:
        head = _head(path)
        if path.stat().st_size == 0:
            continue
        keys = study_keys_from_head(head)
        if keys is None:
            continue
        fast += 1
        if _keys(path, head) != _read_keys(path):
            differing.append(path.name)
    assert differing == []
    # the fast path is the common case, not an exception: every file the pipeline writes takes it
    assert fast > 0.5 * len(files), f"only {fast} of {len(files)} files were read by the fast path"


def test_what_the_fast_path_leaves_to_pydicom(tmp_path):
    """A header longer than the bytes read, a deflated or big-endian dataset, a value in an escape
    sequence encoding, or a key with two values: None (pydicom reads the file)."""
    base = Path(get_testdata_files("CT_small.dcm")[0])
    head = _head(base)
    assert study_keys_from_head(head) is not None
    assert study_keys_from_head(head[:400]) is None  # cut before the keys: pydicom reads the file
    assert study_keys_from_head(b"\0" * 128 + b"DICX" + head[132:]) is None
    for name in ("image_dfl.dcm", "MR_small_bigendian.dcm"):
        assert study_keys_from_head(_head(Path(get_testdata_files(name)[0]))) is None, name
    japanese = Path(get_charset_files("chrH31.dcm")[0])  # ISO 2022 IR 87: escape sequences
    assert study_keys_from_head(_head(japanese)) is None


def test_implicit_vr_and_compressed_files_take_the_fast_path():
    """Implicit VR little endian, and a compressed image whose pixel data has no defined length:
    both are plain to walk up to the pixel data, and read as pydicom reads them."""
    for name in ("MR_small_implicit.dcm", "JPEGLSNearLossless_08.dcm"):
        path = Path(get_testdata_files(name)[0])
        keys = study_keys_from_head(_head(path))
        assert keys is not None, name
        assert _keys(path, _head(path)) == _read_keys(path), name
