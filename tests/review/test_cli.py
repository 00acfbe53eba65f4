"""``qc-pipeline review ...`` and what ``qc-pipeline results`` shows after a review."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.review import service
from qc_pipeline.review.accounts import authenticate
from qc_pipeline.review.cli import SECRET_ENV, session_secret
from qc_pipeline.rules import Thresholds
from qc_pipeline.store import ResultStore
from tests.review.conftest import Judged


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


def test_create_user_and_list_them(sqlite_store: ResultStore, sqlite_url: str) -> None:
    code, out = run(
        "review",
        "create-user",
        "dr.wang",
        "--role",
        "reviewer",
        "--display-name",
        "王医生",
        "--password-stdin",
        "--db",
        sqlite_url,
        stdin="radiologist-pass-1\n",
    )
    assert code == 0 and out.strip() == "已创建 / created: dr.wang (reviewer)"
    assert authenticate(sqlite_store, "dr.wang", "radiologist-pass-1") is not None
    code, out = run(
        "review",
        "create-user",
        "dr.wang",
        "--role",
        "reviewer",
        "--password-stdin",
        "--db",
        sqlite_url,
        stdin="radiologist-pass-1\n",
    )
    assert code == 2 and "错误 / error: 用户 dr.wang 已存在 / user 'dr.wang' exists already" in out
    code, out = run(
        "review", "create-user", "dr.li", "--role", "reviewer", "--password-stdin", "--db", sqlite_url, stdin="short\n"
    )
    assert code == 2 and "at least 10 characters" in out
    code, out = run("review", "users", "--db", sqlite_url)
    assert code == 0 and out.split() == ["dr.wang", "reviewer", "王医生"]
    code, out = run("review", "disable-user", "dr.wang", "--db", sqlite_url)
    assert code == 0 and authenticate(sqlite_store, "dr.wang", "radiologist-pass-1") is None


def test_results_and_labels_show_the_human_decision(
    sqlite_store: ResultStore, sqlite_url: str, judged: Judged, thresholds: Thresholds, tmp_path: Path
) -> None:
    run(
        "review",
        "create-user",
        "dr.wang",
        "--role",
        "reviewer",
        "--password-stdin",
        "--db",
        sqlite_url,
        stdin="radiologist-pass-1\n",
    )
    user = authenticate(sqlite_store, "dr.wang", "radiologist-pass-1")
    assert user is not None
    study = judged.decisions["age_mismatch"].study_instance_uid
    service.decide(
        sqlite_store, thresholds, study, user, verdict="pass", reason_code="metadata_error", reason_text="typo"
    )

    code, out = run("results", "--db", sqlite_url, "--study", study, "--format", "json")
    (row,) = json.loads(out)
    assert (
        code == 0
        and row["verdict"] == "review"
        and row["human_decision"]["verdict"] == "pass"
        and row["eligible"] is True
    )
    code, out = run("results", "--db", sqlite_url, "--study", study, "--lang", "en")
    assert code == 0 and "待复核 review" in out and "→ 人工 human: 合格 pass" in out

    labels = tmp_path / "labels.csv"
    code, out = run("review", "export-labels", "--out", str(labels), "--db", sqlite_url)
    assert code == 0 and out.strip() == f"标注 / labels: 1 → {labels}"
    lines = labels.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(
        "study_instance_uid,series_instance_uids,modality,item_code,machine_verdict,human_decision"
    )
    assert lines[1].startswith(study + ",") and ",review,pass,override,metadata_error," in lines[1]
    code, out = run("review", "export-labels", "--out", str(tmp_path / "no" / "such" / "dir.csv"), "--db", sqlite_url)
    assert code == 1 and "错误 / error: 无法写入" in out


def test_session_key_is_made_once_with_owner_only_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    key = session_secret(url)
    path = tmp_path / "review-secret.key"
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert session_secret(url) == key
    path.chmod(0o644)
    code, out = run("review", "serve", "--db", url, "--port", "1")
    assert code == 2 and f"the session key {path} is readable by others: chmod 600 {path}" in out
    monkeypatch.setenv(SECRET_ENV, "too-short")
    code, out = run("review", "serve", "--db", url, "--port", "1")
    assert code == 2 and f"${SECRET_ENV} must have at least 32 characters" in out
    monkeypatch.setenv(SECRET_ENV, "k" * 40)
    assert session_secret(url) == "k" * 40


def test_serve_explains_an_unreachable_database() -> None:
    code, out = run("review", "serve", "--db", "postgresql+psycopg://qc:pw@127.0.0.1:1/qc", "--port", "1")
    assert code == 1 and "错误 / error: 无法打开结果数据库 / cannot open the results database" in out
    assert "pw@" not in out


def test_serve_on_a_busy_port_says_so_in_both_languages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setenv(SECRET_ENV, "k" * 40)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out = run("review", "serve", "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", "--port", str(port))
    assert code == 1, out
    assert f"端口 {port} 已被占用" in out and f"port {port} on 127.0.0.1 is already in use" in out
    assert "Errno" not in out and "Traceback" not in out


def test_password_prompt_asks_twice_in_both_languages(sqlite_url: str) -> None:
    code, out = run(
        "review",
        "create-user",
        "dr.zhao",
        "--role",
        "reviewer",
        "--db",
        sqlite_url,
        stdin="radiologist-pass-1\nmistyped-pass-22\nradiologist-pass-1\nradiologist-pass-1\n",
    )
    assert code == 0, out
    assert out.count("再次输入密码 / repeat the password") == 2
    assert "两次输入的密码不一致" in out and "the two passwords differ" in out
    assert "Repeat for confirmation" not in out


def test_thresholds_command_names_its_own_option_for_a_missing_folder(tmp_path: Path) -> None:
    code, out = run("thresholds", "--dir", str(tmp_path / "nowhere"))
    assert code != 0 and "--dir" in out and "pass --thresholds DIR" not in out


@pytest.mark.parametrize(
    "command",
    [
        ("review", "users"),
        ("review", "disable-user", "dr.nobody"),
        ("review", "export-labels", "--out", "OUT"),
    ],
)
def test_account_reads_and_changes_on_a_missing_database_fail_and_create_nothing(tmp_path: Path, command) -> None:
    typo = tmp_path / "typo.sqlite"
    args = [str(tmp_path / "labels.csv") if a == "OUT" else a for a in command]
    code, out = run(*args, "--db", f"sqlite:///{typo}")
    assert code == 1 and "does not exist" in out and "不存在" in out, out
    assert not typo.exists()


def test_the_first_account_creates_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    code, out = run(
        "review",
        "create-user",
        "dr.first",
        "--role",
        "qc_admin",
        "--password-stdin",
        "--db",
        url,
        stdin="first-admin-pass-1\n",
    )
    assert code == 0, out
    assert (tmp_path / "new.sqlite").exists()
