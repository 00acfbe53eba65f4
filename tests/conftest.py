"""Shared fixtures: one Prefect test harness per session, isolated Prefect home."""

from __future__ import annotations

import os
import tempfile

# Before Prefect is imported anywhere: keep the developer's ~/.prefect out of the tests.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="qc-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
# Subprocesses in ephemeral mode start Prefect's temporary server; its first start on this new
# PREFECT_HOME migrates a database, which can pass Prefect's 20 s default on a busy CI machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (~20 s to start: started once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
