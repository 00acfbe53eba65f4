"""MR sequence identification on real-scanner headers (tests/data/mr_conformance).

Expected weightings (and planes where the series name and the orientation agree) are the
manifest's, judged from each series' protocol name and parameters (see its ``why`` column and
the set's README for sources and licences); series whose answer cannot be known are UNKNOWN there
and not scored.
"""

from __future__ import annotations

import pytest

from qc_pipeline.catalog.mr_sequences import identify_series
from tests.data.mr_conformance.conformance import evaluate, load_cases, table

CASES = load_cases()
MIN_RIGHT = 0.97  # share of known series identified right (weighting and plane)


@pytest.fixture(scope="module")
def outcomes():
    return {o.case.series: o for o in evaluate(CASES, identify_series)}


def test_the_set_covers_every_vendor():
    vendors = {case.vendor for case in CASES if case.known}
    assert vendors >= {"GE", "Siemens", "Philips", "Canon/Toshiba", "United Imaging", "Hitachi", "Hyperfine"}


@pytest.mark.parametrize("case", [c for c in CASES if c.known], ids=lambda c: c.series)
def test_series_weighting_and_plane(case, outcomes):
    outcome = outcomes[case.series]
    assert outcome.info.weighting.value == case.weighting, (case.why, outcome.info.evidence)
    if case.plane is not None:
        assert outcome.info.plane is not None and outcome.info.plane.value == case.plane, outcome.info.evidence


def test_overall_share_right(outcomes):
    rows = {vendor: (n, right, share) for vendor, n, right, share in table(list(outcomes.values()))}
    n, right, share = rows["all"]
    assert n >= 60
    assert share >= MIN_RIGHT, rows


def test_multi_volume_series_have_two_images():
    """Diffusion and fMRI series carry an image of a second volume, so series-level logic is tested."""
    for series in ("ge_fmri_hb8", "ph_dti_bangalore", "ph_d2n_dti", "si_sag_dwi_mosaic", "canon_dti_ax"):
        case = next(c for c in CASES if c.series == series)
        assert len(case.files) == 2, series


@pytest.mark.parametrize("case", [c for c in CASES if c.known and len(c.files) > 1], ids=lambda c: c.series)
def test_file_order_does_not_change_the_weighting(case, outcomes):
    """Perturbation: the series read with its images in the other order gives the same weighting."""
    reordered = identify_series(list(reversed(case.datasets())))
    assert reordered.weighting is outcomes[case.series].info.weighting, reordered.evidence
