"""Alembic environment of the results database.

``qc_pipeline.store.schema.upgrade_to_head`` passes an open connection, already inside a
transaction, in ``config.attributes["connection"]``; the migrations then run in that transaction.
Without one (``alembic -c ...`` by hand), ``sqlalchemy.url`` of the config is used.
"""

from __future__ import annotations

import logging
from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from qc_pipeline.errors import StoreError
from qc_pipeline.store.models import Base

logger = logging.getLogger(__name__)

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise StoreError("no connection in config.attributes and no sqlalchemy.url in the Alembic config")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            _run_online(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
