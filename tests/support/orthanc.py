"""A real Orthanc with its DICOMweb plugin on loopback, authentication on: the imaging cloud of the
tests and benchmarks (Debian packages ``orthanc orthanc-dicomweb``).

Loopback only (``RemoteAccessAllowed: false``), random free ports, its own storage folder; HTTP
compression off (gzip made a 7 MB study 5-15x slower). Stop waits for the process to exit, so a
second Orthanc on the same storage never overlaps the first ("database is locked").
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

ORTHANC: Final = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN: Final = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER: Final = "qc"
PASSWORD: Final = "orthanc-test-password"
START_TIMEOUT_S: Final = 30.0


def installed() -> bool:
    """Whether the Orthanc binary and its DICOMweb plugin are on this machine."""
    return Path(ORTHANC).exists() and Path(PLUGIN).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OrthancServer:
    """One Orthanc process; ``start()``/``stop()`` may be called again (same storage, same ports)."""

    directory: Path
    http_port: int
    dicom_port: int
    stable_age_s: int = 1
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_free_ports(cls, directory: Path, *, stable_age_s: int = 1) -> OrthancServer:
        return cls(Path(directory), free_port(), free_port(), stable_age_s=stable_age_s)

    @property
    def base(self) -> str:
        """The REST API root."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, PASSWORD)

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
            "StableAge": self.stable_age_s,
            "HttpCompressionEnabled": False,
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "orthanc.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        with (self.directory / "orthanc.log").open("ab") as log:
            self.process = subprocess.Popen([ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.dicomweb}/studies", auth=self.auth, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not start; see {self.directory / 'orthanc.log'}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)  # wait: a second Orthanc on the same index must not overlap
            self.process = None

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.base}{path}", auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def upload(self, paths: Iterable[Path]) -> None:
        """STOW-RS, as hospitals' gateways upload."""
        import pydicom
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        session.auth = self.auth
        client = DICOMwebClient(self.dicomweb, session=session)
        client.store_instances([pydicom.dcmread(p) for p in paths])

    def clear(self) -> None:
        for study in self.get("/studies"):
            requests.delete(f"{self.base}/studies/{study}", auth=self.auth, timeout=30).raise_for_status()

    def study_ids(self) -> list[str]:
        """Orthanc's ids of the stored studies."""
        return list(self.get("/studies"))

    def wait_until_stable(self, timeout_s: float = 30.0) -> None:
        """Poll until every stored study is stable (``StableAge`` seconds after its last instance)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pending = [s for s in self.study_ids() if not self.get(f"/studies/{s}")["IsStable"]]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} studies still not stable after {timeout_s:g} s")
            time.sleep(0.2)

    def disk_size_bytes(self) -> int:
        """Bytes of DICOM stored (all studies)."""
        return int(self.get("/statistics")["TotalDiskSize"])
