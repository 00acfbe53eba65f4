"""The negative list (Yubei plan §4(三)): the ten reasons a receiving doctor may re-examine despite
a recognisable result, read from ``thresholds/evaluation/negative_list.yaml``.

They are reasons about a receiving visit, recorded with ``record_non_recognition`` of
``qc_pipeline.store.review``; they do not change the study's verdict or eligibility.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qc_pipeline.errors import ConfigError
from qc_pipeline.rules.loader import default_thresholds_dir, format_validation_error, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NegativeReason(_Strict):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=48)]
    number: Annotated[int, Field(ge=1, le=10)]
    zh: str = Field(min_length=2)
    en: str = Field(min_length=2)
    note_required: bool = False


class NegativeList(_Strict):
    version: str
    source: str = Field(min_length=3)
    reasons: list[NegativeReason] = Field(min_length=1)

    def get(self, code: str) -> NegativeReason | None:
        return next((r for r in self.reasons if r.code == code), None)


def negative_list_path(thresholds_dir: Path | None = None) -> Path:
    return Path(thresholds_dir or default_thresholds_dir()) / "evaluation" / "negative_list.yaml"


@cache
def load_negative_list(thresholds_dir: Path | None = None) -> NegativeList:
    path = negative_list_path(thresholds_dir)
    data = read_yaml(path)
    try:
        value = NegativeList.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None
    codes, numbers = [r.code for r in value.reasons], [r.number for r in value.reasons]
    if len(set(codes)) != len(codes) or len(set(numbers)) != len(numbers):
        raise ConfigError(f"{path}: reasons: codes and numbers must be unique")
    return value
