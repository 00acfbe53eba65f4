"""The QC flows record their parameters as Prefect would, without importing FastAPI for it."""

from __future__ import annotations

import datetime as dt

from prefect import Flow

from flows.qc_flow import qc_run
from flows.rescore_flow import qc_rescore
from tests.support.imports import imported_by

PARAMETERS = {
    "source": "/data/incoming",
    "db_url": None,
    "thresholds_dir": "/etc/qc/thresholds",
    "now": dt.datetime(2026, 12, 5, 9, 30, 1, 250, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    "full": True,
    "workers": 2,
    "dask_address": None,
    "batch_size": 16,
    "write_back": False,
    "threads": 3,
}


def test_plain_parameters_are_recorded_as_prefects_own_encoder_records_them() -> None:
    ours = qc_run.serialize_parameters(PARAMETERS)
    assert ours == Flow.serialize_parameters(qc_run, PARAMETERS)
    assert list(ours) == list(PARAMETERS) and ours["now"] == "2026-12-05T09:30:01.000250+08:00"
    other = {"source": "/x", "odd": {"when": [dt.date(2026, 1, 1)], "path": None}}  # not plain: Prefect's encoder
    assert qc_rescore.serialize_parameters(other) == Flow.serialize_parameters(qc_rescore, other)


def test_recording_the_parameters_does_not_import_fastapi() -> None:
    code = (
        "import datetime as dt; from flows.qc_flow import qc_run; "
        "qc_run.serialize_parameters({'source': 'x', 'now': dt.datetime(2026, 1, 1), 'workers': None})"
    )
    assert imported_by(code, ["fastapi", "flows.qc_flow"]) == ["flows.qc_flow"]
