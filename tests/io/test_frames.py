"""Some frames of a multi-frame object as an object of its own (what WADO-RS frame retrieval gives)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.io.frames import object_with_frames, subset_header
from qc_pipeline.io.pixels import load_series, slice_order
from qc_pipeline.sources.dicomweb import multipart_parts, transfer_syntax_of


def _enhanced(n: int = 6) -> tuple[Dataset, np.ndarray]:
    """A multi-frame CT whose frames are stored from the last position to the first."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = [0.5, 0.5]
    shared, orientation = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    items = []
    for k in range(n):
        position, item = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, float(10 * (n - 1 - k))]
        item.PlanePositionSequence = Sequence([position])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.NumberOfFrames = n
    pixels = (np.arange(n * 1024, dtype=np.int16).reshape(n, 32, 32) * 3) - 100
    return ds, pixels


def test_a_subset_header_keeps_the_chosen_frames_geometry_and_changes_nothing_it_was_given():
    ds, _ = _enhanced()
    reduced = subset_header(ds, (1, 4))
    assert reduced.NumberOfFrames == 2
    assert [
        f[0].PlanePositionSequence[0].ImagePositionPatient[2]
        for f in [[i] for i in reduced.PerFrameFunctionalGroupsSequence]
    ] == [40.0, 10.0]
    # Stacked along the slice normal as in the whole object: frame 4 (z = 10) before frame 1 (z = 40).
    assert slice_order([reduced]) == [(0, 1), (0, 0)]
    assert ds.NumberOfFrames == 6 and len(ds.PerFrameFunctionalGroupsSequence) == 6
    with pytest.raises(ValueError, match="distinct ascending"):
        subset_header(ds, (4, 1))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless])
def test_frames_retrieved_alone_decode_to_the_same_pixels(tmp_path, syntax):
    ds, pixels = _enhanced()
    whole = Dataset()
    whole.update(ds)
    whole.PixelData = pixels.tobytes()
    whole.file_meta = pydicom.dataset.FileMetaDataset()
    whole.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if syntax == JPEG2000Lossless:
        whole.compress(JPEG2000Lossless)
        frames = list(pydicom.encaps.generate_frames(whole.PixelData, number_of_frames=6))
        data = [frames[1], frames[4]]
    else:
        data = [pixels[1].tobytes(), pixels[4].tobytes()]
    part = object_with_frames(subset_header(ds, (1, 4)), data, str(syntax))
    path = tmp_path / "part.dcm"
    part.save_as(path, enforce_file_format=True)
    volume = load_series([path])
    np.testing.assert_array_equal(volume.array, pixels[[4, 1]].astype(np.float32))


def test_a_native_frame_of_the_wrong_size_is_refused():
    ds, pixels = _enhanced()
    with pytest.raises(DegenerateInputError, match="frames of 100 bytes received where the header's frame holds 2048"):
        object_with_frames(subset_header(ds, (0,)), [b"\0" * 100], str(ExplicitVRLittleEndian))
    with pytest.raises(DegenerateInputError, match="1 frames received where the header names 2"):
        object_with_frames(subset_header(ds, (0, 1)), [pixels[0].tobytes()], str(ExplicitVRLittleEndian))


def test_multipart_parts_and_their_transfer_syntax():
    body = (
        b"--b0\r\nContent-Type: image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90\r\n\r\n\xff\x4f\r\n--x"
        b"\r\n--b0\r\nContent-Type: image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90\r\n\r\nsecond"
        b"\r\n--b0--\r\n"
    )
    parts = multipart_parts('multipart/related; type="image/jp2"; boundary=b0', body)
    assert [content for _, content in parts] == [b"\xff\x4f\r\n--x", b"second"]
    assert {transfer_syntax_of(h["content-type"]) for h, _ in parts} == {"1.2.840.10008.1.2.4.90"}
    top = 'multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"; boundary=q'
    assert transfer_syntax_of(top) == "1.2.840.10008.1.2.1"
    assert transfer_syntax_of('multipart/related; type="application/octet-stream"; transfer-syntax=*') is None
    assert multipart_parts("application/octet-stream", b"raw") == [({}, b"raw")]
