"""Benchmark: ingestion from the imaging cloud (a real Orthanc on loopback) and the QC flow on 1
and 2 local Dask workers.

Two Orthanc servers (DICOMweb plugin, authentication on, loopback, HTTP compression off) are
filled by STOW-RS with:

- ``mixed``: the catalog set (one small study per recognition item, and the defective variants)
  plus the uploadable demo studies (real CR, CT, MR, US samples and phantoms);
- ``ct``: ``--ct-studies`` (6) synthetic chest CTs of ``--ct-slices`` (100) 512x512 slices, so that
  megabytes mean something (a clinical CT is 100-600 such slices).

Then, for each set, on loopback:

- ``stow``: the upload by STOW-RS (the hospitals' side, for reference);
- ``list``: QIDO-RS listing of every study and its instances (a first run's discovery);
- ``retrieve``: WADO-RS of every instance as stored, no transcoding (the transfer ceiling);
- ``flow threads``: the QC flow end to end (list, metadata, checks, pixel data for the
  image-quality metrics, store) on Prefect's thread pool;
- ``flow dask-1`` / ``flow dask-2``: the same flow on a local Dask cluster of 1 or 2 worker
  processes (one thread each), started and warmed before the clock starts.

Every flow run starts from an empty SQLite database, so every study is judged. Prefect runs
against a temporary local API server. Prints a table and writes JSON to
``benchmarks/results/ingest-<host>.json``.

    ./.venv/bin/python -m benchmarks.ingest            # default sizes (a few minutes on 2 cores)
    ./.venv/bin/python -m benchmarks.ingest --small    # a quick check of the script
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NOT_UPLOADABLE = {"not_dicom", "truncated_file"}
"""Demo cases STOW-RS cannot carry (not DICOM; cut short)."""


def _quiet() -> None:
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="qc-bench-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    for name in ("distributed", "qc_pipeline", "flows", "prefect"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _write_mixed(root: Path) -> list[Path]:
    from qc_pipeline.pipeline import load_pipeline_thresholds
    from qc_pipeline.samples import write_demo_studies
    from qc_pipeline.samples.catalog_studies import write_catalog_set

    write_catalog_set(root / "catalog", load_pipeline_thresholds().catalog.items)
    for case in write_demo_studies(root / "demo"):
        if case.name in NOT_UPLOADABLE:
            shutil.rmtree(root / "demo" / case.name)
    return sorted(root.rglob("*.dcm"))


def _write_ct(root: Path, *, studies: int, slices: int) -> list[Path]:
    from qc_pipeline.samples import phantoms
    from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, write_series

    paths: list[Path] = []
    day = dt.date.today() - dt.timedelta(days=1)  # acquired yesterday morning: uploaded in time
    for k in range(studies):
        study_uid = derive_uid("qc-bench-ingest", "ct", k)
        volume = phantoms.ct_water_cylinder(n_slices=slices, size=512, noise_sd_hu=12.0, seed=k)
        paths += write_series(
            volume,
            root / f"ct{k:02d}",
            patient=PatientInfo(name=f"Bench^CT{k}", id=f"BENCH-CT-{k:03d}", sex="M", birth_date=dt.date(1970, 1, 1)),
            study=StudyInfo(
                study_instance_uid=study_uid,
                date=day,
                time=dt.time(9, 30),
                accession_number=f"BCT{k:05d}",
                institution_name="四川省人民医院",
                description="胸部CT平扫",
            ),
            series=SeriesInfo(
                series_instance_uid=derive_uid(study_uid, "series", 2),
                modality="CT",
                number=2,
                description="胸部平扫 1mm",
                body_part="CHEST",
                model="Phantom CT 64",
            ),
            geometry=Geometry(pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0),
        )
    return paths


def _timed(func: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def _list(dicomweb: str) -> list[Any]:
    from qc_pipeline.sources.dicomweb import DicomWebSource

    return list(DicomWebSource(dicomweb, orthanc="off").discover())


def _retrieve(server: Any, entries: list[Any]) -> int:
    """WADO-RS of every instance of every study, as stored; returns the bytes received."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = server.auth
    session.headers["Accept-Encoding"] = "identity"
    client = DICOMwebClient(server.dicomweb, session=session)
    total = 0
    for entry in entries:
        for ds in client.iter_study(entry.study_instance_uid, media_types=(("application/dicom", "*"),)):
            total += len(ds.PixelData) if "PixelData" in ds else 0
    return total


@contextmanager
def _dask(workers: int) -> Iterator[str]:
    """A local cluster of ``workers`` processes, warmed (qc-pipeline imported) before use."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.run(lambda: __import__("flows.qc_flow") and __import__("qc_pipeline.checks.image_quality"))
        yield cluster.scheduler_address


def _flow(dicomweb: str, db_dir: Path, label: str, dask_address: str | None) -> dict[str, Any]:
    from flows.qc_flow import run

    db_url = f"sqlite:///{db_dir / f'{label}.sqlite'}"
    summary, seconds = _timed(lambda: run(dicomweb, db_url=db_url, dask_address=dask_address))
    return {
        "seconds": seconds,
        "judged": summary["judged"],
        "failed": summary["failed"],
        "verdicts": summary["verdicts"],
    }


def _row(set_name: str, step: str, *, studies: int, megabytes: float, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "set": set_name,
        "step": step,
        "studies": studies,
        "megabytes": round(megabytes, 2),
        "seconds": round(seconds, 3),
        "studies_per_min": round(studies / seconds * 60, 1) if seconds > 0 else None,
        "mb_per_s": round(megabytes / seconds, 2) if seconds > 0 else None,
        **extra,
    }


def _bench_set(name: str, files: list[Path], work: Path, rows: list[dict[str, Any]], workers: list[int]) -> None:
    from tests.support.orthanc import OrthancServer

    megabytes = sum(p.stat().st_size for p in files) / 1e6
    server = OrthancServer.on_free_ports(work / f"orthanc-{name}")
    server.start()
    os.environ["QC_DICOMWEB_USER"], os.environ["QC_DICOMWEB_PASSWORD"] = server.auth  # inherited by workers
    try:
        _, seconds = _timed(lambda: server.upload(files))
        server.wait_until_stable(timeout_s=120)
        n = len(server.study_ids())
        stored_mb = server.disk_size_bytes() / 1e6
        rows.append(_row(name, "stow (upload)", studies=n, megabytes=megabytes, seconds=seconds, files=len(files)))
        print(rows[-1], flush=True)
        entries, seconds = _timed(lambda: _list(server.dicomweb))
        rows.append(_row(name, "list (QIDO-RS)", studies=len(entries), megabytes=0.0, seconds=seconds))
        print(rows[-1], flush=True)
        pixel_bytes, seconds = _timed(lambda: _retrieve(server, entries))
        rows.append(
            _row(
                name,
                "retrieve (WADO-RS)",
                studies=n,
                megabytes=stored_mb,
                seconds=seconds,
                pixel_mb=round(pixel_bytes / 1e6, 2),
            )
        )
        print(rows[-1], flush=True)
        db_dir = work / f"db-{name}"
        db_dir.mkdir()
        result = _flow(server.dicomweb, db_dir, "threads", None)
        rows.append(
            _row(
                name,
                "flow threads",
                studies=result["judged"],
                megabytes=stored_mb,
                seconds=result["seconds"],
                failed=result["failed"],
                workers=None,
                verdicts=result["verdicts"],
            )
        )
        print(rows[-1], flush=True)
        for k in workers:
            with _dask(k) as address:
                result = _flow(server.dicomweb, db_dir, f"dask-{k}", address)
            rows.append(
                _row(
                    name,
                    f"flow dask-{k}",
                    studies=result["judged"],
                    megabytes=stored_mb,
                    seconds=result["seconds"],
                    failed=result["failed"],
                    workers=k,
                    worker_s_per_study=round(result["seconds"] * k / max(result["judged"], 1), 3),
                )
            )
            print(rows[-1], flush=True)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-studies", type=int, default=6, help="synthetic chest CT studies (default 6)")
    parser.add_argument("--ct-slices", type=int, default=100, help="512x512 slices per CT (default 100)")
    parser.add_argument("--workers", default="1,2", help="Dask worker counts to compare (default 1,2)")
    parser.add_argument("--small", action="store_true", help="a quick check of the script (2 CTs of 20 slices)")
    args = parser.parse_args(argv)
    if args.small:
        args.ct_studies, args.ct_slices = 2, 20
    workers = [int(w) for w in args.workers.split(",") if w.strip()]

    _quiet()
    from prefect.testing.utilities import prefect_test_harness

    from benchmarks._results import write_results
    from tests.support.orthanc import installed

    if not installed():
        print("Orthanc with its DICOMweb plugin is needed: apt-get install orthanc orthanc-dicomweb", file=sys.stderr)
        return 2
    load = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="qc-bench-ingest-") as tmp,
        prefect_test_harness(server_startup_timeout=180),
    ):
        work = Path(tmp)
        _bench_set("mixed", _write_mixed(work / "mixed"), work, rows, workers)
        _bench_set("ct", _write_ct(work / "ct", studies=args.ct_studies, slices=args.ct_slices), work, rows, workers)

    print()
    print(f"{'set':<6} {'step':<20} {'studies':>7} {'MB':>8} {'seconds':>8} {'studies/min':>12} {'MB/s':>8}")
    for r in rows:
        print(
            f"{r['set']:<6} {r['step']:<20} {r['studies']:>7} {r['megabytes']:>8} {r['seconds']:>8.2f} "
            f"{r['studies_per_min'] or 0:>12} {r['mb_per_s'] or 0:>8}"
        )
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start; Orthanc on loopback; SQLite results database")
    out = write_results(
        "ingest",
        rows,
        small=args.small,
        load_average_at_start=[round(x, 2) for x in load],
        ct_studies=args.ct_studies,
        ct_slices=args.ct_slices,
    )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
