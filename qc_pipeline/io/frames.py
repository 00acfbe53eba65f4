"""Some frames of a multi-frame object, as an object of its own.

A DICOMweb source can retrieve single frames of an instance (WADO-RS frame retrieval, PS3.18
§10.4.1.1.3) in the stored transfer syntax. A CT stored as one enhanced multi-frame object then
needs only the frames its metrics and the AI read, not the whole object. :func:`subset_header`
makes the header of an object holding only those frames, with their per-frame functional groups,
so :func:`qc_pipeline.io.pixels.load_series` orders and decodes them as it would the whole
object's; :func:`object_with_frames` adds the frames' pixel data, as retrieved.

Nothing here changes the header it is given (the study's loaded headers stay as loaded).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from qc_pipeline.errors import DegenerateInputError

PER_FRAME_GROUPS = 0x52009230
NUMBER_OF_FRAMES = 0x00280008
PIXEL_DATA = 0x7FE00010


def subset_header(header: Dataset, frames: Sequence[int]) -> Dataset:
    """The header of an object holding only ``frames`` (0-based, ascending) of ``header``'s object:
    NumberOfFrames and the per-frame functional groups (when there is one item per frame) cut to
    those frames, everything else shared with ``header``. No pixel data."""
    if not frames or list(frames) != sorted(set(frames)) or frames[0] < 0:
        raise ValueError(f"frames must be distinct ascending 0-based indices, got {list(frames)}")
    reduced = Dataset()
    for element in header:
        if element.tag not in (PER_FRAME_GROUPS, NUMBER_OF_FRAMES, PIXEL_DATA):
            reduced.add(element)  # shared: never changed through the reduced header
    per_frame = header.get(PER_FRAME_GROUPS)
    if per_frame is not None and per_frame.value is not None:
        items = list(per_frame.value)
        if len(items) > frames[-1]:
            chosen = DicomSequence([copy.deepcopy(items[i]) for i in frames])
            reduced.add(DataElement(PER_FRAME_GROUPS, "SQ", chosen))
    reduced.add(DataElement(NUMBER_OF_FRAMES, "IS", str(len(frames))))
    return reduced


def object_with_frames(header: Dataset, data: Sequence[bytes], transfer_syntax: str) -> Dataset:
    """``header`` (from :func:`subset_header`) with ``data`` (one bytes per frame, in its order, in
    ``transfer_syntax``) as its pixel data, ready to be written as a DICOM file.

    Native frames must each hold Rows × Columns × SamplesPerPixel × BitsAllocated / 8 bytes: a
    frame of another size is not the frame the header describes (DegenerateInputError).
    """
    syntax = UID(transfer_syntax)
    frames = list(data)
    if len(frames) != int(header.get("NumberOfFrames", 1) or 1):
        raise DegenerateInputError(
            f"{len(frames)} frames received where the header names {header.get('NumberOfFrames')}"
        )
    ds = Dataset()
    ds.update(header)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = header.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = header.get("SOPInstanceUID", "1.2.3")
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    if syntax.is_compressed:
        pixel = DataElement(PIXEL_DATA, "OB", encapsulate(frames), is_undefined_length=True)
    else:
        try:
            rows, cols = int(header.Rows), int(header.Columns)
            samples, bits = int(header.get("SamplesPerPixel", 1) or 1), int(header.BitsAllocated)
        except (AttributeError, TypeError, ValueError) as exc:
            raise DegenerateInputError(f"the header does not give the frame size: {exc}") from None
        expected = (rows * cols * samples * bits + 7) // 8
        sizes = sorted({len(f) for f in frames})
        if sizes != [expected]:
            raise DegenerateInputError(
                f"frames of {', '.join(map(str, sizes))} bytes received where the header's frame holds {expected}"
            )
        joined = b"".join(frames)
        pixel = DataElement(PIXEL_DATA, "OW" if bits > 8 else "OB", joined + b"\0" * (len(joined) % 2))
    ds.add(pixel)
    return ds
