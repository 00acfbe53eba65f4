"""The schema's revision: the head shipped with this version, whether a database is at it, and
migrating a database to it with Alembic.

Alembic (with Mako and Pygments, about 0.15 s to import) is imported only when a database is
migrated or checked in depth: a database already at the head is recognised with one query, the
head read from the migration files themselves.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, inspect, select, text

from qc_pipeline.errors import StoreError
from qc_pipeline.resources import MIGRATIONS, shipped_path
from qc_pipeline.store.engine import BEGIN_OPTION, db_errors, masked_url

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = shipped_path(MIGRATIONS)

_MIGRATION_LOCK_KEY: Final = 0x71C0_5707E  # pg_advisory_xact_lock key: one migrator at a time
_migration_lock = threading.Lock()
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(None|[\"']([^\"']+)[\"'])", re.MULTILINE)


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic config for the packaged migrations (no alembic.ini); ``connection`` is used by env.py."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The latest migration revision shipped with this version of qc-pipeline."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


@functools.cache
def shipped_head() -> str | None:
    """The head revision read from the migration files themselves (their ``revision`` and
    ``down_revision`` lines), without Alembic; None when they do not form one plain chain (then
    :func:`head_revision` decides)."""
    revisions, parents = set(), set()
    for path in Path(MIGRATIONS_DIR, "versions").glob("*.py"):
        found = {m.group(1): m.group(3) for m in _REVISION_LINE.finditer(path.read_text(encoding="utf-8"))}
        if found.get("revision") is None:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the database is at this version's head, read with one query (no Alembic import)."""
    head = shipped_head() or head_revision()
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        versions = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    return versions == [head]


def upgrade_to_head(engine: Engine) -> None:
    """Migrate the database of ``engine`` to the head revision, in one transaction.

    Idempotent. Concurrent migrators wait for each other: an advisory lock on PostgreSQL, a
    ``BEGIN IMMEDIATE`` write lock on SQLite (both backends have transactional DDL).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    masked = masked_url(engine.url)
    with _migration_lock, db_errors(f"cannot migrate the results database {masked}", engine.url):
        with engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            current = MigrationContext.configure(conn).get_current_revision()
            _check_known_revision(current, masked)
            if current == head_revision():
                return
            logger.info("migrating the results database %s from %s to %s", masked, current, head_revision())
            command.upgrade(alembic_config(conn), "head")


def _check_known_revision(current: str | None, masked: str) -> None:
    if current is None:
        return
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except CommandError as exc:
        raise StoreError(
            f"the results database {masked} is at schema revision {current!r}, unknown to this qc-pipeline "
            f"(head {head_revision()!r}): it was written by a newer version; upgrade qc-pipeline"
        ) from exc
