"""The monthly spot-check draw: the previous month's studies, drawn and assigned (blinded) to
reviewers of the other region. A thin wrapper over ``qc_pipeline.spotcheck.draw``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import get_run_logger

from flows.logs import forward_library_logs
from flows.parameters import plain_flow
from qc_pipeline.config import resolve_db_url
from qc_pipeline.rules import load_thresholds
from qc_pipeline.spotcheck.blinding import pseudonym_key
from qc_pipeline.spotcheck.config import load_config
from qc_pipeline.spotcheck.draw import Period, draw
from qc_pipeline.store import ResultStore


@plain_flow(name="qc-spot-check-draw", log_prints=False, validate_parameters=False)
def qc_spot_check_draw(
    period: str | None = None,
    db_url: str | None = None,
    config_path: str | None = None,
    thresholds_dir: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, object]:
    """Draw ``period`` (default: the month before ``now``, in the site's time zone). A period
    already drawn is reported, not drawn again, so a retried or duplicated run is harmless."""
    forward_library_logs()  # the pipeline's own records join this run's log
    logger = get_run_logger()
    if period is None:
        zone = ZoneInfo(load_thresholds(None if thresholds_dir is None else Path(thresholds_dir)).site.timezone)
        period = Period.previous_month((now or dt.datetime.now(dt.UTC)).astimezone(zone).date()).label
    config = load_config(config_path)
    url = resolve_db_url(db_url)
    with ResultStore.open(url) as store:
        report = draw(store, config, period, key=pseudonym_key(url), created_by="flow:qc-spot-check-draw")
    summary: dict[str, object] = {
        "period": report.period,
        "created": report.created,
        "seed": report.seed,
        "config_hash": report.config_hash,
        "population": report.population_size,
        "drawn": report.n_drawn,
        "underfilled": len(report.underfilled),
        "assignments": report.assignments,
    }
    logger.info("spot-check draw: %s", summary)
    return summary
