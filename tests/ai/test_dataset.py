"""Training images: acceptable variation on the training images, none on the clean evaluation images."""

from __future__ import annotations

import numpy as np
import pytest

from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.modeltools import dataset, degrade


@pytest.fixture(scope="module")
def ct_source() -> dataset.SourceImage:
    return next(s for s in dataset.load_sources("CT", "train") if s.name.startswith("693_UNCR"))


@pytest.fixture(scope="module")
def mr_source() -> dataset.SourceImage:
    return next(s for s in dataset.load_sources("MR", "train") if s.name.startswith("MR-SIEMENS"))


def framings(src: dataset.SourceImage, modality: str, *, variation: bool) -> list[np.ndarray]:
    # the same seed gives the same crop and matrix: the variation is drawn after them
    return [dataset._augment(src, modality, np.random.default_rng(seed), variation=variation)[0] for seed in range(16)]


def test_ct_training_images_vary_in_noise_up_to_the_clean_limit_only(ct_source, monkeypatch):
    monkeypatch.setattr(degrade, "add_ct_streaks", lambda image, rng, hu: image)  # the noise alone (drawn last)
    varied, plain = framings(ct_source, "CT", variation=True), framings(ct_source, "CT", variation=False)
    changed = [(v, p) for v, p in zip(varied, plain, strict=True) if not np.array_equal(v, p)]
    assert 3 <= len(changed) <= 13  # about half (P_CT_DOSE), 16 draws
    for v, p in changed:
        before, after = degrade.ct_noise_level(p), degrade.ct_noise_level(v)
        if before is None:  # a small matrix: too few soft-tissue tiles to measure
            continue
        # noise only ever added, never past the clean limit (5 %: the tile-SD mode's scatter)
        assert before <= after <= degrade.CT_CLEAN_NOISE_MAX_HU * 1.05


def test_mr_training_images_get_no_acceptable_variation(mr_source):
    # tried for 2026.12.2 (coil shading on clean MR images) and dropped: it did not lower the false
    # flags on clean real MR (models/mr_artifacts.md); MR images stay as framed
    assert all(
        np.array_equal(v, p)
        for v, p in zip(
            framings(mr_source, "MR", variation=True), framings(mr_source, "MR", variation=False), strict=True
        )
    )


def test_clean_evaluation_images_are_left_as_their_source_has_them(monkeypatch):
    # the clean held-out sets measure false flags on the real images, not on noise or shading of ours
    def refuse(*_args, **_kwargs):
        raise AssertionError("acceptable variation drawn for a clean evaluation image")

    monkeypatch.setattr(degrade, "add_ct_noise", refuse)
    monkeypatch.setattr(degrade, "add_ct_streaks", refuse)
    assert all(s.real and not s.labels.any() for s in dataset.build_set("CT", "test", 12, clean=True))
    with pytest.raises(AssertionError, match="acceptable variation drawn"):
        dataset.build_set("CT", "train", 12)  # the training images do draw it


def test_ct_training_images_carry_faint_streaks_only(ct_source, monkeypatch):
    monkeypatch.setattr(degrade, "add_ct_noise", lambda image, rng, target_hu: image)  # the streaks alone
    varied, plain = framings(ct_source, "CT", variation=True), framings(ct_source, "CT", variation=False)
    changed = [v - p for v, p in zip(varied, plain, strict=True) if not np.array_equal(v, p)]
    assert 1 <= len(changed) <= 10  # about a quarter (P_CT_FAINT_STREAKS), 16 draws
    assert all(np.abs(d).max() < degrade.CT_STREAK_HU[0] for d in changed)  # below the defect's weakest


def test_ct_phantoms_are_anatomical_slices_beside_water_cylinders():
    names = [s.name for s in dataset.load_sources("CT", "train") if not s.real]
    regions = {name.split("-", 2)[2] if name.count("-") == 2 else "cylinder" for name in names}
    assert {"cylinder", "head", "skull_base", "chest", "abdomen"} <= regions


def test_dr_saturation_is_labelled_by_its_outcome_not_by_the_draw(monkeypatch):
    # a saturation draw on an image whose top percentiles already sit at the stored maximum changes
    # nothing (RG3: 41 % of its pixels): such a sample trains as clean, not as saturation
    calls: list[int] = []
    saturate = degrade.DR_DEGRADATIONS["saturation"]

    def recording(image, rng, *, stored_max):
        calls.append(1)
        return saturate(image, rng, stored_max=stored_max)

    monkeypatch.setitem(degrade.DR_DEGRADATIONS, "saturation", recording)
    for label in ("exposure_fault", "blur_motion", "collimation_cutoff"):
        monkeypatch.setitem(degrade.DR_DEGRADATIONS, label, lambda image, rng, **_: image)
    column = MODEL_SPECS["dr_artifacts"].labels.index("saturation")
    ramp = np.tile(np.linspace(0.0, 1000.0, 96, dtype=np.float32), (96, 1))
    plain = dataset.SourceImage("ramp", True, ramp, 0.2, (0.0, 1023.0))
    burnt = dataset.SourceImage(
        "burnt", True, np.where(ramp > 400, 1023.0, ramp).astype(np.float32), 0.2, (0.0, 1023.0)
    )
    for src, expected in ((plain, 1), (burnt, 0)):
        rng = np.random.default_rng(0)
        drawn = []
        for _ in range(60):
            before = len(calls)
            sample = dataset.make_sample([src], "DR", rng)
            if len(calls) > before:
                drawn.append(int(sample.labels[column]))
            else:
                assert sample.labels[column] == 0
        assert len(drawn) >= 5 and set(drawn) == {expected}, (src.name, drawn)
