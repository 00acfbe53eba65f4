"""Benchmark: a backlog of 10,000 small studies — throughput, and memory that does
not grow with the backlog.

The backlog is a folder of ``--studies`` (10,000) one-image DX chest studies of 32x32 pixels
(1,000 patients, ten studies each, so the cross-study checks read earlier studies), a few KB
each: the checks are the header ones (identity, dates, item matching, completeness, timeliness,
consistency across studies), the image-quality stage has almost nothing to decode. Steps:

- ``write``: the files (pydicom, for reference);
- ``discover``: ``FolderSource.discover`` over the whole folder (peak Python memory: tracemalloc);
- ``judge``: every study through ``pipeline.process_entry`` (needs_judging, lease, load,
  judge, save) into an empty SQLite database, one after the other in this process, with the
  process's RSS sampled every ``--sample-every`` studies: the memory column must stay flat;
- ``rerun``: the same backlog again: every study unchanged, nothing written;
- ``flow``: the Prefect flow (``flows.qc_flow.run``, thread pool, temporary local API) over the
  first ``--flow-studies`` studies (default: the whole backlog), with RSS sampled as it goes: the
  flow submits a window of studies at a time, so its memory must stay flat too.

Prints a table and writes ``benchmarks/results/load-<host>.json``.

    ./.venv/bin/python -m benchmarks.load              # 10,000 studies: about 25 minutes on 2 cores
    ./.venv/bin/python -m benchmarks.load --small      # 500 studies, a quick check of the script
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.ingest import _quiet

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _write_backlog(root: Path, n: int) -> float:
    """``n`` one-image DX studies; returns megabytes written."""
    import numpy as np

    from qc_pipeline.samples.writer import PatientInfo, SeriesInfo, StudyInfo, derive_uid, image_dataset

    rng = np.random.default_rng(10)
    image = rng.integers(200, 3000, size=(32, 32)).astype(np.uint16)
    total = 0
    for k in range(n):
        patient = k % 1000
        day = dt.date(2026, 1, 1) + dt.timedelta(days=k // 1000 * 7 + patient % 5)
        study_uid = derive_uid("qc-bench-load", k)
        ds = image_dataset(
            image,
            patient=PatientInfo(
                name=f"Load^Patient{patient:04d}",
                id=f"L{patient:06d}",
                sex="MF"[patient % 2],
                birth_date=dt.date(1960 + patient % 40, 1 + patient % 12, 1 + patient % 28),
            ),
            study=StudyInfo(
                study_instance_uid=study_uid,
                date=day,
                time=dt.time(9, 30),
                accession_number=f"LA{k:08d}",
                institution_name="重庆市负载测试医院",
                description="胸部正位 Chest PA",
            ),
            series=SeriesInfo(
                series_instance_uid=derive_uid(study_uid, "series"),
                modality="DX",
                number=1,
                description="胸部 后前位 PA",
                body_part="CHEST",
                extra={"ViewPosition": "PA"},
            ),
            instance_number=1,
            sop_instance_uid=derive_uid(study_uid, "sop"),
        )
        path = root / f"{patient:04d}" / f"{k:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        received = dt.datetime.combine(day, dt.time(3, 0), tzinfo=dt.UTC).timestamp()  # 1.5 h after the exam
        os.utime(path, (received, received))
        total += path.stat().st_size
    return total / 1e6


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def _judge_all(root: Path, db_url: str, sample_every: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from qc_pipeline.pipeline import OutcomeStatus, load_pipeline_thresholds, process_entry
    from qc_pipeline.sources import FolderSource
    from qc_pipeline.store import ResultStore

    thresholds = load_pipeline_thresholds()
    source = FolderSource(root)
    store = ResultStore.open(db_url)
    run_id = store.start_run(source_uri=source.uri, pipeline_version="bench", thresholds_version=thresholds.version)
    samples: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    started = time.perf_counter()
    done = 0
    try:
        for entry in source.discover():
            outcome = process_entry(source, entry, store, thresholds, run_id=run_id, now=NOW)
            key = str(outcome.verdict) if outcome.status is OutcomeStatus.JUDGED else str(outcome.status)
            counts[key] = counts.get(key, 0) + 1
            done += 1
            if done % sample_every == 0:
                gc.collect()
                samples.append(
                    {"studies": done, "seconds": round(time.perf_counter() - started, 2), "rss_mb": round(_rss_mb(), 1)}
                )
                print(
                    f"  {done:>6} studies  {samples[-1]['seconds']:>8.1f} s  RSS {samples[-1]['rss_mb']:.1f} MB",
                    flush=True,
                )
    finally:
        store.close()
    return {"seconds": time.perf_counter() - started, "studies": done, "outcomes": counts}, samples


def _flow_subset(
    root: Path, n: int, work: Path, sample_every: int, batch_size: int | None = None, threads: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Prefect flow over the first ``n`` studies (all of them: the folder itself), with the
    process's RSS sampled every ``sample_every`` studies through the flow's progress events;
    ``batch_size``: small studies that many to a Prefect task (None: one task per study);
    ``threads``: studies judged at once (None: the flow's default for a folder)."""
    import shutil

    from flows.qc_flow import progress_to, run

    files = sorted(root.rglob("*.dcm"))
    source = root
    if n < len(files):
        source = work / "flow-subset"
        for path in files[:n]:
            target = source / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    # Each flow run judges the backlog into a database of its own, empty (the process keeps its
    # engines by URL, so a file removed and made again under the same name would not be read).
    db = f"sqlite:///{work / f'flow-{batch_size or 1}-{threads or 0}.sqlite'}"
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()

    def sample(event: str, done: int, total: int) -> None:
        if event == "study" and done % sample_every == 0:
            samples.append(
                {"studies": done, "seconds": round(time.perf_counter() - started, 2), "rss_mb": round(_rss_mb(), 1)}
            )
            print(
                f"  flow {done:>6} studies  {samples[-1]['seconds']:>8.1f} s  RSS {samples[-1]['rss_mb']:.1f} MB",
                flush=True,
            )

    rss_before = _rss_mb()
    with progress_to(sample):
        summary = run(source, db_url=db, now=NOW, batch_size=batch_size, threads=threads)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "studies": int(summary["judged"]),
        "failed": int(summary["failed"]),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(_rss_mb(), 1),
    }, samples


def _growth_per_1000(samples: list[dict[str, Any]]) -> float | None:
    """RSS growth per 1,000 studies from the second sample on (the first includes warm-up)."""
    if len(samples) < 3:
        return None
    first, last = samples[1], samples[-1]
    return round((last["rss_mb"] - first["rss_mb"]) / max(last["studies"] - first["studies"], 1) * 1000, 2)


def _row(step: str, studies: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "step": step,
        "studies": studies,
        "seconds": round(seconds, 2),
        "studies_per_s": round(studies / seconds, 1) if seconds > 0 else None,
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000, help="studies in the backlog (default 10,000)")
    parser.add_argument(
        "--flow-studies",
        type=int,
        default=10_000,
        help="studies through the Prefect flow (default 10,000: the whole backlog; 0: skip)",
    )
    parser.add_argument(
        "--flow-batch-sizes",
        default="1,16",
        help="comma-separated studies per Prefect task, one flow run each (default 1,16: one task per "
        "study, then sixteen small studies to a task as deploy/prefect.yaml sets)",
    )
    parser.add_argument(
        "--flow-threads",
        default="",
        help="comma-separated numbers of studies judged at once, each run at every batch size (default: the "
        "flow's own default for a folder)",
    )
    parser.add_argument(
        "--sample-every", type=int, default=1_000, help="RSS sample interval in studies (default 1,000)"
    )
    parser.add_argument(
        "--small", action="store_true", help="a quick check of the script (500 studies, all through the flow)"
    )
    args = parser.parse_args(argv)
    if args.small:
        args.studies, args.flow_studies, args.sample_every = 500, 500, 100

    _quiet()
    from benchmarks._results import write_results

    load = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qc-bench-load-") as tmp:
        work = Path(tmp)
        backlog = work / "backlog"
        started = time.perf_counter()
        megabytes = _write_backlog(backlog, args.studies)
        rows.append(_row("write", args.studies, time.perf_counter() - started, megabytes=round(megabytes, 1)))
        print(rows[-1], flush=True)

        from qc_pipeline.sources import FolderSource

        tracemalloc.start()
        started = time.perf_counter()
        n_listed = sum(1 for _ in FolderSource(backlog).discover())
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append(_row("discover", n_listed, seconds, peak_python_mb=round(peak / 1e6, 1)))
        print(rows[-1], flush=True)

        db = f"sqlite:///{work / 'results.sqlite'}"
        result, samples = _judge_all(backlog, db, args.sample_every)
        first, last = samples[0], samples[-1]
        growth = (last["rss_mb"] - first["rss_mb"]) / max(last["studies"] - first["studies"], 1) * 1000
        rows.append(
            _row(
                "judge",
                result["studies"],
                result["seconds"],
                outcomes=result["outcomes"],
                rss_first_sample_mb=first["rss_mb"],
                rss_last_sample_mb=last["rss_mb"],
                rss_growth_mb_per_1000=round(growth, 2),
                samples=samples,
            )
        )
        print({k: v for k, v in rows[-1].items() if k != "samples"}, flush=True)
        result, samples = _judge_all(backlog, db, args.sample_every)
        rows.append(
            _row(
                "rerun",
                result["studies"],
                result["seconds"],
                outcomes=result["outcomes"],
                rss_last_sample_mb=samples[-1]["rss_mb"],
            )
        )
        print(rows[-1], flush=True)

        if args.flow_studies:
            from prefect.testing.utilities import prefect_test_harness

            from flows.qc_flow import study_threads

            judge = next(r for r in rows if r["step"] == "judge")
            judged_seconds = judge["seconds"] / max(judge["studies"], 1)
            with prefect_test_harness(server_startup_timeout=180):
                threads_list = [int(t) for t in args.flow_threads.split(",") if t.strip()] or [None]
                for batch, threads in ((int(b), t) for b in args.flow_batch_sizes.split(",") for t in threads_list):
                    result, samples = _flow_subset(
                        backlog,
                        args.flow_studies,
                        work,
                        args.sample_every,
                        batch_size=batch if batch > 1 else None,
                        threads=threads,
                    )
                    per_study = result["seconds"] / max(result["studies"], 1)
                    pool = study_threads(str(backlog), threads)
                    rows.append(
                        _row(
                            f"flow, {batch} a task, {pool} thread{'s' if pool > 1 else ''}",
                            result["studies"],
                            result["seconds"],
                            batch_size=batch,
                            threads=pool,
                            failed=result["failed"],
                            # Prefect's share: the flow's time per study over the bare judge step's
                            overhead_over_judge=round(per_study / judged_seconds - 1, 3),
                            rss_before_mb=result["rss_before_mb"],
                            rss_after_mb=result["rss_after_mb"],
                            rss_growth_mb_per_1000=_growth_per_1000(samples),
                            samples=samples,
                        )
                    )
                    print({k: v for k, v in rows[-1].items() if k != "samples"}, flush=True)

    print()
    print(f"{'step':<16} {'studies':>8} {'seconds':>9} {'studies/s':>10}  memory")
    for r in rows:
        memory = ""
        if "peak_python_mb" in r:
            memory = f"peak Python {r['peak_python_mb']} MB"
        elif "rss_first_sample_mb" in r:
            memory = (
                f"RSS {r['rss_first_sample_mb']} MB after {args.sample_every}, {r['rss_last_sample_mb']} MB "
                f"after {r['studies']} ({r['rss_growth_mb_per_1000']:+} MB per 1000)"
            )
        elif "rss_after_mb" in r:
            memory = f"RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB"
            if r.get("rss_growth_mb_per_1000") is not None:
                memory += f" ({r['rss_growth_mb_per_1000']:+} MB per 1000 after the first {args.sample_every})"
        print(f"{r['step']:<16} {r['studies']:>8} {r['seconds']:>9.2f} {r['studies_per_s'] or 0:>10}  {memory}")
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start; SQLite results database")
    end = os.getloadavg()
    print(f"load average {end[0]:.2f} at end")
    out = write_results(
        "load",
        rows,
        small=args.small,
        load_average_at_start=[round(x, 2) for x in load],
        load_average_at_end=[round(x, 2) for x in end],
    )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
