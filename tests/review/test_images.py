"""Key images: windowing, and the marks that show where a finding is."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from qc_pipeline.review.images import MIN_SIDE_PX, _window, render_study, restack
from tests.review.conftest import GAP_CASE, Judged


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _red(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 150) & (r - g > 60) & (r - b > 60)


def _render(judged: Judged, name: str):  # type: ignore[no-untyped-def]
    decision = judged.decisions[name]
    findings = [f.as_dict() for f in decision.findings]
    return render_study(decision.source_uri, decision.study_instance_uid, findings)


def test_window_maps_the_ct_window_and_percentiles_to_grey() -> None:
    hu = np.array([[-1000.0, -160.0, 40.0, 240.0, 3000.0]], dtype=np.float32)
    # Soft-tissue window 40/400: -160 HU -> black, 240 HU -> white, 40 HU -> mid grey.
    assert _window(hu, (40.0, 400.0)).tolist() == [[0, 0, 128, 255, 255]]
    ramp = np.arange(1000, dtype=np.float32).reshape(10, 100)
    grey = _window(ramp, None)
    assert grey.min() == 0 and grey.max() == 255  # 0.5th..99.5th percentile spread over 0..255


def test_restack_places_slices_at_their_positions_and_marks_the_gap() -> None:
    volume = np.zeros((5, 4, 4), dtype=np.float32)
    positions = [0.0, 5.0, 10.0, 20.0, 25.0]  # 15 mm missing: one slice at 15 mm
    image, gap, missing = restack(volume, positions, spacing_mm=5.0, pixel_mm=1.0, factor=1.5)
    assert image.shape == (26, 4)
    assert missing == [15.0]
    assert np.flatnonzero(gap).tolist() == list(range(13, 18))  # rows strictly inside 12.5..17.5 mm


def test_missing_slice_gets_a_restacked_panel_with_the_gap_in_red(judged: Judged) -> None:
    decision = judged.decisions[GAP_CASE]
    assert "continuity.slice.missing" in {f.code for f in decision.findings}
    (image,) = _render(judged, GAP_CASE).images
    assert image.png is not None and image.error_en is None
    (mark,) = image.marks
    assert mark.en.startswith("right: the stack along the slice normal; red: missing slice(s) at ")
    rgb = _pixels(image.png)
    assert rgb.shape[1] > rgb.shape[0]  # two panels side by side
    red = _red(rgb)
    assert red.any() and not red[:, : rgb.shape[1] // 2].any()  # the red gap is in the right panel only


def test_ghost_region_is_tinted_on_the_ghosted_series(judged: Judged) -> None:
    images = _render(judged, "ghosted_mr").images
    ghosted = {
        f.series_instance_uid
        for f in judged.decisions["ghosted_mr"].findings
        if f.code.startswith("image_quality.mr.ghosting")
    }  # the ACR ghost ROI measured there
    for image in images:
        assert image.png is not None
        rgb = _pixels(image.png)
        orange = (rgb[..., 0] > 150) & (rgb[..., 1] > 60) & (rgb[..., 2] < 60)
        assert orange.any() == (image.series_instance_uid in ghosted), image.label_en
        assert min(rgb.shape[:2]) >= MIN_SIDE_PX // 2  # 64² phantoms are enlarged for reading


def test_clipped_pixels_are_red(judged: Judged) -> None:
    (image,) = _render(judged, "clipped_dr").images
    (mark,) = image.marks
    assert mark.en == "red: pixels pinned at the maximum (15.1 % of the image)"
    assert _red(_pixels(image.png)).mean() == pytest.approx(0.151, abs=0.03)  # resampling blurs the edges
    (clean,) = _render(judged, "phantom_ct_chest").images
    assert clean.marks == [] and not _red(_pixels(clean.png)).any()


def test_unreadable_sources_give_a_placeholder_not_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gone = render_study((tmp_path / "missing").as_uri(), "1.2.3", [])
    assert gone.images == [] and gone.error_en and gone.error_en.startswith("cannot read the source: source folder")
    assert render_study(None, "1.2.3", []).error_en == "the study's source is not recorded"
    tmp_path.joinpath("empty").mkdir()
    assert render_study(str(tmp_path / "empty"), "1.2.3", []).error_en == "the study is no longer in its source " + str(
        tmp_path / "empty"
    )
