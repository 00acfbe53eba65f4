"""Process-level settings read from the environment (never from results or logs)."""

from __future__ import annotations

import os

DB_URL_ENV = "QC_DB_URL"
LANG_ENV = "QC_LANG"


def resolve_db_url(explicit: str | None = None) -> str | None:
    """``explicit`` (``--db``), else ``$QC_DB_URL``, else None (the store's default SQLite file)."""
    return explicit or os.environ.get(DB_URL_ENV) or None


def default_lang() -> str:
    """Language of user-facing text: ``$QC_LANG`` (``zh`` or ``en``), Chinese by default."""
    lang = os.environ.get(LANG_ENV, "zh").lower()
    return "en" if lang.startswith("en") else "zh"
