"""Accounts of the review app: argon2id password hashes, roles, sign-in checks.

Passwords are hashed with argon2-cffi's ``PasswordHasher`` (argon2id, RFC 9106 low-memory
profile defaults); only the hash is stored. A hash made with older parameters is upgraded on the
next successful sign-in.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qc_pipeline.review.errors import ReviewError
from qc_pipeline.store import ResultStore
from qc_pipeline.store.review import ROLES, ReviewEvent, ReviewUser

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH: Final = 10
MAX_FAILED_SIGN_INS: Final = 5
LOCKOUT: Final = dt.timedelta(minutes=15)
"""After ``MAX_FAILED_SIGN_INS`` failed sign-ins within ``LOCKOUT`` (and none accepted since), the
account refuses sign-in, right password or not, until the oldest of those failures is ``LOCKOUT``
old (the limit on illegal sign-in attempts of MLPS 2.0 / 等保2.0 "登录失败处理"). The failures are
read from the audit table, so the limit holds across restarts and worker processes; refused
attempts are recorded as ``sign_in_locked`` and do not extend it. A password set by a QC
administrator (``qc-pipeline review set-password``) ends the lockout."""
USERNAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
_hasher = PasswordHasher()
_DUMMY_HASH: Final = _hasher.hash("qc-pipeline: no such user")
"""Verified against when the user does not exist, so that sign-in takes as long either way."""


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in user, as the app sees it."""

    id: int
    username: str
    display_name: str | None
    role: str
    session_stamp: str
    """Changes with the password: sessions signed before a password change stop working."""

    @property
    def is_admin(self) -> bool:
        return self.role == "qc_admin"

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(row: ReviewUser) -> str:
    # The hash's salt and digest change with every new password; 16 characters are enough to tell.
    return row.password_hash[-16:]


def _user(row: ReviewUser) -> User:
    return User(row.id, row.username, row.display_name, row.role, _stamp(row))


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ReviewError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}",
            f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符",
        )


def create_user(
    store: ResultStore, username: str, password: str, *, role: str, display_name: str | None = None
) -> User:
    """Add an account. Raises ReviewError for a bad user name, role or password, or a taken name."""
    if not USERNAME_PATTERN.match(username):
        raise ReviewError(
            f"user name {username!r} must be 2 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "用户名须为 2–64 个字母、数字或 . _ -，以字母或数字开头",
        )
    if role not in ROLES:
        raise ReviewError(f"role must be one of {', '.join(ROLES)}; got {role!r}", f"角色须为 {'、'.join(ROLES)}")
    check_new_password(password)
    now = _now()
    row = ReviewUser(
        username=username,
        display_name=display_name or None,
        role=role,
        password_hash=_hasher.hash(password),
        active=True,
        created_at=now,
        password_changed_at=now,
    )
    try:
        with store.writing(f"create user {username}") as session:
            session.add(row)
            session.flush()
            session.add(ReviewEvent(at=now, user_id=row.id, username=username, event="user_created", detail=role))
            user = _user(row)
    except IntegrityError as exc:
        raise ReviewError(f"user {username!r} exists already", f"用户 {username} 已存在") from exc
    logger.info("review user %s created (%s)", username, role)
    return user


def set_password(store: ResultStore, username: str, password: str) -> None:
    """Change a password (every session of the user ends)."""
    check_new_password(password)
    with store.writing(f"set the password of {username}") as session:
        row = session.scalars(select(ReviewUser).where(ReviewUser.username == username)).one_or_none()
        if row is None:
            raise ReviewError(f"no user {username!r}", f"用户 {username} 不存在")
        row.password_hash = _hasher.hash(password)
        row.password_changed_at = _now()
        session.add(ReviewEvent(at=_now(), user_id=row.id, username=username, event="password_changed"))


def set_active(store: ResultStore, username: str, active: bool) -> None:
    """Enable or disable an account (a disabled account's sessions stop working at once)."""
    with store.writing(f"change user {username}") as session:
        row = session.scalars(select(ReviewUser).where(ReviewUser.username == username)).one_or_none()
        if row is None:
            raise ReviewError(f"no user {username!r}", f"用户 {username} 不存在")
        row.active = active
        session.add(
            ReviewEvent(at=_now(), user_id=row.id, username=username, event="enabled" if active else "disabled")
        )


def list_users(store: ResultStore) -> list[dict[str, object]]:
    with store.reading("list the review users") as session:
        rows = session.scalars(select(ReviewUser).order_by(ReviewUser.username)).all()
    return [
        {
            "username": r.username,
            "display_name": r.display_name,
            "role": r.role,
            "active": r.active,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


class SignInLocked(ReviewError):
    """Too many failed sign-ins for this user name (see ``LOCKOUT``)."""

    def __init__(self, minutes: int) -> None:
        super().__init__(
            f"too many failed sign-ins for this user: try again in {minutes} min, or ask a QC administrator",
            f"该账号登录失败次数过多，请 {minutes} 分钟后再试，或联系质控管理员",
            status=429,
        )
        self.minutes = minutes


def _locked_until(session: Session, username: str, now: dt.datetime) -> dt.datetime | None:
    """When the lockout of ``username`` ends, if it is locked now."""
    events = session.execute(
        select(ReviewEvent.event, ReviewEvent.at)
        .where(
            ReviewEvent.at > now - LOCKOUT,
            ReviewEvent.username == username,
            ReviewEvent.event.in_(("sign_in", "password_changed", "sign_in_failed")),
        )
        .order_by(ReviewEvent.at.desc(), ReviewEvent.id.desc())
    ).all()
    failures: list[dt.datetime] = []
    for event, at in events:
        if event != "sign_in_failed":
            break  # an accepted sign-in, or a new password set by an administrator, clears the failures before it
        failures.append(at)
    if len(failures) < MAX_FAILED_SIGN_INS:
        return None
    return failures[MAX_FAILED_SIGN_INS - 1] + LOCKOUT


def authenticate(store: ResultStore, username: str, password: str) -> User | None:
    """The user, when the name and password are right and the account is active; else None.

    Every attempt is recorded in the audit table (``sign_in`` / ``sign_in_failed`` /
    ``sign_in_locked``). Raises :class:`SignInLocked` while the user name is locked out.
    """
    now = _now()
    with store.writing("sign in") as session:
        until = _locked_until(session, username[:64], now)
        if until is not None:
            session.add(ReviewEvent(at=now, user_id=None, username=username[:64], event="sign_in_locked"))
            locked = SignInLocked(max(1, -(-int((until - now).total_seconds()) // 60)))
        else:
            locked = None
    if locked is not None:
        logger.warning("sign-in refused for %s: locked out after %d failed attempts", username[:64], MAX_FAILED_SIGN_INS)
        raise locked
    with store.writing("sign in") as session:
        row = session.scalars(select(ReviewUser).where(ReviewUser.username == username)).one_or_none()
        ok = False
        try:
            _hasher.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
            ok = row is not None and row.active
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if ok and row is not None and _hasher.check_needs_rehash(row.password_hash):
            row.password_hash = _hasher.hash(password)
        session.add(
            ReviewEvent(
                at=now,
                user_id=row.id if row is not None else None,
                username=username[:64],
                event="sign_in" if ok else "sign_in_failed",
            )
        )
        user = _user(row) if ok and row is not None else None
    logger.info("sign-in %s for %s", "accepted" if user else "refused", username[:64])
    return user


def load_user(store: ResultStore, user_id: int, stamp: str) -> User | None:
    """The session's user, if the account is still active and its password unchanged."""
    with store.reading("read the signed-in user") as session:
        row = session.get(ReviewUser, user_id)
    if row is None or not row.active or _stamp(row) != stamp:
        return None
    return _user(row)
