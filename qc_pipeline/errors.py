"""The one place where qc-pipeline's exceptions are defined.

Each subclasses a built-in exception so callers can catch them generically. Messages name the
argument, file, key or tag involved, the value found and what was expected.
"""

from __future__ import annotations


class QCError(Exception):
    """Base class of every error raised by qc-pipeline."""


class ConfigError(QCError, ValueError):
    """A configuration or thresholds file is missing, malformed or inconsistent."""


class SourceError(QCError, OSError):
    """A study source cannot be reached or listed (folder missing, server down...).

    Raised for problems with the source as a whole. A single unreadable file is not an error:
    it becomes an ``integrity`` finding on its study.
    """


class StoreError(QCError, RuntimeError):
    """The results database cannot be opened, migrated or written."""


class DegenerateInputError(QCError, ValueError):
    """An array or header does not allow a metric to be computed (e.g. zero variance)."""


class NotApplicableError(DegenerateInputError):
    """A metric is undefined for this input by design (no rule for this body part, too few
    slices for a coverage along z), not because the input looks wrong."""


class ModelError(QCError, RuntimeError):
    """A model in ``models/`` is missing, corrupt (checksum), or does not match its manifest."""


class SpotCheckError(QCError, ValueError):
    """A spot-check request cannot be done as asked: bad period, unknown draw, a graded
    spreadsheet that does not match its draw, a grade out of the configured scale."""
