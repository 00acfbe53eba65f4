"""`qc-pipeline items` and `qc-pipeline thresholds`: the catalog and the rules as a person reads them."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.rules import default_thresholds_dir


def test_items_lists_the_catalog():
    result = CliRunner().invoke(main, ["items", "--format", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert len(items) == 67
    brain = next(i for i in items if i["code"] == "YB-054")
    assert brain["name_zh"] == "颅脑磁共振平扫成像"
    labels = [s["label_en"] for s in brain["requires"]["sequences"]["required"]]
    assert labels == ["axial T2WI", "axial T1WI", "T2-FLAIR", "axial DWI", "sagittal T1 or T2"]
    table = CliRunner().invoke(main, ["items", "--modality", "CT", "--lang", "zh"])
    assert table.exit_code == 0
    assert "20 项 items" in table.output and "上腹部计算机体层" in table.output


def test_thresholds_lists_rules_with_sources():
    result = CliRunner().invoke(main, ["thresholds"])
    assert result.exit_code == 0
    assert "metadata.patient_id.missing" in result.output and "seed 002" in result.output
    assert "timeliness.upload_delay.very_late" in result.output and "limit=72 h" in result.output


def test_a_broken_item_list_is_a_clear_error(tmp_path):
    target = tmp_path / "thresholds"
    shutil.copytree(default_thresholds_dir(), target)
    path = target / "items" / "yubei-2023.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("body_part: KNEE", "body_part: KNEEE", 1), encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["items", "--thresholds", str(target)])
    assert result.exit_code == 2
    assert "body_part: 'KNEEE' has no words in" in result.output
