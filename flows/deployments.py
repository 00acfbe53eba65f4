"""Scheduled deployments of the QC flows (``qc-pipeline serve``; Prefect server in production).

Three schedules exist: ingestion every few minutes, the nightly re-scoring and the monthly
spot-check draw.
"""

from __future__ import annotations

from typing import cast

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.qc_flow import dask_task_runner, qc_run
from flows.rescore_flow import qc_rescore
from flows.spot_check_flow import qc_spot_check_draw

# ``Flow.to_deployment`` is typed as returning the deployment or a coroutine (Prefect dispatches on
# the caller: a coroutine only inside an event loop); these functions are called from plain code.

DEFAULT_INGEST_CRON = "*/10 * * * *"
"""Ingestion every ten minutes, in the site's time zone."""
DEFAULT_RESCORE_CRON = "30 2 * * *"
"""Re-scoring every night at 02:30, in the site's time zone (after the day's uploads)."""
DEFAULT_SPOT_CHECK_CRON = "0 4 5 * *"
"""The spot-check draw of the previous month, on the 5th at 04:00 (late uploads are in by then)."""


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
    threads: int | None = None,
    write_back: bool = False,
) -> RunnerDeployment:
    """A deployment of ``qc-run`` over ``source`` on a cron schedule (its studies judged on Dask
    with ``workers`` local processes or the cluster at ``dask_address``, else on ``threads``
    threads, default ``flows.qc_flow.study_threads``; ``write_back``: each
    judged study's result stored back on the DICOMweb source as a DICOM SR)."""
    dask_task_runner(workers=workers, dask_address=dask_address)  # refuse bad options now
    return cast(
        RunnerDeployment,
        qc_run.to_deployment(
            name=name,
            schedule=Cron(cron, timezone=timezone),
            concurrency_limit=1,  # a scheduled run never overlaps the previous one
            parameters={
                "source": source,
                "db_url": db_url,
                "thresholds_dir": thresholds_dir,
                "workers": workers,
                "dask_address": dask_address,
                "threads": threads,
                "write_back": write_back,
            },
            description="Judge new and changed studies of the source (qc-pipeline) · 质控新上传的检查",
            tags=["qc-pipeline", "ingest"],
        ),
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
    threads: int | None = None,
    limit: int | None = None,
) -> RunnerDeployment:
    """A deployment of ``qc-rescore`` (judge again what older thresholds or models decided, at
    most ``limit`` studies a night, the most recent first)."""
    dask_task_runner(workers=workers, dask_address=dask_address)
    return cast(
        RunnerDeployment,
        qc_rescore.to_deployment(
            name=name,
            schedule=Cron(cron, timezone=timezone),
            concurrency_limit=1,
            parameters={
                "db_url": db_url,
                "thresholds_dir": thresholds_dir,
                "workers": workers,
                "dask_address": dask_address,
                "threads": threads,
                "limit": limit,
            },
            description="Re-score studies decided with older thresholds or models (qc-pipeline) · 阈值或模型更新后重新质控",
            tags=["qc-pipeline", "rescore"],
        ),
    )


def spot_check_deployment(
    *,
    db_url: str | None = None,
    config_path: str | None = None,
    thresholds_dir: str | None = None,
    cron: str = DEFAULT_SPOT_CHECK_CRON,
    timezone: str = "Asia/Shanghai",
    name: str = "qc-spot-check-draw",
) -> RunnerDeployment:
    """A deployment of ``qc-spot-check-draw``: each month, the previous month's spot-check draw."""
    return cast(
        RunnerDeployment,
        qc_spot_check_draw.to_deployment(
            name=name,
            schedule=Cron(cron, timezone=timezone),
            concurrency_limit=1,
            parameters={"db_url": db_url, "config_path": config_path, "thresholds_dir": thresholds_dir},
            description="Monthly cross-region spot-check draw (qc-pipeline) · 每月交叉质控抽样",
            tags=["qc-pipeline", "spot-check"],
        ),
    )
