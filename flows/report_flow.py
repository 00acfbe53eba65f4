"""The biannual evaluation report, on a schedule: after a half-year closes, the report of that
half-year (HTML, PDF, XLSX) written to a folder. A thin wrapper over ``qc_pipeline.report``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import get_run_logger

from flows.logs import forward_library_logs
from flows.parameters import plain_flow
from qc_pipeline.config import resolve_db_url
from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.rules import load_thresholds
from qc_pipeline.store import ResultStore


def closed_half_year(today: dt.date) -> Period:
    """The half-year before the one ``today`` is in (the last one whose uploads are all in)."""
    return Period.of(today).previous


@plain_flow(name="qc-biannual-report", log_prints=False, validate_parameters=False)
def qc_biannual_report(
    out_dir: str,
    period: str | None = None,
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    lang: str = "zh",
    pdf: bool = True,
    now: dt.datetime | None = None,
) -> dict[str, object]:
    """Write the report of ``period`` (default: the half-year before ``now``, in the site's time
    zone) into ``out_dir``. Writing it again replaces the files: a retried run is harmless."""
    forward_library_logs()
    logger = get_run_logger()
    thresholds_path = None if thresholds_dir is None else Path(thresholds_dir)
    if period is None:
        zone = ZoneInfo(load_thresholds(thresholds_path).site.timezone)
        chosen = closed_half_year((now or dt.datetime.now(dt.UTC)).astimezone(zone).date())
    else:
        chosen = Period.parse(period)
    with ResultStore.open(resolve_db_url(db_url)) as store:
        files = write_report(store, chosen, Path(out_dir), lang=lang, thresholds_dir=thresholds_path, pdf=pdf)
    summary: dict[str, object] = {
        "period": str(chosen),
        "files": [str(p) for p in (files.html, files.pdf, files.xlsx) if p is not None],
    }
    logger.info("biannual report: %s", summary)
    return summary
