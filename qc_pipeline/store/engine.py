"""Opening the results database: its URL, the SQLAlchemy engine, SQLite's pragmas, and database
errors turned into ``StoreError`` without passwords or statement parameters.

SQLite by default (one file, WAL, several threads writing), PostgreSQL in production.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from qc_pipeline.errors import StoreError

logger = logging.getLogger(__name__)

DATA_DIR_ENV: Final = "QC_DATA_DIR"
DB_FILE_NAME: Final = "results.sqlite"

SQLITE_BUSY_TIMEOUT_S: Final = 30.0
"""How long a SQLite writer waits for another one to commit before giving up."""
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
BEGIN_OPTION: Final = "qc_sqlite_begin"
"""Execution option naming how SQLite begins a transaction (``DEFERRED``, ``IMMEDIATE``)."""
_MAX_REASON_CHARS: Final = 300


def default_data_dir() -> Path:
    """``$QC_DATA_DIR``, else ``$XDG_DATA_HOME/qc-pipeline``, else ``~/.local/share/qc-pipeline``."""
    if explicit := os.environ.get(DATA_DIR_ENV):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg).expanduser() / "qc-pipeline"
    return Path.home() / ".local" / "share" / "qc-pipeline"


def default_db_url() -> str:
    """``sqlite:///<data dir>/results.sqlite``; the data directory is created if missing."""
    directory = default_data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the data directory {directory} for the results database: {exc.strerror}; "
            f"set ${DATA_DIR_ENV} to a writable folder"
        ) from exc
    return f"sqlite:///{directory.resolve() / DB_FILE_NAME}"


def masked_url(url: URL | str) -> str:
    """The URL with its password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def error_reason(exc: BaseException, url: URL | None = None) -> str:
    """The driver's message on one line, without the URL's password or the statement's parameters."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    message = " ".join(str(cause).split()) or type(cause).__name__
    if url is not None and url.password:
        message = message.replace(str(url.password), "***")
    if len(message) > _MAX_REASON_CHARS:
        message = message[: _MAX_REASON_CHARS - 1] + "…"
    return message


@contextmanager
def db_errors(what: str, url: URL | None = None) -> Iterator[None]:
    """Turn database errors (other than ``IntegrityError``) into ``StoreError("<what>: <reason>")``."""
    try:
        yield
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise StoreError(f"{what}: {error_reason(exc, url)}") from exc
    except Exception as exc:
        if not _is_alembic_error(exc):
            raise
        raise StoreError(f"{what}: {error_reason(exc, url)}") from exc


def _is_alembic_error(exc: BaseException) -> bool:
    """An Alembic ``CommandError`` (only possible once Alembic was imported, to migrate)."""
    errors = sys.modules.get("alembic.util.exc")
    return errors is not None and isinstance(exc, errors.CommandError)


def make_engine(url: str) -> Engine:
    """The engine for ``url`` (``postgresql://`` uses psycopg 3); ``StoreError`` for a URL that
    does not parse or names an unsupported backend. Connects to nothing yet."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            f"invalid results database URL {masked_url(url)!r}: expected e.g. sqlite:////path/results.sqlite "
            "or postgresql+psycopg://user@host:5432/db"
        ) from exc
    if parsed.drivername == "postgresql":  # psycopg 3 is the driver qc-pipeline depends on
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    # Statement parameters hold patient IDs and names: never in logs or errors, even at DEBUG.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open the results database {masked_url(parsed)}: {error_reason(exc, parsed)} "
            "(supported: sqlite:///..., postgresql+psycopg://...)"
        ) from exc
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, busy timeout; transactions begun by SQLAlchemy, not by pysqlite.

    pysqlite's own transaction handling starts transactions late and cannot do ``BEGIN
    IMMEDIATE``; writers here take the write lock up front so that a read-then-write transaction
    waits for the lock (up to the busy timeout) instead of failing on a stale snapshot.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class StoreSessions:
    """Read and write transactions on one engine, database errors named by what was being done.

    The base of ``ResultStore``: its parts (runs, decisions, cursors, queries) use these.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._masked_url = masked_url(engine.url)
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}), expire_on_commit=False)

    @contextmanager
    def reading(self, action: str) -> Iterator[Session]:
        """A read-only transaction for other parts of the package (review, reports); database
        errors become ``StoreError("cannot <action> ...")``."""
        with self._errors(action), self._read.begin() as session:
            yield session

    @contextmanager
    def writing(self, action: str) -> Iterator[Session]:
        """A write transaction (SQLite: the write lock taken up front); committed on success.
        ``IntegrityError`` passes through (a lost race the caller may handle)."""
        with self._errors(action), self._write.begin() as session:
            yield session

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return db_errors(f"cannot {action} in the results database {self._masked_url}", self._engine.url)
