"""Read-ahead advice: every path comes back in its order, each window advised before its first
path is read, and nothing it is given can stall or fail it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qc_pipeline.io import readahead


@pytest.fixture
def advised(monkeypatch) -> list[tuple[str, int, int]]:
    calls: list[tuple[str, int, int]] = []

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_WILLNEED
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length))

    monkeypatch.setattr(readahead.os, "posix_fadvise", record, raising=False)
    return calls


def test_each_window_is_advised_before_its_first_path_is_read(tmp_path, advised):
    paths = []
    for k in range(5):
        path = tmp_path / f"f{k}"
        path.write_bytes(b"x" * 10)
        paths.append(path)
    seen = []
    for path in readahead.read_ahead(iter(paths), 4096, window=2):
        seen.append(path)
        assert str(path) in [name for name, _, _ in advised]  # advised before it is yielded
    assert seen == paths
    assert advised == [(str(p), 0, 4096) for p in paths]


def test_missing_files_and_fifos_neither_fail_nor_block(tmp_path, advised):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    real = tmp_path / "real"
    real.write_bytes(b"x")
    readahead.will_read([tmp_path / "gone", fifo, real])
    assert [name for name, _, _ in advised][-1] == str(real)
    assert str(tmp_path / "gone") not in [name for name, _, _ in advised]


def test_discovery_advises_the_heads_it_reads(tmp_path, advised):
    from qc_pipeline.sources.folder import FINGERPRINT_HEAD_BYTES, FolderSource
    from tests.sources.test_folder import write_instance

    for k in range(3):
        write_instance(tmp_path / "s" / f"{k}.dcm", study="1.2.3.9", series="1.2.3.9.1", sop=f"1.2.3.9.1.{k}")
    (entry,) = list(FolderSource(tmp_path).discover())
    assert len(entry.locations) == 3
    heads = [(Path(name).name, length) for name, _, length in advised]
    assert heads == [(f"{k}.dcm", FINGERPRINT_HEAD_BYTES) for k in range(3)]


def test_a_sampled_series_advises_only_the_files_it_decodes(tmp_path, advised):
    from qc_pipeline.io.pixels import load_series
    from tests.checks.test_image_quality_headers_once import write_chest_ct

    paths = write_chest_ct(tmp_path / "ct", n_slices=12)
    volume = load_series(paths, select=lambda n: [0, n - 1])
    assert volume.slice_indices == (0, 11)
    decoded = {Path(name).name for name, _, length in advised if length == 0}
    assert len(decoded) == 2 and decoded <= {p.name for p in paths}
