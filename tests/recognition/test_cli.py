"""``qc-pipeline recognition token create|revoke``: the token is printed once and works; a revoked
one does not; an unregistered institution or an unknown scope is refused."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from qc_pipeline.cli import main
from qc_pipeline.store import ResultStore
from qc_pipeline.store.recognition import RecognitionToken, token_for


def test_create_then_revoke_a_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    runner = CliRunner()
    made = runner.invoke(
        main,
        [
            "recognition",
            "token",
            "create",
            "--system",
            "his-b",
            "--institution",
            "四川省人民医院",
            "--scope",
            "lookup",
            "--scope",
            "events",
            "--db",
            url,
        ],
    )
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert token.startswith("qcr_")
    store = ResultStore.open(url)
    try:
        with store.reading("check") as session:
            info = token_for(session, token)
            stored = session.scalar(select(RecognitionToken.token_hash))
        assert info is not None and info.scopes == {"lookup", "events"} and info.institution == "四川省人民医院"
        assert token not in (stored or "")
        revoked = runner.invoke(main, ["recognition", "token", "revoke", "his-b", "--db", url])
        assert revoked.exit_code == 0, revoked.output
        with store.reading("check") as session:
            assert token_for(session, token) is None
        again = runner.invoke(main, ["recognition", "token", "revoke", "his-b", "--db", url])
        assert again.exit_code == 1 and "no live token" in again.output
    finally:
        store.close()


def test_an_unregistered_institution_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    result = CliRunner().invoke(
        main, ["recognition", "token", "create", "--system", "x", "--institution", "某不存在医院", "--db", url]
    )
    assert result.exit_code == 2
    assert "not in the institution register" in result.output
