"""What Prefect costs: an interactive one-study `qc-pipeline run` with and without a running
Prefect server, the orchestration overhead per small study against the study's own work, and
1 vs 2 local Dask workers.

    ./.venv/bin/python -m benchmarks.prefect_overhead            # about 5 minutes on 2 cores
    ./.venv/bin/python -m benchmarks.prefect_overhead --small    # a quick check of the script

Starts its own Prefect server on loopback (temporary PREFECT_HOME); SQLite results databases.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._results import write_results
from deploy.smoke import free_port, sample_folder

REPO = Path(__file__).resolve().parent.parent


def _start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            with urllib.request.urlopen(api + "/health", timeout=2):
                return proc, api
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the Prefect server did not answer on {api}")


CPU: list[float] = []
"""CPU seconds (user + system) of each command `_cli_wall` ran, in order: less sensitive than
wall time to the other work on a shared machine."""


def _cli_wall(args: list[str], env: dict[str, str], repeat: int) -> list[float]:
    walls = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "qc_pipeline.cli", *args], env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if out.returncode not in (0, 1):  # 1: a study needs review or failed QC, not an error of the run
            raise SystemExit(
                f"qc-pipeline {' '.join(args)} exited {out.returncode}:\n{out.stdout[-1500:]}{out.stderr[-1500:]}"
            )
    return walls


def _row(step: str, seconds: list[float], cpu: list[float] | None = None, **extra: Any) -> dict[str, Any]:
    if cpu:
        extra["cpu_median_s"] = round(statistics.median(cpu), 3)
    row = {
        "step": step,
        "median_s": round(statistics.median(seconds), 3),
        "runs": [round(s, 3) for s in seconds],
        **extra,
    }
    cpu_text = f"  CPU {row['cpu_median_s']:.3f} s" if "cpu_median_s" in row else ""
    print(f"{step:<58} median {row['median_s']:>7.3f} s{cpu_text}  {row['runs']}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer repeats and studies")
    parser.add_argument("--cli-only", action="store_true", help="only the interactive one-study commands")
    parser.add_argument("--studies", type=int, default=120, help="small studies for the overhead step")
    args = parser.parse_args(argv)
    repeat = 2 if args.small else 5
    n_small = 20 if args.small else args.studies
    work = Path(tempfile.mkdtemp(prefix="qc-bench-prefect-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base_env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    one = sample_folder(work / "one")
    load_before = os.getloadavg()[0]
    rows = []
    server, api = _start_server(work / "server-home")
    try:
        served = dict(base_env, PREFECT_API_URL=api, PREFECT_HOME=str(work / "client-home"))
        CPU.clear()
        rows.append(_row("python -m qc_pipeline.cli --help (imports)", _cli_wall(["--help"], served, repeat), CPU[:]))
        _cli_wall(["run", str(one), "--db", f"sqlite:///{work / 'warm.sqlite'}"], served, 1)  # page cache, .pyc
        dbs = iter(range(10**6))
        CPU.clear()
        rows.append(
            _row(
                "run, 1 study, running Prefect server",
                [
                    _cli_wall(["run", str(one), "--db", f"sqlite:///{work / f'served-{next(dbs)}.sqlite'}"], served, 1)[
                        0
                    ]
                    for _ in range(repeat)
                ],
                CPU[:],
            )
        )
        ephemeral = dict(base_env, PREFECT_HOME=str(work / "ephemeral-home"))
        _cli_wall(["run", str(one), "--db", f"sqlite:///{work / 'eph-warm.sqlite'}"], ephemeral, 1)  # its migrations
        CPU.clear()
        rows.append(
            _row(
                "run, 1 study, no server (temporary one, warm PREFECT_HOME)",
                [
                    _cli_wall(["run", str(one), "--db", f"sqlite:///{work / f'eph-{next(dbs)}.sqlite'}"], ephemeral, 1)[
                        0
                    ]
                    for _ in range(max(2, repeat - 2))
                ],
                CPU[:],
            )
        )
        if args.cli_only:
            return _finish(rows, load_before, args.small, name="prefect_overhead_cli")

        # in this process, against the running server: bare pipeline vs the flow, per small study
        os.environ.update(
            PREFECT_API_URL=api,
            PREFECT_HOME=str(work / "client-home"),
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        from benchmarks.load import NOW, _judge_all, _write_backlog
        from flows.qc_flow import run

        backlog = work / "backlog"
        _write_backlog(backlog, n_small)
        bare = [_judge_all(backlog, f"sqlite:///{work / f'bare-{k}.sqlite'}", 10**9)[0]["seconds"] for k in range(2)]
        db_bytes = (work / "bare-0.sqlite").stat().st_size
        rows.append(
            _row(
                f"bare process_entry, {n_small} one-image studies",
                bare,
                per_study_ms=round(1000 * min(bare) / n_small, 1),
                results_db_kb_per_study=round(db_bytes / 1024 / n_small, 1),
            )
        )
        configs = (
            ("flow, threads", {}),
            ("flow, threads, batch_size 16", {"batch_size": 16}),
            ("flow, Dask 1 worker", {"workers": 1}),
            ("flow, Dask 2 workers", {"workers": 2}),
            ("flow, Dask 1 worker, batch_size 16", {"workers": 1, "batch_size": 16}),
            ("flow, Dask 2 workers, batch_size 16", {"workers": 2, "batch_size": 16}),
        )
        for label, options in configs:
            walls = []
            for k in range(2):
                started = time.perf_counter()
                summary = run(backlog, db_url=f"sqlite:///{work / f'flow-{label}-{k}.sqlite'}", now=NOW, **options)
                walls.append(time.perf_counter() - started)
                assert summary["judged"] == n_small, summary
            per = 1000 * min(walls) / n_small
            rows.append(
                _row(
                    f"{label}, {n_small} one-image studies",
                    walls,
                    per_study_ms=round(per, 1),
                    overhead_vs_bare=round(min(walls) / min(bare) - 1, 2),
                )
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return _finish(rows, load_before, args.small)


def _finish(rows: list[dict[str, Any]], load_before: float, small: bool, name: str = "prefect_overhead") -> int:
    out = write_results(
        name, rows, small=small, load_average_start=round(load_before, 2), load_average_end=round(os.getloadavg()[0], 2)
    )
    print(f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
