"""Seeded anatomical CT slices: body regions built from layers, in HU, for training the CT classifiers.

The water cylinder of :mod:`qc_pipeline.samples.phantoms` has a known noise and nothing else; a
classifier that learns "clean CT" from it and from four real slices reads the dense bone and the
air cells of a skull base as streaks, and the grain of a small body slice as noise. These slices
give it the structures that clean CT images have: a lobulated body outline on a couch, fat, muscle,
organs, vessels, bowel gas, ribs and vertebrae, lungs with vessels, a skull with its diploe, and at
the skull base petrous bone full of mastoid air cells beside air-filled sinuses.

A slice is made in the order a scanner makes it: an ideal object (piecewise constant tissue
values with soft edges of 0.5-1.5 px, plus a faint tissue texture), the reconstruction kernel's
blur, and then quantum noise correlated by the kernel (white Gaussian noise smoothed by a Gaussian,
scaled so that its SD in HU is ``noise_sd_hu``). Values are clipped to the 12-bit CT range. Tissue
values are typical unenhanced adult values (e.g. Lev & Gonzalez 2002 for brain; Kalender,
*Computed Tomography*, 3rd ed., 2011, table 1.1); each seed draws them from a range around those.

Every random draw comes from ``numpy.random.default_rng(seed)``: a seed gives the same slice on
every machine. Nothing here reads files.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from qc_pipeline.samples.phantoms import CT_MAX_HU, CT_MIN_HU, HU_AIR

Region = Literal["head", "skull_base", "chest", "abdomen"]
REGIONS: Final[tuple[Region, ...]] = ("head", "skull_base", "chest", "abdomen")

FAT_HU: Final = (-110.0, -80.0)
MUSCLE_HU: Final = (40.0, 60.0)
LUNG_HU: Final = (-880.0, -820.0)
CORTICAL_BONE_HU: Final = (900.0, 1600.0)
TRABECULAR_BONE_HU: Final = (180.0, 350.0)
PETROUS_BONE_HU: Final = (1400.0, 2200.0)
GREY_MATTER_HU: Final = (36.0, 42.0)
WHITE_MATTER_HU: Final = (26.0, 32.0)
CSF_HU: Final = (2.0, 10.0)
TEXTURE_HU: Final = (2.0, 6.0)
"""SD of the faint low-frequency texture of soft tissue (tissue is not a flat value)."""

FloatArray = npt.NDArray[np.float64]


def _coords(size: int) -> tuple[FloatArray, FloatArray]:
    """Row and column coordinates in -1..1 (centre 0), as (row, col) arrays."""
    axis = np.linspace(-1.0, 1.0, size)
    return np.meshgrid(axis, axis, indexing="ij")


def _inside(d: FloatArray, edge: float) -> FloatArray:
    """Soft indicator of d <= 1 (logistic edge of width ``edge`` in units of d)."""
    return 1.0 / (1.0 + np.exp(np.clip((d - 1.0) / edge, -50.0, 50.0)))


class _Canvas:
    """A slice being painted: each layer replaces the value inside its (soft) shape."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.rows, self.cols = _coords(size)
        self.image = np.full((size, size), HU_AIR)
        self.edge_px = float(rng.uniform(0.5, 1.5))

    def ellipse_d(
        self, centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0, lobes: float = 0.0
    ) -> FloatArray:
        """Normalised radius of a rotated ellipse (coordinates in -1..1), optionally lobulated."""
        r = self.rows - centre[0]
        c = self.cols - centre[1]
        cos, sin = math.cos(angle), math.sin(angle)
        u, v = (r * cos + c * sin) / axes[0], (-r * sin + c * cos) / axes[1]
        d = np.hypot(u, v)
        if lobes > 0:
            theta = np.arctan2(u, v)
            wobble = sum(
                self.rng.uniform(0, lobes) * np.cos(k * theta + self.rng.uniform(0, 2 * np.pi)) for k in range(2, 6)
            )
            d = d / (1.0 + wobble)
        return d

    def paint(self, d: FloatArray, value: float | FloatArray) -> None:
        edge = self.edge_px / (self.size / 2.0) / 0.3  # about edge_px pixels for a shape of radius 0.3
        weight = _inside(d, edge)
        self.image = self.image * (1.0 - weight) + np.asarray(value) * weight

    def tissue(self, hu: tuple[float, float]) -> FloatArray:
        """A tissue value with a faint low-frequency texture."""
        texture = ndimage.gaussian_filter(self.rng.normal(0.0, 1.0, self.image.shape), self.size / 60.0)
        texture *= self.rng.uniform(*TEXTURE_HU) / max(float(texture.std()), 1e-9)
        return self.rng.uniform(*hu) + texture

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))


def _couch(canvas: _Canvas, bottom: float) -> None:
    """The patient couch: a curved dense shell under the body, with foam above it."""
    if canvas.rng.random() < 0.3:
        return
    radius = canvas.u(2.5, 5.0)
    centre = bottom + canvas.u(0.03, 0.08) + radius
    d = np.hypot(canvas.rows - centre, canvas.cols) / radius
    shell = (d > 1.0) & (d < 1.0 + canvas.u(0.006, 0.015) / radius * 2) & (np.abs(canvas.cols) < canvas.u(0.6, 0.9))
    canvas.image = np.where(shell, canvas.u(150.0, 400.0), canvas.image)


def _body(canvas: _Canvas, axes: tuple[float, float], fat_fraction: float) -> tuple[FloatArray, FloatArray]:
    """Skin and subcutaneous fat; returns the normalised radii of the body and of its fat-free inside."""
    centre = (canvas.u(-0.05, 0.1), canvas.u(-0.05, 0.05))
    body = canvas.ellipse_d(centre, axes, canvas.u(-0.1, 0.1), lobes=0.03)
    canvas.paint(body, canvas.tissue(FAT_HU))
    inner = body / (1.0 - fat_fraction)
    canvas.paint(inner, canvas.tissue(MUSCLE_HU))
    _couch(canvas, centre[0] + axes[0])
    return body, inner


def _vertebra(canvas: _Canvas, centre: tuple[float, float], scale: float) -> None:
    """A vertebral body (trabecular core, cortical shell), its arch and a spinous process."""
    cortical = canvas.u(*CORTICAL_BONE_HU)
    shell = canvas.ellipse_d(centre, (0.09 * scale, 0.1 * scale))
    canvas.paint(shell, cortical)
    canvas.paint(shell / 0.8, canvas.tissue(TRABECULAR_BONE_HU))
    arch = canvas.ellipse_d((centre[0] + 0.15 * scale, centre[1]), (0.07 * scale, 0.09 * scale))
    canvas.paint(arch, cortical * 0.8)
    canvas.paint(arch / 0.6, canvas.u(5.0, 15.0))  # the spinal canal
    canvas.paint(canvas.ellipse_d((centre[0] + 0.26 * scale, centre[1]), (0.06 * scale, 0.02 * scale)), cortical)


def _abdomen(canvas: _Canvas) -> None:
    axes = (canvas.u(0.45, 0.65), canvas.u(0.7, 0.92))
    _, inner = _body(canvas, axes, canvas.u(0.06, 0.2))
    for _ in range(int(canvas.rng.integers(1, 5))):  # mesenteric and retroperitoneal fat
        blob = canvas.ellipse_d(
            (canvas.u(-0.3, 0.25), canvas.u(-0.6, 0.6)),
            (canvas.u(0.05, 0.15), canvas.u(0.05, 0.2)),
            canvas.u(0, np.pi),
            lobes=0.1,
        )
        canvas.paint(blob, canvas.tissue((-100.0, -60.0)))
    side = 1.0 if canvas.rng.random() < 0.5 else -1.0  # patient orientation (left/right as displayed)
    canvas.paint(
        canvas.ellipse_d(
            (-0.05 * axes[0] / 0.55, -side * 0.35 * axes[1]),
            (0.3 * axes[0] / 0.55, 0.32 * axes[1]),
            canvas.u(-0.4, 0.4),
            lobes=0.05,
        ),
        canvas.tissue((50.0, 70.0)),
    )  # liver
    canvas.paint(
        canvas.ellipse_d((0.0, side * 0.5 * axes[1]), (0.13, 0.09), canvas.u(-0.6, 0.6)), canvas.tissue((40.0, 55.0))
    )
    for s in (-1.0, 1.0):  # kidneys: cortex and sinus fat
        kidney = canvas.ellipse_d((0.22, s * 0.3 * axes[1]), (0.1, 0.06), canvas.u(-0.5, 0.5) * s)
        canvas.paint(kidney, canvas.tissue((28.0, 40.0)))
        canvas.paint(kidney / 0.45, canvas.u(-90.0, -40.0))
    canvas.paint(canvas.ellipse_d((0.08, canvas.u(-0.06, 0.06)), (0.045, 0.045)), canvas.u(35.0, 50.0))  # aorta
    for _ in range(int(canvas.rng.integers(2, 9))):  # bowel loops, some with gas
        centre = (canvas.u(-0.35, 0.15), canvas.u(-0.5, 0.5))
        loop = canvas.ellipse_d(centre, (canvas.u(0.03, 0.09), canvas.u(0.03, 0.1)), canvas.u(0, np.pi), lobes=0.08)
        canvas.paint(loop, canvas.tissue((25.0, 45.0)))
        if canvas.rng.random() < 0.6:
            canvas.paint(loop / canvas.u(0.4, 0.8), HU_AIR + canvas.u(0.0, 80.0))
    _vertebra(canvas, (0.25 * axes[0] / 0.55, 0.0), canvas.u(0.8, 1.1))


def _ribs(canvas: _Canvas, axes: tuple[float, float], depth: float) -> None:
    cortical = canvas.u(*CORTICAL_BONE_HU) * 0.7
    for angle in np.linspace(0.25, np.pi - 0.25, int(canvas.rng.integers(6, 11))):
        for s in (-1.0, 1.0):
            a = angle + canvas.u(-0.08, 0.08)
            centre = (-(1 - depth) * axes[0] * math.cos(a) * 0.95, s * (1 - depth) * axes[1] * math.sin(a))
            rib = canvas.ellipse_d(centre, (canvas.u(0.012, 0.025), canvas.u(0.02, 0.05)), a * s)
            canvas.paint(rib, cortical)
            canvas.paint(rib / 0.55, canvas.u(*TRABECULAR_BONE_HU))


def _chest(canvas: _Canvas) -> None:
    axes = (canvas.u(0.45, 0.62), canvas.u(0.75, 0.95))
    _, inner = _body(canvas, axes, canvas.u(0.05, 0.15))
    lung_hu = canvas.u(*LUNG_HU)
    vessels = np.zeros_like(canvas.image)
    for _ in range(int(canvas.rng.integers(60, 160))):  # vessels in cross-section and in plane
        r, c = canvas.u(-0.4, 0.4), canvas.u(-0.8, 0.8)
        radius = canvas.u(0.004, 0.02)
        stretch = canvas.u(1.0, 4.0)
        d = canvas.ellipse_d((r, c), (radius, radius * stretch), canvas.u(0, np.pi))
        vessels = np.maximum(vessels, _inside(d, 0.3))
    for s in (-1.0, 1.0):
        lung = canvas.ellipse_d(
            (canvas.u(-0.08, 0.02), s * 0.4 * axes[1]),
            (canvas.u(0.55, 0.7) * axes[0], canvas.u(0.25, 0.32) * axes[1]),
            canvas.u(-0.2, 0.2),
            lobes=0.04,
        )
        weight = _inside(lung, 0.02)
        value = lung_hu + vessels * (canvas.u(20.0, 60.0) - lung_hu)
        canvas.image = canvas.image * (1 - weight) + value * weight
    heart = canvas.ellipse_d(
        (canvas.u(-0.1, 0.05), canvas.u(-0.15, 0.15)), (0.28 * axes[0] / 0.5, 0.22), canvas.u(-0.5, 0.5)
    )
    canvas.paint(heart, canvas.tissue((30.0, 50.0)))
    canvas.paint(canvas.ellipse_d((0.12, 0.08), (0.05, 0.05)), canvas.u(35.0, 50.0))  # descending aorta
    canvas.paint(canvas.ellipse_d((-0.15, 0.0), (0.03, 0.035)), HU_AIR)  # trachea or a main bronchus
    _ribs(canvas, axes, canvas.u(0.06, 0.12))
    if canvas.rng.random() < 0.6:  # scapulae: thin blades behind the ribs, at the level of the upper chest
        for s in (-1.0, 1.0):
            _ridge(
                canvas,
                (0.55 * axes[0], s * canvas.u(0.3, 0.45) * axes[1]),
                math.pi / 2 * s + canvas.u(-0.4, 0.1) * s,
                canvas.u(0.2, 0.35),
                canvas.u(0.008, 0.02),
                canvas.u(500.0, 1100.0),
            )
    _vertebra(canvas, (0.28 * axes[0] / 0.5, 0.0), canvas.u(0.8, 1.1))
    del inner


def _skull(canvas: _Canvas, axes: tuple[float, float], thickness: float) -> FloatArray:
    """Scalp, skull (outer and inner table, diploe); returns the radius of the intracranial space."""
    centre = (canvas.u(-0.05, 0.05), canvas.u(-0.04, 0.04))
    angle = canvas.u(-0.15, 0.15)
    canvas.paint(
        canvas.ellipse_d(centre, (axes[0] + 0.04, axes[1] + 0.04), angle, lobes=0.01), canvas.tissue((10.0, 40.0))
    )
    outer = canvas.ellipse_d(centre, axes, angle, lobes=0.01)
    canvas.paint(outer, canvas.u(*CORTICAL_BONE_HU))
    canvas.paint(outer / (1 - thickness * 0.3), canvas.tissue((400.0, 800.0)))  # diploe
    canvas.paint(outer / (1 - thickness * 0.7), canvas.u(*CORTICAL_BONE_HU))
    brain = outer / (1 - thickness)
    canvas.paint(brain, canvas.tissue(GREY_MATTER_HU))
    return brain


def _head(canvas: _Canvas) -> None:
    axes = (canvas.u(0.7, 0.9), canvas.u(0.58, 0.75))
    brain = _skull(canvas, axes, canvas.u(0.06, 0.1))
    canvas.paint(brain / 0.82, canvas.tissue(WHITE_MATTER_HU))
    for s in (-1.0, 1.0):  # lateral ventricles
        canvas.paint(
            canvas.ellipse_d(
                (canvas.u(-0.15, 0.05), s * canvas.u(0.05, 0.12)),
                (canvas.u(0.1, 0.3), canvas.u(0.02, 0.06)),
                s * canvas.u(0.0, 0.3),
            ),
            canvas.u(*CSF_HU),
        )
    if canvas.rng.random() < 0.3:  # a calcified pineal gland or choroid plexus
        canvas.paint(
            canvas.ellipse_d((canvas.u(0.05, 0.25), canvas.u(-0.05, 0.05)), (0.015, 0.015)), canvas.u(150.0, 400.0)
        )


def _air_cells(canvas: _Canvas, centre: tuple[float, float], extent: tuple[float, float], count: int) -> None:
    """Small air pockets separated by thin bony septa (mastoid air cells, ethmoid cells)."""
    for _ in range(count):
        r = centre[0] + canvas.u(-extent[0], extent[0])
        c = centre[1] + canvas.u(-extent[1], extent[1])
        radius = canvas.u(0.006, 0.025)
        canvas.paint(
            canvas.ellipse_d((r, c), (radius, radius * canvas.u(0.7, 1.4)), canvas.u(0, np.pi)),
            HU_AIR + canvas.u(0, 150),
        )


def _ridge(canvas: _Canvas, start: tuple[float, float], angle: float, length: float, width: float, hu: float) -> None:
    """A thin bony plate seen edge-on: a line of bone from ``start`` along ``angle`` (radians, row axis = 0)."""
    centre = (start[0] + 0.5 * length * math.cos(angle), start[1] + 0.5 * length * math.sin(angle))
    canvas.paint(canvas.ellipse_d(centre, (0.5 * length, width), angle), hu)


def _bony_ridges(canvas: _Canvas, sella: tuple[float, float]) -> None:
    """Sphenoid wings, petrous ridges and the nasal septum: thin high-contrast lines that radiate
    from the middle of the skull base (real clean skull bases have them; streaks look alike)."""
    for s in (-1.0, 1.0):
        _ridge(
            canvas,
            sella,
            math.pi + s * canvas.u(0.5, 1.1),
            canvas.u(0.25, 0.5),
            canvas.u(0.006, 0.016),
            canvas.u(600.0, 1400.0),
        )  # greater sphenoid wing, towards the front and the side
        _ridge(
            canvas,
            (sella[0] + 0.08, sella[1]),
            s * canvas.u(0.6, 1.2),
            canvas.u(0.25, 0.45),
            canvas.u(0.008, 0.02),
            canvas.u(1200.0, 2000.0),
        )  # petrous ridge, towards the back and the side
    if canvas.rng.random() < 0.6:
        _ridge(
            canvas,
            (sella[0] - 0.25, sella[1]),
            math.pi,
            canvas.u(0.2, 0.35),
            canvas.u(0.005, 0.01),
            canvas.u(300.0, 800.0),
        )  # nasal septum


def _skull_base(canvas: _Canvas) -> None:
    axes = (canvas.u(0.72, 0.9), canvas.u(0.62, 0.8))
    brain = _skull(canvas, axes, canvas.u(0.08, 0.14))
    canvas.paint(brain / 0.6, canvas.tissue((30.0, 40.0)))  # brain stem and cerebellum
    petrous = canvas.u(*PETROUS_BONE_HU)
    for s in (-1.0, 1.0):
        centre = (canvas.u(0.05, 0.25), s * canvas.u(0.3, 0.42))
        ridge = canvas.ellipse_d(centre, (canvas.u(0.08, 0.14), canvas.u(0.2, 0.3)), s * canvas.u(0.5, 1.0))
        canvas.paint(ridge, petrous)
        _air_cells(canvas, (centre[0] + 0.08, centre[1] + s * 0.1), (0.08, 0.08), int(canvas.rng.integers(8, 30)))
    canvas.paint(
        canvas.ellipse_d((canvas.u(0.0, 0.15), 0.0), (canvas.u(0.1, 0.2), canvas.u(0.04, 0.07))), petrous * 0.7
    )  # clivus
    _bony_ridges(canvas, (canvas.u(-0.1, 0.05), canvas.u(-0.03, 0.03)))
    sinus = canvas.ellipse_d(
        (-canvas.u(0.35, 0.55), canvas.u(-0.05, 0.05)), (canvas.u(0.08, 0.2), canvas.u(0.1, 0.25)), lobes=0.06
    )
    canvas.paint(sinus, canvas.u(400.0, 900.0))  # the sinus wall
    canvas.paint(sinus / 0.85, HU_AIR + canvas.u(0, 40))
    _air_cells(canvas, (-canvas.u(0.3, 0.5), 0.0), (0.12, 0.18), int(canvas.rng.integers(0, 15)))
    if canvas.rng.random() < 0.5:  # the orbits' floor or the nasal septum
        canvas.paint(canvas.ellipse_d((-0.45, 0.0), (0.2, 0.012)), canvas.u(300.0, 800.0))


_PAINTERS: Final = {"head": _head, "skull_base": _skull_base, "chest": _chest, "abdomen": _abdomen}


def ct_anatomical_slice(
    *,
    region: Region,
    size: int = 256,
    noise_sd_hu: float = 10.0,
    kernel_px: float = 0.8,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """One axial CT slice of ``region`` in HU, as a (row, col) float32 array (see the module docstring).

    ``noise_sd_hu`` is the SD of the added quantum noise, ``kernel_px`` the SD (pixels) of the
    Gaussian that stands for the reconstruction kernel: it blurs the object and correlates the noise.
    """
    if region not in _PAINTERS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if not (math.isfinite(noise_sd_hu) and noise_sd_hu >= 0):
        raise ValueError(f"noise_sd_hu must be a finite number >= 0, got {noise_sd_hu!r}")
    if not (math.isfinite(kernel_px) and kernel_px >= 0):
        raise ValueError(f"kernel_px must be a finite number >= 0, got {kernel_px!r}")
    rng = np.random.default_rng(seed)
    canvas = _Canvas(size, rng)
    _PAINTERS[region](canvas)
    image = canvas.image
    if kernel_px > 0:
        image = ndimage.gaussian_filter(image, kernel_px)
    noise = rng.normal(0.0, 1.0, image.shape)
    if kernel_px > 0:
        noise = ndimage.gaussian_filter(noise, kernel_px)
    image = image + noise * (noise_sd_hu / max(float(noise.std()), 1e-9))
    return np.clip(image, CT_MIN_HU, CT_MAX_HU).astype(np.float32)
