"""The report groups studies by the register's institution, whatever spelling the header used."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from qc_pipeline.domain import Verdict
from qc_pipeline.report.data import load_report_data
from qc_pipeline.report.period import Period
from qc_pipeline.store import ResultStore
from tests.store.test_store import UID_A, UID_B, UID_C, make_decision


def _save(store: ResultStore, uid: str, institution: str) -> None:
    decision = make_decision(uid, verdict=Verdict.PASS, study_date=dt.date(2026, 10, 12))
    study = dataclasses.replace(decision.study, institution=institution)
    store.save_decision(dataclasses.replace(decision, study=study), run_id=None)


def test_aliases_of_one_hospital_are_one_institution_in_the_report(tmp_path: Path) -> None:
    store = ResultStore.open(f"sqlite:///{tmp_path / 'results.sqlite'}")
    try:
        _save(store, UID_A, "Sichuan Provincial People's Hospital")
        _save(store, UID_B, "四川省人民医院")
        _save(store, UID_C, "Unregistered Clinic")
        data = load_report_data(store, Period.parse("2026H2"))
    finally:
        store.close()
    by_uid = {s.study_instance_uid: s.institution for s in data.studies}
    assert by_uid == {UID_A: "四川省人民医院", UID_B: "四川省人民医院", UID_C: "Unregistered Clinic"}


def test_a_report_for_one_institution_accepts_any_of_its_spellings(tmp_path: Path) -> None:
    from qc_pipeline.report.evaluation import write_report

    store = ResultStore.open(f"sqlite:///{tmp_path / 'results.sqlite'}")
    try:
        _save(store, UID_A, "四川省人民医院")
        files = write_report(
            store,
            Period.parse("2026H2"),
            tmp_path,
            lang="en",
            institution="Sichuan Provincial People's Hospital",
            pdf=False,
        )
    finally:
        store.close()
    assert files.html.name == "evaluation-2026H2-四川省人民医院-en.html"
