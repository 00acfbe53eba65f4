"""The recognition API over a real loopback HTTP connection (uvicorn + httpx), as a hospital
system would call it: token required, wrong token refused, only the listed fields come back."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from qc_pipeline.recognition.api import PREFIX
from tests.recognition.conftest import ISSUER, PATIENT_ID, PATIENT_NAME, UID_PASS, Api, auth
from tests.recognition.test_api import STUDY_KEYS


@pytest.fixture
def base_url(api: Api) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):  # wait for the socket (a readiness loop, not a timed assertion)
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_lookup_over_http(api: Api, base_url: str) -> None:
    params = {"patient_id": PATIENT_ID, "issuer": ISSUER}
    with httpx.Client(base_url=base_url) as client:
        assert client.get(f"{PREFIX}/studies", params=params).status_code == 401
        assert client.get(f"{PREFIX}/studies", params=params, headers=auth("qcr_wrong")).status_code == 401
        response = client.get(f"{PREFIX}/studies", params=params, headers=auth(api.lookup))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    (study,) = response.json()["studies"]
    assert set(study) == STUDY_KEYS and study["study_instance_uid"] == UID_PASS
    assert PATIENT_NAME not in response.text and PATIENT_ID not in response.text
