"""Production smoke test on loopback: a Prefect server and a process worker, the deployments of
deploy/prefect.yaml registered, the failed-run notification installed, one ingest run on a small
sample folder; then checks that the run completed, that its flow-run logs hold the pipeline's
records ("done: ..."), that its ``qc-run-summary`` artifact exists, and that a failed run reached
the notification webhook.

    python deploy/smoke.py [--keep DIR] [--screenshots DIR]

``--screenshots DIR`` serves Prefect's UI too and, before stopping, renders the ingest run's page
(its logs) and its ``qc-run-summary`` artifact to PNG with headless Chromium (``chromium`` on the
PATH, or ``QC_CHROMIUM``).

Prints one line per step with its time and exits 1 naming the first check that failed. Needs
nothing outside this machine (SQLite results database, a temporary PREFECT_HOME).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "deploy" / "prefect.yaml"
POOL = "qc-process"


class SmokeFailure(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_folder(root: Path) -> Path:
    """One small CT study (two slices of pydicom's CT_small) with complete patient data."""
    import pydicom
    from pydicom.data import get_testdata_file

    study = "1.2.826.0.1.3680043.10.9901"
    folder = root / "incoming"
    folder.mkdir(parents=True)
    for n in (1, 2):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = study + ".1"
        ds.SOPInstanceUID = f"{study}.1.{n}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n
        ds.ImagePositionPatient = [-100.0, -100.0, 5.0 * n]
        ds.PatientID = "P-9901"
        ds.AccessionNumber = "ACC9901"
        ds.StudyDate = "20261012"
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.InstitutionName = "四川省人民医院"
        ds.StudyDescription = "胸部CT平扫"
        ds.save_as(folder / f"{n}.dcm")
    return folder


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []  # shared: the server makes a handler per request

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Webhook.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Smoke:
    def __init__(self, work: Path, *, ui: bool = False) -> None:
        self.work = work
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = dict(os.environ)
        for key in [k for k in self.env if k.startswith("PREFECT_")]:
            del self.env[key]
        self.env.update(
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_API_URL=self.api,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="true" if ui else "false",
            PREFECT_SERVER_API_HOST="127.0.0.1",
            QC_DB_URL=f"sqlite:///{work / 'results.db'}",
            QC_REPORT_DIR=str(work / "reports"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {text}", flush=True)

    def prefect(self, *args: str, timeout: float = 120) -> str:
        cmd = [sys.executable, "-m", "prefect", "--no-prompt", *args]
        out = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise SmokeFailure(
                f"`prefect {' '.join(args)}` exited {out.returncode}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
            )
        return out.stdout

    def start(self, name: str, *args: str) -> None:
        log = open(self.work / f"{name}.log", "wb")  # closed with the process
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "prefect", *args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        self.names.append(name)

    def stop(self) -> list[str]:
        """Stop the worker, then the server, as the service units do: SIGTERM, 20 s, then SIGINT (the
        worker of Prefect 3.8 does not exit after SIGTERM alone). Returns what did not stop so."""
        stuck = []
        for name, proc in reversed(list(zip(self.names, self.procs, strict=True))):
            started = time.monotonic()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    stuck.append(f"the {name} did not stop on SIGTERM then SIGINT within 30 s")
            self.say(f"{name} stopped in {time.monotonic() - started:.1f} s")
        return stuck

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.api + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.procs[0].poll() is not None:
                break
            time.sleep(0.5)
        raise SmokeFailure(f"the Prefect server did not answer on {self.api} (log: {self.work / 'server.log'})")

    def run(self, sample: Path, webhook_url: str) -> dict[str, object]:
        self.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
        self.wait_healthy()
        self.say(f"Prefect server healthy at {self.api}")
        self.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        self.env["QC_SOURCE"] = str(sample)
        self.prefect("deploy", "--prefect-file", str(PREFECT_FILE), "--all", timeout=300)
        self.say("work pool and deployments registered")
        self._webhook_block(webhook_url)
        out = subprocess.run(
            [sys.executable, "-m", "flows.automations", "--block", "qc-smoke-webhook"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise SmokeFailure(f"the failed-run automation was not created:\n{out.stdout}{out.stderr}")
        self.say("failed-run notification installed")
        self.start("worker", "worker", "start", "--pool", POOL, "--limit", "2")
        ok = self._deployment_run("qc-run/qc-ingest", {})
        bad = self._deployment_run("qc-run/qc-ingest", {"source": str(self.work / "no-such-folder")})
        return {"ok": ok, "bad": bad}

    def _webhook_block(self, url: str) -> None:
        code = (
            "from prefect.blocks.notifications import CustomWebhookNotificationBlock as B;"
            f"B(name='qc-smoke', url={url!r}, json_data={{'text': '{{{{subject}}}}: {{{{body}}}}'}})"
            ".save('qc-smoke-webhook', overwrite=True)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise SmokeFailure(f"the webhook block was not saved:\n{out.stderr[-2000:]}")

    def _deployment_run(self, name: str, params: dict[str, str]) -> str:
        args = ["deployment", "run", name, "--watch", "--watch-timeout", "240"]
        for key, value in params.items():
            args += ["--param", f"{key}={value}"]
        cmd = [sys.executable, "-m", "prefect", "--no-prompt", *args]
        out = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=300)
        run_id = next((line.split()[-1] for line in out.stdout.splitlines() if "UUID" in line), "")
        self.say(f"{name} {params or ''} ran (exit {out.returncode}, flow run {run_id})")
        if not run_id:
            raise SmokeFailure(f"no flow run was created for {name}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        return run_id


def check(api_env: dict[str, str], ok_run: str, bad_run: str) -> dict[str, object]:
    """What Prefect holds for the two runs: states, log lines, the artifact."""
    code = f"""
import asyncio, json
from uuid import UUID
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
async def main():
    async with get_client() as c:
        out = {{}}
        for key, rid in (("ok", {ok_run!r}), ("bad", {bad_run!r})):
            fr = await c.read_flow_run(UUID(rid))
            logs = await c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(rid)])))
            arts = await c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(rid)])))
            out[key] = {{"state": fr.state.type.value, "logs": [l.message for l in logs],
                        "artifacts": [a.key for a in arts], "markdown": [str(a.data) for a in arts]}}
        print(json.dumps(out))
asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=api_env, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise SmokeFailure(f"reading the runs back failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def screenshots(api_env: dict[str, str], api: str, run_id: str, out: Path) -> list[Path]:
    """The UI's pages of flow run ``run_id`` (logs) and of its artifact, as PNG files in ``out``."""
    chromium = os.environ.get("QC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SmokeFailure("no chromium on the PATH (set QC_CHROMIUM) for --screenshots")
    code = f"""
import asyncio
from uuid import UUID
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
async def main():
    async with get_client() as c:
        arts = await c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID({run_id!r})])))
        print(arts[0].id if arts else "")
asyncio.run(main())
"""
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=api_env, capture_output=True, text=True, timeout=120
    )
    artifact_id = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
    ui = api.removesuffix("/api")
    pages = {"flow-run-logs.png": f"{ui}/runs/flow-run/{run_id}"}
    if artifact_id:
        pages["run-summary-artifact.png"] = f"{ui}/artifacts/artifact/{artifact_id}"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, url in pages.items():
        target = out / name
        subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1600,1100",
                "--virtual-time-budget=20000",
                f"--screenshot={target}",
                url,
            ],
            capture_output=True,
            timeout=120,
        )
        if not target.exists():
            raise SmokeFailure(f"chromium wrote no screenshot of {url}")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs of server and worker)")
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="serve the UI and write PNGs of the ingest run's logs and artifact to this folder",
    )
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="qc-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    hook_port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", hook_port), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    smoke = Smoke(work, ui=args.screenshots is not None)
    problems: list[str] = []
    try:
        runs = smoke.run(sample_folder(work), f"http://127.0.0.1:{hook_port}/hook")
        found = check(smoke.env, str(runs["ok"]), str(runs["bad"]))
        ok, bad = found["ok"], found["bad"]
        if ok["state"] != "COMPLETED":
            problems.append(f"the ingest run ended {ok['state']}, not COMPLETED (worker log: {work / 'worker.log'})")
        if not any(m.startswith("done: 1 studies judged") for m in ok["logs"]):
            problems.append(f"the ingest run's logs hold no 'done: 1 studies judged' line ({len(ok['logs'])} lines)")
        if not any("studies listed" in m for m in ok["logs"]):
            problems.append("the pipeline's own records (studies listed) are not in the run's logs")
        if "qc-run-summary" not in ok["artifacts"]:
            problems.append(f"the ingest run published no qc-run-summary artifact ({ok['artifacts']})")
        if bad["state"] not in ("FAILED", "CRASHED"):
            problems.append(f"the run on a missing folder ended {bad['state']}, not FAILED")
        deadline = time.monotonic() + 60
        while not _Webhook.received and time.monotonic() < deadline:
            time.sleep(0.5)
        if not _Webhook.received:
            problems.append("the failed run sent no notification to the webhook within 60 s")
        else:
            smoke.say(f"notification received: {_Webhook.received[0][:120]!r}")
        smoke.say(f"ingest run: {ok['state']}, {len(ok['logs'])} log lines, artifacts {ok['artifacts']}")
        if args.screenshots is not None:
            for path in screenshots(smoke.env, smoke.api, str(runs["ok"]), args.screenshots):
                smoke.say(f"screenshot: {path}")
    except SmokeFailure as exc:
        problems.append(str(exc))
    finally:
        problems += smoke.stop()
        server.shutdown()
        if args.keep is None and not problems:
            shutil.rmtree(work, ignore_errors=True)
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    if not problems:
        smoke.say("smoke test passed")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
