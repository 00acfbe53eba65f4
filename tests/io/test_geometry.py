"""Plane of a slice from ImageOrientationPatient: the largest direction cosine of the normal.

Orientations are rotations built here (about one patient axis, or two for a double oblique);
the expected plane follows from the rotation angle, not from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qc_pipeline.io.geometry import (
    DEFAULT_OBLIQUE_TOLERANCE_DEG,
    OBLIQUE_MARGIN_DEG,
    Plane,
    plane_from_orientation,
)


def rotated(axis: str, degrees: float, base: str = "AXIAL") -> list[float]:
    """The rows/columns of ``base`` rotated by ``degrees`` about patient ``axis`` (x, y or z)."""
    rows = {"AXIAL": ([1, 0, 0], [0, 1, 0]), "SAGITTAL": ([0, 1, 0], [0, 0, -1]), "CORONAL": ([1, 0, 0], [0, 0, -1])}
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    matrix = {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]
    row, col = (matrix @ np.array(v, dtype=float) for v in rows[base])
    return [float(v) for v in (*row, *col)]


def test_the_margin_is_documented_and_consistent():
    assert OBLIQUE_MARGIN_DEG == pytest.approx(5.0)
    assert DEFAULT_OBLIQUE_TOLERANCE_DEG == pytest.approx(45.0 - OBLIQUE_MARGIN_DEG)


@pytest.mark.parametrize("degrees", [0.0, 10.0, 25.0, 30.0, 35.0, 39.0, -28.0])
def test_an_angled_axial_is_axial(degrees):
    """A lumbar axial along the disc (25-30°) or a brain axial along AC-PC: still axial."""
    assert plane_from_orientation(rotated("x", degrees)) is Plane.AXIAL


@pytest.mark.parametrize("degrees", [41.0, 44.0, 45.0, 46.0, 49.0])
def test_near_45_degrees_between_two_axes_is_oblique(degrees):
    assert plane_from_orientation(rotated("x", degrees)) is Plane.OBLIQUE


@pytest.mark.parametrize(("degrees", "plane"), [(51.0, Plane.CORONAL), (60.0, Plane.CORONAL), (80.0, Plane.CORONAL)])
def test_past_the_margin_the_other_axis_wins(degrees, plane):
    assert plane_from_orientation(rotated("x", degrees)) is plane


@pytest.mark.parametrize(("base", "plane"), [("SAGITTAL", Plane.SAGITTAL), ("CORONAL", Plane.CORONAL)])
def test_angled_sagittal_and_coronal(base, plane):
    assert plane_from_orientation(rotated("z", 30.0, base)) is plane
    assert plane_from_orientation(rotated("z", 44.0, base)) is Plane.OBLIQUE


def test_a_true_double_oblique_near_45_degrees_stays_oblique():
    """Rotated 40° about x then 40° about y: the normal is more than 40° from every axis."""
    double = rotated("x", 40.0)
    m = np.array(
        [
            [math.cos(math.radians(40)), 0, math.sin(math.radians(40))],
            [0, 1, 0],
            [-math.sin(math.radians(40)), 0, math.cos(math.radians(40))],
        ]
    )
    row, col = m @ np.array(double[:3]), m @ np.array(double[3:])
    assert plane_from_orientation([*row, *col]) is Plane.OBLIQUE
    assert plane_from_orientation([1, 1, 0, 0, 1, 1]) is Plane.OBLIQUE  # normal along (1,-1,1)/√3


def test_a_stricter_tolerance_is_still_an_option():
    assert plane_from_orientation(rotated("x", 25.0), oblique_tolerance_deg=20.0) is Plane.OBLIQUE
