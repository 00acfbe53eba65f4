"""Schema of the files in ``thresholds/``: validated on load, unknown keys rejected."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qc_pipeline.domain import Severity

RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
MODEL_PIN_PATTERN = r"^[a-z][a-z0-9_]*@[^@+\s]+\+[0-9a-f]{64}$"
"""``name@version+sha256`` of an ONNX model (the full sha256 of its file)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Evidence(_Strict):
    """What an AI score rule is worth, as measured (``qc-pipeline models evaluate``) with one model:
    the figures the gate of its file (:class:`Gate`) judges. A figure that was not measured is None
    and clears no gate."""

    model_pin: str = Field(pattern=MODEL_PIN_PATTERN)
    """The model the figures were measured with (must be the rule's ``model_pin``)."""
    evaluated: str = Field(min_length=3)
    """How and when: the command, the date, the images (held-out sources, folds)."""
    auc_lower_95: Annotated[float, Field(ge=0, le=1)] | None = None
    """Lower bound of the 95 % interval of the ROC AUC on real held-out images (worst fold)."""
    false_flag_upper_95: Annotated[float, Field(ge=0, le=1)] | None = None
    """Upper bound of the exact 95 % interval of the share of clean real images flagged at the
    limit, counted over distinct images (not crops)."""
    ai_only_catches: Annotated[int, Field(ge=0)] | None = None
    """Faulty real images the rule flags that no objective rule flags."""
    effective_n: Annotated[int, Field(ge=0)] | None = None
    """Distinct real images behind the figures (crops of one image count once)."""
    note: str | None = None


class Gate(_Strict):
    """What the evidence of an AI score rule must clear for the rule to be enabled."""

    auc_lower_95_min: Annotated[float, Field(ge=0, le=1)]
    false_flag_upper_95_max: Annotated[float, Field(ge=0, le=1)]
    ai_only_catches_min: Annotated[int, Field(ge=0)]
    source: str = Field(min_length=3)

    def failures(self, rule: Rule) -> list[str]:
        """Why ``rule`` may not be enabled under this gate (empty: it may)."""
        if rule.duplicate_of is not None:
            return [f"its label is defined by the objective rule {rule.duplicate_of!r} (duplicate_of)"]
        if rule.model_pin is None:
            return ["it is not pinned to the model it was evaluated with (model_pin)"]
        evidence = rule.evidence
        if evidence is None:
            return ["it has no evidence"]
        problems = []
        if evidence.model_pin != rule.model_pin:
            problems.append(f"its evidence was measured with {evidence.model_pin}, not the pinned {rule.model_pin}")
        checks = (
            ("AUC lower 95 % bound", evidence.auc_lower_95, self.auc_lower_95_min, ">="),
            ("false-flag upper 95 % bound", evidence.false_flag_upper_95, self.false_flag_upper_95_max, "<="),
            ("AI-only catches", evidence.ai_only_catches, self.ai_only_catches_min, ">="),
        )
        for name, value, bound, relation in checks:
            if value is None:
                problems.append(f"{name} not measured (gate {relation} {bound:g})")
            elif (value < bound) if relation == ">=" else (value > bound):
                problems.append(f"{name} {value:g} fails the gate {relation} {bound:g}")
        return problems


class Rule(_Strict):
    """One limit or requirement, with where it comes from.

    ``limit`` is a number (in ``units``) or absent for presence/validity rules. ``source`` names a
    standard's clause, the seed document, or "site default" with who signed it off.
    """

    id: Annotated[str, Field(pattern=RULE_ID_PATTERN)]
    severity: Severity
    units: str
    source: str = Field(min_length=3)
    description: str = Field(min_length=3)
    limit: float | None = None
    enabled: bool = True
    metric: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
    """For a limit on a measured metric (``image_quality``): the metric id it applies to."""
    when: Literal["above", "below"] | None = None
    """With ``metric``: the rule fires when the value is above (or below) the limit."""
    modalities: list[str] = Field(default_factory=list)
    """With ``metric``: DICOM modalities the rule applies to (empty: all that report the metric)."""
    per_item: dict[str, float] = Field(default_factory=dict)
    """With ``metric``: a different limit for some recognition items, by item code (``YB-036``)."""
    model_pin: str | None = Field(default=None, pattern=MODEL_PIN_PATTERN)
    """With an AI score ``metric`` (``ai.<model>.<label>``): ``name@version+sha256`` of the model the
    rule was evaluated with; a different model loaded turns the rule off (``ai.model.pin_mismatch``)."""
    evidence: Evidence | None = None
    """With an AI score metric: the figures the gate of ``ai.yaml`` judges."""
    duplicate_of: str | None = Field(default=None, pattern=RULE_ID_PATTERN)
    """The objective rule whose criterion defines this rule's label: the rule adds nothing and stays off."""

    @model_validator(mode="after")
    def _metric_rule_complete(self) -> Rule:
        if self.metric is None:
            if self.when is not None or self.modalities or self.per_item or self.model_pin is not None:
                raise ValueError("'when', 'modalities', 'per_item' and 'model_pin' need 'metric'")
        elif self.when is None or self.limit is None:
            raise ValueError(f"a rule on metric {self.metric!r} needs both 'when' (above/below) and 'limit'")
        if self.duplicate_of is not None and self.enabled:
            raise ValueError(
                f"the rule duplicates the objective rule {self.duplicate_of!r} (its label is defined by that "
                "rule's criterion) and must be off (enabled: false)"
            )
        if self.model_pin is not None:
            model = self.scored_model
            if model is None or self.model_pin.split("@", 1)[0] != model:
                raise ValueError(
                    f"'model_pin' {self.model_pin!r} must name the model that gives metric {self.metric!r} "
                    f"({model or 'none: not an AI score'})"
                )
        return self

    @property
    def scored_model(self) -> str | None:
        """The model whose score the rule judges (``ai.<model>.<label>``), else None."""
        if self.metric is None or not self.metric.startswith("ai."):
            return None
        return self.metric.split(".")[1]


PARAMETER_IDS = Literal["ct.noise_reference_thickness_mm"]
"""The parameters a check reads (a misspelt id is rejected on load)."""


class Parameter(_Strict):
    """A number a check uses besides its limits (the reference the limits are stated at), with its source."""

    id: PARAMETER_IDS
    value: float
    units: str
    source: str = Field(min_length=3)
    description: str = Field(min_length=3)


class RuleFile(_Strict):
    """A ``thresholds/<name>.yaml`` file holding rules (and the parameters they are stated at)."""

    version: str
    parameters: list[Parameter] = Field(default_factory=list)
    gate: Gate | None = None
    """AI score rules: the evidence an enabled rule of this file must show (``ai.yaml``)."""
    rules: list[Rule]


class EligibilityConfig(_Strict):
    """How long a passed study is offered for recognition (seed 002 §4.1: generally 3 months)."""

    default_months: Annotated[int, Field(ge=1, le=60)] = 3
    per_modality_months: dict[str, Annotated[int, Field(ge=1, le=60)]] = Field(default_factory=dict)
    source: str = "seed 002 §4.1 (generally within 3 months); per-modality windows: site default"


class ReportsConfig(_Strict):
    """Whether the source (the imaging cloud) holds the diagnostic reports (seed 002 §3(二):
    recognition is of the images and the report)."""

    source_holds_reports: bool | None = None
    """True: reports are stored in the study (SR, encapsulated PDF) and each study is checked for
    one; False or None (not known, the default): the report is not checked, and the study says so."""
    source: str = "seed 002 §3(二) (检查结果、图像及报告); whether the cloud holds reports: site setting"


class SiteConfig(_Strict):
    """``thresholds/site.yaml``: site-wide settings that are policy, versioned like thresholds."""

    version: str
    timezone: str = "Asia/Shanghai"
    """Time zone of DICOM dates/times without TimezoneOffsetFromUTC."""
    candidate_modalities: list[str] = Field(default_factory=lambda: ["CR", "DX", "CT", "MR"])
    """Modalities whose studies are recognition candidates (until the item catalog decides)."""
    eligibility: EligibilityConfig = Field(default_factory=EligibilityConfig)
    catalog_lists: list[str] = Field(default_factory=lambda: ["yubei-2023.yaml"], min_length=1)
    """Item lists in ``thresholds/items/`` whose items studies are mapped to."""
    reports: ReportsConfig = Field(default_factory=ReportsConfig)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Asia/Shanghai')") from exc
        return value

    @field_validator("candidate_modalities")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.strip().upper() for v in value]

    def tzinfo(self) -> dt.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone)
