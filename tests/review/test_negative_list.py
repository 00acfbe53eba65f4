"""The negative list of the Yubei plan §4(三): ten reasons about a receiving visit."""

from __future__ import annotations

import pytest

from qc_pipeline.review.negative_list import load_negative_list
from qc_pipeline.store import ResultStore
from qc_pipeline.store.review import non_recognitions, record_non_recognition


def test_the_ten_reasons_exist_with_their_meaning() -> None:
    nl = load_negative_list()
    assert "§4(三)" in nl.source
    assert [r.number for r in nl.reasons] == list(range(1, 11))
    emergency = nl.get("life_saving_emergency")
    assert emergency is not None and emergency.zh == "患者处于急诊、急救等抢救生命的紧急状态下的"
    assert "life-threatening" in emergency.en  # not "an emergency-department exam"
    assert nl.get("emergency") is None
    assert nl.get("laboratory_not_accredited").zh.startswith("出具医学检验结果的医疗机构实验室")  # type: ignore[union-attr]
    assert nl.get("image_quality_insufficient").zh == "图像质量和方法不能满足诊断要求的医学影像学检查"  # type: ignore[union-attr]
    assert [r.code for r in nl.reasons if r.note_required] == ["other_unforeseen"]
    assert all(r.zh and r.en for r in nl.reasons)


def test_a_non_recognition_is_recorded_per_receiving_visit(tmp_path) -> None:
    with ResultStore.open(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        with store.writing("record") as session:
            record_non_recognition(
                session,
                study_instance_uid="2.25.1",
                receiving_institution="四川省人民医院",
                reason_code="patient_request",
                recorded_by="lookup-service",
            )
            with pytest.raises(ValueError, match="unknown negative-list reason 'emergency'"):
                record_non_recognition(
                    session,
                    study_instance_uid="2.25.1",
                    receiving_institution="H",
                    reason_code="emergency",
                    recorded_by="x",
                )
            with pytest.raises(ValueError, match="needs a note"):
                record_non_recognition(
                    session,
                    study_instance_uid="2.25.1",
                    receiving_institution="H",
                    reason_code="other_unforeseen",
                    recorded_by="x",
                    note=" ",
                )
        with store.reading("list") as session:
            (row,) = non_recognitions(session, "2.25.1")
    assert (row["receiving_institution"], row["reason_code"], row["recorded_by"]) == (
        "四川省人民医院",
        "patient_request",
        "lookup-service",
    )
