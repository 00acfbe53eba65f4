"""The biannual evaluation report per institution (the QC centre evaluates at least twice a year, seed 002 §6.2): assemble and write it.

``write_report(store, period, out_dir)`` reads the results database only (plus the limits of
``thresholds/`` for the metric plots and ``thresholds/evaluation/qualification.yaml`` for the rule
and the fees), computes every table (``tables``), writes the sentences from cells of those tables,
draws the figures (``plots``) and writes HTML, PDF and XLSX (``render``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qc_pipeline.report import plots
from qc_pipeline.report.config import EvaluationConfig, load_evaluation_config
from qc_pipeline.report.data import ReportData, load_report_data
from qc_pipeline.report.labels import pick, word
from qc_pipeline.report.period import Period
from qc_pipeline.report.render import Figure, ReportDocument, Section, facts, fmt, render_html, write_pdf, write_xlsx
from qc_pipeline.report.tables import Scope, Table, build_tables
from qc_pipeline.rules.schema import Rule
from qc_pipeline.store import ResultStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    html: Path
    pdf: Path | None
    xlsx: Path
    tables: dict[str, Table]


def _ref(key: str, lang: str) -> str:
    return pick(f"（表 {key}）", f" (table {key})", lang)


def _v(table: Table, column: str, kind: str | None = None, **where: Any) -> str:
    col = table.columns[table.index(column)]
    return fmt(table.cell(column, **where), kind or col.kind)


def _many(n: object, one: str, many: str) -> str:
    """``1 study``, ``2 studies``: English count and noun."""
    return f"{n} {one if str(n) == '1' else many}"


def _overview_sentence(t: dict[str, Table], g: str, lang: str, period: Period) -> str:
    t01 = t["T01"]
    a = {
        k: _v(t01, k, institution=g)
        for k in ("studies", "judged", "pass_rate", "prev_pass_rate", "change", "fail", "review")
    }
    before = t01.cell("prev_pass_rate", institution=g) is not None
    if lang == "zh":
        trend = f"（上期 {a['prev_pass_rate']}%，变化 {a['change']} 个百分点）" if before else "（上期无参评检查）"
        return (
            f"{period} 共 {a['studies']} 例检查，参评 {a['judged']} 例，合格率 {a['pass_rate']}%{trend}；"
            f"不合格 {a['fail']} 例，待复核 {a['review']} 例{_ref('T01', lang)}。"
        )
    trend = (
        f" (previous period {a['prev_pass_rate']}%, change {a['change']} points)"
        if before
        else " (no judged study in the previous period)"
    )
    return (
        f"In {period}: {_many(a['studies'], 'study', 'studies')}, {a['judged']} judged, pass rate {a['pass_rate']}%{trend}; "
        f"{a['fail']} failed, {a['review']} awaiting review{_ref('T01', lang)}."
    )


def _fee_sentence(t: dict[str, Table], g: str, config: EvaluationConfig, lang: str) -> str:
    t14, t15 = t["T14"], t["T15"]
    parts = []
    for s in config.fees.schemes:
        try:
            yuan = _v(t14, "yuan", institution=g, scheme=s.id)
            n, missing = (
                _v(t14, "exposed", institution=g, scheme=s.id),
                _v(t14, "not_uploaded", institution=g, scheme=s.id),
            )
        except KeyError:
            continue
        mods = "+".join(s.modalities)
        parts.append(
            pick(
                f"{s.name_zh}（{mods}）：涉及 {n} 例（其中未上传 {missing} 例），"
                + (f"扣减 {yuan} 元" if yuan != "—" else "非公立机构，不计扣减"),
                f"{s.name_en} ({mods}): {_many(n, 'exam', 'exams')} exposed ({missing} not uploaded), "
                + (f"{yuan} yuan" if yuan != "—" else "no deduction (not a public institution)"),
                lang,
            )
        )
    try:
        rate = t15.cell("upload_rate", institution=g)
    except KeyError:
        rate = None
    if lang == "zh":
        up = f"上传率 {fmt(rate, 'pct')}%（表 T15）" if rate is not None else "未导入医院检查登记，上传率未知"
        return f"数字影像存储与调阅：{up}；{'；'.join(parts)}（两种口径分列，不相加）{_ref('T14', lang)}。"
    up = (
        f"upload rate {fmt(rate, 'pct')}% (table T15)"
        if rate is not None
        else "no exam log imported, upload rate unknown"
    )
    return (
        f"Digital storage and retrieval: {up}; {'; '.join(parts)} (the schemes apart, never added){_ref('T14', lang)}."
    )


def _timeliness_sentence(t: dict[str, Table], g: str, lang: str) -> str:
    t08 = t["T08"]
    median, within = _v(t08, "median_h", institution=g), _v(t08, "within_pct", institution=g)
    very = _v(t08, "very_late_pct", institution=g)
    if lang == "zh":
        return f"上传延迟中位数 {median} 小时，{within}% 在时限内上传，{very}% 严重超时{_ref('T08', lang)}。"
    return f"Median upload delay {median} h; {within}% uploaded within the limit, {very}% very late{_ref('T08', lang)}."


def _top_finding_sentence(t: dict[str, Table], g: str, lang: str) -> str | None:
    t06 = t["T06"]
    try:
        code = t06.cell("rule", institution=g, rank=1)
    except KeyError:
        return None
    n, pct = _v(t06, "studies", institution=g, rank=1), _v(t06, "pct", institution=g, rank=1)
    if lang == "zh":
        return f"最常见的问题为“{code}”（{n} 例，占参评 {pct}%）{_ref('T06', lang)}。"
    return f"The most common finding is “{code}” ({_many(n, 'study', 'studies')}, {pct}% of judged){_ref('T06', lang)}."


def _qualification_sentence(t: dict[str, Table], g: str, lang: str) -> str:
    t13 = t["T13"]
    outcome = t13.cell("outcome", institution=g)
    failed = t13.cell("failed_criteria", institution=g)
    rate = _v(t13, "pass_rate", institution=g)
    minimum = _v(t13, "min_pass_rate", institution=g)
    if lang == "zh":
        tail = f"，未达标项：{failed}" if failed else ""
        return f"互认质控评价：{outcome}（合格率 {rate}%，下限 {minimum}%{tail}）{_ref('T13', lang)}。"
    tail = f"; criteria not met: {failed}" if failed else ""
    return f"Evaluation: {outcome} (pass rate {rate}%, minimum {minimum}%{tail}){_ref('T13', lang)}."


def _recognition_sentence(t: dict[str, Table], g: str, lang: str) -> str:
    """The whole scope's recognitions: the rate with its counts, the repeat exams avoided, the top reason."""
    t18, t20 = t["T18"], t["T20"]
    if not t18.rows:
        return pick(
            "互认实施：本期无互认记录（表 T18）。",
            "Recognition applied: no recognition recorded in this period (table T18).",
            lang,
        )
    a = {k: _v(t18, k, institution=g) for k in ("visits", "recognised", "not_recognised", "rate", "fraction")}
    top = max(t20.rows, key=lambda r: r[t20.index("count")], default=None)  # rows in list order: the first of a tie
    reason, n = (top[t20.index("reason")], top[t20.index("count")]) if top is not None else (None, 0)
    if lang == "zh":
        most = f"，最常见原因为“{reason}”（{n} 次）" if reason is not None else ""
        return (
            f"互认实施：本期就诊 {a['visits']} 次调阅既往结果，已互认 {a['recognised']} 次（互认率 {a['rate']}%，"
            f"{a['fraction']}），即避免重复检查 {a['recognised']} 次；未互认 {a['not_recognised']} 次{most}（表 T18、T20）。"
        )
    most = f", most often “{reason}” ({n})" if reason is not None else ""
    return (
        f"Recognition applied: {_many(a['visits'], 'visit', 'visits')}, {a['recognised']} recognised (rate {a['rate']}%, "
        f"{a['fraction']}), i.e. {_many(a['recognised'], 'repeat exam', 'repeat exams')} avoided; "
        f"{a['not_recognised']} not recognised{most} (tables T18, T20)."
    )


def _institution_recognition_sentence(t: dict[str, Table], g: str, lang: str) -> str:
    """One institution as the receiving hospital (T18) and as the one whose exams were offered (T19)."""
    parts = []
    for key, zh, en in (
        ("T18", "作为接收机构互认", "as the receiving hospital it recognised"),
        ("T19", "本机构的检查被互认", "its exams were recognised"),
    ):
        try:
            rate, fraction = _v(t[key], "rate", institution=g), _v(t[key], "fraction", institution=g)
        except KeyError:
            continue
        parts.append(pick(f"{zh} {fraction}（{rate}%）", f"{en} {fraction} ({rate}%)", lang))
    if not parts:
        return pick(
            "互认实施：本期无本机构的互认记录（表 T18、T19）。",
            "Recognition applied: no recognition recorded for this institution in this period (tables T18, T19).",
            lang,
        )
    return pick(
        f"互认实施：{'；'.join(parts)}（表 T18、T19）。",
        f"Recognition applied: {'; '.join(parts)} (tables T18, T19).",
        lang,
    )


def _region_summary(
    t: dict[str, Table], scope: Scope, config: EvaluationConfig, data: ReportData, lang: str
) -> list[str]:
    g = scope.label_all
    paragraphs = [_overview_sentence(t, g, lang, data.period)]
    t13 = t["T13"]
    outcomes = [row[t13.index("outcome")] for row in t13.rows]
    losing = [row[0] for row in t13.rows if row[t13.index("outcome")] == word("not_qualified", lang)]
    counts = {k: outcomes.count(word(k, lang)) for k in ("qualified", "not_qualified", "insufficient_data")}
    if lang == "zh":
        text = (
            f"{len(outcomes)} 家机构中，{counts['qualified']} 家评价合格，{counts['not_qualified']} 家不合格（建议卫生健康行政部门暂停其互认），"
            f"{counts['insufficient_data']} 家数据不足未评定"
        )
        text += f"；不合格：{'、'.join(losing)}" if losing else ""
    else:
        few = counts["insufficient_data"]
        text = (
            f"Of {_many(len(outcomes), 'institution', 'institutions')}, {counts['qualified']} passed the evaluation, "
            f"{counts['not_qualified']} failed it (suspension of recognition recommended to the health administration) "
            f"and {few} {'has' if few == 1 else 'have'} too few studies to be evaluated"
        )
        text += f"; failed: {', '.join(losing)}" if losing else ""
    paragraphs.append(text + _ref("T13", lang) + pick("。", ".", lang))
    paragraphs.append(_fee_sentence(t, g, config, lang))
    paragraphs.append(_timeliness_sentence(t, g, lang))
    if (top := _top_finding_sentence(t, g, lang)) is not None:
        paragraphs.append(top)
    paragraphs.append(_recognition_sentence(t, g, lang))
    for key in ("T10", "T12"):
        if not t[key].rows:
            empty = t[key].empty(lang)
            paragraphs.append(empty[:1].upper() + empty[1:] + _ref(key, lang) + pick("。", ".", lang))
    if data.undated:
        paragraphs.append(
            pick(
                f"另有 {data.undated} 例检查缺少检查日期，未归入任何评估期。",
                f"{_many(data.undated, 'more study has', 'more studies have')} no study date and belong"
                f"{'s' if data.undated == 1 else ''} to no period.",
                lang,
            )
        )
    return paragraphs


def _figures(
    scope: Scope,
    data: ReportData,
    t: dict[str, Table],
    rules: dict[str, list[Rule]],
    config: EvaluationConfig,
    very_late_h: float,
    lang: str,
) -> dict[str, Figure]:
    figures = {
        "verdicts": Figure(
            "verdicts", pick("本期质控结论构成", "Verdicts of the period", lang), plots.verdict_bars(scope, lang), "T01"
        ),
        "trend": Figure(
            "trend",
            pick("月度合格率（虚线左侧为上期）", "Monthly pass rate (previous period left of the dotted line)", lang),
            plots.monthly_lines(t["T04"], scope, data.period.previous.months() + data.period.months(), lang),
            "T04",
        ),
    }
    if (svg := plots.metric_boxes(scope, data, rules, lang)) is not None:
        figures["metrics"] = Figure(
            "metrics",
            pick(
                "关键指标按机构的箱线图（虚线：复核黄、不合格红限值）",
                "Key metrics per institution (dashed: review amber, fail red limits)",
                lang,
            ),
            svg,
            "T07",
        )
    if (svg := plots.delay_boxes(scope, (config.fees.max_upload_delay_h, very_late_h), lang)) is not None:
        figures["delay"] = Figure(
            "delay",
            pick("上传延迟分布（虚线：时限与 72 小时）", "Upload delay (dashed: the limit and 72 h)", lang),
            svg,
            "T08",
        )
    return figures


def build_document(
    data: ReportData,
    config: EvaluationConfig,
    rules: dict[str, list[Rule]],
    *,
    lang: str,
    institution: str | None = None,
    very_late_h: float = 72.0,
    zone: dt.tzinfo | None = None,
) -> tuple[ReportDocument, Scope]:
    scope, t = build_tables(data, config, rules, lang, institution, very_late_h)
    figs = _figures(scope, data, t, rules, config, very_late_h, lang)
    sec = [
        Section("qualification", pick("互认质控评价", "Evaluation for mutual recognition", lang), (), (t["T13"],)),
        Section(
            "volumes",
            pick("检查量与质控结论", "Volumes and verdicts", lang),
            (),
            (t["T01"], t["T02"], t["T03"]),
            (figs["verdicts"],),
        ),
        Section("trend", pick("趋势", "Trend", lang), (), (t["T04"],), (figs["trend"],)),
        Section("reasons", pick("问题原因", "Failure reasons", lang), (), (t["T05"], t["T06"])),
        Section(
            "metrics",
            pick("图像质量指标与限值", "Image-quality metrics against limits", lang),
            (),
            (t["T07"],),
            tuple(f for k, f in figs.items() if k == "metrics"),
        ),
        Section(
            "timeliness",
            pick("及时性与完整性", "Timeliness and completeness", lang),
            (),
            (t["T08"], t["T09"]),
            tuple(f for k, f in figs.items() if k == "delay"),
        ),
        Section(
            "review",
            pick("医师复核、AI 一致性与抽查", "Reviews, AI agreement and spot checks", lang),
            (),
            (t["T10"], t["T11"], t["T17"], t["T12"]),
        ),
        Section("uploads", pick("上传完整性", "Upload completeness", lang), (), (t["T15"], t["T16"])),
        Section("recognition", pick("互认实施情况", "Recognition applied", lang), (), (t["T18"], t["T19"], t["T20"])),
        Section("fees", pick("费用影响", "Fee exposure", lang), (), (t["T14"],)),
    ]
    for g in scope.institutions:
        paragraphs = [
            _overview_sentence(t, g, lang, data.period),
            _qualification_sentence(t, g, lang),
            _fee_sentence(t, g, config, lang),
            _timeliness_sentence(t, g, lang),
        ]
        if (top := _top_finding_sentence(t, g, lang)) is not None:
            paragraphs.append(top)
        paragraphs.append(_institution_recognition_sentence(t, g, lang))
        sec.append(
            Section(
                f"inst-{len(sec)}",
                f"{pick('机构', 'Institution', lang)}：{g}" if lang == "zh" else f"Institution: {g}",
                tuple(paragraphs),
                (t["T05"], t["T06"]),
                rows_of=g,
                page_break=True,
            )
        )
    doc = ReportDocument(
        lang=lang,
        title=pick(
            "医学影像检查结果互认质控评估报告",
            "Evaluation report: quality control for the mutual recognition of imaging results",
            lang,
        ),
        subtitle=data.period.label(lang) + (f" · {institution}" if institution else ""),
        facts=facts(data, config, lang, institution, zone),
        summary=tuple(_region_summary(t, scope, config, data, lang)),
        sections=tuple(sec),
        tables=t,
    )
    return doc, scope


def _slug(text: str) -> str:
    return re.sub(r"[^\w\-]+", "_", text).strip("_") or "institution"


class EmptyPeriodError(ValueError):
    """No study has a study date in the period: there is nothing to evaluate (no report is written)."""

    def __init__(self, period: Period) -> None:
        super().__init__(f"no study in {period} ({period.start} – {period.end}): there is no data to report")
        self.message_zh = f"{period}（{period.start} – {period.end}）无检查数据，未生成报告"


def write_report(
    store: ResultStore,
    period: Period,
    out_dir: Path,
    *,
    lang: str = "zh",
    institution: str | None = None,
    thresholds_dir: Path | None = None,
    pdf: bool = True,
) -> ReportFiles:
    """Write ``evaluation-<period>[-<institution>]-<lang>.{html,pdf,xlsx}`` to ``out_dir``."""
    from qc_pipeline.checks.image_quality import rules_by_metric
    from qc_pipeline.rules import load_thresholds

    if lang not in ("zh", "en"):
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
    config = load_evaluation_config(thresholds_dir)
    thresholds = load_thresholds(thresholds_dir)  # the limits only: no check wiring needed
    rules = rules_by_metric(thresholds)
    very_late = thresholds.limit("timeliness.upload_delay.very_late")
    data = load_report_data(store, period, zone=thresholds.site.tzinfo())
    if institution is not None:  # any spelling of a registered institution names it
        from qc_pipeline.institutions import default_register

        institution = default_register().canonical(institution)
    if institution is not None and not any(s.institution == institution for s in data.studies):
        known = sorted({s.institution for s in data.studies if s.institution})
        raise ValueError(
            f"no study of institution {institution!r} in {period} or {period.previous}; "
            f"institutions with studies: {', '.join(known) or 'none'}"
        )
    if not any(s.study_date is not None and period.contains(s.study_date) for s in data.studies):
        raise EmptyPeriodError(period)
    doc, scope = build_document(
        data, config, rules, lang=lang, institution=institution, very_late_h=very_late, zone=thresholds.site.tzinfo()
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"evaluation-{period}" + (f"-{_slug(institution)}" if institution else "") + f"-{lang}"
    html = render_html(doc, scope)
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(html, encoding="utf-8")
    xlsx_path = out_dir / f"{stem}.xlsx"
    write_xlsx(list(doc.tables.values()), xlsx_path, lang=lang, facts=doc.facts)
    pdf_path = None
    if pdf:
        pdf_path = out_dir / f"{stem}.pdf"
        write_pdf(html, pdf_path)
    logger.info("report %s written to %s", stem, out_dir)
    return ReportFiles(html_path, pdf_path, xlsx_path, doc.tables)
