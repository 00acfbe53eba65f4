"""End to end through the real CLI and a real Prefect flow (shared test harness), on SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.sources.base import uid_for_unreadable

from .conftest import GOOD_STUDY, SR_STUDY, TRUNCATED_STUDY, write_instance

pytestmark = pytest.mark.prefect


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def results(db_url: str, *extra: str) -> dict[str, dict]:
    code, out = invoke("results", "--db", db_url, "--format", "json", *extra)
    assert code == 0, out
    return {r["study_instance_uid"]: r for r in json.loads(out)}


def test_mixed_folder_every_study_gets_a_verdict_and_reruns_add_nothing(prefect_harness, mixed_folder, tmp_path):
    db = tmp_path / "results.sqlite"
    url = f"sqlite:///{db}"
    code, out = invoke("run", str(mixed_folder), "--db", url)
    assert code == 0, out
    assert "4 项检查 studies, 4 已质控 judged" in out

    by_uid = results(url)
    junk_uid = uid_for_unreadable("junk.dat")
    assert set(by_uid) == {GOOD_STUDY, TRUNCATED_STUDY, SR_STUDY, junk_uid}
    assert by_uid[GOOD_STUDY]["verdict"] == "pass"
    assert by_uid[GOOD_STUDY]["eligible"] is True
    assert by_uid[GOOD_STUDY]["eligible_until"] == "2027-01-12"
    assert by_uid[GOOD_STUDY]["institution"] == "四川省人民医院"
    truncated = by_uid[TRUNCATED_STUDY]
    assert truncated["verdict"] == "fail" and truncated["eligible"] is False
    (finding,) = [f for f in truncated["findings"] if f["severity"] != "info"]
    assert finding["code"] == "integrity.pixel_data.truncated"
    assert finding["category"] == "integrity"
    assert finding["sop_instance_uid"] == TRUNCATED_STUDY + ".1.2"
    assert by_uid[SR_STUDY]["verdict"] == "not_applicable"
    assert {f["code"] for f in by_uid[SR_STUDY]["findings"]} == {"integrity.non_image.skipped", "catalog.no_images"}
    assert by_uid[junk_uid]["verdict"] == "fail"
    assert by_uid[junk_uid]["findings"][0]["value"] == "junk.dat"
    for row in by_uid.values():
        assert row["provenance"]["pipeline_version"]
        assert row["provenance"]["thresholds_version"].startswith("2026.11+")

    counts = (rows(db, "decisions"), rows(db, "findings"), rows(db, "studies"))
    code, out = invoke("run", str(mixed_folder), "--db", url)
    assert code == 0, out
    assert "0 已质控 judged, 4 无变化 unchanged" in out
    assert (rows(db, "decisions"), rows(db, "findings"), rows(db, "studies")) == counts

    # A study that grew is judged again; its earlier decision stays in the history.
    write_instance(mixed_folder / "good" / "3.dcm", study=GOOD_STUDY, series_no=1, instance_no=3)
    code, out = invoke("run", str(mixed_folder), "--db", url)
    assert code == 0, out
    assert "1 已质控 judged, 3 无变化 unchanged" in out
    grown = results(url, "--study", GOOD_STUDY)[GOOD_STUDY]
    assert grown["n_instances"] == 3 and grown["history_count"] == 2
    assert rows(db, "decisions") == counts[0] + 1

    fails = results(url, "--verdict", "fail")
    assert set(fails) == {TRUNCATED_STUDY, junk_uid}

    code, out = invoke("results", "--db", url, "--format", "csv")
    assert code == 0
    assert out.splitlines()[0].startswith("study_instance_uid,accession_number,patient_id")
    assert len(out.splitlines()) == 5


def test_results_table_shows_reasons_in_both_languages(prefect_harness, mixed_folder, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert invoke("run", str(mixed_folder), "--db", url)[0] == 0
    code, zh = invoke("results", "--db", url, "--lang", "zh")
    assert code == 0 and "像素数据不完整" in zh and "不合格" in zh
    code, en = invoke("results", "--db", url, "--lang", "en")
    assert code == 0 and "pixel data needs" in en


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qc_pipeline.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_unreachable_database_exits_1_with_one_line(mixed_folder):
    proc = run_cli("run", str(mixed_folder), "--db", "postgresql+psycopg://qc:s3cret@127.0.0.1:1/qc")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("错误 / error:") and "127.0.0.1:1" in lines[0]
    assert "s3cret" not in proc.stderr + proc.stdout


def test_missing_source_exits_1(tmp_path):
    proc = run_cli("run", str(tmp_path / "nope"), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert proc.returncode == 1
    assert "does not exist or is not a folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_invalid_thresholds_exit_2(tmp_path, mixed_folder):
    bad = tmp_path / "thresholds"
    bad.mkdir()
    (bad / "site.yaml").write_text("version: '1'\ntimezone: Mars/Olympus\n", encoding="utf-8")
    proc = run_cli("run", str(mixed_folder), "--thresholds", str(bad), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert proc.returncode == 2
    assert "unknown IANA time zone 'Mars/Olympus'" in proc.stderr


def test_same_patient_with_another_sex_is_flagged_on_the_later_study(prefect_harness, tmp_path):
    root = tmp_path / "in"
    earlier, later = "1.2.826.0.1.3680043.10.2001", "1.2.826.0.1.3680043.10.2002"
    # Same PatientID, exams a month apart; the later one records another sex and birth date.
    for study, day, sex in ((earlier, "20260912", "F"), (later, "20261012", "M")):
        for n in (1, 2):
            write_instance(
                root / study[-4:] / f"{n}.dcm",
                study=study,
                series_no=1,
                instance_no=n,
                PatientID="P-SAME",
                StudyDate=day,
                PatientSex=sex,
                PatientBirthDate="19700101" if sex == "F" else "19700102",
            )
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, out = invoke("run", str(root), "--db", url)
    assert code == 0, out
    by_uid = results(url)
    flagged = [f for f in by_uid[later]["findings"] if f["code"] == "metadata.patient.conflict_across_studies"]
    assert {f["value"] for f in flagged} == {"M", "19700102"}
    assert all(earlier in f["message"] for f in flagged)
    assert by_uid[later]["verdict"] == "review"
    assert not [f for f in by_uid[earlier]["findings"] if f["code"] == "metadata.patient.conflict_across_studies"]


def test_a_long_backlog_is_submitted_a_window_at_a_time(prefect_harness, tmp_path, monkeypatch):
    """At most ``MAX_IN_FLIGHT`` study tasks are outstanding and Prefect's per-task bookkeeping is
    dropped once collected (the flow's memory must not grow with the backlog), and a patient's
    studies are still judged oldest first across windows."""
    from flows import qc_flow

    root = tmp_path / "in"
    later_uids = []
    for p in range(3):
        for k, (day, sex) in enumerate((("20260901", "F"), ("20260915", "F"), ("20261001", "M"))):
            study = f"1.2.826.0.1.3680043.10.30{p}{k}"
            write_instance(
                root / study[-4:] / "1.dcm",
                study=study,
                series_no=1,
                instance_no=1,
                PatientID=f"P-WIN-{p}",
                StudyDate=day,
                PatientSex=sex,
            )
            if sex == "M":
                later_uids.append(study)
    outstanding, most = [0], [0]

    class Counting(qc_flow.ThreadPoolTaskRunner):  # the flow's study pool, counting what is outstanding
        def submit(self, *args, **kwargs):
            future = super().submit(*args, **kwargs)
            outstanding[0] += 1
            most[0] = max(most[0], outstanding[0])
            future.add_done_callback(lambda _: outstanding.__setitem__(0, outstanding[0] - 1))
            return future

    monkeypatch.setattr(qc_flow, "ThreadPoolTaskRunner", Counting)
    monkeypatch.setattr(qc_flow, "MAX_IN_FLIGHT", 2)
    kept: list[int] = []  # what Prefect keeps per task result in the flow run context, as it runs

    def watch(event, done, total):
        from prefect.context import FlowRunContext

        kept.append(len(FlowRunContext.get().run_results))

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with qc_flow.progress_to(watch):
        code, out = invoke("run", str(root), "--db", url)
    assert code == 0, out
    assert "9 已质控 judged" in out
    assert 1 <= most[0] <= 2
    assert len(kept) == 10 and max(kept) <= 3 * 2, kept  # collected outcomes are forgotten: no growth
    by_uid = results(url)
    for uid, row in by_uid.items():
        conflicts = [f for f in row["findings"] if f["code"] == "metadata.patient.conflict_across_studies"]
        assert bool(conflicts) == (uid in later_uids), (uid, conflicts)


def _run_until_the_flow(mixed_folder, tmp_path, monkeypatch) -> str:
    """The CLI's output up to the flow (which is replaced by one that says the server did not start)."""
    from flows import qc_flow
    from qc_pipeline.cli import EPHEMERAL_START_FAILED

    def no_server(*args, **kwargs):
        raise RuntimeError(EPHEMERAL_START_FAILED + " at http://127.0.0.1:1")

    monkeypatch.setattr(qc_flow, "run", no_server)
    result = CliRunner().invoke(main, ["run", str(mixed_folder), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"])
    assert result.exit_code == 1
    return result.output


def test_without_a_prefect_api_the_temporary_server_is_said_in_one_line(mixed_folder, tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        out = _run_until_the_flow(mixed_folder, tmp_path, monkeypatch)
    notes = [line for line in out.splitlines() if "PREFECT_API_URL" in line and "temporary server" in line]
    assert len(notes) == 1 and "临时服务" in notes[0], out
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        out = _run_until_the_flow(mixed_folder, tmp_path, monkeypatch)
    assert "temporary server (about" not in out, out


def test_commands_that_wait_for_their_flow_run_send_no_heartbeats():
    # A heartbeat thread is stopped at the end of each flow run (up to 1 s); a run the operator
    # watches does not need Prefect's crash detection.
    from prefect.settings import get_current_settings

    from qc_pipeline.cli import _without_heartbeats

    before = get_current_settings().flows.heartbeat_frequency
    with _without_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before


def test_progress_reaches_only_the_listeners_of_the_context_that_started_the_run():
    """Two runs in one process (the review app's threads, parallel tests) do not see each other's
    progress, and a listener is gone once its block ends."""
    import threading

    from flows import qc_flow

    outer: list[tuple[str, int, int]] = []
    inner: list[tuple[str, int, int]] = []
    elsewhere: list[tuple[str, int, int]] = []

    def other_thread() -> None:
        with qc_flow.progress_to(lambda *event: elsewhere.append(event)):
            qc_flow._notify("study", 7, 9)

    with qc_flow.progress_to(lambda *event: outer.append(event)):
        qc_flow._notify("start", 0, 2)
        with qc_flow.progress_to(lambda *event: inner.append(event)):
            qc_flow._notify("study", 1, 2)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        qc_flow._notify("study", 2, 2)
    qc_flow._notify("study", 3, 3)  # no listener left: nobody hears it

    assert outer == [("start", 0, 2), ("study", 1, 2), ("study", 2, 2)]
    assert inner == [("study", 1, 2)]
    assert elsewhere == [("study", 7, 9)]
