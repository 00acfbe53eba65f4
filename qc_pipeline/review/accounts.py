"""Accounts of the review app: argon2id password hashes, roles, sign-in checks, sessions.

Passwords are hashed with argon2-cffi's ``PasswordHasher`` (argon2id, RFC 9106 low-memory
profile defaults); only the hash is stored. A hash made with older parameters is upgraded on the
next successful sign-in. The hash is verified outside any write transaction (it costs ~0.3 s of
CPU): sign-ins do not hold the SQLite write lock that claims and decisions wait for.

A new password must (``check_new_password``): have at least ``MIN_PASSWORD_LENGTH`` characters;
at least ``MIN_DISTINCT_CHARACTERS`` different characters (``aaaaaaaaaa`` is refused); characters
of at least two classes (lower-case letters, upper-case letters, digits, others: Chinese
characters and punctuation count as "others"); not be one of ``COMMON_PASSWORDS`` nor the user
name. That is the floor of MLPS 2.0 / 等保2.0 "身份鉴别" (complexity and length); sites that need
more set passwords through their own policy.

Sessions live on the server (``review_sessions``): the signed cookie carries a random session id
only. Signing out ends the session for good; every session ends ``session_lifetime`` after the
sign-in whatever the activity (absolute lifetime); a new password or a disabled account ends all
sessions of the user.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qc_pipeline.review.errors import ReviewError
from qc_pipeline.store import ResultStore
from qc_pipeline.store.review import ROLES, ReviewEvent, ReviewSession, ReviewUser

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH: Final = 10
MIN_DISTINCT_CHARACTERS: Final = 4
MIN_CHARACTER_CLASSES: Final = 2
COMMON_PASSWORDS: Final = frozenset(
    {
        "0123456789",
        "1234567890",
        "12345678910",
        "0987654321",
        "1111111111",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "a123456789",
        "abc1234567",
        "abcd123456",
        "admin12345",
        "admin123456",
        "administrator",
        "changeme123",
        "iloveyou12",
        "letmein123",
        "p@ssw0rd12",
        "passw0rd12",
        "password1",
        "password12",
        "password123",
        "password1234",
        "qazwsxedc123",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "qwertyuiop",
        "welcome123",
        "woaini1314",
        "5201314520",
        "zxcvbnm123",
        "asdfghjkl1",
        "aa12345678",
        "qq123456789",
        "1q2w3e4r5t6y",
    }
)
"""Passwords of ten characters or more among the most frequent ones of public breach lists
(SecLists ``10k-most-common``, and the Chinese lists of the 2011 CSDN leak): refused, case aside."""
SESSION_ROWS_KEPT: Final = dt.timedelta(days=90)
"""Session rows are deleted this long after their absolute end (the audit table keeps the events)."""
DEFAULT_SESSION_LIFETIME: Final = dt.timedelta(hours=10)
"""Absolute lifetime of a session (a working shift); the site sets its own with ``review serve
--session-hours`` (``$QC_REVIEW_SESSION_HOURS``)."""
MAX_FAILED_SIGN_INS: Final = 5
LOCKOUT: Final = dt.timedelta(minutes=15)
"""After ``MAX_FAILED_SIGN_INS`` failed sign-ins within ``LOCKOUT`` (and none accepted since), the
account refuses sign-in, right password or not, until the oldest of those failures is ``LOCKOUT``
old (the limit on illegal sign-in attempts of MLPS 2.0 / 等保2.0 "登录失败处理"). The failures are
read from the audit table, so the limit holds across restarts and worker processes; refused
attempts are recorded as ``sign_in_locked`` and do not extend it. A password set by a QC
administrator (``qc-pipeline review set-password``) ends the lockout."""
USERNAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,63}")  # fullmatch: no trailing newline
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
    client: str | None = None
    """The client address of the request (recorded in the audit trail); None off the web."""

    @property
    def is_admin(self) -> bool:
        return self.role == "qc_admin"

    @property
    def is_grader(self) -> bool:
        return self.role == "grader"

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


def _character_classes(password: str) -> int:
    return sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not (c.isascii() and c.isalnum()) for c in password),
        )
    )


def check_new_password(password: str, username: str | None = None) -> None:
    """Refuse a weak new password (the policy is in the module docstring)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ReviewError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}",
            f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符",
        )
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise ReviewError(
            f"the password must have at least {MIN_DISTINCT_CHARACTERS} different characters",
            f"密码至少需要 {MIN_DISTINCT_CHARACTERS} 个不同的字符",
        )
    if _character_classes(password) < MIN_CHARACTER_CLASSES:
        raise ReviewError(
            "the password must mix at least two of: lower-case letters, upper-case letters, digits, other characters",
            "密码须至少包含小写字母、大写字母、数字、其他字符中的两类",
        )
    if password.casefold() in COMMON_PASSWORDS or (username and password.casefold() == username.casefold()):
        raise ReviewError(
            "the password is one of the most common passwords (or the user name): choose another",
            "该密码过于常见（或与用户名相同），请另选",
        )


def create_user(
    store: ResultStore, username: str, password: str, *, role: str, display_name: str | None = None
) -> User:
    """Add an account. Raises ReviewError for a bad user name, role or password, or a taken name."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise ReviewError(
            f"user name {username!r} must be 2 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "用户名须为 2–64 个字母、数字或 . _ -，以字母或数字开头",
        )
    if role not in ROLES:
        raise ReviewError(f"role must be one of {', '.join(ROLES)}; got {role!r}", f"角色须为 {'、'.join(ROLES)}")
    check_new_password(password, username)
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
    check_new_password(password, username)
    with store.writing(f"set the password of {username}") as session:
        row = session.scalars(select(ReviewUser).where(ReviewUser.username == username)).one_or_none()
        if row is None:
            raise ReviewError(f"no user {username!r}", f"用户 {username} 不存在")
        row.password_hash = _hasher.hash(password)
        row.password_changed_at = _now()
        _end_sessions(session, row.id)
        session.add(ReviewEvent(at=_now(), user_id=row.id, username=username, event="password_changed"))


def set_active(store: ResultStore, username: str, active: bool) -> None:
    """Enable or disable an account (a disabled account's sessions stop working at once)."""
    with store.writing(f"change user {username}") as session:
        row = session.scalars(select(ReviewUser).where(ReviewUser.username == username)).one_or_none()
        if row is None:
            raise ReviewError(f"no user {username!r}", f"用户 {username} 不存在")
        row.active = active
        if not active:
            _end_sessions(session, row.id)
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


def valid_sign_in_name(username: str) -> bool:
    """Whether ``username`` could be an account's name at all (``USERNAME_PATTERN``): a name with a
    newline or another control character is refused before it reaches a log or the audit table."""
    return USERNAME_PATTERN.fullmatch(username) is not None


def _event(
    session: Session,
    event: str,
    *,
    username: str | None,
    user_id: int | None = None,
    client: str | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        ReviewEvent(at=_now(), user_id=user_id, username=username, event=event, client=_client(client), detail=detail)
    )


def _client(client: str | None) -> str | None:
    return None if client is None else client[:64]


def authenticate(store: ResultStore, username: str, password: str, *, client: str | None = None) -> User | None:
    """The user, when the name and password are right and the account is active; else None.

    Every attempt is recorded in the audit table with the client address (``sign_in`` /
    ``sign_in_failed`` / ``sign_in_locked``); a malformed name (``valid_sign_in_name``) is
    recorded without it. Raises :class:`SignInLocked` while the user name is locked out. The
    password is verified between two short transactions, never inside one.
    """
    if not valid_sign_in_name(username):
        with store.writing("sign in") as session:
            _event(session, "sign_in_failed", username=None, client=client, detail="malformed user name")
        logger.info("sign-in refused: malformed user name")
        return None
    now = _now()
    with store.reading("sign in") as session:
        until = _locked_until(session, username, now)
        row = session.scalars(select(ReviewUser).where(ReviewUser.username == username)).one_or_none()
    if until is not None:
        with store.writing("sign in") as session:
            _event(session, "sign_in_locked", username=username, client=client)
        logger.warning("sign-in refused for %s: locked out after %d failed attempts", username, MAX_FAILED_SIGN_INS)
        raise SignInLocked(max(1, -(-int((until - now).total_seconds()) // 60)))
    stored_hash = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored_hash, password)
        ok = row is not None and row.active
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    new_hash = _hasher.hash(password) if ok and _hasher.check_needs_rehash(stored_hash) else None
    with store.writing("sign in") as session:
        if new_hash is not None and row is not None:
            session.execute(  # unless the password changed meanwhile
                update(ReviewUser)
                .where(ReviewUser.id == row.id, ReviewUser.password_hash == stored_hash)
                .values(password_hash=new_hash)
            )
            row.password_hash = new_hash
        _event(
            session,
            "sign_in" if ok else "sign_in_failed",
            username=username,
            user_id=row.id if row is not None else None,
            client=client,
        )
    user = _user(row) if ok and row is not None else None
    logger.info("sign-in %s for %s", "accepted" if user else "refused", username)
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _end_sessions(session: Session, user_id: int) -> None:
    session.execute(
        update(ReviewSession)
        .where(ReviewSession.user_id == user_id, ReviewSession.ended_at.is_(None))
        .values(ended_at=_now())
    )


def start_session(
    store: ResultStore, user: User, *, lifetime: dt.timedelta = DEFAULT_SESSION_LIFETIME, client: str | None = None
) -> str:
    """A new server-side session of ``user``; returns its id (for the signed cookie only)."""
    token = secrets.token_urlsafe(32)
    now = _now()
    with store.writing("start a session") as session:
        session.execute(delete(ReviewSession).where(ReviewSession.expires_at < now - SESSION_ROWS_KEPT))
        session.add(
            ReviewSession(
                token_hash=_token_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=now + lifetime,
                client=_client(client),
            )
        )
    return token


def session_user(store: ResultStore, token: str, stamp: str, *, client: str | None = None) -> User | None:
    """The user of a live session: not ended, within its absolute lifetime, account active and
    password unchanged since the sign-in; else None."""
    now = _now()
    with store.reading("read the signed-in user") as session:
        found = session.execute(
            select(ReviewSession, ReviewUser)
            .join(ReviewUser, ReviewUser.id == ReviewSession.user_id)
            .where(ReviewSession.token_hash == _token_hash(token))
        ).one_or_none()
    if found is None:
        return None
    live, row = found
    if live.ended_at is not None or live.expires_at <= now or not row.active or _stamp(row) != stamp:
        return None
    return User(row.id, row.username, row.display_name, row.role, _stamp(row), client)


def end_session(store: ResultStore, token: str, user: User | None) -> None:
    """End a session for good (the cookie, replayed, is refused). With ``user``, a sign-out,
    audited ``logout``; without, the session a new sign-in in the same browser replaces."""
    with store.writing("end a session") as session:
        session.execute(
            update(ReviewSession)
            .where(ReviewSession.token_hash == _token_hash(token), ReviewSession.ended_at.is_(None))
            .values(ended_at=_now())
        )
        if user is not None:
            _event(session, "logout", username=user.username, user_id=user.id, client=user.client)
    if user is not None:
        logger.info("%s signed out", user.username)


def load_user(store: ResultStore, user_id: int, stamp: str) -> User | None:
    """The session's user, if the account is still active and its password unchanged."""
    with store.reading("read the signed-in user") as session:
        row = session.get(ReviewUser, user_id)
    if row is None or not row.active or _stamp(row) != stamp:
        return None
    return _user(row)
