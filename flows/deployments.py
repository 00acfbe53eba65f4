"""Scheduled deployments of the QC flows (``qc-pipeline serve``; Prefect server in production)."""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.qc_flow import qc_run

DEFAULT_INGEST_CRON = "*/10 * * * *"
"""Ingestion every ten minutes, in the site's time zone."""


def ingest_deployment(
    source: str,
    *,
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    cron: str = DEFAULT_INGEST_CRON,
    timezone: str = "Asia/Shanghai",
    name: str = "qc-ingest",
) -> RunnerDeployment:
    """A deployment of ``qc-run`` over ``source`` on a cron schedule."""
    return qc_run.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        concurrency_limit=1,  # a scheduled run never overlaps the previous one
        parameters={"source": source, "db_url": db_url, "thresholds_dir": thresholds_dir},
        description="Judge new and changed studies of the source (qc-pipeline) · 质控新上传的检查",
        tags=["qc-pipeline", "ingest"],
    )
