"""``qc-pipeline recognition ...``: the hospital systems' tokens, and serving the recognition API."""

from __future__ import annotations

import logging

import click

from qc_pipeline.review.cli import DB_OPTION_HELP, _fail, _open_store, _port_in_use
from qc_pipeline.store.recognition import SCOPES

logger = logging.getLogger(__name__)


@click.group(name="recognition")
def recognition() -> None:
    """Recognition API for hospital systems: tokens, server. 互认查询接口：令牌与服务。"""


@recognition.group(name="token")
def token() -> None:
    """Create or revoke a hospital system's token. 创建或吊销医院系统的访问令牌。"""


@token.command(name="create")
@click.option("--system", "name", required=True, help="Name of the hospital system (e.g. his-b); unique.")
@click.option("--institution", required=True, help="The system's institution, as in the institution register.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(list(SCOPES)),
    default=("lookup",),
    show_default=True,
    help="lookup: read recognisable studies; events: post recognition events. Repeatable.",
)
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def create_cmd(name: str, institution: str, scopes: tuple[str, ...], db_url: str | None) -> None:
    """Make a token and print it once (only its SHA-256 is stored). 创建令牌（仅显示一次）。"""
    from qc_pipeline.institutions import default_register
    from qc_pipeline.store.recognition import create_token

    registered = default_register().resolve(institution)
    if registered is None:
        _fail(f"{institution!r} is not in the institution register", f"{institution} 不在互认机构名录中", 2)
    store = _open_store(db_url)
    try:
        with store.writing("create a recognition API token") as session:
            made = create_token(session, name=name, institution=registered.name, scopes=scopes)
    except ValueError as exc:
        _fail(str(exc), "无法创建令牌", 2)
    finally:
        store.close()
    click.echo(
        f"令牌仅显示这一次，请妥善保存 / the token is shown this once only ({name}, {registered.name}, "
        f"{' '.join(sorted(set(scopes)))}):",
        err=True,
    )
    click.echo(made)


@token.command(name="revoke")
@click.argument("name")
@click.option("--db", "db_url", help=DB_OPTION_HELP)
def revoke_cmd(name: str, db_url: str | None) -> None:
    """Revoke a system's token at once. 立即吊销令牌。"""
    from qc_pipeline.store.recognition import revoke_token

    store = _open_store(db_url, must_exist=True)
    try:
        with store.writing("revoke a recognition API token") as session:
            done = revoke_token(session, name)
    finally:
        store.close()
    if not done:
        _fail(f"no live token named {name!r}", f"没有名为 {name} 的有效令牌")
    click.echo(f"已吊销 / revoked: {name}")


@recognition.command()
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8010, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option(
    "--viewer-url",
    envvar="QC_VIEWER_URL_TEMPLATE",
    help="Viewer URL template with {study_instance_uid} / {accession_number} (default: $QC_VIEWER_URL_TEMPLATE).",
)
@click.option(
    "--calls-per-minute",
    default=60,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Calls allowed per token per minute.",
)
def serve(db_url: str | None, host: str, port: int, viewer_url: str | None, calls_per_minute: int) -> None:
    """Serve the recognition API beside the review app. 启动互认查询接口。"""
    import uvicorn

    from qc_pipeline.recognition.api import create_recognition_app

    store = _open_store(db_url)
    app = create_recognition_app(store, viewer_url_template=viewer_url, calls_per_minute=calls_per_minute)
    if _port_in_use(host, port):
        _fail(
            f"port {port} on {host} is already in use: pass --port",
            f"{host} 的端口 {port} 已被占用：请用 --port 换一个端口",
        )
    click.echo(f"互认查询接口 / recognition API: http://{host}:{port}/api/recognition/v1  ({store.url})")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
