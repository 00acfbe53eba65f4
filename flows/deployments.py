"""Scheduled deployments of the QC flows (``qc-pipeline serve``; Prefect server in production).

Two schedules exist: ingestion every few minutes and the nightly re-scoring. The spot-check draw
and the biannual report are not scheduled: those features do not exist yet.
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.qc_flow import dask_task_runner, qc_run
from flows.rescore_flow import qc_rescore

DEFAULT_INGEST_CRON = "*/10 * * * *"
"""Ingestion every ten minutes, in the site's time zone."""
DEFAULT_RESCORE_CRON = "30 2 * * *"
"""Re-scoring every night at 02:30, in the site's time zone (after the day's uploads)."""


def ingest_deployment(
    source: str,
    *,
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    cron: str = DEFAULT_INGEST_CRON,
    timezone: str = "Asia/Shanghai",
    name: str = "qc-ingest",
    workers: int | None = None,
    dask_address: str | None = None,
) -> RunnerDeployment:
    """A deployment of ``qc-run`` over ``source`` on a cron schedule (its studies judged on Dask
    with ``workers`` local processes or the cluster at ``dask_address``)."""
    dask_task_runner(workers=workers, dask_address=dask_address)  # refuse bad options now
    return qc_run.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        concurrency_limit=1,  # a scheduled run never overlaps the previous one
        parameters={
            "source": source, "db_url": db_url, "thresholds_dir": thresholds_dir,
            "workers": workers, "dask_address": dask_address,
        },
        description="Judge new and changed studies of the source (qc-pipeline) · 质控新上传的检查",
        tags=["qc-pipeline", "ingest"],
    )


def rescore_deployment(
    *,
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    cron: str = DEFAULT_RESCORE_CRON,
    timezone: str = "Asia/Shanghai",
    name: str = "qc-rescore",
    workers: int | None = None,
    dask_address: str | None = None,
    limit: int | None = None,
) -> RunnerDeployment:
    """A deployment of ``qc-rescore`` (judge again what older thresholds or models decided, at
    most ``limit`` studies a night, the most recent first)."""
    dask_task_runner(workers=workers, dask_address=dask_address)
    return qc_rescore.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        concurrency_limit=1,
        parameters={
            "db_url": db_url, "thresholds_dir": thresholds_dir, "workers": workers, "dask_address": dask_address,
            "limit": limit,
        },
        description="Re-score studies decided with older thresholds or models (qc-pipeline) · 阈值或模型更新后重新质控",
        tags=["qc-pipeline", "rescore"],
    )
