"""Study leases (store.leases, migration 0006) on SQLite and PostgreSQL: one holder at a time,
expiry, takeover from a dead worker process of this machine, and a race of many threads."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import threading

import pytest

from qc_pipeline.store import ResultStore
from qc_pipeline.store.leases import LeaseHolder, StudyLeases, lease_ttl
from tests.store.conftest import db_url, pg_schema, postgres_schemas  # noqa: F401  (fixtures)

UID = "1.2.826.0.1.3680043.10.7001"
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def leases(db_url):
    with ResultStore.open(db_url) as store:
        yield StudyLeases(store.engine, ttl=dt.timedelta(minutes=15))


def holder(run: str, pid: int | None = None) -> LeaseHolder:
    me = LeaseHolder.this_process(run)
    return LeaseHolder(me.host, me.pid if pid is None else pid, run)


def test_one_holder_at_a_time(leases):
    a, b = holder("run-a"), holder("run-b")
    assert leases.acquire(UID, a, now=T0)
    assert not leases.acquire(UID, b, now=T0 + dt.timedelta(minutes=1))
    assert leases.acquire(UID, a, now=T0 + dt.timedelta(minutes=1)), "the holder renews its own lease"
    assert leases.holder_of(UID) == str(a)
    leases.release(UID, b)  # not b's: nothing happens
    assert leases.holder_of(UID) == str(a)
    leases.release(UID, a)
    assert leases.holder_of(UID) is None
    assert leases.acquire(UID, b, now=T0 + dt.timedelta(minutes=2))


def test_an_expired_lease_is_taken_over(leases):
    other_machine = LeaseHolder("another-host", 4242, "run-a")
    assert leases.acquire(UID, other_machine, now=T0)
    assert not leases.acquire(UID, holder("run-b"), now=T0 + dt.timedelta(minutes=14))
    assert leases.acquire(UID, holder("run-b"), now=T0 + dt.timedelta(minutes=16))


def test_the_lease_of_a_dead_worker_process_is_taken_over_at_once(leases, caplog):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = holder("run-killed", pid=int(finished.stdout))
    assert leases.acquire(UID, dead, now=T0)
    with caplog.at_level(logging.WARNING, logger="qc_pipeline.store.leases"):
        assert leases.acquire(UID, holder("run-next"), now=T0 + dt.timedelta(seconds=5))
    assert f"lease of {dead} taken over" in caplog.text


def test_a_live_worker_keeps_its_lease(leases):
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as alive:
        try:
            assert leases.acquire(UID, holder("run-a", pid=alive.pid), now=T0)
            assert not leases.acquire(UID, holder("run-b"), now=T0 + dt.timedelta(seconds=5))
        finally:
            alive.communicate(b"")


def test_many_threads_race_for_one_lease(leases):
    barrier = threading.Barrier(8)
    won: list[str] = []

    def race(k: int) -> None:
        barrier.wait()
        if leases.acquire(UID, holder(f"run-{k}"), now=T0):
            won.append(f"run-{k}")

    threads = [threading.Thread(target=race, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_store_lease_context_gives_the_lease_back(db_url):
    with ResultStore.open(db_url) as store:
        with store.study_lease(UID, run_id="run-a") as mine:
            assert mine
            with store.study_lease(UID, run_id="run-b") as second:
                assert not second
        leases = StudyLeases(store.engine)
        assert leases.holder_of(UID) is None


def test_a_lease_whose_release_failed_is_taken_over_by_the_next_run_of_this_process(db_url, caplog):
    """The database went away while the lease was given back: the row stays, but no code of this
    process holds it any more, so the next run here takes it over instead of waiting 15 min."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    def database_gone(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("DELETE FROM STUDY_LEASES"):
            raise OperationalError(statement, {}, ConnectionError("server closed the connection unexpectedly"))

    with ResultStore.open(db_url) as store:
        event.listen(store.engine, "before_cursor_execute", database_gone)
        with store.study_lease(UID, run_id="run-a") as mine:
            assert mine
        event.remove(store.engine, "before_cursor_execute", database_gone)
        leases = StudyLeases(store.engine)
        assert leases.holder_of(UID) == str(holder("run-a")), "the row stayed behind"
        with caplog.at_level(logging.WARNING, logger="qc_pipeline.store.leases"):
            with store.study_lease(UID, run_id="run-b") as mine:
                assert mine, "the orphaned lease of this process is taken over"
        assert "taken over (this process gave it up, but could not tell the database)" in caplog.text
        assert leases.holder_of(UID) is None


def test_ttl_from_the_environment(monkeypatch):
    monkeypatch.setenv("QC_LEASE_TTL_S", "90")
    assert lease_ttl() == dt.timedelta(seconds=90)
    monkeypatch.setenv("QC_LEASE_TTL_S", "soon")
    with pytest.raises(ValueError, match=r"QC_LEASE_TTL_S must be a positive number of seconds, got 'soon'"):
        lease_ttl()
