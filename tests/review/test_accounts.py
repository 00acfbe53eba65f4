"""Accounts: argon2id hashes with the production parameters, sign-in rules, user names."""

from __future__ import annotations

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
        admin = accounts.create_user(store, "qc.li", "0123456789", role="qc_admin", display_name="李")
        assert admin.is_admin and admin.shown_name == "李"
        assert accounts.authenticate(store, "qc.li", "0123456789") == admin
        assert accounts.authenticate(store, "nobody", "0123456789") is None
        accounts.set_active(store, "qc.li", False)
        assert accounts.authenticate(store, "qc.li", "0123456789") is None
        assert accounts.load_user(store, admin.id, admin.session_stamp) is None
        accounts.set_active(store, "qc.li", True)
        assert accounts.load_user(store, admin.id, admin.session_stamp) == admin
        accounts.set_password(store, "qc.li", "9876543210")
        assert accounts.load_user(store, admin.id, admin.session_stamp) is None  # old sessions end
        with store.reading("audit") as session:
            events = [(e.username, e.event) for e in session.query(ReviewEvent).order_by(ReviewEvent.id)]
        assert events == [
            ("qc.li", "user_created"), ("qc.li", "sign_in"), ("nobody", "sign_in_failed"), ("qc.li", "disabled"),
            ("qc.li", "sign_in_failed"), ("qc.li", "enabled"), ("qc.li", "password_changed"),
        ]


def test_bad_accounts_are_refused(sqlite_url: str) -> None:
    with ResultStore.open(sqlite_url) as store:
        accounts.create_user(store, "dr.wang", "0123456789", role="reviewer")
        with pytest.raises(ReviewError, match="user 'dr.wang' exists already"):
            accounts.create_user(store, "dr.wang", "0123456789", role="reviewer")
        with pytest.raises(ReviewError, match="the password must have at least 10 characters, got 5"):
            accounts.create_user(store, "dr.li", "short", role="reviewer")
        with pytest.raises(ReviewError, match="role must be one of reviewer, qc_admin; got 'root'"):
            accounts.create_user(store, "dr.li", "0123456789", role="root")
        with pytest.raises(ReviewError, match=r"user name 'dr li' must be 2 to 64 letters"):
            accounts.create_user(store, "dr li", "0123456789", role="reviewer")
        with pytest.raises(ReviewError, match="no user 'ghost'"):
            accounts.set_password(store, "ghost", "0123456789")
        with pytest.raises(ReviewError, match="no user 'ghost'"):
            accounts.set_active(store, "ghost", False)
