"""Build the MR conformance set: one header per series (two for multi-volume series), tiny pixels.

Reads the public test repositories listed in ``SELECTION`` from local git mirrors (no work tree
needed: ``git cat-file``), keeps every header element except large blobs, replaces the pixel data
with a 4x4 array of the same type, and writes ``<series>_<k>.dcm`` plus ``sources.csv`` (source
repository, commit, path, licence of each file). The expected answers are hand-written in
``manifest.csv``; this script does not touch them.

    python -m tests.data.mr_conformance.make_set --mirror /work/.mirror

Mirror layout: ``<mirror>/<owner>+<name>/repo`` (a bare clone).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

HERE = Path(__file__).parent
LICENCES = {
    "icometrix/dicom2nifti": "MIT (LICENSE, Copyright (c) 2016 icometrix NV)",
}
DEFAULT_LICENCE = "BSD-2-Clause (LICENSE of the repository, Chris Rorden et al.)"
MAX_ELEMENT_BYTES = 2048
"""Larger private elements (Siemens CSA, Philips private sequences, GE protocol blocks) are dropped."""
KEEP_PRIVATE = {0x0019100C, 0x0019100D, 0x0019100E, 0x00431039, 0x20011003, 0x20011004, 0x00431030}
MR_IMAGE_STORAGE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
    }
)
MAX_FRAMES = 12
"""Enhanced objects keep at most this many frames, spread over the object and always the frame
with the largest b-value (their per-frame groups are what identification reads)."""


@dataclass(frozen=True)
class Pick:
    series: str
    vendor: str
    repo: str
    folder: str
    """A folder (every MR image in it of the first series found), a file name prefix, or
    ``archive.zip!prefix`` for members of a zip archive in the repository."""
    multi: bool = False
    """Also keep one image of another volume (largest b-value, else the last instance)."""
    description: str | None = None
    """Take the series with this SeriesDescription (folders holding several series)."""


SELECTION: tuple[Pick, ...] = (
    # GE
    Pick("ge_dwi_tensor_r2", "GE", "neurolabusc/dcm_qa_ge", "In/01_Ax_DWI_TENSOR_R2", True),
    Pick("ge_dwi_tensor_mb2", "GE", "neurolabusc/dcm_qa_ge", "In/04_Ax_DWI_TENSOR_R2MB2", True),
    Pick("ge_mprage", "GE", "neurolabusc/dcm_qa_ge", "In/05_3D_Ax_T1_MP_RAGE_R22"),
    Pick("ge_fmri_hb8", "GE", "neurolabusc/dcm_qa_ge", "In/SliceTiming/2_Ax_fMRI_HB8_72sl_int_asc", True),
    Pick("ge_fmri_hb3", "GE", "neurolabusc/dcm_qa_ge", "In/SliceTiming/14_Ax_fMRI_HB3_48sl_int_asc", True),
    Pick("ge_fmri_multiphase", "GE", "neurolabusc/dcm_qa_ge", "In/SliceTimingMPh/2_fMRI_Multiphase_Des", True),
    Pick("ge_epirt", "GE", "neurolabusc/dcm_qa_ge", "In/SliceTimingRT/2_epiRT_IntAsc_GD3s", True),
    Pick("ge_epirt_te15", "GE", "neurolabusc/dcm_qa_ge", "In/SliceTimingRT/7_epiRT_IntDesHB3_GD55", True),
    Pick("ge_nih_fmri", "GE", "neurolabusc/dcm_qa_nih", "In/20180918GE/mr_0004", True),
    Pick("ge_b0map_7t", "GE", "neurolabusc/dcm_qa_fmap", "In/GE/2_3db0maps"),
    Pick("ge_3db0map", "GE", "neurolabusc/dcm_qa_fmap", "In/GE/3_3db0maps"),
    Pick("ge_b0map_3t", "GE", "neurolabusc/dcm_qa_fmap", "In/GE/6_CV_Neuro"),
    Pick("ge_d2n_bravo", "GE", "icometrix/dicom2nifti", "tests/data/ge/anatomical/001"),
    Pick("ge_d2n_dti", "GE", "icometrix/dicom2nifti", "tests/data/ge/dti/001", True),
    Pick("ge_d2n_dti2", "GE", "icometrix/dicom2nifti", "tests/data/ge/dti/002", True),
    Pick("ge_d2n_fmri", "GE", "icometrix/dicom2nifti", "tests/data/ge/fmri/001", True),
    Pick("ge_polar_fmap", "GE", "neurolabusc/dcm_qa_polar", "In/6_FM_cv12_2_3mm", True),
    Pick("ge_ir_spgr", "GE", "neurolabusc/dcm_qa_deident", "In/"),
    # Philips
    Pick("ph_dti_bangalore", "Philips", "neurolabusc/dcm_qa_philips", "In/Bangalore_2008/dwi_no-phi", True),
    Pick("ph_fmri_magdeburg", "Philips", "neurolabusc/dcm_qa_philips", "In/Magdeburg_2014/fmri", True),
    Pick("ph_dti_vanderbilt", "Philips", "neurolabusc/dcm_qa_philips", "In/Vanderbilt_2018/601_WIP_dti_ax", True),
    Pick("ph_mprage", "Philips", "neurolabusc/dcm_qa_philips_enh", "In/cl/1301_"),
    Pick("ph_pcasl", "Philips", "neurolabusc/dcm_qa_philips_enh", "In/cl/1901_", True),
    Pick("ph_pcasl_source", "Philips", "neurolabusc/dcm_qa_philips_enh", "In/cl/1903_", True),
    Pick("ph_fcmri_fieldmap", "Philips", "neurolabusc/dcm_qa_philips_enh", "In/cl/2001_"),
    Pick("ph_fcmri", "Philips", "neurolabusc/dcm_qa_philips_enh", "In/cl/2101_", True),
    Pick("ph_dti_mb2", "Philips", "neurolabusc/dcm_qa_philips_enh", "In/cl/2201_", True),
    Pick("ph_b0map_enh", "Philips", "neurolabusc/dcm_qa_fmap", "In/Philips/fmap/IM_0027_fMAP.dcm"),
    Pick("ph_d2n_flair3d", "Philips", "icometrix/dicom2nifti", "tests/data/philips/anatomical/001"),
    Pick("ph_d2n_swip", "Philips", "icometrix/dicom2nifti", "tests/data/philips/anatomical/002"),
    Pick("ph_d2n_dti", "Philips", "icometrix/dicom2nifti", "tests/data/philips/dti/001", True),
    Pick("ph_d2n_dti2", "Philips", "icometrix/dicom2nifti", "tests/data/philips/dti/002", True),
    Pick("ph_d2n_fmri", "Philips", "icometrix/dicom2nifti", "tests/data/philips/fmri/001", True),
    Pick("ph_d2n_enh_t1", "Philips", "icometrix/dicom2nifti", "tests/data/philips_enhanced/anatomical/001"),
    Pick("ph_d2n_enh_dti", "Philips", "icometrix/dicom2nifti", "tests/data/philips_enhanced/dti/001"),
    Pick("ph_d2n_enh_fmri", "Philips", "icometrix/dicom2nifti", "tests/data/philips_enhanced/fmri/001"),
    Pick("ph_t1_tse_enh", "Philips", "neurolabusc/dcm_qa_cs_dl", "In/Philips.zip!Philips/201_T1W_TSE_Sno_CSno_CSAIno/"),
    Pick("ph_t1_ffe_enh", "Philips", "neurolabusc/dcm_qa_cs_dl", "In/Philips.zip!Philips/401_T1W_FFE_Sno_CS2/"),
    Pick("ph_t1_ffe", "Philips", "neurolabusc/dcm_qa_cs_dl", "In/Philips.zip!Philips/501_T1W_FFE_Sno_CS4/"),
    # Siemens VB/VE (classic)
    Pick("si_vb_ax_epi", "Siemens", "neurolabusc/dcm_qa", "In/Orientation/ax/axasc35", True),
    Pick("si_vb_cor_epi", "Siemens", "neurolabusc/dcm_qa", "In/Orientation/cor/corasc35", True),
    Pick("si_vb_sag_epi", "Siemens", "neurolabusc/dcm_qa", "In/Orientation/sag/sagasc35", True),
    Pick("si_ve_fmri_mb", "Siemens", "neurolabusc/dcm_qa", "In/Orientation/axmb/AxInt36mb", True),
    Pick("si_ve_fmap_mag", "Siemens", "neurolabusc/dcm_qa_fmap", "In/Siemens/5_gre_field_mag"),
    Pick("si_ve_fmap_phase", "Siemens", "neurolabusc/dcm_qa_fmap", "In/Siemens/4_gre_field_ph"),
    Pick("si_nih_se_epi", "Siemens", "neurolabusc/dcm_qa_nih", "In/20180918Si/mr_0003", True),
    Pick("si_sag_fmri", "Siemens", "neurolabusc/dcm_qa_sag", "In/2_fmri_SagAP", True),
    Pick("si_sag_fmap", "Siemens", "neurolabusc/dcm_qa_sag", "In/2_gre_field_mapping"),
    Pick("si_sag_dwi_mosaic", "Siemens", "neurolabusc/dcm_qa_sag", "In/4_DWI_SagAPmosaic", True),
    Pick("si_d2n_flair3d", "Siemens", "icometrix/dicom2nifti", "tests/data/siemens/anatomical/001"),
    Pick("si_d2n_dti", "Siemens", "icometrix/dicom2nifti", "tests/data/siemens/dti/001", True),
    Pick("si_d2n_fmri", "Siemens", "icometrix/dicom2nifti", "tests/data/siemens/fmri/001", True),
    Pick("si_d2n_multiframe", "Siemens", "icometrix/dicom2nifti", "tests/data/siemens_multiframe/anatomical/001"),
    # Siemens XA (enhanced and classic)
    Pick("xa30_dwi", "Siemens", "neurolabusc/dcm_qa_xa30", "In/10_DWI_dir80_PA", True),
    Pick("xa30_adc", "Siemens", "neurolabusc/dcm_qa_xa30", "In/11_DWI_dir80_PA"),
    Pick("xa30_tracew", "Siemens", "neurolabusc/dcm_qa_xa30", "In/12_DWI_dir80_PA"),
    Pick("xa30_fa", "Siemens", "neurolabusc/dcm_qa_xa30", "In/13_DWI_dir80_PA"),
    Pick("xa30_colfa", "Siemens", "neurolabusc/dcm_qa_xa30", "In/14_DWI_dir80_PA"),
    Pick("xa30_tensor_b0", "Siemens", "neurolabusc/dcm_qa_xa30", "In/16_DWI_dir80_PA"),
    Pick("xa30_asl", "Siemens", "neurolabusc/dcm_qa_xa30", "In/25_asl_2d_tra", True),
    Pick("xa30_asl_pwi", "Siemens", "neurolabusc/dcm_qa_xa30", "In/27_asl_2d_tra"),
    Pick("xa30_asl_rcbf", "Siemens", "neurolabusc/dcm_qa_xa30", "In/28_asl_2d_tra"),
    Pick("xa30_t1_tfl", "Siemens", "neurolabusc/dcm_qa_xa30", "In/5_anat-T1w_acq-tfl"),
    Pick("xa30_bold", "Siemens", "neurolabusc/dcm_qa_xa30", "In/7_func-bold_task-fa_run-1", True),
    Pick("xa30_fmap_mag", "Siemens", "neurolabusc/dcm_qa_xa30", "In/8_gre_field_mapping"),
    Pick("xa30_fmap_phase", "Siemens", "neurolabusc/dcm_qa_xa30", "In/9_gre_field_mapping"),
    Pick(
        "xa30_classic_epi", "Siemens", "neurolabusc/dcm_qa_sag", "In/XA30/classic/5001_Product_EPI_Sag_Ascending", True
    ),
    Pick("xa30_enh_epi", "Siemens", "neurolabusc/dcm_qa_sag", "In/XA30/enhanced/5_Product_EPI_Sag_Ascending", True),
    Pick("xa10_enh_rest", "Siemens", "neurolabusc/dcm_qa_enh", "In/Siemens/XA10", True),
    Pick(
        "xa60_bold_7t",
        "Siemens",
        "neurolabusc/dcm_qa_xa60",
        "In/XA60/DICOM/24100413/39280000/",
        True,
        "PRODUCT__ep2d_bold__p3_sms1",
    ),
    Pick(
        "xa60_cmrr_bold_7t",
        "Siemens",
        "neurolabusc/dcm_qa_xa60",
        "In/XA60/DICOM/24100413/39280000/",
        True,
        "C2P__cmrr_mbep2d_bold__p3_mb2",
    ),
    Pick(
        "xa60_dwi_7t",
        "Siemens",
        "neurolabusc/dcm_qa_xa60",
        "In/XA60/DICOM/24100413/39280000/",
        True,
        "PRODUCT__ep2d_diff__p3_sms1",
    ),
    Pick(
        "xa61_tracew",
        "Siemens",
        "neurolabusc/dcm_qa_xa60",
        "In/XA61/DICOM/24100310/14440000/",
        False,
        "PRODUCT__ep2d_diff__p2_sms1_TRACEW",
    ),
    Pick(
        "xa61_cmrr_dwi",
        "Siemens",
        "neurolabusc/dcm_qa_xa60",
        "In/XA61/DICOM/24100310/14440000/",
        True,
        "C2P__cmrr_mbep2d_diff__p2_mb1",
    ),
    # United Imaging
    Pick(
        "uih_dti_pa",
        "United Imaging",
        "neurolabusc/dcm_qa_uih",
        "In/DTI_134434/dti_tra_dir16_PA_SaveBySlc__135612",
        True,
    ),
    Pick(
        "uih_dti_ap",
        "United Imaging",
        "neurolabusc/dcm_qa_uih",
        "In/DTI_134434/dti_tra_dir16_AP_SaveBySlc__140028",
        True,
    ),
    Pick("uih_t1_gre", "United Imaging", "neurolabusc/dcm_qa_uih", "In/DTI_134434/t1_gre_fsp_3d_sag__134917"),
    # Canon / Toshiba
    Pick("canon_dti_ax", "Canon/Toshiba", "neurolabusc/dcm_qa_canon_61", "In/cl/6000_", True),
    Pick("canon_dti_sag", "Canon/Toshiba", "neurolabusc/dcm_qa_canon_61", "In/cl/5000_", True),
    Pick("canon_dti_cor", "Canon/Toshiba", "neurolabusc/dcm_qa_canon_61", "In/cl/7000_", True),
    Pick("toshiba_dti_ax", "Canon/Toshiba", "neurolabusc/dcm_qa_toshiba", "In/Galan/8006_DTI_AX_30d", True),
    Pick("toshiba_dti_sag", "Canon/Toshiba", "neurolabusc/dcm_qa_toshiba", "In/Galan/6006_DTI_SAG_30d", True),
    # Hitachi, Hyperfine
    Pick("hitachi_se", "Hitachi", "icometrix/dicom2nifti", "tests/data/hitachi/anatomical/001"),
    Pick("hyperfine_flair", "Hyperfine", "icometrix/dicom2nifti", "tests/data/hyperfine/anatomical/001"),
)


class Mirror:
    def __init__(self, root: Path, repo: str) -> None:
        self.git = root / repo.replace("/", "+") / "repo"
        self.commit = self._run("rev-parse", "HEAD").strip()
        self._tree = [line.split("\t", 1) for line in self._run("ls-tree", "-r", "HEAD").splitlines()]

    def _run(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.git), *args], capture_output=True, text=True, check=True).stdout

    def paths(self, prefix: str) -> list[str]:
        if "!" in prefix:
            archive, inner = prefix.split("!", 1)
            data = self.read(archive)
            if data is None:
                return []
            with zipfile.ZipFile(io.BytesIO(data)) as members:
                return [
                    f"{archive}!{name}"
                    for name in members.namelist()
                    if name.startswith(inner) and not name.endswith("/")
                ]
        return [
            path
            for meta, path in self._tree
            if meta.split()[1] == "blob" and (path == prefix or path.startswith(prefix))
        ]

    def read(self, path: str) -> bytes | None:
        if "!" in path:
            archive, member = path.split("!", 1)
            data = self.read(archive)
            if data is None:
                return None
            with zipfile.ZipFile(io.BytesIO(data)) as members:
                return members.read(member)
        out = subprocess.run(["git", "-C", str(self.git), "cat-file", "blob", f"HEAD:{path}"], capture_output=True)
        if out.returncode != 0:
            return None  # a large file absent from the snapshot
        data = out.stdout
        return gzip.decompress(data) if path.endswith(".gz") else data


def _dataset(data: bytes) -> Dataset | None:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:
        return None
    return ds if str(ds.get("SOPClassUID", "")) in MR_IMAGE_STORAGE else None


def _b(ds: Dataset) -> float:
    for key in ("DiffusionBValue", 0x0019100C, 0x00431039, 0x20011003):
        elem = ds.get(key)
        if elem is None:
            continue
        value = elem.value if hasattr(elem, "value") else elem
        try:
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace").split("\\")[0]
            if isinstance(value, (list, pydicom.multival.MultiValue)):
                value = value[0]
            number = float(value)
            return number % 1e9 if number >= 1e9 else number
        except (TypeError, ValueError):
            continue
    return -1.0


def _strip(ds: Dataset) -> Dataset:
    _strip_level(ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) > MAX_FRAMES:

        def frame_b(item: Dataset) -> float:
            for diff in item.get("MRDiffusionSequence", []):
                return float(diff.get("DiffusionBValue", -1) or -1)
            return -1.0

        keep = sorted(
            set(np.linspace(0, len(per_frame) - 1, MAX_FRAMES - 1).round().astype(int))
            | {max(range(len(per_frame)), key=lambda i: frame_b(per_frame[i]))}
        )
        ds.PerFrameFunctionalGroupsSequence = Sequence([per_frame[i] for i in keep])
        frames = len(keep)
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames
    if "PixelData" in ds:
        bits = int(ds.get("BitsAllocated", 16))
        samples = int(ds.get("SamplesPerPixel", 1))
        dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits]
        shape = (frames, 4, 4, samples) if samples > 1 else (frames, 4, 4)
        pixels = (np.arange(np.prod(shape)) % 16).astype(dtype).reshape(shape)
        ds.Rows = 4
        ds.Columns = 4
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
        for key in ("LargestImagePixelValue", "SmallestImagePixelValue"):
            if key in ds:
                del ds[key]
        if samples == 1:
            if not str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
                ds.PhotometricInterpretation = "MONOCHROME2"
        else:
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
    return ds


def _strip_level(ds: Dataset) -> None:
    for elem in list(ds):
        if elem.tag == 0x7FE00010:
            continue
        if elem.VR == "SQ":
            if elem.tag.is_private:
                length = sum(len(str(item)) for item in elem.value)
                if length > MAX_ELEMENT_BYTES * 4:
                    del ds[elem.tag]
                    continue
            for item in elem.value:
                _strip_level(item)
            continue
        if elem.tag in (0x7FE00008, 0x7FE00009):
            del ds[elem.tag]
            continue
        try:
            size = len(elem.value) if isinstance(elem.value, (bytes, str)) else 0
        except Exception:
            size = 0
        if elem.tag.is_private and elem.tag not in KEEP_PRIVATE and size > MAX_ELEMENT_BYTES:
            del ds[elem.tag]
        elif not elem.tag.is_private and elem.VR in ("OB", "OW", "UN") and size > MAX_ELEMENT_BYTES:
            del ds[elem.tag]


def _write(ds: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(path, enforce_file_format=True)


def build(mirror_root: Path, out: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    mirrors: dict[str, Mirror] = {}
    for pick in SELECTION:
        mirror = mirrors.setdefault(pick.repo, Mirror(mirror_root, pick.repo))
        candidates = []
        for path in mirror.paths(pick.folder):
            if path.endswith((".json", ".txt", ".nii", ".nii.gz", ".bval", ".bvec", ".md")):
                continue
            data = mirror.read(path)
            ds = _dataset(data) if data else None
            if ds is not None:
                candidates.append((path, ds))
        if not candidates:
            raise SystemExit(f"{pick.series}: no readable MR object under {pick.repo}:{pick.folder}")
        if pick.description is not None:
            candidates = [c for c in candidates if str(c[1].get("SeriesDescription", "")) == pick.description]
            if not candidates:
                raise SystemExit(f"{pick.series}: no series {pick.description!r} under {pick.repo}:{pick.folder}")
        uid = candidates[0][1].SeriesInstanceUID
        order = sorted(
            (c for c in candidates if c[1].SeriesInstanceUID == uid),
            key=lambda c: (int(c[1].get("InstanceNumber", 0) or 0), c[0]),
        )
        chosen = [order[0]]
        if pick.multi and len(order) > 1:
            first_b = _b(order[0][1])
            first_pos = [round(float(v), 1) for v in order[0][1].get("ImagePositionPatient", [])]

            def same_position(c: tuple[str, Dataset], first_pos: list[float] = first_pos) -> bool:
                return (
                    bool(first_pos) and [round(float(v), 1) for v in c[1].get("ImagePositionPatient", [])] == first_pos
                )

            # a diffusion-weighted image if there is one, else the same slice in a later volume, else the last
            other = max(
                order[1:],
                key=lambda c: (
                    _b(c[1]) != first_b,
                    _b(c[1]),
                    same_position(c),
                    int(c[1].get("InstanceNumber", 0) or 0),
                ),
            )
            chosen.append(other)
        for k, (path, ds) in enumerate(chosen, start=1):
            name = f"{pick.series}_{k}.dcm"
            _write(_strip(ds), out / name)
            rows.append(
                {
                    "file": name,
                    "series": pick.series,
                    "vendor": pick.vendor,
                    "repo": pick.repo,
                    "commit": mirror.commit,
                    "path": path,
                    "licence": LICENCES.get(pick.repo, DEFAULT_LICENCE),
                    "series_files_in_source": str(len(order)),
                }
            )
    with (out / "sources.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    for old in args.out.glob("*.dcm"):
        old.unlink()
    rows = build(args.mirror, args.out)
    size = sum((args.out / r["file"]).stat().st_size for r in rows)
    print(f"{len(rows)} files, {len({r['series'] for r in rows})} series, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
