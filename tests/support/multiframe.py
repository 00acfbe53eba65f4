"""A CT written as one multi-frame object, as enhanced CT and some archives store a series."""

from __future__ import annotations

from collections.abc import Sequence as Paths
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, generate_uid


def one_object(paths: Paths[Path], out: Path, *, per_frame_positions: bool, j2k: bool = False) -> Path:
    """The CT of ``paths`` as one multi-frame object: its frames stored from the last slice to the
    first, each with its own position in a per-frame functional group (as enhanced CT is stored), or
    with none (frames in stored order, one position). JPEG 2000 lossless with ``j2k``."""
    slices = [pydicom.dcmread(p) for p in paths]
    if per_frame_positions:
        slices = slices[::-1]
    pixels = np.stack([s.pixel_array for s in slices])
    positions = [list(s.ImagePositionPatient) for s in slices]
    ds = slices[0]
    ds.NumberOfFrames = len(slices)
    ds.PixelData = pixels.tobytes()
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), "one object", str(per_frame_positions)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if per_frame_positions:
        del ds.ImagePositionPatient
        orientation = Dataset()
        orientation.ImageOrientationPatient = ds.ImageOrientationPatient
        shared = Dataset()
        shared.PlaneOrientationSequence = Sequence([orientation])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        del ds.ImageOrientationPatient
        items = []
        for xyz in positions:
            position, item = Dataset(), Dataset()
            position.ImagePositionPatient = xyz
            item.PlanePositionSequence = Sequence([position])
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    if j2k:
        ds.compress(JPEG2000Lossless)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out
