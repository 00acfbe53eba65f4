"""The register of institutions (``thresholds/institutions/institutions.yaml``).

Who an institution is (its name and the other spellings its uploads write in InstitutionName
(0008,0080), in Chinese and English), its level, region and ownership, and whether it is qualified
for recognition on a given day. The Yubei plan recognises the results of qualified institutions
only (具备互认资格的医疗机构, seed 002 §4(一)); the evaluation result is the entry condition (§6(二)).
Qualification is set by the latest biannual evaluation or by an administrator: each change is an
entry with the day it takes effect, so what held on a study's date can be answered later.

One register, used everywhere (eligibility, the evaluation report, spot checks, fees):

    register = load_register()
    inst = register.resolve("Sichuan Provincial People's Hospital")   # -> Institution | None
    inst.name                                # the canonical name: 四川省人民医院
    ok, reason = register.qualified_on(inst, dt.date(2026, 10, 3))      # reason: bilingual text

Kept apart from the thresholds version: editing the register changes no verdict, only the
eligibility computed when results are read.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import logging
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qc_pipeline.errors import ConfigError
from qc_pipeline.rules.loader import default_thresholds_dir, format_validation_error, read_yaml

logger = logging.getLogger(__name__)

REGISTER_ENV: Final = "QC_INSTITUTIONS"
REGISTER_RELATIVE: Final = Path("institutions") / "institutions.yaml"
CODE_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,31}$"


class QualificationStatus(enum.StrEnum):
    QUALIFIED = "qualified"
    """具备互认资格: its results may be recognised."""
    SUSPENDED = "suspended"
    """暂停互认: the evaluation failed or the health administration suspended it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Strict):
    code: Annotated[str, Field(pattern=CODE_PATTERN)]
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)


class Qualification(_Strict):
    """One change of an institution's qualification, in effect from ``since`` (inclusive)."""

    status: QualificationStatus
    since: dt.date
    basis: str = Field(min_length=3)
    """Why: the evaluation (period, result) or the administrator's decision (who, reference)."""


class Institution(_Strict):
    name: str = Field(min_length=1)
    """The canonical name (Chinese, as the institution writes it); what reports group by."""
    name_en: str = ""
    aliases: list[str] = Field(default_factory=list)
    """Other spellings seen in InstitutionName (the English name is one already)."""
    level: str = Field(min_length=1)
    """二级, 三级, 三级甲等 …"""
    region: str
    public: bool
    """Public (公立) institution: the storage-service fee rules apply to public institutions only."""
    qualification: list[Qualification] = Field(default_factory=list)
    """Changes of qualification, any order; the latest one in effect on a day decides."""

    @property
    def spellings(self) -> tuple[str, ...]:
        return tuple(n for n in (self.name, self.name_en, *self.aliases) if n)

    def qualification_on(self, day: dt.date) -> Qualification | None:
        """The entry in effect on ``day`` (the latest ``since`` on or before it), or None."""
        in_effect = [q for q in self.qualification if q.since <= day]
        return max(in_effect, key=lambda q: q.since) if in_effect else None


class Register(_Strict):
    """The validated register file. ``path`` and ``register_hash`` are set by :func:`load_register`."""

    version: str = Field(min_length=1)
    regions: list[Region] = Field(min_length=1)
    institutions: list[Institution] = Field(default_factory=list)
    path: str = ""
    register_hash: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Register:
        codes = [r.code for r in self.regions]
        _no_duplicates("regions[].code", codes)
        _no_duplicates(
            "institutions[].name/name_en/aliases", [_norm(n) for i in self.institutions for n in i.spellings]
        )
        for inst in self.institutions:
            if inst.region not in codes:
                raise ValueError(
                    f"institutions[{inst.name!r}].region: unknown region {inst.region!r}; known: {', '.join(codes)}"
                )
            _no_duplicates(
                f"institutions[{inst.name!r}].qualification[].since", [q.since.isoformat() for q in inst.qualification]
            )
        return self

    @functools.cached_property
    def _index(self) -> dict[str, Institution]:
        return {_norm(n): i for i in self.institutions for n in i.spellings}

    def __iter__(self) -> Iterator[Institution]:  # type: ignore[override]
        return iter(self.institutions)

    def resolve(self, name: str | None) -> Institution | None:
        """The institution written ``name`` (its name, English name or an alias; case, width and
        spaces ignored), or None when it is not in the register."""
        if not name:
            return None
        return self._index.get(_norm(name))

    def canonical(self, name: str | None) -> str:
        """The register's name for ``name``; the name as written ("" for none) when unknown."""
        inst = self.resolve(name)
        return inst.name if inst is not None else (name or "").strip()

    def region(self, code: str) -> Region:
        for r in self.regions:
            if r.code == code:
                return r
        raise ConfigError(f"unknown region {code!r}; known: {', '.join(r.code for r in self.regions)}")

    def qualification_check(self, institution: Institution | str | None, day: dt.date | None) -> QualificationCheck:
        """Whether the institution was qualified for recognition on ``day``, with a code and the
        reason in both languages.

        Never assumes: an institution not in the register, a study without a date, or no
        qualification in effect on the day are all "not qualified", each with its reason.
        """
        inst = self.resolve(institution) if isinstance(institution, str) or institution is None else institution
        if inst is None:
            written = institution if isinstance(institution, str) and institution.strip() else "(none)"
            return QualificationCheck(
                False,
                "institution.unregistered",
                None,
                f"institution not in the register: {written}",
                f"机构不在互认机构名录中：{written}",
            )
        if day is None:
            return QualificationCheck(
                False,
                "institution.study_date_unknown",
                inst,
                "study date unknown: the institution's qualification cannot be checked",
                "检查日期未知，无法确认机构的互认资格",
            )
        q = inst.qualification_on(day)
        if q is None:
            return QualificationCheck(
                False,
                "institution.no_qualification",
                inst,
                f"{inst.name} had no recognition qualification on {day.isoformat()}",
                f"{inst.name} 在 {day.isoformat()} 尚无互认资格记录",
            )
        since = q.since.isoformat()
        if q.status is QualificationStatus.QUALIFIED:
            return QualificationCheck(
                True,
                "institution.qualified",
                inst,
                f"{inst.name} is qualified for recognition since {since}",
                f"{inst.name} 具备互认资格（自 {since} 起）",
            )
        return QualificationCheck(
            False,
            "institution.not_qualified",
            inst,
            f"{inst.name} is not qualified for recognition since {since} ({q.basis})",
            f"机构不具备互认资格（自 {since} 起）：{q.basis}",
        )

    def qualified_on(self, institution: Institution | str | None, day: dt.date | None) -> tuple[bool, str]:
        """``(qualified, reason)`` on ``day``; the reason is bilingual ("中文 / English").
        See :meth:`qualification_check`."""
        check = self.qualification_check(institution, day)
        return check.qualified, f"{check.message_zh} / {check.message}"


@dataclass(frozen=True, slots=True)
class QualificationCheck:
    """What :meth:`Register.qualification_check` found."""

    qualified: bool
    code: str
    """``institution.qualified``, ``.unregistered``, ``.not_qualified``, ``.no_qualification``,
    ``.study_date_unknown``."""
    institution: Institution | None
    message: str
    message_zh: str


def _no_duplicates(where: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{where}: {v!r} is listed twice")
        seen.add(v)


def _norm(name: str) -> str:
    """NFKC (full-width letters and brackets), case-folded, runs of spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def default_register_path() -> Path:
    """``$QC_INSTITUTIONS``, else ``institutions/institutions.yaml`` in the thresholds folder."""
    if explicit := os.environ.get(REGISTER_ENV):
        return Path(explicit)
    return default_thresholds_dir() / REGISTER_RELATIVE


def load_register(path: str | Path | None = None) -> Register:
    """Read and validate the register; ConfigError naming the file, key and value."""
    path = Path(path) if path is not None else default_register_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: the institution register cannot be read ({exc.strerror}); set {REGISTER_ENV} to its file"
        ) from exc
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with version, regions, institutions")
    try:
        register = Register.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None
    digest = hashlib.sha256(raw).hexdigest()
    logger.debug("institution register %s (version %s, sha256 %s)", path, register.version, digest[:12])
    return register.model_copy(update={"path": str(path), "register_hash": digest})


@dataclass(frozen=True, slots=True)
class _Cached:
    key: tuple[str, int, int]
    register: Register


_cache: list[_Cached] = []


def default_register() -> Register:
    """The default register, read again when its file changes (size or modification time)."""
    path = default_register_path()
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_register(path)  # raises the ConfigError that names the file
    if _cache and _cache[0].key == key:
        return _cache[0].register
    register = load_register(path)
    _cache[:] = [_Cached(key, register)]
    return register


def resolve(name: str | None) -> Institution | None:
    """:meth:`Register.resolve` on the default register."""
    return default_register().resolve(name)


def qualified_on(institution: Institution | str | None, day: dt.date | None) -> tuple[bool, str]:
    """:meth:`Register.qualified_on` on the default register."""
    return default_register().qualified_on(institution, day)
