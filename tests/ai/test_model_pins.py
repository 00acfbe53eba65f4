"""Rules of thresholds/ai.yaml hold only for the model they were evaluated with (model_pin)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, load_registry, sha256_of
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.domain import Category, Severity
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.rules.loader import default_thresholds_dir
from qc_pipeline.rules.schema import Rule
from qc_pipeline.samples.demo import write_demo_studies
from qc_pipeline.sources import FolderSource

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
RULE = "ai.ct_artifacts.excess_noise.review"


def models_copy(target: Path) -> Path:
    target.mkdir()
    for path in DEFAULT_MODELS_DIR.iterdir():
        if path.suffix in (".onnx", ".json"):
            shutil.copy2(path, target / path.name)
    return target


def tamper(models: Path, name: str) -> str:
    """Replace model ``name`` by a working copy that differs in its bytes, with a manifest that
    matches it: what a retrained or swapped model looks like. The bytes appended are one more
    protobuf field of the ONNX ModelProto (doc_string, field 6: the last value read wins), so
    onnxruntime loads the file as before. Returns its sha256."""
    path = models / f"{name}.onnx"
    text = b"tampered copy"
    path.write_bytes(path.read_bytes() + bytes([6 << 3 | 2, len(text)]) + text)
    manifest = json.loads((models / f"{name}.json").read_text())
    manifest["sha256"] = sha256_of(path)
    (models / f"{name}.json").write_text(json.dumps(manifest))
    return manifest["sha256"]


def thresholds_enabling(tmp_path: Path, rule_id: str) -> Path:
    """A copy of the shipped thresholds where ``rule_id`` is on (the gate's evidence set to clear it)."""
    target = tmp_path / "thresholds"
    shutil.copytree(default_thresholds_dir(), target)
    data = yaml.safe_load((target / "ai.yaml").read_text())
    gate = data.get("gate")
    for rule in data["rules"]:
        if rule["id"] == rule_id:
            rule["enabled"] = True
            rule.pop("duplicate_of", None)
            if gate is not None:
                rule["evidence"] = {
                    **rule.get("evidence", {}),
                    "auc_lower_95": 0.99,
                    "false_flag_upper_95": 0.01,
                    "ai_only_catches": 5,
                    "effective_n": 100,
                    "model_pin": rule["model_pin"],
                }
    (target / "ai.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def noisy_ct(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pin-demo")
    write_demo_studies(root)
    return root / "noisy_ct"


def decide(folder: Path, thresholds):
    source = FolderSource(folder)
    (entry,) = list(source.discover())
    return judge(source.load(entry), thresholds, now=NOW, pixels=source)


def test_every_ai_score_rule_is_pinned_to_a_shipped_model():
    thresholds = load_pipeline_thresholds()
    pins = {model.pin for model in load_registry(DEFAULT_MODELS_DIR).values()}
    scored = [r for r in thresholds.rules.values() if r.scored_model is not None]
    assert scored and all(r.model_pin in pins for r in scored), [r.id for r in scored if r.model_pin not in pins]


def test_a_pin_must_name_the_model_of_the_metric():
    with pytest.raises(ValidationError, match="must name the model that gives metric"):
        Rule(
            id="ai.ct_artifacts.streaks.review",
            metric="ai.ct_artifacts.streaks",
            when="above",
            limit=0.5,
            units="probability",
            severity="review",
            source="test",
            description="test",
            model_pin="mr_artifacts@1+" + "0" * 64,
        )
    with pytest.raises(ValidationError, match="string_pattern_mismatch|should match pattern"):
        Rule(
            id="ai.ct_artifacts.streaks.review",
            metric="ai.ct_artifacts.streaks",
            when="above",
            limit=0.5,
            units="probability",
            severity="review",
            source="test",
            description="test",
            model_pin="ct_artifacts@1+abc",
        )


def test_pin_mismatches_lists_enabled_rules_of_a_model_other_than_the_pinned_one(tmp_path):
    thresholds = load_pipeline_thresholds(thresholds_enabling(tmp_path, RULE))
    models = models_copy(tmp_path / "models")
    assert Scorer.load(models).pin_mismatches(thresholds.rules.values()) == {}
    manifest = json.loads((models / "ct_artifacts.json").read_text())
    manifest["version"] = "2099.1.1"  # same file, other version: not the model evaluated either
    (models / "ct_artifacts.json").write_text(json.dumps(manifest))
    found = Scorer.load(models).pin_mismatches(thresholds.rules.values())
    assert found == {RULE: ("ct_artifacts", f"ct_artifacts@2099.1.1+{manifest['sha256']}")}


def test_a_tampered_model_turns_its_pinned_rules_off_with_an_info_finding(noisy_ct, tmp_path, monkeypatch):
    thresholds = load_pipeline_thresholds(thresholds_enabling(tmp_path, RULE))
    monkeypatch.setenv("QC_MODELS_DIR", str(models_copy(tmp_path / "models")))
    before = decide(noisy_ct, thresholds)
    assert RULE in {f.code for f in before.findings}  # the pinned model flags the noisy CT
    assert "ai.model.pin_mismatch" not in {f.code for f in before.findings}

    models = models_copy(tmp_path / "tampered")
    sha = tamper(models, "ct_artifacts")
    monkeypatch.setenv("QC_MODELS_DIR", str(models))
    after = decide(noisy_ct, thresholds)
    assert RULE not in {f.code for f in after.findings}
    (finding,) = [f for f in after.findings if f.code == "ai.model.pin_mismatch"]
    assert finding.category is Category.AI and finding.severity is Severity.INFO
    assert finding.value == f"ct_artifacts@2026.12.2+{sha}" and finding.limit == thresholds.rules[RULE].model_pin
    assert RULE in finding.message and "not the model the rules" in finding.message
    assert "评估时所用的模型" in finding.message_zh and RULE in finding.message_zh
    # the scores are still measured and stored for the reviewer
    assert any(m.metric == "ai.ct_artifacts.excess_noise" and m.value is not None for m in after.measurements)


def test_enabling_a_rule_whose_evidence_fails_the_gate_is_an_error_naming_rule_and_figure(tmp_path):
    from qc_pipeline.errors import ConfigError

    target = thresholds_enabling(tmp_path, RULE.replace("excess_noise", "streaks"))
    data = yaml.safe_load((target / "ai.yaml").read_text())
    (rule,) = [r for r in data["rules"] if r["id"] == "ai.ct_artifacts.streaks.review"]
    rule["evidence"]["auc_lower_95"] = 0.81
    rule["evidence"]["ai_only_catches"] = None
    (target / "ai.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    with pytest.raises(
        ConfigError, match=r"rule 'ai\.ct_artifacts\.streaks\.review'\) is enabled but does not clear the gate"
    ) as err:
        load_pipeline_thresholds(target)
    assert "AUC lower 95 % bound 0.81 fails the gate >= 0.9" in str(err.value)
    assert "AI-only catches not measured (gate >= 1)" in str(err.value)
    assert "false-flag" not in str(err.value)  # 0.01 clears <= 0.10


def test_a_rule_without_evidence_or_with_evidence_of_another_model_cannot_be_enabled(tmp_path):
    from qc_pipeline.errors import ConfigError

    target = thresholds_enabling(tmp_path, "ai.mr_artifacts.noise.review")
    data = yaml.safe_load((target / "ai.yaml").read_text())
    (rule,) = [r for r in data["rules"] if r["id"] == "ai.mr_artifacts.noise.review"]
    rule["evidence"]["model_pin"] = "mr_artifacts@2026.11.1+" + "0" * 64
    (target / "ai.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    with pytest.raises(ConfigError, match="its evidence was measured with mr_artifacts@2026.11.1"):
        load_pipeline_thresholds(target)
    del rule["evidence"]
    (target / "ai.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    with pytest.raises(ConfigError, match="mr_artifacts.noise.review'\\) is enabled .*: it has no evidence"):
        load_pipeline_thresholds(target)


def test_a_duplicate_of_an_objective_rule_must_stay_off_and_name_an_objective_rule(tmp_path):
    from qc_pipeline.errors import ConfigError

    target = tmp_path / "thresholds"
    shutil.copytree(default_thresholds_dir(), target)
    text = (target / "ai.yaml").read_text()
    dup = "    duplicate_of: image_quality.ct.noise.review\n    enabled: false"
    assert dup in text
    (target / "ai.yaml").write_text(
        text.replace(dup, "    duplicate_of: image_quality.ct.noise.review\n    enabled: true")
    )
    with pytest.raises(ConfigError, match="duplicates the objective rule 'image_quality.ct.noise.review'.*must be off"):
        load_pipeline_thresholds(target)
    (target / "ai.yaml").write_text(
        text.replace(dup, "    duplicate_of: image_quality.ct.noise_typo.review\n    enabled: false")
    )
    with pytest.raises(
        ConfigError, match="duplicate_of: 'image_quality.ct.noise_typo.review'.*must name an objective rule"
    ):
        load_pipeline_thresholds(target)


def test_the_shipped_gate_is_stated_with_its_source_and_every_score_rule_is_off_for_lack_of_evidence():
    from qc_pipeline.ai.specs import score_metrics
    from qc_pipeline.rules.loader import read_yaml
    from qc_pipeline.rules.schema import RuleFile

    shipped = RuleFile.model_validate(read_yaml(default_thresholds_dir() / "ai.yaml"))
    assert shipped.gate is not None and "[D]" in shipped.gate.source
    assert (shipped.gate.auc_lower_95_min, shipped.gate.false_flag_upper_95_max, shipped.gate.ai_only_catches_min) == (
        0.9,
        0.1,
        1,
    )
    scored = [r for r in shipped.rules if r.scored_model is not None]
    # one rule per score of every model: 16 since the MR artifact model's fifth label (spike)
    assert sorted(r.metric for r in scored) == sorted(score_metrics()) and len(scored) == 16
    for rule in scored:
        assert not rule.enabled and shipped.gate.failures(rule), rule.id
