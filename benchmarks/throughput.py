"""Throughput end to end: the real CLI (``qc-pipeline run``) on CT, MR and DR studies, uncompressed
and JPEG 2000 Lossless, from a folder and over DICOMweb (a real Orthanc on loopback).

For each case 1 + ``--extra`` distinct studies are made from one written study (each copy has new
study, series and instance UIDs and another patient; its pixel data is the same bytes, so no
second encoding), and the CLI is run on the first alone and on all of them, the two runs in turn
(a fresh SQLite database per run, each input run once untimed first: page cache, imports,
Prefect's first start), every run reporting to one
Prefect server started for the benchmark (``--temporary-server``: each run starts Prefect's
temporary server, whose 8 s vary by more than a study costs). Per case it prints:

- ``wall``: the marginal wall time of one study, (run(1 + N studies) - run(1 study)) / N, N =
  ``--extra`` (medians of ``--repeat``): start-up, Prefect and the store's set-up cancel out, and
  a larger N divides the runs' noise;
- ``cpu``: the same difference of the CLI process's CPU time (user + system): on shared cores it
  moves less than wall time;
- ``bare``: bare full decode, ``pydicom.dcmread(path).pixel_array`` of every file of one study;
- ``read``: folder, the marginal bytes the CLI process read through read() (``rchar`` of
  /proc/self/io at exit: headers, pixel data, and whatever else it read); DICOMweb, the marginal
  pixel data fetched as the run's summary reports it (``pixel data fetched``), and the marginal
  bytes received on the loopback interface during the run (HTTP, metadata and pixel data; an upper
  bound: other processes' loopback traffic counts too);
- the ratios wall / bare and read / the study's bytes.

With ``--in-process``, also the CPU time of ``source.load`` + ``judge`` of one study in this
process, with the sampled decoding and with every slice decoded, against the bare decode's CPU.

With ``--cold``, every timed run (bare decode, CLI, in process) starts with the study's files out
of the page cache (``posix_fadvise(DONTNEED)`` on each file, and on Orthanc's storage for a
DICOMweb run), as a QC centre reads an upload for the first time; without it the files are
read from memory (each input is run once untimed first), which makes the bare decode of an
uncompressed study little more than a memory copy. In process, ``--cold`` times wall clock
(waiting for the disk is not CPU time).

Targets: a 300-slice uncompressed CT costs <= 2x its bare decode, a JPEG 2000 one <= 0.3x; over
DICOMweb a study fetches <= 20 % of its bytes.

    .venv/bin/python -m benchmarks.throughput                  # 300 x 512² CT (about 15 minutes on 2 cores)
    .venv/bin/python -m benchmarks.throughput --slices 100     # fewer CT slices
    .venv/bin/python -m benchmarks.throughput --small          # a quick check of the script
    .venv/bin/python -m benchmarks.throughput --no-dicomweb --only CT --syntaxes native --cold --repeat 5 --extra 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import JPEG2000Lossless, generate_uid

from benchmarks._results import write_results
from benchmarks.marginal import write_chest_ct
from benchmarks.metrics import _median_time

FETCHED = re.compile(r"pixel data fetched: (\d+) bytes")
# The child runs the CLI and, at exit, writes its own read() byte count (rchar) where it is told.
_CHILD = (
    "import atexit, json, os, runpy, sys\n"
    "def _io():\n"
    "    with open('/proc/self/io') as f, open(os.environ['QC_BENCH_IO'], 'w') as out:\n"
    "        json.dump(dict(line.split(': ') for line in f.read().split(chr(10)) if line), out)\n"
    "atexit.register(_io)\n"
    "sys.argv = ['qc-pipeline', *sys.argv[1:]]\n"
    "runpy.run_module('qc_pipeline.cli', run_name='__main__')\n"
)


def _quiet_env(work: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("PREFECT_HOME", str(work / "prefect"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return env


def _loopback_rx() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[0])
    return 0


def _run_cli(source: str, db: Path, env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds (user + system of the CLI process), bytes read (rchar), pixel bytes fetched (summary) and loopback bytes of one run."""
    db.unlink(missing_ok=True)
    io_file = db.with_suffix(".io.json")
    rx = _loopback_rx()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "run", source, "--db", f"sqlite:///{db}"],
        check=True,
        capture_output=True,
        text=True,
        env={**env, "QC_BENCH_IO": str(io_file)},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fetched = FETCHED.search(done.stdout)
    return {
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "rchar": float(json.loads(io_file.read_text())["rchar"]),
        "fetched": float(fetched.group(1)) if fetched else 0.0,
        "loopback": float(_loopback_rx() - rx),
    }


def _copy_study(paths: Iterable[Path], out: Path, tag: str) -> list[Path]:
    """The same study as another one: new UIDs and patient, the pixel data bytes unchanged."""
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if key in ds:
                setattr(ds, key, generate_uid(entropy_srcs=[str(ds.get(key)), tag]))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"{ds.get('PatientID', '')}-{tag}"[:64]
        ds.AccessionNumber = f"{ds.get('AccessionNumber', '')}{tag}"[:16]
        target = out / f"{k:05d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        copies.append(target)
    return copies


def _j2k(paths: Iterable[Path], out: Path) -> list[Path]:
    """JPEG 2000 Lossless copies (pydicom's encoder), as many archives store."""
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless)
        target = out / f"{k:05d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        copies.append(target)
    return copies


def _studies(root: Path, *, slices: int, size: int) -> dict[str, list[Path]]:
    """Native studies by case name: a plain chest CT (separate files, and as one multi-frame object),
    the demo's brain MR and chest DR (each maps to a recognition item, so every check, metric and
    AI score runs)."""
    from qc_pipeline.samples import write_demo_studies
    from tests.support.multiframe import one_object

    demo = root / "demo"
    write_demo_studies(demo)
    ct = write_chest_ct(root / "ct", "a", slices=slices, size=size)
    return {
        f"CT {slices}x{size}²": ct,
        # the same CT as one enhanced multi-frame object (per-frame positions): over DICOMweb only
        # its sampled frames are retrieved
        f"CT {slices}x{size}² multi-frame": [
            one_object(ct, root / "ct-multiframe" / "multi.dcm", per_frame_positions=True)
        ],
        "MR brain (demo)": sorted((demo / "phantom_mr_brain").rglob("*.dcm")),
        "DR chest (demo)": sorted((demo / "phantom_dr_chest").rglob("*.dcm")),
    }


def _slug(name: str) -> str:
    """A case name as a folder name."""
    return re.sub(r"\W+", "-", name).strip("-")


def _bare_decode(paths: list[Path]) -> None:
    for path in paths:
        pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is what is timed


def _evict(paths: Iterable[Path]) -> None:
    """Drop the files' pages from the page cache (clean pages only; no privilege needed), so the
    next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _files_below(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _measure_case(
    name: str,
    syntax: str,
    first: list[Path],
    others: list[list[Path]],
    work: Path,
    env: dict[str, str],
    repeat: int,
    orthanc: Any | None,
    *,
    cold: bool = False,
) -> list[dict[str, Any]]:
    study_bytes = sum(p.stat().st_size for p in first)
    bare = _median_time(lambda: _bare_decode(first), max(1, repeat), before=(lambda: _evict(first)) if cold else None)
    rows = []
    n_big = 1 + len(others)
    # Folder: run on the first study alone and on a folder holding it and the others.
    one, big = work / "one", work / "big"
    for link_root, files in ((one, [first]), (big, [first, *others])):
        for k, group in enumerate(files):
            (link_root / str(k)).mkdir(parents=True, exist_ok=True)
            for j, p in enumerate(group):
                os.link(p, link_root / str(k) / f"{j:05d}.dcm")
    folders = {1: str(one), n_big: str(big)}
    every = [first, *others]
    sources: list[tuple[str, dict[int, str], Any]] = [("folder", folders, None)]
    if orthanc is not None:
        sources.append(("dicomweb", {1: orthanc.dicomweb, n_big: orthanc.dicomweb}, orthanc))
    for via, inputs, server in sources:
        runs: dict[int, list[dict[str, float]]] = {1: [], n_big: []}
        if server is None:
            # the runs of 1 and of n_big studies alternate, so that a change of the machine's
            # load during the benchmark weighs on both alike
            stored = [p for group in every for p in group]
            for count in (1, n_big):
                _run_cli(inputs[count], work / "warm.sqlite", env)
            for _ in range(repeat):
                for count in (1, n_big):
                    if cold:
                        _evict(stored)
                    runs[count].append(_run_cli(inputs[count], work / f"db{count}.sqlite", env))
        else:
            for count in (1, n_big):
                server.clear()
                server.upload(first if count == 1 else [p for group in every for p in group])
                server.wait_until_stable(timeout_s=300)
                _run_cli(inputs[count], work / "warm.sqlite", env)
                stored = _files_below(server.directory / "storage")
                for _ in range(repeat):
                    if cold:
                        _evict(stored)
                    runs[count].append(_run_cli(inputs[count], work / f"db{count}.sqlite", env))

        def per_study(key: str, runs: dict[int, list[dict[str, float]]] = runs) -> float:
            return (_median(runs[n_big], key) - _median(runs[1], key)) / (n_big - 1)

        wall = per_study("wall")
        cpu = per_study("cpu")
        row: dict[str, Any] = {
            "case": name,
            "syntax": syntax,
            "via": via,
            "page_cache": "cold" if cold else "warm",
            "files": len(first),
            "study_mb": round(study_bytes / 1e6, 2),
            "run_1_s": round(_median(runs[1], "wall"), 2),
            "big_run_studies": n_big,
            "big_run_s": round(_median(runs[n_big], "wall"), 2),
            "marginal_s": round(wall, 3),
            "bare_decode_s": round(bare, 3),
            "marginal_over_bare": round(wall / bare, 2) if bare > 0 else None,
            "marginal_cpu_s": round(cpu, 3),
            "cpu_over_bare": round(cpu / bare, 2) if bare > 0 else None,
        }
        if via == "folder":
            read = per_study("rchar")
            row |= {"read_mb": round(read / 1e6, 2), "read_over_study": round(read / study_bytes, 3)}
        else:
            fetched = per_study("fetched")
            lo = per_study("loopback")
            row |= {
                "fetched_mb": round(fetched / 1e6, 2),
                "fetched_over_study": round(fetched / study_bytes, 3),
                "loopback_mb": round(lo / 1e6, 2),
                "loopback_over_study": round(lo / study_bytes, 3),
            }
        print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
    for link_root in (one, big):
        for p in sorted(link_root.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
    return rows


def _in_process(name: str, syntax: str, paths: list[Path], repeat: int, *, cold: bool = False) -> dict[str, Any]:
    """CPU seconds (this process, all threads) of ``source.load`` + ``judge`` of one study, with
    the sampled decoding and with every slice decoded (the CT sample widened to the whole
    series), against the bare decode: no CLI, no Prefect, no contention between two studies.
    ``cold``: wall seconds, each run with the files out of the page cache; ``discover`` is timed
    too (it reads the start of every file, the first read of a cold study)."""
    import dataclasses

    from qc_pipeline.checks import image_quality
    from qc_pipeline.pipeline import judge, load_pipeline_thresholds
    from qc_pipeline.sources.folder import FolderSource

    thresholds = load_pipeline_thresholds()
    source = FolderSource(paths[0].parent)
    (entry,) = list(source.discover())
    real = image_quality._ct_sample

    def widened(target: Any, ai_slices: Any, **how: Any) -> Any:
        sample = real(target, ai_slices, **how)
        every = tuple(range(sample.n_slices))
        return dataclasses.replace(
            sample,
            chosen=every,
            instances=tuple(range(len(target.instances))),
            select=every,
            n_fetched=sample.n_slices,
            frames={},
        )

    def cpu(func: Any) -> float:
        return _median_time(func, repeat, clock=time.process_time)

    def once() -> None:
        judge(
            source.load(entry), thresholds, now=dt.datetime.now(dt.UTC), source_uri=source.uri, others=[], pixels=source
        )

    once()  # models loaded, page cache warm
    sampled = cpu(once)
    image_quality._ct_sample = widened
    try:
        full = cpu(once)
    finally:
        image_quality._ct_sample = real
    bare = cpu(lambda: _bare_decode(paths))
    row = {
        "case": name,
        "syntax": syntax,
        "via": "in process",
        "files": len(paths),
        "sampled_cpu_s": round(sampled, 3),
        "every_slice_cpu_s": round(full, 3),
        "bare_decode_cpu_s": round(bare, 3),
        "sampled_over_bare": round(sampled / bare, 2) if bare > 0 else None,
    }
    if cold:

        def first_read() -> None:
            list(source.discover())  # a first read lists the study too: it reads the start of each file
            once()

        cold_run = _median_time(first_read, repeat, before=lambda: _evict(paths))
        cold_bare = _median_time(lambda: _bare_decode(paths), repeat, before=lambda: _evict(paths))
        row |= {
            "cold_discover_load_judge_wall_s": round(cold_run, 3),
            "cold_bare_decode_wall_s": round(cold_bare, 3),
            "cold_over_bare": round(cold_run / cold_bare, 2) if cold_bare > 0 else None,
        }
    print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="CT slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="CT rows and columns (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per input; the median is kept")
    parser.add_argument("--small", action="store_true", help="30 CT slices of 128², one run each: a quick check")
    parser.add_argument("--no-dicomweb", action="store_true", help="folder only (no Orthanc)")
    parser.add_argument(
        "--only",
        help="run only the cases whose name matches this regular expression (e.g. CT, or CT.*²$ for the CT in files)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="also time source.load + judge in this process (CPU), sampled vs every slice decoded",
    )
    parser.add_argument("--syntaxes", default="native,J2K", help="comma-separated: native, J2K")
    parser.add_argument(
        "--extra",
        type=int,
        default=1,
        help="studies besides the first in the big run (default 1); the marginal study is the difference "
        "of the runs divided by this: more studies, less noise in it",
    )
    parser.add_argument(
        "--cold", action="store_true", help="each timed run starts with the study's files out of the page cache"
    )
    parser.add_argument(
        "--temporary-server",
        action="store_true",
        help="let each CLI run start Prefect's temporary server (about 8 s a run, whose noise swamps the "
        "marginal study) instead of reporting to one Prefect server started for the benchmark, as a QC "
        "centre's runs report to theirs",
    )
    args = parser.parse_args(argv)
    if args.extra < 1:
        parser.error("--extra must be at least 1")
    slices, size, repeat = (30, 128, 1) if args.small else (args.slices, args.size, args.repeat)

    from tests.support.orthanc import OrthancServer, installed

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qc-throughput-") as tmp:
        work = Path(tmp)
        env = _quiet_env(work)
        server = None
        orthanc = None
        if not args.no_dicomweb:
            if not installed():
                print(
                    "Orthanc with its DICOMweb plugin is needed (apt-get install orthanc orthanc-dicomweb); "
                    "or --no-dicomweb",
                    file=sys.stderr,
                )
                return 2
            orthanc = OrthancServer.on_free_ports(work / "orthanc")
            orthanc.start()
            env["QC_DICOMWEB_USER"], env["QC_DICOMWEB_PASSWORD"] = orthanc.auth
        try:
            if not args.temporary_server:
                from benchmarks.prefect_overhead import _start_server

                server, env["PREFECT_API_URL"] = _start_server(work / "prefect-server")
            studies = _studies(work / "native", slices=slices, size=size)
            for name, paths in studies.items():
                if args.only and not re.search(args.only, name):
                    continue
                for syntax in args.syntaxes.split(","):
                    first = paths if syntax == "native" else _j2k(paths, work / syntax / _slug(name))
                    if args.in_process:
                        rows.append(_in_process(name, syntax, first, repeat, cold=args.cold))
                    others = [
                        _copy_study(first, work / f"{syntax}-copy{k}" / _slug(name) / "s", f"copy{k}")
                        for k in range(1, args.extra + 1)
                    ]
                    rows += _measure_case(name, syntax, first, others, work, env, repeat, orthanc, cold=args.cold)
        finally:
            if orthanc is not None:
                orthanc.stop()
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
    load = os.getloadavg()
    print(
        f"medians of {repeat} runs; marginal = (run of {1 + args.extra} studies - run of 1 study) / {args.extra}; "
        f"load average {load[0]:.2f} at end; "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    out = write_results(
        "throughput-cold" if args.cold else "throughput",
        rows,
        small=args.small,
        repeat=repeat,
        slices=slices,
        size=size,
        page_cache="cold" if args.cold else "warm",
        extra_studies=args.extra,
        prefect_server="temporary, one a run" if args.temporary_server else "one running server",
    )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
