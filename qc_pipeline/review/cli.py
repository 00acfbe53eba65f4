"""``qc-pipeline review ...``: serve the review app, manage its accounts, export the labels."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import click
from sqlalchemy.engine import make_url

from qc_pipeline.cli_common import DB_OPTION_HELP
from qc_pipeline.cli_common import fail as _fail
from qc_pipeline.config import default_lang, resolve_db_url

logger = logging.getLogger(__name__)

SECRET_ENV: Final = "QC_REVIEW_SECRET"
VIEWER_ENV: Final = "QC_REVIEW_VIEWER_URL"
SECRET_FILE: Final = "review-secret.key"


def _open_store(db_url: str | None, *, must_exist: bool = False):
    """The results store; with ``must_exist`` a SQLite file that does not exist is an error (a
    mistyped path must not become a new empty database that the command then reads or changes)."""
    from qc_pipeline.cli import db_url_for
    from qc_pipeline.errors import StoreError
    from qc_pipeline.store import ResultStore

    try:
        return ResultStore.open(db_url_for(db_url, read=True) if must_exist else resolve_db_url(db_url))
    except StoreError as exc:
        _fail(str(exc), "无法打开结果数据库")


def secret_path(db_url: str | None) -> Path:
    """Where the generated session key lives: beside a SQLite database, else in the data folder."""
    from qc_pipeline.store import default_data_dir

    url = resolve_db_url(db_url)
    if url:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            return Path(parsed.database).expanduser().resolve().parent / SECRET_FILE
    return default_data_dir() / SECRET_FILE


def session_secret(db_url: str | None) -> str:
    """``$QC_REVIEW_SECRET``, else the key stored in ``secret_path`` (made on first use, mode 0600).

    Never printed or logged. A stored key readable by group or others is refused.
    """
    if explicit := os.environ.get(SECRET_ENV):
        if len(explicit) < 32:
            _fail(f"${SECRET_ENV} must have at least 32 characters", f"环境变量 {SECRET_ENV} 至少需要 32 个字符", 2)
        return explicit
    path = secret_path(db_url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _fail(
                f"the session key {path} is readable by others: chmod 600 {path}",
                f"会话密钥文件 {path} 权限过宽，请执行 chmod 600",
                2,
            )
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            _fail(
                f"the session key {path} is too short: delete it to make a new one",
                f"会话密钥文件 {path} 无效，请删除后重试",
                2,
            )
        return key
    except OSError as exc:
        _fail(f"cannot write the session key {path}: {exc.strerror}; set ${SECRET_ENV}", "无法写入会话密钥文件", 1)
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fp:
        fp.write(key + "\n")
    logger.info("new session key written to %s", path)
    return key


@click.group(name="review")
def review() -> None:
    """Radiologist review of flagged studies: web app, accounts, labels. 人工复核：网页应用、账户、标注导出。"""


@review.command()
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on; one already in use is an error.",
)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False),
    help="Thresholds folder (limits shown beside metrics).",
)
@click.option(
    "--viewer-url",
    envvar=VIEWER_ENV,
    help="Imaging cloud viewer URL template, e.g. 'https://cloud/viewer?study={study_instance_uid}' "
    f"(default: ${VIEWER_ENV}).",
)
@click.option("--https-only", is_flag=True, help="Send the session cookie over HTTPS only (behind a TLS proxy).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=default_lang, help="Default page language.")
@click.option(
    "--session-hours",
    envvar="QC_REVIEW_SESSION_HOURS",
    type=click.FloatRange(0.25, 24),
    default=10.0,
    show_default=True,
    help="Absolute lifetime of a session: sign in again after it, whatever the activity "
    "(default: $QC_REVIEW_SESSION_HOURS).",
)
def serve(
    db_url: str | None,
    host: str,
    port: int,
    thresholds_dir: str | None,
    viewer_url: str | None,
    https_only: bool,
    lang: str,
    session_hours: float,
) -> None:
    """Serve the review web app. 启动人工复核网页应用。"""
    import uvicorn

    from qc_pipeline.errors import ConfigError
    from qc_pipeline.review.accounts import list_users
    from qc_pipeline.review.app import create_app
    from qc_pipeline.rules import load_thresholds

    try:
        # The rules and the site's eligibility window; not the checks' set (the app runs no checks).
        thresholds = load_thresholds(None if thresholds_dir is None else Path(thresholds_dir))
    except ConfigError as exc:
        _fail(str(exc), "质控阈值文件无效", 2)
    store = _open_store(db_url)
    secret = session_secret(db_url)
    if not list_users(store):
        click.echo("尚无账户 / no accounts yet: qc-pipeline review create-user NAME --role reviewer", err=True)
    from qc_pipeline.spotcheck.app import app_options
    from qc_pipeline.spotcheck.config import load_config

    try:
        spot_check = app_options(load_config())  # the blinded cross-region spot-check mode
    except ConfigError as exc:
        _fail(str(exc), "抽查配置无效", 2)
    app = create_app(
        store,
        thresholds,
        secret_key=secret,
        viewer_url=viewer_url,
        https_only=https_only,
        lang=lang,
        session_lifetime=dt.timedelta(hours=session_hours),
        **spot_check,
    )
    if _port_in_use(host, port):
        _fail(
            f"port {port} on {host} is already in use: stop the other server or pass --port",
            f"{host} 的端口 {port} 已被占用：请停止占用该端口的程序或用 --port 换一个端口",
        )
    click.echo(f"人工复核 / review app: http://{host}:{port}/  ({store.url})")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


def _read_password(password_stdin: bool) -> str:
    """The password from stdin, else asked twice at the terminal, in both languages (click's own
    confirmation prompt and its mismatch message are English only)."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    while True:
        first = str(click.prompt("密码 / password", hide_input=True))
        again = str(click.prompt("再次输入密码 / repeat the password", hide_input=True))
        if first == again:
            return first
        click.echo("两次输入的密码不一致，请重新输入 / the two passwords differ, try again", err=True)


def _port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound (another server holds it), checked before uvicorn
    starts so that the operator reads one line in both languages, not uvicorn's English error."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # uvicorn reports an unknown host itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


@review.command(name="create-user")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["reviewer", "qc_admin", "grader"]),
    required=True,
    help="reviewer 复核医师, qc_admin 质控管理员 or grader 抽查评分人 (sees its spot-check cases only).",
)
@click.option("--display-name", help="Name shown in the app and the history (e.g. 张医生).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (scripts).")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def create_user_cmd(
    username: str, role: str, display_name: str | None, password_stdin: bool, db_url: str | None
) -> None:
    """Add an account to the review app. 新建复核账户。"""
    from qc_pipeline.review.accounts import create_user

    password = _read_password(password_stdin)
    _account_change(
        db_url,
        lambda store: create_user(store, username, password, role=role, display_name=display_name),
        must_exist=False,
    )
    click.echo(f"已创建 / created: {username} ({role})")


@review.command(name="set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def set_password_cmd(username: str, password_stdin: bool, db_url: str | None) -> None:
    """Change a password; the user's sessions end. 修改密码（该用户的会话随即失效）。"""
    from qc_pipeline.review.accounts import set_password

    password = _read_password(password_stdin)
    _account_change(db_url, lambda store: set_password(store, username, password))
    click.echo(f"已修改 / changed: {username}")


@review.command(name="disable-user")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the account again.")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def disable_user_cmd(username: str, enable: bool, db_url: str | None) -> None:
    """Disable (or --enable) an account; its sessions end at once. 停用/启用账户。"""
    from qc_pipeline.review.accounts import set_active

    _account_change(db_url, lambda store: set_active(store, username, enable))
    click.echo(f"{'已启用 / enabled' if enable else '已停用 / disabled'}: {username}")


def _account_change(db_url: str | None, change: Callable[[Any], object], *, must_exist: bool = True) -> None:
    """Run ``change(store)``; a ReviewError (no such user, weak password) exits 2 with its message.
    Only a new account may create the database (the first one of a new installation)."""
    from qc_pipeline.review.errors import ReviewError

    store = _open_store(db_url, must_exist=must_exist)
    try:
        change(store)
    except ReviewError as exc:
        _fail(str(exc), exc.message_zh, 2)
    finally:
        store.close()


@review.command(name="users")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def users_cmd(db_url: str | None) -> None:
    """List the accounts. 列出账户。"""
    from qc_pipeline.review.accounts import list_users

    store = _open_store(db_url, must_exist=True)
    try:
        for u in list_users(store):
            state = "" if u["active"] else "  [停用 disabled]"
            click.echo(f"{u['username']:24} {u['role']:9} {u['display_name'] or ''}{state}")
    finally:
        store.close()


@review.command(name="export-labels")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write."
)
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def export_labels_cmd(out_path: Path, db_url: str | None) -> None:
    """Write the human decisions as a labelled CSV for AI training (format: qc_pipeline.review.labels).

    导出人工复核结论（CSV），供 AI 模型训练使用。
    """
    from qc_pipeline.errors import StoreError
    from qc_pipeline.review.labels import export_labels

    store = _open_store(db_url, must_exist=True)
    try:
        n = export_labels(store, out_path)
    except StoreError as exc:
        _fail(str(exc), "无法读取结果数据库")
    except OSError as exc:
        _fail(f"cannot write {out_path}: {exc.strerror}", f"无法写入 {out_path}")
    finally:
        store.close()
    click.echo(f"标注 / labels: {n} → {out_path}")
