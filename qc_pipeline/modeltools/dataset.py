"""Training and evaluation images: real pixels from pydicom / pydicom-data and seeded phantoms
(for CT, anatomical slices of :mod:`qc_pipeline.samples.ct_anatomy` beside the water cylinder),
made defective by :mod:`qc_pipeline.modeltools.degrade`.

Held-out means held out by source and by seed. Each modality's real images are split by patient
(source file) into ``train`` and ``test``; phantom seeds differ by split (``PHANTOM_SEEDS``);
the random stream of each set has its own seed (``SET_SEEDS``). The test sources include the real
images the demo judges as clean (RG1 chest, CT_small, MR2 shoulder), so the demo shows the models
on images they never saw.

A sample is made in the order production sees it: a random crop and flip of a source image
(framing varies between hospitals), for CT/MR a random acquisition matrix, for CT acceptable
variation (a noise level up to ``degrade.CT_CLEAN_NOISE_MAX_HU``, for dose and patient size, and
faint streaks of ``degrade.CT_CLEAN_STREAK_HU``; not on the clean evaluation images, which stay as
their source has them), zero, one or two degradations at that matrix,
:func:`preprocess.to_working_grid`, then :func:`preprocess.channels`.

Two simulators for the MR artifact model's training and validation images (:class:`Simulation`,
``TRAINING_SIMULATION``): each motion-ghosting, noise or non-uniformity fault is made by TorchIO
(:mod:`qc_pipeline.modeltools.torchio_faults`) or by :mod:`qc_pipeline.modeltools.degrade` with
probability 1/2, each spike by TorchIO (``RandomSpike``) alone, and some images carry acceptable
truncation ringing (:func:`degrade.mr_gibbs_ringing`). The held-out test images keep our
simulator alone and no ringing, so that their figures stay comparable from one model to the next
and the spike's are measured with a simulator the model did not train on
(:func:`degrade.mr_kspace_spike`); TorchIO's faults on held-out images are
:mod:`qc_pipeline.modeltools.external`'s evaluation.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydicom.data import get_testdata_file
from scipy import ndimage
from skimage.transform import resize

from qc_pipeline.ai.features import metric_features
from qc_pipeline.ai.preprocess import WORKING_SIZE, channels, to_working_grid
from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.errors import ConfigError
from qc_pipeline.io.pixels import load_image, load_series, stored_value_range
from qc_pipeline.modeltools import degrade, torchio_faults
from qc_pipeline.samples import ct_anatomy, phantoms

logger = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]

REAL_SOURCES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    # pydicom / pydicom-data file names; one patient per file except where noted.
    "DR": {"train": ("RG3_UNCR.dcm",), "test": ("RG1_UNCR.dcm",)},
    "CT": {
        "train": ("693_UNCR.dcm", "explicit_VR-UN.dcm", "eCT_Supplemental.dcm", "bad_sequence.dcm"),
        "test": ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm"),
    },
    "MR": {
        # MR-SIEMENS-DICOM-WithOverlays and examples_overlay are the same patient: both in train.
        "train": ("MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm", "emri_small.dcm"),
        "test": ("MR2_UNCR.dcm", "MR_small.dcm"),
    },
}
PHANTOM_SEEDS: Final[dict[str, range]] = {"train": range(0, 40), "val": range(500, 520), "test": range(1000, 1040)}
SET_SEEDS: Final[dict[str, int]] = {"train": 11, "val": 22, "test": 33, "test_clean": 44}
SOURCE_MAX_SIDE: Final = 512
"""Source images are area-downsampled once to at most this side; crops are taken from that."""
P_REAL: Final = 0.6
P_CLEAN: Final = 0.4
P_TWO: Final = 0.12
CROP: Final = (0.75, 1.0)
P_WORKING_MATRIX: Final = 0.45
P_SMALL_MATRIX: Final = 0.35
SMALL_MATRIX: Final = (64, 200)
LARGE_MATRIX: Final = (300, 513)
"""CT/MR images are degraded at a random acquisition matrix (longer side: the working size, 64-199
or 300-512 px), then resampled to the working grid, because that is the order in which artifacts
and resampling happen: a 64 x 64 MR or a 128 x 128 CT reaches the models upsampled and smooth,
and a clean one must not read as blurred or moved."""
P_CT_DOSE: Final = 0.5
"""Share of CT images given acceptable dose variation (noise up to ``degrade.CT_CLEAN_NOISE_MAX_HU``)."""
P_CT_FAINT_STREAKS: Final = 0.25
"""Share of CT images given acceptable faint streaks (``degrade.CT_CLEAN_STREAK_HU``)."""
P_CT_CYLINDER: Final = 0.2
"""Share of CT phantom seeds that are the water cylinder; the others are anatomical slices."""
P_PROCESSING: Final = 0.5
PROCESSING_SMOOTH_PX: Final = (0.3, 0.8)
PROCESSING_SHARPEN: Final = (0.2, 0.7)
P_MR_TORCHIO: Final = 0.5
"""Share of the MR training faults of the labels TorchIO models (``torchio_faults.TRAINING_CASES``)
that TorchIO makes; our own functions make the others, so that the model is not taught one
simulator's look of a fault. Trained on ours alone, the MR model separated TorchIO's motion and
ghosting from clean held-out real images with an AUC of 0.650; trained on both, 0.697, little
better although they are then in the training (models/README.md has the figures)."""
P_MR_GIBBS: Final = 0.3
"""Share of the MR training images given acceptable truncation ringing (:func:`degrade.mr_gibbs_ringing`)."""
DR_SATURATED_FRACTION: Final = 0.01
"""A DR sample is labelled ``saturation`` when its degradations put this share of its pixels at the
stored maximum, beyond those already there (a collimator shadow may sit at the maximum), and only then."""


@dataclass(frozen=True, slots=True)
class Simulation:
    """How the images of a set are made beyond our own simulator (MR only; both 0: ours alone)."""

    torchio_share: float = 0.0
    """Share of the faults of ``torchio_faults.TRAINING_CASES`` made by TorchIO."""
    torchio_alone: frozenset[str] = frozenset()
    """Labels of ``torchio_faults.TRAINING_CASES`` whose faults TorchIO makes every time (the share
    does not apply to them)."""
    gibbs_share: float = 0.0
    """Share of the images (not the clean evaluation ones) given acceptable truncation ringing."""


OURS_ONLY: Final = Simulation()
TRAINING_SIMULATION: Final[dict[str, Simulation]] = {
    "MR": Simulation(torchio_share=P_MR_TORCHIO, torchio_alone=torchio_faults.TORCHIO_ALONE, gibbs_share=P_MR_GIBBS)
}
"""The simulation of the artifact models' training and validation sets, by modality (others: ours alone)."""


@dataclass(frozen=True, slots=True)
class SourceImage:
    name: str
    real: bool
    image: npt.NDArray[np.float32]
    pixel_mm: float | None
    stored_range: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class Sample:
    x: npt.NDArray[np.float32]
    """(3, 128, 128) model input."""
    labels: npt.NDArray[np.uint8]
    """One 0/1 per label of the modality's artifact model."""
    grid: npt.NDArray[np.float32]
    """The working-grid image (for the metric features)."""
    pixel_mm: float | None
    stored_range: tuple[float, float] | None
    source: str
    real: bool
    native: npt.NDArray[np.float32] | None = None
    """With ``keep_native``: the image as acquired (CT/MR: at its acquisition matrix, after the
    degradations; DR: the working grid, as degraded), before resampling to the working grid."""
    native_mm: float | None = None
    """Pixel size of ``native``, when known."""
    degradations: tuple[str, ...] = ()
    """What made each fault, in the order applied: ``<label>:degrade`` (our own function) or
    ``<label>:torchio.<case>`` (a TorchIO transform of :func:`torchio_faults.cases`)."""


def _shrink(image: npt.NDArray[np.floating], pixel_mm: float | None) -> tuple[npt.NDArray[np.float32], float | None]:
    scale = SOURCE_MAX_SIDE / max(image.shape)
    if scale >= 1:
        return np.asarray(image, dtype=np.float32), pixel_mm
    shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
    out = resize(np.asarray(image, dtype=np.float32), shape, order=1, anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32), None if pixel_mm is None else pixel_mm / scale


def _real(modality: str, name: str) -> list[SourceImage]:
    path = get_testdata_file(name)
    if path is None:
        raise ConfigError(f"training image {name} not found in pydicom / pydicom-data; install pydicom-data")
    from pathlib import Path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if modality == "DR":
            planar = load_image(Path(path))
            image, mm = _shrink(planar.array, planar.spacing_mm[0] if planar.spacing_mm else None)
            return [SourceImage(name, True, image, mm, stored_value_range(planar))]
        volume = load_series([Path(path)])
    out = []
    for index, frame in enumerate(volume.array):
        image, mm = _shrink(frame, volume.spacing_mm[1])
        out.append(SourceImage(f"{name}#{index}", True, image, mm, None))
    return out


def _phantom(modality: str, seed: int) -> SourceImage:
    rng = np.random.default_rng(seed)
    if modality == "DR":
        rows, cols = int(rng.integers(360, 512)), int(rng.integers(320, 512))
        image = phantoms.dr_chest_phantom(rows=rows, cols=cols, seed=seed).astype(np.float32)
        return SourceImage(f"phantom-{seed}", False, image, 0.7, (0.0, float(phantoms.DR_MAX_VALUE)))
    if modality == "CT":
        if rng.random() < P_CT_CYLINDER:
            volume = phantoms.ct_water_cylinder(
                n_slices=1,
                size=256,
                radius_fraction=float(rng.uniform(0.5, 0.85)),
                noise_sd_hu=float(rng.uniform(4, 14)),
                seed=seed,
            )
            return SourceImage(f"phantom-{seed}", False, volume[0].astype(np.float32), 1.5, None)
        region = ct_anatomy.REGIONS[int(rng.integers(0, len(ct_anatomy.REGIONS)))]
        image = ct_anatomy.ct_anatomical_slice(
            region=region,
            size=256,
            noise_sd_hu=float(rng.uniform(3, 15)),
            kernel_px=float(rng.uniform(0.5, 1.2)),
            seed=seed,
        )
        return SourceImage(
            f"phantom-{seed}-{region}", False, image, 0.9 if region in ("head", "skull_base") else 1.5, None
        )
    mr_volume = phantoms.mr_head_phantom(n_slices=1, size=256, noise_sigma=float(rng.uniform(3, 9)), seed=seed)
    return SourceImage(f"phantom-{seed}", False, mr_volume[0].astype(np.float32), 0.9, None)


def load_sources(modality: str, split: Split) -> list[SourceImage]:
    """The source images of one split ("val" uses the train images with other phantom seeds)."""
    real_split = "test" if split == "test" else "train"
    real = [s for name in REAL_SOURCES[modality][real_split] for s in _real(modality, name)]
    return real + [_phantom(modality, seed) for seed in PHANTOM_SEEDS[split]]


def _acquisition_matrix(rng: np.random.Generator) -> int:
    """The longer side of the simulated acquisition matrix (CT/MR): what the scanner reconstructed."""
    draw = rng.random()
    if draw < P_WORKING_MATRIX:
        return WORKING_SIZE
    if draw < P_WORKING_MATRIX + P_SMALL_MATRIX:
        return int(rng.integers(*SMALL_MATRIX))
    return int(rng.integers(*LARGE_MATRIX))


def _augment(
    src: SourceImage, modality: str, rng: np.random.Generator, *, variation: bool = True, gibbs: float = 0.0
) -> tuple[npt.NDArray[np.float32], float | None, int]:
    """A random framing of ``src`` at a random acquisition matrix, with ``variation`` the acceptable
    variation of CT noise and streaks and, on the share ``gibbs`` of MR images, truncation ringing
    (module docstring); returns (image, working-grid mm, matrix)."""
    rows, cols = src.image.shape
    fr, fc = rng.uniform(*CROP, 2)
    h, w = max(16, int(rows * fr)), max(16, int(cols * fc))
    r0, c0 = int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1))
    image = src.image[r0 : r0 + h, c0 : c0 + w]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if modality == "MR":
        image = np.rot90(image, int(rng.integers(0, 4))) * np.float32(rng.uniform(0.5, 2.0))
    pixel_mm = None if src.pixel_mm is None else src.pixel_mm * max(h, w) / WORKING_SIZE
    image = np.ascontiguousarray(image)
    if modality == "DR":
        return _dr_presentation(to_working_grid(image), rng, src.stored_range), pixel_mm, WORKING_SIZE
    matrix = _acquisition_matrix(rng)
    scale = matrix / max(image.shape)
    shape = (max(8, round(image.shape[0] * scale)), max(8, round(image.shape[1] * scale)))
    image = resize(image, shape, order=1, anti_aliasing=scale < 1, preserve_range=True).astype(np.float32)
    if variation and modality == "MR" and gibbs > 0 and rng.random() < gibbs:  # acquired, then processed
        image = degrade.mr_gibbs_ringing(image, rng)
    image = _processing(image, rng)
    if variation and modality == "CT" and rng.random() < P_CT_DOSE:
        image = degrade.add_ct_noise(image, rng, target_hu=float(rng.uniform(0.0, degrade.CT_CLEAN_NOISE_MAX_HU)))
    if variation and modality == "CT" and rng.random() < P_CT_FAINT_STREAKS:
        image = degrade.add_ct_streaks(image, rng, hu=degrade.CT_CLEAN_STREAK_HU)
    return image, pixel_mm, matrix


def _processing(image: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Acceptable variation of the reconstruction kernel or the vendor's processing: a little smoothing
    (Gaussian σ up to ``PROCESSING_SMOOTH_PX``, well below the weakest blur the models flag) or edge
    enhancement (unsharp masking). Applied to clean and defective samples alike, so that one vendor's
    sharpness does not read as a fault: only the few real sources would otherwise teach it."""
    draw = rng.random()
    if draw < P_PROCESSING / 2:
        return ndimage.gaussian_filter(image, rng.uniform(*PROCESSING_SMOOTH_PX)).astype(np.float32)
    if draw < P_PROCESSING:
        blurred = ndimage.gaussian_filter(image, 1.0)
        return (image + rng.uniform(*PROCESSING_SHARPEN) * (image - blurred)).astype(np.float32)
    return image


def _dr_presentation(
    grid: npt.NDArray[np.float32], rng: np.random.Generator, stored_range: tuple[float, float] | None
) -> npt.NDArray[np.float32]:
    """Acceptable variation between DR systems: the processing's sharpness (:func:`_processing`), its
    grey-scale curve (a gamma on the image's own range) and narrow shutter borders (1-6 % of a side,
    bright or black) that do not cut into the anatomy. Without it, one vendor's look would read as a
    fault: there is one real training radiograph."""
    bottom, top = stored_range if stored_range else (float(grid.min()), float(grid.max()))
    out = np.clip(_processing(grid, rng), bottom, top)
    if rng.random() < 0.5:
        lo, hi = (float(v) for v in np.percentile(out, (0.5, 99.5)))
        if hi > lo:
            scaled = np.clip((out - lo) / (hi - lo), 0.0, 1.0) ** rng.uniform(0.7, 1.4)
            out = (lo + scaled * (hi - lo)).astype(np.float32)
    if rng.random() < 0.5:
        out = out.copy()
        level = top * rng.uniform(0.85, 0.98) if rng.random() < 0.6 else float(np.percentile(out, 0.5))
        for side in rng.choice(4, size=int(rng.integers(1, 5)), replace=False):
            width = max(1, int(WORKING_SIZE * rng.uniform(0.01, 0.06)))
            index = (slice(0, width), slice(-width, None))[int(side) % 2]
            if side < 2:
                out[index, :] = level
            else:
                out[:, index] = level
    return out


def _degrade(
    grid: npt.NDArray[np.float32],
    modality: str,
    label: str,
    rng: np.random.Generator,
    stored_range: tuple[float, float] | None,
    *,
    simulation: Simulation = OURS_ONLY,
) -> tuple[npt.NDArray[np.float32], str]:
    """``grid`` with the fault ``label``, and what made it (:attr:`Sample.degradations`)."""
    if modality == "DR":
        stored_max = stored_range[1] if stored_range else float(grid.max())
        return degrade.DR_DEGRADATIONS[label](grid, rng, stored_max=stored_max), f"{label}:degrade"
    choices = torchio_faults.TRAINING_CASES.get(label, ()) if modality == "MR" else ()
    alone = label in simulation.torchio_alone
    if choices and (alone or (simulation.torchio_share > 0 and rng.random() < simulation.torchio_share)):
        case = choices[int(rng.integers(0, len(choices)))]
        seed = int(rng.integers(0, 2**31 - 1))  # TorchIO's own stream, seeded from ours
        return torchio_faults.degrade_with_torchio(grid, case, seed), f"{label}:torchio.{case}"
    return degrade.DEGRADATIONS[modality][label](grid, rng), f"{label}:degrade"


def _at_max(grid: npt.NDArray[np.float32], stored_range: tuple[float, float] | None) -> float:
    """Share of pixels at the stored maximum (a clean image's collimator shadow may sit there)."""
    top = stored_range[1] if stored_range else float(grid.max())
    return float(np.mean(grid >= top - 0.5))


def make_sample(
    sources: list[SourceImage],
    modality: str,
    rng: np.random.Generator,
    *,
    clean: bool = False,
    keep_native: bool = False,
    simulation: Simulation = OURS_ONLY,
) -> Sample:
    """One random sample (see the module docstring); ``clean`` forces no degradation; ``keep_native``
    keeps the image as acquired (for the objective metrics as the flow measures them); ``simulation``
    draws faults from TorchIO too and adds truncation ringing (:class:`Simulation`)."""
    labels = MODEL_SPECS[f"{modality.lower()}_artifacts"].labels
    real = [s for s in sources if s.real]
    pool = real if real and (clean or rng.random() < P_REAL) else [s for s in sources if not s.real] or real
    if clean and real:
        pool = real
    src = pool[int(rng.integers(0, len(pool)))]
    grid, pixel_mm, matrix = _augment(
        src, modality, rng, variation=not clean, gibbs=simulation.gibbs_share
    )  # CT/MR: the image at its acquisition matrix
    chosen: list[str] = []
    if not clean and rng.random() >= P_CLEAN:
        chosen = list(rng.choice(labels, size=2 if rng.random() < P_TWO else 1, replace=False))
    at_max_before = _at_max(grid, src.stored_range) if modality == "DR" else 0.0
    made = []
    for label in chosen:
        grid, how = _degrade(grid, modality, label, rng, src.stored_range, simulation=simulation)
        made.append(how)
    y = np.array([label in chosen for label in labels], dtype=np.uint8)
    if modality == "DR":
        # Saturation is the outcome, not the draw: new pixels at the stored maximum. Over-exposure
        # that clipped the detector is saturation too, and a saturation draw on a crop whose top
        # percentiles already sit at the maximum (RG3's collimator shadow: 41 % of its pixels)
        # changes nothing and is no saturation (58 % of the DR training draws did that before 2026.12.2).
        y[labels.index("saturation")] = int(_at_max(grid, src.stored_range) - at_max_before >= DR_SATURATED_FRACTION)
    native = grid if keep_native else None
    native_mm = None if pixel_mm is None else pixel_mm * WORKING_SIZE / matrix
    grid = to_working_grid(grid)  # degraded at the acquisition matrix, resampled as production does
    return Sample(
        channels(grid, modality, stored_range=src.stored_range),
        y,
        grid,
        pixel_mm,
        src.stored_range,
        src.name,
        src.real,
        native,
        native_mm if keep_native else None,
        tuple(made),
    )


def build_set(
    modality: str,
    split: Split,
    n: int,
    *,
    clean: bool = False,
    seed: int | None = None,
    keep_native: bool = False,
    simulation: Simulation = OURS_ONLY,
) -> list[Sample]:
    """``n`` samples of one split, reproducible from ``SET_SEEDS`` (or ``seed``); ``keep_native`` does
    not change them (it draws no random number), it keeps each image as acquired too; ``simulation``:
    see :class:`Simulation` (the artifact models train with ``TRAINING_SIMULATION``)."""
    sources = load_sources(modality, split)
    key = "test_clean" if clean else split
    rng = np.random.default_rng([seed if seed is not None else SET_SEEDS[key], sum(map(ord, modality))])
    return [
        make_sample(sources, modality, rng, clean=clean, keep_native=keep_native, simulation=simulation)
        for _ in range(n)
    ]


def features_of(samples: list[Sample], modality: str, names: Sequence[str] | None = None) -> npt.NDArray[np.float32]:
    """Metric features of ``samples``, columns in the order of ``names`` (default: the model features)."""
    rows = []
    for s in samples:
        grids = s.grid if modality == "DR" else s.grid[None]
        rows.append(metric_features(grids, modality, pixel_mm=s.pixel_mm, stored_range=s.stored_range, names=names))
    return np.stack(rows)


def native_features_of(samples: list[Sample], modality: str, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """The metrics ``names`` measured as the flow measures a series: on each image as acquired, at
    its own pixel size (:attr:`Sample.native`, from ``build_set(..., keep_native=True)``), through
    the modality's ``measure`` (not on the models' 256-pixel working grid)."""
    rows = []
    for s in samples:
        if s.native is None:
            raise ValueError("samples built without keep_native=True have no native image")
        image = s.native if modality == "DR" else s.native[None]
        rows.append(metric_features(image, modality, pixel_mm=s.native_mm, stored_range=s.stored_range, names=names))
    return np.stack(rows)
