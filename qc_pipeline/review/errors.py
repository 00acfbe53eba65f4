"""The review app's error: a bilingual message and the HTTP status it maps to."""

from __future__ import annotations

from qc_pipeline.errors import QCError


class ReviewError(QCError, ValueError):
    """A review action that cannot be done (bad input, a study claimed by someone else...).

    ``str()`` is the English message; ``message_zh`` the Chinese one; ``status`` the HTTP
    status the web app answers with (400 bad input, 404 unknown study, 409 conflict).
    """

    def __init__(self, message: str, message_zh: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message_zh = message_zh
        self.status = status
