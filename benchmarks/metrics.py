"""Benchmark: image-quality metrics against bare decoding of the same files.

Writes three seeded phantom series as DICOM files (a 300-slice 512x512 CT, a 2000x2500 DR
radiograph, a 20-slice 256x256 MR), then, in one run and for each:

- ``decode``: bare decoding, ``pydicom.dcmread(path).pixel_array`` for every file;
- ``load``: :func:`qc_pipeline.io.pixels.load_series` / ``load_image`` (headers, sort, rescale, float32);
- ``metrics``: the module's ``measure()`` on the loaded array (every metric of the modality);

repeated ``--repeat`` times, medians reported. Target: metrics <= 0.5 x decode.
Prints a table and writes JSON to ``benchmarks/results/metrics-<host>.json``.

    .venv/bin/python -m benchmarks.metrics            # full sizes (about 4 minutes)
    .venv/bin/python -m benchmarks.metrics --small    # a quick smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from benchmarks._results import write_results
from qc_pipeline.io.pixels import load_image, load_series, stored_value_range
from qc_pipeline.metrics import ct, dr, mr
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series

TARGET_RATIO = 0.5


def _median_time(
    func: Callable[[], object],
    repeat: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    before: Callable[[], object] | None = None,
) -> float:
    """Median of ``repeat`` timings of ``func`` by ``clock`` (wall by default; ``time.process_time``: CPU);
    ``before`` runs ahead of each, untimed."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = clock()
        func()
        times.append(clock() - start)
    return statistics.median(times)


def _write(volume: np.ndarray, out: Path, *, modality: str, spacing: tuple[float, float], name: str) -> list[Path]:
    study_uid = derive_uid("benchmark", name, "study")
    patient = PatientInfo(name="Bench^Mark", id="BENCH0001", sex="O", birth_date=dt.date(1970, 1, 1), age="056Y")
    study = StudyInfo(
        study_instance_uid=study_uid,
        date=dt.date(2026, 11, 1),
        time=dt.time(9, 0),
        accession_number="BENCH",
        institution_name="Benchmark",
        description=name,
    )
    series = SeriesInfo(
        series_instance_uid=derive_uid(study_uid, "series"),
        modality=modality,
        number=1,
        description=name,
        extra={"InPlanePhaseEncodingDirection": "ROW"} if modality == "MR" else {},
    )
    return write_series(
        volume, out, patient=patient, study=study, series=series, geometry=Geometry(pixel_spacing_mm=spacing)
    )


def _cases(root: Path, small: bool) -> list[tuple[str, list[Path], str]]:
    ct_slices, ct_size = (30, 256) if small else (300, 512)
    dr_rows, dr_cols = (500, 400) if small else (2500, 2000)
    mr_slices, mr_size = (10, 128) if small else (20, 256)
    cases = []
    volume = phantoms.ct_water_cylinder(n_slices=ct_slices, size=ct_size, noise_sd_hu=12.0, seed=1)
    cases.append(
        (f"CT {ct_slices}x{ct_size}²", _write(volume, root / "ct", modality="CT", spacing=(0.7, 0.7), name="ct"), "ct")
    )
    del volume
    image = phantoms.dr_chest_phantom(rows=dr_rows, cols=dr_cols, seed=2)
    cases.append(
        (f"DR {dr_rows}x{dr_cols}", _write(image, root / "dr", modality="DX", spacing=(0.15, 0.15), name="dr"), "dr")
    )
    volume = phantoms.mr_head_phantom(n_slices=mr_slices, size=mr_size, noise_sigma=8.0, seed=3)
    cases.append(
        (f"MR {mr_slices}x{mr_size}²", _write(volume, root / "mr", modality="MR", spacing=(0.9, 0.9), name="mr"), "mr")
    )
    return cases


SYNTAXES: dict[str, str | None] = {
    "native": None,
    "RLE": "1.2.840.10008.1.2.5",  # RLE Lossless
    "J2K": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless: what many PACS store
}


def _compressed(paths: list[Path], out: Path, syntax: str) -> list[Path]:
    """Lossless copies of ``paths`` in transfer syntax ``syntax`` (pydicom's encoders)."""
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        target = out / path.name
        ds.save_as(target, enforce_file_format=True)
        copies.append(target)
    return copies


def _run_metrics(kind: str, paths: list[Path]) -> tuple[Callable[[], object], Callable[[], object]]:
    """(load, metrics-on-the-loaded-array) callables for one case."""
    if kind == "dr":
        image = load_image(paths[0])
        return (
            lambda: load_image(paths[0]),
            lambda: dr.measure(
                image.array,
                spacing_mm=image.spacing_mm,
                stored_range=stored_value_range(image),
                exposure_index=None,
                target_exposure_index=None,
                deviation_index=None,
            ),
        )
    volume = load_series(paths)
    if kind == "ct":
        return (
            lambda: load_series(paths),
            lambda: ct.measure(volume.array, spacing_mm=volume.spacing_mm, body_part="ABDOMEN"),
        )
    return (
        lambda: load_series(paths),
        lambda: mr.measure(volume.array, spacing_mm=volume.spacing_mm, phase_encode_direction="ROW"),
    )


def _time_case(label: str, paths: list[Path], kind: str, repeat: int) -> dict[str, object]:
    decode = _median_time(lambda: [pydicom.dcmread(p).pixel_array for p in paths], repeat)
    load, metrics = _run_metrics(kind, paths)
    load_s = _median_time(load, repeat)
    metrics_s = _median_time(metrics, repeat)
    return {
        "case": label,
        "files": len(paths),
        "megabytes": round(sum(p.stat().st_size for p in paths) / 1e6, 1),
        "decode_s": decode,
        "load_s": load_s,
        "metrics_s": metrics_s,
        "ratio_metrics_to_decode": metrics_s / decode,
        "meets_target": metrics_s <= TARGET_RATIO * decode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is kept")
    parser.add_argument("--small", action="store_true", help="small sizes, for a quick check of the script")
    parser.add_argument(
        "--syntax", action="append", choices=sorted(SYNTAXES), help="transfer syntaxes to time (default: all)"
    )
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="qc-bench-") as tmp:
        for label, native_paths, kind in _cases(Path(tmp), args.small):
            for syntax_name in args.syntax or list(SYNTAXES):
                syntax = SYNTAXES[syntax_name]
                paths = (
                    native_paths
                    if syntax is None
                    else _compressed(native_paths, Path(tmp) / f"{kind}-{syntax_name}", syntax)
                )
                rows.append(_time_case(f"{label} {syntax_name}", paths, kind, args.repeat))
    print(f"{'case':<20} {'files':>5} {'MB':>7} {'decode s':>9} {'load s':>8} {'metrics s':>10} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['case']:<20} {r['files']:>5} {r['megabytes']:>7} {r['decode_s']:>9.3f} {r['load_s']:>8.3f} "
            f"{r['metrics_s']:>10.3f} {r['ratio_metrics_to_decode']:>6.2f}{'' if r['meets_target'] else '  > target'}"
        )
    print(f"target: metrics <= {TARGET_RATIO} x decode; medians of {args.repeat} runs")
    out = write_results("metrics", rows, small=args.small, repeat=args.repeat)
    print(f"written: {out}")
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
