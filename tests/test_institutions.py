"""The institution register: one name per institution, qualification by date, never assumed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from qc_pipeline.errors import ConfigError
from qc_pipeline.institutions import Register, default_register, load_register

_REGIONS = [{"code": "chongqing", "name_zh": "重庆", "name_en": "Chongqing"}]


def _register(*qualification: dict) -> Register:
    return Register.model_validate(
        {
            "version": "t",
            "regions": _REGIONS,
            "institutions": [
                {
                    "name": "重庆市测试医院",
                    "name_en": "Chongqing Test Hospital",
                    "aliases": ["CQ TEST HOSP"],
                    "level": "二级",
                    "region": "chongqing",
                    "public": True,
                    "qualification": list(qualification),
                }
            ],
        }
    )


def test_shipped_register_resolves_english_and_chinese_names_to_one_institution() -> None:
    register = default_register()
    english = register.resolve("Sichuan Provincial People's Hospital")
    chinese = register.resolve("四川省人民医院")
    assert english is not None and english is chinese
    assert register.canonical(" sichuan provincial people's  HOSPITAL ") == "四川省人民医院"
    assert english.region == "sichuan" and english.public is True


def test_shipped_register_knows_every_sample_institution() -> None:
    from qc_pipeline.samples import demo, population

    register = default_register()
    names = [demo.HOSPITAL_CQ, demo.HOSPITAL_SC, demo.HOSPITAL_HX]
    names += [n for i in population.INSTITUTIONS for n in (i.name, i.name_en)]
    missing = [n for n in names if register.resolve(n) is None]
    assert missing == []


def test_unknown_institution_is_not_qualified_and_says_why() -> None:
    ok, reason = default_register().qualified_on("Some Private Clinic", dt.date(2026, 10, 1))
    assert ok is False
    assert "institution not in the register: Some Private Clinic" in reason and "机构不在互认机构名录中" in reason
    assert default_register().qualification_check("Some Private Clinic", None).code == "institution.unregistered"
    ok, reason = default_register().qualified_on(None, dt.date(2026, 10, 1))
    assert ok is False and "not in the register" in reason


def test_qualification_follows_its_dated_entries() -> None:
    register = _register(
        {"status": "qualified", "since": "2025-01-01", "basis": "2024 H2 evaluation passed"},
        {"status": "suspended", "since": "2026-07-01", "basis": "2026 H1 evaluation failed"},
    )
    assert register.qualified_on("CQ Test Hosp", dt.date(2024, 12, 31))[0] is False
    ok, reason = register.qualified_on("cq test hosp", dt.date(2026, 6, 30))
    assert ok is True and "2025-01-01" in reason
    ok, reason = register.qualified_on("Chongqing Test Hospital", dt.date(2026, 7, 1))
    assert ok is False
    assert "机构不具备互认资格（自 2026-07-01 起）" in reason and "2026 H1 evaluation failed" in reason
    assert register.qualified_on("重庆市测试医院", None)[0] is False


def test_no_qualification_on_record_is_not_qualified() -> None:
    ok, reason = _register().qualified_on("重庆市测试医院", dt.date(2026, 1, 1))
    assert ok is False and "had no recognition qualification on 2026-01-01" in reason


def test_a_name_listed_twice_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "institutions.yaml"
    path.write_text(
        "version: t\nregions: [{code: chongqing, name_zh: 重庆, name_en: Chongqing}]\ninstitutions:\n"
        "  - {name: A医院, name_en: Hospital A, level: 二级, region: chongqing, public: true}\n"
        "  - {name: B医院, aliases: [hospital a], level: 二级, region: chongqing, public: true}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="'hospital a' is listed twice"):
        load_register(path)


def test_an_unknown_region_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "institutions.yaml"
    path.write_text(
        "version: t\nregions: [{code: chongqing, name_zh: 重庆, name_en: Chongqing}]\ninstitutions:\n"
        "  - {name: A医院, level: 二级, region: tibet, public: true}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="unknown region 'tibet'"):
        load_register(path)


def test_cli_lists_the_register() -> None:
    import json

    from click.testing import CliRunner

    from qc_pipeline.cli import main

    result = CliRunner().invoke(main, ["institutions", "list", "--format", "json", "--as-of", "2026-10-01"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    sc = rows["四川省人民医院"]
    assert sc["name_en"] == "Sichuan Provincial People's Hospital" and sc["region"] == "sichuan"
    assert sc["qualified"] is True and sc["as_of"] == "2026-10-01"
    table = CliRunner().invoke(main, ["institutions", "list", "--as-of", "2026-10-01"])
    assert table.exit_code == 0 and "四川省人民医院" in table.output


def test_exam_logs_group_and_price_by_the_register() -> None:
    from qc_pipeline.exam_logs import institution_key, institution_public

    assert (
        institution_key(" Sichuan  Provincial People's Hospital ")
        == institution_key("四川省人民医院")
        == "四川省人民医院"
    )
    assert institution_key("  Some   Clinic ") == "Some Clinic"  # not registered: as written, spaces tidied
    assert institution_public("Sichuan Demonstration Hospital E") is False
    assert institution_public("重庆市示范医院A") is True
    assert institution_public("Some Clinic") is None
