"""``serve`` needs a Prefect API that answers, and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _serve(folder: Path, env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from qc_pipeline.cli import main; main()",
            "serve",
            str(folder),
            "--cron",
            "*/5 * * * *",
            "--rescore-cron",
            "off",
            "--spot-check-cron",
            "off",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_without_a_prefect_api(tmp_path):
    started = time.monotonic()
    proc = _serve(tmp_path, _env(PREFECT_HOME=str(tmp_path / "home")))
    out, err = proc.communicate(timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 1, (out, err)
    (line,) = err.strip().splitlines()
    assert "set PREFECT_API_URL" in line and "请先启动 Prefect 服务并设置 PREFECT_API_URL" in line
    assert "Traceback" not in out + err
    assert "temporary" not in (out + err).lower()  # no temporary server was started
    assert seconds < 30


def test_serve_refuses_an_unreachable_prefect_api(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/api"
    proc = _serve(tmp_path, _env(PREFECT_HOME=str(tmp_path / "home"), PREFECT_API_URL=url))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    (line,) = err.strip().splitlines()
    assert (
        f"the Prefect API at {url} does not answer" in line
        and "start the Prefect server or fix PREFECT_API_URL" in line
    )
    assert "Prefect 服务无响应" in line
    assert "Traceback" not in out + err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_in_seconds_on_a_signal(prefect_harness, tmp_path, signum):
    from prefect.settings import PREFECT_API_URL

    proc = _serve(tmp_path, _env(PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_HOME=str(tmp_path / "home")))
    deadline = time.monotonic() + 90
    seen = ""
    while time.monotonic() < deadline and "serving:" not in seen:  # Prefect's banner, on stdout
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen += line
    assert "serving:" in seen, (seen, proc.stderr.read() if proc.poll() is not None else "")
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    seconds = time.monotonic() - sent
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err and "CancelledError" not in out + err, err
    assert "已停止 / stopped" in err
    assert seconds < 5, seconds  # measured 1.7-1.8 s
    assert "HTTP Request:" not in seen + out + err  # not one line per poll of the API
