"""What reads from the results store return: frozen, typed rows.

Datetimes are timezone-aware (UTC) and dates are ``datetime.date``; ``as_dict()`` gives the
JSON-ready form (ISO strings) for the command line and the APIs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def iso(value: dt.date | dt.time | dt.datetime | None) -> str | None:
    """``value.isoformat()``; None stays None."""
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class SourceCursor:
    """How far the last complete run over a source got (``ResultStore.cursor``)."""

    source_uri: str
    kind: str
    """What ``position`` means, e.g. ``orthanc-changes`` (a change sequence number)."""
    position: str
    updated_at: dt.datetime
    run_id: str | None


@dataclass(frozen=True, slots=True)
class StaleStudy:
    """A stored study whose current decision used other thresholds or models (``stale_studies``)."""

    study_instance_uid: str
    source_uri: str | None
    thresholds_version: str
    models: dict[str, str]
