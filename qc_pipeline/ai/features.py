"""Features of the metric-based acceptability models: the pipeline's own metrics on the working grid.

The acceptability models (``<modality>_acceptability``, gradient boosting in the spirit of
MRIQC's classifier) read a vector of objective metrics. To keep training and inference identical,
the metrics are computed by :mod:`qc_pipeline.metrics` on the same working-grid images the
artifact classifiers see (``preprocess.to_working_grid``), not on the native matrix: a metric
such as noise SD depends on the pixel size, and the training images are made on the working grid.
Header-derived values (DR exposure index, deviation index) are left out: the training images
have no headers, and the objective rules judge those values anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai.preprocess import WORKING_SIZE, to_working_grid
from qc_pipeline.metrics import ct, dr, mr

FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "DR": tuple(m for m in dr.METRICS if m not in dr.NOT_MODEL_FEATURES),
    "CT": tuple(m for m in ct.METRICS if m not in ct.NOT_MODEL_FEATURES),
    "MR": tuple(m for m in mr.METRICS if m not in mr.NOT_MODEL_FEATURES),
}


def metric_features(
    grids: npt.NDArray[np.floating],
    modality: str,
    *,
    pixel_mm: float | None,
    stored_range: tuple[float, float] | None = None,
    names: Sequence[str] | None = None,
) -> npt.NDArray[np.float32]:
    """The feature vector, in the order of ``names`` (default ``FEATURES[modality]``, what training
    uses; at inference the model's manifest names them, so a metric added to this version does not
    change what an existing model is fed); NaN where a metric is not measurable.

    ``grids`` is one working-grid image (DR) or a (slice, row, col) stack of them (CT, MR);
    ``pixel_mm`` the working-grid pixel size.
    """
    spacing = None if pixel_mm is None else float(pixel_mm)
    if modality == "DR":
        image = grids if grids.ndim == 2 else grids[0]
        measured = dr.measure(
            image,
            spacing_mm=None if spacing is None else (spacing, spacing),
            stored_range=stored_range,
            exposure_index=None,
            target_exposure_index=None,
            deviation_index=None,
        )
    elif modality == "CT":
        measured = ct.measure(grids, spacing_mm=(None, spacing, spacing), body_part=None)
    elif modality == "MR":
        measured = mr.measure(grids, spacing_mm=(None, spacing, spacing), phase_encode_direction=None)
    else:
        raise ValueError(f"no metric features for modality {modality!r} (DR, CT or MR)")
    values = {m.metric: m.value for m in measured}
    return np.array(
        [
            v if (v := values.get(name)) is not None and math.isfinite(v) else np.nan
            for name in (FEATURES[modality] if names is None else names)
        ],
        dtype=np.float32,
    )


MISSING: Final = -1.0e6
"""Stand-in for a metric that could not be measured (trees split it off from every real value)."""


def encode_missing(features: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """NaN -> ``MISSING``, as the acceptability models were trained (they take no NaN)."""
    return np.where(np.isnan(features), MISSING, features).astype(np.float32)


def slice_features(
    slices: Sequence[npt.NDArray[np.floating]],
    modality: str,
    *,
    pixel_mm: float | None,
    stored_range: tuple[float, float] | None = None,
    names: Sequence[str] | None = None,
    grids: Sequence[npt.NDArray[np.float32]] | None = None,
) -> npt.NDArray[np.float32]:
    """The feature vector of decoded native images: each to the working grid, then :func:`metric_features`.

    ``pixel_mm`` is the native in-plane pixel size (None when unknown). ``grids``: the images
    already on the working grid (``to_working_grid`` of each of ``slices``, in order), when the
    caller made them for the artifact classifier; resampling is a third of this function's cost.
    """
    if grids is not None and len(grids) != len(slices):
        raise ValueError(f"{len(grids)} working grids for {len(slices)} slices")
    stack = np.stack(list(grids) if grids is not None else [to_working_grid(s) for s in slices])
    grid_mm = None if pixel_mm is None else pixel_mm * max(np.shape(slices[0])) / WORKING_SIZE
    return metric_features(
        stack[0] if modality == "DR" else stack, modality, pixel_mm=grid_mm, stored_range=stored_range, names=names
    )


def measured_metrics(modality: str) -> frozenset[str]:
    """Every metric id :func:`metric_features` can give for ``modality`` (a model may name any)."""
    return frozenset({"DR": dr.METRICS, "CT": ct.METRICS, "MR": mr.METRICS}[modality])
