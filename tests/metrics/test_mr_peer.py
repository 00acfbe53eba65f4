"""MR metrics against a peer implementation: MRQy 0.0.3 (``mrqy.QCF``), on the same inputs.

MRQy (Sadri et al., Med. Phys. 2020; github.com/ccipd/MRQy) computes its metrics slice by slice
from (F, B, c, f, b) = (image with the background zeroed, image with the foreground zeroed,
foreground mask, foreground pixels, background pixels). Here both implementations get the SAME
arrays, built from our masks, so that only the formulas are compared. Agreement found (mrqy 0.0.3):

- FBER: identical (same formula: median(|f|^2) / median(|b|^2)), except that MRQy returns 0 when
  the background median energy is below 1e-3 (an absolute level: it depends on the image's
  units); ours is scale-free and raises only on a zero background.
- EFC: MRQy writes ``np.log((F + 1e16) / b_max)``, a typo for MRIQC's ``1e-16``, and divides by
  ``abs(efc_max)``. With the typo, its value is sum(F)/b_max * ln(1e16/b_max) / |efc_max|: the log
  no longer depends on the pixel, and the value changes with the image's scale. With 1e-16 put
  back, MRQy's code gives exactly minus our EFC (the abs flips the sign: MRIQC's E_max is
  negative), i.e. the same magnitude as MRIQC's formula, which ours equals.
- The MRQy foreground mask (Otsu on image + equalised image, convex hull) agrees with ours on a
  quiet disc phantom (IoU 0.988) but its hull is stretched over the whole FOV by single noise
  pixels at SNR 20: hence the shared masks. MRQy's SNR/CNR definitions (std(f)/std(b), a 5x5
  patch at the maximum) are not Dietrich's and are not compared.

MRIQC's published formulas (``mriqc.qc.anatomical``: ``efc``, ``fber``, ``snr_dietrich``, as of
MRIQC 24) are written out below from the MRIQC source and compared as a second peer.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
import os
import warnings
from pathlib import Path

import data_store
import numpy as np
import pytest

from qc_pipeline.io.pixels import load_series
from qc_pipeline.metrics import mr
from qc_pipeline.samples import phantoms as demo_phantoms
from tests.metrics.phantoms_mr import mr_phantom

with warnings.catch_warnings():  # QCF calls warnings.filterwarnings("ignore") at import
    from mrqy import QCF

MRQY_VERSION = importlib.metadata.version("mrqy")
MR2 = Path(os.path.dirname(data_store.__file__)) / "data" / "MR2_UNCI.dcm"


def _slices() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, image, object mask, air mask) slices on our grid, from phantoms and a real image."""
    out = []
    volumes = {
        "disc phantom": mr_phantom(inner_signal=150.0, seed=21),
        "ghosted phantom": mr_phantom(radius_frac=0.2, ghost_fraction=0.1, seed=22),
        "demo head": demo_phantoms.mr_head_phantom(n_slices=3, size=64, seed=23).astype(np.float32),
        "MR2_UNCI": load_series([MR2]).array,
    }
    for name, volume in volumes.items():
        masks = mr.segment(volume)
        for i in np.flatnonzero(masks.has_object)[:2]:
            out.append((f"{name}[{i}]", masks.image[i].astype(np.float64), masks.tissue[i], masks.background[i]))
    return out


SLICES = _slices()
IDS = [s[0] for s in SLICES]


def _mrqy_args(image: np.ndarray, tissue: np.ndarray, air: np.ndarray):
    """MRQy's (F, B, c, f, b) from our masks: F and B as in QCF.foreground, b our air."""
    return image * tissue, image * ~tissue, tissue, image[tissue], image[air]


def _mrqy_efc_without_typo():
    """QCF.efc with ``1e16`` put back to MRIQC's ``1e-16``; everything else MRQy's own code."""
    source = inspect.getsource(QCF.efc)
    assert source.count("1e16") == 1, "MRQy's EFC changed: re-check the typo note"
    namespace: dict[str, object] = {"np": np}
    exec(source.replace("1e16", "1e-16"), namespace)  # the peer's own code, one literal changed
    return namespace["efc"]


def test_peer_version_is_recorded() -> None:
    assert MRQY_VERSION == "0.0.3"


@pytest.mark.parametrize(("name", "image", "tissue", "air"), SLICES, ids=IDS)
def test_fber_agrees_with_mrqy(name: str, image: np.ndarray, tissue: np.ndarray, air: np.ndarray) -> None:
    args = _mrqy_args(image, tissue, air)
    assert mr.fber(args[3], args[4]) == pytest.approx(QCF.fber(*args), rel=1e-12)


def test_fber_differs_from_mrqy_only_below_its_absolute_floor() -> None:
    # Scaled by 1e-4 the air's median energy falls under MRQy's 1e-3: MRQy answers 0, ours is
    # unchanged (FBER is a ratio of energies).
    _, image, tissue, air = SLICES[0]
    small = image * 1e-4
    args = _mrqy_args(small, tissue, air)
    assert QCF.fber(*args) == 0
    assert mr.fber(args[3], args[4]) == pytest.approx(mr.fber(image[tissue], image[air]), rel=1e-9)


@pytest.mark.parametrize(("name", "image", "tissue", "air"), SLICES, ids=IDS)
def test_efc_agrees_with_mrqy_once_its_typo_is_fixed(
    name: str, image: np.ndarray, tissue: np.ndarray, air: np.ndarray
) -> None:
    args = _mrqy_args(image, tissue, air)
    fixed = _mrqy_efc_without_typo()(*args)
    assert fixed == pytest.approx(-mr.efc(args[0]), rel=1e-9)  # MRQy's abs(efc_max) flips the sign


@pytest.mark.parametrize(("name", "image", "tissue", "air"), SLICES, ids=IDS)
def test_mrqy_efc_with_the_typo_is_a_different_quantity(
    name: str, image: np.ndarray, tissue: np.ndarray, air: np.ndarray
) -> None:
    F = image * tissue
    as_published = QCF.efc(F, None, None, None, None)
    n = F.size
    b_max = math.sqrt(float((F**2).sum()))
    e_max = abs(n * (1 / math.sqrt(n)) * math.log(1 / math.sqrt(n)))
    # what the typo computes: the log is ln(1e16 / b_max) for every pixel (F << 1e16)
    assert as_published == pytest.approx(float(F.sum()) / b_max * math.log(1e16 / b_max) / e_max, rel=1e-9)
    assert abs(as_published) != pytest.approx(mr.efc(F), rel=0.05)
    # ... and it moves with the image's scale, which EFC must not
    assert QCF.efc(2 * F, None, None, None, None) != pytest.approx(as_published, rel=1e-3)
    assert mr.efc(2 * F) == pytest.approx(mr.efc(F), rel=1e-12)


def test_foreground_masks_agree_with_mrqy_only_where_its_hull_is_not_taken_by_noise() -> None:
    # Why the comparisons above feed both sides our masks: MRQy's foreground is the convex hull
    # of an Otsu mask with no clean-up, so one noise pixel above its threshold stretches the hull.
    # At SNR 100 (seed 0) it matches ours (IoU 0.988, the hull adds the pixelated rim); at SNR 20
    # the hull covers the whole FOV on every slice while the disc is 28 % of it.
    quiet = mr_phantom(sigma=1.0, seed=0)
    noisy = mr_phantom(sigma=5.0, seed=0)
    quiet_masks, noisy_masks = mr.segment(quiet), mr.segment(noisy)
    for i in range(quiet.shape[0]):
        _, _, hull, _, _ = QCF.foreground(quiet[i].astype(np.float64), None, None, i)
        ours = quiet_masks.tissue[i]
        assert (hull & ours).sum() / (hull | ours).sum() >= 0.98
        _, _, hull, _, _ = QCF.foreground(noisy[i].astype(np.float64), None, None, i)
        assert hull.mean() > 0.9
        assert noisy_masks.tissue[i].mean() == pytest.approx(math.pi * 0.09, rel=0.01)


# -------------------------------------------------------------- MRIQC's published formulas


def _mriqc_efc(img: np.ndarray) -> float:
    # mriqc.qc.anatomical.efc (no frame mask), rounding left out
    n_vox = img.size
    efc_max = 1.0 * n_vox * (1.0 / np.sqrt(n_vox)) * np.log(1.0 / np.sqrt(n_vox))
    b_max = np.sqrt((img**2).sum())
    return float((1.0 / efc_max) * np.sum((img / b_max) * np.log((img + 1e-16) / b_max)))


def _mriqc_fber(img: np.ndarray, headmask: np.ndarray, airmask: np.ndarray) -> float:
    # mriqc.qc.anatomical.fber, with the air given (MRIQC: everything outside the head mask)
    fg_mu = np.median(np.abs(img[headmask > 0]) ** 2)
    bg_mu = np.median(np.abs(img[airmask > 0]) ** 2)
    if bg_mu < 1.0e-3:
        return -1.0
    return float(fg_mu / bg_mu)


def _mriqc_snr_dietrich(mu_fg: float, sigma_air: float) -> float:
    # mriqc.qc.anatomical.snr_dietrich with mad_air = 0: DIETRICH_FACTOR * mu_fg / sigma_air
    dietrich_factor = 1.0 / math.sqrt(2 / (4 - math.pi))
    return float(dietrich_factor * mu_fg / sigma_air)


def test_efc_equals_mriqc_formula_on_whole_volumes() -> None:
    for volume in (mr_phantom(seed=25).astype(np.float64), load_series([MR2]).array.astype(np.float64)):
        assert mr.efc(volume) == pytest.approx(_mriqc_efc(volume), rel=1e-9)


@pytest.mark.parametrize(("name", "image", "tissue", "air"), SLICES, ids=IDS)
def test_fber_and_snr_equal_mriqc_formulas(name: str, image: np.ndarray, tissue: np.ndarray, air: np.ndarray) -> None:
    assert mr.fber(image[tissue], image[air]) == pytest.approx(_mriqc_fber(image, tissue, air), rel=1e-12)
    sigma = float(np.std(image[air], ddof=1))
    assert mr.snr_background(image[tissue], image[air]) == pytest.approx(
        _mriqc_snr_dietrich(float(image[tissue].mean()), sigma), rel=1e-12
    )
