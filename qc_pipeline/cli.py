"""The ``qc-pipeline`` command line. A contract other tools rely on: keep it stable.

Exit codes: 0 every study got a verdict (whatever the verdicts); 1 the run could not complete
(source or database failure: one-line reason on stderr); 2 bad usage or configuration.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import click

from qc_pipeline import __version__
from qc_pipeline.cli_common import DB_OPTION_HELP
from qc_pipeline.cli_common import fail as _fail
from qc_pipeline.config import default_lang, resolve_db_url
from qc_pipeline.domain import VERDICT_LABELS

logger = logging.getLogger(__name__)

VERDICT_STYLES = {"pass": "green", "review": "yellow", "fail": "red", "not_applicable": "dim"}


EPHEMERAL_STARTUP_TIMEOUT_S = 120
"""Default wait for Prefect's temporary API server (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``)."""
EPHEMERAL_START_FAILED = "Timed out while attempting to connect to ephemeral Prefect API server"
"""The start of the RuntimeError Prefect raises when its temporary API server does not come up."""
NO_API_URL = "No Prefect API URL provided"
"""The start of the ValueError Prefect raises with no API URL when temporary servers are off."""


def _quiet_prefect(verbose: bool) -> None:
    """Prefect logs every task to the console; an operator wants the table, not the chatter."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no telemetry banner on a terminal
    # The run log goes to Prefect's API at INFO either way; the console shows it with --verbose
    # only, so an operator sees the table or one line saying why the run could not complete.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # A level *name*: the variable is read into Prefect's logging config as a string, and "0"
    # makes dictConfig refuse the whole config in a process that sets logging up afterwards (the
    # flow runs that serve spawns), silently leaving Prefect's run loggers without their API handler.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "NOTSET" if verbose else "CRITICAL")
    # The temporary (ephemeral) API server can log a cancelled write when it shuts down after
    # the run; that is Prefect's housekeeping, not the operator's concern, unless --verbose.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "qc_pipeline")  # library logs join the run log
    # Without PREFECT_API_URL Prefect starts a temporary API server and waits 20 s for it; its
    # first start on a new PREFECT_HOME migrates a database and can take longer on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S))
    level = logging.INFO if verbose else logging.CRITICAL
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # records propagated from Prefect's loggers too
        handler.setLevel(level)
    # One INFO line per HTTP request (serve polls the API every few seconds) drowns what the
    # operator needs; failed requests still surface as Prefect's and the pipeline's own errors.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


_PG_SCHEMES = ("postgres://", "postgresql://")


def normalise_db_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (as Heroku, PgBouncer and most hosting panels write
    them) name the psycopg 3 driver the store uses; other URLs are unchanged."""
    for scheme in _PG_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def db_url_for(explicit: str | None, *, read: bool = False) -> str | None:
    """The database URL of ``--db`` (else ``$QC_DB_URL``), checked before anything is opened.

    A string that is not a URL is bad usage (exit 2). For a command that only reads, a SQLite file
    that does not exist is an error (exit 1): opening it would create an empty database and show
    an empty table for a mistyped path.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = resolve_db_url(explicit)
    if url is None:
        return None
    url = normalise_db_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        _fail(
            f"{url!r} is not a database URL: expected e.g. sqlite:////path/results.sqlite or postgresql://user@host/db",
            f"{url!r} 不是数据库地址",
            code=2,
        )
        raise AssertionError("unreachable") from None  # pragma: no cover
    path = parsed.database
    if read and parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).exists():
        _fail(f"the results database {path} does not exist (check --db)", f"结果数据库 {path} 不存在（请检查 --db）")
    return url


@contextlib.contextmanager
def _without_heartbeats() -> Iterator[None]:
    """Flow-run heartbeats off for a run this command waits for. Prefect uses them to tell a run
    whose process died (a worker's run nobody watches); here the operator sees the command end,
    and stopping the heartbeat thread costs up to a second at the end of each flow run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@contextlib.contextmanager
def _prefect_api_errors() -> Iterator[None]:
    """One clear line, not Prefect's traceback, when there is no Prefect API to run the flow on."""
    try:
        yield
    except ValueError as exc:
        if not str(exc).startswith(NO_API_URL):
            raise
        _fail(
            "no Prefect API: set PREFECT_API_URL to a running Prefect server (this Prefect profile does not "
            "allow a temporary one)",
            "没有可用的 Prefect 服务：请将 PREFECT_API_URL 设为已运行的 Prefect 服务（当前 Prefect 配置不允许临时服务）",
        )
    except RuntimeError as exc:
        if not str(exc).startswith(EPHEMERAL_START_FAILED):
            raise
        timeout = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
        _fail(
            f"Prefect's temporary API server did not start within {timeout} s; set PREFECT_API_URL to a running "
            "Prefect server, or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
            f"Prefect 临时服务未能在 {timeout} 秒内启动；请将 PREFECT_API_URL 设为已运行的 Prefect 服务，"
            "或调大 PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        )


PREFECT_API_CHECK_TIMEOUT_S = 5.0
"""How long ``serve`` and ``doctor`` wait for the Prefect API's health endpoint."""


def _prefect_api_problem(timeout: float = PREFECT_API_CHECK_TIMEOUT_S) -> tuple[str, str] | None:
    """Why there is no usable Prefect API (English, Chinese), or None when it answers."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return (
            "no Prefect API: set PREFECT_API_URL to a running Prefect server "
            "(e.g. `prefect server start --host 127.0.0.1` and PREFECT_API_URL=http://127.0.0.1:4200/api)",
            "没有 Prefect 服务：请先启动 Prefect 服务并设置 PREFECT_API_URL（例如 http://127.0.0.1:4200/api）",
        )
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/health", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return (
            f"the Prefect API at {url} does not answer ({reason}): start the Prefect server or fix PREFECT_API_URL",
            f"PREFECT_API_URL（{url}）处的 Prefect 服务无响应：请启动 Prefect 服务或改正 PREFECT_API_URL",
        )
    return None


FULL_ROWS_WIDTH: Final = 10_000
"""Console width when stdout is not a terminal: wide enough that no table row is folded or cut
(a table is as wide as its content, not as the console)."""


def _console():
    from rich.console import Console

    from qc_pipeline.cli_table import terminal_width

    return Console(width=terminal_width() or FULL_ROWS_WIDTH, soft_wrap=False)


class _LazyGroup(click.Group):
    """A group whose command groups are imported when named, not at start-up.

    ``qc-pipeline run`` on one study is an interactive command: importing the review app, the
    recognition API, the report and the model tools (about 0.15 s) for a command that uses none of
    them is time the operator waits for. ``--help`` and the help-text test still see every command.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            import importlib

            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


LAZY_COMMANDS: Final = {
    "models": "qc_pipeline.ai.cli:models",
    "population": "qc_pipeline.report.cli:population_cmd",
    "report": "qc_pipeline.report.cli:report_cmd",
    "exam-log": "qc_pipeline.report.cli:exam_log",
    "spot-check": "qc_pipeline.spotcheck.cli:spot_check",
    "review": "qc_pipeline.review.cli:review",
    "recognition": "qc_pipeline.recognition.cli:recognition",
}
"""The command groups of other packages, imported on first use (name: "module:attribute")."""


@click.group(cls=_LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qc-pipeline")
def main() -> None:
    """qc-pipeline — 医学影像检查结果互认质控 / QC that gates the mutual recognition of imaging results."""


def _run_flow(
    source: str,
    db_url: str | None,
    thresholds_dir: str | None,
    *,
    verbose: bool,
    workers: int | None = None,
    dask_address: str | None = None,
    write_back: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    from qc_pipeline.errors import ConfigError, QCError
    from qc_pipeline.pipeline import load_pipeline_thresholds
    from qc_pipeline.sources import open_source

    _quiet_prefect(verbose)  # first: a Secret block in open_source may start Prefect's temporary API
    # Fail fast, before the flow starts, on what no retry can mend.
    try:
        load_pipeline_thresholds(thresholds_dir)
    except ConfigError as exc:
        _fail(str(exc), "质控阈值文件无效", code=2)
    try:
        opened = open_source(source)
        opened.check()  # unreachable, or credentials refused: no Prefect run for that
    except QCError as exc:
        _fail(str(exc), f"无法打开数据源 {source}", code=1)
    _scan_folder(opened)
    if write_back and not hasattr(opened, "store_instances"):  # said once; the run goes on
        from flows.qc_flow import WRITE_BACK_NEEDS_DICOMWEB

        click.echo(f"提示 / note: {WRITE_BACK_NEEDS_DICOMWEB}", err=True)
        write_back = False
    _store_results(db_url, read=False, study_instance_uid="-")  # opens (and migrates) the database, or exits 1
    from qc_pipeline.errors import ModelError
    from qc_pipeline.pipeline import ai_scorer

    scorer = ai_scorer()
    if isinstance(scorer, ModelError):  # the run goes on; each study says it was not AI-scored
        click.echo(
            f"警告 / warning: AI模型不可用，本次质控不进行AI评分（每项检查将注明） / AI models unavailable, "
            f"studies are judged without AI scores: {scorer}",
            err=True,
        )

    from flows import qc_flow

    progress = None
    task_id = None

    def listener(event: str, done: int, total: int) -> None:
        nonlocal task_id
        if progress is None:
            return
        if event == "start":
            task_id = progress.add_task("qc", total=total)
        elif task_id is not None:
            progress.update(task_id, completed=done)

    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("质控 / checking"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        progress.start()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # the cost of every command without a server: say it once
        click.echo(
            "提示 / note: 未设置 PREFECT_API_URL，本命令启动 Prefect 临时服务（约 10 秒） / no PREFECT_API_URL: "
            "this command starts Prefect's temporary server (about 10 s; a running server avoids it)",
            err=True,
        )
    try:
        with qc_flow.progress_to(listener), _prefect_api_errors(), _without_heartbeats():
            return qc_flow.run(
                source,
                db_url=db_url_for(db_url),
                thresholds_dir=thresholds_dir,
                workers=workers,
                dask_address=dask_address,
                write_back=write_back,
                threads=threads,
            )
    except qc_flow.RunIncomplete as exc:
        _fail(str(exc), "部分检查未能完成质控（数据源或数据库故障），下次运行将自动重试")
    except ConfigError as exc:
        _fail(str(exc), "质控配置无效", code=2)
    except QCError as exc:
        _fail(str(exc).splitlines()[0], "运行未能完成")
    finally:
        if progress is not None:
            progress.stop()
    raise AssertionError("unreachable")  # pragma: no cover


def _scan_folder(source: Any) -> None:
    """For a folder: list the files that are not DICOM once, and stop when nothing is left to judge."""
    from qc_pipeline.sources import FolderSource

    if not isinstance(source, FolderSource):
        return
    found = sum(1 for _ in source.files())
    if source.skipped:
        shown = ", ".join(source.skipped[:20]) + (f" (+{len(source.skipped) - 20})" if len(source.skipped) > 20 else "")
        click.echo(f"跳过非 DICOM 文件 / skipped, not DICOM ({len(source.skipped)}): {shown}", err=True)
    if not found:
        _fail(f"no DICOM files found in {source.root}", f"{source.root} 中未找到 DICOM 文件")


def _print_summary(summary: dict[str, Any], seconds: float) -> None:
    """Lines that fit 80 columns: the counts, then the verdicts in words."""
    verdicts = summary.get("verdicts", {})
    shown = (
        ", ".join(
            f"{VERDICT_LABELS.get(k, (k, k))[1]} {VERDICT_LABELS.get(k, (k, k))[0]} {v}" for k, v in verdicts.items()
        )
        or "-"
    )
    click.echo(f"完成 / done ({seconds:.1f} s):")
    click.echo(
        f"  {summary['studies']} 项检查 studies, {summary['judged']} 已质控 judged, "
        f"{summary['unchanged']} 无变化 unchanged, {summary['failed']} 失败 failed"
    )
    click.echo(f"  结论 verdicts: {shown}")
    if fetched := int(summary.get("pixel_bytes_fetched") or 0):
        per_study = fetched / max(1, int(summary["judged"]))
        click.echo(f"  拉取像素数据 / pixel data fetched: {fetched} bytes ({per_study / 1e6:.1f} MB / study)")
    if (writeback := summary.get("writeback")) is not None:
        click.echo(f"  回写结构化报告 / SR written back: {writeback['sent']}, failed: {writeback['failed']}")
        if writeback.get("error"):
            click.echo(f"  回写出错 / write-back error: {writeback['error']}")


DASK_OPTIONS = (
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Judge on N local Dask worker processes (default: threads in this process).",
    ),
    click.option("--dask-address", help="Judge on the running Dask cluster at this address, e.g. tcp://10.0.0.5:8786."),
    click.option(
        "--threads",
        type=click.IntRange(min=1),
        help="Without Dask: judge N studies at once on threads of this process (default: CPUs - 1 for a "
        "folder, at least 1; CPUs + 4 for DICOMweb). 同时质控的检查数。",
    ),
)


def _dask_options(func):
    for option in reversed(DASK_OPTIONS):
        func = option(func)
    return func


def _check_dask_options(workers: int | None, dask_address: str | None, threads: int | None = None) -> None:
    if workers is not None and dask_address:
        _fail("give --workers or --dask-address, not both", "--workers 与 --dask-address 只能选一个", code=2)
    if threads is not None and (workers is not None or dask_address):
        # on Dask each worker process judges one study at a time: --threads would be ignored
        _fail(
            "--threads is for judging in this process; with --workers or --dask-address the Dask workers judge",
            "--threads 不能与 --workers 或 --dask-address 同时使用",
            code=2,
        )


@contextlib.contextmanager
def _file_times_are_upload_times(said: bool) -> Iterator[None]:
    """While the flow runs, tell FolderSource (here and in the flow's worker processes) that file
    times are upload times, when the operator said so."""
    from qc_pipeline.sources.folder import FILE_TIMES_ENV

    if not said:
        yield
        return
    before = os.environ.get(FILE_TIMES_ENV)
    os.environ[FILE_TIMES_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(FILE_TIMES_ENV, None)
        else:
            os.environ[FILE_TIMES_ENV] = before


@main.command()
@click.argument("source")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False),
    help="Thresholds folder (default: the shipped thresholds/).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show Prefect's and the pipeline's logs.")
@click.option(
    "--file-times-are-upload-times",
    "file_times",
    is_flag=True,
    help="A folder SOURCE: its files' modification times are the upload times (upload timeliness). "
    "Without it a folder gives no upload time: a copy resets file times.",
)
@click.option(
    "--write-back",
    "write_back",
    is_flag=True,
    help="A DICOMweb SOURCE: store each judged study's QC result on it as a DICOM structured report "
    "(SR, by STOW-RS; new or changed results only, failed ones again). "
    "回写：将质控结果以 DICOM 结构化报告存回影像云。",
)
@_dask_options
def run(
    source: str,
    db_url: str | None,
    thresholds_dir: str | None,
    verbose: bool,
    file_times: bool,
    write_back: bool,
    workers: int | None,
    dask_address: str | None,
    threads: int | None,
) -> None:
    """Judge every new or changed study of SOURCE (a folder or a DICOMweb URL) and store the verdicts.

    质控数据源 SOURCE（文件夹或 DICOMweb 地址）中新增或变化的检查，并保存结论。
    """
    _check_dask_options(workers, dask_address, threads)
    started = time.monotonic()
    with _file_times_are_upload_times(file_times):
        summary = _run_flow(
            source,
            db_url,
            thresholds_dir,
            verbose=verbose,
            workers=workers,
            dask_address=dask_address,
            write_back=write_back,
            threads=threads,
        )
    _print_summary(summary, time.monotonic() - started)


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("qc-demo"),
    show_default=True,
    help="Folder for the sample studies and the demo database.",
)
@click.option("--db", "db_url", help="Results database URL (default: OUT/results.sqlite).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=default_lang, help="Language of the reasons.")
@click.option("-v", "--verbose", is_flag=True, help="Show Prefect's and the pipeline's logs.")
def demo(out_dir: Path, db_url: str | None, lang: str, verbose: bool) -> None:
    """Write the sample studies, judge them, print the verdicts with their reasons.

    演示：生成样例检查（合成体模与 pydicom 自带真实图像，部分含缺陷），运行质控并打印结论。
    """
    from qc_pipeline.samples.demo import write_demo_studies

    started = time.monotonic()
    out_dir = out_dir.resolve()
    studies_dir = out_dir / "studies"
    cases = write_demo_studies(studies_dir)
    db_url = db_url or f"sqlite:///{out_dir / 'results.sqlite'}"
    click.echo(f"样例检查 / sample studies: {len(cases)} → {studies_dir}")
    with _file_times_are_upload_times(True):  # the demo writes each file with its upload time
        summary = _run_flow(str(studies_dir), db_url, None, verbose=verbose)
    rows = _store_results(db_url)
    names = {c.study_instance_uid: c.name for c in cases if c.study_instance_uid}
    _print_table(rows, lang=lang, names=names)
    _print_summary(summary, time.monotonic() - started)
    click.echo(f"结果库 / results: qc-pipeline results --db {db_url}")


def _store_results(db_url: str | None, *, read: bool = True, **filters: Any) -> list[dict[str, Any]]:
    from qc_pipeline.errors import StoreError
    from qc_pipeline.store import ResultStore

    try:
        store = ResultStore.open(db_url_for(db_url, read=read))
        try:
            return store.results(**filters)
        finally:
            store.close()
    except StoreError as exc:
        _fail(str(exc), "无法打开结果数据库")
    raise AssertionError("unreachable")  # pragma: no cover


ITEM_MATCHED_CODE = "catalog.item.matched"
QUIET_CODES = frozenset(
    {ITEM_MATCHED_CODE, "image_quality.metric.not_applicable", "image_quality.indicator.unmeasurable"}
)
"""Info findings not shown as reasons in tables (the item has its own column; a metric that could
not be measured is in ``results --format json``)."""


def _reasons(row: dict[str, Any], lang: str, limit: int = 3) -> str:
    """The findings that weigh (worst first); for a study with none, its info findings."""
    order = {"fail": 0, "review": 1, "info": 2}
    findings = [f for f in row["findings"] if f["code"] not in QUIET_CODES]
    weighty = [f for f in findings if f["severity"] != "info"]
    shown = sorted(weighty or findings, key=lambda f: order.get(f["severity"], 3))
    texts = [(f["message_zh"] if lang == "zh" and f.get("message_zh") else f["message"]) for f in shown[:limit]]
    if len(shown) > limit:
        texts.append(f"(+{len(shown) - limit})")
    return "\n".join(texts) or "—"


def _item_text(row: dict[str, Any], lang: str) -> str:
    item = row.get("item")
    if not item:
        return "—"
    return f"{item['code']} {item['name_zh'] if lang == 'zh' else item['name_en']}"


def _metric_cell(row: dict[str, Any], rules: dict[str, list[Any]], lang: str) -> str:
    """The judged image-quality metrics of a study with their limits.

    One line per metric that has a rule for the study's modality: the value (the range over the
    series when there are several), then the limits that hold for the study's item, e.g.
    ``noise 12.3 HU (≤ 35)`` or ``air -998 HU (-1060…-940)``; a value beyond a limit is marked as
    :func:`qc_pipeline.rules.evaluate.evaluate` judges it (``!`` review, ``!!`` fail).
    """
    from qc_pipeline import labels
    from qc_pipeline.checks.image_quality import METRIC_UNITS, metric_label, unit_suffix
    from qc_pipeline.metrics.registry import format_value
    from qc_pipeline.rules.evaluate import evaluate, worst

    modality = row.get("modality") or ""
    item_code = (row.get("item") or {}).get("code")
    values: dict[str, list[float]] = {}
    for m in row.get("measurements") or []:
        values.setdefault(m["metric"], []).append(m["value"])
    parts = []
    for metric, found in values.items():
        judged = [evaluate(rules.get(metric, []), metric, v, modality=modality, item_code=item_code) for v in found]
        if not judged[0].limits:
            continue
        beyond = worst(judged)
        limit = None if beyond is None or beyond.fired is None else beyond.fired.value
        lo, hi = min(found), max(found)
        shown = (
            format_value(metric, lo, limit=limit)
            if lo == hi
            else f"{format_value(metric, lo, limit=limit)}…{format_value(metric, hi, limit=limit)}"
        )
        label = labels.metric_label(metric, lang)
        unit = unit_suffix(METRIC_UNITS.get(metric, ""), metric_label(metric)[0])
        parts.append(f"{beyond.mark if beyond else ''}{label} {shown}{unit} ({judged[0].limit_text})")
    return "\n".join(parts) or "—"


STUDY_ID_TAIL: Final = 12
"""Characters of a study's id kept when a narrow terminal abbreviates it (a UID's tail tells studies
apart; ``results --study`` and full rows show it whole)."""


def _short_id(value: str) -> str:
    return value if len(value) <= STUDY_ID_TAIL + 1 else "…" + value[-STUDY_ID_TAIL:]


def _results_columns(lang: str, *, names: bool) -> tuple[list[Any], list[Any]]:
    """The verdict table's columns and the order a narrow terminal gives them up in: first the
    image-quality detail, the reason a study is not eligible, the item's name and the eligibility
    window, then the study id is
    abbreviated to its tail, then the date and modality go (a demo case keeps its name instead of
    the study id, wrapped at its words last); the verdict and its reasons always stay."""
    from qc_pipeline.cli_table import Column

    columns = [
        Column("study", "检查 study", wrap=False, short=_short_id),
        Column("modality", "类型 mod.", wrap=False),
        Column("date", "日期 date", wrap=False),
        Column(
            "item",
            "项目 item",
            min_width=12,
            max_width=22,
            short=lambda v: v.split(" ", 1)[0],
            short_header="项目 item",
        ),
        Column("verdict", "结论 verdict", min_width=12, max_width=24),
        Column("until", "互认至 until", min_width=16, max_width=24, short=lambda v: v.split("\n", 1)[0]),
        Column("reasons", "原因 reasons" if lang == "zh" else "reasons 原因", min_width=30),
        Column("quality", "图像质量 image quality", min_width=24, max_width=40),
    ]
    if names:
        columns.insert(
            0,
            Column(
                "case", "样例 case", wrap=False, min_width=14, short=lambda v: v.replace("_", " "), short_wraps=True
            ),
        )
    steps = [
        ("drop", "quality"),
        ("short", "until"),
        ("short", "item"),
        ("drop", "until"),
        ("short", "study"),
        ("drop", "date"),
    ]
    steps += [("drop", "study"), ("drop", "modality"), ("short", "case")] if names else [("drop", "modality")]
    return columns, steps


def _print_table(rows: list[dict[str, Any]], *, lang: str, names: dict[str, str] | None = None) -> None:
    """The verdicts as a table fitted to the terminal (see :mod:`qc_pipeline.cli_table`); full
    rows when stdout is not a terminal."""
    from qc_pipeline.cli_table import print_table

    rules = _metric_rules()
    cells = []
    for row in rows:
        verdict = row["verdict"]
        en, zh = VERDICT_LABELS.get(verdict, (verdict, verdict))
        label = f"[{VERDICT_STYLES.get(verdict, '')}]{zh} {en}[/]"
        if human := row.get("human_decision"):  # the radiologist's decision, beside the machine's
            hen, hzh = VERDICT_LABELS.get(human["verdict"], (human["verdict"], human["verdict"]))
            label += f"\n→ 人工 human: [{VERDICT_STYLES.get(human['verdict'], '')}]{hzh} {hen}[/]"
        if row.get("negative_flags"):
            label += "\n负面清单 negative list: " + ", ".join(f["reason_code"] for f in row["negative_flags"])
        cells.append(
            {
                "case": (names or {}).get(row["study_instance_uid"], "(unreadable file)"),
                "study": row.get("accession_number") or row["study_instance_uid"],
                "modality": row.get("modality") or "?",
                "date": row.get("study_date") or "?",
                "item": _item_text(row, lang),
                "verdict": label,
                "until": _eligibility_cell(row, lang),
                "reasons": _reasons(row, lang),
                "quality": _metric_cell(row, rules, lang),
            }
        )
    columns, steps = _results_columns(lang, names=bool(names))
    print_table("质控结论 / QC verdicts", columns, cells, steps=steps)


def _eligibility_cell(row: dict[str, Any], lang: str) -> str:
    """``2027-01-12 渝北HR`` for an eligible study; else the window end (if any) and why not."""
    if row.get("eligible"):
        return f"{row.get('eligible_until') or '—'}\n{row.get('recognition_mark') or ''}".strip()
    reasons = [r for r in row.get("eligibility_reasons") or () if r["code"] != "verdict.not_pass"]
    if not reasons:
        return "—"
    key = "message_zh" if lang == "zh" else "message"
    return "\n".join([f"✗ {row.get('eligible_until') or ''}".strip(), *(r[key] for r in reasons)])


def _metric_rules(thresholds_dir: str | None = None) -> dict[str, list[Any]]:
    """The enabled rules on measured metrics, by metric id (for showing limits beside values)."""
    from qc_pipeline.checks.image_quality import rules_by_metric
    from qc_pipeline.errors import ConfigError
    from qc_pipeline.pipeline import load_pipeline_thresholds

    try:
        return dict(rules_by_metric(load_pipeline_thresholds(thresholds_dir)))
    except ConfigError:
        return {}


@main.command()
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: fitted to the terminal (full rows into a file); json: everything, ids included; csv: one row a study.",
)
@click.option("--study", "study_uid", help="Only this StudyInstanceUID.")
@click.option("--verdict", type=click.Choice(["pass", "review", "fail", "not_applicable"]), help="Only this verdict.")
@click.option(
    "--lang", type=click.Choice(["zh", "en"]), default=default_lang, help="Language of the reasons (table, CSV)."
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Eligibility on this day (YYYY-MM-DD; default: today on the site clock).",
)
@click.option(
    "--excel",
    is_flag=True,
    help="CSV that Excel opens right on Chinese Windows (UTF-8 with a byte-order mark). 供 Excel 打开的 CSV。",
)
def results(
    db_url: str | None,
    fmt: str,
    study_uid: str | None,
    verdict: str | None,
    lang: str,
    as_of: dt.datetime | None,
    excel: bool,
) -> None:
    """Print the current verdict of each study. 打印每项检查当前的质控结论。

    Eligibility is computed now (the window, the institution's qualification in the register).
    """
    from qc_pipeline.eligibility import EligibilityPolicy

    policy = EligibilityPolicy.current(as_of=None if as_of is None else as_of.date())
    rows = _store_results(db_url, study_instance_uid=study_uid, verdict=verdict, policy=policy)
    if study_uid and not rows:
        _fail(f"no study {study_uid} in the results database", f"结果库中未找到检查 {study_uid}")
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        click.echo(("\ufeff" if excel else "") + _to_csv(rows, lang), nl=False)
    else:
        _print_table(rows, lang=lang)


CSV_COLUMNS = (
    "study_instance_uid",
    "accession_number",
    "patient_id",
    "institution",
    "modality",
    "study_date",
    "item_code",
    "verdict",
    "final_verdict",
    "human_decision",
    "eligible",
    "eligible_until",
    "eligibility_basis",
    "eligibility_as_of",
    "eligibility_reasons",
    "recognition_mark",
    "registered_institution",
    "negative_flags",
    "finding_codes",
    "reasons",
    "metrics",
    "measurements",
    "pipeline_version",
    "thresholds_version",
    "models",
    "decided_at",
)


def _to_csv(rows: list[dict[str, Any]], lang: str = "en") -> str:
    """The results as CSV; text from the studies (institution, patient ID, ...) is escaped so that a
    spreadsheet opening the file shows it as text, never runs it as a formula."""
    from qc_pipeline.io.tabular import csv_row

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            csv_row(
                {
                    **{k: row.get(k) for k in CSV_COLUMNS if k in row},
                    "item_code": (row.get("item") or {}).get("code"),
                    "finding_codes": ";".join(f["code"] for f in row["findings"]),
                    "eligibility_reasons": ";".join(r["code"] for r in row.get("eligibility_reasons") or ()),
                    "reasons": " | ".join(
                        (f.get("message_zh") if lang == "zh" else None) or f["message"]
                        for f in row["findings"]
                        if f["severity"] != "info"
                    ),
                    "metrics": json.dumps(row.get("metrics") or {}, sort_keys=True),
                    "measurements": json.dumps(row.get("measurements") or [], sort_keys=True),
                    "pipeline_version": row["provenance"]["pipeline_version"],
                    "thresholds_version": row["provenance"]["thresholds_version"],
                    "models": json.dumps(row["provenance"].get("models") or {}, sort_keys=True),
                    "human_decision": json.dumps(row["human_decision"], ensure_ascii=False, sort_keys=True)
                    if row.get("human_decision")
                    else "",
                    "negative_flags": json.dumps(row.get("negative_flags") or [], ensure_ascii=False, sort_keys=True),
                }
            )
        )
    return buffer.getvalue()


@main.command()
@click.argument("source")
@click.option("--cron", default="*/10 * * * *", show_default=True, help="Ingestion schedule (cron, site time zone).")
@click.option(
    "--rescore-cron",
    default="30 2 * * *",
    show_default=True,
    help="Nightly re-scoring schedule (cron, site time zone); 'off' to serve ingestion only.",
)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False),
    help="Thresholds folder the scheduled runs use (default: the shipped one, or $QC_THRESHOLDS_DIR).",
)
@click.option(
    "--name",
    default="qc-ingest",
    show_default=True,
    help="Name of the ingestion deployment in Prefect (the re-scoring and spot-check ones keep theirs).",
)
@click.option(
    "--rescore-limit",
    type=click.IntRange(min=1),
    help="At most N studies re-scored a night, the most recent first (default: all).",
)
@click.option(
    "--secret-block", help="Prefect Secret block holding the DICOMweb credentials (default: $QC_DICOMWEB_SECRET_BLOCK)."
)
@click.option(
    "--spot-check-cron",
    default="0 4 5 * *",
    show_default=True,
    help="Monthly cross-region spot-check draw of the previous month (cron, site time zone); 'off' to skip.",
)
@click.option(
    "--write-back",
    is_flag=True,
    help="Store each judged study's QC result back on the DICOMweb source as a DICOM SR (off by default).",
)
@_dask_options
def serve(
    source: str,
    cron: str,
    rescore_cron: str,
    rescore_limit: int | None,
    thresholds_dir: str | None,
    name: str,
    secret_block: str | None,
    spot_check_cron: str,
    write_back: bool,
    workers: int | None,
    dask_address: str | None,
    threads: int | None,
) -> None:
    """Serve the scheduled deployments: ingestion of SOURCE, the nightly re-scoring and the monthly
    spot-check draw (needs a Prefect API). This process runs the flows: keep it running (systemd).

    按计划定时质控 SOURCE，每晚重新质控阈值或模型已更新的检查，每月抽取交叉质控样本。数据库地址请通过环境变量 QC_DB_URL
    提供（不写入部署参数）；DICOMweb 凭据来自环境变量或 Prefect Secret 块。
    """
    from qc_pipeline.errors import ConfigError, QCError
    from qc_pipeline.pipeline import load_pipeline_thresholds
    from qc_pipeline.sources import open_source
    from qc_pipeline.sources.dicomweb import SECRET_BLOCK_ENV

    _check_dask_options(workers, dask_address, threads)
    try:
        site = load_pipeline_thresholds(thresholds_dir).site
    except ConfigError as exc:
        _fail(str(exc), "质控阈值文件无效", code=2)
    _quiet_prefect(verbose=True)
    if secret_block:
        # Flow runs (subprocesses) and local Dask workers inherit the block's name, never its value.
        os.environ[SECRET_BLOCK_ENV] = secret_block
    try:
        open_source(source)  # a missing folder or Secret block fails now, not at 3 a.m.
    except QCError as exc:
        _fail(str(exc), f"无法打开数据源 {source}", code=1)
    problem = _prefect_api_problem()  # without one Prefect serves from a temporary server that never runs anything
    if problem is not None:
        _fail(*problem, code=1)
    from flows.deployments import ingest_deployment, rescore_deployment, spot_check_deployment

    try:
        deployments = [
            ingest_deployment(
                source,
                thresholds_dir=thresholds_dir,
                cron=cron,
                timezone=site.timezone,
                name=name,
                write_back=write_back,
                workers=workers,
                dask_address=dask_address,
                threads=threads,
            )
        ]
        if rescore_cron.strip().lower() != "off":
            deployments.append(
                rescore_deployment(
                    thresholds_dir=thresholds_dir,
                    cron=rescore_cron,
                    timezone=site.timezone,
                    limit=rescore_limit,
                    workers=workers,
                    dask_address=dask_address,
                    threads=threads,
                )
            )
        if spot_check_cron.strip().lower() != "off":
            deployments.append(
                spot_check_deployment(thresholds_dir=thresholds_dir, cron=spot_check_cron, timezone=site.timezone)
            )
    except ConfigError as exc:
        _fail(str(exc), "Dask 选项无效", code=2)
    except ValueError as exc:  # an invalid cron expression
        _fail(" ".join(str(exc).split())[:300], "定时计划（cron）无效", code=2)
    from flows.serving import serve_until_signal

    def started() -> None:
        names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
        click.echo(f"正在按计划运行 / serving: {names} (Ctrl-C or SIGTERM stops / 停止)", err=False)

    serve_until_signal(deployments, started=started)
    click.echo("已停止 / stopped", err=True)


@main.command()
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False),
    help="Thresholds folder (default: the shipped thresholds/).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), help="At most N studies, the most recently stored first (default: all)."
)
@_dask_options
@click.option("-v", "--verbose", is_flag=True, help="Show Prefect's and the pipeline's logs.")
def rescore(
    db_url: str | None,
    thresholds_dir: str | None,
    limit: int | None,
    workers: int | None,
    dask_address: str | None,
    threads: int | None,
    verbose: bool,
) -> None:
    """Judge again every stored study decided with other thresholds or model versions, reading
    it from its source (what the nightly schedule of `serve` does).

    阈值或模型版本更新后，从数据源重新读取并质控已保存的检查（即 serve 每晚的重新质控）。
    """
    from qc_pipeline.errors import ConfigError, QCError
    from qc_pipeline.pipeline import load_pipeline_thresholds

    _check_dask_options(workers, dask_address, threads)
    try:
        load_pipeline_thresholds(thresholds_dir)
    except ConfigError as exc:
        _fail(str(exc), "质控阈值文件无效", code=2)
    # opens (and migrates) the database, or exits 1; a missing SQLite file is an error: nothing to re-score
    _store_results(db_url, read=True, study_instance_uid="-")
    started = time.monotonic()
    _quiet_prefect(verbose)
    from flows import rescore_flow
    from flows.qc_flow import RunIncomplete

    try:
        with _prefect_api_errors(), _without_heartbeats():
            summary = rescore_flow.rescore(
                db_url=db_url_for(db_url),
                thresholds_dir=thresholds_dir,
                workers=workers,
                dask_address=dask_address,
                limit=limit,
                threads=threads,
            )
    except RunIncomplete as exc:
        _fail(str(exc), "部分检查未能重新质控（数据源或数据库故障），下次运行将自动重试")
    except ConfigError as exc:
        _fail(str(exc), "质控配置无效", code=2)
    except QCError as exc:
        _fail(str(exc).splitlines()[0], "重新质控未能完成")
    click.echo(
        f"完成 / done: {summary['stale']} 项需重新质控 to re-score, {summary['judged']} 已质控 judged, "
        f"{summary['missing']} 已不在数据源 missing, {summary['failed']} 失败 failed "
        f"({time.monotonic() - started:.1f} s)"
    )


@main.command()
@click.option("--source", help="The source to probe: a folder or DICOMweb URL (default: none probed).")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False),
    help="Thresholds folder (default: the shipped thresholds/).",
)
@click.option(
    "--models",
    "models_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models folder (default: $QC_MODELS_DIR, else the shipped models: models/ in a checkout).",
)
@click.option(
    "--secret-block",
    help="Prefect Secret block holding the DICOMweb credentials, as for serve (default: $QC_DICOMWEB_SECRET_BLOCK).",
)
@click.option(
    "--work-pool",
    help="Prefect work pool that must exist (default: $QC_WORK_POOL; none checked).",
    envvar="QC_WORK_POOL",
)
@click.option(
    "--min-free-gb",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Free space the data directory needs.",
)
def doctor(
    source: str | None,
    db_url: str | None,
    thresholds_dir: str | None,
    models_dir: Path | None,
    secret_block: str | None,
    work_pool: str | None,
    min_free_gb: float,
) -> None:
    """Check configuration, database and migrations, source, models, Prefect API and disk space;
    one line per check, with how to fix each problem. Exit 1 on any problem.

    检查配置、数据库及迁移、数据源、AI 模型、Prefect 服务与磁盘空间；每项一行，并说明如何修复。
    """
    from qc_pipeline.doctor import run_checks
    from qc_pipeline.sources.dicomweb import SECRET_BLOCK_ENV

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if secret_block:  # the source is probed with the credentials serve will use
        os.environ[SECRET_BLOCK_ENV] = secret_block
    checks = run_checks(
        source=source,
        db_url=resolve_db_url(db_url),
        thresholds_dir=thresholds_dir,
        models_dir=models_dir,
        work_pool=work_pool,
        min_free_gib=min_free_gb,
    )
    for check in checks:
        click.echo(check.line())
    problems = sum(not c.ok for c in checks)
    click.echo(f"{problems} 个问题 / {problems} problem(s)" if problems else "一切正常 / all ok")
    sys.exit(1 if problems else 0)


@main.command(name="thresholds")
@click.option("--dir", "thresholds_dir", type=click.Path(file_okay=False), help="Thresholds folder to validate.")
def thresholds_cmd(thresholds_dir: str | None) -> None:
    """Validate the thresholds and list every rule with its source. 校验并列出质控规则。"""
    from qc_pipeline.errors import ConfigError
    from qc_pipeline.pipeline import load_pipeline_thresholds

    try:
        thresholds = load_pipeline_thresholds(thresholds_dir)
    except ConfigError as exc:
        _fail(str(exc), "质控阈值文件无效", code=2)
    click.echo(f"thresholds {thresholds.version} ({thresholds.directory}) — site time zone {thresholds.site.timezone}")
    for rule in sorted(thresholds.rules.values(), key=lambda r: r.id):
        limit = "" if rule.limit is None else f" limit={rule.limit:g} {rule.units}"
        state = "" if rule.enabled else " [disabled]"
        click.echo(f"  {rule.id:45} {rule.severity:7}{limit}{state}  — {rule.source}")


@main.command()
@click.option(
    "--thresholds", "thresholds_dir", type=click.Path(file_okay=False), help="Thresholds folder (items/ inside)."
)
@click.option("--modality", type=click.Choice(["DR", "CT", "MR"]), help="Only this modality.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: fitted to the terminal (full rows into a file); json: every field.",
)
@click.option(
    "--lang", type=click.Choice(["zh", "en"]), default=default_lang, help="Language of the names and requirements."
)
def items(thresholds_dir: str | None, modality: str | None, fmt: str, lang: str) -> None:
    """Print the recognition-item catalog with each item's requirements. 打印互认项目目录及要求。"""
    from qc_pipeline.errors import ConfigError
    from qc_pipeline.pipeline import load_pipeline_thresholds

    try:
        catalog = load_pipeline_thresholds(thresholds_dir).catalog
    except ConfigError as exc:
        _fail(str(exc), "互认项目目录无效", code=2)
    selected = [i for i in catalog.items if modality is None or i.modality == modality]
    if fmt == "json":
        click.echo(
            json.dumps([i.model_dump(mode="json", exclude_none=True) for i in selected], ensure_ascii=False, indent=2)
        )
        return
    from qc_pipeline.cli_table import Column, print_table

    lists = "; ".join(
        f"{info.name_zh if lang == 'zh' else info.name_en} ({info.id} {info.version})" for info in catalog.lists
    )
    columns = [
        Column("code", "代码 code", wrap=False),
        Column("modality", "类型 mod.", wrap=False),
        Column("name", "名称 name", min_width=12),
        Column("side", "侧别 side", wrap=False),
        Column("requires", "要求 requires", min_width=20),
    ]
    cells = [
        {
            "code": item.code,
            "modality": item.modality,
            "name": item.name_zh if lang == "zh" else item.name_en,
            "side": item.laterality or "",
            "requires": _requirements_text(item, lang),
        }
        for item in selected
    ]
    print_table(f"互认项目 / recognition items — {lists}", columns, cells, show_lines=False)
    click.echo(f"{len(selected)} 项 items")


def _requirements_text(item: Any, lang: str) -> str:
    req = item.requires
    parts = []
    if req.views:
        parts.append(" + ".join("/".join(group) for group in req.views.groups))
    if req.plain_series:
        parts.append("平扫" if lang == "zh" else "plain")
    if req.post_contrast_phases:
        phases = req.post_contrast_phases
        named = " + ".join("/".join(group) for group in phases.named)
        parts.append(
            (f"增强≥{phases.min}期" if lang == "zh" else f">= {phases.min} post-contrast phases")
            + (f" ({named})" if named else "")
        )
    if req.sequences:
        if req.sequences.required:
            parts.append(", ".join(s.label_zh if lang == "zh" else s.label_en for s in req.sequences.required))
        if req.sequences.alternatives:
            parts.append(
                (" 或 " if lang == "zh" else " or ").join(
                    a.label_zh if lang == "zh" else a.label_en for a in req.sequences.alternatives
                )
            )
    if req.min_planes:
        parts.append(f"≥{req.min_planes.value:g} planes")
    if req.post_contrast_t1_planes:
        parts.append(f"post-contrast T1 ≥{req.post_contrast_t1_planes.value:g} planes")
    if req.max_slice_thickness_mm:
        parts.append(f"≤{req.max_slice_thickness_mm.value:g} mm")
    return "; ".join(parts)


@main.command(name="samples")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def samples_cmd(out_dir: Path) -> None:
    """Write one complete study per recognition item (Chinese, English and vendor spellings) and
    the defective variants, to OUT_DIR, and the real-world naming cases to OUT_DIR/real_world.
    为每个互认项目生成一套完整样例检查（含缺陷样例），并在 real_world/ 下生成真实命名样例。"""
    from qc_pipeline.pipeline import load_pipeline_thresholds
    from qc_pipeline.samples.catalog_studies import write_catalog_set
    from qc_pipeline.samples.real_world import write_real_world_set

    catalog = load_pipeline_thresholds().catalog
    cases = write_catalog_set(out_dir, catalog.items)
    defects = [c for c in cases if c.defect]
    real_world = write_real_world_set(out_dir / "real_world", catalog.items)
    click.echo(
        f"样例检查 / sample studies: {len(cases) - len(defects)} 项目 items + {len(defects)} 缺陷 defective → {out_dir}"
    )
    click.echo(
        f"真实命名样例 / real-world names (off-list exams, combined orders, DR views): {len(real_world)} → {out_dir / 'real_world'}"
    )
    click.echo(
        f"质控 / judge them: qc-pipeline run {out_dir}  (or only the real-world names: qc-pipeline run {out_dir / 'real_world'})"
    )


@main.group()
def institutions() -> None:
    """The institution register (who may be recognised). 互认机构名录。

    The register is a file (default thresholds/institutions/institutions.yaml, or $QC_INSTITUTIONS),
    edited by the QC centre's administrator after each evaluation and reviewed like the thresholds.
    """


@institutions.command("list")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: fitted to the terminal (full rows into a file); json: every field.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Qualification on this day (YYYY-MM-DD; default: today on the site clock).",
)
def institutions_list(fmt: str, as_of: dt.datetime | None) -> None:
    """List the institutions, their level, region, ownership and qualification. 列出互认机构。"""
    from qc_pipeline.eligibility import EligibilityPolicy
    from qc_pipeline.errors import ConfigError

    try:
        policy = EligibilityPolicy.current(as_of=None if as_of is None else as_of.date())
    except ConfigError as exc:
        _fail(str(exc), "互认机构名录无效", code=2)
    register, day = policy.register, policy.as_of
    rows: list[dict[str, Any]] = []
    for inst in register.institutions:
        check = register.qualification_check(inst, day)
        region = register.region(inst.region)
        rows.append(
            {
                "name": inst.name,
                "name_en": inst.name_en,
                "aliases": list(inst.aliases),
                "level": inst.level,
                "region": inst.region,
                "region_zh": region.name_zh,
                "public": inst.public,
                "qualified": check.qualified,
                "qualification": check.message,
                "qualification_zh": check.message_zh,
                "as_of": day.isoformat(),
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from qc_pipeline.cli_table import Column, print_table

    columns = [
        Column("name", "机构 institution", min_width=16, short=lambda v: v.split("\n", 1)[0]),
        Column("level", "级别 level", wrap=False),
        Column("region", "地区 region", wrap=False),
        Column("public", "公立 public", wrap=False),
        Column("qualified", f"互认资格 qualified ({day.isoformat()})", min_width=20),
    ]
    cells = [
        {
            "name": f"{r['name']}\n{r['name_en']}".strip(),
            "level": r["level"],
            "region": r["region_zh"],
            "public": "是 yes" if r["public"] else "否 no",
            "qualified": ("✓ " if r["qualified"] else "✗ ") + r["qualification_zh"],
        }
        for r in rows
    ]
    # a narrow terminal keeps the Chinese name (the register's own) and gives up the region
    print_table(
        f"互认机构名录 / institution register ({register.version}; {day.isoformat()})",
        columns,
        cells,
        steps=[("short", "name"), ("drop", "region")],
    )


if __name__ == "__main__":  # pragma: no cover
    main()
