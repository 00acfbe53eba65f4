"""``qc-pipeline report`` (the biannual evaluation report) and ``qc-pipeline population``."""

from __future__ import annotations

from pathlib import Path

import click

from qc_pipeline.cli_common import DB_OPTION_HELP
from qc_pipeline.cli_common import fail as _fail
from qc_pipeline.config import default_lang


@click.command(name="population")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option("--seed", type=int, default=None, help="Seed of the population (default: the fixed population seed).")
@click.option(
    "--scale",
    type=click.FloatRange(min=0.01, max=100.0),
    default=1.0,
    show_default=True,
    help="Multiplies every institution's volume (1: about 500 studies over 2026H1 and 2026H2).",
)
def population_cmd(db_url: str | None, seed: int | None, scale: float) -> None:
    """Store a generated population of judged studies from fictional institutions in Chongqing and
    Sichuan (2026H1 and 2026H2), for reports, spot checks and calibration. Re-running adds nothing.

    生成模拟人群：川渝多家虚构医疗机构两个半年度的质控结果，写入结果库（重复运行不会重复写入）。
    """
    from qc_pipeline.cli import db_url_for
    from qc_pipeline.errors import ConfigError, StoreError
    from qc_pipeline.samples.population import POPULATION_SEED, generate_population
    from qc_pipeline.store import ResultStore

    try:
        with ResultStore.open(db_url_for(db_url)) as store:
            summary = generate_population(store, seed=POPULATION_SEED if seed is None else seed, scale=scale)
            url = store.url
    except StoreError as exc:
        _fail(str(exc), "无法写入结果数据库")
    except ConfigError as exc:
        _fail(str(exc), "质控阈值文件无效", code=2)
    outcomes = ", ".join(f"{k} {v}" for k, v in summary.outcomes.items())
    verdicts = ", ".join(f"{k} {v}" for k, v in summary.verdicts.items())
    click.echo(f"模拟检查 / generated studies: {summary.n_studies} ({outcomes}) — {verdicts}")
    click.echo(f"结果库 / results: {url}")


@click.command(name="report")
@click.option(
    "--period", "period_text", help="Half-year, e.g. 2026H2 or 2026-H2 (default: the period of the latest study)."
)
@click.option("--institution", help="Only this institution (InstitutionName as stored), beside the totals of all.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("qc-report"),
    show_default=True,
    help="Folder for the HTML, PDF and XLSX files.",
)
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Thresholds folder (limits, qualification rule and fees; default: the shipped one).",
)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=default_lang, help="Language of the report.")
@click.option("--no-pdf", is_flag=True, help="Write HTML and XLSX only.")
def report_cmd(
    period_text: str | None,
    institution: str | None,
    out_dir: Path,
    db_url: str | None,
    thresholds_dir: Path | None,
    lang: str,
    no_pdf: bool,
) -> None:
    """Write the biannual evaluation report (HTML, PDF, XLSX) from the results database.

    半年度质控评估报告：各机构检查量、合格率及趋势、问题原因、指标分布、及时性、完整性、复核与抽查、
    互认质控评价和费用影响（HTML、PDF、XLSX）。
    """
    from qc_pipeline.errors import ConfigError, StoreError
    from qc_pipeline.report.data import default_period
    from qc_pipeline.report.evaluation import EmptyPeriodError, write_report
    from qc_pipeline.report.period import Period
    from qc_pipeline.store import ResultStore

    period = None
    if period_text is not None:
        try:
            period = Period.parse(period_text)
        except ValueError as exc:
            _fail(str(exc), f"评估期 {period_text!r} 无效，应为如 2026H2 或 2026-H2", code=2)
    try:
        from qc_pipeline.cli import db_url_for

        with ResultStore.open(db_url_for(db_url, read=True)) as store:
            if period is None:
                period = default_period(store)
                if period is None:
                    _fail(
                        "the results database holds no dated study: nothing to report",
                        "结果库中没有带检查日期的检查，无法生成报告",
                    )
            assert period is not None
            files = write_report(
                store,
                period,
                out_dir,
                lang=lang,
                institution=institution,
                thresholds_dir=thresholds_dir,
                pdf=not no_pdf,
            )
    except StoreError as exc:
        _fail(str(exc), "无法读取结果数据库")
    except ConfigError as exc:
        _fail(str(exc), "质控阈值或评定规则文件无效", code=2)
    except EmptyPeriodError as exc:
        _fail(str(exc), exc.message_zh)
    except ValueError as exc:
        _fail(str(exc), "参数无效", code=2)
    click.echo(f"评估报告 / evaluation report {period}:")
    for path in (files.html, files.pdf, files.xlsx):
        if path is not None:
            click.echo(f"  {path}")


@click.group(name="exam-log")
def exam_log() -> None:
    """Hospitals' exam logs (RIS/HIS exports): the report's upload rate and exams not uploaded.

    医院检查登记（RIS/HIS 导出）：评估报告中的上传率与未上传检查。
    """


@exam_log.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def exam_log_import(files: tuple[Path, ...], db_url: str | None) -> None:
    """Import exam logs (CSV or XLSX; columns: accession, patient_id, institution, item, exam_time,
    modality — see README). Importing the same exams again adds nothing; unusable rows are listed.

    导入医院检查登记（CSV/XLSX）；重复导入不会重复写入；无法使用的行逐一列出。
    """
    from qc_pipeline.cli import db_url_for
    from qc_pipeline.errors import StoreError
    from qc_pipeline.exam_logs import ExamLogError, import_exam_log
    from qc_pipeline.store import ResultStore

    try:
        # Exam logs are matched to the judged studies of an existing results database: a mistyped
        # path must not create a second database that holds only the logs.
        with ResultStore.open(db_url_for(db_url, read=True)) as store:
            for path in files:
                result = import_exam_log(store, path)
                click.echo(
                    f"{path.name}: 读取 / read {result.read}, 新增 / added {result.inserted}, "
                    f"已有 / already stored {result.already_known}, 拒收行 / rejected rows {len(result.rejected)}"
                )
                for r in result.rejected:
                    click.echo(f"  第 {r.row} 行 / row {r.row}: {r.reason}", err=True)
    except ExamLogError as exc:
        _fail(str(exc), f"检查登记文件无法读取：{exc}")
    except StoreError as exc:
        _fail(str(exc), "结果库错误")
