"""Fixtures of the hardening tests: a private PostgreSQL cluster the fault tests may stop."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from .private_postgres import PrivatePostgres, pg_bin

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """Our own PostgreSQL (initdb in a temporary folder, a free loopback port), stopped at the end."""
    if pg_bin() is None:
        if os.environ.get("QC_SKIP_POSTGRES") == "1":
            pytest.skip("PostgreSQL server binaries are not installed (QC_SKIP_POSTGRES=1)")
        pytest.fail("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: apt-get install postgresql")
    server = PrivatePostgres.create()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_db(private_postgres: PrivatePostgres) -> str:
    """A fresh database on the private cluster, which is running when the test starts."""
    if not private_postgres.is_running():
        private_postgres.start()
    return private_postgres.create_database(f"qc_fault_{next(_databases)}")


@pytest.fixture
def own_orthanc(tmp_path, monkeypatch):
    """A short-lived Orthanc of this test (it may stop and restart it), with the credentials of
    the cloud in the environment (and no other DICOMweb settings)."""
    from tests.support import orthanc as orthanc_server

    if not orthanc_server.installed():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed")
    monkeypatch.setenv("QC_DICOMWEB_USER", orthanc_server.USER)
    monkeypatch.setenv("QC_DICOMWEB_PASSWORD", orthanc_server.PASSWORD)
    for name in ("QC_DICOMWEB_TOKEN", "QC_DICOMWEB_SECRET_BLOCK", "QC_DICOMWEB_ORTHANC"):
        monkeypatch.delenv(name, raising=False)
    server = orthanc_server.OrthancServer.on_free_ports(tmp_path / "orthanc")
    server.start()
    try:
        yield server
    finally:
        server.stop()
