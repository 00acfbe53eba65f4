"""The QC run: list new or changed studies of a source, judge each in its own task, move the
source's cursor once all are stored, summarise the run. ``run()`` runs it here, on a thread pool
or on Dask (``workers``/``dask_address``)."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import allow_failure, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.settings import get_current_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.collections import visit_collection

from flows.logs import forward_library_logs
from flows.parameters import plain_flow
from flows.run_report import publish_run
from qc_pipeline import __version__, scheduling
from qc_pipeline.config import resolve_db_url
from qc_pipeline.errors import ConfigError, ModelError, SourceError, StoreError
from qc_pipeline.pipeline import (
    OutcomeStatus,
    StudyOutcome,
    ai_scorer,
    load_pipeline_thresholds,
    log_outcomes,
    process_entry,
    provenance,
    settle_heap,
)
from qc_pipeline.rules import Thresholds
from qc_pipeline.sources import StudyEntry, StudySource, open_source
from qc_pipeline.sources.incremental import IncrementalSource, Listing
from qc_pipeline.store import ResultStore, SourceCursor

ProgressListener = Callable[[str, int, int], None]
"""Called as ``listener(event, done, total)`` with event ``start`` or ``study``."""

_progress: contextvars.ContextVar[tuple[ProgressListener, ...]] = contextvars.ContextVar("qc_progress", default=())
"""The listeners of the runs started in this context: a context variable, not module state, so two
runs in one process (threads of the review app, tests) report only to their own callers."""


@contextlib.contextmanager
def progress_to(listener: ProgressListener) -> Iterator[None]:
    """Send the progress of the flow runs started inside the block to ``listener`` (the CLI's
    progress bar). Prefect runs a flow called here in this context and its tasks in copies of it."""
    token = _progress.set((*_progress.get(), listener))
    try:
        yield
    finally:
        _progress.reset(token)


def _notify(event: str, done: int, total: int) -> None:
    for listener in _progress.get():
        listener(event, done, total)


_lock = threading.Lock()
"""Guards the thresholds cache when tasks on a thread pool reload changed files."""


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
        raise ConfigError(f"thresholds changed during the run ({expected_version} -> {thresholds.version}); run again")
    return thresholds


@functools.lru_cache(maxsize=4)
def _cached_thresholds(thresholds_dir: str | None) -> Thresholds:
    return load_pipeline_thresholds(thresholds_dir)


def _transient(task, task_run, state) -> bool:
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
    forward_library_logs()  # on a Dask worker process too: its per-study lines join the run's log
    thresholds = _thresholds(thresholds_dir, thresholds_version)
    settle_heap()  # a Dask worker process: once, at its first study
    return process_entry(open_source(source), entry, _store(db_url), thresholds, run_id=run_id, now=now)


@dataclass(frozen=True)
class StudyFailure:
    """A study of a batch that could not be judged (the others of its batch were)."""

    study_instance_uid: str
    message: str


@task(
    name="judge-studies",
    task_run_name="judge-{entries[0].study_instance_uid}+{n_more}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def judge_studies(
    source: str,
    entries: list[StudyEntry],
    n_more: int,
    db_url: str | None,
    thresholds_dir: str | None,
    thresholds_version: str,
    run_id: str,
    now: dt.datetime | None = None,
) -> list[StudyOutcome | StudyFailure]:
    """Read, check, decide and store several small studies, one after the other, in one task.
    Each study gets ``judge_study``'s retries on source and store faults; one that still fails
    is returned as a ``StudyFailure`` and the next one is judged.

    The verdicts go to the flow run's log as one record for the batch, a line per study (the
    text ``judge_study`` logs for one): each record costs the run about a millisecond (it is sent
    to the Prefect API and stored by its server), a tenth of a small study's own work."""
    forward_library_logs()
    thresholds = _thresholds(thresholds_dir, thresholds_version)
    src, store = open_source(source), _store(db_url)
    settle_heap()  # a Dask worker process: once, at its first batch
    retries = judge_study.retries
    delays = judge_study.retry_delay_seconds
    delays = list(delays) if isinstance(delays, list | tuple) else [delays or 0] * retries
    results: list[StudyOutcome | StudyFailure] = []
    for entry in entries:
        for attempt in range(retries + 1):
            try:
                results.append(process_entry(src, entry, store, thresholds, run_id=run_id, now=now, log_outcome=False))
                break
            except (SourceError, StoreError, OSError) as exc:
                if attempt == retries:
                    results.append(StudyFailure(entry.study_instance_uid, str(exc)))
                else:
                    time.sleep(delays[min(attempt, len(delays) - 1)])
            except Exception as exc:  # a configuration or program error will not heal: next study
                results.append(StudyFailure(entry.study_instance_uid, str(exc)))
                break
    log_outcomes(results, len(entries))
    return results


class RunIncomplete(RuntimeError):
    """Some studies could not be judged because the source or the store failed."""


def dask_task_runner(
    *,
    workers: int | None = None,
    dask_address: str | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> TaskRunner[Any] | None:
    """A ``DaskTaskRunner`` on ``workers`` local worker processes, or on the running Dask cluster at
    ``dask_address`` (``tcp://host:8786``); None for neither (the flow's own thread pool).

    The flows take ``workers``/``dask_address`` as parameters and submit their study tasks to
    this runner themselves, so it applies to served and worker deployments alike (a task runner
    set with ``with_options`` is lost when a deployment loads the flow from its entrypoint).
    One task per study, whatever the runner. Workers of a remote cluster need qc-pipeline
    installed, ``PREFECT_API_URL`` and the same environment (database, DICOMweb credentials).
    """
    if workers is not None and dask_address:
        raise ConfigError("give a number of local Dask workers or the address of a Dask cluster, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"the number of Dask workers must be at least 1, got {workers}")
    if threads_per_worker < 1:
        raise ConfigError(f"threads per Dask worker must be at least 1, got {threads_per_worker}")
    if workers is None and not dask_address:
        return None
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": threads_per_worker,
            "processes": processes,
            "dashboard_address": None,
        }
    )


def check_threads(threads: int) -> int:
    """``threads``, or ConfigError when it is not a number of threads."""
    if threads < 1:
        raise ConfigError(f"the number of threads must be at least 1, got {threads}")
    return threads


def study_threads(source: str, threads: int | None = None) -> int:
    """How many studies the flow judges at once on its own thread pool (no Dask).

    ``threads`` when given; else ``PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS`` when the
    operator set it; else, for a folder, one thread fewer than the CPUs, at least one (reading local
    files and measuring pixels keep a core busy, and much of a study's work is Python holding the
    interpreter lock, so more threads only take turns; the core left over runs what else the run
    needs: the flow's own threads that submit tasks and send their states and logs to Prefect,
    the Prefect server and the database), and ``min(32, CPUs + 4)`` for DICOMweb (a thread
    waiting for the network leaves its core to another; Python's own default for I/O-bound
    pools). On 2 CPUs the flow took 10-13 % longer with 1 thread than judging the same studies
    one after the other without Prefect, and 25-27 % longer with 2 (10,000 small studies, 16 to a
    task; benchmarks/README.md); four chest CTs of 300 slices took as long with 1 thread as with
    2. Prefect's default pool has no bound: with up to ``MAX_IN_FLIGHT`` studies submitted, as
    many were read, decoded and measured at once, which holds that many studies' pixels in memory.
    """
    if threads is not None:
        return check_threads(threads)
    configured = get_current_settings().tasks.runner.thread_pool_max_workers
    if configured:
        return int(configured)
    cpus = os.cpu_count() or 1
    if str(source).startswith(("http://", "https://")):
        return min(32, cpus + 4)
    return max(1, cpus - 1)


@dataclass
class JudgedBatch:
    """What happened to the studies a flow submitted."""

    verdicts: Counter[str] = field(default_factory=Counter)
    saved: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    leased: list[str] = field(default_factory=list)
    """Studies another worker was judging at the time (it held their lease)."""
    bytes_fetched: int = 0
    """Pixel data fetched from the source for the judged studies (DICOMweb)."""

    @property
    def n_judged(self) -> int:
        return sum(self.verdicts.values())


def judge_entries(
    source: str,
    pending: list[StudyEntry],
    *,
    db_url: str | None,
    thresholds_dir: str | None,
    thresholds_version: str,
    run_id: str,
    now: dt.datetime | None,
    workers: int | None = None,
    dask_address: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
) -> JudgedBatch:
    """Submit one ``judge_study`` task per study (inside a flow) and collect the outcomes, on a
    pool of ``study_threads`` threads or on Dask (``workers`` local processes or the cluster at
    ``dask_address``).
    With ``batch_size`` > 1, small studies (``SMALL_STUDY_FILES``) go that many to a
    ``judge_studies`` task: Prefect's cost per task is then shared.

    Studies of one patient are judged oldest first, one after the other, so that the
    consistency check across studies sees the earlier ones stored.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"the batch size must be at least 1, got {batch_size}")
    pool = study_threads(source, threads)  # bad options fail before any work
    if not pending:
        return _judge(
            source, pending, None, db_url, thresholds_dir, thresholds_version, run_id, now, batch_size=batch_size
        )
    runner = dask_task_runner(workers=workers, dask_address=dask_address) or ThreadPoolTaskRunner(max_workers=pool)
    with runner:
        return _judge(
            source, pending, runner, db_url, thresholds_dir, thresholds_version, run_id, now, batch_size=batch_size
        )


def _forget_result(result: object) -> None:
    """Drop what Prefect keeps of a collected study task in the flow run context.

    Prefect links every task result to a copy of its final state (``FlowRunContext.run_results``,
    a documented field of its public context model, for result lineage when one task's result is
    passed to another): a few KB per study, kept for the whole run. Study tasks never pass results
    to each other, so once an outcome is collected its entries go, and the flow's memory stays flat
    however long the backlog. Prefect offers no switch for this (3.8 and 3.9 link every result
    alike); ``tests/flows/test_cli_run.py`` checks that the context stays small during a run, so
    an upgrade that changes the mechanism fails there rather than in a long production run. If the
    field is gone, nothing is dropped: the run is still right, its memory grows with the backlog.
    """
    context = FlowRunContext.get()
    kept = getattr(context, "run_results", None)
    if not isinstance(kept, dict):
        return
    visit_collection(result, visit_fn=lambda obj: kept.pop(id(obj), None), return_data=False, max_depth=1)


MAX_IN_FLIGHT = 128
"""Study tasks submitted and not yet collected, at most: enough to keep any pool busy, and the
flow's memory stays flat however long the backlog (futures are dropped once collected)."""


def _judge(
    source: str,
    pending: list[StudyEntry],
    runner: TaskRunner[Any] | None,
    db_url: str | None,
    thresholds_dir: str | None,
    thresholds_version: str,
    run_id: str,
    now: dt.datetime | None,
    max_in_flight: int | None = None,
    batch_size: int | None = None,
) -> JudgedBatch:
    logger = get_run_logger()
    limit = max_in_flight or MAX_IN_FLIGHT
    total = len(pending)
    _notify("start", 0, total)
    finished: queue.SimpleQueue[PrefectFuture[Any]] = queue.SimpleQueue()
    in_flight: dict[int, tuple[PrefectFuture[Any], list[StudyEntry]]] = {}
    by_unit: dict[int, PrefectFuture[Any]] = {}  # units in flight, by their plan index
    unit_of: dict[int, int] = {}
    batch = JudgedBatch()
    done = 0

    def count(entry: StudyEntry, outcome: StudyOutcome | StudyFailure | Exception) -> None:
        nonlocal done
        done += 1
        if isinstance(outcome, StudyFailure | Exception):
            batch.failed.append(entry.study_instance_uid)
            message = outcome.message if isinstance(outcome, StudyFailure) else outcome
            logger.error("study %s could not be judged: %s", entry.study_instance_uid, message)
        else:
            if outcome.status is OutcomeStatus.LEASED:
                batch.leased.append(outcome.study_instance_uid)
                logger.warning("study %s is being judged by another run; left to it", outcome.study_instance_uid)
            if outcome.status is OutcomeStatus.JUDGED and outcome.verdict is not None:
                batch.verdicts[str(outcome.verdict)] += 1
                batch.saved[str(outcome.saved)] += 1
                batch.bytes_fetched += outcome.bytes_fetched
        _notify("study", done, total)

    def collect(future: PrefectFuture[Any]) -> None:
        _, entries = in_flight.pop(id(future))
        by_unit.pop(unit_of.pop(id(future)), None)
        try:
            result = future.result()
            _forget_result(result)
        except Exception as exc:
            for entry in entries:
                count(entry, exc)
            return
        outcomes = result if isinstance(result, list) else [result]
        for entry, outcome in zip(entries, outcomes, strict=True):
            count(entry, outcome)

    common = {
        "db_url": db_url,
        "thresholds_dir": thresholds_dir,
        "thresholds_version": thresholds_version,
        "run_id": run_id,
        "now": now,
    }
    for unit in scheduling.plan(pending, batch_size):
        while len(in_flight) >= limit:
            collect(finished.get())
        # allow_failure: one study that could not be judged must not hold back the next one; a
        # predecessor already collected needs no waiting for
        wait = [allow_failure(by_unit[i]) for i in unit.after if i in by_unit] or None
        entries = list(unit.entries)
        if unit.batched:
            the_task: Any = judge_studies
            parameters: dict[str, Any] = {"source": source, "entries": entries, "n_more": len(entries) - 1, **common}
        else:
            the_task = judge_study
            parameters = {"source": source, "entry": entries[0], **common}
        future = (
            the_task.submit(**parameters, wait_for=wait)
            if runner is None
            # TaskRunner.submit annotates wait_for as futures only; the task engine it hands them to
            # waits on allow_failure-wrapped futures too, as Task.submit's wait_for does
            else runner.submit(the_task, parameters, wait)  # type: ignore[arg-type]
        )
        in_flight[id(future)] = (future, entries)
        by_unit[unit.index] = future
        unit_of[id(future)] = unit.index
        future.add_done_callback(finished.put)
    while in_flight:
        collect(finished.get())
    return batch


WRITE_BACK_NEEDS_DICOMWEB = (
    "回写结构化报告需要 DICOMweb 数据源，本次不回写 / write-back needs a DICOMweb source: "
    "no structured report is written back for this run"
)


@task(name="write-back-sr", cache_policy=NO_CACHE, persist_result=False)
def write_back_reports(
    source: str, db_url: str | None, thresholds_dir: str | None, now: dt.datetime | None = None
) -> dict[str, object] | None:
    """Store the QC result of each judged study of ``source`` as a DICOM SR on the source
    (``qc_pipeline.recognition.writeback``); None for a source that cannot take them. Never raises:
    a failed write-back is logged, counted and retried by a later run, the verdicts stay."""
    from qc_pipeline.eligibility import EligibilityPolicy
    from qc_pipeline.recognition.writeback import write_back

    logger = get_run_logger()
    src = open_source(source)
    if not hasattr(src, "store_instances"):
        logger.warning(WRITE_BACK_NEEDS_DICOMWEB)
        return None
    try:
        policy = EligibilityPolicy.current(
            thresholds_dir=None if thresholds_dir is None else Path(thresholds_dir), now=now
        )
        done = write_back(_store(db_url), src, policy=policy)  # type: ignore[arg-type]
    except Exception as exc:  # the judged studies stand whatever happens here
        logger.error("SR write-back to %s failed: %s; the next run with --write-back tries again", src.uri, exc)
        return {"sent": 0, "failed": 0, "unchanged": 0, "error": " ".join(str(exc).split())[:300]}
    for line in done.errors[:20]:
        logger.error("SR write-back failed: %s", line)
    logger.info(
        "SR write-back to %s: %d sent, %d failed, %d unchanged", src.uri, done.sent, done.failed, done.unchanged
    )
    return done.as_dict()


def _list_studies(
    src: StudySource, store: ResultStore, *, full: bool, now: dt.datetime | None
) -> tuple[Listing | None, list[StudyEntry], SourceCursor | None]:
    """The studies to look at: what changed since the stored cursor for an incremental source
    (everything when ``full``), every study otherwise."""
    if not isinstance(src, IncrementalSource):
        return None, list(src.discover()), None
    cursor = store.cursor(src.uri)
    if full or cursor is None:
        listing = src.list_changes(None, None, now=now)
    else:
        listing = src.list_changes(cursor.kind, cursor.position, now=now)
    return listing, list(listing.entries), cursor


@plain_flow(name="qc-run", log_prints=False, validate_parameters=False)
def qc_run(
    source: str,
    db_url: str | None = None,
    thresholds_dir: str | None = None,
    now: dt.datetime | None = None,
    full: bool = False,
    workers: int | None = None,
    dask_address: str | None = None,
    batch_size: int | None = None,
    write_back: bool = False,
    threads: int | None = None,
) -> dict[str, object]:
    """Judge every new or changed study of ``source`` and store the decisions.

    ``write_back``: then store each judged study's result on a DICOMweb source as a DICOM SR
    (new or changed reports only; earlier failures again); a folder source says it cannot.

    A DICOMweb source lists only what changed since the cursor stored for it (``full``: every
    study); the cursor moves only once every study listed is stored. The studies are judged on
    ``threads`` threads (default: ``study_threads``), or on Dask with ``workers`` or
    ``dask_address``. Returns the run summary.
    Raises ``RunIncomplete`` when some studies could not be judged (source or database failures
    after retries); the next run picks them up again.
    """
    started = time.monotonic()
    forward_library_logs()  # the pipeline's own records (per study, leases, errors) join this run's log
    logger = get_run_logger()
    dask_task_runner(workers=workers, dask_address=dask_address)  # bad options fail before any work
    study_threads(source, threads)
    thresholds = load_pipeline_thresholds(thresholds_dir)  # fresh: the files may have changed
    prov = provenance(thresholds)
    scorer = ai_scorer()
    if isinstance(scorer, ModelError):
        logger.error(
            "AI models unavailable, studies are judged without AI scores (each gets ai.model.unavailable): %s", scorer
        )
    store = _store(db_url)
    src = open_source(source)
    settle_heap()
    listing, entries, cursor = _list_studies(src, store, full=full, now=now)
    run_id = store.start_run(source_uri=src.uri, pipeline_version=__version__, thresholds_version=thresholds.version)
    pending = [e for e in entries if store.needs_judging(e.study_instance_uid, e.fingerprint, prov)]
    mode = str(listing.mode) if listing is not None else "full"
    logger.info(
        "run %s: %d studies listed (%s) in %s, %d new or changed", run_id, len(entries), mode, src.uri, len(pending)
    )
    batch = judge_entries(
        source,
        pending,
        db_url=db_url,
        thresholds_dir=thresholds_dir,
        thresholds_version=thresholds.version,
        run_id=run_id,
        now=now,
        workers=workers,
        dask_address=dask_address,
        batch_size=batch_size,
        threads=threads,
    )
    failed = batch.failed
    error = None
    if failed:
        error = f"{len(failed)} of {len(pending)} studies could not be judged; the next run retries them"
    cursor_moved = False
    try:
        if batch.leased:
            logger.warning(
                "run %s: %d studies were being judged by another run at the same time and were left to it%s",
                run_id,
                len(batch.leased),
                "; the cursor stays" if listing is not None else "",
            )
        if listing is not None and not failed and not batch.leased:
            cursor_moved = store.advance_cursor(
                src.uri,
                kind=listing.cursor_kind,
                position=listing.position,
                expected=None if cursor is None else cursor.position,
                run_id=run_id,
            )
    except StoreError as exc:
        error = str(exc)
        raise
    finally:
        store.finish_run(
            run_id,
            status="incomplete" if error else "completed",
            n_studies=len(entries),
            n_judged=batch.n_judged,
            n_unchanged=len(entries) - len(pending),
            n_errors=len(failed),
            error_message=error,
        )
    writeback = None
    if write_back:
        writeback = write_back_reports(source, db_url, thresholds_dir, now)
    summary: dict[str, object] = {
        "run_id": run_id,
        "source": src.uri,
        "listing": mode,
        "cursor": None
        if listing is None
        else {"kind": listing.cursor_kind, "position": listing.position, "moved": cursor_moved},
        "studies": len(entries),
        "judged": batch.n_judged,
        "unchanged": len(entries) - len(pending),
        "failed": len(failed),
        "leased": len(batch.leased),
        "verdicts": dict(sorted(batch.verdicts.items())),
        "saved": dict(sorted(batch.saved.items())),
        "pixel_bytes_fetched": batch.bytes_fetched,
        "writeback": writeback,
        "thresholds_version": thresholds.version,
        "pipeline_version": __version__,
    }
    logger.info("run %s finished: %s", run_id, summary)
    seconds = time.monotonic() - started
    try:
        publish_run(store, summary, failed, seconds, zone=thresholds.site.timezone)
    except Exception as exc:  # the report must not turn judged studies into a failed run
        logger.error("run %s: the run's artifact could not be published: %s", run_id, exc)
    logger.info(
        "done: %d studies judged (%s), %d failed, %d unchanged, in %.1f s",
        batch.n_judged,
        ", ".join(f"{v} {n}" for v, n in sorted(batch.verdicts.items())) or "none",
        len(failed),
        len(entries) - len(pending),
        seconds,
    )
    if error:
        raise RunIncomplete(error)
    return summary


def run(
    source: str | Path,
    *,
    db_url: str | None = None,
    thresholds_dir: str | Path | None = None,
    now: dt.datetime | None = None,
    full: bool = False,
    workers: int | None = None,
    dask_address: str | None = None,
    batch_size: int | None = None,
    write_back: bool = False,
    threads: int | None = None,
) -> dict[str, object]:
    """Run the QC flow in this process (Prefect ephemeral mode unless PREFECT_API_URL is set).

    ``workers``: judge on that many local Dask worker processes; ``dask_address``: on a running
    Dask cluster; neither: ``threads`` threads in this process (default: ``study_threads``).
    """
    return qc_run(
        str(source),
        db_url=db_url,
        thresholds_dir=None if thresholds_dir is None else str(thresholds_dir),
        now=now,
        full=full,
        workers=workers,
        dask_address=dask_address,
        batch_size=batch_size,
        write_back=write_back,
        threads=threads,
    )
