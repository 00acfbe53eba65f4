"""The one place that decides which rule on a measured metric applies, which limit holds, and
whether it fires.

A rule on a metric (``metric:`` in ``thresholds/image_quality_*.yaml`` or ``ai.yaml``) applies to a
value when it is enabled, names that metric, and names the study's modality (or none); the limit
that holds is the rule's ``per_item`` limit for the study's recognition item, else its ``limit``.
It fires when the value is above (``when: above``) or below (``when: below``) that limit; the
worst rule that fires (by severity) gives the finding. The checks (which write the finding), the
command-line table, the review app, the evaluation report and the tests all call :func:`evaluate`,
so a value is shown with the limit and the mark it was judged by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from qc_pipeline.domain import Severity
from qc_pipeline.rules.schema import Rule

MODALITY_GROUPS: Final = {"DR": frozenset({"CR", "DX", "DR"})}
"""A study modality that stands for several DICOM modalities (a DR item's radiographs are CR or DX)."""
MARKS: Final = {Severity.INFO: "", Severity.REVIEW: "!", Severity.FAIL: "!!"}
"""How a value beyond a limit is marked in text tables, by the severity of the rule that fires."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One applicable rule and the limit that holds for the item."""

    rule: Rule
    value: float

    @property
    def relation(self) -> str:
        """``≤`` or ``≥``: what a value within the limit is."""
        return "≤" if self.rule.when == "above" else "≥"

    @property
    def text(self) -> str:
        """``≤ 15``."""
        return f"{self.relation} {self.value:g}"

    def fires(self, value: float) -> bool:
        return value > self.value if self.rule.when == "above" else value < self.value


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A value judged against the rules that apply to it."""

    metric: str
    value: float | None
    limits: tuple[Limit, ...]
    """Every applicable rule with its limit, tightest first per direction."""
    fired: Limit | None
    """The worst rule that fires (None when none does, or there is no value)."""

    @property
    def fired_rule(self) -> Rule | None:
        return None if self.fired is None else self.fired.rule

    @property
    def severity(self) -> Severity | None:
        return None if self.fired is None else self.fired.rule.severity

    @property
    def mark(self) -> str:
        """``!`` for a value beyond a review limit, ``!!`` beyond a fail limit, else empty."""
        return "" if self.severity is None else MARKS[self.severity]

    @property
    def limit_text(self) -> str:
        """The tightest limit on each side: ``≤ 15``, ``≥ 5`` or ``-1060…-940``; empty without rules."""
        upper = min((lim.value for lim in self.limits if lim.rule.when == "above"), default=None)
        lower = max((lim.value for lim in self.limits if lim.rule.when == "below"), default=None)
        if upper is not None and lower is not None:
            return f"{lower:g}…{upper:g}"
        if upper is not None:
            return f"≤ {upper:g}"
        return "" if lower is None else f"≥ {lower:g}"

    def limits_text(self, severity_word: dict[str, str] | None = None, *, sep: str = ", ") -> str:
        """Every limit with its severity: ``≤ 15 (review), ≤ 30 (fail)``; ``severity_word`` names them."""
        words = severity_word or {}
        return sep.join(
            f"{lim.text} ({words.get(str(lim.rule.severity), str(lim.rule.severity))})" for lim in self.limits
        )


def _modalities(modality: str | Iterable[str] | None) -> frozenset[str] | None:
    if modality is None:
        return None
    parts = modality.split(",") if isinstance(modality, str) else modality
    found = {p.strip().upper() for p in parts if p and p.strip()}
    for name in list(found):
        found |= MODALITY_GROUPS.get(name, frozenset())
    return frozenset(found) or None


def applicable_rules(
    rules: Iterable[Rule],
    metric: str,
    *,
    modality: str | Iterable[str] | None,
    item_code: str | None,
    max_severity: Severity | None = None,
) -> list[Limit]:
    """The rules of ``rules`` that judge ``metric`` for this modality and item, with their limits.

    ``modality``: the study's or series' modality (``CT``; ``CR,DX`` or a set for a study of
    several); None takes every modality (a summary over studies). ``item_code``: the recognition
    item whose ``per_item`` limit holds (None: the general limit). ``max_severity``: rules above
    it do not apply (a metric that may ask for review but not fail, e.g. background SNR under
    parallel imaging). Sorted by direction, then tightest limit first, then severity.
    """
    wanted = _modalities(modality)
    limits = []
    for rule in rules:
        if rule.metric != metric or not rule.enabled or rule.when is None or rule.limit is None:
            continue
        if wanted is not None and rule.modalities and not (set(rule.modalities) & wanted):
            continue
        if max_severity is not None and rule.severity.rank > max_severity.rank:
            continue
        value = rule.per_item.get(item_code, rule.limit) if item_code else rule.limit
        limits.append(Limit(rule, float(value)))
    limits.sort(
        key=lambda lim: (
            lim.rule.when or "",
            lim.value if lim.rule.when == "above" else -lim.value,
            lim.rule.severity.rank,
        )
    )
    return limits


def evaluate(
    rules: Iterable[Rule],
    metric: str,
    value: float | None,
    *,
    modality: str | Iterable[str] | None,
    item_code: str | None,
    max_severity: Severity | None = None,
) -> Evaluation:
    """``value`` of ``metric`` judged by the applicable rules (see :func:`applicable_rules`): the
    worst rule that fires (the first of the highest severity), or none."""
    limits = tuple(applicable_rules(rules, metric, modality=modality, item_code=item_code, max_severity=max_severity))
    fired: Limit | None = None
    if value is not None:
        for lim in limits:
            if lim.fires(value) and (fired is None or lim.rule.severity.rank > fired.rule.severity.rank):
                fired = lim
    return Evaluation(metric, value, limits, fired)


def worst(evaluations: Iterable[Evaluation]) -> Evaluation | None:
    """The evaluation whose fired rule is the most severe (None when none fires)."""
    best: Evaluation | None = None
    for ev in evaluations:
        if ev.fired is not None and (best is None or ev.fired.rule.severity.rank > best.fired.rule.severity.rank):  # type: ignore[union-attr]
            best = ev
    return best
