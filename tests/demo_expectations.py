"""The demo's expected outcome per case, checked the same way wherever the demo is judged.

The product writes the demo (``qc_pipeline.samples.demo``) and says what each case holds; what the
pipeline must conclude about it lives here, with the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from qc_pipeline.domain import Verdict

EXPECTED: Final[Mapping[str, tuple[Verdict, frozenset[str]]]] = {
    "real_cr_chest": (Verdict.PASS, frozenset()),
    "real_ct": (Verdict.PASS, frozenset()),
    "real_mr": (Verdict.NOT_APPLICABLE, frozenset({"catalog.item.unmatched"})),
    "phantom_ct_chest": (Verdict.PASS, frozenset()),
    "phantom_mr_brain": (Verdict.PASS, frozenset()),
    "phantom_dr_chest": (Verdict.PASS, frozenset()),
    "birth_after_study": (Verdict.FAIL, frozenset({"metadata.patient_birth_date.after_study"})),
    "missing_patient_id": (Verdict.FAIL, frozenset({"metadata.patient_id.missing"})),
    "future_study_date": (Verdict.FAIL, frozenset({"metadata.study_date.future", "timeliness.upload_delay.negative"})),
    "inconsistent_patient": (Verdict.FAIL, frozenset({"metadata.patient.inconsistent"})),
    "age_mismatch": (Verdict.REVIEW, frozenset({"metadata.patient_age.inconsistent"})),
    "missing_accession_institution": (
        Verdict.REVIEW,
        frozenset({"metadata.accession_number.missing", "metadata.institution.missing"}),
    ),
    "truncated_file": (Verdict.FAIL, frozenset({"integrity.pixel_data.truncated"})),
    "sr_in_study": (Verdict.PASS, frozenset({"integrity.non_image.skipped"})),
    "sr_only": (Verdict.NOT_APPLICABLE, frozenset({"integrity.non_image.skipped", "catalog.no_images"})),
    "ultrasound": (Verdict.NOT_APPLICABLE, frozenset({"catalog.modality.not_candidate"})),
    # the CT model scores the noise too, but its rule is off: the label is defined by the same noise
    # estimator as the objective rule (duplicate_of in thresholds/ai.yaml), so it adds nothing
    "noisy_ct": (Verdict.FAIL, frozenset({"image_quality.ct.noise.fail"})),
    # the MR model scores the ghost (0.98), but its rule is off: its evidence does not clear the gate of
    # thresholds/ai.yaml (and it scores the clean 64 x 64 demo brain MR 0.985 too; spike 0.0 on both)
    "ghosted_mr": (Verdict.FAIL, frozenset({"image_quality.mr.ghosting.fail"})),
    # review, not fail: AAPM TG-116 repeats an over-exposed image only if relevant anatomy is clipped
    "overexposed_dr": (Verdict.REVIEW, frozenset({"image_quality.dr.deviation_index_high.review"})),
    # the DR model scores the saturation too, but its rule is off: the label is the stored-maximum
    # criterion of the objective rule (duplicate_of in thresholds/ai.yaml)
    "clipped_dr": (
        Verdict.FAIL,
        frozenset({"image_quality.dr.clipped_stored_max.fail", "image_quality.dr.pileup_max.fail"}),
    ),
    "not_dicom": (Verdict.FAIL, frozenset({"integrity.file.unreadable"})),
}
"""Case name -> (verdict, codes). The codes: (1) every one of them is among the study's findings,
and (2) no finding of severity review or fail has a code outside them. So a clean pass has none (or
only the info codes that are the point of the case, e.g. ``integrity.non_image.skipped``); other
info findings, such as the matched recognition item, may appear as well. Judged with
``now=DEMO_NOW`` on the folder as written (file modification times included)."""


def expected_verdict(case: Any) -> Verdict:
    """The verdict the pipeline must give the demo case ``case`` (a ``DemoCase``)."""
    return EXPECTED[case.name][0]


def expected_codes(case: Any) -> frozenset[str]:
    """The finding codes that case must get (see :data:`EXPECTED`)."""
    return EXPECTED[case.name][1]


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
        assert row["verdict"] == expected_verdict(case), case.name
        assert expected_codes(case) <= codes, case.name
        assert weighty <= expected_codes(case), case.name
