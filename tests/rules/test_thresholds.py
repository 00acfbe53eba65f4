"""Thresholds load strictly: every error names the file, the key and the value found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qc_pipeline.checks.image_quality import METRIC_RULE_IDS, known_metrics
from qc_pipeline.errors import ConfigError
from qc_pipeline.pipeline import load_pipeline_thresholds, required_rules
from qc_pipeline.rules import default_thresholds_dir, load_thresholds


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for path in default_thresholds_dir().glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture text not found in {path.name}: {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_shipped_thresholds_define_exactly_the_rules_in_use():
    thresholds = load_pipeline_thresholds()
    on_metrics = {r.id: r for r in thresholds.rules.values() if r.metric is not None}
    assert set(thresholds.rules) - set(on_metrics) == required_rules() - METRIC_RULE_IDS
    assert {r for r in on_metrics if r.startswith("image_quality.")} == METRIC_RULE_IDS
    # Every modality's limits are there, on metrics the pipeline measures, in the image_quality category.
    assert {r.metric.split(".")[0] for r in on_metrics.values()} == {"dr", "ct", "mr", "ai"}
    assert {r.metric for r in on_metrics.values()} <= known_metrics()
    # objective metrics in the image_quality category, AI scores in the ai category
    assert all(
        rule_id.startswith("ai." if r.metric.startswith("ai.") else "image_quality.")
        for rule_id, r in on_metrics.items()
    )
    for rule in thresholds.rules.values():
        assert rule.source and rule.units
    assert thresholds.site.timezone == "Asia/Shanghai"
    assert thresholds.version.startswith("2026.11+")


def test_unknown_key_is_rejected_with_file_key_and_value(copy):
    edit(copy / "metadata.yaml", "    severity: fail\n", "    severity: fail\n    threshold: 3\n")
    with pytest.raises(
        ConfigError,
        match=r"metadata\.yaml: rules\[0\]\.threshold \(rule 'metadata\.patient_name\.missing'\): Extra inputs are not permitted \(found 3\)",
    ):
        load_pipeline_thresholds(copy)


def test_bad_severity_names_file_key_and_value(copy):
    edit(copy / "integrity.yaml", "severity: fail", "severity: fatal")
    with pytest.raises(ConfigError, match=r"integrity\.yaml: rules\[0\]\.severity .*'fatal'"):
        load_pipeline_thresholds(copy)


def test_missing_source_is_rejected(copy):
    edit(copy / "catalog.yaml", '    source: "seed 002 attachment 3: the first list covers DR, CT and MR only"\n', "")
    with pytest.raises(ConfigError, match=r"catalog\.yaml: rules\[0\]\.source .*Field required"):
        load_pipeline_thresholds(copy)


def test_unknown_rule_id_is_rejected(copy):
    edit(copy / "catalog.yaml", "id: catalog.no_images", "id: catalog.no_imagez")
    with pytest.raises(ConfigError, match=r"not defined: catalog\.no_images"):
        load_pipeline_thresholds(copy)
    edit(copy / "catalog.yaml", "id: catalog.no_imagez", "id: catalog.no_images")
    with (copy / "catalog.yaml").open("a", encoding="utf-8") as fh:
        fh.write(
            "  - id: catalog.extra_rule\n    severity: info\n    units: none\n    source: site default\n    description: nothing uses it\n"
        )
    with pytest.raises(ConfigError, match=r"catalog\.yaml: unknown rule id 'catalog\.extra_rule'"):
        load_pipeline_thresholds(copy)


@pytest.mark.parametrize("name", ["image_quality_mr.yaml", "image_quality_ct.yaml", "image_quality_dr.yaml"])
def test_a_typo_in_an_image_quality_limit_id_is_rejected(copy, name):
    rule_id = next(r for r in sorted(METRIC_RULE_IDS) if r.split(".")[1] == name[len("image_quality_") : -len(".yaml")])
    typo = rule_id.replace(".review", ".reveiw").replace(".fail", ".fial")
    edit(copy / name, f"id: {rule_id}\n", f"id: {typo}\n")
    with pytest.raises(
        ConfigError, match=rf"{name}: unknown rule id '{typo}' at rules\[\d+\]\.id \(no check uses it\)"
    ) as caught:
        load_pipeline_thresholds(copy)
    assert f"not defined: {rule_id}" in str(caught.value)


def test_ai_score_rule_ids_stay_free(copy):
    edit(copy / "ai.yaml", "id: ai.ct_artifacts.rings.review", "id: ai.ct_artifacts.rings_site.review")
    assert "ai.ct_artifacts.rings_site.review" in load_thresholds(copy, required_rules=required_rules()).rules


def test_rule_id_must_start_with_a_category(copy):
    edit(copy / "catalog.yaml", "id: catalog.no_images", "id: catalogue.no_images")
    with pytest.raises(ConfigError, match=r"rules\[1\]\.id: 'catalogue\.no_images' must start with a category"):
        load_thresholds(copy)


def test_duplicate_rule_id_is_rejected(copy):
    edit(copy / "catalog.yaml", "id: catalog.no_images", "id: catalog.modality.not_candidate")
    with pytest.raises(ConfigError, match=r"'catalog\.modality\.not_candidate' is already defined"):
        load_thresholds(copy)


def test_unknown_timezone_is_rejected(copy):
    edit(copy / "site.yaml", "timezone: Asia/Shanghai", "timezone: Asia/Chongqingg")
    with pytest.raises(ConfigError, match=r"site\.yaml: timezone: .*unknown IANA time zone 'Asia/Chongqingg'"):
        load_thresholds(copy)


def test_missing_site_file(copy):
    (copy / "site.yaml").unlink()
    with pytest.raises(ConfigError, match=r"site\.yaml is missing"):
        load_thresholds(copy)


def test_missing_folder(tmp_path):
    with pytest.raises(
        ConfigError, match=r"does not exist: name an existing folder \(the command.s --thresholds or --dir option\)"
    ):
        load_thresholds(tmp_path / "nope")


def test_invalid_yaml(copy):
    (copy / "metadata.yaml").write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"metadata\.yaml: not valid YAML"):
        load_thresholds(copy)


def test_version_changes_with_any_byte(copy):
    before = load_thresholds(copy).version
    edit(copy / "metadata.yaml", "limit: 120", "limit: 110")
    after = load_thresholds(copy)
    assert after.version != before
    assert after.rule("metadata.patient_birth_date.implausible").limit == 110
    assert load_thresholds(copy).version == after.version  # and is stable otherwise


@pytest.mark.parametrize("data_file", ["items/lexicon.yaml", "dr_exposure/vendor_indicators.yaml"])
def test_version_changes_with_the_data_that_changes_verdicts(copy, data_file):
    shutil.copytree(default_thresholds_dir() / data_file.split("/")[0], copy / data_file.split("/")[0])
    before = load_thresholds(copy).version
    path = copy / data_file
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert load_thresholds(copy).version != before


def test_limit_of_a_presence_rule_is_a_config_error():
    thresholds = load_pipeline_thresholds()
    with pytest.raises(ConfigError, match=r"'metadata\.patient_id\.missing' .* needs a numeric 'limit'"):
        thresholds.limit("metadata.patient_id.missing")
    with pytest.raises(ConfigError, match=r"rule 'metadata\.nope' is not defined"):
        thresholds.rule("metadata.nope")


def test_rule_on_an_unknown_metric_is_rejected(copy):
    edit(copy / "image_quality_ct.yaml", "metric: ct.noise_hu", "metric: ct.noise_hu_typo")
    with pytest.raises(
        ConfigError,
        match=r"image_quality_ct\.yaml: rules\[\d+\]\.metric: 'ct\.noise_hu_typo' .* is not a metric the pipeline measures",
    ):
        load_pipeline_thresholds(copy)


def test_rule_on_a_metric_needs_a_direction(copy):
    edit(
        copy / "image_quality_ct.yaml",
        "    when: above\n",
        "",
    )
    with pytest.raises(
        ConfigError, match=r"image_quality_ct\.yaml: rules\[\d+\].*needs both 'when' \(above/below\) and 'limit'"
    ):
        load_pipeline_thresholds(copy)
