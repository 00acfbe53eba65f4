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
from tests.support.multiframe import one_object


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
                syntaxes = {
                    pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in remote_paths
                }
                assert syntaxes == {
                    pydicom.dcmread(local_paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
                }
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


def test_a_long_ct_fetches_only_its_sampled_instances_with_the_folders_values(orthanc, cloud_credentials, tmp_path):
    import datetime as dt

    from qc_pipeline.metrics import ct
    from qc_pipeline.pipeline import ai_scorer, judge, load_pipeline_thresholds, process_entry
    from qc_pipeline.store import ResultStore
    from tests.checks.test_image_quality_headers_once import write_chest_ct

    n = 150
    paths = write_chest_ct(tmp_path / "folder" / "ct", n_slices=n)
    orthanc.clear()
    orthanc.upload(paths)
    thresholds = load_pipeline_thresholds()
    now = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    cloud = DicomWebSource(orthanc.dicomweb)
    (entry,) = list(cloud.discover())

    with ResultStore.open(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        outcome = process_entry(cloud, entry, store, thresholds, run_id=None, now=now)
        (stored,) = store.results()

    wanted = set(ct.sample_slices(n).tolist()) | set(ai_scorer().slice_indices("ct", n))
    sizes = [p.stat().st_size for p in paths]
    sampled = sum(sizes[i] for i in wanted)
    assert outcome.bytes_fetched == pytest.approx(sampled, rel=0.05), (outcome.bytes_fetched, sampled)
    assert outcome.bytes_fetched < 0.3 * sum(sizes)

    folder = FolderSource(tmp_path / "folder")
    (local_entry,) = list(folder.discover())
    local = judge(folder.load(local_entry), thresholds, now=now, source_uri=folder.uri, pixels=folder)
    remote = {m["metric"]: m["value"] for m in stored["measurements"]}
    measured = {m.metric: m.value for m in local.measurements if m.metric.startswith(("ct.", "ai."))}
    assert len(measured) > 8 and {k: remote.get(k) for k in measured} == measured
    assert remote["ct.noise_hu"] is not None


@pytest.mark.parametrize(
    ("per_frame_positions", "j2k"),
    [(True, False), (False, False), (True, True)],
    ids=["enhanced", "one-position", "enhanced-j2k"],
)
def test_a_multiframe_ct_fetches_only_its_sampled_frames_with_the_folders_values(
    orthanc, cloud_credentials, tmp_path, per_frame_positions, j2k
):
    """WADO-RS frame retrieval: of a CT stored as one multi-frame object only the frames the
    metrics and the AI read cross the network, in the stored transfer syntax, and the study is
    measured exactly as from the whole file."""
    import datetime as dt

    from qc_pipeline.metrics import ct
    from qc_pipeline.pipeline import ai_scorer, judge, load_pipeline_thresholds, process_entry
    from qc_pipeline.store import ResultStore
    from tests.checks.test_image_quality_headers_once import write_chest_ct

    n = 120
    obj = one_object(
        write_chest_ct(tmp_path / "slices", n_slices=n),
        tmp_path / "folder" / "ct" / "multi.dcm",
        per_frame_positions=per_frame_positions,
        j2k=j2k,
    )
    orthanc.clear()
    orthanc.upload([obj])
    thresholds = load_pipeline_thresholds()
    now = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    cloud = DicomWebSource(orthanc.dicomweb)
    (entry,) = list(cloud.discover())
    with ResultStore.open(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        outcome = process_entry(cloud, entry, store, thresholds, run_id=None, now=now)
        (stored,) = store.results()

    wanted = set(ct.sample_slices(n).tolist()) | set(ai_scorer().slice_indices("ct", n))
    ds = pydicom.dcmread(obj, stop_before_pixels=True)
    if j2k:  # compressed frames differ in size; the sample is a third of the frames
        assert 0 < outcome.bytes_fetched < 0.45 * obj.stat().st_size, (outcome.bytes_fetched, obj.stat().st_size)
    else:  # exactly the sampled frames' pixel data, nothing else
        assert outcome.bytes_fetched == len(wanted) * ds.Rows * ds.Columns * 2

    folder = FolderSource(tmp_path / "folder")
    (local_entry,) = list(folder.discover())
    local = judge(folder.load(local_entry), thresholds, now=now, source_uri=folder.uri, pixels=folder)
    remote = {m["metric"]: m["value"] for m in stored["measurements"]}
    measured = {m.metric: m.value for m in local.measurements if m.metric.startswith(("ct.", "ai."))}
    assert len(measured) > 8 and {k: remote.get(k) for k in measured} == measured
    assert remote["ct.noise_hu"] is not None
    assert stored["verdict"] == local.verdict.value
