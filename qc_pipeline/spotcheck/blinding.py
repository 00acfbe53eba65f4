"""Pseudonyms and the blinded view of a drawn study: what a spot-check reviewer may see.

Pseudonyms are keyed HMAC-SHA-256 of the identifier (PS3.15 E.3.1: a replacement value that is
consistent for the same input and cannot be reversed without the key). The key comes from
``$QC_PSEUDONYM_KEY``, else from a file ``pseudonym.key`` (mode 0600) generated next to the
SQLite results database (or in the data directory for a server database).

What reviewers see follows the PS3.15 Basic Application Level Confidentiality Profile (Table
E.1-1) with the *Retain Patient Characteristics* option (sex and age kept) and without the
*Retain Longitudinal Temporal Information* option (dates removed); ``BLINDED_ATTRIBUTES`` lists
every attribute and its action. Institution, machine verdict, findings and AI scores are not in
:class:`BlindCase` at all: pages and spreadsheets are built from it only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from qc_pipeline.errors import ConfigError
from qc_pipeline.store.engine import default_data_dir

logger = logging.getLogger(__name__)

KEY_ENV: Final = "QC_PSEUDONYM_KEY"
KEY_FILE: Final = "pseudonym.key"
MIN_KEY_CHARS: Final = 32

BLINDED_ATTRIBUTES: Final[tuple[tuple[str, str, str], ...]] = (
    # (attribute, PS3.15 action code, what the spot check does)
    ("Patient's Name (0010,0010)", "Z", "removed"),
    ("Patient ID (0010,0020)", "Z→U", "replaced by a keyed pseudonym (P-…)"),
    ("Patient's Birth Date (0010,0030)", "Z", "removed; an age band is kept (Retain Patient Characteristics)"),
    ("Patient's Sex (0010,0040)", "K", "kept (Retain Patient Characteristics)"),
    ("Study Instance UID (0020,000D)", "U", "replaced by the case code (CJ-…); never shown"),
    ("Accession Number (0008,0050)", "Z", "removed"),
    ("Study Date/Time (0008,0020/0030)", "Z", "removed (no Retain Longitudinal Temporal option)"),
    ("Institution Name (0008,0080)", "X", "removed; the region is never shown either"),
    ("Study Description (0008,1030)", "X", "removed (free text); the recognition item is shown instead"),
    ("machine verdict, findings, metrics, AI scores", "—", "not part of the blinded case"),
)


def pseudonym_key(db_url: str | None = None) -> bytes:
    """The HMAC key: ``$QC_PSEUDONYM_KEY``, else ``pseudonym.key`` beside the SQLite database (or
    in the data directory), created with 32 random bytes and mode 0600 on first use."""
    if value := os.environ.get(KEY_ENV):
        if len(value) < MIN_KEY_CHARS:
            raise ConfigError(
                f"${KEY_ENV} has {len(value)} characters; use at least {MIN_KEY_CHARS} random ones "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return value.encode("utf-8")
    path = key_path(db_url)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            logger.info("generated the pseudonym key %s (mode 0600); keep it with the database backups", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}): chmod 600 {path}")
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"{path} holds {len(key)} characters; expected a key of at least {MIN_KEY_CHARS}")
    return key.encode("ascii")


def key_path(db_url: str | None) -> Path:
    """Where the generated key lives: beside a SQLite file, else in the data directory."""
    if db_url:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).expanduser().resolve().parent / KEY_FILE
    return default_data_dir() / KEY_FILE


def _token(key: bytes, purpose: str, value: str, length: int) -> str:
    digest = hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:length]


def case_code(key: bytes, study_instance_uid: str) -> str:
    """``CJ-XXXX-XXXX`` (抽检): what reviewers call a drawn study (40 bits of HMAC, base32)."""
    token = _token(key, "case", study_instance_uid, 8)
    return f"CJ-{token[:4]}-{token[4:]}"


def patient_pseudonym(key: bytes, patient_id: str | None, study_instance_uid: str) -> str:
    """``P-XXXXXXXXXX``, the same for the same patient ID (a study without one gets its own)."""
    value = f"id:{patient_id}" if patient_id else f"study:{study_instance_uid}"
    return "P-" + _token(key, "patient", value, 10)


def age_band(birth_date: dt.date | None, study_date: dt.date | None) -> str | None:
    """The patient's age at the exam in decades (``40-49``; ``<1`` for infants; ``90+``)."""
    if birth_date is None or study_date is None or birth_date > study_date:
        return None
    years = (
        study_date.year - birth_date.year - ((study_date.month, study_date.day) < (birth_date.month, birth_date.day))
    )
    if years < 1:
        return "<1"
    if years >= 90:
        return "90+"
    low = years // 10 * 10
    return f"{max(low, 1)}-{low + 9}"


@dataclass(frozen=True, slots=True)
class BlindCase:
    """A drawn study as a reviewer sees it: no institution, region, verdict, findings or scores."""

    case_code: str
    patient_pseudonym: str
    modality: str | None
    item_code: str | None
    item_name_zh: str | None
    item_name_en: str | None
    patient_sex: str | None
    age_band: str | None
    n_series: int
    n_instances: int
    period: str
    reviewer: str
    reading: int
    assignment_id: int
