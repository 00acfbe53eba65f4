"""Notifications on failed runs: a Prefect automation that sends a message through a notification
block each time a qc-pipeline flow run ends Failed, Crashed or TimedOut.

Create the block once (any of Prefect's notification blocks: a custom webhook for WeCom or
DingTalk robots, Slack, Teams, e-mail with prefect-email), then::

    python -m flows.automations --block NAME

which replaces the automation of the same name (running it again is harmless).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from uuid import UUID

AUTOMATION_NAME = "qc-pipeline: failed run"
FLOW_TAG = "qc-pipeline"
"""Every deployment of deploy/prefect.yaml carries this tag."""
FAILED_EVENTS = frozenset({"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"})

BODY = (
    "质控流程运行失败 / qc-pipeline run failed\n"
    "{{ flow.name }} / {{ flow_run.name }}: {{ flow_run.state.name }}\n"
    "{{ flow_run.state.message }}\n"
    "{{ flow_run|ui_url }}"
)


def failed_run_automation(block_document_id: UUID):
    """The automation (not yet stored): the failed-run events of flows tagged qc-pipeline, each
    sent through the notification block ``block_document_id``."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Notify the operators when a qc-pipeline flow run fails · 质控流程运行失败时通知运维",
        trigger=EventTrigger(
            expect=set(FAILED_EVENTS),
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{FLOW_TAG}"},
            posture=Posture.Reactive,
            threshold=1,
            within=dt.timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id, subject="qc-pipeline: run failed / 质控流程运行失败", body=BODY
            )
        ],
    )


async def install(block_name: str) -> str:
    """Store the automation for the notification block ``block_name`` (replacing an older one of
    the same name); returns the automation's id. Raises ValueError naming a missing block."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        block = await _block_by_name(client, block_name)
        for old in await client.read_automations_by_name(AUTOMATION_NAME):
            await client.delete_automation(old.id)
        return str(await client.create_automation(failed_run_automation(block.id)))


async def _block_by_name(client, block_name: str):
    for block in await client.read_block_documents(include_secrets=False):
        if block.name == block_name and not block.is_anonymous:
            return block
    raise ValueError(
        f"no Prefect block named {block_name!r}: create the notification block first (see README, Production)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", required=True, help="name of the Prefect notification block to send through")
    args = parser.parse_args(argv)
    try:
        automation_id = asyncio.run(install(args.block))
    except ValueError as exc:
        print(f"错误 / error: {exc}")
        return 1
    print(f"automation {AUTOMATION_NAME!r} ({automation_id}) sends failed runs through block {args.block!r}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
