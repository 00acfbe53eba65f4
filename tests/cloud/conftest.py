"""A real Orthanc with its DICOMweb plugin on loopback, authentication on (one per session)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "qc", "orthanc-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OrthancServer:
    directory: Path
    http_port: int
    dicom_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def start(self) -> None:
        config = {
            "Name": "qc-test",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "StableAge": 1,
            "HttpCompressionEnabled": False,
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        path = self.directory / "orthanc.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen([ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.dicomweb}/studies", auth=(USER, PASSWORD), timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not start; see {self.directory / 'orthanc.log'}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)  # wait: a second Orthanc on the same index must not overlap
            self.process = None

    def upload(self, paths: list[Path]) -> None:
        """STOW-RS, as hospitals' gateways upload."""
        import pydicom
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        session.auth = (USER, PASSWORD)
        client = DICOMwebClient(self.dicomweb, session=session)
        client.store_instances([pydicom.dcmread(p) for p in paths])

    def clear(self) -> None:
        for study in requests.get(f"{self.base}/studies", auth=(USER, PASSWORD), timeout=10).json():
            requests.delete(f"{self.base}/studies/{study}", auth=(USER, PASSWORD), timeout=10)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[OrthancServer]:
    if not Path(PLUGIN).exists() or not Path(ORTHANC).exists():
        if os.environ.get("QC_SKIP_ORTHANC") == "1":
            pytest.skip("Orthanc is not installed (QC_SKIP_ORTHANC=1)")
        pytest.fail("Orthanc with its DICOMweb plugin is not installed: apt-get install orthanc orthanc-dicomweb")
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"), free_port(), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cloud_credentials(monkeypatch):
    monkeypatch.setenv("QC_DICOMWEB_USER", USER)
    monkeypatch.setenv("QC_DICOMWEB_PASSWORD", PASSWORD)
