"""Incremental listing against a real Orthanc: its change log, the QIDO-RS window used for other
servers, and the upload time. Source level: no Prefect, fast."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from qc_pipeline.errors import SourceError
from qc_pipeline.sources.dicomweb import (
    CURSOR_ORTHANC,
    CURSOR_QIDO,
    FULL_LISTING_EVERY,
    DicomWebSource,
)
from qc_pipeline.sources.incremental import IncrementalSource, ListingMode
from qc_pipeline.sources.orthanc import OrthancRest, parse_orthanc_time, rest_root
from tests.flows.conftest import write_instance

STUDY_A = "1.2.826.0.1.3680043.10.2001"
STUDY_B = "1.2.826.0.1.3680043.10.2002"
STUDY_OLD = "1.2.826.0.1.3680043.10.2003"


def uids(listing) -> set[str]:
    return {e.study_instance_uid for e in listing.entries}


def upload(orthanc, folder: Path, study: str, instances: range, **attrs: str) -> None:
    paths = [
        write_instance(folder / study / f"{n}.dcm", study=study, series_no=1, instance_no=n, **attrs) for n in instances
    ]
    orthanc.upload(paths)


def test_orthanc_change_log_lists_only_new_and_grown_studies(orthanc, cloud_credentials, tmp_path):
    orthanc.clear()
    upload(orthanc, tmp_path, STUDY_A, range(1, 3))
    orthanc.wait_until_stable()
    source = DicomWebSource(orthanc.dicomweb)
    assert isinstance(source, IncrementalSource)

    first = source.list_changes(None, None)  # no cursor yet: every study, position = newest change
    assert (first.mode, first.cursor_kind, uids(first)) == (ListingMode.FULL, CURSOR_ORTHANC, {STUDY_A})
    assert int(first.position) == orthanc.get("/changes?last")["Last"]
    nothing = source.list_changes(CURSOR_ORTHANC, first.position)
    assert (nothing.mode, nothing.entries, nothing.position) == (ListingMode.CHANGES, (), first.position)

    upload(orthanc, tmp_path, STUDY_A, range(3, 4))  # study A grows
    upload(orthanc, tmp_path, STUDY_B, range(1, 2))  # study B is new
    orthanc.wait_until_stable()
    changed = source.list_changes(CURSOR_ORTHANC, first.position)
    assert changed.mode is ListingMode.CHANGES
    assert uids(changed) == {STUDY_A, STUDY_B}
    grown = next(e for e in changed.entries if e.study_instance_uid == STUDY_A)
    assert len(grown.locations) == 3
    assert grown.fingerprint != first.entries[0].fingerprint
    assert int(changed.position) > int(first.position)
    # Listing from the same cursor again gives the same studies: a run that died is simply redone.
    assert uids(source.list_changes(CURSOR_ORTHANC, first.position)) == {STUDY_A, STUDY_B}


def test_a_cursor_beyond_the_servers_change_log_lists_everything(orthanc, cloud_credentials, tmp_path):
    orthanc.clear()
    upload(orthanc, tmp_path, STUDY_A, range(1, 2))
    orthanc.wait_until_stable()
    source = DicomWebSource(orthanc.dicomweb)
    last = orthanc.get("/changes?last")["Last"]
    listing = source.list_changes(CURSOR_ORTHANC, str(last + 1000))  # the server's database was replaced
    assert (listing.mode, uids(listing), listing.position) == (ListingMode.FULL, {STUDY_A}, str(last))
    other_kind = source.list_changes(CURSOR_QIDO, '{"listed_on": "2026-10-12"}')
    assert (other_kind.mode, other_kind.cursor_kind) == (ListingMode.FULL, CURSOR_ORTHANC)


def test_change_log_reading_stops_at_the_study_limit_and_goes_on_from_there(orthanc, cloud_credentials, tmp_path):
    orthanc.clear()
    start = orthanc.get("/changes?last")["Last"]
    for study in (STUDY_A, STUDY_B):
        upload(orthanc, tmp_path, study, range(1, 2))
    orthanc.wait_until_stable()
    source = DicomWebSource(orthanc.dicomweb)
    rest = source._orthanc()
    assert isinstance(rest, OrthancRest)
    first = rest.stable_studies_since(start, max_studies=1)
    assert len(first.study_ids) == 1
    rest_of_it = rest.stable_studies_since(first.last_seq, max_studies=10)
    assert len(rest_of_it.study_ids) == 1 and rest_of_it.study_ids != first.study_ids
    assert rest_of_it.last_seq == orthanc.get("/changes?last")["Last"]
    assert set(rest.study_uids(first.study_ids + rest_of_it.study_ids)) == {STUDY_A, STUDY_B}
    with pytest.raises(ValueError, match="max_studies must be at least 1, got 0"):
        rest.stable_studies_since(start, max_studies=0)


def test_received_at_is_when_orthanc_got_the_study(orthanc, cloud_credentials, tmp_path):
    orthanc.clear()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    upload(orthanc, tmp_path, STUDY_A, range(1, 3))
    after = dt.datetime.now(dt.UTC)
    source = DicomWebSource(orthanc.dicomweb)
    (entry,) = source.discover()
    study = source.load(entry)
    assert study.received_at is not None and study.received_at.tzinfo is not None
    assert before <= study.received_at <= after  # Orthanc's LastUpdate is UTC, to the second
    assert study.received_at_is_upper_bound is False
    # Without Orthanc's REST API (another DICOMweb server) the upload time is unknown: the time the
    # pipeline sees the study stands in, as an upper bound.
    other = DicomWebSource(orthanc.dicomweb, orthanc="off").load(entry)
    assert other.received_at is not None and other.received_at >= after and other.received_at_is_upper_bound is True


def test_qido_window_on_servers_without_a_change_log(orthanc, cloud_credentials, tmp_path):
    orthanc.clear()
    upload(orthanc, tmp_path, STUDY_OLD, range(1, 2), StudyDate="20240105")
    source = DicomWebSource(orthanc.dicomweb, orthanc="off")
    day1 = dt.datetime(2026, 10, 13, 1, 0, tzinfo=dt.UTC)
    first = source.list_changes(None, None, now=day1)
    assert (first.mode, first.cursor_kind, uids(first)) == (ListingMode.FULL, CURSOR_QIDO, {STUDY_OLD})
    assert json.loads(first.position) == {"listed_on": "2026-10-13", "full_listing_at": day1.isoformat()}

    upload(orthanc, tmp_path, STUDY_A, range(1, 2))  # StudyDate 2026-10-12: inside the window
    upload(orthanc, tmp_path, STUDY_B, range(1, 2), StudyDate="20250301")  # a late upload of an old exam
    later = day1 + dt.timedelta(hours=2)
    window = source.list_changes(CURSOR_QIDO, first.position, now=later)
    assert (window.mode, uids(window)) == (ListingMode.WINDOW, {STUDY_A})
    assert json.loads(window.position)["full_listing_at"] == day1.isoformat()  # still due from day 1

    next_day = day1 + FULL_LISTING_EVERY
    daily = source.list_changes(CURSOR_QIDO, window.position, now=next_day)
    assert (daily.mode, uids(daily)) == (ListingMode.FULL, {STUDY_OLD, STUDY_A, STUDY_B})
    assert source.list_changes(CURSOR_QIDO, "not json", now=later).mode is ListingMode.FULL


def test_orthanc_helpers():
    assert rest_root("http://127.0.0.1:8042/dicom-web/") == "http://127.0.0.1:8042"
    assert rest_root("https://pacs.example/orthanc/dicom-web") == "https://pacs.example/orthanc"
    assert rest_root("https://cloud.example/wado") is None
    assert parse_orthanc_time("20261123T093939") == dt.datetime(2026, 11, 23, 9, 39, 39, tzinfo=dt.UTC)
    assert parse_orthanc_time("2026-11-23") is None
    assert parse_orthanc_time(None) is None


def test_listing_a_stopped_server_is_a_source_error(orthanc, cloud_credentials):
    source = DicomWebSource(orthanc.dicomweb, orthanc=orthanc.base)  # explicit REST root: no probe
    orthanc.stop()
    try:
        with pytest.raises(SourceError, match=r"cannot reach DICOMweb server .* read the Orthanc change log"):
            source.list_changes(None, None)
    finally:
        orthanc.start()
