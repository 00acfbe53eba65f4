"""A real Orthanc with its DICOMweb plugin on loopback, authentication on (one per session).

The server itself is ``tests.support.orthanc`` (shared with ``benchmarks/ingest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.orthanc import PASSWORD, USER, OrthancServer, installed

__all__ = ["PASSWORD", "USER", "OrthancServer"]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[OrthancServer]:
    if not installed():
        if os.environ.get("QC_SKIP_ORTHANC") == "1":
            pytest.skip("Orthanc is not installed (QC_SKIP_ORTHANC=1)")
        pytest.fail("Orthanc with its DICOMweb plugin is not installed: apt-get install orthanc orthanc-dicomweb")
    server = OrthancServer.on_free_ports(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cloud_credentials(monkeypatch):
    monkeypatch.setenv("QC_DICOMWEB_USER", USER)
    monkeypatch.setenv("QC_DICOMWEB_PASSWORD", PASSWORD)
    for name in ("QC_DICOMWEB_TOKEN", "QC_DICOMWEB_SECRET_BLOCK", "QC_DICOMWEB_ORTHANC"):
        monkeypatch.delenv(name, raising=False)
