"""``qc-pipeline spot-check``: draw, verify, export, import, summary (cross-region spot checks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from qc_pipeline.cli_common import DB_OPTION_HELP
from qc_pipeline.cli_common import fail as _fail

DB_HELP = DB_OPTION_HELP
UNDERFILLED_SHOWN = 20
SHARE_WIDTH = 9
"""Narrowest column for a share: it wraps at its spaces ("100% (80–100) 5/5"), never inside a number."""
CONFIG_HELP = "Spot-check configuration (default: thresholds/spot_check/spot_check.yaml or $QC_SPOT_CHECK_CONFIG)."


@contextmanager
def _opened(db_url: str | None, config_path: str | None) -> Iterator[tuple[Any, Any, bytes]]:
    """The store, the configuration and the pseudonym key, or a bilingual error and exit."""
    from qc_pipeline.errors import ConfigError, SpotCheckError, StoreError
    from qc_pipeline.spotcheck.blinding import pseudonym_key
    from qc_pipeline.spotcheck.config import load_config
    from qc_pipeline.store import ResultStore

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail(str(exc), "抽查配置文件无效", code=2)
    from qc_pipeline.cli import db_url_for

    # Every spot-check command works on judged studies: a database that does not exist is a
    # mistyped path, not a new empty one (``postgres://`` URLs are accepted as elsewhere).
    url = db_url_for(db_url, read=True)
    try:
        key = pseudonym_key(url)
    except ConfigError as exc:
        _fail(str(exc), "假名密钥无效", code=2)
    try:
        store = ResultStore.open(url)
    except StoreError as exc:
        _fail(str(exc), "无法打开结果数据库")
    try:
        yield store, config, key
    except SpotCheckError as exc:
        _fail(str(exc), "抽查操作未完成", code=2)
    except StoreError as exc:
        _fail(str(exc), "结果数据库读写失败")
    finally:
        store.close()


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)(func)
    return click.option("--db", "db_url", help=DB_HELP)(func)


def _period_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--period", required=True, help="2026-10 (month), 2026-Q4, 2026-H2 (or 2026H2) or 2026.")(func)


@click.group(name="spot-check")
def spot_check() -> None:
    """Cross-region spot checks: draw a sample, grade it blinded, compute agreement figures.

    交叉质控抽查：分层抽样、盲法分配给另一地区的审核人、计算一致性指标。
    """


@spot_check.command()
@_period_option
@click.option("--seed", help="Seed of the draw (default: 64 random bits, recorded).")
@_common
def draw(period: str, seed: str | None, db_url: str | None, config_path: str | None) -> None:
    """Draw the period's stratified sample and assign it, blinded, to reviewers of the other
    region. A period is drawn once; running it again shows the recorded draw. 抽取本期样本。"""
    from qc_pipeline.spotcheck.draw import Period
    from qc_pipeline.spotcheck.draw import draw as do_draw

    with _opened(db_url, config_path) as (store, config, key):
        report = do_draw(store, config, Period.parse(period), key=key, seed=seed)
    if report.created:
        click.echo(f"已抽取 / drawn: {report.period}")
    else:
        click.echo(f"本期已抽取，未重新抽样 / already drawn on {report.created_at:%Y-%m-%d %H:%M} UTC; not drawn again")
    click.echo(
        f"种子 seed {report.seed} · 配置 config {report.config_version} sha256:{report.config_hash[:12]} · "
        f"总体 population {report.population_size} (sha256:{report.population_digest[:12]})"
    )
    click.echo(
        f"抽中 drawn: {report.n_drawn} · 层 strata: {len(report.strata)} · 不足最小样本量 under-filled: {len(report.underfilled)}"
    )
    excluded = report.excluded
    click.echo(
        f"未纳入 not eligible: 已抽过 already drawn {excluded['already_drawn']}, "
        f"不抽样结论 verdict not sampled {sum(excluded['verdict_not_sampled'].values())}, "
        f"未配置机构 unconfigured institution {sum(excluded['unconfigured_institution'].values())}"
    )
    for name, n in excluded["unconfigured_institution"].items():
        click.echo(f"  未配置机构 unconfigured: {name} ({n}) — add it to the spot-check configuration")
    for s in report.underfilled[:UNDERFILLED_SHOWN]:
        click.echo(f"  不足 under-filled: {s.stratum}: {s.population} < minimum, all drawn")
    if len(report.underfilled) > UNDERFILLED_SHOWN:
        click.echo(
            f"  … {len(report.underfilled) - UNDERFILLED_SHOWN} more: qc-pipeline spot-check draw --period {period} shows the draw"
        )
    click.echo("分配 assignments: " + ", ".join(f"{r} {n}" for r, n in report.assignments.items()))


@spot_check.command()
@_period_option
@_common
def verify(period: str, db_url: str | None, config_path: str | None) -> None:
    """Re-draw the period from its recorded seed and population and compare (audit). 复核抽样可重现。"""
    from qc_pipeline.spotcheck.draw import verify as do_verify

    with _opened(db_url, config_path) as (store, _config, _key):
        result = do_verify(store, period)
    if result.ok:
        click.echo(f"可重现 / reproduced: {period}: {result.n_drawn} of {result.population_size} drawn, identical")
        return
    _fail("; ".join(result.problems), f"{period} 的抽样无法重现")


@spot_check.command()
@_period_option
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The .xlsx file to write."
)
@click.option("--reviewer", help="Only this reviewer's assignments (default: all).")
@_common
def export(period: str, out: Path, reviewer: str | None, db_url: str | None, config_path: str | None) -> None:
    """Write the period's blinded assignments to a spreadsheet for grading on paper. 导出抽查表。"""
    from qc_pipeline.spotcheck.spreadsheet import export_workbook

    with _opened(db_url, config_path) as (store, config, key):
        n = export_workbook(store, config, period, out, key=key, reviewer=reviewer)
    click.echo(f"已导出 / exported: {n} 行 rows → {out}")


@spot_check.command(name="import")
@click.argument("workbook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Let the workbook change grades already stored.")
@_common
def import_cmd(workbook: Path, replace: bool, db_url: str | None, config_path: str | None) -> None:
    """Read a graded spreadsheet back (all rows or none). 导入已填写的抽查表。"""
    from qc_pipeline.spotcheck.spreadsheet import import_workbook

    with _opened(db_url, config_path) as (store, config, key):
        result = import_workbook(store, config, workbook, key=key, replace=replace)
    counts: dict[str, int] = {}
    for outcome in result.outcomes.values():
        counts[str(outcome)] = counts.get(str(outcome), 0) + 1
    click.echo(
        f"已导入 / imported {result.period}: 新增 inserted {counts.get('inserted', 0)}, 更新 updated "
        f"{counts.get('updated', 0)}, 未变 unchanged {counts.get('unchanged', 0)}, 未填 blank {result.blank}"
    )


@spot_check.command()
@_period_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: fitted to the terminal (full rows into a file); json: every figure of the summary.",
)
@_common
def summary(period: str, fmt: str, db_url: str | None, config_path: str | None) -> None:
    """Compute, store and print the period's agreement figures (every draw within the period).
    计算并保存本期一致性指标（Kappa 及置信区间、fail 的灵敏度与特异度、地区间一致性、机构不一致率、检出率）。"""
    from qc_pipeline.spotcheck.figures import summarise

    with _opened(db_url, config_path) as (store, config, _key):
        figures = summarise(store, config, period)
    if fmt == "json":
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    print_summary(figures)


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _kappa_text(k: dict[str, Any]) -> str:
    from qc_pipeline.spotcheck.stats import MIN_KAPPA_N

    if k.get("n") is not None and k["n"] < MIN_KAPPA_N:
        return f"样本过少 too few (n = {k['n']} < {MIN_KAPPA_N})"
    if k.get("value") is None:
        return "— (undefined)"
    return f"{k['value']:.2f} ({k['ci'][0]:.2f}–{k['ci'][1]:.2f})"


def _share_text(s: dict[str, Any]) -> str:
    if s.get("p") is None:
        return "—"
    return f"{100 * s['p']:.0f}% ({100 * s['ci'][0]:.0f}–{100 * s['ci'][1]:.0f}) {s['k']}/{s['n']}"


def print_summary(f: dict[str, Any]) -> None:
    from qc_pipeline.cli import _console
    from qc_pipeline.cli_table import Column, print_table

    console = _console()
    draws = ", ".join(f"{d['period']} (seed {d['seed']}, {d['n_drawn']}/{d['population_size']})" for d in f["draws"])
    p = f["progress"]
    console.print(f"抽查汇总 / Spot-check summary {f['period']} — 抽样 draws: {draws}")
    console.print(
        f"进度 progress: 抽中 drawn {p['drawn']}, 分配 assignments {p['assignments']}, 已评 graded {p['graded']}"
    )
    rows = [("全部 all", f["machine_vs_reviewer"])]
    rows += [
        (f"{r['name']['zh']} {r['name']['en']}" if r.get("name") else code, r) for code, r in f["by_region"].items()
    ]
    print_table(
        "机器结论 vs 跨地区复核 / machine verdict vs cross-region review (95% CI)",
        [
            Column("scope", "范围 scope", min_width=12),
            Column("n", "n", wrap=False),
            Column("kappa", "Kappa", min_width=16),
            Column("sens", "fail 灵敏度 sensitivity", min_width=SHARE_WIDTH),
            Column("spec", "fail 特异度 specificity", min_width=SHARE_WIDTH),
            Column("agree", "一致 agreement", min_width=SHARE_WIDTH),
        ],
        [
            {
                "scope": label,
                "n": str(r["n"]),
                "kappa": _kappa_text(r["kappa"]),
                "sens": _share_text(r["fail_sensitivity"]),
                "spec": _share_text(r["fail_specificity"]),
                "agree": _share_text(r["agreement"]),
            }
            for label, r in rows
        ],
    )
    inter = f["inter_region"]
    console.print(
        f"地区间一致性 inter-region (n={inter['n']} 双读 double-read): 可互认 Kappa recognisable "
        f"{_kappa_text(inter['recognisable_kappa'])}; 等级加权 Kappa grade (linear) "
        f"{_kappa_text(inter['grade_kappa_linear'])}; 等级一致 same grade {_share_text(inter['grade_agreement'])}"
    )
    inst_rows = []
    for i in f["institutions"]:
        region = f.get("by_region", {}).get(i["region"], {}).get("name") or {"zh": i["region"], "en": ""}
        inst_rows.append(
            {
                "institution": i["institution"],
                "region": f"{region['zh']} {region['en']}".strip(),
                "n": str(i["n"]),
                "discordance": _share_text(i["discordance"]),
                "missed": str(i["missed"]),
                "overcalled": str(i["overcalled"]),
                "not_recognisable": _share_text(i["not_recognisable"]),
            }
        )
    print_table(
        "按机构 / per institution",
        [
            Column("institution", "机构 institution", min_width=10),
            Column("region", "地区 region", min_width=6),
            Column("n", "n", wrap=False),
            Column("discordance", "不一致率 discordance", min_width=SHARE_WIDTH),
            Column("missed", "漏判 missed", wrap=False),
            Column("overcalled", "误判 over-called", wrap=False),
            Column("not_recognisable", "不可互认 not recognisable", min_width=SHARE_WIDTH),
        ],
        inst_rows,
    )
    y = f["yield"]
    by_verdict = "; ".join(f"{v} {_share_text(d['not_recognisable'])}" for v, d in y["by_verdict"].items())
    console.print(
        f"检出率 yield: 不可互认 not recognisable {_share_text(y['not_recognisable'])}; 机器漏判 missed by machine "
        f"{_share_text(y['missed_by_machine'])}; 按机器结论 by verdict: {by_verdict}"
    )
    w = f["population_weighted"]
    if w:
        console.print(
            f"按总体加权 population-weighted (N={w['population']}): Kappa {_num(w['kappa'])}, fail 灵敏度 sensitivity "
            f"{_num(w['fail_sensitivity'])}, 特异度 specificity {_num(w['fail_specificity'])}, 不可互认 not recognisable "
            f"{_num(w['not_recognisable'])}"
        )
