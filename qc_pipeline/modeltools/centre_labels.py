"""A centre's own reviewed studies as training data for the acceptability models.

``qc-pipeline models train --labels labels.csv`` reads the file written by
``qc-pipeline review export-labels`` (columns in :mod:`qc_pipeline.review.labels`): for every row
of the model's modality whose human decision is ``pass`` or ``fail``, the study is read again
from its ``source_uri`` (folder or DICOMweb), the listed series are decoded, and their metric
features (:func:`qc_pipeline.ai.features.slice_features`, exactly as the flow computes them) join
the training set with the radiologist's decision as the label (fail = not acceptable). Rows on
the negative list are used too: the flag says why the study is not offered for recognition, not
that its image is bad. Rows whose study can no longer be read are skipped and counted.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.ai.features import slice_features
from qc_pipeline.ai.preprocess import sample_slices
from qc_pipeline.domain import InstanceRef
from qc_pipeline.errors import ConfigError, QCError
from qc_pipeline.io.pixels import load_image, load_series, stored_value_range
from qc_pipeline.io.tabular import unescape_row
from qc_pipeline.sources import open_source

logger = logging.getLogger(__name__)

MODALITY_CODES: Final = {"DR": frozenset({"CR", "DX", "DR"}), "CT": frozenset({"CT"}), "MR": frozenset({"MR"})}
REQUIRED_COLUMNS: Final = ("study_instance_uid", "series_instance_uids", "modality", "human_decision", "source_uri")


@dataclass
class CentreLabels:
    features: list[npt.NDArray[np.float32]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = [unescape_row(r) for r in csv.DictReader(f)]  # undo the export's formula escape
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"label file {path} cannot be read: {exc}") from exc
    if rows:
        missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
        if missing:
            raise ConfigError(
                f"label file {path} lacks the columns {', '.join(missing)} (export it with qc-pipeline review export-labels)"
            )
    return rows


def _series_features(source, study, series_uids: set[str], modality: str) -> Iterator[npt.NDArray[np.float32]]:
    by_series: dict[str, list[InstanceRef]] = {}
    for inst in study.images:
        if (
            inst.ref.series_instance_uid in series_uids
            and str(inst.dataset.get("Modality", "")).upper() in MODALITY_CODES[modality]
        ):
            by_series.setdefault(inst.ref.series_instance_uid, []).append(inst.ref)
    for refs in by_series.values():
        with source.pixel_files(refs) as paths, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if modality == "DR":
                for path in paths:
                    image = load_image(path)
                    spacing = image.spacing_mm[0] if image.spacing_mm else None
                    yield slice_features([image.array], "DR", pixel_mm=spacing, stored_range=stored_value_range(image))
            else:
                volume = load_series(paths)
                chosen = [volume.array[i] for i in sample_slices(len(volume.array), max_slices=8)]
                yield slice_features(chosen, modality, pixel_mm=volume.spacing_mm[1])


def centre_features(path: Path, modality: str) -> CentreLabels:
    """Features and labels of the reviewed studies of ``modality`` in the label file at ``path``."""
    out = CentreLabels()
    sources: dict[str, object] = {}
    for row in read_rows(path):
        codes = {c.strip().upper() for c in row["modality"].split(",")}
        if not codes & MODALITY_CODES[modality]:
            continue
        if row["human_decision"] not in ("pass", "fail"):
            out.skip(f"human decision {row['human_decision']!r}")
            continue
        try:
            source = sources.get(row["source_uri"]) or sources.setdefault(
                row["source_uri"], open_source(row["source_uri"])
            )
            entry = next((e for e in source.discover() if e.study_instance_uid == row["study_instance_uid"]), None)  # type: ignore[attr-defined]
            if entry is None:
                out.skip("study no longer in its source")
                continue
            study = source.load(entry)  # type: ignore[attr-defined]
            series = {s for s in row["series_instance_uids"].split(";") if s}
            found = list(_series_features(source, study, series, modality))
        except (QCError, OSError, ValueError) as exc:
            logger.warning("label row of study %s skipped: %s", row["study_instance_uid"], exc)
            out.skip(type(exc).__name__)
            continue
        if not found:
            out.skip("no decodable series of the modality")
            continue
        label = int(row["human_decision"] == "fail")
        out.features.extend(found)
        out.labels.extend([label] * len(found))
    return out
