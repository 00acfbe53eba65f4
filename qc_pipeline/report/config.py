"""``thresholds/evaluation/qualification.yaml``: the qualification rule and the fee schemes.

Validated on load like every file of ``thresholds/`` (unknown keys rejected; errors name the file,
key and value). Kept apart from the rule files so that it does not enter the thresholds version.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qc_pipeline.domain import Category
from qc_pipeline.errors import ConfigError
from qc_pipeline.rules.loader import default_thresholds_dir, format_validation_error, read_yaml

EVALUATION_DIR: Final = "evaluation"
QUALIFICATION_FILE: Final = "qualification.yaml"
MODALITY_GROUPS: Final = ("DR", "CT", "MR")

Percent = Annotated[Decimal, Field(ge=0, le=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CriticalCategory(_Strict):
    category: Category
    max_fail_percent: Percent
    """Largest share (percent of judged studies) with a fail finding in the category that still qualifies."""


class QualificationRule(_Strict):
    min_judged_studies: Annotated[int, Field(ge=1)]
    min_pass_rate_percent: Percent
    critical_categories: list[CriticalCategory] = Field(default_factory=list)
    use_radiologist_decisions: bool = True
    source: str = Field(min_length=3)


class FeeScheme(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    name_zh: str
    name_en: str
    yuan_per_exam: Annotated[Decimal, Field(ge=0)]
    modalities: list[str] = Field(min_length=1)
    source: str = Field(min_length=3)

    @field_validator("modalities")
    @classmethod
    def _known_modalities(cls, value: list[str]) -> list[str]:
        value = [v.strip().upper() for v in value]
        unknown = sorted(set(value) - set(MODALITY_GROUPS))
        if unknown:
            raise ValueError(f"unknown modality {', '.join(unknown)}: use {', '.join(MODALITY_GROUPS)}")
        return value


class FeeRules(_Strict):
    max_upload_delay_h: Annotated[float, Field(gt=0)]
    """The upload time limit shown in the timeliness table (not a fee criterion)."""
    not_retrievable_codes: list[str] = Field(min_length=1)
    no_images_codes: list[str] = Field(min_length=1)
    no_report_codes: list[str] = Field(default_factory=list)
    public_only: bool = True
    schemes: list[FeeScheme] = Field(min_length=1)


class AiDrift(_Strict):
    """The control chart of the AI rules' weekly flagged share (``qc_pipeline.report.drift``)."""

    sigmas: Annotated[float, Field(gt=0)] = 3.0
    min_series_per_week: Annotated[int, Field(ge=1)] = 10
    min_baseline_series: Annotated[int, Field(ge=1)] = 50
    source: str = Field(default="site default [D]: Shewhart p-chart, 3-sigma limits", min_length=3)


class EvaluationConfig(_Strict):
    version: str
    qualification: QualificationRule
    fees: FeeRules
    ai_drift: AiDrift = AiDrift()


def evaluation_config_path(thresholds_dir: Path | None = None) -> Path:
    return Path(thresholds_dir or default_thresholds_dir()) / EVALUATION_DIR / QUALIFICATION_FILE


def load_evaluation_config(thresholds_dir: Path | None = None) -> EvaluationConfig:
    """The qualification rule and fee schemes; ConfigError naming the file and key when invalid."""
    path = evaluation_config_path(thresholds_dir)
    if not path.is_file():
        raise ConfigError(f"{path} is missing: it holds the qualification rule and the fee schemes of the report")
    data = read_yaml(path)
    try:
        config = EvaluationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None
    ids = [s.id for s in config.fees.schemes]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: fees.schemes: scheme ids must be unique (found {', '.join(ids)})")
    return config
