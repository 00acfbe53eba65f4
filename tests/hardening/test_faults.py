"""Faults with real servers on loopback: the results database unavailable at start and mid-run
(a private PostgreSQL stopped and restarted), the imaging cloud (our own Orthanc) stopped and
restarted mid-run, the worker process killed with SIGKILL in the middle of writing a decision,
and two runs at once. Afterwards every study has exactly one current decision, none is lost,
none was judged twice, and the run log says what happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from qc_pipeline.cli import main
from qc_pipeline.errors import StoreError
from qc_pipeline.store import ResultStore, RunSummary
from qc_pipeline.store.leases import LeaseHolder, StudyLeases
from qc_pipeline.store.models import DecisionRecord
from tests.flows.conftest import write_instance
from tests.support import orthanc as orthanc_server

pytestmark = pytest.mark.prefect

N_STUDIES = 8
PASSWORD = "pg-Secret-4711"


def write_studies(root: Path, n: int = N_STUDIES) -> set[str]:
    """``n`` small CT studies of two instances each, one patient each."""
    uids = set()
    for k in range(n):
        study = f"1.2.826.0.1.3680043.10.{5100 + k}"
        for i in (1, 2):
            write_instance(root / f"s{k}" / f"{i}.dcm", study=study, series_no=1, instance_no=i)
        uids.add(study)
    return uids


def assert_one_current_decision_each(db_url: str, expected: set[str]) -> list[dict]:
    with ResultStore.open(db_url) as store:
        rows = store.results()
        engine = store.engine
        with engine.connect() as conn:
            n_decisions = conn.scalar(select(func.count()).select_from(DecisionRecord))
    assert sorted(r["study_instance_uid"] for r in rows) == sorted(expected), "a study was lost"
    assert n_decisions == len(expected), "a study was judged (and stored) twice"
    assert all(r["history_count"] == 1 for r in rows)
    return rows


def runs(db_url: str) -> list[RunSummary]:
    with ResultStore.open(db_url) as store:
        return store.runs(limit=50)


def wrap_process_entry(monkeypatch, around: Callable) -> None:
    """Replace the flow's ``process_entry`` by ``around(real, *args, **kwargs)``; retries at once."""
    from flows import qc_flow

    real = qc_flow.process_entry
    monkeypatch.setattr(qc_flow, "process_entry", lambda *a, **kw: around(real, *a, **kw))
    monkeypatch.setattr(qc_flow, "judge_study", qc_flow.judge_study.with_options(retry_delay_seconds=0))


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- the results database ---------------------------------------------------------------------


def test_database_down_at_start_is_one_clear_line_and_the_next_run_completes(
    prefect_harness, private_postgres, private_db, tmp_path
):
    folder = tmp_path / "incoming"
    expected = write_studies(folder, 3)
    url = private_db.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth: the password is not checked
    private_postgres.stop()
    try:
        result = invoke("run", str(folder), "--db", url)
    finally:
        private_postgres.start()
    assert result.exit_code == 1
    assert "cannot open the results database" in result.output and "Connection refused" in result.output
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output and "postgres:***@" in result.output

    assert invoke("run", str(folder), "--db", url).exit_code == 0
    assert_one_current_decision_each(private_db, expected)


def test_database_stopped_mid_run_loses_nothing(prefect_harness, private_postgres, private_db, tmp_path, monkeypatch):
    """PostgreSQL goes away after two studies are stored and stays away for the rest of the run."""
    folder = tmp_path / "incoming"
    expected = write_studies(folder)
    lock, started, finished, stopped = threading.Lock(), [], [], threading.Event()

    def stop_after_two(real, *args, **kwargs):
        with lock:
            first_two = len(started) < 2
            if first_two:
                started.append(args[1].study_instance_uid)
        if not first_two:
            stopped.wait(timeout=60)
            return real(*args, **kwargs)
        outcome = real(*args, **kwargs)
        with lock:  # stop only once both have finished (stored, lease given back)
            finished.append(args[1].study_instance_uid)
            if len(finished) == 2 and not stopped.is_set():
                private_postgres.stop()
                stopped.set()
        return outcome

    wrap_process_entry(monkeypatch, stop_after_two)
    from flows import qc_flow

    monkeypatch.setattr(qc_flow, "judge_study", qc_flow.judge_study.with_options(retries=0))
    try:
        result = CliRunner().invoke(main, ["run", str(folder), "--db", private_db])
    finally:
        private_postgres.start()
    assert result.exit_code == 1, result.output
    assert "错误 / error" in result.output and "Traceback" not in result.output
    monkeypatch.undo()

    result = invoke("run", str(folder), "--db", private_db)
    assert result.exit_code == 0, result.output
    assert f"{N_STUDIES - 2} 已质控 judged, 2 无变化 unchanged" in result.output
    assert_one_current_decision_each(private_db, expected)


def test_database_restarted_mid_run_is_retried_and_the_run_completes(
    prefect_harness, private_postgres, private_db, tmp_path, monkeypatch
):
    """PostgreSQL restarts while the third study is being stored; the task retries heal it."""
    folder = tmp_path / "incoming"
    expected = write_studies(folder)
    outage, calls = threading.Lock(), []

    def restart_on_third(real, *args, **kwargs):
        with outage:
            calls.append(args[1].study_instance_uid)
            third = len(calls) == 3
            if third:
                private_postgres.stop()
                try:
                    with pytest.raises(StoreError, match="results database"):
                        real(*args, **kwargs)
                finally:
                    private_postgres.start()
                raise StoreError("the results database was restarted")  # this attempt failed: retry
        return real(*args, **kwargs)

    wrap_process_entry(monkeypatch, restart_on_third)
    result = invoke("run", str(folder), "--db", private_db)
    assert result.exit_code == 0, result.output
    assert f"{N_STUDIES} 已质控 judged" in result.output
    assert len(calls) > N_STUDIES  # the study stored during the restart (and any in flight with it) was retried
    assert_one_current_decision_each(private_db, expected)
    assert runs(private_db)[0].status == "completed"


# -- the imaging cloud --------------------------------------------------------------------------


def test_cloud_restarted_mid_run_is_retried_and_nothing_is_lost(prefect_harness, own_orthanc, tmp_path, monkeypatch):
    server = own_orthanc
    expected = write_studies(tmp_path / "incoming", 4)
    server.upload(sorted((tmp_path / "incoming").rglob("*.dcm")))
    server.wait_until_stable()
    outage, calls = threading.Lock(), []

    def restart_on_second(real, *args, **kwargs):
        with outage:
            calls.append(args[1].study_instance_uid)
            if len(calls) == 2:
                server.stop()
                try:
                    real(*args, **kwargs)
                except OSError as exc:  # SourceError
                    assert "cannot reach DICOMweb server" in str(exc) or "DICOMweb" in str(exc)
                finally:
                    server.start()
                raise OSError("the imaging cloud was restarted")
        return real(*args, **kwargs)

    wrap_process_entry(monkeypatch, restart_on_second)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    result = invoke("run", server.dicomweb, "--db", db)
    assert result.exit_code == 0, result.output
    assert orthanc_server.PASSWORD not in result.output
    assert_one_current_decision_each(db, expected)


# -- the worker process -------------------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from qc_pipeline.store.models import DecisionRecord

    flushed = 0

    @event.listens_for(Session, "after_flush")
    def die_inside_the_transaction(session, context):
        global flushed
        if any(isinstance(o, DecisionRecord) for o in session.new):
            flushed += 1
            if flushed == int(os.environ["KILL_AT"]):
                os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would: no cleanup, no commit

    from qc_pipeline.cli import main
    main(sys.argv[1:])
    """
)


def cli_env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("QC_DB_URL", "QC_DICOMWEB_"))}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # the session's test API: no server per process
    return env


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        # Prefect waits this long for its temporary server: 0 s fails as a slow first start does.
        ({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}, "did not start within 0 s"),
        ({"PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}, "does not allow a temporary one"),
    ],
    ids=["temporary-server-does-not-start", "temporary-server-not-allowed"],
)
def test_no_prefect_api_is_one_clear_line_and_the_next_run_completes(prefect_harness, tmp_path, setting, said):
    folder = tmp_path / "incoming"
    expected = write_studies(folder, n=2)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    env = {k: v for k, v in cli_env().items() if k != "PREFECT_API_URL"} | setting
    proc = subprocess.run(
        [sys.executable, "-m", "qc_pipeline.cli", "run", str(folder), "--db", db],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    # The run says once that it starts a temporary server (a note), then the one error line.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("提示 / note:")]
    assert len(lines) == 1, proc.stderr
    assert said in lines[0] and "PREFECT_API_URL" in lines[0] and "Prefect" in lines[0]
    assert runs(db) == []  # nothing was started, so nothing is half done

    result = invoke("run", str(folder), "--db", db)
    assert result.exit_code == 0, result.output
    assert_one_current_decision_each(db, expected)


def test_worker_killed_mid_study_loses_nothing_and_duplicates_nothing(prefect_harness, tmp_path):
    folder = tmp_path / "incoming"
    expected = write_studies(folder)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, "run", str(folder), "--db", db],
        env={**cli_env(), "KILL_AT": "4"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with ResultStore.open(db) as store:
        assert 0 < len(store.results()) < N_STUDIES  # killed half-way: the 4th decision was never committed
        (interrupted,) = store.runs()
    assert interrupted.status == "running"

    rerun = subprocess.run(
        [sys.executable, "-m", "qc_pipeline.cli", "run", str(folder), "--db", db, "--verbose"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    rows = assert_one_current_decision_each(db, expected)
    assert {r["verdict"] for r in rows} == {"pass"}
    with ResultStore.open(db) as store:
        statuses = {r.run_id: (r.status, r.error_message) for r in store.runs()}
    status, why = statuses[interrupted.run_id]
    assert status == "interrupted" and "stopped before the run finished" in why, "the killed run is marked"
    assert sorted(s for s, _ in statuses.values()) == ["completed", "interrupted"]
    # the killed worker's leases were taken over at once, and the log says so
    assert "taken over (that worker process is no longer running)" in rerun.stderr
    # the rerun gave back every lease it took; what is left are leases of the killed process on
    # studies it had stored before it died (harmless: taken over when needed, or expired)
    with ResultStore.open(db) as store:
        leases = StudyLeases(store.engine)
        left = {uid: leases.holder_of(uid) for uid in expected}
    assert all(LeaseHolder.parse(h).is_dead_here() for h in left.values() if h is not None), left


# -- two runs at once ---------------------------------------------------------------------------


def test_two_runs_at_once_judge_each_study_once(prefect_harness, private_db, tmp_path):
    folder = tmp_path / "incoming"
    expected = write_studies(folder, 12)
    command = [sys.executable, "-m", "qc_pipeline.cli", "run", str(folder), "--db", private_db, "--verbose"]
    first = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert_one_current_decision_each(private_db, expected)
    finished = [r for r in runs(private_db) if r.status == "completed"]
    assert len(finished) == 2
    assert sum(r.n_judged for r in finished) == len(expected), "a study was judged by both runs"


def test_a_study_leased_by_another_worker_is_left_to_it(prefect_harness, tmp_path):
    """Deterministic form of the race: another live worker holds one study's lease."""
    from flows.qc_flow import run

    folder = tmp_path / "incoming"
    expected = write_studies(folder, 3)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    busy = sorted(expected)[1]
    other = LeaseHolder.this_process("another-run")  # alive: this very process
    with ResultStore.open(db) as store:
        leases = StudyLeases(store.engine)
        assert leases.acquire(busy, other)
    summary = run(folder, db_url=db)
    assert summary["judged"] == 2 and summary["leased"] == 1 and summary["failed"] == 0
    leases.release(busy, other)
    assert run(folder, db_url=db)["judged"] == 1
    assert_one_current_decision_each(db, expected)


# -- uploads while a run is in progress ---------------------------------------------------------


@pytest.mark.parametrize("listing", ["orthanc-changes", "qido-window"])
def test_a_study_uploaded_during_a_run_is_not_skipped_by_the_cursor(
    listing, prefect_harness, own_orthanc, tmp_path, monkeypatch
):
    import datetime as dt

    from flows.qc_flow import run

    if listing == "qido-window":
        monkeypatch.setenv("QC_DICOMWEB_ORTHANC", "off")
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")

    def study(k: int) -> tuple[str, list[Path]]:
        uid = f"1.2.826.0.1.3680043.10.{5300 + k}"
        paths = [
            write_instance(
                tmp_path / "up" / f"s{k}" / f"{i}.dcm", study=uid, series_no=1, instance_no=i, StudyDate=today
            )
            for i in (1, 2)
        ]
        return uid, paths

    server = own_orthanc
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    first, paths = study(0)
    server.upload(paths)
    server.wait_until_stable()
    assert run(server.dicomweb, db_url=db)["judged"] == 1
    second, paths = study(1)
    server.upload(paths)
    server.wait_until_stable()
    late, late_paths = study(2)
    uploaded = threading.Event()

    def upload_while_judging(real, *args, **kwargs):
        if not uploaded.is_set():
            server.upload(late_paths)  # arrives after the listing, before the cursor moves
            uploaded.set()
        return real(*args, **kwargs)

    wrap_process_entry(monkeypatch, upload_while_judging)
    summary = run(server.dicomweb, db_url=db)
    assert uploaded.is_set() and summary["cursor"]["moved"] is True
    with ResultStore.open(db) as store:
        judged = {r["study_instance_uid"] for r in store.results()}
    assert second in judged and late not in judged  # listed before it arrived
    server.wait_until_stable()
    summary = run(server.dicomweb, db_url=db)
    assert summary["judged"] == 1, summary  # the late upload, and nothing else again
    assert_one_current_decision_each(db, {first, second, late})
