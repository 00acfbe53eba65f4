"""A small, controlled population of decisions for the spot-check tests, and the backends.

Institutions, regions and reviewers come from a test configuration written next to the database
(``spot_check.yaml`` below); decisions are saved with ``ResultStore.save_decision`` like the
pipeline's. Every decision carries tell-tale text (institution, accession number, patient ID,
finding messages) that the blinding tests look for in pages and exports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from qc_pipeline.domain import Category, Decision, Finding, ItemRef, Provenance, Severity, StudySummary, Verdict
from qc_pipeline.spotcheck.config import SpotCheckConfig, load_config
from qc_pipeline.store import ResultStore
from tests.store.conftest import PostgresSchemas, pg_schema, postgres_schemas  # noqa: F401  (fixtures)

KEY = b"k" * 32
PROV = Provenance(pipeline_version="0.1.0", thresholds_version="th-1")
DECIDED = dt.datetime(2026, 11, 2, 4, 0, tzinfo=dt.UTC)
INSTITUTIONS = {  # name -> region
    "渝州测试医院": "chongqing",
    "巴南测试医院": "chongqing",
    "蜀都测试医院": "sichuan",
    "锦江测试医院": "sichuan",
}
ITEMS = {
    "DR": ItemRef("YB-001", "胸部后前位", "Chest PA"),
    "CT": ItemRef("YB-036", "胸部CT平扫", "CT chest plain"),
    "MR": ItemRef("YB-054", "头颅MR平扫", "MR brain plain"),
}
FINDING_TEXT = "Tell-tale finding: slice gap at position 17"
FINDING_TEXT_ZH = "泄露检测：第17层缺失"

CONFIG_YAML = """\
version: "test-1"
regions:
  - {code: chongqing, name_zh: 重庆, name_en: Chongqing}
  - {code: sichuan, name_zh: 四川, name_en: Sichuan}
reviewers:
  - {account: cq-1, region: chongqing}
  - {account: cq-2, region: chongqing}
  - {account: sc-1, region: sichuan}
  - {account: sc-2, region: sichuan}
sampling:
  strata: [region, institution, modality, item, verdict]
  rates: {pass: 0.1, review: 0.3, fail: 0.5}
  minimum_keys: [region, institution, modality, verdict]
  minimum_per_stratum: 2
  second_reading_rate: 0.3
  source: test configuration
grades:
  - {code: 甲, label_en: A, recognisable: true}
  - {code: 乙, label_en: B, recognisable: true}
  - {code: 丙, label_en: C, recognisable: false}
  - {code: 废, label_en: Reject, recognisable: false}
reasons:
  - {code: exposure, label_zh: 曝光不当, label_en: exposure}
  - {code: artefact, label_zh: 伪影, label_en: artefact}
"""

REGISTER_YAML = """\
version: "test-1"
regions:
  - {code: chongqing, name_zh: 重庆, name_en: Chongqing}
  - {code: sichuan, name_zh: 四川, name_en: Sichuan}
institutions:
  - {name: 渝州测试医院, name_en: Yuzhou Test Hospital, level: 二级, region: chongqing, public: true}
  - {name: 巴南测试医院, level: 二级, region: chongqing, public: true}
  - {name: 蜀都测试医院, level: 三级, region: sichuan, public: true}
  - {name: 锦江测试医院, level: 三级, region: sichuan, public: false}
"""
"""The test institutions (qualification does not matter to spot checks)."""


def use_test_register(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    """Point the default institution register at the test institutions."""
    path = folder / "institutions.yaml"
    path.write_text(REGISTER_YAML, encoding="utf-8")
    monkeypatch.setenv("QC_INSTITUTIONS", str(path))
    return path


@pytest.fixture(autouse=True)
def _test_register(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return use_test_register(monkeypatch, tmp_path_factory.mktemp("register"))


def uid(*parts: object) -> str:
    return "2.25." + str(int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24], 16))


def make_decision(
    n: int, institution: str | None, modality: str, verdict: Verdict, study_date: dt.date, *, patient: str | None = None
) -> Decision:
    study_uid = uid("study", n)
    findings = (
        (
            Finding(
                "continuity.slice.gap",
                Category.CONTINUITY,
                Severity.FAIL if verdict is Verdict.FAIL else Severity.REVIEW,
                FINDING_TEXT,
                FINDING_TEXT_ZH,
                value="17",
                limit="0",
            ),
        )
        if verdict in (Verdict.FAIL, Verdict.REVIEW)
        else ()
    )
    return Decision(
        study=StudySummary(
            study_instance_uid=study_uid,
            patient_id=patient or f"PID{n:05d}",
            patient_sex="F" if n % 2 else "M",
            patient_birth_date=dt.date(1960 + n % 40, 3, 1),
            accession_number=f"ACC{n:06d}",
            institution=institution,
            modalities=(modality,),
            study_date=study_date,
            study_time=dt.time(9, 0),
            study_description="Tell-tale description",
            n_series=2,
            n_instances=40,
        ),
        verdict=verdict,
        findings=findings,
        provenance=PROV,
        content_fingerprint=hashlib.sha256(study_uid.encode()).hexdigest(),
        decided_at=DECIDED,
        eligible=verdict is Verdict.PASS,
        item=None if verdict is Verdict.NOT_APPLICABLE else ITEMS[modality],
        metrics={"ai.score": 0.93},
        source_uri="file:///incoming",
    )


def population(month: int = 10, *, per_cell: int = 6) -> list[Decision]:
    """Per institution, modality DR/CT and verdict pass/review/fail: ``per_cell`` studies in
    2026-``month`` (pass: 3x as many); plus n/a studies and one unconfigured institution."""
    decisions = []
    counter = itertools.count(month * 10_000)
    verdicts = [(Verdict.PASS, 3 * per_cell), (Verdict.REVIEW, per_cell), (Verdict.FAIL, per_cell)]
    for institution, modality, (verdict, count) in itertools.product(INSTITUTIONS, ("DR", "CT"), verdicts):
        for i in range(count):
            decisions.append(
                make_decision(next(counter), institution, modality, verdict, dt.date(2026, month, 1 + i % 28))
            )
    decisions.append(
        make_decision(next(counter), "渝州测试医院", "MR", Verdict.FAIL, dt.date(2026, month, 3))
    )  # a stratum of 1
    decisions.append(
        make_decision(next(counter), "蜀都测试医院", "CT", Verdict.NOT_APPLICABLE, dt.date(2026, month, 4))
    )
    decisions.append(make_decision(next(counter), "Unlisted Hospital", "DR", Verdict.FAIL, dt.date(2026, month, 5)))
    return decisions


def save_all(store: ResultStore, decisions: list[Decision]) -> None:
    for d in decisions:
        store.save_decision(d, run_id=None)


@pytest.fixture
def config(tmp_path: Path) -> SpotCheckConfig:
    path = tmp_path / "spot_check.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    opened = ResultStore.open(f"sqlite:///{tmp_path / 'results.sqlite'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def populated(store: ResultStore) -> ResultStore:
    save_all(store, population())
    return store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStore]:
    """An empty store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'any.sqlite'}"
    else:
        url = PostgresSchemas.url(request.getfixturevalue("pg_schema"))
    opened = ResultStore.open(url)
    try:
        yield opened
    finally:
        opened.close()
