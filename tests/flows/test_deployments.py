"""The scheduled deployment definition."""

from __future__ import annotations

from flows.deployments import DEFAULT_INGEST_CRON, ingest_deployment


def test_ingest_deployment_has_a_cron_schedule():
    deployment = ingest_deployment("/data/incoming", cron="*/5 * * * *", timezone="Asia/Shanghai")
    assert deployment.name == "qc-ingest"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "*/5 * * * *"
    assert schedule.schedule.timezone == "Asia/Shanghai"
    assert deployment.parameters == {"source": "/data/incoming", "db_url": None, "thresholds_dir": None}
    assert DEFAULT_INGEST_CRON == "*/10 * * * *"
