"""A private PostgreSQL cluster on a free loopback port, for tests that stop and restart the
database (the machine's shared PostgreSQL is never touched: other tests run against it).

``initdb`` and ``pg_ctl`` from /usr/lib/postgresql/*/bin; when running as root the cluster is
made and run as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.orthanc import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser: cannot run initdb as the postgres user")
    return [runuser, "-u", "postgres", "--"]


@dataclass
class PrivatePostgres:
    bin_dir: Path
    directory: Path
    port: int

    @classmethod
    def create(cls) -> PrivatePostgres:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")
        directory = Path(tempfile.mkdtemp(prefix="qc-private-pg-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        server = cls(bin_dir, directory, free_port())
        server._run(
            "initdb",
            "-D",
            str(server.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        )
        return server

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*_as_postgres(), str(self.bin_dir / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def is_running(self) -> bool:
        result = subprocess.run(
            [*_as_postgres(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"], capture_output=True
        )
        return result.returncode == 0

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        user = "postgres" if password is None else f"postgres:{password}"
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        if self.is_running():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
