"""Serve deployments until SIGTERM or SIGINT, then stop in seconds, without tracebacks.

``prefect.serve`` exits from inside its event loop on SIGTERM (``sys.exit`` in a signal
handler), which prints cancellation tracebacks, and pauses the deployments' schedules on the
way out. Here the runner is stopped through its own ``astop`` and its schedules stay active:
a service restart (systemd, a deploy) must not silently switch the QC centre's schedules off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

from prefect.deployments.runner import RunnerDeployment
from prefect.runner import Runner

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long the runner gets to stop (cancel its flow runs, stop polling)."""
LOOP_EXIT_S = 1.0
"""Then how long its loop gets to end by itself before it is cancelled: measured, the poller's
loop did not end within 5 s of ``astop``, and cancelling it then ended it at once, cleanly."""


async def aserve_until_signal(
    deployments: Sequence[RunnerDeployment], *, started: Callable[[], None] | None = None
) -> None:
    runner = Runner(pause_on_shutdown=False)
    for deployment in deployments:
        await runner.aadd_deployment(deployment)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    running = asyncio.create_task(runner.start())
    await asyncio.sleep(0)  # start() sets its own SIGTERM handler first: ours replace it
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if started is not None:
        started()
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() and not running.done():
            logger.info("stopping the runner")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.astop(), STOP_TIMEOUT_S)
            done, _ = await asyncio.wait({running}, timeout=LOOP_EXIT_S)
            if not done:
                running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        else:
            await running
    finally:
        stopping.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def serve_until_signal(deployments: Sequence[RunnerDeployment], *, started: Callable[[], None] | None = None) -> None:
    """Serve ``deployments`` in this process until SIGTERM/SIGINT (``started`` is called once serving)."""
    asyncio.run(aserve_until_signal(deployments, started=started))
