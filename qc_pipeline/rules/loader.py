"""Load and validate ``thresholds/``; turn a rule and an observation into a Finding."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from qc_pipeline.domain import Category, Finding
from qc_pipeline.errors import ConfigError
from qc_pipeline.resources import THRESHOLDS, shipped_path
from qc_pipeline.rules.schema import Parameter, Rule, RuleFile, SiteConfig

logger = logging.getLogger(__name__)

SITE_FILE = "site.yaml"
ITEMS_DIR = "items"
VERDICT_DATA_DIRS = (ITEMS_DIR, "dr_exposure")
"""Sub-folders of data that change verdicts (the item catalog, the DR vendor exposure table): they
count in the thresholds version, so a decision made with other data is judged again."""
THRESHOLDS_ENV = "QC_THRESHOLDS_DIR"


def default_thresholds_dir() -> Path:
    """``$QC_THRESHOLDS_DIR``, else the shipped thresholds (package data: the repository's
    ``thresholds/`` in a checkout, the wheel's copy once installed)."""
    env = os.environ.get(THRESHOLDS_ENV)
    if env:
        return Path(env)
    return shipped_path(THRESHOLDS)


@dataclass(frozen=True)
class Thresholds:
    """Every rule and the site configuration, with a version that changes with any byte."""

    site: SiteConfig
    rules: dict[str, Rule]
    version: str
    directory: Path
    catalog: Any = None
    """The recognition-item catalog (``qc_pipeline.catalog.items.Catalog``), set by the pipeline."""
    parameters: dict[str, Parameter] = field(default_factory=dict)
    """Numbers the checks use besides the limits, by id (``ct.noise_reference_thickness_mm``)."""

    def rule(self, rule_id: str) -> Rule:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise ConfigError(
                f"rule {rule_id!r} is not defined in {self.directory}: add it to the YAML file of "
                f"its category ({rule_id.split('.')[0]}.yaml)"
            ) from None

    def finding(
        self,
        rule_id: str,
        message: str,
        message_zh: str,
        *,
        value: object = None,
        limit: object = None,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> Finding | None:
        """The finding of rule ``rule_id``, or None when the QC centre disabled that rule.

        ``limit`` defaults to the rule's own limit with its units.
        """
        rule = self.rule(rule_id)
        if not rule.enabled:
            return None
        if limit is None and rule.limit is not None:
            limit = f"{rule.limit:g} {rule.units}"
        return Finding(
            code=rule.id,
            category=rule_category(rule.id),
            severity=rule.severity,
            message=message,
            message_zh=message_zh,
            value=None if value is None else str(value),
            limit=None if limit is None else str(limit),
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
        )

    def limit(self, rule_id: str) -> float:
        rule = self.rule(rule_id)
        if rule.limit is None:
            raise ConfigError(f"rule {rule_id!r} in {self.directory} needs a numeric 'limit'")
        return rule.limit


def rule_category(rule_id: str) -> Category:
    """A rule's category is the first part of its id (``metadata.patient_id.missing``)."""
    return Category(rule_id.split(".", 1)[0])


def format_validation_error(path: Path, exc: ValidationError, data: object) -> str:
    """One line per error: ``file: key[index].key (rule 'id'): message (found value)``."""
    lines = []
    for err in exc.errors():
        loc = _loc_to_key(err["loc"], data)
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else "(a mapping/list)"
        lines.append(f"{path}: {loc}: {err['msg']} (found {shown})")
    return "\n".join(lines)


def _loc_to_key(loc: tuple[int | str, ...], data: object) -> str:
    """``('rules', 3, 'severity')`` -> ``rules[3].severity (rule 'metadata.x')``."""
    key = ""
    node = data
    rule_hint = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            if isinstance(node, list) and part < len(node):
                node = node[part]
                if isinstance(node, dict) and "id" in node and not rule_hint:
                    rule_hint = f" (rule {node['id']!r})"
        else:
            key += f".{part}" if key else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return key + rule_hint


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: the same documents, ten times faster (the thresholds
are read at the start of every command and every run)."""


def read_yaml(path: Path) -> object:
    """A YAML file's content; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc


def load_thresholds(
    directory: Path | None = None,
    *,
    required_rules: Iterable[str] = (),
    known_metrics: Iterable[str] | None = None,
) -> Thresholds:
    """Load every ``*.yaml`` of ``directory``; raise ConfigError naming file, key and value.

    ``site.yaml`` is the site configuration; every other file holds rules. Rule ids must be
    unique, start with their category, and include every id in ``required_rules`` (the ids the
    pipeline's checks use); ids that no check knows are rejected too (naming file, key and id), so
    a typo cannot silently disable a rule. Rules on a measured metric (with ``metric:``) must name
    one of ``known_metrics`` (when given); their ids are free unless ``required_rules`` names a
    metric rule of their category (the image-quality limits), which then closes that category's
    list like any other (the AI score rules of ``ai.yaml`` stay free).
    """
    directory = Path(directory) if directory is not None else default_thresholds_dir()
    if not directory.is_dir():
        raise ConfigError(
            f"thresholds folder {directory} does not exist: name an existing folder (the command's "
            f"--thresholds or --dir option) or set "
            f"{THRESHOLDS_ENV}"
        )
    files = sorted(directory.glob("*.yaml"))
    digest = hashlib.sha256()
    for folder in VERDICT_DATA_DIRS:
        for path in sorted((directory / folder).glob("*.yaml")):
            digest.update(f"{folder}/{path.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    site: SiteConfig | None = None
    rules: dict[str, Rule] = {}
    parameters: dict[str, Parameter] = {}
    where: dict[str, Path] = {}
    index: dict[str, int] = {}
    known = frozenset(known_metrics or ())
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        data = read_yaml(path)
        try:
            if path.name == SITE_FILE:
                site = SiteConfig.model_validate(data)
                continue
            rule_file = RuleFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(path, exc, data)) from None
        for parameter in rule_file.parameters:
            if parameter.id in parameters:
                raise ConfigError(f"{path}: parameters: {parameter.id!r} is defined in another file too")
            parameters[parameter.id] = parameter
        for i, rule in enumerate(rule_file.rules):
            try:
                rule_category(rule.id)
            except ValueError:
                raise ConfigError(
                    f"{path}: rules[{i}].id: {rule.id!r} must start with a category "
                    f"({', '.join(c.value for c in Category)})"
                ) from None
            if rule.metric is not None and known_metrics is not None and rule.metric not in known:
                raise ConfigError(
                    f"{path}: rules[{i}].metric: {rule.metric!r} (rule {rule.id!r}) is not a metric the "
                    f"pipeline measures; known: {', '.join(sorted(known))}"
                )
            if rule_file.gate is not None and rule.scored_model is not None and rule.enabled:
                failures = rule_file.gate.failures(rule)
                if failures:
                    raise ConfigError(
                        f"{path}: rules[{i}] (rule {rule.id!r}) is enabled but does not clear the gate of "
                        f"{path.name}: {'; '.join(failures)}; set enabled: false or add the evidence that clears it"
                    )
            if rule.id in rules:
                raise ConfigError(f"{path}: rules[{i}].id: {rule.id!r} is already defined in {where[rule.id]}")
            rules[rule.id] = rule
            where[rule.id] = path
            index[rule.id] = i
    for rule_id, rule in rules.items():
        target = rule.duplicate_of
        if target is not None and (target not in rules or rules[target].scored_model is not None):
            raise ConfigError(
                f"{where[rule_id]}: rules[{index[rule_id]}].duplicate_of: {target!r} (rule {rule_id!r}) must name "
                "an objective rule defined in the thresholds"
            )
    if site is None:
        raise ConfigError(f"{directory / SITE_FILE} is missing: it holds the site time zone and eligibility window")
    required = set(required_rules)
    if required:
        missing = sorted(required - rules.keys())
        # a category whose metric rules the checks name (image_quality) closes its list of them too:
        # a typo in such an id is an unknown id, not a new rule on the metric
        closed = {rule_category(r) for r in required & rules.keys() if rules[r].metric is not None}
        unknown = sorted(r for r in rules.keys() - required if rules[r].metric is None or rule_category(r) in closed)
        problems = [f"{where[r]}: unknown rule id {r!r} at rules[{index[r]}].id (no check uses it)" for r in unknown]
        if missing:
            problems.append(f"{directory}: rules used by the checks are not defined: {', '.join(missing)}")
        if problems:
            raise ConfigError("; ".join(problems))
    version = f"{site.version}+{digest.hexdigest()[:12]}"
    logger.debug("loaded %d rules from %s (version %s)", len(rules), directory, version)
    return Thresholds(site=site, rules=rules, version=version, directory=directory, parameters=parameters)
