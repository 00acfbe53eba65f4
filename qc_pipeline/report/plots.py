"""The report's figures (matplotlib, Agg, no pyplot state), as deterministic SVG.

Text is drawn as paths in a CJK font found explicitly (Noto Sans CJK SC, Debian ``fonts-noto-cjk``),
so the SVG shows the same glyphs in any viewer and in the PDF; ``svg.hashsalt`` and no date make
the same data give the same bytes.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager, rc_context
from matplotlib.figure import Figure

from qc_pipeline.errors import ConfigError
from qc_pipeline.labels import metric_label
from qc_pipeline.report.data import KEY_METRICS, ReportData
from qc_pipeline.report.labels import pick, word
from qc_pipeline.report.tables import Scope, Table, metric_limits
from qc_pipeline.rules.schema import Rule

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

CJK_FAMILIES: Final = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
)
VERDICT_COLOURS: Final = {"pass": "#2e7d32", "review": "#f9a825", "fail": "#c62828", "not_applicable": "#9e9e9e"}
LIMIT_COLOURS: Final = {"review": "#f9a825", "fail": "#c62828", "info": "#607d8b"}
WIDTH_IN: Final = 7.0
"""Figure width (inches): A4's text width with the report's margins is 180 mm (7.1 in), so a
figure is printed at its own size and its text at its own point size."""
LEGEND_COLUMNS: Final = 3


@functools.cache
def cjk_family() -> str:
    """The first installed CJK sans-serif family of ``CJK_FAMILIES``; ConfigError when none is."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in installed:
            return family
    raise ConfigError(
        "no Chinese font for the report's figures: install Debian's fonts-noto-cjk "
        f"(apt-get install fonts-noto-cjk); looked for {', '.join(CJK_FAMILIES)}"
    )


def _rc() -> dict[RcKeyType, Any]:
    return {
        "font.family": [cjk_family()],
        "font.size": 9,
        "axes.unicode_minus": False,
        "svg.fonttype": "path",
        "svg.hashsalt": "qc-pipeline-report",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    }


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "qc-pipeline"}, bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline in HTML: no XML declaration or DOCTYPE


def verdict_bars(scope: Scope, lang: str) -> str:
    groups = scope.groups()
    with rc_context(_rc()):
        fig = Figure(figsize=(WIDTH_IN, 0.25 * len(groups) + 0.9))
        ax = fig.add_subplot()
        for row, g in enumerate(reversed(groups)):
            studies = scope.current[g]
            left = 0.0
            for v in ("pass", "review", "fail", "not_applicable"):
                share = 100 * sum(1 for s in studies if s.verdict == v) / len(studies) if studies else 0.0
                ax.barh(row, share, left=left, color=VERDICT_COLOURS[v], label=word(v, lang) if row == 0 else None)
                left += share
        ax.set_yticks(range(len(groups)), list(reversed(groups)))
        ax.set_xlim(0, 100)
        ax.set_xlabel(pick("占本期检查 %", "% of the period's studies", lang))
        ax.legend(ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        return _svg(fig)


def monthly_figure(table: Table, scope: Scope, period_months: Sequence[str], lang: str) -> Figure:
    """Monthly pass rate per institution; the legend sits above the axes (inside them it covered
    the lines), in as many rows as the institutions need."""
    groups = scope.groups()
    legend_rows = math.ceil(len(groups) / LEGEND_COLUMNS)
    with rc_context(_rc()):
        fig = Figure(figsize=(WIDTH_IN, 3.0 + 0.2 * legend_rows))
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            ys = [table.cell(f"pass_rate_{i}", month=m) for m in period_months]
            ax.plot(
                range(len(period_months)),
                [math.nan if y is None else float(y) for y in ys],
                marker="o",
                markersize=3,
                linewidth=2.2 if g == scope.label_all else 1.0,
                label=g,
            )
        ax.axvline(len(period_months) / 2 - 0.5, color="#555", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(period_months)), period_months, rotation=45, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel(pick("合格率 %", "pass rate %", lang))
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), ncols=LEGEND_COLUMNS, frameon=False, borderaxespad=0.0)
    return fig


def monthly_lines(table: Table, scope: Scope, period_months: Sequence[str], lang: str) -> str:
    with rc_context(_rc()):
        return _svg(monthly_figure(table, scope, period_months, lang))


def _boxes(ax, labels: Sequence[str], values: Sequence[Sequence[float]]) -> None:
    kept = [(label, v) for label, v in zip(labels, values, strict=True) if v]
    if not kept:
        return
    ax.boxplot(
        [v for _, v in kept],
        orientation="horizontal",
        tick_labels=[label for label, _ in kept],
        showfliers=True,
        flierprops={"markersize": 2},
        medianprops={"color": "#000"},
    )
    ax.invert_yaxis()


def metric_boxes(scope: Scope, data: ReportData, rules: dict[str, list[Rule]], lang: str) -> str | None:
    by_study: dict[int, list[tuple[str, float]]] = {}
    for m in data.measurements:
        by_study.setdefault(m.study_id, []).append((m.metric, m.value))
    present = [m for m in KEY_METRICS if any(name == m for v in by_study.values() for name, _ in v)]
    if not present:
        return None
    with rc_context(_rc()):
        return _svg(metric_figure(scope, by_study, present, rules, lang))


def metric_figure(
    scope: Scope,
    by_study: dict[int, list[tuple[str, float]]],
    present: Sequence[str],
    rules: dict[str, list[Rule]],
    lang: str,
) -> Figure:
    """One box plot per metric, one above the other at the full width (side by side, the
    institutions' names left the boxes a third of the page); titled by the metric's name."""
    with rc_context(_rc()):
        groups = scope.groups()
        fig = Figure(figsize=(WIDTH_IN, (0.2 * len(groups) + 0.7) * len(present)))
        axes = fig.subplots(len(present), 1, squeeze=False).ravel()
        for ax, metric in zip(axes, present, strict=True):
            values = [
                [v for s in scope.current[g] for name, v in by_study.get(s.study_id, ()) if name == metric]
                for g in groups
            ]
            _boxes(ax, groups, values)
            for rule in metric_limits(rules, metric):
                ax.axvline(rule.limit, color=LIMIT_COLOURS.get(str(rule.severity), "#000"), linestyle="--", linewidth=1)
            ax.set_title(metric_label(metric, lang), loc="left")
        fig.tight_layout()
        return fig


def delay_boxes(scope: Scope, limits_h: Sequence[float], lang: str) -> str | None:
    groups = scope.groups()
    values = [[max(s.upload_delay_h, 0.01) for s in scope.current[g] if s.upload_delay_h is not None] for g in groups]
    if not any(values):
        return None
    with rc_context(_rc()):
        fig = Figure(figsize=(WIDTH_IN, 0.3 * len(groups) + 1.4))
        ax = fig.add_subplot()
        _boxes(ax, groups, values)
        ax.set_xscale("log")
        for limit, colour in zip(limits_h, ("#f9a825", "#c62828"), strict=False):
            ax.axvline(limit, color=colour, linestyle="--", linewidth=1)
        ax.set_xlabel(pick("上传延迟（小时，对数坐标）", "upload delay (hours, log scale)", lang))
        return _svg(fig)
