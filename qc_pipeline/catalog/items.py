"""The recognition-item catalog: items and their requirements, loaded from data files.

A list is a YAML file in ``thresholds/items/`` (``yubei-2023.yaml`` is the first list of 67
items); ``lexicon.yaml`` holds the words that name body parts, views, laterality, contrast and DR
variants, the CT kernel table and the MR series-name patterns. A new list is a new file, named in ``thresholds/site.yaml`` (``catalog_lists``).
"""

from __future__ import annotations

import builtins
import functools
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qc_pipeline.errors import ConfigError
from qc_pipeline.rules.loader import default_thresholds_dir, format_validation_error, read_yaml

logger = logging.getLogger(__name__)

LEXICON_FILE = "lexicon.yaml"

Modality = Literal["DR", "CT", "MR"]
Weighting = Literal["T1", "T2", "PD", "T2_FLAIR", "T1_FLAIR", "STIR", "DWI", "ADC", "SWI", "MRA"]
PlaneName = Literal["AXIAL", "SAGITTAL", "CORONAL"]
ViewName = Literal["PA", "AP", "LAT", "OBL", "OPEN_MOUTH", "FLEXION", "EXTENSION", "DECUBITUS"]
Posture = Literal["ERECT", "SUPINE", "PRONE", "DECUBITUS"]
ObliqueSide = Literal["LAO", "RAO", "LPO", "RPO", "LO", "RO"]
Variant = Literal[
    "PA_ONLY",
    "FRONTAL",
    "FRONTAL_LATERAL",
    "FRONTAL_OBLIQUE",
    "INFANT",
    "ERECT",
    "SUPINE",
    "BOTH_OBLIQUES",
    "OPEN_MOUTH",
    "FLEXION_EXTENSION",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Strict):
    source: str = Field(min_length=3)


class ValueReq(Sourced):
    value: float


class CountReq(Sourced):
    min: Annotated[int, Field(ge=0)]


class ViewsReq(Sourced):
    groups: list[list[ViewName]] = Field(min_length=1)
    """Each group is one required image; any view in the group satisfies it."""
    opposite_obliques: bool = False
    """The oblique images must show opposite sides (left and right), not one side twice."""


class PostureReq(Sourced):
    allowed: list[Posture] = Field(min_length=1)
    """Postures a radiograph of the item may be taken in; an image in another known posture is a
    finding, an image whose posture nothing tells is not."""


class SequenceReq(_Strict):
    weighting: list[Weighting] = Field(min_length=1)
    plane: list[PlaneName] | None = None
    fat_suppressed: bool | None = None
    label_en: str
    label_zh: str
    source: str = Field(min_length=3)


class ProtocolAlternative(_Strict):
    """One accepted protocol: every sequence of ``required``, and at least ``min_planes`` planes."""

    label_en: str
    label_zh: str
    required: list[SequenceReq] = Field(min_length=1)
    min_planes: Annotated[int, Field(ge=1, le=3)] | None = None
    source: str = Field(min_length=3)


class SequencesReq(Sourced):
    """``required`` sequences, all of them; with ``alternatives``, also one alternative in full."""

    required: list[SequenceReq] = Field(default_factory=list)
    alternatives: list[ProtocolAlternative] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_required(self) -> SequencesReq:
        if not self.required and not self.alternatives:
            raise ValueError("sequences needs 'required' or 'alternatives' (or both)")
        return self


PhaseName = Literal["ARTERIAL", "PORTAL", "VENOUS", "DELAYED"]


class PhasesReq(Sourced):
    """Post-contrast phases of an enhanced CT: at least ``min`` distinct acquisitions, and for each
    group of ``named`` one acquisition of a phase in that group (a group lists equivalent names)."""

    min: Annotated[int, Field(ge=1)]
    named: list[list[PhaseName]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _named_fit_min(self) -> PhasesReq:
        if any(not group for group in self.named):
            raise ValueError("an empty group in 'named'")
        if len(self.named) > self.min:
            raise ValueError(f"'named' lists {len(self.named)} phases but 'min' is {self.min}")
        return self


class Requirements(_Strict):
    views: ViewsReq | None = None
    posture: PostureReq | None = None
    max_age_years: ValueReq | None = None
    max_slice_thickness_mm: ValueReq | None = None
    plain_series: CountReq | None = None
    post_contrast_phases: PhasesReq | None = None
    sequences: SequencesReq | None = None
    min_planes: ValueReq | None = None
    post_contrast_t1_planes: ValueReq | None = None


class PhaseWindows(Sourced):
    """Seconds after the injection start that name a phase: phase -> [from, to]."""

    seconds: dict[PhaseName, tuple[float, float]]

    @model_validator(mode="after")
    def _ordered(self) -> PhaseWindows:
        for phase, (start, end) in self.seconds.items():
            if not 0 <= start < end:
                raise ValueError(f"phase window {phase}: [{start:g}, {end:g}] must have 0 <= from < to")
        return self


class AgentPlaceholders(Sourced):
    """ContrastBolusAgent values that are not an agent (anonymiser placeholders, 'none')."""

    values: list[str] = Field(min_length=1)
    mask_characters: str = ""


KernelClassName = Literal["SOFT_TISSUE", "BONE", "LUNG", "BRAIN", "OTHER"]


class KernelTable(Sourced):
    """CT kernel class -> regular expressions matched against the whole kernel name."""

    classes: dict[KernelClassName, list[str]]

    @model_validator(mode="after")
    def _patterns_compile(self) -> KernelTable:
        for name, patterns in self.classes.items():
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(
                        f"ct_kernels.classes.{name}: {pattern!r} is not a regular expression: {exc}"
                    ) from None
        return self


MRNameWeighting = Literal[
    "LOCALIZER",
    "FIELDMAP",
    "PERFUSION",
    "BOLD",
    "MRA",
    "SWI",
    "ADC",
    "DWI",
    "FLAIR",
    "STIR",
    "SSFP",
    "T2STAR",
    "PD",
    "T2",
    "T1",
]
MRNamePlane = Literal["AXIAL", "SAGITTAL", "CORONAL", "OBLIQUE"]


def _compiles(where: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: {pattern!r} is not a regular expression: {exc}") from None


class MRSeriesNames(Sourced):
    """What MR series names suggest (:func:`qc_pipeline.catalog.mr_sequences.name_hints`): regular
    expressions searched in the normalised name. Every weighting key is required: the code ranks them."""

    weightings: dict[MRNameWeighting, str]
    t1_word: str
    """A T1 word beside FLAIR: a T1-FLAIR."""
    gradient_echo: str
    """Gradient-echo words that make a T2 name T2*-weighted."""
    fat_suppression: str
    pre_contrast: str
    post_contrast: str
    planes: dict[MRNamePlane, str]
    """Tried in this order; the first that matches names the plane."""

    @model_validator(mode="after")
    def _complete_and_compiling(self) -> MRSeriesNames:
        missing = [k for k in get_args(MRNameWeighting) if k not in self.weightings]
        if missing:
            raise ValueError(f"mr_series_names.weightings: no pattern for {', '.join(missing)}")
        for weighting, pattern in self.weightings.items():
            _compiles(f"mr_series_names.weightings.{weighting}", pattern)
        for plane, pattern in self.planes.items():
            _compiles(f"mr_series_names.planes.{plane}", pattern)
        for field_name in ("t1_word", "gradient_echo", "fat_suppression", "pre_contrast", "post_contrast"):
            _compiles(f"mr_series_names.{field_name}", getattr(self, field_name))
        return self


@dataclass(frozen=True)
class MRNamePatterns:
    """:class:`MRSeriesNames` compiled."""

    weightings: tuple[tuple[str, re.Pattern[str]], ...]
    t1_word: re.Pattern[str]
    gradient_echo: re.Pattern[str]
    fat_suppression: re.Pattern[str]
    pre_contrast: re.Pattern[str]
    post_contrast: re.Pattern[str]
    planes: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def build(cls, names: MRSeriesNames) -> MRNamePatterns:
        return cls(
            weightings=tuple((key, re.compile(p)) for key, p in names.weightings.items()),
            t1_word=re.compile(names.t1_word),
            gradient_echo=re.compile(names.gradient_echo),
            fat_suppression=re.compile(names.fat_suppression),
            pre_contrast=re.compile(names.pre_contrast),
            post_contrast=re.compile(names.post_contrast),
            planes=tuple((key, re.compile(p)) for key, p in names.planes.items()),
        )


class Item(_Strict):
    code: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")
    number: int
    modality: Modality
    region_zh: str
    name_zh: str
    name_en: str
    definition_zh: str = ""
    body_part: str
    laterality: Literal["L", "R", "B"] | None = None
    contrast: Literal["plain", "enhanced"] | None = None
    variant: Variant | None = None
    note: str | None = None
    requires: Requirements

    @model_validator(mode="after")
    def _requirements_fit_modality(self) -> Item:
        req = self.requires
        if self.modality == "DR" and req.views is None:
            raise ValueError("a DR item needs requires.views")
        if self.modality == "MR" and req.sequences is None:
            raise ValueError("an MR item needs requires.sequences")
        if self.modality == "CT" and req.plain_series is None:
            raise ValueError("a CT item needs requires.plain_series")
        return self


class ListInfo(_Strict):
    id: str
    name_zh: str
    name_en: str
    source: str
    version: str
    mark: str | None = None
    """The recognition mark a QC-passed study of this list's items may carry: 渝北HR for the Yubei
    list, 川渝HR for the Chongqing–Sichuan lists (seed 002 §3(二); requirements.md [S2])."""
    mark_source: str | None = None


class ItemList(_Strict):
    list: ListInfo
    items: builtins.list[Item] = Field(min_length=1)


class BodyPartViews(Sourced):
    """What view words mean on one body part where that differs from ``Lexicon.views``."""

    views: dict[ViewName, list[str]]


class Exclusion(Sourced):
    """An exam that names a body part of an item but is not a recognition item."""

    label_en: str = Field(min_length=2)
    label_zh: str = Field(min_length=2)
    kind: Literal["exam", "region"]
    """exam: a technique that replaces the item (angiography, bedside film); region: a region
    with no item (neck), the order's other body parts are still mapped."""
    modalities: list[Modality] = Field(min_length=1)
    terms: list[str] = Field(default_factory=list)
    keep: list[str] = Field(default_factory=list)
    """Look-alike words that are not this exam (齿状突 is a cervical spine view, not dental)."""
    body_part_tags: list[str] = Field(default_factory=list)
    study_modalities: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _recognisable(self) -> Exclusion:
        if not (self.terms or self.body_part_tags or self.study_modalities):
            raise ValueError("an exclusion needs terms, body_part_tags or study_modalities")
        return self


class Lexicon(_Strict):
    version: str
    source: str
    body_parts: dict[str, list[str]]
    body_part_tags: dict[str, list[str]]
    laterality: dict[Literal["L", "R", "B"], list[str]]
    contrast: dict[Literal["enhanced", "plain"], list[str]]
    phases: dict[str, list[str]]
    phase_windows: PhaseWindows
    contrast_agent_placeholders: AgentPlaceholders
    ct_kernels: KernelTable
    mr_series_names: MRSeriesNames
    views: dict[ViewName, list[str]]
    view_position_tags: dict[ViewName, list[str]]
    variants: dict[Variant, list[str]]
    body_part_views: dict[str, BodyPartViews] = Field(default_factory=dict)
    exclusions: dict[str, Exclusion] = Field(default_factory=dict)
    oblique_sides: dict[ObliqueSide, list[str]] = Field(default_factory=dict)
    postures: dict[Posture, list[str]] = Field(default_factory=dict)
    posture_tags: dict[Posture, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parts_are_known(self) -> Lexicon:
        unknown = sorted(set(self.body_part_views) - set(self.body_parts))
        if unknown:
            raise ValueError(f"body_part_views names body parts with no words in body_parts: {', '.join(unknown)}")
        return self


_SEPARATORS = re.compile(r"[\s_\-\^/\\.,;:()\[\]{}<>|+*&#=\"'`~!?@%]+")


def normalise(text: str) -> str:
    """NFKC (full-width to half-width), lower case, separators to single spaces, padded."""
    text = unicodedata.normalize("NFKC", text).lower()
    # keep "+c"/"c+" distinguishable before '+' becomes a separator
    # ("+c" of "CT平扫+CTA" is not the contrast mark)
    text = re.sub(r"(?<![a-z])c\+", " cplus ", text)
    text = re.sub(r"\+c(?![a-z])", " pluscontrast ", text)
    return f" {_SEPARATORS.sub(' ', text).strip()} "


def _is_cjk(term: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in term)


@dataclass(frozen=True)
class TermSet:
    """A vocabulary (label -> terms) matched longest term first, without overlaps."""

    entries: tuple[tuple[str, str], ...]  # (normalised term, label), longest first

    @classmethod
    def build(cls, mapping: dict[str, list[str]]) -> TermSet:
        pairs = []
        for label, terms in mapping.items():
            for term in terms:
                norm = normalise(term.replace("+c", "pluscontrast").replace("c+", "cplus")).strip()
                if norm:
                    pairs.append((norm, str(label)))
        pairs.sort(key=lambda p: -len(p[0]))
        return cls(tuple(pairs))

    def find(self, text: str) -> tuple[list[tuple[str, str]], str]:
        """``([(label, term), ...] in text order, remainder)``: matched terms are blanked out of
        the remainder, except terms labelled "" (look-alikes kept only to shadow shorter terms)."""
        norm = text if text.startswith(" ") else normalise(text)
        rest = norm
        hits: list[tuple[int, str, str]] = []
        for term, label in self.entries:
            if _is_cjk(term):
                pattern = re.escape(term)
            else:
                pattern = r"(?<=[^a-z0-9])" + re.escape(term) + r"(?=[^a-z0-9])"
            for match in re.finditer(pattern, norm):
                hits.append((match.start(), label, term))
                norm = norm[: match.start()] + "\0" * len(term) + norm[match.end() :]
                if label:
                    rest = rest[: match.start()] + "\0" * len(term) + rest[match.end() :]
        hits.sort()
        return [(label, term) for _, label, term in hits], rest

    def labels(self, text: str) -> list[str]:
        return [label for label, _ in self.find(text)[0]]


class Vocabulary:
    """The lexicon compiled for matching."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self.body_parts = TermSet.build(lexicon.body_parts)
        self.laterality = TermSet.build(lexicon.laterality)  # type: ignore[arg-type]
        self.contrast = TermSet.build(lexicon.contrast)  # type: ignore[arg-type]
        self.phases = TermSet.build(lexicon.phases)
        self.views = TermSet.build(lexicon.views)  # type: ignore[arg-type]
        self.variants = TermSet.build(lexicon.variants)  # type: ignore[arg-type]
        self.body_part_tags = {t.upper(): part for part, tags in lexicon.body_part_tags.items() for t in tags}
        self.view_position_tags = {t.upper(): view for view, tags in lexicon.view_position_tags.items() for t in tags}
        self.oblique_sides = TermSet.build(lexicon.oblique_sides)  # type: ignore[arg-type]
        self.postures = TermSet.build(lexicon.postures)  # type: ignore[arg-type]
        self.posture_tags = {t.upper(): p for p, tags in lexicon.posture_tags.items() for t in tags}
        self.mr_series_names = MRNamePatterns.build(lexicon.mr_series_names)
        self._part_views: dict[str, TermSet] = {}
        self._exclusions: dict[str, TermSet] = {}

    def views_for(self, body_part: str | None) -> TermSet:
        """The view words of ``body_part``: its own meanings (``body_part_views``) replace the
        general ones for the same words."""
        special = self.lexicon.body_part_views.get(body_part or "")
        if special is None:
            return self.views
        if body_part not in self._part_views:
            own = {normalise(t) for terms in special.views.values() for t in terms}
            merged: dict[str, list[str]] = {
                view: [t for t in terms if normalise(t) not in own] for view, terms in self.lexicon.views.items()
            }
            for view, terms in special.views.items():
                merged.setdefault(view, []).extend(terms)
            self._part_views[body_part or ""] = TermSet.build(merged)
        return self._part_views[body_part or ""]

    def exclusions_for(self, modality: str) -> TermSet:
        """Exclusion words of ``modality``, labelled by exclusion id; ``keep`` words are labelled
        "" so that a look-alike (齿状突) is consumed before the shorter exclusion word (齿)."""
        if modality not in self._exclusions:
            mapping: dict[str, list[str]] = {"": []}
            for key, exclusion in self.lexicon.exclusions.items():
                if modality in exclusion.modalities:
                    mapping[key] = list(exclusion.terms)
                    mapping[""].extend(exclusion.keep)
            self._exclusions[modality] = TermSet.build(mapping)
        return self._exclusions[modality]


@dataclass(frozen=True)
class Catalog:
    """Every item of the active lists, and the vocabulary to recognise them."""

    lists: tuple[ListInfo, ...]
    items: tuple[Item, ...]
    lexicon: Lexicon

    @cached_property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.lexicon)

    def by_code(self, code: str) -> Item:
        for item in self.items:
            if item.code == code:
                return item
        raise KeyError(f"no item with code {code!r} in the catalog")

    def for_modality(self, modality: str) -> list[Item]:
        return [i for i in self.items if i.modality == modality]


def load_lexicon(directory: Path) -> Lexicon:
    """The lexicon (``lexicon.yaml``) of an items directory, validated."""
    lexicon_path = directory / LEXICON_FILE
    if not lexicon_path.is_file():
        raise ConfigError(f"{lexicon_path} is missing: it holds the words that name body parts and views")
    try:
        return Lexicon.model_validate(read_yaml(lexicon_path))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(lexicon_path, exc, None)) from None


@functools.cache
def shipped_vocabulary() -> Vocabulary:
    """The vocabulary of the lexicon that ships with qc-pipeline, for callers that read one
    object without a site's catalog (a series identified on its own, the conformance benchmark).
    The checks pass their catalog's vocabulary instead."""
    return Vocabulary(load_lexicon(default_thresholds_dir() / "items"))


def load_catalog(directory: Path, list_files: Iterable[str]) -> Catalog:
    """Load the lexicon and the named item lists from ``directory``; codes must be unique."""
    lexicon_path = directory / LEXICON_FILE
    lexicon = load_lexicon(directory)
    lists: list[ListInfo] = []
    items: list[Item] = []
    seen: dict[str, Path] = {}
    for name in list_files:
        path = directory / name
        if not path.is_file():
            raise ConfigError(f"item list {path} named in site.yaml (catalog_lists) does not exist")
        try:
            item_list = ItemList.model_validate(read_yaml(path))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(path, exc, None)) from None
        for index, item in enumerate(item_list.items):
            if item.code in seen:
                raise ConfigError(f"{path}: items[{index}].code: {item.code!r} is already defined in {seen[item.code]}")
            if item.body_part not in lexicon.body_parts:
                raise ConfigError(
                    f"{path}: items[{index}].body_part: {item.body_part!r} has no words in {lexicon_path}"
                )
            seen[item.code] = path
            items.append(item)
        lists.append(item_list.list)
    if not items:
        raise ConfigError(f"no recognition items loaded from {directory}: name a list in site.yaml (catalog_lists)")
    logger.debug("catalog: %d items from %d list(s)", len(items), len(lists))
    return Catalog(lists=tuple(lists), items=tuple(items), lexicon=lexicon)
