"""Reading DICOM headers safely: never the pixel data, never trusting the header's sizes.

``read_header`` reads a file up to (not including) its Pixel Data element and then checks, from
the element's own length field and the file size, that the pixel data is all there — without
decoding or allocating it, so a header that lies about its size costs nothing.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.hooks import hooks, raw_element_value
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import PersonName

from qc_pipeline.io.geometry import header_get

logger = logging.getLogger(__name__)

PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
_EXPLICIT_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR"}
_NON_IMAGE_MODALITIES = {"SR", "PR", "KO", "RTPLAN", "RTSTRUCT", "RTRECORD", "DOC", "ECG", "REG", "FID"}

# Our checks validate the values that matter and report them as findings; pydicom's own
# warnings about odd values would only flood the logs of an unattended service.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

# Converting an element's bytes to a value (DS/IS parsing, string decoding, splitting on "\\") is
# most of the cost of reading a header, and the files of one series repeat nearly every element
# byte for byte (orientation, spacing, names, dates, UIDs of the study). The converted values of
# short, non-sequence elements are therefore kept by their encoded bytes and reused. Only values
# that cannot be changed in place are shared; a multi-valued element gets a fresh list each time.
# Conversion errors are not kept: they are raised again for every file, as before.
_VALUE_CACHE_MAX_ENTRIES = 16384
_VALUE_CACHE_MAX_BYTES = 256
_SHAREABLE = (str, int, float, bytes, PersonName)
_value_cache: dict[tuple[object, ...], tuple[str, object, bool]] = {}


def _cached_raw_element_value(
    raw: Any, data: dict[str, Any], *, encoding: Any = None, ds: Any = None, **kwargs: Any
) -> None:
    """pydicom's ``raw_element_value`` hook with the memo described above."""
    value_bytes = raw.value
    vr_in = data.get("VR")
    if vr_in == "SQ" or not isinstance(value_bytes, bytes) or len(value_bytes) > _VALUE_CACHE_MAX_BYTES:
        raw_element_value(raw, data, encoding=encoding, ds=ds, **kwargs)
        return
    key = (
        raw.tag,
        vr_in,
        value_bytes,
        raw.is_little_endian,
        raw.is_implicit_VR,
        encoding if encoding is None or isinstance(encoding, str) else tuple(encoding),
    )
    hit = _value_cache.get(key)
    if hit is not None:
        vr_out, value, multi = hit
        data["VR"] = vr_out
        if multi:
            cached = cast("MultiValue[Any]", value)  # a MultiValue kept as a template: copy its items into a new list
            fresh = MultiValue.__new__(MultiValue)
            fresh._constructor = cached._constructor
            fresh._list = list(cached._list)
            data["value"] = fresh
        else:
            data["value"] = value
        return
    raw_element_value(raw, data, encoding=encoding, ds=ds, **kwargs)
    value = data.get("value")
    if value is None or isinstance(value, _SHAREABLE):
        multi = False
    elif type(value) is MultiValue and all(isinstance(item, _SHAREABLE) for item in value):
        multi = True
        template = MultiValue.__new__(MultiValue)
        template._constructor = value._constructor
        template._list = list(value._list)
        value = template
    else:
        return
    if len(_value_cache) >= _VALUE_CACHE_MAX_ENTRIES:
        _value_cache.clear()
    _value_cache[key] = (data["VR"], value, multi)


hooks.register_callback("raw_element_value", _cached_raw_element_value)


@dataclass(frozen=True, slots=True)
class PixelDataCheck:
    """What the file holds of its pixel data, against what the header needs."""

    present: bool
    encapsulated: bool = False
    declared_bytes: int | None = None
    expected_bytes: int | None = None
    available_bytes: int | None = None

    @property
    def truncated(self) -> bool:
        """True when the file ends before the pixel data does, or holds less than the image needs."""
        if not self.present:
            return False
        if self.encapsulated:
            return self.available_bytes is not None and self.available_bytes < 0
        declared = self.declared_bytes or 0
        available = self.available_bytes if self.available_bytes is not None else declared
        needed = self.expected_bytes if self.expected_bytes is not None else declared
        return available < declared or declared < needed

    def describe(self) -> str:
        if self.encapsulated:
            return "encapsulated pixel data is cut: a fragment runs past the end of the file"
        return (
            f"pixel data needs {self.expected_bytes} bytes (Rows x Columns x Samples x Frames x "
            f"BitsAllocated/8), the element declares {self.declared_bytes}, the file holds "
            f"{self.available_bytes}"
        )


@dataclass(frozen=True, slots=True)
class HeaderRead:
    """The outcome of reading one file: a dataset without pixels, or why there is none."""

    path: Path
    size_bytes: int
    dataset: Dataset | None = None
    error: str | None = None
    pixel_data: PixelDataCheck | None = None


def _bytes_needed(ds: Dataset) -> int | None:
    try:
        rows = int(header_get(ds, "Rows"))
        cols = int(header_get(ds, "Columns"))
        bits = int(header_get(ds, "BitsAllocated"))
        samples = int(header_get(ds, "SamplesPerPixel") or 1)
        frames = int(header_get(ds, "NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    return (rows * cols * samples * frames * bits + 7) // 8


def _check_pixel_data(fp: BinaryIO, ds: Dataset, file_size: int) -> PixelDataCheck:
    """Read the Pixel Data element's header at the current position and compare sizes."""
    syntax = getattr(getattr(ds, "file_meta", None), "get", lambda _k: None)("TransferSyntaxUID")
    if syntax == DeflatedExplicitVRLittleEndian:
        # The file position is in the compressed stream: sizes cannot be checked without
        # inflating, which the decoder will do (and report) when pixels are needed.
        return PixelDataCheck(present=True)
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return PixelDataCheck(present=False)
    big_endian = not ds.is_little_endian if ds.is_little_endian is not None else False
    endian = ">" if big_endian else "<"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group << 16 | element) != PIXEL_DATA_TAG:
        return PixelDataCheck(present=False)
    implicit = ds.is_implicit_VR if ds.is_implicit_VR is not None else False
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        value_offset = start + 8
    elif head[4:6] in _EXPLICIT_LONG_VRS:
        if len(head) < 12:
            return PixelDataCheck(present=True, declared_bytes=None, available_bytes=-1)
        (length,) = struct.unpack(endian + "I", head[8:12])
        value_offset = start + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_offset = start + 8
    if length == UNDEFINED_LENGTH:
        complete = _encapsulated_items_complete(fp, value_offset, file_size, endian)
        return PixelDataCheck(
            present=True,
            encapsulated=True,
            available_bytes=file_size - value_offset if complete else -1,
        )
    return PixelDataCheck(
        present=True,
        declared_bytes=length,
        expected_bytes=_bytes_needed(ds),
        available_bytes=file_size - value_offset,
    )


def _encapsulated_items_complete(fp: BinaryIO, offset: int, file_size: int, endian: str) -> bool:
    """Walk the items of encapsulated pixel data by their length fields (no data is read).

    False when an item claims more bytes than the file holds or an item tag is garbled; True when
    the sequence delimiter is reached, or the file ends cleanly after a whole item (some writers
    omit the delimiter; decoders accept that).
    """
    position = offset
    while position + 8 <= file_size:
        fp.seek(position)
        head = fp.read(8)
        group, element, length = struct.unpack(endian + "HHI", head)
        if (group, element) == (0xFFFE, 0xE0DD):
            return True
        if (group, element) != (0xFFFE, 0xE000) or length == UNDEFINED_LENGTH:
            return False
        position += 8 + length
        if position > file_size:
            return False
    return position == file_size


def _looks_like_dicom(ds: Dataset) -> bool:
    """A forced read of arbitrary bytes yields a dataset too; a real one has its key UIDs."""
    return any(
        isinstance(ds.get(keyword), str) and valid_uid(ds.get(keyword))
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SOPClassUID")
    )


def valid_uid(value: str) -> bool:
    """Whether ``value`` is a valid UID (PS3.5 §9.1: digits and dots, at most 64 characters)."""
    return 0 < len(value) <= 64 and UID(value).is_valid


_BOUND_CHECK_FROM_BYTES = 1 << 16


class BoundedReader(io.BufferedReader):
    """A file reader that never asks for more bytes than the file has left.

    pydicom reads an element's value with ``fp.read(length)`` using the length field of the file;
    CPython allocates a buffer of the requested size before reading, so a garbage length of
    3 GB in a 4 KB file allocated 3 GB (found by the bad-input corpus).
    """

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        super().__init__(raw)
        self._size = size

    def read(self, size: int | None = -1, /) -> bytes:
        # Small reads (tags, lengths, short values: nearly all of a header) cannot allocate much;
        # only a length large enough to matter is checked against what the file has left.
        if size is not None and size > _BOUND_CHECK_FROM_BYTES:
            size = min(size, max(self._size - self.tell(), 0))
            if size == 0:
                return b""
        return super().read(size)


def open_bounded(path: Path) -> BoundedReader:
    """``path`` opened for reading through a ``BoundedReader``."""
    raw = io.FileIO(path, "rb")
    try:
        return BoundedReader(raw, os.fstat(raw.fileno()).st_size)
    except BaseException:
        raw.close()
        raise


def read_header(path: Path) -> HeaderRead:
    """Read ``path``'s header (everything before Pixel Data) without modifying the file.

    Files without the 128-byte preamble and ``DICM`` prefix are read as raw datasets when they
    carry DICOM UIDs. Any problem becomes ``error`` (a sentence), never an exception.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        return HeaderRead(path=path, size_bytes=0, error=f"cannot stat file: {exc.strerror}")
    if size == 0:
        return HeaderRead(path=path, size_bytes=0, error="empty file (0 bytes)")
    try:
        with open_bounded(path) as fp:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                # No preamble/DICM prefix: older writers omit it; accept the raw dataset only
                # when it parses and carries DICOM UIDs.
                fp.seek(0)
                try:
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                    readable = _looks_like_dicom(ds)
                except Exception:
                    readable = False
                if not readable:
                    return HeaderRead(
                        path=path, size_bytes=size, error="not a DICOM file (no DICM prefix and no DICOM UIDs)"
                    )
            for _ in ds:  # convert every raw element now, so a bad value surfaces here
                pass
            pixel = _check_pixel_data(fp, ds, size)
    except OSError as exc:
        return HeaderRead(path=path, size_bytes=size, error=f"cannot read file: {exc.strerror or exc}")
    except Exception as exc:  # pydicom raises many types on malformed input
        logger.debug("unreadable DICOM %s", path, exc_info=True)
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return HeaderRead(path=path, size_bytes=size, error=f"DICOM header cannot be parsed: {reason}")
    return HeaderRead(path=path, size_bytes=size, dataset=ds, pixel_data=pixel)


def sop_class_name(sop_class_uid: str | None) -> str:
    if not sop_class_uid:
        return "unknown SOP class"
    name = UID(sop_class_uid).name
    return name if name != sop_class_uid else f"SOP class {sop_class_uid}"


def is_image(ds: Dataset, pixel: PixelDataCheck | None) -> bool:
    """Whether an object is an image to check (CT, MR, CR/DX, ...) rather than SR/PR/KO/RT...

    Decided by the SOP class name when pydicom knows it ("... Image Storage"), else by the
    presence of pixel data or of Rows/Columns.
    """
    name = sop_class_name(ds.get("SOPClassUID"))
    if "Image Storage" in name:
        return True
    if name.endswith("Storage") or str(ds.get("Modality", "")).upper() in _NON_IMAGE_MODALITIES:
        return False
    return bool(pixel and pixel.present) or ("Rows" in ds and "Columns" in ds)


def text(ds: Dataset, keyword: str) -> str | None:
    """A header value as stripped text; None when absent or empty."""
    value = header_get(ds, keyword)
    if value is None:
        return None
    result = str(value).strip().strip("\x00").strip()
    return result or None


_STUDY_KEY_TAGS: dict[int, tuple[str, bytes]] = {
    0x0020000D: ("StudyInstanceUID", b"UI"),
    0x00100020: ("PatientID", b"LO"),
    0x00080020: ("StudyDate", b"DA"),
}
_SPECIFIC_CHARACTER_SET = 0x00080005
_FIRST_PIXEL_TAG = 0x7FE00008  # Float Pixel Data; Double Float and Pixel Data follow
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, PIXEL_DATA_TAG})
_PREAMBLE_END = 132


def _walkable_syntax(syntax: str) -> bool | None:
    """For a transfer syntax: True when its dataset is implicit VR little endian, False when explicit
    VR little endian and not deflated, None for any other (big endian, deflated, unknown)."""
    uid = UID(syntax)
    if not uid.is_transfer_syntax or uid.is_deflated or not uid.is_little_endian:
        return None
    return bool(uid.is_implicit_VR)


def _element_at(head: bytes, position: int, *, implicit: bool) -> tuple[int, bytes | None, int, int] | None:
    """The little-endian element whose header starts at ``position``: (tag as one number, VR or
    None when implicit, where its value starts, its length). None where the element does not lie
    within ``head`` whole, has an undefined length, or its VR is not two capital letters."""
    if position + 8 > len(head):
        return None
    group, element = struct.unpack_from("<HH", head, position)
    tag = group << 16 | element
    vr: bytes | None = None
    if implicit:
        (length,) = struct.unpack_from("<I", head, position + 4)
        start = position + 8
    else:
        vr = head[position + 4 : position + 6]
        if not (vr.isalpha() and vr.isupper()):
            return None  # not explicit VR after all: pydicom knows how to guess
        if vr in _EXPLICIT_LONG_VRS:
            if position + 12 > len(head):
                return None
            (length,) = struct.unpack_from("<I", head, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", head, position + 6)
            start = position + 8
    if length == UNDEFINED_LENGTH or start + length > len(head):
        return None
    return tag, vr, start, length


def study_keys_from_head(head: bytes) -> dict[str, str | None] | None:
    """StudyInstanceUID, PatientID and StudyDate read from the first bytes of a Part 10 file, as
    ``pydicom.dcmread(..., stop_before_pixels=True, specific_tags=[...])`` reads them, without it.

    Discovery reads these three values from every file of a folder; pydicom builds a whole file
    dataset for them (a third of a millisecond a file, as long as the rest of discovery). This walks
    the top-level elements of ``head`` by their lengths and decodes the three values where that is
    plain: a file with the ``DICM`` prefix, a little-endian transfer syntax that is not deflated,
    no element of undefined length before the pixel data, values in ASCII, each one value. A value
    is text stripped of trailing nulls and spaces, as pydicom gives it. Anything else, or a header
    that does not end within ``head``: None, and the caller asks pydicom.
    """
    if len(head) < _PREAMBLE_END + 8 or head[128:_PREAMBLE_END] != b"DICM":
        return None
    position = _PREAMBLE_END
    syntax: str | None = None
    while position + 8 <= len(head):  # the file meta group: explicit VR little endian
        if struct.unpack_from("<H", head, position)[0] != 0x0002:
            break  # the dataset starts, in the transfer syntax the meta group names
        found = _element_at(head, position, implicit=False)
        if found is None:
            return None
        tag, _vr, start, length = found
        if tag == 0x00020010:
            syntax = head[start : start + length].decode("ascii", "replace").rstrip("\0 ")
        position = start + length
    if syntax is None:
        return None
    implicit = _walkable_syntax(syntax)
    if implicit is None:
        return None
    raw: dict[str, bytes] = {}
    while True:
        if position + 4 > len(head):
            return None  # the header goes on past what was read
        group, element = struct.unpack_from("<HH", head, position)
        if group << 16 | element >= _FIRST_PIXEL_TAG:  # the pixel data, of any length: the header ends
            if group << 16 | element not in _PIXEL_TAGS:
                return None  # a tag out of order, or garbage: pydicom decides what it is
            break
        found = _element_at(head, position, implicit=implicit)
        if found is None:
            return None  # the header goes on past what was read, or is not plain to walk
        tag, element_vr, start, length = found
        wanted = _STUDY_KEY_TAGS.get(tag)
        if wanted is not None:
            keyword, expected_vr = wanted
            if element_vr is not None and element_vr != expected_vr:
                return None
            raw[keyword] = head[start : start + length]
        elif tag == _SPECIFIC_CHARACTER_SET and length:
            charset = head[start : start + length]
            if charset.strip(b"\0 ") not in (b"", b"ISO_IR 6", b"ISO_IR 100", b"ISO_IR 192", b"GB18030", b"GBK"):
                return None  # an encoding with escape sequences: not plain ASCII text
        position = start + length
    keys: dict[str, str | None] = {}
    for keyword, _vr in _STUDY_KEY_TAGS.values():
        value = raw.get(keyword)
        if value is None:
            keys[keyword] = None
            continue
        if not value.isascii() or b"\\" in value:
            return None
        keys[keyword] = value.decode("ascii").rstrip("\0 ")
    return keys
