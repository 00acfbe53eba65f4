"""Pixel data from the cloud for the image-quality metrics: fetched as stored, only when asked."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from qc_pipeline.errors import SourceError
from qc_pipeline.io.pixels import load_series
from qc_pipeline.samples.demo import write_demo_studies
from qc_pipeline.sources.dicomweb import DicomWebSource
from qc_pipeline.sources.folder import FolderSource


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    write_demo_studies(root)
    return root / "noisy_ct", root / "real_cr_chest"


def _series(study):
    series: dict[str, list] = {}
    for inst in study.images:
        series.setdefault(inst.ref.series_instance_uid, []).append(inst.ref)
    return series


def test_series_pixels_equal_the_uploaded_files(orthanc, cloud_credentials, two_studies):
    ct_folder, cr_folder = two_studies
    orthanc.clear()
    orthanc.upload(sorted(ct_folder.glob("*.dcm")) + sorted(cr_folder.glob("*.dcm")))
    cloud, local = DicomWebSource(orthanc.dicomweb), FolderSource(ct_folder.parent)
    local_entries = {e.study_instance_uid: e for e in local.discover()}
    for entry in cloud.discover():
        remote_study, local_study = cloud.load(entry), local.load(local_entries[entry.study_instance_uid])
        for uid, refs in _series(remote_study).items():
            local_refs = _series(local_study)[uid]
            with cloud.pixel_files(refs) as remote_paths, local.pixel_files(local_refs) as local_paths:
                assert len(remote_paths) == len(refs)
                # Stored transfer syntax, not transcoded; same pixels as the files uploaded.
                syntaxes = {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in remote_paths}
                assert syntaxes == {pydicom.dcmread(local_paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID}
                np.testing.assert_array_equal(load_series(remote_paths).array, load_series(local_paths).array)
                kept = remote_paths
            assert not any(p.exists() for p in kept), "temporary pixel files must be removed"


def test_missing_instance_is_a_source_error(orthanc, cloud_credentials, two_studies):
    ct_folder, _ = two_studies
    orthanc.clear()
    orthanc.upload(sorted(ct_folder.glob("*.dcm"))[:3])
    cloud = DicomWebSource(orthanc.dicomweb)
    study = cloud.load(next(iter(cloud.discover())))
    refs = [i.ref for i in study.images]
    gone = refs[0].__class__(
        sop_instance_uid="1.2.3.4.5.6.7.8.9",
        sop_class_uid=refs[0].sop_class_uid,
        series_instance_uid=refs[0].series_instance_uid,
        location=refs[0].location.rsplit("/", 1)[0] + "/1.2.3.4.5.6.7.8.9",
    )
    with pytest.raises(SourceError, match=r"did not return 1 of 4 instances of series"):
        with cloud.pixel_files([*refs, gone]):
            pass
