"""Write the report: HTML (the source), PDF (its print rendering, WeasyPrint) and XLSX (every table).

Deterministic: nothing depends on the clock, the machine or the order rows come back in; the
workbook's document dates and zip entry times are fixed, the PDF has a fixed identifier and no
creation date. The same database and configuration give byte-identical HTML and XLSX.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

import jinja2

from qc_pipeline import __version__
from qc_pipeline.io.tabular import append_row
from qc_pipeline.report.config import EvaluationConfig
from qc_pipeline.report.data import SITE_ZONE, ReportData
from qc_pipeline.report.labels import pick, word
from qc_pipeline.report.tables import Scope, Table

logger = logging.getLogger(__name__)

FIXED_TIME: Final = dt.datetime(2000, 1, 1)
"""Document dates of the workbook (its content dates are the data's own)."""
FIXED_TIME_W3C: Final = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    title: str
    svg: str
    source: str
    """The table the figure draws from."""


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    paragraphs: tuple[str, ...]
    tables: tuple[Table, ...]
    figures: tuple[Figure, ...] = ()
    rows_of: str | None = None
    """Show only the rows of this institution (per-institution sections)."""
    page_break: bool = False


@dataclass(frozen=True, slots=True)
class ReportDocument:
    lang: str
    title: str
    subtitle: str
    facts: tuple[tuple[str, str], ...]
    summary: tuple[str, ...]
    sections: tuple[Section, ...]
    tables: dict[str, Table]


def fmt(value: Any, kind: str = "text") -> str:
    """A cell as text: ``—`` for None, thousands for counts, one decimal for percentages."""
    if value is None:
        return "—"
    if kind == "int" and isinstance(value, int):
        return f"{value:,}"
    if kind == "pct" and isinstance(value, Decimal):
        return f"{value:.1f}"
    if kind in ("num", "yuan") and isinstance(value, Decimal | int | float):
        return f"{Decimal(value):,.2f}" if kind == "num" else f"{Decimal(value):,.0f}"
    return str(value)


_TEMPLATE: Final = """<!DOCTYPE html>
<html lang="{{ 'zh-CN' if doc.lang == 'zh' else 'en' }}">
<head>
<meta charset="utf-8">
<meta name="generator" content="qc-pipeline {{ version }}">
<title>{{ doc.title }} · {{ doc.subtitle }}</title>
<style>
@page { size: A4 portrait; margin: 18mm 15mm 18mm 15mm;
  @bottom-center { content: counter(page) " / " counter(pages); font-size: 9pt; color: #666; } }
html { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", sans-serif; font-size: 10pt; color: #111; }
h1 { font-size: 18pt; margin: 0 0 2mm 0; }
h2 { font-size: 13pt; margin: 7mm 0 2mm 0; border-bottom: 1px solid #999; page-break-after: avoid; }
h3 { font-size: 10.5pt; margin: 4mm 0 1.5mm 0; page-break-after: avoid; }
p { margin: 1.5mm 0; line-height: 1.5; }
.subtitle { font-size: 11pt; color: #333; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm 0; font-size: 9pt; line-height: 1.3; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; break-inside: avoid; }
th, td { border: 0.5px solid #bbb; padding: 0.6mm 1mm; vertical-align: top; hyphens: auto; overflow-wrap: anywhere; }
th { background: #eef1f4; font-weight: bold; text-align: left; }
th.short, td.short, td.institution { white-space: nowrap; }
td.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.all td { font-weight: bold; background: #fafafa; }
tr.group td { font-weight: bold; background: #f3f5f8; page-break-after: avoid; break-after: avoid; }
.note { font-size: 9pt; color: #444; }
.empty { font-style: italic; color: #555; }
.facts { width: auto; }
.facts td { border: none; padding: 0.3mm 3mm 0.3mm 0; font-size: 9.5pt; }
figure { margin: 2mm 0 4mm 0; page-break-inside: avoid; }
figure svg { display: block; max-width: 100%; height: auto; max-height: 230mm; }
figcaption { font-size: 9pt; color: #333; }
.ref { color: #555; font-size: 9pt; }
.break { page-break-before: always; }
.outcome-not_qualified { color: #b71c1c; font-weight: bold; }
</style>
</head>
<body>
<h1>{{ doc.title }}</h1>
<div class="subtitle">{{ doc.subtitle }}</div>
<table class="facts">{% for k, v in doc.facts %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<h2>{{ summary_title }}</h2>
{% for p in doc.summary %}<p>{{ p }}</p>{% endfor %}
{% for s in doc.sections %}
<section id="{{ s.key }}"{% if s.page_break %} class="break"{% endif %}>
<h2>{{ s.title }}</h2>
{% for p in s.paragraphs %}<p>{{ p }}</p>{% endfor %}
{% for f in s.figures %}<figure>{{ f.svg | safe }}<figcaption>{{ f.title }} <span class="ref">({{ f.source }})</span></figcaption></figure>{% endfor %}
{% for t in s.tables %}{{ render_table(t, s.rows_of) | safe }}{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""


SHORT_HEADER: Final = 4
"""A column header or text cell of at most this many characters (公立, 检查数, 未登记, pass %) is not
wrapped: a table squeezed into A4 would otherwise print it one character a line."""


SHORT_CODE: Final = 10
"""A text cell that is one code of at most this many ASCII characters (2026-12, YB-001, DR+CT+MR)
is not wrapped either."""


def _keep_whole(text: str) -> bool:
    return len(text) <= SHORT_HEADER or (
        len(text) <= SHORT_CODE and text.isascii() and not any(c.isspace() for c in text)
    )


def _table_html(table: Table, lang: str, rows_of: str | None, label_all: str) -> str:
    env = jinja2.Environment(autoescape=True)
    rows = table.rows
    if rows_of is not None and table.columns and table.columns[0].key == "institution":
        rows = tuple(r for r in rows if r[0] == rows_of)
    grouped = [i for i, c in enumerate(table.columns) if c.html and c.group]
    cols = [(i, c) for i, c in enumerate(table.columns) if c.html and not c.group]
    first = next((i for i, c in enumerate(table.columns) if c.key == "institution"), 0)
    body: list[tuple[str, Any]] = []  # ("group", heading) or ("row", cells)
    heading = None
    for r in rows:
        if grouped and (now := tuple(r[i] for i in grouped)) != heading:
            heading = now
            colon, sep = ("：", "；") if lang == "zh" else (": ", "; ")
            body.append(
                (
                    "group",
                    sep.join(
                        f"{table.columns[i].label(lang)}{colon}{fmt(r[i], table.columns[i].kind)}" for i in grouped
                    ),
                )
            )
        body.append(("row", r))
    template = env.from_string(
        "<h3>{{ key }} {{ title }}</h3>"
        "{% if rows %}<table><thead><tr>{% for i, c in cols %}"
        '<th{% if c.label(lang)|length <= SHORT_HEADER %} class="short"{% endif %}>{{ c.label(lang) }}</th>{% endfor %}'
        "</tr></thead><tbody>"
        '{% for kind, r in body %}{% if kind == \'group\' %}<tr class="group"><td colspan="{{ cols|length }}">{{ r }}</td></tr>'
        '{% else %}<tr{% if r[first] == label_all %} class="all"{% endif %}>'
        "{% for i, c in cols %}<td{% if c.kind != 'text' %} class=\"n\"{% elif c.key == 'institution' %} class=\"institution\""
        '{% elif keep_whole(fmt(r[i])) %} class="short"{% endif %}>{{ fmt(r[i], c.kind) }}</td>{% endfor %}'
        "</tr>{% endif %}{% endfor %}</tbody></table>"
        '{% else %}<p class="empty">{{ empty }}</p>{% endif %}'
        '{% if note %}<p class="note">{{ note }}</p>{% endif %}'
    )
    return template.render(
        key=table.key,
        title=table.title(lang),
        cols=cols,
        body=body,
        rows=rows,
        first=first,
        lang=lang,
        fmt=fmt,
        label_all=label_all,
        empty=table.empty(lang),
        note=table.note(lang),
        SHORT_HEADER=SHORT_HEADER,
        keep_whole=_keep_whole,
    )


def render_html(doc: ReportDocument, scope: Scope) -> str:
    env = jinja2.Environment(autoescape=True, keep_trailing_newline=True)
    return env.from_string(_TEMPLATE).render(
        doc=doc,
        version=__version__,
        summary_title=pick("摘要", "Summary", doc.lang),
        render_table=lambda t, rows_of: _table_html(t, doc.lang, rows_of, scope.label_all),
    )


def write_pdf(html: str, path: Path) -> None:
    """Print the HTML to PDF; fonts are embedded (subset) by WeasyPrint."""
    from weasyprint import HTML

    identifier = hashlib.sha256(html.encode("utf-8")).hexdigest()[:32].encode()
    HTML(string=html, base_url=str(path.parent)).write_pdf(path, pdf_identifier=identifier)


def _sheet_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def write_xlsx(tables: Sequence[Table], path: Path, *, lang: str, facts: Sequence[tuple[str, str]]) -> None:
    """One sheet per table (named by its key) and an index sheet; byte-identical for the same input.

    Every text cell is written as text (institution names come from the studies' DICOM headers): see
    :mod:`qc_pipeline.io.tabular`."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.worksheet import Worksheet

    wb = Workbook()
    index = cast("Worksheet", wb.active)  # a new workbook's one sheet, a worksheet
    index.title = "index"
    append_row(index, [pick("表", "table", lang), pick("标题", "title", lang), pick("行数", "rows", lang)])
    for t in tables:
        append_row(index, [t.key, t.title(lang), len(t.rows)])
    append_row(index, [])
    for k, v in facts:
        append_row(index, [k, v])
    for t in tables:
        ws = wb.create_sheet(t.key)
        append_row(ws, [c.label(lang) for c in t.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in t.rows:
            append_row(ws, [_sheet_value(v) for v in row])
        for i, c in enumerate(t.columns, start=1):
            if c.kind == "pct":
                for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                    cell.number_format = "0.0"
            ws.column_dimensions[get_column_letter(i)].width = 14 if c.kind != "text" else 22
        if t.note(lang):
            append_row(ws, [])
            append_row(ws, [t.note(lang)])
        if not t.rows:
            append_row(ws, [t.empty(lang)])
        ws.freeze_panes = "A2"
    wb.properties.creator = "qc-pipeline"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    wb.properties.lastModifiedBy = "qc-pipeline"
    buffer = io.BytesIO()
    wb.save(buffer)
    path.write_bytes(_normalised_zip(buffer.getvalue()))


def _normalised_zip(data: bytes) -> bytes:
    """The same zip with fixed entry times (openpyxl stamps the current time on every entry)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl sets "modified" to now on save
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + FIXED_TIME_W3C, content)
            dst.writestr(entry, content)
    return out.getvalue()


def site_time(value: dt.datetime, zone: dt.tzinfo | None = None) -> str:
    """A stored (UTC) time as people read it: in the site's zone, with the zone's name."""
    zone = zone or ZoneInfo(SITE_ZONE)
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    local = aware.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} ({getattr(zone, 'key', None) or local.tzname()})"


def facts(
    data: ReportData, config: EvaluationConfig, lang: str, institution: str | None, zone: dt.tzinfo | None = None
) -> tuple[tuple[str, str], ...]:
    p = data.period
    rows = [
        (pick("评估期", "period", lang), f"{p.label(lang)}: {p.start} – {p.end}"),
        (pick("对比期", "compared with", lang), f"{p.previous.label(lang)}: {p.previous.start} – {p.previous.end}"),
        (pick("范围", "scope", lang), institution if institution is not None else word("all", lang)),
        (
            pick("数据截至（最新质控时间）", "data as of (latest decision)", lang),
            site_time(data.latest_decision, zone) if data.latest_decision else "—",
        ),
        (pick("质控阈值版本", "thresholds versions", lang), ", ".join(data.thresholds_versions) or "—"),
        (pick("评定规则版本", "evaluation rules version", lang), config.version),
        (pick("生成程序", "generated by", lang), f"qc-pipeline {__version__}"),
        (
            pick("检查日期", "study dates", lang),
            pick("按站点时区（北京时间）的检查日期归入评估期", "study date in site time (China Standard Time)", lang),
        ),
    ]
    return tuple(rows)
