"""Marginal cost of one CT study through ``qc-pipeline run``, against bare pydicom decoding of its files.

Writes ``--studies`` synthetic chest CTs (``--slices`` x ``--size``², uncompressed, the water
cylinder phantom) to a temporary folder, then times the real CLI end to end (a subprocess with
this interpreter and environment, a fresh SQLite database each run) on a folder of 1 study and on
one of 2 studies (the same files, hard-linked). Each folder is run once untimed first, so the page
cache is warm; the median of ``--repeat`` runs is kept. The marginal cost of a study is
median(2 studies) - median(1 study): Python start-up, Prefect and the store's set-up cancel out.
The CLI's CPU time (user + system) is measured too: on shared cores it moves less than wall time.
Bare decode: ``pydicom.dcmread(path).pixel_array`` of every file of one study (median of runs).

To compare two versions of the pipeline, run the script with each on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom

from benchmarks._results import write_results
from benchmarks.metrics import _median_time
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series


def write_chest_ct(out: Path, name: str, *, slices: int, size: int) -> list[Path]:
    """One plain chest CT study (one series) that maps to a recognition item, so every check runs."""
    volume = phantoms.ct_water_cylinder(n_slices=slices, size=size, noise_sd_hu=12.0, seed=1)
    study_uid = derive_uid("benchmark-marginal", name, "study")
    return write_series(
        volume,
        out,
        patient=PatientInfo(
            name=f"Bench^{name}", id=f"BENCH-{name}", sex="O", birth_date=dt.date(1970, 1, 1), age="056Y"
        ),
        study=StudyInfo(
            study_instance_uid=study_uid,
            date=dt.date(2026, 11, 1),
            time=dt.time(9, 0),
            accession_number=f"B{name}",
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
            model="Phantom CT 64",
            station_name="CT01",
        ),
        geometry=Geometry(pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0),
    )


def _run_cli(folder: Path, db: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``qc-pipeline run``; CPU (user + system of the child) moves less
    than wall time when other work shares the cores."""
    db.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "qc_pipeline.cli", "run", str(folder), "--db", f"sqlite:///{db}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _bare_decode(paths: list[Path]) -> None:
    for path in paths:
        pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is what is timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per folder; the median is kept")
    parser.add_argument("--small", action="store_true", help="30 slices of 128², for a quick check of the script")
    args = parser.parse_args(argv)
    slices, size = (30, 128) if args.small else (args.slices, args.size)

    with tempfile.TemporaryDirectory(prefix="qc-marginal-") as tmp:
        root = Path(tmp)
        studies = {name: write_chest_ct(root / "studies" / name, name, slices=slices, size=size) for name in ("a", "b")}
        folders = {}
        for count in (1, 2):
            folder = root / f"run{count}"
            for name in list(studies)[:count]:
                shutil.copytree(root / "studies" / name, folder / name, copy_function=os.link)
            folders[count] = folder
        walls, cpus = {}, {}
        for count, folder in folders.items():
            _run_cli(folder, root / "warm.sqlite")  # page cache, imports, Prefect's first start
            runs = [_run_cli(folder, root / f"db{count}.sqlite") for _ in range(args.repeat)]
            walls[count] = statistics.median(w for w, _ in runs)
            cpus[count] = statistics.median(c for _, c in runs)
        paths = studies["a"]
        _bare_decode(paths)
        bare = _median_time(lambda: _bare_decode(paths), args.repeat)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
    marginal = walls[2] - walls[1]
    row = {
        "case": f"CT {slices}x{size}² uncompressed",
        "files": len(paths),
        "megabytes": round(megabytes, 1),
        "run_1_study_s": round(walls[1], 3),
        "run_2_studies_s": round(walls[2], 3),
        "marginal_s": round(marginal, 3),
        "run_1_study_cpu_s": round(cpus[1], 3),
        "run_2_studies_cpu_s": round(cpus[2], 3),
        "marginal_cpu_s": round(cpus[2] - cpus[1], 3),
        "bare_decode_s": round(bare, 3),
        "ratio_marginal_to_decode": round(marginal / bare, 2),
    }
    print(" | ".join(f"{k}={v}" for k, v in row.items()))
    print(
        f"medians of {args.repeat} runs; marginal = run of 2 studies - run of 1 study (wall, and CPU of the CLI process)"
    )
    out = write_results("marginal", [row], small=args.small, repeat=args.repeat)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
