"""The QC run: discover studies in a source, judge each in its own task, summarise the run."""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from prefect import allow_failure, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from qc_pipeline import __version__
from qc_pipeline.config import resolve_db_url
from qc_pipeline.errors import ConfigError, SourceError, StoreError
from qc_pipeline.pipeline import OutcomeStatus, StudyOutcome, load_pipeline_thresholds, process_entry, provenance
from qc_pipeline.rules import Thresholds
from qc_pipeline.sources import StudyEntry, open_source
from qc_pipeline.store import ResultStore

ProgressListener = Callable[[str, int, int], None]
"""Called as ``listener(event, done, total)`` with event ``start`` or ``study``."""

_listeners: list[ProgressListener] = []
_lock = threading.Lock()


def add_progress_listener(listener: ProgressListener) -> None:
    """Receive progress of flow runs in this process (the CLI's progress bar)."""
    _listeners.append(listener)


def remove_progress_listener(listener: ProgressListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _notify(event: str, done: int, total: int) -> None:
    for listener in list(_listeners):
        listener(event, done, total)


@functools.lru_cache(maxsize=8)
def _store(db_url: str | None) -> ResultStore:
    """One store (engine and connection pool) per database and process, shared by tasks."""
    return ResultStore.open(resolve_db_url(db_url))


def _thresholds(thresholds_dir: str | None, expected_version: str) -> Thresholds:
    with _lock:
        thresholds = _cached_thresholds(thresholds_dir)
        if thresholds.version != expected_version:  # the files changed under a running flow
            _cached_thresholds.cache_clear()
            thresholds = _cached_thresholds(thresholds_dir)
    if thresholds.version != expected_version:
        raise ConfigError(
            f"thresholds changed during the run ({expected_version} -> {thresholds.version}); run again"
        )
    return thresholds


@functools.lru_cache(maxsize=4)
def _cached_thresholds(thresholds_dir: str | None) -> Thresholds:
    return load_pipeline_thresholds(thresholds_dir)


def _transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Retry I/O failures of the source or the store; a configuration error will not heal."""
    try:
        state.result()
    except (SourceError, StoreError, OSError):
        return True
    except Exception:
        return False
    return False


@task(
    name="judge-study",
    task_run_name="judge-{entry.study_instance_uid}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def judge_study(
    source: str,
    entry: StudyEntry,
    db_url: str | None,
    thresholds_dir: str | None,
    thresholds_version: str,
    run_id: str,
    now: dt.datetime | None = None,
) -> StudyOutcome:
    """Read, check, decide and store one study."""
    thresholds = _thresholds(thresholds_dir, thresholds_version)
    return process_entry(open_source(source), entry, _store(db_url), thresholds, run_id=run_id, now=now)


class RunIncomplete(RuntimeError):
    """Some studies could not be judged because the source or the store failed."""


@flow(name="qc-run", log_prints=False, validate_parameters=False)
def qc_run(
    source: str,
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, object]:
    """Judge every new or changed study of ``source`` and store the decisions.

    Returns the run summary. Raises ``RunIncomplete`` when some studies could not be judged
    (source or database failures after retries); the next run picks them up again.
    """
    logger = get_run_logger()
    thresholds = _cached_thresholds(thresholds_dir)
    prov = provenance(thresholds)
    store = _store(db_url)
    src = open_source(source)
    entries = list(src.discover())
    run_id = store.start_run(source_uri=src.uri, pipeline_version=__version__, thresholds_version=thresholds.version)
    pending = [e for e in entries if store.needs_judging(e.study_instance_uid, e.fingerprint, prov)]
    logger.info(
        "run %s: %d studies in %s, %d new or changed", run_id, len(entries), src.uri, len(pending)
    )
    _notify("start", 0, len(pending))
    # Studies of one patient are judged oldest first, one after the other, so that the
    # consistency check across studies sees the earlier ones stored.
    pending.sort(key=lambda e: (e.patient_key or "", e.study_date or "", e.study_instance_uid))
    futures = []
    previous: dict[str, object] = {}
    for entry in pending:
        # allow_failure: one study that could not be judged must not hold back the next one
        wait = [allow_failure(previous[entry.patient_key])] if entry.patient_key in previous else None
        future = judge_study.submit(
            source, entry, db_url, thresholds_dir, thresholds.version, run_id, now, wait_for=wait
        )
        if entry.patient_key:
            previous[entry.patient_key] = future
        futures.append(future)
    verdicts: Counter[str] = Counter()
    saved: Counter[str] = Counter()
    failed: list[str] = []
    done = 0
    for future in as_completed(futures):
        done += 1
        try:
            outcome: StudyOutcome = future.result()
        except Exception as exc:
            entry_uid = pending[futures.index(future)].study_instance_uid
            failed.append(entry_uid)
            logger.error("study %s could not be judged: %s", entry_uid, exc)
        else:
            if outcome.status is OutcomeStatus.JUDGED and outcome.verdict is not None:
                verdicts[str(outcome.verdict)] += 1
                saved[str(outcome.saved)] += 1
        _notify("study", done, len(pending))
    n_judged = sum(verdicts.values())
    summary: dict[str, object] = {
        "run_id": run_id,
        "source": src.uri,
        "studies": len(entries),
        "judged": n_judged,
        "unchanged": len(entries) - len(pending),
        "failed": len(failed),
        "verdicts": dict(sorted(verdicts.items())),
        "saved": dict(sorted(saved.items())),
        "thresholds_version": thresholds.version,
        "pipeline_version": __version__,
    }
    error = None
    if failed:
        error = f"{len(failed)} of {len(pending)} studies could not be judged; the next run retries them"
    store.finish_run(
        run_id,
        status="incomplete" if failed else "completed",
        n_studies=len(entries),
        n_judged=n_judged,
        n_unchanged=len(entries) - len(pending),
        n_errors=len(failed),
        error_message=error,
    )
    logger.info("run %s finished: %s", run_id, summary)
    if error:
        raise RunIncomplete(error)
    return summary


def run(source: str | Path, *, db_url: str | None = None, thresholds_dir: str | Path | None = None,
        now: dt.datetime | None = None) -> dict[str, object]:
    """Run the QC flow in this process (Prefect ephemeral mode unless PREFECT_API_URL is set)."""
    return qc_run(
        str(source),
        db_url=db_url,
        thresholds_dir=None if thresholds_dir is None else str(thresholds_dir),
        now=now,
    )
