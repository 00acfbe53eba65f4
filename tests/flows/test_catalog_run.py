"""`qc-pipeline run` on a generated set of all 67 items: each mapped right and complete; the
defective variants fail (or go to review) with the right category."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.samples.catalog_studies import write_catalog_set

pytestmark = pytest.mark.prefect


def test_all_67_items_map_and_pass_and_defects_are_caught(prefect_harness, tmp_path):
    catalog = load_pipeline_thresholds().catalog
    cases = write_catalog_set(tmp_path / "studies", catalog.items)
    assert len([c for c in cases if c.defect is None]) == 67
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "studies"), "--db", url, "--file-times-are-upload-times"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    rows = {
        r["study_instance_uid"]: r
        for r in json.loads(CliRunner().invoke(main, ["results", "--db", url, "--format", "json"]).output)
    }
    mapped = Counter()
    for case in cases:
        row = rows[case.study_instance_uid]
        weighty = [f for f in row["findings"] if f["severity"] != "info"]
        assert row["item"] is not None and row["item"]["code"] == case.item_code, (case.name, row["findings"])
        mapped[case.defect is None] += 1
        assert row["verdict"] == case.expected_verdict, (case.name, weighty)
        if case.defect is None:
            assert weighty == [], case.name
            assert row["metrics"]["upload_delay_h"] == pytest.approx(0.5)
        else:
            assert {f["category"] for f in weighty} == {case.expected_category}, (case.name, weighty)
    assert mapped[True] == 67

    messages = {
        c.defect: [f["message"] for f in rows[c.study_instance_uid]["findings"] if f["severity"] != "info"]
        for c in cases
        if c.defect
    }
    assert any("lateral view missing" in m for m in messages["missing_view"])
    assert any("post-contrast series missing" in m for m in messages["missing_post_contrast"])
    assert any("no T2-FLAIR" in m for m in messages["missing_flair"])
    assert any("missing slice" in m for m in messages["dropped_slice"])
    assert any("the order says left" in m for m in messages["left_vs_right"])
