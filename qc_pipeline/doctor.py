"""``qc-pipeline doctor``: is this installation ready to run? One check per line, each
problem with how to fix it (bilingual). Reads and probes only: it migrates, writes and
judges nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIN_FREE_GIB = 5.0
"""Free space the data directory needs, at least (the database and the scratch of a run)."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    en: str
    zh: str

    def line(self) -> str:
        mark = "ok     " if self.ok else "PROBLEM"
        return f"{mark} {self.name}: {self.zh} / {self.en}"


def _guard(name: str, func: Callable[[], Check]) -> Check:
    """A check that crashed is a problem, said in one line (never a traceback)."""
    try:
        return func()
    except Exception as exc:  # doctor reports, it does not fail
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        return Check(name, False, f"could not be checked: {reason}", f"无法检查：{reason}")


def check_thresholds(thresholds_dir: str | None) -> Check:
    from qc_pipeline.pipeline import load_pipeline_thresholds

    try:
        thresholds = load_pipeline_thresholds(thresholds_dir)
    except Exception as exc:  # ConfigError and its causes
        reason = " ".join(str(exc).split())[:300]
        return Check(
            "thresholds",
            False,
            f"{reason}; fix the YAML or point --thresholds at a valid folder",
            f"阈值文件无效：请修正 YAML 或用 --thresholds 指定有效目录（{reason}）",
        )
    return Check("thresholds", True, f"version {thresholds.version} loads", f"版本 {thresholds.version} 可加载")


def check_database(db_url: str | None) -> Check:
    from alembic.runtime.migration import MigrationContext

    from qc_pipeline.store.engine import default_db_url, make_engine, masked_url
    from qc_pipeline.store.schema import head_revision

    url = db_url or default_db_url()
    engine = make_engine(url)
    masked = masked_url(engine.url)
    database = engine.url.database
    if (
        engine.url.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not Path(database).exists()
    ):
        engine.dispose()  # connecting would create the file: doctor writes nothing
        return Check(
            "database",
            True,
            f"{masked} does not exist yet: the first run creates it",
            "数据库文件尚不存在：首次运行时自动创建",
        )
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        return Check(
            "database",
            False,
            f"{masked} cannot be reached ({reason}): check QC_DB_URL/--db, the password and that the server runs",
            f"无法连接数据库 {masked}：请检查 QC_DB_URL/--db、密码及数据库服务是否运行",
        )
    finally:
        engine.dispose()
    head = head_revision()
    if current == head:
        return Check(
            "database", True, f"{masked} reachable, migrations at head {head}", f"可连接，迁移已是最新（{head}）"
        )
    if current is None:
        return Check(
            "database",
            True,
            f"{masked} reachable, empty: the first run creates the tables",
            "可连接，尚无数据表：首次运行时自动创建",
        )
    return Check(
        "database",
        False,
        f"{masked} is at migration {current}, head is {head}: back it up, then any command that opens "
        "it (e.g. `qc-pipeline results`) migrates it to head",
        f"数据库迁移版本 {current} 落后于 {head}：请先备份，再运行任一打开数据库的命令（如 qc-pipeline results）自动迁移",
    )


def check_source(source: str) -> Check:
    from qc_pipeline.errors import QCError
    from qc_pipeline.sources import open_source

    try:
        open_source(source).check()
    except QCError as exc:
        reason = " ".join(str(exc).split())[:300]
        wrong_login = "refused the credentials" in reason
        fix_en = (
            "wrong user name or password: fix the DICOMweb credentials named above"
            if wrong_login
            else "check the path or URL and that it is reachable from this machine"
        )
        fix_zh = "用户名或密码错误：请改正 DICOMweb 凭据" if wrong_login else "请检查路径或地址，以及本机能否访问"
        return Check("source", False, f"{reason}; {fix_en}", f"数据源 {source} 不可用：{fix_zh}")
    return Check("source", True, f"{source} answers", f"{source} 可访问")


def check_models(models_dir: Path | None) -> Check:
    from qc_pipeline.ai.registry import MODELS_DIR_ENV, default_models_dir, load_registry

    directory = models_dir or default_models_dir()
    try:
        models = load_registry(directory)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:400]
        return Check(
            "models",
            False,
            f"{reason} (folder: ${MODELS_DIR_ENV} or {directory})",
            "AI 模型校验失败：请恢复模型文件或重新训练（qc-pipeline models train）",
        )
    return Check(
        "models",
        True,
        f"{len(models)} models in {directory} match their manifests",
        f"{len(models)} 个模型与清单哈希一致",
    )


def check_prefect(work_pool: str | None) -> Check:
    from prefect.settings import PREFECT_API_URL

    from qc_pipeline.cli import _prefect_api_problem

    url = PREFECT_API_URL.value()
    if not url:
        return Check(
            "prefect",
            True,
            "PREFECT_API_URL not set: `run` uses a temporary server; `serve` needs one",
            "未设置 PREFECT_API_URL：run 使用临时服务；serve 需要 Prefect 服务",
        )
    problem = _prefect_api_problem()
    if problem is not None:
        return Check("prefect", False, problem[0], problem[1])
    if work_pool:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                client.read_work_pool(work_pool)
            except ObjectNotFound:
                return Check(
                    "prefect",
                    False,
                    f"work pool {work_pool!r} does not exist at {url}: `prefect work-pool create {work_pool} --type process`",
                    f"工作池 {work_pool} 不存在：请运行 prefect work-pool create {work_pool} --type process",
                )
        return Check(
            "prefect", True, f"{url} answers, work pool {work_pool!r} exists", f"{url} 可访问，工作池 {work_pool} 存在"
        )
    return Check("prefect", True, f"{url} answers", f"{url} 可访问")


def check_disk(data_dir: Path | None, min_free_gib: float = MIN_FREE_GIB) -> Check:
    from qc_pipeline.store.engine import DATA_DIR_ENV, default_data_dir

    directory = data_dir or default_data_dir()
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    if free < min_free_gib:
        return Check(
            "disk",
            False,
            f"{free:.1f} GiB free under {directory} (< {min_free_gib:g}): free space or set ${DATA_DIR_ENV} elsewhere",
            f"数据目录 {directory} 仅剩 {free:.1f} GiB：请清理空间或将 {DATA_DIR_ENV} 指向其他磁盘",
        )
    return Check("disk", True, f"{free:.1f} GiB free under {directory}", f"剩余 {free:.1f} GiB")


def run_checks(
    *,
    source: str | None,
    db_url: str | None,
    thresholds_dir: str | None,
    models_dir: Path | None,
    work_pool: str | None,
    data_dir: Path | None = None,
    min_free_gib: float = MIN_FREE_GIB,
) -> list[Check]:
    checks = [
        _guard("thresholds", lambda: check_thresholds(thresholds_dir)),
        _guard("database", lambda: check_database(db_url)),
    ]
    if source:
        checks.append(_guard("source", lambda: check_source(source)))
    checks += [
        _guard("models", lambda: check_models(models_dir)),
        _guard("prefect", lambda: check_prefect(work_pool)),
        _guard("disk", lambda: check_disk(data_dir, min_free_gib)),
    ]
    return checks
