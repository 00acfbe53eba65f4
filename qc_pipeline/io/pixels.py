"""Decode the pixels of one series (or one radiograph) once, into a float32 array.

``load_series`` reads every file's header first (without pixel data, see
:func:`qc_pipeline.io.dicom.read_header`), checks from the headers alone that the series is one
matrix size, one photometric interpretation and fits in a memory budget, then decodes each file
with pydicom's pixel handlers (pylibjpeg decodes JPEG, JPEG-LS, JPEG 2000 and RLE), applies the
modality rescale of every frame and stacks the frames along the slice normal.

Decoding that the installed decoders refuse but a standard reading allows is done here:

- a file without file meta (no transfer syntax) whose header was read: native pixel data are
  decoded in the encoding the dataset was read with (implicit/explicit VR, little/big endian);
- JPEG sequential (lossy 8-bit baseline 1.2.840.10008.1.2.4.50 and 12-bit extended .51) whose scan
  header says Se = 0: ITU-T T.81 (B.2.3) fixes Ss = 0 and Se = 63 for sequential DCT, and the IJG
  decoders ignore the fields; libjpeg (pylibjpeg-libjpeg) refuses them, so the scan header is
  corrected in memory and the frame decoded again (the NEMA WG04 "JPLY" images are written so).

:func:`lossy_compression` says whether a header records lossy coding.

A header that lies about its size (Rows x Columns x NumberOfFrames) is refused before anything is
allocated, and a file whose pixel data is shorter than its header needs is refused before it is
decoded: both raise :class:`~qc_pipeline.errors.DegenerateInputError` naming the file.

Arrays are (slice, row, col). The returned array is read-only: copy it to modify it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.encaps
import pydicom.pixels
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from qc_pipeline.errors import DegenerateInputError, NotApplicableError
from qc_pipeline.io.dicom import HeaderRead, read_header
from qc_pipeline.io.geometry import (
    as_floats,
    frame_functional_group,
    frame_geometry,
    has_functional_groups,
    header_get,
    slice_normal,
    slice_position,
)
from qc_pipeline.io.readahead import will_read

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 2 * 1024**3
"""Default memory budget of one decoded series: 2 GiB."""
_OUTPUT_ITEMSIZE: Final = np.dtype(np.float32).itemsize
MAX_PLAUSIBLE_SIDE: Final = 16384
"""Largest Rows or Columns taken at its word. DR detectors reach about 4300 pixels a side and CT/MR
matrices 1024 (2048 for some high-resolution CT); a side beyond this says the header lies about
the image (compressed data cannot be checked against the file size), so the series goes to review
instead of being skipped as merely too large."""
_NORMAL_TOLERANCE: Final = 1e-3
"""Two slice normals whose dot product is below 1 - this (about 2.6 degrees apart) differ."""
_MAX_NAMED_FILES: Final = 3

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SeriesVolume:
    """The decoded pixels of one series, with the geometry needed by the metrics."""

    array: Float32Array
    """(slice, row, col) float32, modality rescale (RescaleSlope/Intercept) applied; read-only."""
    spacing_mm: tuple[float | None, float | None, float | None]
    """(slice, row, col) spacing in mm. Slice: median distance between sorted slice positions,
    else SpacingBetweenSlices (0018,0088); row, col: PixelSpacing (0028,0030) of the first frame.
    None where the headers do not tell."""
    positions_mm: tuple[float, ...] | None
    """Position of each slice along the slice normal (ImagePositionPatient · normal), ascending;
    None when some frame has no usable position (slices are then in InstanceNumber order)."""
    photometric: str
    """PhotometricInterpretation (0028,0004) of the series, e.g. MONOCHROME2."""
    modality: str | None
    datasets: tuple[Dataset, ...]
    """The headers (no pixel data), one per file, in the order of their first slice."""
    frame_of_reference: str | None
    """FrameOfReferenceUID shared by all files; None when absent or not the same in all."""
    slice_sources: tuple[tuple[int, int], ...]
    """For each slice of the series: (index into ``datasets``, frame index in that file)."""
    slice_indices: tuple[int, ...] = ()
    """Which slices of the series ``array`` holds, ascending (indices into ``positions_mm`` and
    ``slice_sources``): every one unless the caller selected some (``load_series(select=...)``)."""

    @property
    def n_slices(self) -> int:
        """Slices in the whole series, decoded or not."""
        return len(self.slice_sources)


@dataclass(frozen=True, slots=True)
class PlanarImage:
    """One decoded radiograph (DR/CR/DX), in the MONOCHROME2 convention (high = bright)."""

    array: Float32Array
    """(row, col) float32, modality rescale applied, MONOCHROME1 inverted; read-only."""
    spacing_mm: tuple[float, float] | None
    """(row, col) spacing in mm: PixelSpacing, else ImagerPixelSpacing (0018,1164); None if neither."""
    photometric: str
    """The file's own PhotometricInterpretation (MONOCHROME1 stays MONOCHROME1 here)."""
    inverted: bool
    """True when the pixels were inverted from MONOCHROME1 (see :func:`load_image`)."""
    modality: str | None
    dataset: Dataset
    """The header, without pixel data."""


@dataclass(frozen=True, slots=True)
class _Frame:
    file_index: int
    frame_index: int
    position: float | None
    normal: tuple[float, float, float] | None
    instance_number: float
    sop_uid: str
    slope: float
    intercept: float


def _positive_pair(value: tuple[float, ...] | None) -> tuple[float, float] | None:
    """Two spacings in mm when both are > 0 (some writers put 0\\0 for "unknown"), else None."""
    if value is None or len(value) != 2 or not (value[0] > 0.0 and value[1] > 0.0):
        return None
    return (value[0], value[1])


def _name_files(paths: Sequence[Path]) -> str:
    names = ", ".join(p.name for p in paths[:_MAX_NAMED_FILES])
    if len(paths) > _MAX_NAMED_FILES:
        names += f" and {len(paths) - _MAX_NAMED_FILES} more"
    return names


def _header_int(ds: Dataset, keyword: str, path: Path, *, default: int | None = None) -> int:
    value = as_floats(header_get(ds, keyword), count=1)
    if value is None:
        if default is not None and keyword not in ds:
            return default
        raise DegenerateInputError(f"{path.name}: {keyword} is missing or not a number ({ds.get(keyword)!r})")
    number = value[0]
    if number != int(number) or number < 1:
        raise DegenerateInputError(f"{path.name}: {keyword} must be a positive integer, found {number!r}")
    return int(number)


def _read_headers(paths: Sequence[Path], headers: Sequence[HeaderRead] | None = None) -> list[HeaderRead]:
    """Each file's header: from ``headers`` (read before, one per path) when given, else read now."""
    if headers is not None and len(headers) != len(paths):
        raise ValueError(f"{len(headers)} headers for {len(paths)} paths: give one header per path")
    results = []
    for index, path in enumerate(paths):
        result = headers[index] if headers is not None else read_header(path)
        if result.dataset is None:
            raise DegenerateInputError(f"{path.name}: {result.error}")
        if result.pixel_data is None or not result.pixel_data.present:
            raise DegenerateInputError(f"{path.name}: no Pixel Data element (7FE0,0010)")
        results.append(result)
    return results


def _check_complete(reads: Sequence[HeaderRead]) -> None:
    for read in reads:
        if read.pixel_data is not None and read.pixel_data.truncated:
            raise DegenerateInputError(f"{read.path.name}: truncated pixel data: {read.pixel_data.describe()}")


def _check_budget(
    paths: Sequence[Path], datasets: Sequence[Dataset], *, max_bytes: int, complete: bool
) -> list[tuple[int, int, int]]:
    """Rows, Columns, frames of every file, after checking the decoded size against ``max_bytes``.

    Needed bytes = float32 output (sum of Rows x Columns x frames x 4) + the largest single file
    decoded at BitsAllocated (it is decoded whole, then converted into the output). Over budget
    with ``complete`` pixel data (each file holds what its header declares): NotApplicableError,
    a series too large for the metrics by design; else the header may lie: DegenerateInputError.
    """
    dims = []
    output_bytes = 0
    largest_file_bytes = 0
    for path, ds in zip(paths, datasets, strict=True):
        rows = _header_int(ds, "Rows", path)
        cols = _header_int(ds, "Columns", path)
        frames = _header_int(ds, "NumberOfFrames", path, default=1)
        samples = _header_int(ds, "SamplesPerPixel", path, default=1)
        bits = _header_int(ds, "BitsAllocated", path, default=16)
        voxels = rows * cols * frames * samples
        output_bytes += voxels * _OUTPUT_ITEMSIZE
        largest_file_bytes = max(largest_file_bytes, voxels * max(1, math.ceil(bits / 8)))
        dims.append((rows, cols, frames))
        if max(rows, cols) > MAX_PLAUSIBLE_SIDE:
            raise DegenerateInputError(
                f"{path.name} declares Rows={rows} x Columns={cols}: more than {MAX_PLAUSIBLE_SIDE} pixels "
                "on a side, which no radiograph, CT or MR matrix has; the header may lie about the image size"
            )
        if output_bytes + largest_file_bytes > max_bytes:
            raise (NotApplicableError if complete else DegenerateInputError)(
                f"decoding would need more than max_bytes={max_bytes} bytes: {path.name} declares "
                f"Rows={rows} x Columns={cols} x NumberOfFrames={frames} x SamplesPerPixel={samples} "
                f"({output_bytes + largest_file_bytes} bytes so far as float32 plus one decode buffer); "
                "the header may lie about the image size, or pass a larger max_bytes"
            )
        if samples != 1:
            raise DegenerateInputError(
                f"{path.name}: SamplesPerPixel is {samples}; only single-sample (grey-scale) images "
                "can be loaded as a volume"
            )
    return dims


def _rescale_of(ds: Dataset, item: Dataset | None) -> tuple[float, float]:
    """(slope, intercept): PixelValueTransformationSequence item, else the top level, else (1, 0)."""
    for source in (item, ds):
        if source is None:
            continue
        slope = as_floats(header_get(source, "RescaleSlope"), count=1)
        intercept = as_floats(header_get(source, "RescaleIntercept"), count=1)
        if slope is not None or intercept is not None:
            return (slope[0] if slope else 1.0, intercept[0] if intercept else 0.0)
    return (1.0, 0.0)


def _frames_of(file_index: int, ds: Dataset, n_frames: int) -> list[_Frame]:
    geometry = frame_geometry(ds)
    # One top-level position for many frames says nothing about where each frame is.
    positions_known = len(geometry) == n_frames
    if not positions_known:
        geometry = [geometry[0]] * n_frames if geometry else []
    transforms: list[Dataset | None] = (
        frame_functional_group(ds, "PixelValueTransformationSequence") if has_functional_groups(ds) else []
    )
    if len(transforms) != n_frames:
        transforms = [None] * n_frames
    instance = as_floats(header_get(ds, "InstanceNumber"), count=1)
    frames = []
    for index in range(n_frames):
        geo = geometry[index] if geometry else None
        normal = slice_normal(geo.orientation) if geo is not None else None
        position = (
            slice_position(geo.position, normal) if positions_known and geo is not None and normal is not None else None
        )
        slope, intercept = _rescale_of(ds, transforms[index])
        frames.append(
            _Frame(
                file_index=file_index,
                frame_index=index,
                position=position,
                normal=normal,
                instance_number=instance[0] if instance is not None else math.inf,
                sop_uid=str(header_get(ds, "SOPInstanceUID", "")),
                slope=slope,
                intercept=intercept,
            )
        )
    return frames


def _sort_frames(frames: list[_Frame], paths: Sequence[Path]) -> tuple[list[_Frame], bool]:
    """Frames along the slice normal (True), or by InstanceNumber when a position is missing (False)."""
    normals = [f.normal for f in frames if f.normal is not None]
    if normals:
        reference = np.asarray(normals[0])
        for frame in frames:
            if frame.normal is not None and float(np.dot(reference, frame.normal)) < 1.0 - _NORMAL_TOLERANCE:
                raise DegenerateInputError(
                    f"frames of different orientations in one series: {paths[frames[0].file_index].name} "
                    f"and {paths[frame.file_index].name} (ImageOrientationPatient); split the series by "
                    "orientation first"
                )
    if frames and all(f.position is not None for f in frames):
        # The positions are along each frame's own normal; they are all (nearly) the same one.
        return sorted(frames, key=lambda f: (f.position, f.instance_number, f.sop_uid, f.frame_index)), True
    return sorted(frames, key=lambda f: (f.instance_number, f.sop_uid, f.frame_index)), False


def slice_order(datasets: Sequence[Dataset], names: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """The slices of a series in the order :func:`load_series` stacks them, from the headers
    alone: for each slice, (index into ``datasets``, frame index in that object).

    A source that fetches pixel data (DICOMweb) decides with it which instances to fetch before
    any is; ``names`` name the objects in errors (default: their SOPInstanceUID). Raises
    DegenerateInputError where :func:`load_series` would for the same headers (a frame count
    that is not a positive integer, frames of different orientations).
    """
    labels = (
        [Path(n) for n in names]
        if names is not None
        else [Path(str(ds.get("SOPInstanceUID", "") or f"object {k + 1}")) for k, ds in enumerate(datasets)]
    )
    frames: list[_Frame] = []
    for index, ds in enumerate(datasets):
        frames.extend(_frames_of(index, ds, _header_int(ds, "NumberOfFrames", labels[index], default=1)))
    ordered, _by_position = _sort_frames(frames, labels)
    return [(f.file_index, f.frame_index) for f in ordered]


def _slice_spacing(positions: Sequence[float] | None, first: Dataset) -> float | None:
    if positions is not None and len(positions) > 1:
        steps = np.diff(np.asarray(positions, dtype=np.float64))
        median = float(np.median(steps))
        if median > 0.0:
            return median
    spacing = as_floats(first.get("SpacingBetweenSlices"), count=1)
    return abs(spacing[0]) if spacing is not None and spacing[0] != 0.0 else None


LOSSY_TRANSFER_SYNTAXES: Final[dict[str, str]] = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (processes 2 and 4)",
    "1.2.840.10008.1.2.4.52": "JPEG Extended (processes 3 and 5, retired)",
    "1.2.840.10008.1.2.4.53": "JPEG Spectral Selection (retired)",
    "1.2.840.10008.1.2.4.54": "JPEG Spectral Selection (retired)",
    "1.2.840.10008.1.2.4.55": "JPEG Full Progression (retired)",
    "1.2.840.10008.1.2.4.56": "JPEG Full Progression (retired)",
    "1.2.840.10008.1.2.4.59": "JPEG Extended Hierarchical (retired)",
    "1.2.840.10008.1.2.4.60": "JPEG Extended Hierarchical (retired)",
    "1.2.840.10008.1.2.4.61": "JPEG Spectral Selection Hierarchical (retired)",
    "1.2.840.10008.1.2.4.62": "JPEG Spectral Selection Hierarchical (retired)",
    "1.2.840.10008.1.2.4.63": "JPEG Full Progression Hierarchical (retired)",
    "1.2.840.10008.1.2.4.64": "JPEG Full Progression Hierarchical (retired)",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.100": "MPEG2 Main Profile",
    "1.2.840.10008.1.2.4.101": "MPEG2 High Profile",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264",
    "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD",
    "1.2.840.10008.1.2.4.104": "MPEG-4 AVC/H.264 2D",
    "1.2.840.10008.1.2.4.105": "MPEG-4 AVC/H.264 3D",
    "1.2.840.10008.1.2.4.106": "MPEG-4 AVC/H.264 Stereo",
    "1.2.840.10008.1.2.4.107": "HEVC/H.265 Main Profile",
    "1.2.840.10008.1.2.4.108": "HEVC/H.265 Main 10 Profile",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
}
"""Transfer syntaxes that are lossy whatever the header says (DICOM PS3.5 Table A-1 / PS3.6)."""
MAYBE_LOSSY_TRANSFER_SYNTAXES: Final[dict[str, str]] = {
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2 Multi-component",
    "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
"""Transfer syntaxes that may be reversible or irreversible: lossy when LossyImageCompression
(0028,2110) says "01"."""


def transfer_syntax(ds: Dataset) -> str | None:
    """TransferSyntaxUID (0002,0010) of the file meta, or None when the file had none."""
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(value).strip() or None if value is not None else None


def lossy_compression(ds: Dataset) -> str | None:
    """How the pixel data were lossy coded, as a short text; None when nothing says they were.

    Lossy when LossyImageCompression (0028,2110) is "01" (the image was lossy coded at some point,
    even if stored uncompressed now; LossyImageCompressionMethod (0028,2114) and Ratio (0028,2112)
    are quoted), or when the transfer syntax is always lossy (:data:`LOSSY_TRANSFER_SYNTAXES`).
    A JPEG 2000 / HTJ2K / JPEG XL syntax, reversible or not, counts only with "01".
    """
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    syntax = transfer_syntax(ds)
    parts = []
    if flag == "01":
        parts.append("LossyImageCompression (0028,2110) = 01")
        method = ds.get("LossyImageCompressionMethod")
        ratio = ds.get("LossyImageCompressionRatio")
        if method:
            parts.append(f"method {method if isinstance(method, str) else ' '.join(map(str, method))}")
        if ratio:
            parts.append(f"ratio {ratio if isinstance(ratio, (str, int, float)) else ' '.join(map(str, ratio))}")
    if syntax in LOSSY_TRANSFER_SYNTAXES:
        parts.append(f"transfer syntax {syntax} {LOSSY_TRANSFER_SYNTAXES[syntax]}")
    elif syntax in MAYBE_LOSSY_TRANSFER_SYNTAXES and flag == "01":
        parts.append(f"transfer syntax {syntax} {MAYBE_LOSSY_TRANSFER_SYNTAXES[syntax]}")
    return ", ".join(parts) if parts else None


_JPEG_SEQUENTIAL_SYNTAXES: Final = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
_SOF_SEQUENTIAL: Final = frozenset({0xC0, 0xC1})
"""SOF0 baseline and SOF1 extended sequential DCT, Huffman coded (ITU-T T.81 Table B.1)."""


def sequential_scan_fixed(frame: bytes) -> bytes | None:
    """``frame`` (one JPEG codestream) with the spectral selection of every scan set to Ss = 0,
    Se = 63 when the frame is sequential DCT (SOF0/SOF1) and a scan says otherwise; None when
    there is nothing to fix or the stream is not such a JPEG.

    ITU-T T.81 B.2.3: for sequential DCT, Ss = 0 and Se = 63; some encoders write Se = 0, which
    IJG-based decoders ignore and libjpeg refuses ("scan stop must be 63").
    """
    data = bytearray(frame)
    if data[:2] != b"\xff\xd8":
        return None
    i, sequential, changed = 2, False, False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None  # entropy-coded data only follows a scan header, which ends the walk
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_SEQUENTIAL:
            sequential = True
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None  # progressive, lossless or hierarchical: Ss/Se mean something else
        if marker == 0xDA:
            if not sequential:
                return None
            spectral = i + 4 + 1 + 2 * data[i + 4]
            if spectral + 1 >= len(data):
                return None
            if (data[spectral], data[spectral + 1]) != (0, 63):
                data[spectral], data[spectral + 1] = 0, 63
                changed = True
            # later scans of a sequential frame (one per component) follow the entropy-coded data
            nxt = data.find(b"\xff\xda", i + 2 + length)
            if nxt < 0:
                break
            i = nxt
            continue
        i += 2 + length
    return bytes(data) if changed else None


def _native_syntax(ds: Dataset) -> UID:
    """The transfer syntax of a dataset read without file meta, from the encoding it was read in."""
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _pixel_array(path: Path, ds: Dataset, frames: int) -> npt.NDArray[np.generic]:
    """Decode ``path`` (see the module docstring for the cases handled beyond pydicom's own)."""
    syntax = transfer_syntax(ds)
    if syntax is None:
        full = pydicom.dcmread(path, force=True)
        if "PixelData" in full and full["PixelData"].is_undefined_length:
            raise DegenerateInputError(
                f"{path.name}: no file meta and encapsulated (compressed) pixel data: the compression "
                "that would decode it is not recorded"
            )
        full.file_meta = FileMetaDataset()
        full.file_meta.TransferSyntaxUID = _native_syntax(full)
        return full.pixel_array
    try:
        return pydicom.pixels.pixel_array(str(path))
    except Exception as exc:
        if syntax not in _JPEG_SEQUENTIAL_SYNTAXES:
            raise
        full = pydicom.dcmread(path)
        fixed = []
        for frame in pydicom.encaps.generate_frames(full.PixelData, number_of_frames=frames):
            repaired = sequential_scan_fixed(frame)
            fixed.append(frame if repaired is None else repaired)
        if fixed == list(pydicom.encaps.generate_frames(full.PixelData, number_of_frames=frames)):
            raise exc  # nothing to repair: the first error says why
        logger.debug("%s: JPEG scan header Se corrected to 63 (T.81 B.2.3) before decoding", path)
        full.PixelData = pydicom.encaps.encapsulate(fixed)
        return full.pixel_array


def _decode(path: Path, ds: Dataset, rows: int, cols: int, frames: int) -> npt.NDArray[np.generic]:
    try:
        pixels = _pixel_array(path, ds, frames)
    except DegenerateInputError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: B036 - the decoders raise many types on corrupt or unsupported data,
        # and the Rust ones (pylibjpeg-rle) a pyo3 PanicException, which is no Exception (found by fuzzing)
        logger.debug("cannot decode %s", path, exc_info=True)
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DegenerateInputError(
            f"{path.name}: pixel data cannot be decoded ({transfer_syntax(ds)}): {reason}"
        ) from exc
    pixels = pixels.reshape((frames, rows, cols)) if pixels.size == frames * rows * cols else pixels
    if pixels.shape != (frames, rows, cols):
        raise DegenerateInputError(
            f"{path.name}: decoded pixel data has shape {pixels.shape}, the header says "
            f"{(frames, rows, cols)} (NumberOfFrames, Rows, Columns)"
        )
    return pixels


def _modality_lut(ds: Dataset, frame: npt.NDArray[np.generic]) -> Float32Array | None:
    """The Modality LUT Sequence (0028,3000) applied, when the header has one instead of a rescale."""
    if "ModalityLUTSequence" not in ds:
        return None
    return np.asarray(pydicom.pixels.apply_modality_lut(frame, ds), dtype=np.float32)


def _decodes_whole_file(ds: Dataset, n_frames: int, n_wanted: int) -> bool:
    """Whether :func:`_decode_frames` decodes the whole file for ``n_wanted`` of its frames."""
    return n_frames == 1 or 2 * n_wanted > n_frames or transfer_syntax(ds) is None


def _decode_frames(
    path: Path, ds: Dataset, rows: int, cols: int, n_frames: int, wanted: Sequence[int]
) -> dict[int, npt.NDArray[np.generic]]:
    """The ``wanted`` frames of one file, decoded: the whole file when it has one frame or most of
    its frames are wanted, else frame by frame (pydicom reads one frame of native data and decodes
    one fragment of encapsulated data); a frame that pydicom cannot decode alone (no file meta, a
    JPEG scan header to repair) falls back to the whole file, which says why it cannot be decoded."""
    if _decodes_whole_file(ds, n_frames, len(wanted)):
        pixels = _decode(path, ds, rows, cols, n_frames)
        return {i: pixels[i] for i in wanted}
    out: dict[int, npt.NDArray[np.generic]] = {}
    try:
        for i in wanted:
            frame = pydicom.pixels.pixel_array(str(path), index=i)
            if frame.shape != (rows, cols):
                raise ValueError(f"frame {i} has shape {frame.shape}")
            out[i] = frame
    except Exception:
        logger.debug("%s: frame-by-frame decoding failed, decoding the whole file", path, exc_info=True)
        pixels = _decode(path, ds, rows, cols, n_frames)
        return {i: pixels[i] for i in wanted}
    return out


def load_series(
    paths: Sequence[Path],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    headers: Sequence[HeaderRead] | None = None,
    select: Callable[[int], Iterable[int]] | None = None,
) -> SeriesVolume:
    """Decode the files of one series into a (slice, row, col) float32 volume.

    Frames (of single- or multi-frame objects) are sorted by their position along the slice
    normal, ImagePositionPatient (0020,0032) · (row x column cosines of ImageOrientationPatient),
    per frame from the functional groups of enhanced objects; when any frame lacks a position they
    are sorted by InstanceNumber (0020,0013) then frame number. Ties break on SOPInstanceUID, so the
    order of ``paths`` never matters. Each frame gets its own rescale: value = slope x stored +
    intercept (PixelValueTransformationSequence of enhanced objects, else RescaleSlope/Intercept,
    else 1 and 0; a Modality LUT Sequence is applied through pydicom).

    Raises DegenerateInputError when ``paths`` is empty, a header is unreadable or has no pixel
    data, the headers declare more than ``max_bytes`` of decoded data (float32 output plus one
    file's decode buffer), the files differ in Rows/Columns or PhotometricInterpretation, frames
    differ in orientation, pixel data is truncated or cannot be decoded.

    ``headers``: the files' headers as :func:`~qc_pipeline.io.dicom.read_header` read them before
    (one per path, same order), so that a study's headers are parsed once; they must be the
    headers of these very files. When None, each file's header is read here.

    ``select``: given the number of slices of the series, the indices (in the sorted order) of
    the slices to decode; only their files (or frames) are decoded and ``array`` holds only them
    (``slice_indices`` says which). Everything else -- the checks of the headers, the order, the
    positions and spacing -- covers the whole series as without it. The metrics look at a sample
    of slices; decoding only those is most of a large series' cost saved.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise DegenerateInputError("load_series got no paths: a series needs at least one file")
    reads = _read_headers(paths, headers)
    datasets = [read.dataset for read in reads if read.dataset is not None]
    complete = not any(read.pixel_data is not None and read.pixel_data.truncated for read in reads)
    dims = _check_budget(paths, datasets, max_bytes=max_bytes, complete=complete)
    _check_complete(reads)

    sizes: dict[tuple[int, int], list[Path]] = {}
    for path, (rows, cols, _frames) in zip(paths, dims, strict=True):
        sizes.setdefault((rows, cols), []).append(path)
    if len(sizes) > 1:
        detail = "; ".join(f"{r}x{c}: {_name_files(ps)}" for (r, c), ps in sizes.items())
        raise DegenerateInputError(f"mixed matrix sizes (Rows x Columns) in one series: {detail}")
    photometrics = {str(header_get(ds, "PhotometricInterpretation", "")).strip() for ds in datasets}
    if len(photometrics) > 1:
        raise DegenerateInputError(
            f"mixed PhotometricInterpretation in one series: {sorted(photometrics)} ({_name_files(paths)})"
        )

    frames: list[_Frame] = []
    for index, (ds, (_r, _c, n_frames)) in enumerate(zip(datasets, dims, strict=True)):
        frames.extend(_frames_of(index, ds, n_frames))
    ordered, by_position = _sort_frames(frames, paths)

    rows, cols = next(iter(sizes))
    chosen = list(range(len(ordered))) if select is None else sorted({int(i) for i in select(len(ordered))})
    if any(not 0 <= i < len(ordered) for i in chosen):
        raise ValueError(f"select chose slices outside 0..{len(ordered) - 1}: {chosen}")
    out = np.empty((len(chosen), rows, cols), dtype=np.float32)
    slot = {(ordered[i].file_index, ordered[i].frame_index): k for k, i in enumerate(chosen)}
    by_file: dict[int, list[_Frame]] = {}
    for i in chosen:
        by_file.setdefault(ordered[i].file_index, []).append(ordered[i])
    # files decoded whole are read whole: ask for them all now, so the disk reads the next ones
    # while this one is decoded (a frame-by-frame decode reads only its frames: no advice)
    will_read(paths[i] for i in by_file if _decodes_whole_file(datasets[i], dims[i][2], len(by_file[i])))
    for file_index in sorted(by_file):
        file_frames = by_file[file_index]
        path, ds = paths[file_index], datasets[file_index]
        pixels = _decode_frames(path, ds, rows, cols, dims[file_index][2], [f.frame_index for f in file_frames])
        for frame in file_frames:
            target = out[slot[(file_index, frame.frame_index)]]
            raw = pixels[frame.frame_index]
            looked_up = _modality_lut(ds, raw)
            if looked_up is not None:
                target[...] = looked_up
            else:
                np.multiply(raw, frame.slope, out=target, casting="unsafe")
                target += np.float32(frame.intercept)
        del pixels
    out.setflags(write=False)

    file_order: list[int] = []
    for frame in ordered:
        if frame.file_index not in file_order:
            file_order.append(frame.file_index)
    new_index = {old: new for new, old in enumerate(file_order)}
    positions = tuple(float(f.position) for f in ordered if f.position is not None) if by_position else None
    first = datasets[file_order[0]]
    pixel_spacing = next(
        (_positive_pair(g.pixel_spacing) for g in frame_geometry(first) if _positive_pair(g.pixel_spacing)), None
    )
    frames_of_reference = {str(header_get(ds, "FrameOfReferenceUID", "") or "") for ds in datasets}
    shared_for = frames_of_reference.pop() if len(frames_of_reference) == 1 else ""
    modality = str(first.get("Modality", "") or "").strip() or None
    return SeriesVolume(
        array=out,
        spacing_mm=(
            _slice_spacing(positions, first),
            pixel_spacing[0] if pixel_spacing else None,
            pixel_spacing[1] if pixel_spacing else None,
        ),
        positions_mm=positions,
        photometric=photometrics.pop(),
        modality=modality,
        datasets=tuple(datasets[i] for i in file_order),
        frame_of_reference=shared_for or None,
        slice_sources=tuple((new_index[f.file_index], f.frame_index) for f in ordered),
        slice_indices=tuple(chosen),
    )


def _stored_range(ds: Dataset, path: Path) -> tuple[int, int]:
    bits = _header_int(ds, "BitsStored", path, default=_header_int(ds, "BitsAllocated", path, default=16))
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def stored_value_range(image: PlanarImage) -> tuple[float, float]:
    """The smallest and largest value the image's header allows, rescaled, in its array's convention.

    From BitsStored (else BitsAllocated) and PixelRepresentation: [0, 2^bits - 1] unsigned or
    [-2^(bits-1), 2^(bits-1) - 1] signed, times RescaleSlope plus RescaleIntercept. Inverting a
    MONOCHROME1 image maps this range onto itself, so it holds for ``image.array`` either way.
    A detector that saturates writes one of these two values.
    """
    ds = image.dataset
    lo, hi = _stored_range(ds, Path(str(getattr(ds, "filename", "") or "image")))
    slope, intercept = _rescale_of(ds, None)
    ends = sorted((slope * lo + intercept, slope * hi + intercept))
    return (ends[0], ends[1])


def load_image(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, header: HeaderRead | None = None) -> PlanarImage:
    """Decode one single-frame radiograph (DR/CR/DX/MG...) as a 2-D float32 array.

    value = RescaleSlope x stored + RescaleIntercept (1 and 0 when absent). A MONOCHROME1 image
    (low values bright) is inverted into the MONOCHROME2 convention over the range its header
    allows, not over the values it happens to hold: value' = (lo + hi) - value, with lo and hi the
    rescaled smallest and largest stored values of BitsStored (and PixelRepresentation). The
    result keeps the original ``photometric`` and says ``inverted``.

    ``header``: the file's header read before (see :func:`load_series`'s ``headers``).

    Raises DegenerateInputError as :func:`load_series` does, and for multi-frame objects.
    """
    path = Path(path)
    volume = load_series([path], max_bytes=max_bytes, headers=None if header is None else [header])
    if volume.array.shape[0] != 1:
        raise DegenerateInputError(
            f"{path.name}: {volume.array.shape[0]} frames; load_image reads single-frame images, "
            "use load_series for multi-frame objects"
        )
    ds = volume.datasets[0]
    array = np.array(volume.array[0], dtype=np.float32)
    photometric = volume.photometric
    inverted = photometric == "MONOCHROME1"
    if inverted:
        lo, hi = _stored_range(ds, path)
        slope, intercept = _rescale_of(ds, None)
        ends = sorted((slope * lo + intercept, slope * hi + intercept))
        array = np.float32(ends[0] + ends[1]) - array
    array.setflags(write=False)
    spacing = _positive_pair(as_floats(ds.get("PixelSpacing"), count=2)) or _positive_pair(
        as_floats(ds.get("ImagerPixelSpacing"), count=2)
    )
    return PlanarImage(
        array=array,
        spacing_mm=spacing,
        photometric=photometric,
        inverted=inverted,
        modality=volume.modality,
        dataset=ds,
    )
