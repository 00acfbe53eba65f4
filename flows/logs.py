"""The pipeline's own log records (``qc_pipeline.*``) in the flow-run logs Prefect keeps.

Prefect 3 sends to its API only its run loggers and the loggers named in
``PREFECT_LOGGING_EXTRA_LOGGERS``, a setting read once, when Prefect configures logging at
import; a served or worker process may have imported Prefect before this package. So the flows
attach Prefect's API handler to the library logger themselves, once per process, in a form that
stays silent outside a flow run (Prefect's own warns on every record there).
"""

from __future__ import annotations

import logging
import sys

from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler

LIBRARY_LOGGER = "qc_pipeline"


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, silent for records logged outside a flow run."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], MissingContextError):
            return
        super().handleError(record)


def forward_library_logs() -> None:
    """Make the ``qc_pipeline`` loggers' INFO and above flow-run logs (idempotent)."""
    library = logging.getLogger(LIBRARY_LOGGER)
    for handler in list(library.handlers):  # PREFECT_LOGGING_EXTRA_LOGGERS' handler: one is enough
        if isinstance(handler, APILogHandler) and not isinstance(handler, RunLogHandler):
            library.removeHandler(handler)
    if not any(isinstance(h, RunLogHandler) for h in library.handlers):
        library.addHandler(RunLogHandler())
    if library.getEffectiveLevel() > logging.INFO:
        library.setLevel(logging.INFO)
