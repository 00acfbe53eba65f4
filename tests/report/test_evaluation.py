"""The evaluation report on a generated population: files, determinism, numbers vs SQL, Chinese in the PDF."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import text

from qc_pipeline.cli import main
from qc_pipeline.institutions import default_register
from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.samples.population import INSTITUTIONS, generate_population
from qc_pipeline.store import ResultStore
from tests.store.conftest import PostgresSchemas, pg_schema, postgres_schemas  # noqa: F401  (fixtures)

PERIOD = Period.parse("2026H2")
SCALE = 0.5  # ~250 studies over two periods: every institution has enough judged studies to be evaluated
TITLE_ZH = "医学影像检查结果互认质控评估报告"
CJK_BOLD_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('pop') / 'results.sqlite'}"
    with ResultStore.open(url) as store:
        generate_population(store, scale=SCALE)
    return url


@pytest.fixture(scope="module")
def zh_report(db_url: str, tmp_path_factory: pytest.TempPathFactory):
    with ResultStore.open(db_url) as store:
        return write_report(store, PERIOD, tmp_path_factory.mktemp("zh"), lang="zh")


def _sheet(path: Path, key: str) -> list[dict[str, object]]:
    ws = load_workbook(path, read_only=True)[key]
    rows = list(ws.iter_rows(values_only=True))
    header = rows[0]
    return [
        dict(zip(header, r, strict=False))
        for r in rows[1:]
        if r and r[0] is not None and len(r) > 1 and r[1] is not None
    ]


def test_html_pdf_xlsx_written_in_chinese(zh_report) -> None:
    html = zh_report.html.read_text(encoding="utf-8")
    assert TITLE_ZH in html and "互认质控评价" in html and "费用影响" in html
    assert html.count("<svg") >= 4  # verdicts, trend, metric boxes, delay boxes
    assert zh_report.pdf.read_bytes().startswith(b"%PDF")
    sheets = load_workbook(zh_report.xlsx, read_only=True).sheetnames
    assert sheets == ["index", *(f"T{i:02d}" for i in range(1, 21))]


def test_same_inputs_give_identical_html_and_xlsx(db_url: str, zh_report, tmp_path: Path) -> None:
    with ResultStore.open(db_url) as store:
        again = write_report(store, PERIOD, tmp_path, lang="zh", pdf=False)
    assert again.html.read_bytes() == zh_report.html.read_bytes()
    assert again.xlsx.read_bytes() == zh_report.xlsx.read_bytes()


def test_pdf_embeds_a_cjk_font_and_extracts_chinese(zh_report) -> None:
    fonts = subprocess.run(["pdffonts", str(zh_report.pdf)], capture_output=True, text=True, check=True).stdout
    cjk = [line for line in fonts.splitlines() if "CJK" in line]
    assert cjk, fonts
    assert all(line.split()[-5] == "yes" for line in cjk), fonts  # the "emb" column
    first_page = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", str(zh_report.pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert TITLE_ZH in first_page and "互认质控评价" in first_page


def _ink_profile(image: Image.Image) -> np.ndarray:
    """Dark-pixel mask of the text's bounding box, resized to 600 x 40 (binary, float)."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    ink = gray < 128
    rows, cols = np.nonzero(ink)
    box = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    resized = Image.fromarray((box * 255).astype(np.uint8)).resize((600, 40), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64) / 255.0


def _render_reference(text_: str) -> Image.Image:
    """The string drawn by Pillow/FreeType straight from the font file: independent of WeasyPrint."""
    font = ImageFont.truetype(str(CJK_BOLD_FONT), 48, index=2)  # face 2 of the collection: SC
    image = Image.new("L", (48 * len(text_) + 40, 90), 255)
    ImageDraw.Draw(image).text((20, 10), text_, font=font, fill=0)
    return image


@pytest.mark.skipif(
    shutil.which("pdftoppm") is None or not CJK_BOLD_FONT.exists(), reason="needs poppler-utils and fonts-noto-cjk"
)
def test_pdf_page_shows_the_chinese_title_as_glyphs_not_boxes(zh_report, tmp_path: Path) -> None:
    subprocess.run(
        ["pdftoppm", "-r", "150", "-png", "-f", "1", "-l", "1", str(zh_report.pdf), str(tmp_path / "p")], check=True
    )
    page = Image.open(next(tmp_path.glob("p*.png")))
    # The title is the first line of ink: 16 mm margin at 150 dpi is ~95 px; 18 pt is ~38 px high.
    gray = np.asarray(page.convert("L"))
    ink_rows = np.nonzero((gray < 128).any(axis=1))[0]
    top = ink_rows[0]
    title = page.crop((0, top - 4, page.width, top + 50))
    rendered = _ink_profile(title)
    same = _ink_profile(_render_reference(TITLE_ZH))
    other = _ink_profile(_render_reference(TITLE_ZH[::-1]))
    tofu = np.zeros_like(same)
    tofu[2:-2, :] = 1.0  # a row of filled/hollow boxes reads as ink over the whole height
    score = float(np.corrcoef(rendered.ravel(), same.ravel())[0, 1])
    assert score > 0.6, score
    assert score > float(np.corrcoef(rendered.ravel(), other.ravel())[0, 1]) + 0.2
    assert float(np.abs(rendered - tofu).mean()) > 0.3


def _sql_counts(db_url: str) -> dict[str, Counter[str]]:
    with ResultStore.open(db_url) as store, store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.institution, d.verdict, COUNT(*) FROM studies s JOIN decisions d ON d.study_id = s.id "
                "WHERE d.is_current AND s.study_date BETWEEN :a AND :b GROUP BY s.institution, d.verdict"
            ),
            {"a": PERIOD.start, "b": PERIOD.end},
        ).all()
    out: dict[str, Counter[str]] = {}
    for institution, verdict, n in rows:
        out.setdefault(institution, Counter())[verdict] = n
    return out


def test_workbook_volumes_and_rates_match_sql(db_url: str, zh_report) -> None:
    counts = _sql_counts(db_url)
    rows = {r["机构"]: r for r in _sheet(zh_report.xlsx, "T01")}
    assert set(rows) == {"全部机构", *(i.name for i in INSTITUTIONS)}
    for name, c in counts.items():
        row = rows[name]
        judged = c["pass"] + c["review"] + c["fail"]
        assert (row["检查数"], row["参评数"], row["合格"], row["待复核"], row["不合格"], row["不适用"]) == (
            sum(c.values()),
            judged,
            c["pass"],
            c["review"],
            c["fail"],
            c["not_applicable"],
        )
        assert row["合格率 %"] == pytest.approx(round(100 * c["pass"] / judged, 1))
    assert rows["全部机构"]["检查数"] == sum(sum(c.values()) for c in counts.values())


def test_workbook_fees_match_sql(db_url: str, zh_report) -> None:
    """Fees count storage failures only (unreadable files, no pixel data), per scheme and never
    summed; without exam logs nothing is counted as not uploaded."""
    expected: dict[str, dict[str, int]] = {}
    for scheme, mods in (("chongqing", "('CT', 'MR')"), ("national", "('CT', 'MR', 'DX', 'CR', 'DR')")):
        with ResultStore.open(db_url) as store, store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT s.institution, COUNT(*) FROM studies s JOIN decisions d ON d.study_id = s.id "
                    f"WHERE d.is_current AND s.study_date BETWEEN :a AND :b AND s.modality IN {mods} AND "
                    " EXISTS (SELECT 1 FROM findings f WHERE f.decision_id = d.id AND f.severity != 'info'"
                    " AND f.code IN ('integrity.file.unreadable', 'integrity.pixel_data.truncated',"
                    " 'integrity.header.missing_uid', 'integrity.pixel_data.missing', 'completeness.report.missing'))"
                    " GROUP BY s.institution"
                ),
                {"a": PERIOD.start, "b": PERIOD.end},
            ).all()
        expected[scheme] = dict(rows)
    sheet = _sheet(zh_report.xlsx, "T14")
    register = default_register()
    for inst in INSTITUTIONS:
        public = register.resolve(inst.name).public  # the fee schemes concern public institutions only
        for scheme, per_exam in (("chongqing", 20), ("national", 5)):
            row = next(r for r in sheet if r["机构"] == inst.name and r["口径"] == scheme)
            n = expected[scheme].get(inst.name, 0)
            assert (row["涉及检查"], row["未上传"], row["扣减（元）"]) == (n, 0, per_exam * n if public else None)
    assert any(not register.resolve(i.name).public for i in INSTITUTIONS)  # the population has a private one
    assert "合计" not in str(sheet)


def test_qualification_outcomes_of_the_population(zh_report) -> None:
    rows = {r["机构"]: r for r in _sheet(zh_report.xlsx, "T13")}
    outcomes = {name: r["评价结论"] for name, r in rows.items()}
    assert outcomes["重庆市示范区医院C"] == "不合格（建议暂停互认）"
    assert [n for n, o in outcomes.items() if o != "评价合格"] == ["重庆市示范区医院C"]
    failing = rows["重庆市示范区医院C"]
    assert failing["合格率 %"] < 70
    # the sentence quotes the table
    html = zh_report.html.read_text(encoding="utf-8")
    assert f"合格率 {Decimal(str(failing['合格率 %'])):.1f}%" in html


def test_the_qc_centre_evaluates_and_recommends_it_does_not_cancel(zh_report) -> None:
    """Cancelling recognition is the health administration's act (DB50 §(九)): the QC centre's
    conclusion is 评价合格 / 不合格（建议暂停互认）; "元数据" is jargon for 患者及检查信息."""
    html = zh_report.html.read_text(encoding="utf-8")
    for wrong in ("保持互认资格", "取消互认资格", "取消资格", "元数据"):
        assert wrong not in html, wrong
    assert "评价合格" in html and "不合格（建议暂停互认）" in html and "患者及检查信息" in html


def test_english_report_and_one_institution(db_url: str, tmp_path: Path) -> None:
    name = INSTITUTIONS[0].name
    with ResultStore.open(db_url) as store:
        files = write_report(store, PERIOD, tmp_path, lang="en", institution=name, pdf=False)
    html = files.html.read_text(encoding="utf-8")
    assert "Evaluation for mutual recognition" in html and "All institutions" in html
    t01 = {r["institution"] for r in _sheet(files.xlsx, "T01")}
    assert t01 == {"All institutions", name}
    assert files.html.name == f"evaluation-2026H2-{name}-en.html"


def test_sections_without_reviews_or_spot_checks_say_so(zh_report) -> None:
    html = zh_report.html.read_text(encoding="utf-8")
    assert "本期无放射科医师复核记录" in html and "本期无抽查记录" in html


def test_cli_report_and_errors(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["report", "--db", db_url, "--out", str(tmp_path), "--lang", "en", "--no-pdf"])
    assert ok.exit_code == 0, ok.output
    assert "evaluation-2026H2-en.html" in ok.output  # the default period: the latest study's
    bad = runner.invoke(main, ["report", "--db", db_url, "--period", "2026Q3", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "2026H1" in bad.output
    unknown = runner.invoke(
        main, ["report", "--db", db_url, "--institution", "不存在医院", "--no-pdf", "--out", str(tmp_path)]
    )
    assert unknown.exit_code == 2 and "institutions with studies" in unknown.output
    with ResultStore.open(f"sqlite:///{tmp_path / 'empty.sqlite'}"):  # a read never creates the database
        pass
    empty = runner.invoke(main, ["report", "--db", f"sqlite:///{tmp_path / 'empty.sqlite'}", "--out", str(tmp_path)])
    assert empty.exit_code == 1 and "no dated study" in empty.output
    assert "Traceback" not in bad.output + unknown.output + empty.output


@pytest.mark.postgres
def test_postgresql_gives_the_same_report(pg_schema: str, db_url: str, zh_report, tmp_path: Path) -> None:
    with ResultStore.open(PostgresSchemas.url(pg_schema)) as store:
        generate_population(store, scale=SCALE)
        files = write_report(store, PERIOD, tmp_path, lang="zh", pdf=False)
    assert files.xlsx.read_bytes() == zh_report.xlsx.read_bytes()
