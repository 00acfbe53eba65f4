"""Accounts: argon2id hashes with the production parameters, sign-in rules, user names."""

from __future__ import annotations

import datetime as dt

import pytest
from argon2 import PasswordHasher

from qc_pipeline.review import accounts
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.store import ResultStore
from qc_pipeline.store.review import ReviewEvent, ReviewUser


def test_passwords_are_stored_as_production_argon2id_hashes(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher())  # the parameters the app ships with
    with ResultStore.open(sqlite_url) as store:
        accounts.create_user(store, "dr.wang", "correct horse battery", role="reviewer")
        with store.reading("check") as session:
            (row,) = session.query(ReviewUser).all()
        assert row.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert "correct horse" not in row.password_hash
        assert accounts.authenticate(store, "dr.wang", "correct horse battery") is not None
        assert accounts.authenticate(store, "dr.wang", "wrong horse battery") is None


def test_sign_in_rules_and_audit(sqlite_url: str) -> None:
    with ResultStore.open(sqlite_url) as store:
        admin = accounts.create_user(store, "qc.li", "ct-room-0123", role="qc_admin", display_name="李")
        assert admin.is_admin and admin.shown_name == "李"
        assert accounts.authenticate(store, "qc.li", "ct-room-0123") == admin
        assert accounts.authenticate(store, "nobody", "ct-room-0123") is None
        accounts.set_active(store, "qc.li", False)
        assert accounts.authenticate(store, "qc.li", "ct-room-0123") is None
        assert accounts.load_user(store, admin.id, admin.session_stamp) is None
        accounts.set_active(store, "qc.li", True)
        assert accounts.load_user(store, admin.id, admin.session_stamp) == admin
        accounts.set_password(store, "qc.li", "ct-room-9876")
        assert accounts.load_user(store, admin.id, admin.session_stamp) is None  # old sessions end
        with store.reading("audit") as session:
            events = [(e.username, e.event) for e in session.query(ReviewEvent).order_by(ReviewEvent.id)]
        assert events == [
            ("qc.li", "user_created"),
            ("qc.li", "sign_in"),
            ("nobody", "sign_in_failed"),
            ("qc.li", "disabled"),
            ("qc.li", "sign_in_failed"),
            ("qc.li", "enabled"),
            ("qc.li", "password_changed"),
        ]


def test_bad_accounts_are_refused(sqlite_url: str) -> None:
    with ResultStore.open(sqlite_url) as store:
        accounts.create_user(store, "dr.wang", "ct-room-0123", role="reviewer")
        with pytest.raises(ReviewError, match="user 'dr.wang' exists already"):
            accounts.create_user(store, "dr.wang", "ct-room-0123", role="reviewer")
        with pytest.raises(ReviewError, match="the password must have at least 10 characters, got 5"):
            accounts.create_user(store, "dr.li", "short", role="reviewer")
        with pytest.raises(ReviewError, match="role must be one of reviewer, qc_admin, grader; got 'root'"):
            accounts.create_user(store, "dr.li", "ct-room-0123", role="root")
        with pytest.raises(ReviewError, match=r"user name 'dr li' must be 2 to 64 letters"):
            accounts.create_user(store, "dr li", "ct-room-0123", role="reviewer")
        with pytest.raises(ReviewError, match="no user 'ghost'"):
            accounts.set_password(store, "ghost", "ct-room-0123")
        with pytest.raises(ReviewError, match="no user 'ghost'"):
            accounts.set_active(store, "ghost", False)


def test_repeated_failed_sign_ins_lock_the_name_for_a_while(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.create_user(store, "dr.wang", "ct-room-0123", role="reviewer")
    accounts.create_user(store, "dr.zhao", "ct-room-0123", role="reviewer")
    clock = [dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)]
    monkeypatch.setattr(accounts, "_now", lambda: clock[0])

    def fail(times: int) -> None:
        for _ in range(times):
            assert accounts.authenticate(store, "dr.wang", "a-wrong-guess") is None
            clock[0] += dt.timedelta(minutes=1)

    fail(accounts.MAX_FAILED_SIGN_INS - 1)  # 08:00-08:03
    assert accounts.authenticate(store, "dr.wang", "ct-room-0123") is not None  # accepted: the count starts again
    fail(accounts.MAX_FAILED_SIGN_INS)  # 08:04-08:08
    with pytest.raises(accounts.SignInLocked, match="10 min") as locked:  # 08:09: the right password is refused too
        accounts.authenticate(store, "dr.wang", "ct-room-0123")
    assert locked.value.status == 429 and locked.value.minutes == 10  # until 08:19, 15 min after 08:04
    assert "10 min" in str(locked.value) and "10 分钟后再试" in locked.value.message_zh
    assert accounts.authenticate(store, "dr.zhao", "ct-room-0123") is not None  # other accounts sign in
    clock[0] += dt.timedelta(minutes=9)  # 08:18: refused attempts did not extend the lockout
    with pytest.raises(accounts.SignInLocked, match="1 min") as again:
        accounts.authenticate(store, "dr.wang", "ct-room-0123")
    assert again.value.minutes == 1
    clock[0] += dt.timedelta(minutes=1)  # 08:19
    assert accounts.authenticate(store, "dr.wang", "ct-room-0123") is not None
    with store.reading("audit") as session:
        events = [e.event for e in session.query(ReviewEvent).filter_by(username="dr.wang").order_by(ReviewEvent.id)]
    assert (
        events.count("sign_in_locked") == 2 and events.count("sign_in_failed") == 2 * accounts.MAX_FAILED_SIGN_INS - 1
    )
    assert events[-1] == "sign_in"
    fail(accounts.MAX_FAILED_SIGN_INS)
    with pytest.raises(accounts.SignInLocked, match="min"):
        accounts.authenticate(store, "dr.wang", "ct-room-0123")
    accounts.set_password(store, "dr.wang", "a-new-password-1")  # the administrator's reset ends the lockout
    assert accounts.authenticate(store, "dr.wang", "a-new-password-1") is not None
