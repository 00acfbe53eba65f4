"""What every command group of the command line shares: the bilingual error exit and the help of
the ``--db`` option."""

from __future__ import annotations

import sys
from typing import Final, NoReturn

import click

DB_OPTION_HELP: Final = "Results database URL (default: $QC_DB_URL, else the local SQLite file)."


def fail(message_en: str, message_zh: str, code: int = 1) -> NoReturn:
    """One line on stderr, Chinese first (the operators' language), then exit ``code``."""
    click.echo(f"错误 / error: {message_zh} / {message_en}", err=True)
    sys.exit(code)
