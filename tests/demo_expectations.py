"""The demo's expected outcome per case, checked the same way wherever the demo is judged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def assert_demo_rows(rows: Mapping[str, Mapping[str, Any]], cases: Sequence[Any]) -> None:
    """Every case of ``demo_cases()`` has its verdict and finding codes in ``rows`` (results by
    StudyInstanceUID; the unreadable file's study is found by its finding)."""
    for case in cases:
        if case.study_instance_uid is None:
            (row,) = [r for r in rows.values() if any(f["code"] == "integrity.file.unreadable" for f in r["findings"])]
        else:
            row = rows[case.study_instance_uid]
        codes = {f["code"] for f in row["findings"]}
        weighty = {f["code"] for f in row["findings"] if f["severity"] != "info"}
        assert row["verdict"] == case.expected_verdict, case.name
        assert case.expected_codes <= codes, case.name
        assert weighty <= case.expected_codes, case.name
