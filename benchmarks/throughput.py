"""Throughput through ``qc-pipeline run``: CT, MR and DR studies, uncompressed and JPEG 2000
lossless, from a folder and from DICOMweb (a real Orthanc on loopback).

For each case, writes two studies, runs the real CLI (a subprocess, a fresh SQLite database each
run) on a source holding 1 and one holding 2 of them, and reports per study:

- ``marginal_s`` / ``marginal_cpu_s``: wall and CPU (user + system of the CLI) of the run of 2
  minus the run of 1 (Python start-up, Prefect and the store's set-up cancel out);
- ``bare_decode_s``: ``pydicom.dcmread(path).pixel_array`` of every file of the study;
- ``study_mb`` and, over DICOMweb, ``fetched_mb`` (the pixel data the run reports fetched for the
  study) and its share of the study;
- ``ratio``: marginal wall / bare decode.

Each source is run once untimed first (page cache, imports). Medians of ``--repeat`` runs.
Needs Orthanc with its DICOMweb plugin (``./bootstrap test`` installs it) for the DICOMweb rows;
``--no-dicomweb`` skips them. ``--small`` is a quick check of the script (smaller images).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEG2000Lossless

from benchmarks._results import write_results
from benchmarks.metrics import _median_time
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series

FETCHED = re.compile(r"pixel data fetched: ([0-9.]+) MB")


def _study(name: str, description: str) -> tuple[PatientInfo, StudyInfo]:
    uid = derive_uid("benchmark-throughput", name, "study")
    return (
        PatientInfo(name=f"Bench^{name}", id=f"THR-{name}", sex="O", birth_date=dt.date(1970, 1, 1), age="056Y"),
        StudyInfo(study_instance_uid=uid, date=dt.date(2026, 11, 1), time=dt.time(9, 0), accession_number=f"T{name}",
                  institution_name="Benchmark", description=description),
    )


def write_ct(out: Path, name: str, *, slices: int, size: int) -> list[Path]:
    patient, study = _study(name, "胸部CT平扫")
    return write_series(
        phantoms.ct_water_cylinder(n_slices=slices, size=size, noise_sd_hu=12.0, seed=1), out, patient=patient,
        study=study, series=SeriesInfo(series_instance_uid=derive_uid(study.study_instance_uid, "ct"), modality="CT",
                                       number=2, description="胸部平扫 5mm", body_part="CHEST"),
        geometry=Geometry(pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=5.0),
    )


def write_mr(out: Path, name: str, *, slices: int, size: int) -> list[Path]:
    patient, study = _study(name, "头颅MR平扫")
    return write_series(
        phantoms.mr_head_phantom(n_slices=slices, size=size, seed=2), out, patient=patient, study=study,
        series=SeriesInfo(series_instance_uid=derive_uid(study.study_instance_uid, "mr"), modality="MR", number=3,
                          description="T2 TSE AX", body_part="HEAD",
                          extra={"RepetitionTime": 4000.0, "EchoTime": 100.0, "MRAcquisitionType": "2D"}),
        geometry=Geometry(pixel_spacing_mm=(0.9, 0.9), slice_thickness_mm=5.0),
    )


def write_dr(out: Path, name: str, *, size: int) -> list[Path]:
    patient, study = _study(name, "胸部正位")
    return write_series(
        phantoms.dr_chest_phantom(rows=size, cols=size, seed=3), out, patient=patient, study=study,
        series=SeriesInfo(series_instance_uid=derive_uid(study.study_instance_uid, "dx"), modality="DX", number=1,
                          description="胸部正位", body_part="CHEST", extra={"ViewPosition": "PA"}),
        geometry=Geometry(pixel_spacing_mm=(0.15, 0.15)),
    )


def to_jpeg2000(paths: list[Path]) -> None:
    """Re-encode each file in place as JPEG 2000 lossless (pylibjpeg-openjpeg), as clouds store."""
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless, np.asarray(ds.pixel_array))
        ds.save_as(path, enforce_file_format=True)


def _run_cli(source: str, db: Path) -> tuple[float, float, float]:
    """(wall, CPU, MB fetched) of one ``qc-pipeline run``."""
    db.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "qc_pipeline.cli", "run", source, "--db", f"sqlite:///{db}"],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fetched = FETCHED.search(done.stdout + done.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), float(fetched[1]) if fetched else 0.0


def _bare_decode(paths: list[Path]) -> None:
    for path in paths:
        pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is what is timed


def _measure(sources: dict[int, str], root: Path, repeat: int,
             prepare: Callable[[int], None] = lambda count: None) -> dict[str, float]:
    walls, cpus, fetched = {}, {}, {}
    for count, source in sources.items():
        prepare(count)
        _run_cli(source, root / "warm.sqlite")
        runs = [_run_cli(source, root / f"db{count}.sqlite") for _ in range(repeat)]
        walls[count] = statistics.median(r[0] for r in runs)
        cpus[count] = statistics.median(r[1] for r in runs)
        fetched[count] = statistics.median(r[2] for r in runs)
    return {"marginal_s": walls[2] - walls[1], "marginal_cpu_s": cpus[2] - cpus[1],
            "fetched_mb": fetched[2] - fetched[1], "run_1_study_s": walls[1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per source; the median is kept")
    parser.add_argument("--small", action="store_true", help="small images, for a quick check of the script")
    parser.add_argument("--no-dicomweb", action="store_true", help="folder rows only (no Orthanc)")
    parser.add_argument("--only", help="run only the cases whose name contains this (e.g. CT)")
    args = parser.parse_args(argv)
    ct_shape = (40, 128) if args.small else (300, 512)
    mr_shape = (12, 64) if args.small else (30, 256)
    dr_side = 256 if args.small else 2048
    writers: dict[str, Callable[[Path, str], list[Path]]] = {
        f"CT {ct_shape[0]}x{ct_shape[1]}²": lambda out, name: write_ct(out, name, slices=ct_shape[0], size=ct_shape[1]),
        f"MR {mr_shape[0]}x{mr_shape[1]}²": lambda out, name: write_mr(out, name, slices=mr_shape[0], size=mr_shape[1]),
        f"DR {dr_side}²": lambda out, name: write_dr(out, name, size=dr_side),
    }
    server = None
    rows = []
    with tempfile.TemporaryDirectory(prefix="qc-throughput-") as tmp:
        if not args.no_dicomweb:
            from qc_pipeline.testing.orthanc import PASSWORD, USER, OrthancServer

            os.environ["QC_DICOMWEB_USER"], os.environ["QC_DICOMWEB_PASSWORD"] = USER, PASSWORD
            server = OrthancServer.on_free_ports(Path(tmp) / "orthanc")
            server.start()
        try:
            for label, write in writers.items():
                for encoding in ("uncompressed", "JPEG 2000 lossless"):
                    case = f"{label} {encoding}"
                    if args.only and args.only not in case:
                        continue
                    root = Path(tmp) / re.sub(r"\W+", "-", case)
                    studies = {name: write(root / "studies" / name, f"{case}-{name}") for name in ("a", "b")}
                    if encoding != "uncompressed":
                        for paths in studies.values():
                            to_jpeg2000(paths)
                    folders = {}
                    for count in (1, 2):
                        folder = root / f"run{count}"
                        for name in list(studies)[:count]:
                            shutil.copytree(root / "studies" / name, folder / name, copy_function=os.link)
                        folders[count] = folder
                    paths = studies["a"]
                    _bare_decode(paths)
                    bare = _median_time(lambda: _bare_decode(paths), args.repeat)
                    study_mb = sum(p.stat().st_size for p in paths) / 1e6
                    kinds = {"folder": {c: str(f) for c, f in folders.items()}}
                    if server is not None:
                        kinds["DICOMweb"] = {}
                    for kind in kinds:
                        prepare: Callable[[int], None] = lambda count: None
                        sources = kinds[kind]
                        if kind == "DICOMweb":
                            assert server is not None
                            cloud = server

                            def prepare(count: int, cloud=cloud, studies=studies) -> None:
                                # The cloud holds the first study, then both.
                                cloud.clear()
                                cloud.upload([p for name in list(studies)[:count] for p in studies[name]])

                            sources = {1: cloud.dicomweb, 2: cloud.dicomweb}
                        figures = _measure(sources, root, args.repeat, prepare)
                        row = {
                            "case": case, "source": kind, "files": len(paths), "study_mb": round(study_mb, 1),
                            "marginal_s": round(figures["marginal_s"], 3),
                            "marginal_cpu_s": round(figures["marginal_cpu_s"], 3),
                            "bare_decode_s": round(bare, 3),
                            "ratio": round(figures["marginal_s"] / bare, 2) if bare > 0 else None,
                            "fetched_mb": round(figures["fetched_mb"], 1) if kind == "DICOMweb" else None,
                            "fetched_share": round(figures["fetched_mb"] / study_mb, 3) if kind == "DICOMweb" else None,
                            "run_1_study_s": round(figures["run_1_study_s"], 2),
                        }
                        rows.append(row)
                        print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        finally:
            if server is not None:
                server.stop()
    print(f"medians of {args.repeat} runs; marginal = run of 2 studies - run of 1 study")
    out = write_results("throughput", rows, small=args.small, repeat=args.repeat)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
