"""Production deployment files (deploy/): prefect.yaml, the failed-run automation, the systemd
units, and the loopback smoke test that runs them all (server, worker, deployments, one run)."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from flows import deployments
from flows.automations import FAILED_EVENTS, FLOW_TAG, failed_run_automation
from flows.report_flow import closed_half_year
from qc_pipeline.report.period import Period

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _prefect_yaml() -> dict:
    return yaml.safe_load((DEPLOY / "prefect.yaml").read_text(encoding="utf-8"))


def test_prefect_yaml_deploys_the_four_flows_on_the_process_pool_in_site_time():
    spec = _prefect_yaml()
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == {"qc-ingest", "qc-rescore", "qc-spot-check-draw", "qc-biannual-report"}
    for name, dep in by_name.items():
        module, _, attr = dep["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
        assert hasattr(flow, "to_deployment"), f"{name}: {dep['entrypoint']} is not a Prefect flow"
        assert dep["work_pool"]["name"] == "qc-process", name
        assert FLOW_TAG in dep["tags"], f"{name} lacks the tag the failed-run notification matches"
        (schedule,) = dep["schedules"]
        assert schedule["timezone"] == "Asia/Shanghai", name
        assert dep["concurrency_limit"]["limit"] == 1, name


def test_prefect_yaml_schedules_are_the_ones_serve_uses():
    by_name = {d["name"]: d["schedules"][0]["cron"] for d in _prefect_yaml()["deployments"]}
    assert by_name["qc-ingest"] == deployments.DEFAULT_INGEST_CRON
    assert by_name["qc-rescore"] == deployments.DEFAULT_RESCORE_CRON
    assert by_name["qc-spot-check-draw"] == deployments.DEFAULT_SPOT_CHECK_CRON


def test_a_due_ingest_waits_for_the_running_one_rather_than_overlapping_or_being_dropped():
    ingest = next(d for d in _prefect_yaml()["deployments"] if d["name"] == "qc-ingest")
    assert ingest["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert ingest["parameters"]["source"] == "{{ $QC_SOURCE }}"
    assert "db_url" not in ingest["parameters"], "the password would be stored in the deployment"


def test_failed_run_automation_matches_failed_crashed_and_timed_out_runs_of_tagged_flows():
    automation = failed_run_automation(UUID("6f0c7f43-3e33-4b5c-9b8e-0c1a4e1f2a10"))
    trigger = automation.trigger
    assert set(trigger.expect) == set(FAILED_EVENTS) >= {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert trigger.match_related.model_dump() == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": "prefect.tag.qc-pipeline",
    }
    assert trigger.threshold == 1
    assert trigger.within == dt.timedelta(0)  # each failed run notifies at once, not after a window
    (action,) = automation.actions
    assert str(action.block_document_id) == "6f0c7f43-3e33-4b5c-9b8e-0c1a4e1f2a10"
    assert "运行失败" in action.body and "run failed" in action.body and "flow_run.state.message" in action.body


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2027, 1, 15), Period(2026, 2)),
        (dt.date(2026, 7, 15), Period(2026, 1)),
        (dt.date(2026, 12, 31), Period(2026, 1)),
    ],
)
def test_biannual_report_reports_the_half_year_before_the_current_one(today, expected):
    assert closed_half_year(today) == expected


UNITS = ["qc-prefect-server.service", "qc-prefect-worker.service", "qc-review.service", "qc-recognition.service"]


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_run_as_the_qc_user_and_restart_on_failure(unit):
    text = (DEPLOY / "systemd" / unit).read_text(encoding="utf-8")
    assert "User=qc" in text and "Restart=on-failure" in text and "EnvironmentFile=/etc/qc-pipeline/" in text
    assert "WantedBy=multi-user.target" in text


def test_server_environment_sets_the_ui_api_url_for_remote_browsers():
    env = (DEPLOY / "systemd" / "prefect-server.env.example").read_text(encoding="utf-8")
    assert "PREFECT_UI_API_URL=http://" in env and "PREFECT_SERVER_API_HOST=0.0.0.0" in env
    worker = (DEPLOY / "systemd" / "qc-prefect-worker.service").read_text(encoding="utf-8")
    assert "--pool qc-process" in worker


@pytest.mark.smoke
def test_loopback_smoke_server_worker_deployments_run_logs_artifact_and_notification(tmp_path):
    """deploy/smoke.py end to end (about 1.5 min): its checks are the assertions."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, str(DEPLOY / "smoke.py"), "--keep", str(tmp_path / "smoke")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "FAILED" not in out.stdout
    assert "ingest run: COMPLETED" in out.stdout and "artifacts ['qc-run-summary']" in out.stdout
    assert "notification received" in out.stdout


@pytest.mark.prefect
def test_biannual_report_flow_writes_the_half_year_of_the_judged_studies(prefect_harness, mixed_folder, tmp_path):
    from flows.qc_flow import qc_run
    from flows.report_flow import qc_biannual_report

    db = f"sqlite:///{tmp_path / 'results.sqlite'}"
    qc_run(str(mixed_folder), db_url=db)  # studies of 2026-10-12
    summary = qc_biannual_report(
        str(tmp_path / "reports"), db_url=db, pdf=False, now=dt.datetime(2027, 1, 15, 0, 0, tzinfo=dt.UTC)
    )
    assert summary["period"] == "2026H2"  # the half-year closed before 15 January 2027
    files = [Path(f) for f in summary["files"]]
    assert {f.suffix for f in files} == {".html", ".xlsx"} and all(f.stat().st_size > 0 for f in files)


def test_every_deployment_parameter_is_a_parameter_of_its_flow():
    import importlib
    import inspect

    for dep in _prefect_yaml()["deployments"]:
        module, _, name = dep["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(dep.get("parameters") or {}) <= accepted, (dep["name"], set(dep["parameters"]) - accepted)
    ingest = next(d for d in _prefect_yaml()["deployments"] if d["name"] == "qc-ingest")
    assert ingest["parameters"]["write_back"] is False  # SR write-back is off until the cloud agrees


def test_the_worker_unit_stops_the_worker_with_sigterm_then_sigint():
    worker = (DEPLOY / "systemd" / "qc-prefect-worker.service").read_text(encoding="utf-8")
    (stop,) = [line for line in worker.splitlines() if line.startswith("ExecStop=")]
    assert "kill -TERM $MAINPID" in stop and "kill -INT $MAINPID" in stop
    # the shell's own variables are written $$ (systemd would expand a single $ itself)
    assert "$$i -lt 20" in stop and "$$((i+1))" in stop and "$i " not in stop.replace("$$i", "")
    timeout = int(next(line for line in worker.splitlines() if line.startswith("TimeoutStopSec=")).split("=")[1])
    assert timeout > 20  # longer than ExecStop's own wait


def _systemd_value(text: str, key: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"{key}=")]
    return line.split("=", 1)[1]


def test_every_unit_in_the_folder_is_tested_and_named_in_the_readme():
    assert sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")) == sorted(UNITS)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for unit in UNITS:
        assert unit.removesuffix(".service") in readme, unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_parses_every_unit_without_a_warning_and_finds_its_commands(tmp_path):
    """What `systemctl daemon-reload` would read: systemd's own parser, on copies whose /opt/qc-pipeline
    paths point at this checkout and its venv (so every ExecStart/ExecStop binary must exist)."""
    venv_bin = Path(sys.executable).parent
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text(encoding="utf-8")
        text = text.replace("/opt/qc-pipeline/.venv/bin/", f"{venv_bin}/").replace("/opt/qc-pipeline", str(REPO))
        (tmp_path / unit).write_text(text, encoding="utf-8")
    out = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u) for u in UNITS)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


def _exec_stop(wait_s: int) -> list[str]:
    """The worker unit's ExecStop as systemd runs it: $$ is a literal $; ``wait_s`` replaces its 20 s."""
    stop = _systemd_value((DEPLOY / "systemd" / "qc-prefect-worker.service").read_text(encoding="utf-8"), "ExecStop")
    assert "-lt 20 ]" in stop
    return shlex.split(stop.replace("-lt 20 ]", f"-lt {wait_s} ]").replace("$$", "$"))


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_the_worker_units_exec_stop_ends_a_worker_that_ignores_sigterm_with_sigint(ignores_sigterm):
    """Run the unit's stop command against a stand-in worker: one that ends on SIGTERM, and one that
    (as a Prefect 3.8 worker was once seen to) ignores it and ends only on SIGINT."""
    code = (
        "import signal, time\n"
        # systemd starts a service with every signal at its default; a test run launched in the
        # background by a shell inherits SIGINT ignored, which Python then keeps
        + "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignores_sigterm else "")
        + "print('ready', flush=True)\n"
        + "while True: time.sleep(0.1)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        # systemd reaps its service's main process at once; here this test is the parent, and a dead
        # but unreaped child would still answer `kill -0`
        threading.Thread(target=worker.wait, daemon=True).start()
        started = time.monotonic()
        subprocess.run(_exec_stop(wait_s=2), env={**os.environ, "MAINPID": str(worker.pid)}, check=True, timeout=30)
        worker.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -(signal.SIGINT if ignores_sigterm else signal.SIGTERM)
    assert (took >= 2) if ignores_sigterm else (took < 2)
