"""Study -> recognition item, from the headers, with the evidence recorded.

What was ordered (StudyDescription, RequestedProcedureDescription) speaks first; protocol and
series names, BodyPartExamined and the images' own views follow. Hospitals write the same exam in
Chinese, English and each vendor's spelling: all of it is matched against ``lexicon.yaml``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from qc_pipeline.catalog.items import Catalog, Item, Vocabulary
from qc_pipeline.io.dicom import text

DR_MODALITIES = frozenset({"CR", "DX", "DR"})
STUDY_TEXT_TAGS = ("StudyDescription", "RequestedProcedureDescription", "PerformedProcedureStepDescription")
SERIES_TEXT_TAGS = ("ProtocolName", "SeriesDescription", "BodyPartExamined", "ImageComments")

# Variants that a study's words may name, and the item variants each one selects.
_VARIANT_FAMILY = {
    "PA_ONLY": {"PA_ONLY", "FRONTAL"},
    "FRONTAL": {"PA_ONLY", "FRONTAL"},
    "FRONTAL_LATERAL": {"FRONTAL_LATERAL"},
    "FRONTAL_OBLIQUE": {"FRONTAL_OBLIQUE"},
    "INFANT": {"INFANT"},
    "ERECT": {"ERECT"},
    "SUPINE": {"SUPINE"},
    "BOTH_OBLIQUES": {"BOTH_OBLIQUES"},
    "OPEN_MOUTH": {"OPEN_MOUTH"},
    "FLEXION_EXTENSION": {"FLEXION_EXTENSION"},
}


def catalog_modality(modality: str | None) -> str | None:
    """DICOM Modality -> catalog modality (CR/DX -> DR)."""
    if modality is None:
        return None
    modality = modality.upper()
    return "DR" if modality in DR_MODALITIES else modality


SPECIFIC_VIEWS = frozenset({"OPEN_MOUTH", "FLEXION", "EXTENSION", "DECUBITUS"})


def image_view(ds: Dataset, vocabulary: Vocabulary) -> str | None:
    """The view of one radiograph.

    Words naming a special projection (open-mouth, flexion, extension, decubitus) win, since
    ViewPosition (0018,5101) can only say AP or LL for them; then ViewPosition; then the words of
    the series/protocol names (Chinese DR systems often leave ViewPosition empty).
    """
    words: list[str] = []
    for keyword in ("SeriesDescription", "ProtocolName", "ImageComments", "AcquisitionDeviceProcessingDescription"):
        value = text(ds, keyword)
        if value:
            words.extend(vocabulary.views.labels(value))
    special = [w for w in words if w in SPECIFIC_VIEWS]
    if special:
        return special[0]
    tag = (text(ds, "ViewPosition") or "").upper()
    if tag in vocabulary.view_position_tags:
        return vocabulary.view_position_tags[tag]
    return words[0] if words else None


@dataclass
class Match:
    """The outcome of classification."""

    item: Item | None
    candidates: list[Item] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    modality: str | None = None
    body_parts: list[str] = field(default_factory=list)
    laterality: str | None = None
    image_laterality: str | None = None
    enhanced: bool = False
    variant: str | None = None
    views: list[str] = field(default_factory=list)

    @property
    def ambiguous(self) -> bool:
        return self.item is None and len(self.candidates) > 1

    @property
    def laterality_conflict(self) -> bool:
        return (
            self.laterality in ("L", "R")
            and self.image_laterality in ("L", "R")
            and self.laterality != self.image_laterality
        )


def _age_years(ds: Dataset) -> float | None:
    birth, day = text(ds, "PatientBirthDate"), text(ds, "StudyDate")
    try:
        if birth and day:
            b = dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
            d = dt.date(int(day[:4]), int(day[4:6]), int(day[6:8]))
            return (d - b).days / 365.25
    except ValueError:
        pass
    age = text(ds, "PatientAge")
    if age and len(age) == 4 and age[:3].isdigit():
        return int(age[:3]) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}.get(age[3], 1.0)
    return None


def _texts(datasets: Sequence[Dataset], tags: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for ds in datasets:
        for tag in tags:
            value = text(ds, tag)
            if value and value not in seen:
                seen.append(value)
    return seen


def _series_heads(datasets: Sequence[Dataset]) -> list[Dataset]:
    heads: dict[str, Dataset] = {}
    for ds in datasets:
        heads.setdefault(text(ds, "SeriesInstanceUID") or "?", ds)
    return list(heads.values())


def is_post_contrast(ds: Dataset, vocabulary: Vocabulary) -> bool:
    """A series after contrast: an agent tag set (not a placeholder), or contrast words in its names."""
    from qc_pipeline.catalog.contrast import contrast_agent

    if contrast_agent(ds, vocabulary) is not None:
        return True
    words = " ".join(_texts([ds], ("SeriesDescription", "ProtocolName")))
    labels = vocabulary.contrast.labels(words) if words else []
    return "enhanced" in labels and labels[-1] == "enhanced"


def classify(datasets: Sequence[Dataset], catalog: Catalog) -> Match:
    """Map a study's image headers to one item of the catalog, or explain why not."""
    vocabulary = catalog.vocabulary
    first = datasets[0]
    modalities = Counter(catalog_modality(text(ds, "Modality")) for ds in datasets)
    modality = modalities.most_common(1)[0][0]
    match = Match(item=None, modality=modality)
    candidates = catalog.for_modality(modality or "")
    if not candidates:
        match.evidence.append(f"modality {modality} has no item in the catalog")
        return match
    series_heads = _series_heads(datasets)
    study_texts = _texts([first], STUDY_TEXT_TAGS)
    series_texts = _texts(series_heads, ("ProtocolName", "SeriesDescription"))
    study_blob = " | ".join(study_texts)
    series_blob = " | ".join(series_texts)

    # Body part: the order's words, then protocol/series words, then BodyPartExamined.
    parts: list[str] = []
    where = ""
    for label, blob in (("study description", study_blob), ("series/protocol names", series_blob)):
        if blob:
            hits, _ = vocabulary.body_parts.find(blob)
            parts = list(dict.fromkeys(label_ for label_, _ in hits))
            if parts:
                where = f"{label} {blob!r}"
                break
    if not parts:
        tags = [(text(ds, "BodyPartExamined") or "").upper() for ds in series_heads]
        parts = list(dict.fromkeys(vocabulary.body_part_tags[t] for t in tags if t in vocabulary.body_part_tags))
        where = f"BodyPartExamined {', '.join(t for t in tags if t)}"
    match.body_parts = parts
    if parts:
        match.evidence.append(f"body part {'/'.join(parts)} from {where}")
    candidates = [i for i in candidates if i.body_part in parts]
    if not candidates:
        match.evidence.append(f"no {modality} item for body part {'/'.join(parts) or 'unknown'}")
        return match
    # When several body parts are named (e.g. 腹部 and 上腹部), the first named wins ties below.

    # Laterality: the order's words, then the images' tags.
    remainder = vocabulary.body_parts.find(study_blob)[1] if study_blob else ""
    words_lat = vocabulary.laterality.labels(remainder) if remainder.strip("\0 ") else []
    if not words_lat and series_blob:
        words_lat = vocabulary.laterality.labels(vocabulary.body_parts.find(series_blob)[1])
    tag_lats = {
        (text(ds, "ImageLaterality") or text(ds, "Laterality") or "").upper() for ds in datasets
    } - {"", "U"}
    match.laterality = words_lat[0] if words_lat else None
    match.image_laterality = next(iter(tag_lats)) if len(tag_lats) == 1 else ("B" if len(tag_lats) > 1 else None)
    if match.laterality is None and match.image_laterality is not None:
        match.laterality = match.image_laterality
        match.evidence.append(f"laterality {match.laterality} from ImageLaterality/Laterality")
    elif match.laterality is not None:
        match.evidence.append(f"laterality {match.laterality} from the description")
    sided = [i for i in candidates if i.laterality is not None]
    if sided:
        lat = match.laterality
        keep = [i for i in candidates if i.laterality is None or i.laterality == lat or (i.laterality == "B" and lat is None)]
        if not keep:
            match.candidates = candidates
            match.evidence.append(f"laterality {lat or 'unknown'} fits no item ({', '.join(i.code for i in candidates)})")
            return match
        candidates = keep

    # Contrast (CT/MR): any post-contrast series, or the order says so.
    if modality in ("CT", "MR"):
        post = [ds for ds in series_heads if is_post_contrast(ds, vocabulary)]
        order_words = vocabulary.contrast.labels(study_blob) if study_blob else []
        match.enhanced = bool(post) or "enhanced" in order_words
        if post:
            match.evidence.append(f"{len(post)} post-contrast series (ContrastBolusAgent or names)")
        elif "enhanced" in order_words:
            match.evidence.append("the order names a contrast-enhanced exam")
        wanted = "enhanced" if match.enhanced else "plain"
        narrowed = [i for i in candidates if i.contrast in (None, wanted)]
        candidates = narrowed or candidates

    # DR: the variant the order names, else what the images show.
    if modality == "DR" and len(candidates) > 1:
        match.views = [v for v in (image_view(ds, vocabulary) for ds in datasets) if v]
        variant = _dr_variant(study_blob, series_blob, match.views, first, vocabulary)
        match.variant = variant
        if variant is not None:
            family = _VARIANT_FAMILY.get(variant, {variant})
            narrowed = [i for i in candidates if i.variant in family]
            if narrowed:
                candidates = narrowed
                match.evidence.append(f"exam variant {variant}")
    elif modality == "DR":
        match.views = [v for v in (image_view(ds, vocabulary) for ds in datasets) if v]

    if len(candidates) > 1 and len(parts) > 1:
        for part in parts:  # the body part named first wins
            first_part = [i for i in candidates if i.body_part == part]
            if first_part:
                candidates = first_part
                break
    match.candidates = candidates
    if len(candidates) == 1:
        match.item = candidates[0]
    else:
        match.evidence.append("several items fit: " + ", ".join(f"{i.code} {i.name_zh}" for i in candidates))
    return match


def _dr_variant(study_blob: str, series_blob: str, views: list[str], ds: Dataset, vocabulary: Vocabulary) -> str | None:
    age = _age_years(ds)
    for blob in (study_blob, series_blob):
        if not blob:
            continue
        found = vocabulary.variants.labels(blob)
        if "INFANT" in found or (age is not None and age < 3 and found and found[0] in ("PA_ONLY", "FRONTAL")):
            return "INFANT"
        if found:
            return found[0]
    if age is not None and age < 3:
        return "INFANT"
    kinds = Counter(views)
    if kinds["FLEXION"] and kinds["EXTENSION"]:
        return "FLEXION_EXTENSION"
    if kinds["OPEN_MOUTH"]:
        return "OPEN_MOUTH"
    frontal = kinds["PA"] + kinds["AP"]
    if kinds["OBL"] >= 2 and not frontal:
        return "BOTH_OBLIQUES"
    if frontal and kinds["LAT"]:
        return "FRONTAL_LATERAL"
    if frontal and kinds["OBL"]:
        return "FRONTAL_OBLIQUE"
    if frontal:
        return "PA_ONLY"
    return None
