"""The Chinese evaluation report as printed: A4 portrait pages, tables people can read, no ids.

Every page of the PDF is rendered to PNG with poppler's ``pdftoppm`` (``./bootstrap test``
installs poppler-utils) and its text read back with ``pdftotext``; set ``QC_SCREENSHOT_DIR`` to
keep the page images for a person to look at.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.samples.population import INSTITUTIONS, generate_population
from qc_pipeline.store import ResultStore

from .test_readable import ID, visible_text

pytestmark = pytest.mark.skipif(
    not (shutil.which("pdftoppm") and shutil.which("pdftotext")),
    reason="poppler-utils not installed (./bootstrap test installs it)",
)

LONG_NAME = "重庆市渝北区第二人民医院放射影像诊断中心"
"""A fictional institution with a name as long as real ones get (20 characters)."""
DPI = 60
A4_PX = (round(210 / 25.4 * DPI), round(297 / 25.4 * DPI))


@dataclasses.dataclass(frozen=True)
class Printed:
    pdf: Path
    html: str
    pages: list[Path]
    layout: list[str]
    """``pdftotext -layout`` text of each page."""


def _print(root: Path, lang: str) -> Printed:
    institutions = (*INSTITUTIONS[:2], dataclasses.replace(INSTITUTIONS[2], name=LONG_NAME), *INSTITUTIONS[3:])
    with ResultStore.open(f"sqlite:///{root / 'results.sqlite'}") as store:
        generate_population(store, scale=0.3, institutions=institutions)
        files = write_report(store, Period.parse("2026H2"), root / "out", lang=lang, pdf=True)
    assert files.pdf is not None
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", str(files.pdf), str(root / "page")], check=True)
    pages = sorted(root.glob("page-*.png"))
    if target := os.environ.get("QC_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        for page in pages:
            shutil.copy(page, Path(target) / f"report-{lang}-{page.name}")
    layout = [
        subprocess.run(
            ["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(files.pdf), "-"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for n in range(1, len(pages) + 1)
    ]
    return Printed(files.pdf, files.html.read_text(encoding="utf-8"), pages, layout)


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Printed:
    return _print(tmp_path_factory.mktemp("pages"), "zh")


def _pdfinfo_pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]


def test_every_page_is_a4_portrait(printed: Printed) -> None:
    assert len(printed.pages) == _pdfinfo_pages(printed.pdf)
    assert 5 <= len(printed.pages) <= 30, len(printed.pages)  # the report, not one page per table row
    for page in printed.pages:
        width, height = Image.open(page).size
        assert abs(width - A4_PX[0]) <= 1 and abs(height - A4_PX[1]) <= 1, (page.name, width, height)


def _assert_margins(pages: list[Path]) -> None:
    # Nothing is printed within 12 mm of the paper's top and sides (the @page margins hold), and
    # within 5 mm of its bottom edge only the page number sits in the bottom margin.
    edge, foot = round(12 / 25.4 * DPI), round(5 / 25.4 * DPI)
    for page in pages:
        image = Image.open(page).convert("L")
        w, h = image.size
        for box in ((0, 0, w, edge), (0, h - foot, w, h), (0, 0, edge, h), (w - edge, 0, w, h)):
            assert image.crop(box).getextrema()[0] > 200, (page.name, box)  # no dark pixel


def test_pages_have_margins(printed: Printed) -> None:
    _assert_margins(printed.pages)


def test_english_pages_have_margins_too(tmp_path: Path) -> None:
    # English headers have long words ("completeness"): a table still fits the page, breaking them.
    _assert_margins(_print(tmp_path, "en").pages)


def test_a_long_institution_name_stays_on_one_line(printed: Printed) -> None:
    text = "\n".join(printed.layout)
    lines_with_name = [line for line in text.splitlines() if LONG_NAME in line]
    fee_pages = [p for p in printed.layout if "T14 费用影响" in p]
    assert fee_pages and any(LONG_NAME in p for p in fee_pages)  # in the fee table too, whole
    fee_lines = [line for p in fee_pages for line in p.splitlines() if LONG_NAME in line]
    # its short "public" cell (the name is not in the register) stays whole beside it, not one character a line
    assert any("未登记" in line for line in fee_lines), fee_lines
    assert all("未登记" in line for p in fee_pages for line in p.splitlines() if "未登" in line)
    assert len(lines_with_name) >= 5, len(lines_with_name)  # T01, T02, T05, T13, T14 ... each show it whole
    assert "重庆市渝北区第二" not in text.replace(LONG_NAME, "")  # never cut into pieces


def test_table_text_is_at_least_9_points(printed: Printed) -> None:
    # Compared within the PDF: a T01 number's height against the title's (18 pt, same font).
    boxes = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "3", str(printed.pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    words = re.findall(r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]+)</word>', boxes)
    height = {w: float(y1) - float(y0) for y0, y1, w in words}
    title = height["医学影像检查结果互认质控评估报告"]
    cell = height["全部机构"]
    assert cell / title >= 9 / 18 - 0.01, (cell, title)


def test_long_tables_repeat_their_header_on_the_next_page(printed: Printed) -> None:
    # T03 (one row per recognition item) does not fit one page: its header row is printed again.
    pages = [p for p in printed.layout if re.search(r"YB-0\d\d", p) and "项目名称" in p]
    assert len(pages) >= 2


def test_no_table_row_is_split_across_pages(printed: Printed) -> None:
    # A row's cells stay together: no page starts with an institution's row continued from the last.
    css = re.search(r"<style>(.*?)</style>", printed.html, re.S).group(1)  # type: ignore[union-attr]
    assert re.search(r"tr\s*\{[^}]*break-inside:\s*avoid", css)
    assert re.search(r"thead\s*\{[^}]*display:\s*table-header-group", css)


def test_the_printed_chinese_report_shows_no_rule_or_metric_ids(printed: Printed) -> None:
    assert ID.findall("\n".join(printed.layout)) == []
    assert ID.findall(visible_text(printed.html)) == []
    assert "chongqing" not in "\n".join(printed.layout) and "national" not in "\n".join(printed.layout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from qc_pipeline.checks.image_quality import rules_by_metric
    from qc_pipeline.report.config import load_evaluation_config
    from qc_pipeline.report.data import load_report_data
    from qc_pipeline.report.tables import build_tables
    from qc_pipeline.rules import load_thresholds

    institutions = (*INSTITUTIONS[:2], dataclasses.replace(INSTITUTIONS[2], name=LONG_NAME), *INSTITUTIONS[3:])
    with ResultStore.open(f"sqlite:///{tmp_path_factory.mktemp('fig') / 'r.sqlite'}") as store:
        generate_population(store, scale=0.2, institutions=institutions)
        data = load_report_data(store, Period.parse("2026H2"))
    rules = rules_by_metric(load_thresholds())
    scope, tables = build_tables(data, load_evaluation_config(), rules, "zh")
    return data, scope, tables, rules


def test_the_trend_legend_does_not_cover_the_lines(built) -> None:  # type: ignore[no-untyped-def]
    from qc_pipeline.report import plots

    data, scope, tables, _ = built
    fig = plots.monthly_figure(tables["T04"], scope, data.period.previous.months() + data.period.months(), "zh")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    (ax,) = fig.axes
    legend, plot_area = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not legend.overlaps(plot_area), (legend, plot_area)
    assert len(ax.get_legend().get_texts()) == len(scope.groups())  # every institution named, the long one too


def test_metric_figure_is_titled_in_words_at_the_page_width(built) -> None:  # type: ignore[no-untyped-def]
    from qc_pipeline.report import plots
    from qc_pipeline.report.data import KEY_METRICS

    data, scope, _, rules = built
    by_study: dict[int, list[tuple[str, float]]] = {}
    for m in data.measurements:
        by_study.setdefault(m.study_id, []).append((m.metric, m.value))
    fig = plots.metric_figure(scope, by_study, KEY_METRICS, rules, "zh")
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[0] == "偏差指数 DI" and all(ID.findall(t) == [] and "." not in t for t in titles), titles
    assert fig.get_figwidth() <= 7.1  # 180 mm of A4 text width: printed at its size, not shrunk


def test_short_codes_in_tables_are_not_broken(printed: Printed) -> None:
    # Months (T04, also on its continuation page) and item codes stay whole: "2026-12", not "2026" / "-12".
    text = "\n".join(printed.layout)
    assert re.search(r"^\s*-(0[1-9]|1[0-2])\s*$", text, re.M) is None  # a month's tail alone on a line
    assert "2026-12" in text and "YB-0" in text
