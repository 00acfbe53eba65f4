"""Nightly re-scoring: judge again every stored study whose current decision used other
thresholds or other model versions than the current ones."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from flows.logs import forward_library_logs
from flows.parameters import plain_flow
from flows.qc_flow import (
    RunIncomplete,
    _store,
    check_threads,
    dask_task_runner,
    judge_entries,
)
from qc_pipeline import __version__
from qc_pipeline.errors import SourceError
from qc_pipeline.pipeline import load_pipeline_thresholds, provenance
from qc_pipeline.sources import StudyEntry, StudySource, open_source


def entries_for(src: StudySource, uids: set[str]) -> dict[str, StudyEntry]:
    """The current entries of these studies in ``src`` (studies it no longer has are left out)."""
    lookup = getattr(src, "entry_for", None)
    if callable(lookup):  # a server that can be asked for one study (DICOMweb)
        found = {uid: lookup(uid) for uid in sorted(uids)}
        return {uid: e for uid, e in found.items() if e is not None}
    return {e.study_instance_uid: e for e in src.discover() if e.study_instance_uid in uids}


@plain_flow(name="qc-rescore", log_prints=False, validate_parameters=False)
def qc_rescore(
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    now: dt.datetime | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    limit: int | None = None,
    threads: int | None = None,
) -> dict[str, object]:
    """Judge again, from their sources, the studies decided with other thresholds or models
    (on Dask with ``workers`` or ``dask_address``, as ``qc-run``), the most recently stored
    first; at most ``limit`` per run (a night's budget: the rest waits for the next night).

    One run record per source. A study its source no longer has keeps its decision and is
    counted as ``missing``. Raises ``RunIncomplete`` when a source or some studies failed.
    """
    forward_library_logs()  # the pipeline's own records join this run's log
    logger = get_run_logger()
    dask_task_runner(workers=workers, dask_address=dask_address)  # bad options fail before any work
    if threads is not None:
        check_threads(threads)  # bad options fail before any work
    thresholds = load_pipeline_thresholds(thresholds_dir)  # fresh: the files may have changed
    store = _store(db_url)
    stale = store.stale_studies(provenance(thresholds), limit=limit)
    by_source: dict[str | None, set[str]] = {}
    for study in stale:
        by_source.setdefault(study.source_uri, set()).add(study.study_instance_uid)
    logger.info("%d studies to re-score (thresholds %s) in %d sources", len(stale), thresholds.version, len(by_source))
    verdicts: Counter[str] = Counter()
    judged = missing = 0
    failed: list[str] = []
    errors: list[str] = []
    for source_uri, uids in sorted(by_source.items(), key=lambda kv: kv[0] or ""):
        if source_uri is None:
            logger.warning("%d stored studies have no source to read them from again", len(uids))
            missing += len(uids)
            continue
        try:
            src = open_source(source_uri)
            found = entries_for(src, uids)
        except SourceError as exc:
            logger.error("cannot re-score %d studies of %s: %s", len(uids), source_uri, exc)
            errors.append(str(exc))
            failed.extend(sorted(uids))
            continue
        gone = uids - found.keys()
        if gone:
            logger.warning("%d studies are no longer in %s; their decisions stay as they are", len(gone), source_uri)
        missing += len(gone)
        run_id = store.start_run(
            source_uri=src.uri, pipeline_version=__version__, thresholds_version=thresholds.version
        )
        batch = judge_entries(
            source_uri,
            list(found.values()),
            db_url=db_url,
            thresholds_dir=thresholds_dir,
            thresholds_version=thresholds.version,
            run_id=run_id,
            now=now,
            workers=workers,
            dask_address=dask_address,
            threads=threads,
        )
        error = f"{len(batch.failed)} of {len(found)} studies could not be re-scored" if batch.failed else None
        store.finish_run(
            run_id,
            status="incomplete" if error else "completed",
            n_studies=len(found),
            n_judged=batch.n_judged,
            n_unchanged=len(found) - batch.n_judged - len(batch.failed),
            n_errors=len(batch.failed),
            error_message=error,
        )
        verdicts.update(batch.verdicts)
        judged += batch.n_judged
        failed.extend(batch.failed)
        if error:
            errors.append(f"{source_uri}: {error}")
    summary: dict[str, object] = {
        "stale": len(stale),
        "judged": judged,
        "missing": missing,
        "failed": len(failed),
        "verdicts": dict(sorted(verdicts.items())),
        "thresholds_version": thresholds.version,
        "pipeline_version": __version__,
    }
    logger.info("re-scoring finished: %s", summary)
    if errors:
        raise RunIncomplete(
            f"{len(failed)} of {len(stale)} studies could not be re-scored; the next run retries them ({errors[0]})"
        )
    return summary


def rescore(
    *,
    db_url: str | None = None,
    thresholds_dir: str | Path | None = None,
    now: dt.datetime | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    limit: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the re-scoring flow in this process (thread pool, or Dask as in ``flows.qc_flow.run``)."""
    return qc_rescore(
        db_url=db_url,
        thresholds_dir=None if thresholds_dir is None else str(thresholds_dir),
        now=now,
        workers=workers,
        dask_address=dask_address,
        limit=limit,
        threads=threads,
    )
