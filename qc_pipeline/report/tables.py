"""The report's tables, computed from ``ReportData``: the single source of every number shown.

Each table becomes one sheet of the workbook and one table of the HTML/PDF; the sentences of the
report quote cells of these tables (``Table.cell``), so that every number in the text can be
found in the workbook. Rows start with the whole scope (``全部机构`` / ``All institutions``), then
one row per institution in code-point order.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.exam_logs import LoggedExam, UploadedStudy, institution_key, institution_public, match_exams
from qc_pipeline.labels import metric_label, rule_label
from qc_pipeline.report import drift
from qc_pipeline.report.calibration import distribution
from qc_pipeline.report.config import EvaluationConfig
from qc_pipeline.report.data import KEY_METRICS, RecognitionFact, ReportData, StudyFacts
from qc_pipeline.report.labels import pick, word
from qc_pipeline.report.period import Period
from qc_pipeline.report.qualification import Exposure, FeeExposure, fee_exposure, percent, qualify
from qc_pipeline.rules.evaluate import applicable_rules, evaluate
from qc_pipeline.rules.schema import Rule
from qc_pipeline.spotcheck.stats import MIN_KAPPA_N, cohen_kappa

VERDICTS: Final = ("pass", "review", "fail", "not_applicable")
CATEGORIES: Final = (
    "metadata",
    "integrity",
    "completeness",
    "continuity",
    "image_quality",
    "timeliness",
    "ai",
    "catalog",
)
TOP_FINDINGS_ALL: Final = 10
TOP_FINDINGS_EACH: Final = 5
NUMBER_PLACES: Final = Decimal("0.01")
AI_OPERATIONAL_CODES: Final = frozenset({"ai.model.unavailable", "ai.score.not_scored", "ai.score.error"})
"""AI findings about the scoring itself (models missing, scoring failed), not about the images."""


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str
    kind: str = "text"
    """text, int, pct (percent, one decimal), num (two decimals), yuan."""
    html: bool = True
    """False for an id column kept in the workbook (to filter and join on) but not shown to readers."""
    group: bool = False
    """In the HTML, a run of rows with the same value here is headed once by a row across the table
    instead of repeating it in a column of its own (the workbook keeps it on every row)."""

    def label(self, lang: str) -> str:
        return pick(self.zh, self.en, lang)


@dataclass(frozen=True, slots=True)
class Table:
    key: str
    """``T01``...: the sheet name and the reference used in the text."""
    title_zh: str
    title_en: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    note_zh: str = ""
    note_en: str = ""
    empty_zh: str = "本期无数据"
    empty_en: str = "no data in this period"

    def title(self, lang: str) -> str:
        return pick(self.title_zh, self.title_en, lang)

    def note(self, lang: str) -> str:
        return pick(self.note_zh, self.note_en, lang)

    def empty(self, lang: str) -> str:
        return pick(self.empty_zh, self.empty_en, lang)

    def index(self, column: str) -> int:
        for i, c in enumerate(self.columns):
            if c.key == column:
                return i
        raise KeyError(f"table {self.key} has no column {column!r}")

    def cell(self, column: str, **where: Any) -> Any:
        """The value of ``column`` in the first row whose columns equal ``where``."""
        idx = {k: self.index(k) for k in where}
        for row in self.rows:
            if all(row[i] == where[k] for k, i in idx.items()):
                return row[self.index(column)]
        raise KeyError(f"table {self.key}: no row with {where}")


@dataclass(frozen=True, slots=True)
class Scope:
    """The studies of one period split into the whole scope and each institution."""

    label_all: str
    institutions: tuple[str, ...]
    current: dict[str, list[StudyFacts]] = field(default_factory=dict)
    previous: dict[str, list[StudyFacts]] = field(default_factory=dict)

    def groups(self) -> list[str]:
        return [self.label_all, *self.institutions]


def institution_label(name: str, lang: str) -> str:
    return name or word("unknown_institution", lang)


def make_scope(data: ReportData, lang: str, institution: str | None) -> Scope:
    label_all = word("all", lang)
    period, previous = data.period, data.period.previous
    names = sorted({s.institution for s in data.studies})
    if institution is not None:
        names = [n for n in names if n == institution]
    labels = tuple(institution_label(n, lang) for n in names)
    scope = Scope(label_all, labels)
    for which, p in ((scope.current, period), (scope.previous, previous)):
        which[label_all] = [s for s in data.studies if p.contains(s.study_date)]
        for name, label in zip(names, labels, strict=True):
            which[label] = [s for s in which[label_all] if s.institution == name]
    return scope


def _num(value: float | None) -> Decimal | None:
    if value is None:
        return None
    return Decimal(repr(float(value))).quantize(NUMBER_PLACES, rounding=ROUND_HALF_UP)


def _judged(studies: Sequence[StudyFacts]) -> list[StudyFacts]:
    return [s for s in studies if s.judged]


def _count(studies: Sequence[StudyFacts], verdict: str) -> int:
    return sum(1 for s in studies if s.verdict == verdict)


def _pass_rate(studies: Sequence[StudyFacts]) -> Decimal | None:
    judged = _judged(studies)
    return percent(_count(judged, "pass"), len(judged))


def _change(now: Decimal | None, before: Decimal | None) -> Decimal | None:
    return None if now is None or before is None else now - before


def _c(key: str, zh: str, en: str, kind: str = "text", *, html: bool = True, group: bool = False) -> Column:
    return Column(key, zh, en, kind, html, group)


INSTITUTION_COLUMN: Final = _c("institution", "机构", "institution")
INSTITUTION_GROUP: Final = _c("institution", "机构", "institution", group=True)
"""The institution of a table with several rows per institution: on A4 its name heads its rows
once instead of taking a column's width on each."""


def overview(scope: Scope) -> Table:
    rows = []
    for g in scope.groups():
        cur, prev = scope.current[g], scope.previous[g]
        rate, prev_rate = _pass_rate(cur), _pass_rate(prev)
        rows.append(
            (
                g,
                len(cur),
                len(_judged(cur)),
                *(_count(cur, v) for v in VERDICTS),
                rate,
                len(prev),
                prev_rate,
                _change(rate, prev_rate),
            )
        )
    return Table(
        "T01",
        "检查量与质控结论",
        "Volumes and verdicts",
        (
            INSTITUTION_COLUMN,
            _c("studies", "检查数", "studies", "int"),
            _c("judged", "参评数", "judged", "int"),
            _c("pass", "合格", "pass", "int"),
            _c("review", "待复核", "review", "int"),
            _c("fail", "不合格", "fail", "int"),
            _c("not_applicable", "不适用", "n/a", "int"),
            _c("pass_rate", "合格率 %", "pass rate %", "pct"),
            _c("prev_studies", "上期检查数", "previous studies", "int"),
            _c("prev_pass_rate", "上期合格率 %", "previous pass rate %", "pct"),
            _c("change", "变化（百分点）", "change (points)", "pct"),
        ),
        tuple(rows),
        "参评数 = 合格 + 待复核 + 不合格（不适用不参评）；合格率 = 合格 / 参评数（机器结论）。",
        "judged = pass + review + fail (n/a is not judged); pass rate = pass / judged (machine verdicts).",
    )


def by_modality(scope: Scope) -> Table:
    rows = []
    for g in scope.groups():
        cur, prev = scope.current[g], scope.previous[g]
        for m in sorted({s.modality for s in cur} | {s.modality for s in prev}):
            c = [s for s in cur if s.modality == m]
            p = [s for s in prev if s.modality == m]
            j = _judged(c)
            rows.append(
                (
                    g,
                    m,
                    len(c),
                    len(p),
                    len(j),
                    percent(_count(j, "pass"), len(j)),
                    percent(_count(j, "review"), len(j)),
                    percent(_count(j, "fail"), len(j)),
                    _pass_rate(p),
                )
            )
    return Table(
        "T02",
        "按检查类型的检查量与结论",
        "Volumes and verdict rates by modality",
        (
            INSTITUTION_GROUP,
            _c("modality", "检查类型", "modality"),
            _c("studies", "检查数", "studies", "int"),
            _c("prev_studies", "上期检查数", "previous studies", "int"),
            _c("judged", "参评数", "judged", "int"),
            _c("pass_rate", "合格率 %", "pass %", "pct"),
            _c("review_rate", "待复核率 %", "review %", "pct"),
            _c("fail_rate", "不合格率 %", "fail %", "pct"),
            _c("prev_pass_rate", "上期合格率 %", "previous pass %", "pct"),
        ),
        tuple(rows),
    )


def by_item(scope: Scope, lang: str) -> Table:
    g = scope.label_all
    cur, prev = scope.current[g], scope.previous[g]
    keys = sorted({(s.modality, s.item_code or "") for s in cur + prev})
    rows = []
    for modality, code in keys:
        c = [s for s in cur if s.modality == modality and (s.item_code or "") == code]
        p = [s for s in prev if s.modality == modality and (s.item_code or "") == code]
        sample = (c or p)[0]
        name = (sample.item_name_zh if lang == "zh" else sample.item_name_en) if code else word("not_applicable", lang)
        rows.append(
            (modality, code or "—", name or "", len(c), len(p), *(_count(c, v) for v in VERDICTS[:3]), _pass_rate(c))
        )
    return Table(
        "T03",
        "按互认项目的检查量（全部机构）",
        "Volumes by recognition item (all institutions)",
        (
            _c("modality", "检查类型", "modality"),
            _c("item", "项目编码", "item"),
            _c("item_name", "项目名称", "item name"),
            _c("studies", "检查数", "studies", "int"),
            _c("prev_studies", "上期检查数", "previous studies", "int"),
            _c("pass", "合格", "pass", "int"),
            _c("review", "待复核", "review", "int"),
            _c("fail", "不合格", "fail", "int"),
            _c("pass_rate", "合格率 %", "pass %", "pct"),
        ),
        tuple(rows),
    )


def monthly(scope: Scope, period: Period) -> Table:
    """One row per month of both periods; per group (all, each institution) judged studies and pass rate."""
    groups = scope.groups()
    rows = []
    for month in period.previous.months() + period.months():
        cells: list[Any] = [month]
        for g in groups:
            j = [s for s in _judged(scope.previous[g] + scope.current[g]) if f"{s.study_date:%Y-%m}" == month]
            cells += [len(j), percent(_count(j, "pass"), len(j))]
        rows.append(tuple(cells))
    group_cols = [
        c
        for i, g in enumerate(groups)
        for c in (
            _c(f"judged_{i}", f"{g} 参评", f"{g}: judged", "int"),
            _c(f"pass_rate_{i}", f"{g} 合格率 %", f"{g}: pass %", "pct"),
        )
    ]
    return Table(
        "T04",
        "月度参评数与合格率（上期与本期）",
        "Monthly judged studies and pass rate (previous and current period)",
        (_c("month", "月份", "month"), *group_cols),
        tuple(rows),
    )


def _with_severity(studies: Sequence[StudyFacts], category: str, severity: str) -> int:
    return sum(1 for s in studies if any(f.category == category and f.severity == severity for f in s.findings))


def categories(scope: Scope, lang: str) -> Table:
    rows = []
    for g in scope.groups():
        cur, prev = _judged(scope.current[g]), _judged(scope.previous[g])
        for cat in CATEGORIES:
            fails, reviews = _with_severity(cur, cat, "fail"), _with_severity(cur, cat, "review")
            prev_fails = _with_severity(prev, cat, "fail")
            if fails or reviews or prev_fails:
                rows.append(
                    (
                        g,
                        word(cat, lang),
                        fails,
                        percent(fails, len(cur)),
                        reviews,
                        percent(reviews, len(cur)),
                        percent(prev_fails, len(prev)),
                    )
                )
    return Table(
        "T05",
        "问题类别：含不合格/待复核发现的检查",
        "Failure reasons by category: studies with a fail / review finding",
        (
            INSTITUTION_GROUP,
            _c("category", "类别", "category"),
            _c("fail_studies", "不合格发现检查数", "studies with fail finding", "int"),
            _c("fail_pct", "占参评 %", "% of judged", "pct"),
            _c("review_studies", "待复核发现检查数", "studies with review finding", "int"),
            _c("review_pct", "占参评 %", "% of judged", "pct"),
            _c("prev_fail_pct", "上期不合格发现 %", "previous fail finding %", "pct"),
        ),
        tuple(rows),
        "一例检查可含多个类别的发现，各类别之和可超过不合格数。",
        "A study can have findings in several categories: the categories can add up to more than the failed studies.",
    )


def top_findings(scope: Scope, lang: str) -> Table:
    rows = []
    for g in scope.groups():
        cur, prev = _judged(scope.current[g]), _judged(scope.previous[g])
        counts: Counter[str] = Counter()
        first: dict[str, Any] = {}
        for s in cur:
            for f in {f.code: f for f in s.findings if f.severity != "info"}.values():
                counts[f.code] += 1
                first.setdefault(f.code, f)
        prev_counts = Counter(code for s in prev for code in {f.code for f in s.findings if f.severity != "info"})
        limit = TOP_FINDINGS_ALL if g == scope.label_all else TOP_FINDINGS_EACH
        for rank, (code, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit], start=1):
            f = first[code]
            example = f.message_zh if lang == "zh" and f.message_zh else f.message
            rows.append(
                (
                    g,
                    rank,
                    rule_label(code, lang),
                    code,
                    word(f.severity, lang),
                    n,
                    percent(n, len(cur)),
                    prev_counts.get(code, 0),
                    example,
                )
            )
    return Table(
        "T06",
        "最常见的发现（规则）",
        "Most common findings (rules)",
        (
            INSTITUTION_GROUP,
            _c("rank", "排名", "rank", "int"),
            _c("rule", "规则", "rule"),
            _c("code", "规则编号", "rule id", html=False),
            _c("severity", "严重程度", "severity"),
            _c("studies", "检查数", "studies", "int"),
            _c("pct", "占参评 %", "% of judged", "pct"),
            _c("prev_studies", "上期检查数", "previous studies", "int"),
            _c("example", "示例", "example"),
        ),
        tuple(rows),
    )


def metric_limits(rules: dict[str, list[Rule]], metric: str) -> list[Rule]:
    """The general rules of ``metric`` (every modality, no item), as the rule evaluator lists them."""
    return [lim.rule for lim in applicable_rules(rules.get(metric, []), metric, modality=None, item_code=None)]


def _limits_text(rules: Sequence[Rule], metric: str, items: Iterable[str], lang: str) -> str:
    """The general limits, then those of the items (of the studies shown) that have their own."""
    words = {s: word(s, lang) for s in ("info", "review", "fail")}
    general = evaluate(rules, metric, None, modality=None, item_code=None)
    parts = [general.limits_text(words, sep="; ")]
    for item in sorted(set(items)):
        own = evaluate(rules, metric, None, modality=None, item_code=item)
        if own.limits_text() != general.limits_text():
            parts.append(f"{item}: {own.limits_text(words)}")
    return "; ".join(p for p in parts if p)


def metrics(scope: Scope, data: ReportData, rules: dict[str, list[Rule]], lang: str) -> Table:
    rows = []
    by_study: dict[int, list[tuple[str, float]]] = {}
    for m in data.measurements:
        by_study.setdefault(m.study_id, []).append((m.metric, m.value))
    for metric in KEY_METRICS:
        on_metric = rules.get(metric, [])
        for g in scope.groups():
            judged = [
                (s.item_code, evaluate(on_metric, metric, v, modality=s.modality, item_code=s.item_code))
                for s in scope.current[g]
                for name, v in by_study.get(s.study_id, ())
                if name == metric
            ]
            values = [ev.value for _, ev in judged if ev.value is not None]
            if not values:
                continue
            d = distribution(metric, g, values)
            beyond = sum(1 for _, ev in judged if ev.fired is not None)
            items = [item for item, _ in judged if item]
            rows.append(
                (
                    metric_label(metric, lang),
                    metric,
                    g,
                    d.n,
                    _num(d.mean),
                    _num(d.sd),
                    _num(d.p05),
                    _num(d.median),
                    _num(d.p95),
                    _num(d.minimum),
                    _num(d.maximum),
                    _limits_text(on_metric, metric, items, lang),
                    beyond,
                    percent(beyond, d.n),
                )
            )
    return Table(
        "T07",
        "关键图像质量指标分布与限值",
        "Key image-quality metrics against their limits",
        (
            _c("metric", "指标", "metric", group=True),
            _c("metric_id", "指标编号", "metric id", html=False),
            INSTITUTION_COLUMN,
            _c("n", "序列数", "series", "int"),
            _c("mean", "均值", "mean", "num"),
            _c("sd", "标准差", "SD", "num"),
            _c("p05", "P5", "P5", "num"),
            _c("median", "中位数", "median", "num"),
            _c("p95", "P95", "P95", "num"),
            _c("min", "最小值", "min", "num"),
            _c("max", "最大值", "max", "num"),
            _c("limits", "限值", "limits", group=True),
            _c("beyond", "超限序列数", "series beyond a limit", "int"),
            _c("beyond_pct", "超限 %", "beyond %", "pct"),
        ),
        tuple(rows),
        "每个序列（DR 为每幅图像）一个值；超限按该检查所属项目的限值计（部分项目另有专门限值，列于通用限值之后）。",
        "One value per series (per radiograph for DR); 'beyond' uses the limits of each study's item (items with their own limits are listed after the general ones).",
    )


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def timeliness(scope: Scope, fees_limit_h: float, very_late_h: float) -> Table:
    rows = []
    for g in scope.groups():
        cur, prev = scope.current[g], scope.previous[g]
        delays = sorted(s.upload_delay_h for s in cur if s.upload_delay_h is not None)
        prev_delays = sorted(s.upload_delay_h for s in prev if s.upload_delay_h is not None)
        n = len(delays)
        within = sum(1 for d in delays if d <= fees_limit_h)
        very = sum(1 for d in delays if d > very_late_h)
        rows.append(
            (
                g,
                n,
                _num(statistics.median(delays)) if delays else None,
                _num(_quantile(delays, 0.9)),
                percent(within, n),
                percent(n - within - very, n),
                percent(very, n),
                len(cur) - n,
                _num(statistics.median(prev_delays)) if prev_delays else None,
                percent(sum(1 for d in prev_delays if d <= fees_limit_h), len(prev_delays)),
            )
        )
    return Table(
        "T08",
        "上传及时性（上传延迟，小时）",
        "Timeliness (upload delay, hours)",
        (
            INSTITUTION_COLUMN,
            _c("with_delay", "有上传时间的检查", "studies with a delay", "int"),
            _c("median_h", "中位数 h", "median h", "num"),
            _c("p90_h", "P90 h", "P90 h", "num"),
            _c("within_pct", f"≤ {fees_limit_h:g} h %", f"≤ {fees_limit_h:g} h %", "pct"),
            _c("late_pct", f"{fees_limit_h:g}–{very_late_h:g} h %", f"{fees_limit_h:g}–{very_late_h:g} h %", "pct"),
            _c("very_late_pct", f"> {very_late_h:g} h %", f"> {very_late_h:g} h %", "pct"),
            _c("unknown", "上传时间未知", "delay unknown", "int"),
            _c("prev_median_h", "上期中位数 h", "previous median h", "num"),
            _c("prev_within_pct", f"上期 ≤ {fees_limit_h:g} h %", f"previous ≤ {fees_limit_h:g} h %", "pct"),
        ),
        tuple(rows),
    )


COMPLETENESS_CATEGORIES: Final = ("completeness", "continuity", "integrity")
REPORT_MISSING: Final = "completeness.report.missing"
REPORT_NOT_CHECKED: Final = "completeness.report.not_checked"


def _with_code(studies: Sequence[StudyFacts], code: str) -> int:
    return sum(1 for s in studies if any(f.code == code for f in s.findings))


def completeness(scope: Scope) -> Table:
    rows = []
    for g in scope.groups():
        cur, prev = _judged(scope.current[g]), _judged(scope.previous[g])
        for m in sorted({s.modality for s in cur}):
            c = [s for s in cur if s.modality == m]
            p = [s for s in prev if s.modality == m]
            complete = sum(1 for s in c if not s.fails_in(COMPLETENESS_CATEGORIES))
            prev_complete = sum(1 for s in p if not s.fails_in(COMPLETENESS_CATEGORIES))
            rows.append(
                (
                    g,
                    m,
                    len(c),
                    complete,
                    percent(complete, len(c)),
                    _with_severity(c, "completeness", "fail"),
                    _with_severity(c, "continuity", "fail"),
                    _with_severity(c, "integrity", "fail"),
                    _with_code(c, REPORT_MISSING),
                    _with_code(c, REPORT_NOT_CHECKED),
                    percent(prev_complete, len(p)),
                )
            )
    return Table(
        "T09",
        "完整性（视图、序列、层面齐全）",
        "Completeness (views, series and slices present)",
        (
            INSTITUTION_GROUP,
            _c("modality", "检查类型", "modality"),
            _c("judged", "参评数", "judged", "int"),
            _c("complete", "完整", "complete", "int"),
            _c("complete_pct", "完整率 %", "complete %", "pct"),
            _c("completeness_fail", "缺视图/序列", "missing views/series", "int"),
            _c("continuity_fail", "缺层面", "missing slices", "int"),
            _c("integrity_fail", "文件损坏", "broken files", "int"),
            _c("report_missing", "缺诊断报告", "no report", "int"),
            _c("report_not_checked", "报告未核查", "report not checked", "int"),
            _c("prev_complete_pct", "上期完整率 %", "previous complete %", "pct"),
        ),
        tuple(rows),
        "完整 = 无完整性、连续性、文件完整性类别的不合格发现。诊断报告仅在影像云保存报告时核查（thresholds/site.yaml reports），"
        "否则计为“报告未核查”，不表示有报告。",
        "complete = no fail finding in the completeness, continuity or integrity categories. The report is checked only "
        "where the cloud holds reports (thresholds/site.yaml reports); otherwise it is counted as 'report not checked', "
        "which does not mean there is one.",
    )


def reviews(scope: Scope, data: ReportData) -> Table:
    humans = {h.study_id: h for h in data.human_decisions}
    rows = []
    if humans:
        for g in scope.groups():
            reviewed = [humans[s.study_id] for s in scope.current[g] if s.study_id in humans]
            confirmed = sum(1 for h in reviewed if h.action == "confirm")
            overturned = len(reviewed) - confirmed
            rows.append(
                (
                    g,
                    len(reviewed),
                    confirmed,
                    overturned,
                    percent(overturned, len(reviewed)),
                    sum(1 for h in reviewed if h.machine_verdict == "review" and h.verdict == "pass"),
                    sum(1 for h in reviewed if h.machine_verdict == "review" and h.verdict == "fail"),
                    sum(1 for h in reviewed if h.machine_verdict == "fail" and h.verdict == "pass"),
                    sum(1 for h in reviewed if h.machine_verdict == "pass" and h.verdict == "fail"),
                )
            )
    return Table(
        "T10",
        "放射科医师复核结果与改判率",
        "Radiologist review outcomes and overturn rates",
        (
            INSTITUTION_COLUMN,
            _c("reviewed", "已复核", "reviewed", "int"),
            _c("confirmed", "维持", "confirmed", "int"),
            _c("overturned", "改判", "overturned", "int"),
            _c("overturn_pct", "改判率 %", "overturn %", "pct"),
            _c("review_to_pass", "待复核→合格", "review → pass", "int"),
            _c("review_to_fail", "待复核→不合格", "review → fail", "int"),
            _c("fail_to_pass", "不合格→合格", "fail → pass", "int"),
            _c("pass_to_fail", "合格→不合格", "pass → fail", "int"),
        ),
        tuple(rows),
        "复核结论取每例检查当前有效的医师结论。",
        "The current radiologist decision of each study.",
        "本期无放射科医师复核记录",
        "no radiologist reviews in this period",
    )


def _kappa(a: int, b: int, c: int, d: int) -> Decimal | None:
    """Cohen's kappa of a 2x2 table [[a, b], [c, d]] (a, d: agreement), by the spot checks' tested
    implementation (:func:`qc_pipeline.spotcheck.stats.cohen_kappa`); None below MIN_KAPPA_N cases
    or where kappa is undefined (both raters used one category only)."""
    if a + b + c + d < MIN_KAPPA_N:
        return None
    try:
        return _num(cohen_kappa([[a, b], [c, d]]).kappa)
    except DegenerateInputError:
        return None


def ai_agreement(scope: Scope, data: ReportData) -> Table:
    """AI flag (a review/fail finding of category ``ai`` on an AI score) against the radiologist's
    verdict (fail), on the studies with AI scores (``ai.*`` measurements) and a radiologist decision."""
    humans = {h.study_id: h for h in data.human_decisions}
    rows = []
    scored = {m.study_id for m in data.measurements if m.metric.startswith("ai.")}
    for g in scope.groups():
        pairs = []
        for s in scope.current[g]:
            if s.study_id in humans and s.study_id in scored:
                flagged = any(
                    f.category == "ai" and f.severity != "info" and f.code not in AI_OPERATIONAL_CODES
                    for f in s.findings
                )
                pairs.append((flagged, humans[s.study_id].verdict == "fail"))
        if not pairs:
            continue
        a = sum(1 for x, y in pairs if x and y)
        b = sum(1 for x, y in pairs if x and not y)
        c = sum(1 for x, y in pairs if not x and y)
        d = len(pairs) - a - b - c
        rows.append((g, len(pairs), a, b, c, d, percent(a + d, len(pairs)), _kappa(a, b, c, d)))
    return Table(
        "T11",
        "AI 与放射科医师的一致性",
        "AI versus radiologist agreement",
        (
            INSTITUTION_COLUMN,
            _c("pairs", "AI 评分且已复核", "AI-scored and reviewed", "int"),
            _c("both_flag", "均判问题", "both flag", "int"),
            _c("ai_only", "仅 AI 判问题", "AI only", "int"),
            _c("radiologist_only", "仅医师判不合格", "radiologist only", "int"),
            _c("neither", "均无问题", "neither", "int"),
            _c("agreement_pct", "一致率 %", "agreement %", "pct"),
            _c("kappa", "Kappa", "kappa", "num"),
        ),
        tuple(rows),
        f"AI 判问题 = 有 AI 类别的待复核/不合格发现；医师判问题 = 医师结论为不合格。少于 {MIN_KAPPA_N} 例时样本过少，不计算 Kappa（—）。",
        "AI flags = a review/fail finding of category AI; radiologist flags = the radiologist's verdict is fail. "
        f"Too few cases below {MIN_KAPPA_N}: no kappa (—).",
        "本期无同时具有 AI 评分和医师复核的检查",
        "no study in this period has both AI scores and a radiologist review",
    )


def ai_drift(
    scope: Scope, data: ReportData, rules: dict[str, list[Rule]], config: EvaluationConfig, lang: str
) -> Table:
    """Per AI score with a rule and per institution: the share of series the rule flags, week by
    week on a p-chart (``qc_pipeline.report.drift``); institutions with an alarm first."""
    settings = config.ai_drift
    studies = {s.study_id: s for g in (scope.label_all,) for s in (*scope.current[g], *scope.previous[g])}
    current = {s.study_id for s in scope.current[scope.label_all]}
    by_metric: dict[str, list[drift.Scored]] = {}
    for m in data.measurements:
        study = studies.get(m.study_id)
        if study is None or not m.metric.startswith("ai.") or not rules.get(m.metric):
            continue
        fired = evaluate(rules[m.metric], m.metric, m.value, modality=study.modality, item_code=study.item_code).fired
        by_metric.setdefault(m.metric, []).append(
            drift.Scored(
                study.study_date,
                institution_label(study.institution, lang),
                m.value,
                fired is not None,
                m.study_id in current,
            )
        )
    rows = []
    for metric in sorted(by_metric):
        scored = by_metric[metric]
        region_now = [s for s in scored if s.current]
        for g in scope.institutions:
            c = drift.chart(
                [s for s in scored if s.institution == g],
                region_now,
                sigmas=settings.sigmas,
                min_series_per_week=settings.min_series_per_week,
                min_baseline_series=settings.min_baseline_series,
            )
            if c is None:
                continue
            weeks = ", ".join(f"{w.monday:%m-%d} {w.flagged}/{w.n}" for w in c.out_of_band)
            rows.append(
                (
                    metric_label(metric, lang),
                    metric,
                    g,
                    c.n,
                    percent(c.flagged, c.n),
                    _num(100.0 * c.baseline),
                    word(f"drift_{c.baseline_source}", lang),
                    len(c.weeks),
                    weeks or "—",
                    word("drift_alarm" if c.alarm else "drift_in_band", lang),
                    _num(c.median_score),
                    _num(c.previous_median_score),
                )
            )
    rows.sort(key=lambda r: (r[9] != word("drift_alarm", lang), r[1], r[2]))
    return Table(
        "T17",
        "AI 规则漂移监测（按周控制图）",
        "Drift of the AI rules (weekly control chart)",
        (
            _c("score", "AI 评分", "AI score"),
            _c("metric_id", "指标编号", "metric id", html=False),
            INSTITUTION_COLUMN,
            _c("n", "评分序列数", "series scored", "int"),
            _c("flag_pct", "本期标记率 %", "flagged %", "pct"),
            _c("baseline_pct", "基线标记率 %", "baseline flagged %", "num"),
            _c("baseline", "基线来源", "baseline"),
            _c("weeks", "周数", "weeks", "int"),
            _c("out_weeks", "超出控制限的周（标记/序列）", "weeks out of band (flagged/series)"),
            _c("status", "状态", "status"),
            _c("median", "本期评分中位数", "median score", "num"),
            _c("previous_median", "上期评分中位数", "previous median score", "num"),
        ),
        tuple(rows),
        f"每周标记率落在基线 ± {settings.sigmas:g} 倍标准误之外即报警（每周至少 {settings.min_series_per_week} 个序列才判断）；"
        "报警提示该模型在该机构的表现可能已变化（设备、软件或扫描方案），请质控中心核查，不改变任何检查结论。",
        f"A week whose flagged share lies outside the baseline ± {settings.sigmas:g} standard errors is an alarm (weeks "
        f"of at least {settings.min_series_per_week} series); an alarm says the model may behave differently at the "
        "institution now (scanner, software, protocol): the QC centre looks into it; no verdict changes.",
        "本期无 AI 评分",
        "no AI scores in this period",
    )


def spot_checks(scope: Scope, data: ReportData, lang: str) -> Table:
    rows = []
    if data.spot_checks:
        for g in scope.groups():
            names = None if g == scope.label_all else {g}
            facts = [f for f in data.spot_checks if names is None or institution_label(f.institution, lang) in names]
            if not facts:
                continue
            first = [f for f in facts if f.reading == 1]
            agree = sum(1 for f in first if (f.machine_verdict == "pass") == f.recognisable)
            by_case: dict[int, dict[int, bool]] = {}
            for f in facts:
                by_case.setdefault(f.study_id, {})[f.reading] = f.recognisable
            pairs = [v for v in by_case.values() if 1 in v and 2 in v]
            cross = sum(1 for v in pairs if v[1] == v[2])
            rows.append(
                (
                    g,
                    len(by_case),
                    len(facts),
                    percent(sum(1 for f in first if f.recognisable), len(first)),
                    percent(agree, len(first)),
                    len(pairs),
                    percent(cross, len(pairs)),
                )
            )
    return Table(
        "T12",
        "抽查结果与跨区域一致性",
        "Spot checks and cross-region agreement",
        (
            INSTITUTION_COLUMN,
            _c("cases", "抽查检查数", "cases", "int"),
            _c("readings", "阅片次数", "readings", "int"),
            _c("recognisable_pct", "可互认 %", "recognisable %", "pct"),
            _c("machine_agreement_pct", "与机器结论一致 %", "agrees with the machine %", "pct"),
            _c("double_read", "双读检查数", "read twice", "int"),
            _c("cross_region_pct", "跨区域一致 %", "cross-region agreement %", "pct"),
        ),
        tuple(rows),
        "首读由另一地区的医师完成；一致 = 机器结论为合格且医师判可互认，或机器结论非合格且医师判不可互认。",
        "The first reading is by a reviewer of the other region; agreement = machine pass and recognisable, or machine not pass and not recognisable.",
        "本期无抽查记录",
        "no spot checks in this period",
    )


def qualification(scope: Scope, config: EvaluationConfig, lang: str) -> Table:
    rule = config.qualification
    rows = []
    for g in scope.groups()[1:]:
        q = qualify(scope.current[g], rule)
        shares = [x for c in q.categories for x in (c.failing, percent(c.failing, q.judged))]
        failed = (
            "、".join(word(k, lang) for k in q.failed_criteria())
            if lang == "zh"
            else ", ".join(word(k, lang) for k in q.failed_criteria())
        )
        rows.append(
            (g, q.judged, q.passed, q.pass_rate, rule.min_pass_rate_percent, *shares, word(q.outcome, lang), failed)
        )
    cat_cols = []
    for c in rule.critical_categories:
        name_zh, name_en = word(str(c.category), "zh"), word(str(c.category), "en")
        # the count is in the workbook; on A4 the share beside its limit is what decides
        cat_cols += [
            _c(f"{c.category}_fail", f"{name_zh}不合格", f"{name_en} fail", "int", html=False),
            _c(
                f"{c.category}_fail_pct",
                f"{name_zh}不合格 % (≤ {c.max_fail_percent})",
                f"{name_en} fail % (≤ {c.max_fail_percent})",
                "pct",
            ),
        ]
    return Table(
        "T13",
        "互认质控评价（暂停或取消互认由卫生健康行政部门决定）",
        "Evaluation for mutual recognition (suspending or cancelling recognition is the health administration's decision)",
        (
            INSTITUTION_COLUMN,
            _c("judged", "参评数", "judged", "int"),
            _c("passed", "合格", "passed", "int"),
            _c("pass_rate", "合格率 %", "pass rate %", "pct"),
            _c("min_pass_rate", "合格率下限 %", "minimum pass rate %", "pct"),
            *cat_cols,
            _c("outcome", "评价结论", "conclusion"),
            _c("failed_criteria", "未达标项", "criteria not met"),
        ),
        tuple(rows),
        f"规则（thresholds/evaluation/qualification.yaml，版本 {config.version}）：参评数 ≥ {rule.min_judged_studies}；"
        f"合格率 ≥ {rule.min_pass_rate_percent}%；各关键类别不合格占比不超过所列上限（恰好等于限值视为达标）。"
        + ("已有医师复核结论的检查以医师结论计。" if rule.use_radiologist_decisions else ""),
        f"Rule (thresholds/evaluation/qualification.yaml, version {config.version}): judged ≥ {rule.min_judged_studies}; "
        f"pass rate ≥ {rule.min_pass_rate_percent}%; each critical category's fail share at most its limit (exactly at a limit passes)."
        + (" Where a radiologist decided a study, that decision counts." if rule.use_radiologist_decisions else ""),
    )


@dataclass(frozen=True, slots=True)
class Uploads:
    """One group's logged exams of one period: those that reached the cloud and those that did not."""

    logged: int = 0
    by_accession: int = 0
    by_fallback: int = 0
    missing: tuple[LoggedExam, ...] = ()
    has_log: bool = False


def upload_groups(
    scope: Scope, data: ReportData, lang: str, institution: str | None = None
) -> dict[str, tuple[Uploads, Uploads]]:
    """(current, previous) uploads per group of the scope, plus institutions that are only in the
    logs (they uploaded nothing). Matching over both periods at once (``match_exams``)."""
    studies = [
        UploadedStudy(s.study_id, s.institution, s.accession, s.patient_id, s.study_date, s.modality)
        for s in data.studies
    ]
    how = match_exams(data.exam_log, studies).how
    label_of = {institution_key(s.institution): institution_label(s.institution, lang) for s in data.studies}
    out: dict[str, list[dict[str, list[int]]]] = {}
    for i, e in enumerate(data.exam_log):
        key = institution_key(e.institution)
        if institution is not None and key != institution_key(institution):
            continue  # a report for one institution
        label = label_of.get(key, e.institution)
        which = 0 if data.period.contains(e.exam_date) else 1
        for g in (scope.label_all, label):
            out.setdefault(g, [{}, {}])[which].setdefault(how[i], []).append(i)
    result: dict[str, tuple[Uploads, Uploads]] = {}
    for g, pair in out.items():
        ups = []
        for kinds in pair:
            missing = tuple(
                sorted(
                    (data.exam_log[i] for i in kinds.get("missing", ())),
                    key=lambda e: (e.institution, e.exam_date, e.accession or "", e.patient_id or ""),
                )
            )
            ups.append(
                Uploads(
                    sum(len(v) for v in kinds.values()),
                    len(kinds.get("accession", ())),
                    len(kinds.get("fallback", ())),
                    missing,
                    True,
                )
            )
        result[g] = (ups[0], ups[1])
    return result


def _upload_rows(scope: Scope, uploads: dict[str, tuple[Uploads, Uploads]]) -> list[str]:
    extra = sorted(g for g in uploads if g not in scope.groups())
    return [*scope.groups(), *extra]


def upload_completeness(scope: Scope, uploads: dict[str, tuple[Uploads, Uploads]]) -> Table:
    rows = []
    for g in _upload_rows(scope, uploads):
        cur, prev = uploads.get(g, (Uploads(), Uploads()))
        uploaded = cur.logged - len(cur.missing)
        rows.append(
            (
                g,
                word("yes", "zh") if cur.has_log else "—",
                cur.logged,
                uploaded,
                cur.by_accession,
                cur.by_fallback,
                len(cur.missing),
                percent(uploaded, cur.logged),
                percent(prev.logged - len(prev.missing), prev.logged),
            )
        )
    return Table(
        "T15",
        "上传完整性：医院检查登记与影像云",
        "Upload completeness: the hospitals' exam logs against the cloud",
        (
            INSTITUTION_COLUMN,
            _c("has_log", "已提交检查登记", "exam log received"),
            _c("logged", "登记检查数", "logged exams", "int"),
            _c("uploaded", "已上传", "uploaded", "int"),
            _c("by_accession", "按检查号匹配", "matched by accession", "int"),
            _c("by_fallback", "按患者ID+日期+类型匹配", "matched by patient id + date + modality", "int"),
            _c("missing", "未上传", "not uploaded", "int"),
            _c("upload_rate", "上传率 %", "upload rate %", "pct"),
            _c("prev_upload_rate", "上期上传率 %", "previous upload rate %", "pct"),
        ),
        tuple(rows),
        "登记检查来自医院 RIS/HIS 导出（qc-pipeline exam-log import）；匹配：同一机构的检查号，否则患者ID、检查日期与检查类型。"
        "未提交检查登记的机构上传率未知（不是 100%）。",
        "Logged exams come from the hospitals' RIS/HIS exports (qc-pipeline exam-log import); matched by accession within "
        "the institution, else patient id, exam date and modality. Without an exam log the upload rate is unknown (not 100%).",
        "本期未导入医院检查登记：上传率未知",
        "no exam log imported for this period: the upload rate is unknown",
    )


def missing_exams(scope: Scope, uploads: dict[str, tuple[Uploads, Uploads]]) -> Table:
    rows = []
    for g in _upload_rows(scope, uploads)[1:]:
        for e in uploads.get(g, (Uploads(), Uploads()))[0].missing:
            rows.append((g, e.exam_date.isoformat(), e.accession or "—", e.modality or "?", e.item_text or ""))
    return Table(
        "T16",
        "未上传的检查（医院登记有、影像云无）",
        "Exams not uploaded (in the hospital's log, not in the cloud)",
        (
            INSTITUTION_GROUP,
            _c("exam_date", "检查日期", "exam date"),
            _c("accession", "检查号", "accession"),
            _c("modality", "检查类型", "modality"),
            _c("item", "检查项目", "item"),
        ),
        tuple(rows),
        "这些检查计入费用影响（表 T14）的“未上传”。",
        "These exams are the 'not uploaded' of the fee exposure (table T14).",
        "无未上传的检查或未导入检查登记",
        "no exam missing, or no exam log imported",
    )


def _public_word(public: bool | None, lang: str) -> str:
    return (
        word("yes", lang)
        if public
        else (word("no", lang) if public is False else pick("未登记", "not registered", lang))
    )


def fees(scope: Scope, config: EvaluationConfig, uploads: dict[str, tuple[Uploads, Uploads]], lang: str) -> Table:
    """Per institution and scheme (the schemes are shown apart, never summed): exams whose digital
    storage and retrieval service failed and the deduction; public institutions only."""
    fee_rules = config.fees
    groups = _upload_rows(scope, uploads)
    per: dict[str, tuple[list[FeeExposure], list[FeeExposure]]] = {}
    publics: dict[str, bool | None] = {}
    for g in groups[1:]:
        raw = next((s.institution for s in scope.current.get(g, []) + scope.previous.get(g, [])), g)
        publics[g] = institution_public(raw)
        cur_up, prev_up = uploads.get(g, (Uploads(), Uploads()))
        per[g] = (
            fee_exposure(scope.current.get(g, []), [e.modality for e in cur_up.missing], fee_rules, public=publics[g]),
            fee_exposure(
                scope.previous.get(g, []), [e.modality for e in prev_up.missing], fee_rules, public=publics[g]
            ),
        )
    rows = []
    for si, scheme in enumerate(fee_rules.schemes):
        mods = "+".join(scheme.modalities)
        name = pick(scheme.name_zh, scheme.name_en, lang)
        sums: list[Any] = [0, 0, 0, 0, 0, 0, Decimal(0), Decimal(0)]
        inst_rows = []
        for g in groups[1:]:
            e, p = per[g][0][si], per[g][1][si]
            vals = [e.exams, *(e.reasons[r] for r in Exposure), e.exposed, e.yuan, p.yuan]
            inst_rows.append((g, _public_word(publics[g], lang), scheme.id, name, mods, *vals))
            for k, v in enumerate(vals):
                if v is not None:
                    sums[k] += v
        rows.append((scope.label_all, "", scheme.id, name, mods, *sums))
        rows.extend(inst_rows)
    return Table(
        "T14",
        "费用影响：数字影像存储与调阅服务未实现的检查（两种口径分列，不相加）",
        "Fee exposure: exams whose digital image storage and retrieval failed (the two schemes apart, never added)",
        (
            INSTITUTION_COLUMN,
            _c("public", "公立", "public"),
            _c("scheme", "口径", "scheme id", html=False),
            _c("scheme_name", "收费口径", "scheme", group=True),
            _c("modalities", "检查类型", "modalities", group=True),
            _c("exams", "检查数", "exams", "int"),
            _c("not_uploaded", "未上传", "not uploaded", "int"),
            _c("not_retrievable", "无法调阅", "not retrievable", "int"),
            _c("no_images", "无图像", "no images", "int"),
            _c("no_report", "无报告", "no report", "int"),
            _c("exposed", "涉及检查", "exams exposed", "int"),
            _c("yuan", "扣减（元）", "deduction (yuan)", "yuan"),
            _c("prev_yuan", "上期扣减（元）", "previous deduction (yuan)", "yuan"),
        ),
        tuple(rows),
        "收费项目中的数字影像处理与上传存储，指患者可查阅下载、医疗机构间可调阅、医保可核验的服务；检查项目缺序列、重建层厚等属质量问题，"
        "以质控结论体现，不计入。涉及 = 未上传（医院登记有、影像云无，表 T16）、无法调阅（文件无法读取）、无图像、无报告（仅在影像云保存报告时核查）。"
        "仅公立医疗机构适用；登记为非公立的机构不计扣减。两种口径各自计算，不可相加。未提交检查登记的机构无法计入未上传的检查。",
        "The pricing items' digital imaging component is the storage and retrieval service (the patient reads and downloads, "
        "peers retrieve, the insurer verifies); a missing sequence or a thick reconstruction is a quality defect, shown by the "
        "verdict, not counted here. Exposed = not uploaded (in the hospital's log, not in the cloud, table T16), not retrievable "
        "(unreadable files), no images, no report (checked only where the cloud holds reports). Public institutions only: no "
        "deduction for institutions registered as not public. The two schemes are computed apart and must not be added. Exams "
        "of institutions without an exam log cannot be counted as not uploaded.",
    )


_RECOGNITION_NOTE_ZH = (
    "来源：医院信息系统经互认接口上报的互认结果，以及质控人员登记的不予互认（同一次就诊只计一次）。"
    "互认率 = 已互认 ÷（已互认 + 未互认）；已互认即避免的重复检查。按就诊日（本地时间）计入评估期。"
)
_RECOGNITION_NOTE_EN = (
    "From the recognition results posted by the hospitals' systems through the recognition API and the "
    "non-recognitions entered by QC staff (each visit counted once). Recognition rate = recognised / (recognised + "
    "not recognised); each recognised result is a repeat exam avoided. Counted by the visit's local date."
)
_NO_RECOGNITION = (
    "本期无互认记录（医院系统未上报互认结果）",
    "no recognition recorded in this period (no hospital system posted any)",
)


def _recognition_rows(data: ReportData, lang: str, key: str, institution: str | None) -> list[tuple[Any, ...]]:
    """One row for everything, then one per institution (receiving or source): counts and rates of
    this period, and the rate of the previous one."""
    now = [r for r in data.recognitions if data.period.contains(r.day)]
    before = [r for r in data.recognitions if data.period.previous.contains(r.day)]
    if not now:
        return []

    def name(r: RecognitionFact) -> str:
        return getattr(r, key)

    def counts(facts: Sequence[RecognitionFact]) -> tuple[int, int]:
        yes = sum(1 for f in facts if f.outcome == "recognised")
        return yes, len(facts) - yes

    names = sorted({name(r) for r in now})
    if institution is not None:
        names = [n for n in names if n == institution]
    rows = []
    for label, pick_of in [(word("all", lang), None), *((institution_label(n, lang), n) for n in names)]:
        cur = [r for r in now if pick_of is None or name(r) == pick_of]
        prev = [r for r in before if pick_of is None or name(r) == pick_of]
        yes, no = counts(cur)
        p_yes, p_no = counts(prev)
        rows.append(
            (label, yes + no, yes, no, percent(yes, yes + no), f"{yes}/{yes + no}", percent(p_yes, p_yes + p_no))
        )
    return rows


def _recognition_columns(first_zh: str, first_en: str) -> tuple[Column, ...]:
    return (
        _c("institution", first_zh, first_en),
        _c("visits", "就诊次数", "visits", "int"),
        _c("recognised", "已互认（避免重复检查）", "recognised (repeat exams avoided)", "int"),
        _c("not_recognised", "未互认", "not recognised", "int"),
        _c("rate", "互认率 %", "recognition rate %", "pct"),
        _c("fraction", "已互认/就诊", "recognised/visits"),
        _c("prev_rate", "上期互认率 %", "previous rate %", "pct"),
    )


def recognition_by_receiving(data: ReportData, lang: str, institution: str | None = None) -> Table:
    return Table(
        "T18",
        "互认实施情况（按接收机构）",
        "Recognition applied, by receiving institution",
        _recognition_columns("接收机构", "receiving institution"),
        tuple(_recognition_rows(data, lang, "receiving_institution", institution)),
        _RECOGNITION_NOTE_ZH,
        _RECOGNITION_NOTE_EN,
        *_NO_RECOGNITION,
    )


def recognition_by_source(data: ReportData, lang: str, institution: str | None = None) -> Table:
    return Table(
        "T19",
        "互认实施情况（按检查机构）",
        "Recognition applied, by the institution that did the exam",
        _recognition_columns("检查机构", "examining institution"),
        tuple(_recognition_rows(data, lang, "source_institution", institution)),
        _RECOGNITION_NOTE_ZH,
        _RECOGNITION_NOTE_EN,
        *_NO_RECOGNITION,
    )


def recognition_reasons(
    data: ReportData, lang: str, institution: str | None = None, thresholds_dir: Any = None
) -> Table:
    """Why results were not recognised: the negative-list situations of the Yubei plan, by number."""
    from qc_pipeline.review.negative_list import load_negative_list

    reasons = load_negative_list(thresholds_dir)
    now = [
        r
        for r in data.recognitions
        if data.period.contains(r.day)
        and r.outcome == "not_recognised"
        and (institution is None or institution in (r.receiving_institution, r.source_institution))
    ]
    counted = Counter(r.reason_code or "" for r in now)
    rows: list[tuple[int | str, str, int, Decimal | None, str]] = []  # a number, or a dash for the unlisted
    for reason in reasons.reasons:
        if counted.get(reason.code):
            rows.append(
                (
                    reason.number,
                    pick(reason.zh, reason.en, lang),
                    counted[reason.code],
                    percent(counted[reason.code], len(now)),
                    reason.code,
                )
            )
    unknown = sum(n for code, n in counted.items() if reasons.get(code) is None)
    if unknown:
        rows.append(
            (
                "—",
                pick("未注明或不在负面清单内", "not given or not on the negative list", lang),
                unknown,
                percent(unknown, len(now)),
                "",
            )
        )
    return Table(
        "T20",
        "未互认的原因（互认负面清单）",
        "Why results were not recognised (the negative list)",
        (
            _c("number", "序号", "no."),
            _c("reason", "原因", "reason"),
            _c("count", "次数", "visits", "int"),
            _c("share", "占未互认 %", "share of not recognised %", "pct"),
            _c("code", "原因代码", "reason code", html=False),
        ),
        tuple(rows),
        "原因为渝北区互认实施方案第四（三）条所列十种情形（thresholds/evaluation/negative_list.yaml）。",
        "The reasons are the ten situations of the Yubei plan §4(三) (thresholds/evaluation/negative_list.yaml).",
        # with nothing recorded at all, "none went unrecognised" would read as a perfect record
        *(
            ("本期无未互认记录", "no result went unrecognised in this period")
            if any(data.period.contains(r.day) for r in data.recognitions)
            else _NO_RECOGNITION
        ),
    )


def build_tables(
    data: ReportData,
    config: EvaluationConfig,
    rules: dict[str, list[Rule]],
    lang: str,
    institution: str | None = None,
    very_late_h: float = 72.0,
) -> tuple[Scope, dict[str, Table]]:
    scope = make_scope(data, lang, institution)
    tables = [
        overview(scope),
        by_modality(scope),
        by_item(scope, lang),
        monthly(scope, data.period),
        categories(scope, lang),
        top_findings(scope, lang),
        metrics(scope, data, rules, lang),
        timeliness(scope, config.fees.max_upload_delay_h, very_late_h),
        completeness(scope),
        reviews(scope, data),
        ai_agreement(scope, data),
        spot_checks(scope, data, lang),
        qualification(scope, config, lang),
    ]
    uploads = upload_groups(scope, data, lang, institution)
    tables += [
        fees(scope, config, uploads, lang),
        upload_completeness(scope, uploads),
        missing_exams(scope, uploads),
        ai_drift(scope, data, rules, config, lang),
        recognition_by_receiving(data, lang, institution),
        recognition_by_source(data, lang, institution),
        recognition_reasons(data, lang, institution),
    ]
    return scope, {t.key: t for t in tables}


__all__ = ["Column", "Scope", "Table", "build_tables", "institution_label"]
