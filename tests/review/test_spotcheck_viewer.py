"""The blinded series viewer of the spot-check pages: every slice of a series at its own
resolution, in CT window presets, paged by links (no script), without unblinding the case."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from qc_pipeline.review.slices import CT_PRESETS, presets_for
from qc_pipeline.store import ResultStore
from tests.review.conftest import Judged
from tests.review.test_readable import visible_text
from tests.review.test_security import (  # noqa: F401  (fixtures)
    GRADER,
    assign_case,
    full_app,
    full_client,
    sign_in_as,
    spot_config,
)

CT_CASE = "CJ-CT-VIEW"
CT_STUDY = "phantom_ct_chest"


@pytest.fixture
def ct_case(app_store: ResultStore, judged: Judged, full_app: Any) -> Judged:
    assign_case(app_store, judged.decisions[CT_STUDY].study_instance_uid, GRADER, code=CT_CASE, period="2026-09")
    return judged


def png(response: Any) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text[:200]
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L"))


def test_a_grader_pages_through_every_slice_in_each_window(full_client: TestClient, ct_case: Judged) -> None:
    decision = ct_case.decisions[CT_STUDY]
    (series,) = [s for s in decision.series if s.modality == "CT"]
    sign_in_as(full_client, GRADER)
    case = full_client.get(f"/spot-checks/{CT_CASE}?lang=zh").text
    assert f'href="/spot-checks/{CT_CASE}/series/0"' in case  # the key image leads to its series
    page = full_client.get(f"/spot-checks/{CT_CASE}/series/0?slice=1&preset=lung&lang=zh")
    assert page.status_code == 200
    text = visible_text(page.text)
    assert f"层面 1 / {series.n_instances}" in text and "肺窗" in text
    assert re.search(rf'<img src="/spot-checks/{CT_CASE}/series/0/slices/0.png\?preset=lung"', page.text)
    for name in CT_PRESETS:  # every preset is offered as a link
        assert f"preset={name}" in page.text
    assert "<script" not in page.text
    # full resolution: the slice's own matrix (less the blinding crop), not the 256-px thumbnail
    first = png(full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/0.png?preset=mediastinum"))
    header = pydicom.dcmread(next((ct_case.root / "studies" / CT_STUDY).iterdir()), stop_before_pixels=True)
    rows, cols = int(header.Rows), int(header.Columns)
    assert first.shape[0] >= max(rows, 256) - 12 and first.shape[1] >= max(cols, 256) - 12
    # the windows differ: lung shows soft tissue bright, bone shows it dark
    lung = png(full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/0.png?preset=lung"))
    bone = png(full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/0.png?preset=bone"))
    assert lung.shape == bone.shape and float(lung.mean()) > float(bone.mean()) + 20
    # the last slice exists, one past it does not; neither does a preset CT does not offer
    last = series.n_instances - 1
    assert full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/{last}.png").status_code == 200
    assert full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/{last + 1}.png").status_code == 404
    assert full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/0.png?preset=abdomen").status_code == 404
    assert full_client.get(f"/spot-checks/{CT_CASE}/series/5").status_code == 404


def test_the_series_viewer_does_not_unblind(full_client: TestClient, ct_case: Judged, app_store: ResultStore) -> None:
    decision = ct_case.decisions[CT_STUDY]
    sign_in_as(full_client, GRADER)
    page = full_client.get(f"/spot-checks/{CT_CASE}/series/0?slice=3&preset=bone").text
    study = decision.study
    told = [
        v
        for v in (
            decision.study_instance_uid,
            study.accession_number,
            study.patient_id,
            study.institution,
            *(s.series_instance_uid for s in decision.series),
            *(s.description for s in decision.series),
        )
        if v
    ]
    assert [v for v in told if v in page] == []
    urls = re.findall(r'(?:href|src|action)="([^"]+)"', page)
    assert urls and all(u.startswith(("/spot-checks", "/static", "?lang", "/logout")) for u in urls), urls
    assert all(decision.study_instance_uid not in u for u in urls)


def test_another_case_or_a_reviewer_gets_nothing(full_client: TestClient, ct_case: Judged) -> None:
    sign_in_as(full_client, "dr.wang")
    assert full_client.get(f"/spot-checks/{CT_CASE}/series/0").status_code == 403
    assert full_client.get(f"/spot-checks/{CT_CASE}/series/0/slices/0.png").status_code == 403
    full_client.cookies.clear()
    sign_in_as(full_client, GRADER)
    assert full_client.get("/spot-checks/CJ-NOT-MINE/series/0").status_code == 404
    assert full_client.get("/spot-checks/CJ-NOT-MINE/series/0/slices/0.png").status_code == 404


def test_mr_and_dr_offer_the_automatic_window_only() -> None:
    assert presets_for("MR") == ("auto",) and presets_for("DX") == ("auto",)
    assert set(presets_for("CT")) == {"auto", "lung", "mediastinum", "bone", "brain"}
