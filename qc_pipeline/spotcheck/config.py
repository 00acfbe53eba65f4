"""The spot-check configuration (``thresholds/spot_check/spot_check.yaml``): regions, reviewer
accounts and their region, sampling rates, grades. Institutions and their region are the
institution register's (``qc_pipeline.institutions``): one list for eligibility, reports and
spot checks.

Validated on load (unknown keys rejected, errors name the file, key and value); its ``config_hash``
(SHA-256 of the file's bytes) is recorded with every draw.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from qc_pipeline.errors import ConfigError
from qc_pipeline.institutions import (
    CODE_PATTERN,
    Institution,
    Region,
    Register,
    default_register,
    default_register_path,
)
from qc_pipeline.rules.loader import default_thresholds_dir, format_validation_error, read_yaml

logger = logging.getLogger(__name__)

CONFIG_ENV: Final = "QC_SPOT_CHECK_CONFIG"
CONFIG_RELATIVE: Final = Path("spot_check") / "spot_check.yaml"

StratumKey = Literal["region", "institution", "modality", "item", "verdict"]
SampledVerdict = Literal["pass", "review", "fail"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reviewer(_Strict):
    account: str = Field(min_length=1, max_length=128)
    """The review app's user name."""
    region: str


class Sampling(_Strict):
    strata: list[StratumKey] = Field(min_length=1)
    rates: dict[SampledVerdict, Annotated[float, Field(gt=0, le=1)]] = Field(min_length=1)
    minimum_per_stratum: int = Field(ge=0)
    minimum_keys: list[StratumKey]
    """The coarser strata the minimum applies to (a subset of ``strata``)."""
    second_reading_rate: float = Field(default=0.0, ge=0, le=1)
    source: str = Field(min_length=3)

    @field_validator("strata", "minimum_keys")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"a stratum key is listed twice: {value}")
        return value

    @model_validator(mode="after")
    def _minimum_keys_in_strata(self) -> Sampling:
        extra = [k for k in self.minimum_keys if k not in self.strata]
        if extra:
            raise ValueError(f"minimum_keys {extra} are not among the strata keys {self.strata}")
        return self


class Grade(_Strict):
    code: str = Field(min_length=1, max_length=8)
    label_en: str = Field(min_length=1)
    recognisable: bool


class Reason(_Strict):
    code: Annotated[str, Field(pattern=CODE_PATTERN)]
    label_zh: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


class SpotCheckConfig(_Strict):
    """The validated file. ``config_hash`` is set by :func:`load_config`."""

    version: str = Field(min_length=1)
    regions: list[Region] = Field(min_length=2)
    reviewers: list[Reviewer] = Field(min_length=2)
    sampling: Sampling
    grades: list[Grade] = Field(min_length=2)
    reasons: list[Reason] = Field(default_factory=list)
    config_hash: str = ""
    path: str = ""
    institution_register: Register | None = Field(default=None, exclude=True)
    """The institution register the draw resolves InstitutionName against (set by ``load_config``)."""

    @model_validator(mode="after")
    def _consistent(self) -> SpotCheckConfig:
        codes = [r.code for r in self.regions]
        _no_duplicates("regions[].code", codes)
        _no_duplicates("reviewers[].account", [r.account for r in self.reviewers])
        _no_duplicates("grades[].code", [g.code for g in self.grades])
        _no_duplicates("reasons[].code", [r.code for r in self.reasons])
        for r in self.reviewers:
            if r.region not in codes:
                raise ValueError(
                    f"reviewers[{r.account!r}].region: unknown region {r.region!r}; known: {', '.join(codes)}"
                )
        if self.institution_register is not None:
            for inst in self.institution_register.institutions:
                if inst.region not in codes:
                    raise ValueError(
                        f"institution {inst.name!r} of the register ({self.institution_register.path}): region "
                        f"{inst.region!r} is not among the spot-check regions ({', '.join(codes)})"
                    )
            for region in {i.region for i in self.institution_register.institutions}:
                if not any(r.region != region for r in self.reviewers):
                    raise ValueError(f"no reviewer outside region {region!r} can read its institutions' studies")
        if not any(g.recognisable for g in self.grades) or all(g.recognisable for g in self.grades):
            raise ValueError("grades: at least one grade must be recognisable and one not")
        return self

    @property
    def institutions(self) -> list[Institution]:
        """The register's institutions."""
        return [] if self.institution_register is None else list(self.institution_register.institutions)

    def institution(self, name: str | None) -> Institution | None:
        """The register's institution written ``name`` (its name or an alias; case, width and
        surrounding spaces ignored), or None."""
        return None if self.institution_register is None else self.institution_register.resolve(name)

    def region(self, code: str) -> Region:
        for r in self.regions:
            if r.code == code:
                return r
        raise ConfigError(f"unknown region {code!r}; known: {', '.join(r.code for r in self.regions)}")

    def reviewer_region(self, account: str) -> str | None:
        """The region of review account ``account``, or None when it is no spot-check reviewer."""
        for r in self.reviewers:
            if r.account == account:
                return r.region
        return None

    def grade(self, code: str) -> Grade | None:
        return next((g for g in self.grades if g.code == code.strip()), None)

    @property
    def grade_order(self) -> list[str]:
        """Grade codes best first (as listed): the ordinal scale of the weighted kappa."""
        return [g.code for g in self.grades]


def _no_duplicates(where: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{where}: {v!r} is listed twice")
        seen.add(v)


def default_config_path() -> Path:
    """``$QC_SPOT_CHECK_CONFIG``, else ``spot_check/spot_check.yaml`` in the thresholds folder."""
    if explicit := os.environ.get(CONFIG_ENV):
        return Path(explicit)
    return default_thresholds_dir() / CONFIG_RELATIVE


def load_config(path: str | Path | None = None, *, register: Register | None = None) -> SpotCheckConfig:
    """Read and validate the spot-check configuration with the institution register (``register``,
    default: the site's); ConfigError naming the file, key and value."""
    path = Path(path) if path is not None else default_config_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: the spot-check configuration cannot be read ({exc.strerror}); pass --config FILE or set {CONFIG_ENV}"
        ) from exc
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with regions, reviewers, sampling, grades")
    if "institutions" in data:
        raise ConfigError(
            f"{path}: institutions: they are kept in the institution register ({default_register_path()}), "
            "one list for eligibility, reports and spot checks; remove them here"
        )
    register = register if register is not None else default_register()
    try:
        config = SpotCheckConfig.model_validate({**data, "institution_register": register})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None
    digest = hashlib.sha256(raw).hexdigest()
    logger.debug("spot-check configuration %s (version %s, sha256 %s)", path, config.version, digest[:12])
    return config.model_copy(update={"config_hash": digest, "path": str(path)})
