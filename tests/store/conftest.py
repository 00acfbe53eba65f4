"""Backends for the store tests: a SQLite file, and a fresh schema on the machine's PostgreSQL.

Every test gets an empty database: a new SQLite file in ``tmp_path``, or a new PostgreSQL schema
(``qc_test_<session>_<n>``, dropped after the test). The PostgreSQL connections run with the
session time zone Asia/Shanghai, so that UTC normalisation is really exercised.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from qc_pipeline.store import ResultStore

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SKIP_POSTGRES_ENV = "QC_SKIP_POSTGRES"
PG_SESSION_TIMEZONE = "Asia/Shanghai"


class PostgresSchemas:
    """Creates one schema per test under a per-session prefix; drops them."""

    def __init__(self, admin: Engine) -> None:
        self.admin = admin
        self.prefix = f"qc_test_{uuid.uuid4().hex[:8]}"
        self._counter = itertools.count(1)

    def create(self) -> str:
        schema = f"{self.prefix}_{next(self._counter)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        return schema

    def drop(self, schema: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            names = conn.scalars(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": self.prefix + "%"}
            ).all()
        for name in names:
            self.drop(name)

    @staticmethod
    def url(schema: str) -> str:
        options = f"-csearch_path={schema} -ctimezone={PG_SESSION_TIMEZONE}"
        return f"{POSTGRES_URL}?options={quote(options, safe='')}"


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    """The PostgreSQL server, or a failure (a skip with QC_SKIP_POSTGRES=1) when unreachable."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect():
            pass
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL at {POSTGRES_URL} is unreachable ({' '.join(str(exc.orig).split())})"
        if os.environ.get(SKIP_POSTGRES_ENV) == "1":
            pytest.skip(f"{reason}; skipped because {SKIP_POSTGRES_ENV}=1")
        pytest.fail(f"{reason}; start it, or set {SKIP_POSTGRES_ENV}=1 to skip these tests", pytrace=False)
    schemas = PostgresSchemas(admin)
    try:
        yield schemas
    finally:
        schemas.drop_all()
        admin.dispose()


@pytest.fixture
def pg_schema(postgres_schemas: PostgresSchemas) -> Iterator[str]:
    schema = postgres_schemas.create()
    try:
        yield schema
    finally:
        postgres_schemas.drop(schema)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite'}"
    return PostgresSchemas.url(request.getfixturevalue("pg_schema"))


@pytest.fixture
def store(db_url: str) -> Iterator[ResultStore]:
    opened = ResultStore.open(db_url)
    try:
        yield opened
    finally:
        opened.close()
