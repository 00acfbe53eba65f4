"""What one QC run did, as a Prefect artifact: studies judged by verdict and institution,
failures, duration and the review queue's address (``QC_REVIEW_URL``)."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter, defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from qc_pipeline.domain import VERDICT_LABELS
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord

REVIEW_URL_ENV = "QC_REVIEW_URL"
"""The review queue's address as operators open it (``qc-pipeline review`` behind its host name)."""
ARTIFACT_KEY = "qc-run-summary"
"""One artifact key: Prefect keeps every run's version of it, newest first."""
VERDICTS = ("pass", "review", "fail", "not_applicable")
UNKNOWN_INSTITUTION = "(未记录 / not recorded)"
SITE_ZONE = "Asia/Shanghai"
"""The zone of the run's time when the caller gives none (the flow passes thresholds/site.yaml's)."""


def _verdict_word(verdict: str) -> str:
    en, zh = VERDICT_LABELS.get(verdict, (verdict, verdict))
    return f"{zh} / {en}"


def verdicts_by_institution(store: ResultStore, run_id: str) -> dict[str, Counter[str]]:
    """Decisions this run stored, counted by institution and verdict."""
    stmt = (
        select(StudyRecord.institution, DecisionRecord.verdict, func.count())
        .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
        .where(DecisionRecord.run_id == run_id)
        .group_by(StudyRecord.institution, DecisionRecord.verdict)
    )
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    with store.engine.connect() as connection:
        for institution, verdict, n in connection.execute(stmt):
            counts[institution or UNKNOWN_INSTITUTION][str(verdict)] += int(n)
    return dict(sorted(counts.items()))


def run_markdown(
    summary: dict[str, Any],
    by_institution: dict[str, Counter[str]],
    failed: list[str],
    seconds: float,
    review_url: str | None = None,
    *,
    finished: dt.datetime | None = None,
    zone: str = SITE_ZONE,
) -> str:
    """The run's report in Markdown, in both languages: the title gives the run's end time in the
    site's zone (people find a run by when it ran); the run id is a line of its own."""
    verdicts: dict[str, int] = dict(summary.get("verdicts") or {})
    local = (finished or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(zone))
    lines = [
        f"# 质控运行 / QC run {local:%Y-%m-%d %H:%M} ({zone})",
        "",
        f"- 数据源 / source: `{summary['source']}` ({summary['listing']})",
        f"- 已判定 / judged: **{summary['judged']}** of {summary['studies']} listed "
        f"(未变化 / unchanged {summary['unchanged']}, 失败 / failed {len(failed)}, "
        f"他处处理中 / leased {summary['leased']})",
        f"- 用时 / duration: {seconds:.1f} s",
        f"- 阈值 / thresholds {summary['thresholds_version']}, qc-pipeline {summary['pipeline_version']}",
        f"- 运行编号 / run id: `{summary['run_id']}`",
    ]
    if fetched := int(summary.get("pixel_bytes_fetched") or 0):
        per_study = fetched / max(1, int(summary["judged"]))
        lines.append(f"- 拉取像素数据 / pixel data fetched: {fetched / 1e6:.1f} MB ({per_study / 1e6:.1f} MB / study)")
    review_url = review_url if review_url is not None else os.environ.get(REVIEW_URL_ENV)
    if review_url:
        lines.append(f"- 复核队列 / review queue: [{review_url}]({review_url})")
    lines += ["", "## 结论 / Verdicts", "", "| 结论 / verdict | 检查数 / studies |", "|---|---:|"]
    lines += [f"| {_verdict_word(v)} | {verdicts.get(v, 0)} |" for v in VERDICTS]
    lines += [
        "",
        "## 按机构 / By institution",
        "",
        "| 机构 / institution | " + " | ".join(_verdict_word(v) for v in VERDICTS) + " |",
        "|---|" + "---:|" * len(VERDICTS),
    ]
    lines += [
        f"| {name} | " + " | ".join(str(c.get(v, 0)) for v in VERDICTS) + " |" for name, c in by_institution.items()
    ]
    if failed:
        lines += ["", "## 未能判定 / Not judged (the next run retries them)", ""]
        lines += [f"- `{uid}`" for uid in failed]
    return "\n".join(lines) + "\n"


def publish_run(
    store: ResultStore, summary: dict[str, Any], failed: list[str], seconds: float, *, zone: str = SITE_ZONE
) -> str:
    """Create the run's Markdown artifact; returns its Markdown."""
    from prefect.artifacts import create_markdown_artifact

    markdown = run_markdown(summary, verdicts_by_institution(store, str(summary["run_id"])), failed, seconds, zone=zone)
    create_markdown_artifact(markdown=markdown, key=ARTIFACT_KEY, description="质控运行结果 / QC run summary")
    return markdown
