"""A lease per study, so that no study is judged by two runs (or workers) at once (several workers share one backlog).

A worker takes the lease of a study before judging it and gives it back when the decision is
stored. Another worker that finds the lease held leaves the study to its holder. A lease ends
when it is released, when it expires (``ttl``: a worker on another machine that died), or at
once when its holder was a process on this machine that no longer runs (a worker killed
mid-study), so that the next run does not wait for the expiry. A lease held in the name of this
very process is alive only while the code that took it still holds it: a lease whose release
failed (the database went away at that moment) is taken over by the next run in the same
process instead of blocking the study until it expires.

The lease is one row per StudyInstanceUID in ``study_leases`` (migration 0006); taking it is one
conditional UPDATE or one INSERT against a unique key, atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Engine, String, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from qc_pipeline.store.models import UID_LENGTH, Base

logger = logging.getLogger(__name__)

LEASE_TTL_ENV: Final = "QC_LEASE_TTL_S"
DEFAULT_TTL: Final = dt.timedelta(minutes=15)
"""Judging one study takes seconds; a lease older than this belongs to a worker that died."""
HOLDER_LENGTH: Final = 200


class StudyLease(Base):
    """Who is judging a study now, and until when the lease holds without being renewed."""

    __tablename__ = "study_leases"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    holder: Mapped[str] = mapped_column(String(HOLDER_LENGTH))
    """``host:pid:run id`` of the worker process holding the lease."""
    acquired_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """A worker process: its machine, its process id, and the run it works for."""

    host: str
    pid: int
    run_id: str

    @classmethod
    def this_process(cls, run_id: str | None) -> LeaseHolder:
        return cls(socket.gethostname(), os.getpid(), run_id or "-")

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.run_id}"[:HOLDER_LENGTH]

    @classmethod
    def parse(cls, text: str) -> LeaseHolder | None:
        host, _, rest = text.partition(":")
        pid, _, run_id = rest.partition(":")
        try:
            return cls(host, int(pid), run_id)
        except ValueError:
            return None

    def is_dead_here(self) -> bool:
        """True when the holder was a process of this machine that is no longer running."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False


class _HeldHere:
    """The leases that code of this process holds now, as ``(database, study, holder)``.

    An entry is added *before* the lease is written (so a thread racing for the same study never
    sees our row without our entry) and removed when the lease is given back, even when the
    database could not be told.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[str, str, str]] = set()

    def add(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._held.add(key)

    def discard(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._held.discard(key)

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        with self._lock:
            return key in self._held


_HELD_HERE: Final = _HeldHere()


def lease_ttl() -> dt.timedelta:
    """``$QC_LEASE_TTL_S`` seconds, else ``DEFAULT_TTL``."""
    value = os.environ.get(LEASE_TTL_ENV)
    if not value:
        return DEFAULT_TTL
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"${LEASE_TTL_ENV} must be a positive number of seconds, got {value!r}")
    return dt.timedelta(seconds=seconds)


class StudyLeases:
    """Take and give back study leases in the results database of ``engine``."""

    def __init__(self, engine: Engine, *, ttl: dt.timedelta | None = None) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._database = engine.url.render_as_string(hide_password=True)
        self.ttl = ttl or lease_ttl()

    def _key(self, study_instance_uid: str, holder: str) -> tuple[str, str, str]:
        return (self._database, study_instance_uid, holder)

    def _why_gone(self, study_instance_uid: str, holder: str) -> str | None:
        """Why ``holder`` cannot be working on the study any more, or None when it may be: a dead
        process of this machine, or this process when none of its code holds the lease."""
        other = LeaseHolder.parse(holder)
        if other is None:
            return None
        if other.host == socket.gethostname() and other.pid == os.getpid():
            if self._key(study_instance_uid, holder) in _HELD_HERE:
                return None
            return "this process gave it up, but could not tell the database"
        return "that worker process is no longer running" if other.is_dead_here() else None

    def acquire(self, study_instance_uid: str, holder: LeaseHolder, *, now: dt.datetime | None = None) -> bool:
        """Take the lease of the study for ``holder``; False when someone else holds it.

        A lease that expired, or whose holder was a process of this machine that has died (or
        this process, when its release failed), is taken over (and the takeover logged).
        """
        me = str(holder)
        key = self._key(study_instance_uid, me)
        _HELD_HERE.add(key)
        taken = False
        try:
            taken = self._acquire(study_instance_uid, me, now or dt.datetime.now(dt.UTC))
        finally:
            if not taken:
                _HELD_HERE.discard(key)
        return taken

    def _acquire(self, study_instance_uid: str, me: str, now: dt.datetime) -> bool:
        values = {"holder": me, "acquired_at": now, "expires_at": now + self.ttl}
        with self._sessions.begin() as session:  # renew our own lease, or take an expired one
            taken = cast(
                "CursorResult[Any]",
                session.execute(
                    update(StudyLease)
                    .where(
                        StudyLease.study_instance_uid == study_instance_uid,
                        or_(StudyLease.holder == me, StudyLease.expires_at < now),
                    )
                    .values(**values)
                ),
            ).rowcount
        if taken:
            return True
        try:
            with self._sessions.begin() as session:
                session.add(StudyLease(study_instance_uid=study_instance_uid, **values))
            return True
        except IntegrityError:
            pass  # held by another worker: is it still alive?
        with self._sessions.begin() as session:
            current = session.scalars(
                select(StudyLease.holder).where(StudyLease.study_instance_uid == study_instance_uid)
            ).one_or_none()
            if current is None:  # released meanwhile: try once more
                return self._insert_or_false(study_instance_uid, values)
            why = self._why_gone(study_instance_uid, current)
            if why is None:
                return False
            taken = cast(
                "CursorResult[Any]",
                session.execute(
                    update(StudyLease)
                    .where(StudyLease.study_instance_uid == study_instance_uid, StudyLease.holder == current)
                    .values(**values)
                ),
            ).rowcount
        if taken:
            logger.warning(
                "study %s: lease of %s taken over (%s)",
                study_instance_uid,
                current,
                why,
            )
        return bool(taken)

    def _insert_or_false(self, study_instance_uid: str, values: dict[str, object]) -> bool:
        try:
            with self._sessions.begin() as session:
                session.add(StudyLease(study_instance_uid=study_instance_uid, **values))
        except IntegrityError:
            return False
        return True

    def release(self, study_instance_uid: str, holder: LeaseHolder) -> None:
        """Give the lease back (nothing happens when ``holder`` no longer holds it). When the
        database cannot be told, the lease still counts as given back in this process."""
        _HELD_HERE.discard(self._key(study_instance_uid, str(holder)))
        with self._sessions.begin() as session:
            session.execute(
                delete(StudyLease).where(
                    StudyLease.study_instance_uid == study_instance_uid, StudyLease.holder == str(holder)
                )
            )

    def holder_of(self, study_instance_uid: str) -> str | None:
        with self._sessions.begin() as session:
            return session.scalars(
                select(StudyLease.holder).where(StudyLease.study_instance_uid == study_instance_uid)
            ).one_or_none()

    @contextmanager
    def held(self, study_instance_uid: str, holder: LeaseHolder) -> Iterator[bool]:
        """``with leases.held(uid, holder) as mine:`` — ``mine`` says whether the lease was taken;
        a lease taken here is given back on leaving, whatever happens inside."""
        mine = self.acquire(study_instance_uid, holder)
        try:
            yield mine
        finally:
            if mine:
                self.release(study_instance_uid, holder)
