"""The write-back loop without a server: what is sent, retried, recorded and left for later.
(Against a real Orthanc: tests/cloud/test_writeback.py.)"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.domain import Verdict
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.errors import SourceError
from qc_pipeline.recognition.uids import sr_instance_uid
from qc_pipeline.recognition.writeback import GIVE_UP_AFTER, changed_since_written, write_back, writebacks
from qc_pipeline.sources.base import LoadedInstance, LoadedStudy, StudyEntry
from qc_pipeline.store import ResultStore
from tests.recognition.conftest import make_decision
from tests.store.conftest import db_url, pg_schema, postgres_schemas  # noqa: F401  (fixtures: each backend)

SOURCE = "http://cloud.test/dicom-web"


class FakeCloud:
    """A source whose STOW fails for the studies in ``down`` (or all, with ``all_down``)."""

    uri = SOURCE

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.calls = 0
        self.down: set[str] = set()
        self.all_down = False

    def entry_for(self, uid: str) -> StudyEntry:
        return StudyEntry(study_instance_uid=uid, locations=(f"{uid}/1/1",), fingerprint="f")

    def load(self, entry: StudyEntry) -> LoadedStudy:
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = entry.study_instance_uid, entry.study_instance_uid + ".1"
        ds.SOPInstanceUID, ds.SOPClassUID = entry.study_instance_uid + ".1.1", "1.2.840.10008.5.1.4.1.1.2"
        ds.PatientID = "P"
        return LoadedStudy(
            entry=entry, instances=[LoadedInstance(ref=None, dataset=ds, pixel_data=None, is_image=True)]
        )  # type: ignore[arg-type]

    def store_instances(self, datasets: list[Dataset]) -> None:
        self.calls += 1
        study = str(datasets[0].StudyInstanceUID)
        if self.all_down or study in self.down:
            raise SourceError(f"cannot reach DICOMweb server {SOURCE} while trying to store 1 instance(s)")
        self.stored.append(str(datasets[0].SOPInstanceUID))


def uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.10.66{n:03d}"


@pytest.fixture
def store(db_url: str):  # SQLite and PostgreSQL
    with ResultStore.open(db_url) as s:
        yield s


def save(store: ResultStore, n: int, verdict: Verdict = Verdict.FAIL) -> None:
    today = dt.date(2026, 12, 5)
    decision = dataclasses.replace(make_decision(uid(n), verdict, today, f"ACC{n}"), source_uri=SOURCE)
    store.save_decision(decision, run_id=None)


POLICY = EligibilityPolicy.current(as_of=dt.date(2026, 12, 5))


def test_sent_once_retried_with_doubling_waits_and_a_later_run_sends_what_failed(store: ResultStore) -> None:
    for n in (1, 2):
        save(store, n)
    cloud, waits = FakeCloud(), []
    cloud.down = {uid(2)}
    done = write_back(store, cloud, policy=POLICY, attempts=3, backoff_s=1.0, sleep=waits.append)
    assert (done.sent, done.failed, done.unchanged) == (1, 1, 0)
    assert waits == [1.0, 2.0]  # three attempts for the study whose STOW fails
    assert cloud.stored == [sr_instance_uid(uid(1), 1)]
    (row,) = writebacks(store, uid(2))
    assert (row["status"], row["attempts"]) == ("failed", 3) and "cannot reach DICOMweb server" in row["last_error"]
    assert done.errors == [f"{uid(2)}: {row['last_error']}"]

    cloud.down = set()
    assert changed_since_written(store, SOURCE) == [uid(2)]  # study 1 was sent and has not changed: not read again
    again = write_back(store, cloud, policy=POLICY, attempts=3, backoff_s=1.0, sleep=waits.append)
    assert (again.sent, again.failed, again.unchanged) == (1, 0, 0)
    assert cloud.stored[-1] == sr_instance_uid(uid(2), 1)  # the same version, not a new one
    assert [(w["version"], w["status"], w["attempts"]) for w in writebacks(store, uid(2))] == [(1, "sent", 4)]
    # A study judged again with another result: the next version.
    assert changed_since_written(store, SOURCE) == []
    save(store, 1, Verdict.PASS)
    assert changed_since_written(store, SOURCE) == [uid(1)]
    third = write_back(store, cloud, policy=POLICY, sleep=waits.append)
    assert (third.sent, third.unchanged) == (1, 0) and cloud.stored[-1] == sr_instance_uid(uid(1), 2)
    assert changed_since_written(store, SOURCE) == []
    # every study of the source when asked by name, the unchanged ones counted as such
    named = write_back(store, cloud, policy=POLICY, study_uids=[uid(1), uid(2)], sleep=waits.append)
    assert (named.sent, named.unchanged) == (0, 2)


def test_a_server_that_refuses_everything_is_not_hammered(store: ResultStore) -> None:
    for n in range(GIVE_UP_AFTER + 3):
        save(store, n)
    cloud = FakeCloud()
    cloud.all_down = True
    done = write_back(store, cloud, policy=POLICY, attempts=2, backoff_s=0.0, sleep=lambda _s: None)
    assert (done.sent, done.failed) == (0, GIVE_UP_AFTER + 3)
    assert cloud.calls == GIVE_UP_AFTER * 2  # after that many studies failed in a row, the rest wait
    assert done.errors[-1] == f"3 more not tried: the {GIVE_UP_AFTER} before failed; the next run retries them"
    statuses = sorted(writebacks(store, uid(n))[0]["status"] for n in range(GIVE_UP_AFTER + 3))
    assert statuses == ["failed"] * GIVE_UP_AFTER + ["pending"] * 3  # left for the next run
    cloud.all_down = False
    assert write_back(store, cloud, policy=POLICY, sleep=lambda _s: None).sent == GIVE_UP_AFTER + 3


def test_only_the_sources_own_studies_are_written_back(store: ResultStore) -> None:
    save(store, 1)
    store.save_decision(make_decision(uid(9), Verdict.PASS, dt.date(2026, 12, 5), "ACC9"), run_id=None)  # a folder's
    cloud = FakeCloud()
    assert write_back(store, cloud, policy=POLICY, sleep=lambda _s: None).sent == 1
    assert cloud.stored == [sr_instance_uid(uid(1), 1)] and writebacks(store, uid(9)) == []
