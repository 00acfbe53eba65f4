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

from qc_pipeline.catalog.contrast import contrast_agent
from qc_pipeline.catalog.items import Catalog, Exclusion, Item, TermSet, Vocabulary
from qc_pipeline.io.dicom import text

DR_MODALITIES = frozenset({"CR", "DX", "DR"})
STUDY_TEXT_TAGS = ("StudyDescription", "RequestedProcedureDescription", "PerformedProcedureStepDescription")
SERIES_TEXT_TAGS = ("ProtocolName", "SeriesDescription", "BodyPartExamined", "ImageComments")

# Variants that a study's words may name, and the item variants each one selects.
_VARIANT_FAMILY = {
    "PA_ONLY": {"PA_ONLY", "FRONTAL", "INFANT"},
    "FRONTAL": {"PA_ONLY", "FRONTAL", "INFANT"},
    "FRONTAL_LATERAL": {"FRONTAL_LATERAL"},
    "FRONTAL_OBLIQUE": {"FRONTAL_OBLIQUE"},
    "INFANT": {"INFANT"},
    "ERECT": {"ERECT"},
    "SUPINE": {"SUPINE"},
    "BOTH_OBLIQUES": {"BOTH_OBLIQUES"},
    "OPEN_MOUTH": {"OPEN_MOUTH"},
    "FLEXION_EXTENSION": {"FLEXION_EXTENSION"},
}
"""A frontal-only order (正位) fits the adult and the infant frontal items; the patient's age
(``requires.max_age_years``) then decides between them."""


def catalog_modality(modality: str | None) -> str | None:
    """DICOM Modality -> catalog modality (CR/DX -> DR)."""
    if modality is None:
        return None
    modality = modality.upper()
    return "DR" if modality in DR_MODALITIES else modality


SPECIFIC_VIEWS = frozenset({"OPEN_MOUTH", "FLEXION", "EXTENSION", "DECUBITUS"})
VIEW_TEXT_TAGS = ("SeriesDescription", "ProtocolName", "ImageComments", "AcquisitionDeviceProcessingDescription")


def _image_words(ds: Dataset, terms: TermSet) -> list[str]:
    words: list[str] = []
    for keyword in VIEW_TEXT_TAGS:
        value = text(ds, keyword)
        if value:
            words.extend(w for w in terms.labels(value) if w)
    return words


def image_view(ds: Dataset, vocabulary: Vocabulary, body_part: str | None = None) -> str | None:
    """The view of one radiograph, or None when nothing on the image tells it.

    Words naming a special projection (open-mouth, flexion, extension, decubitus) win, since
    ViewPosition (0018,5101) can only say AP or LL for them; then ViewPosition; then the words of
    the series/protocol names (Chinese DR systems often leave ViewPosition empty), read with the
    meanings of ``body_part`` (on a chest, 正位 is the PA: lexicon ``body_part_views``).
    """
    words = _image_words(ds, vocabulary.views_for(body_part))
    special = [w for w in words if w in SPECIFIC_VIEWS]
    if special:
        return special[0]
    tag = (text(ds, "ViewPosition") or "").upper()
    if tag in vocabulary.view_position_tags:
        return vocabulary.view_position_tags[tag]
    return words[0] if words else None


def oblique_side(ds: Dataset, vocabulary: Vocabulary) -> str | None:
    """LAO, RAO, LPO, RPO (or LO/RO when anterior/posterior is not said) of an oblique image."""
    tag = (text(ds, "ViewPosition") or "").upper()
    if tag in vocabulary.lexicon.oblique_sides:
        return tag
    found = _image_words(ds, vocabulary.oblique_sides)
    return found[0] if found else None


def image_posture(ds: Dataset, vocabulary: Vocabulary) -> str | None:
    """ERECT, SUPINE, PRONE or DECUBITUS from the image's own names and PatientPosition, or None."""
    if image_view(ds, vocabulary) == "DECUBITUS":
        return "DECUBITUS"
    found = _image_words(ds, vocabulary.postures)
    if found:
        return found[0]
    return vocabulary.posture_tags.get((text(ds, "PatientPosition") or "").upper())


@dataclass
class Match:
    """The outcome of classification.

    ``item`` when one item fits; else ``candidates`` (with ``doubt`` when a person must decide
    although one item is left), or ``not_item`` (English, Chinese) when the study is an exam that
    is not on the list.
    """

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
    not_item: tuple[str, str] | None = None
    doubt: tuple[str, str] | None = None

    @property
    def ambiguous(self) -> bool:
        return self.item is None and (len(self.candidates) > 1 or (self.doubt is not None and bool(self.candidates)))

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
    if contrast_agent(ds, vocabulary) is not None:
        return True
    words = " ".join(_texts([ds], ("SeriesDescription", "ProtocolName")))
    labels = vocabulary.contrast.labels(words) if words else []
    return "enhanced" in labels and labels[-1] == "enhanced"


def _not_item(exclusion: Exclusion) -> tuple[str, str]:
    return f"not a recognition item: {exclusion.label_en}", f"非互认项目：{exclusion.label_zh}"


def _part_names(part: str, vocabulary: Vocabulary) -> tuple[str, str]:
    """(English, Chinese) name of a body part label: the label in words, its first lexicon term."""
    terms = vocabulary.lexicon.body_parts.get(part) or [part]
    return part.lower().replace("_", " "), terms[0]


def _exclusion(
    study_blob: str, modalities: set[str], modality: str, vocabulary: Vocabulary
) -> tuple[Exclusion | None, str, str | None]:
    """The exclusion the order (or a modality in the study) names: ``(exclusion, key, remainder)``;
    the remainder (the order without the exclusion's words) is None when the study's images
    (e.g. a PT series) name it."""
    lexicon = vocabulary.lexicon
    for key, exclusion in lexicon.exclusions.items():
        if modality in exclusion.modalities and modalities.intersection(exclusion.study_modalities):
            return exclusion, key, None  # the images say what the exam is, whatever the order says
    if not study_blob:
        return None, "", ""
    hits, remainder = vocabulary.exclusions_for(modality).find(study_blob)
    keys = [label for label, _ in hits if label]
    exam = [k for k in keys if lexicon.exclusions[k].kind == "exam"]
    key = (exam or keys or [""])[0]
    return (lexicon.exclusions[key] if key else None), key, remainder


def _body_parts_of_series(series_heads: Sequence[Dataset], vocabulary: Vocabulary) -> tuple[list[str], str]:
    """The body part most series/protocol names name (a localizer naming three spine segments
    does not outvote the series), and where it was read."""
    votes: Counter[str] = Counter()
    order: list[str] = []
    shown: list[str] = []
    for ds in series_heads:
        blob = " | ".join(_texts([ds], ("ProtocolName", "SeriesDescription")))
        if not blob:
            continue
        parts = list(dict.fromkeys(label for label, _ in vocabulary.body_parts.find(blob)[0]))
        if parts:
            shown.append(blob)
        for part in parts:
            votes[part] += 1
            if part not in order:
                order.append(part)
    if not votes:
        return [], ""
    top = max(votes.values())
    part = next(p for p in order if votes[p] == top)
    return [part], f"series/protocol names ({votes[part]} of {len(shown)} naming a body part: {shown[0]!r}...)"


def classify(datasets: Sequence[Dataset], catalog: Catalog) -> Match:
    """Map a study's image headers to one item of the catalog, or explain why not."""
    vocabulary = catalog.vocabulary
    first = datasets[0]
    raw_modalities = {(text(ds, "Modality") or "").upper() for ds in datasets}
    modalities = Counter(catalog_modality(text(ds, "Modality")) for ds in datasets)
    listed = [m for m, _ in modalities.most_common() if m and catalog.for_modality(m)]
    modality = listed[0] if listed else modalities.most_common(1)[0][0]
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

    # Exams that name a body part but are not items (CTA, bedside films, neck, PET/CT...).
    exclusion, exclusion_key, rest = _exclusion(study_blob, raw_modalities, modality or "", vocabulary)
    order_text = study_blob if exclusion is None else (rest or "")
    also_plain = exclusion is not None and "plain" in vocabulary.contrast.labels(order_text)
    if exclusion is not None:
        names_part = bool(vocabulary.body_parts.find(order_text)[0]) if order_text.strip("\0 ") else False
        if rest is None:
            shown = ", ".join(sorted(raw_modalities.intersection(exclusion.study_modalities)))
            match.evidence.append(
                f"the study holds {shown} images: {exclusion.label_en} ({exclusion_key}; {exclusion.source})"
            )
        else:
            match.evidence.append(
                f"the order {study_blob!r} names {exclusion.label_en} ({exclusion_key}; {exclusion.source})"
            )
        if not names_part or (exclusion.kind == "exam" and not also_plain):
            match.not_item = _not_item(exclusion)
            return match

    # Body part: the order's words, then protocol/series words, then BodyPartExamined.
    parts: list[str] = []
    where = ""
    from_order = False
    if order_text.strip("\0 "):
        hits, _ = vocabulary.body_parts.find(order_text)
        parts = list(dict.fromkeys(label_ for label_, _ in hits))
        where, from_order = f"study description {study_blob!r}", bool(parts)
    if not parts and series_blob:
        parts, where = _body_parts_of_series(series_heads, vocabulary)
    if not parts:
        tags = [(text(ds, "BodyPartExamined") or "").upper() for ds in series_heads]
        parts = list(dict.fromkeys(vocabulary.body_part_tags[t] for t in tags if t in vocabulary.body_part_tags))
        where = f"BodyPartExamined {', '.join(t for t in tags if t)}"
        if not parts:
            for key, excluded in vocabulary.lexicon.exclusions.items():
                if modality in excluded.modalities and set(tags).intersection(excluded.body_part_tags):
                    match.evidence.append(f"BodyPartExamined {', '.join(t for t in tags if t)} ({key})")
                    match.not_item = _not_item(excluded)
                    return match
    match.body_parts = parts
    if parts:
        match.evidence.append(f"body part {'/'.join(parts)} from {where}")
    without = [p for p in parts if not any(i.body_part == p for i in candidates)]
    candidates = [i for i in candidates if i.body_part in parts]
    if without and candidates:
        match.evidence.append(f"no {modality} item for {'/'.join(without)}: not a recognition item")
    if not candidates:
        match.evidence.append(f"no {modality} item for body part {'/'.join(parts) or 'unknown'}")
        return match

    # Laterality: the order's words, then the images' tags.
    remainder = vocabulary.body_parts.find(order_text)[1] if order_text.strip("\0 ") else ""
    words_lat = vocabulary.laterality.labels(remainder) if remainder.strip("\0 ") else []
    if not words_lat and series_blob:
        words_lat = vocabulary.laterality.labels(vocabulary.body_parts.find(series_blob)[1])
    tag_lats = {(text(ds, "ImageLaterality") or text(ds, "Laterality") or "").upper() for ds in datasets} - {"", "U"}
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
        keep = [
            i
            for i in candidates
            if i.laterality is None or i.laterality == lat or (i.laterality == "B" and lat is None)
        ]
        if not keep:
            match.candidates = candidates
            match.evidence.append(
                f"laterality {lat or 'unknown'} fits no item ({', '.join(i.code for i in candidates)})"
            )
            return match
        candidates = keep

    if modality in ("CT", "MR"):
        candidates = _narrow_by_contrast(match, candidates, series_heads, order_text, vocabulary)
        if not candidates:
            return match

    if modality == "DR":
        part = parts[0] if len(parts) == 1 else None
        match.views = [v for v in (image_view(ds, vocabulary, part) for ds in datasets) if v]
        if len(candidates) > 1:
            candidates = _narrow_by_variant(match, candidates, order_text, series_blob, datasets, vocabulary)
        candidates = _narrow_by_age(match, candidates, _age_years(first))

    if exclusion is not None and exclusion.kind == "exam":  # "头颅CT平扫+CTA": an item and an exam that is not one
        match.doubt = (
            f"the order also names an exam that is not a recognition item: {exclusion.label_en}",
            f"检查申请同时包含非互认项目：{exclusion.label_zh}",
        )
    named = list(dict.fromkeys(i.body_part for i in candidates))
    if len(named) > 1 and from_order:
        match.evidence.append(f"the order names several body parts with an item each: {'/'.join(named)}")
    elif len(named) > 1:  # several parts only in series names: the first named
        candidates = [i for i in candidates if i.body_part == named[0]]
    match.candidates = candidates
    if len(candidates) == 1 and match.doubt is None:
        match.item = candidates[0]
    else:
        match.evidence.append(
            "several items fit or a person must decide: " + ", ".join(f"{i.code} {i.name_zh}" for i in candidates)
        )
    return match


def _narrow_by_contrast(
    match: Match, candidates: list[Item], series_heads: Sequence[Dataset], order_text: str, vocabulary: Vocabulary
) -> list[Item]:
    """Items of the study's contrast (any post-contrast series, or the order says so), part by
    part. A part whose only items are of the other contrast is not an item when the order says
    which contrast it is; when only the series tell, a person decides (review)."""
    post = [ds for ds in series_heads if is_post_contrast(ds, vocabulary)]
    order_words = vocabulary.contrast.labels(order_text) if order_text.strip("\0 ") else []
    match.enhanced = bool(post) or "enhanced" in order_words
    if post:
        match.evidence.append(f"{len(post)} post-contrast series (ContrastBolusAgent or names)")
    elif "enhanced" in order_words:
        match.evidence.append("the order names a contrast-enhanced exam")
    wanted = "enhanced" if match.enhanced else "plain"
    kept: list[Item] = []
    reasons: list[tuple[str, str]] = []
    for part in dict.fromkeys(i.body_part for i in candidates):
        items = [i for i in candidates if i.body_part == part]
        fit = [i for i in items if i.contrast in (None, wanted)]
        if fit:
            kept.extend(fit)
            continue
        en_part, zh_part = _part_names(part, vocabulary)
        listed = ", ".join(f"{i.code} {i.name_en}" for i in items)
        listed_zh = "、".join(f"{i.code} {i.name_zh}" for i in items)
        kind_en = "plain" if wanted == "plain" else "contrast-enhanced"
        kind_zh = "平扫" if wanted == "plain" else "增强"
        said = wanted in order_words
        if said:
            reason = (
                f"not a recognition item: {kind_en} {match.modality} of the {en_part} (only {listed} is on the list)",
                f"非互认项目：{zh_part}{match.modality}{kind_zh}（仅 {listed_zh} 为互认项目）",
            )
            reasons.append(reason)
            match.evidence.append(reason[0])
        elif wanted == "plain":
            kept.extend(items)
            match.doubt = (
                f"only plain series and the order names no contrast: a plain {match.modality} of the {en_part} "
                f"is not a recognition item; if contrast was given, the post-contrast series are missing ({listed})",
                f"仅见平扫序列且申请未注明增强：{zh_part}{match.modality}平扫非互认项目；如已行增强，则缺少增强序列（{listed_zh}）",
            )
        else:  # only series names suggest contrast: keep the item of this part, as ordered
            kept.extend(items)
            match.evidence.append(f"{part}: only a {items[0].contrast} item; post-contrast series seen")
    if not kept and reasons:
        match.not_item = reasons[0]
    return kept


def _view_variants(views: list[str], postures: list[str]) -> list[str]:
    """Exam variants the images' own views and postures show."""
    kinds = Counter(views)
    found: list[str] = []
    if kinds["FLEXION"] and kinds["EXTENSION"]:
        found.append("FLEXION_EXTENSION")
    if kinds["OPEN_MOUTH"]:
        found.append("OPEN_MOUTH")
    frontal = kinds["PA"] + kinds["AP"]
    if kinds["OBL"] >= 2 and not frontal:
        found.append("BOTH_OBLIQUES")
    if frontal and kinds["LAT"]:
        found.append("FRONTAL_LATERAL")
    elif frontal and kinds["OBL"]:
        found.append("FRONTAL_OBLIQUE")
    elif frontal and not found:
        found.append("PA_ONLY")
    if "ERECT" in postures:
        found.append("ERECT")
    if {"SUPINE", "DECUBITUS"}.intersection(postures):
        found.append("SUPINE")
    return found


def _narrow_by_variant(
    match: Match,
    candidates: list[Item],
    order_text: str,
    series_blob: str,
    datasets: Sequence[Dataset],
    vocabulary: Vocabulary,
) -> list[Item]:
    """DR: the variants the order names (all of them: 站立后前位 is erect and PA), else what the
    images show, else the series names. Several variants that fit different items (正侧位+双斜位)
    leave each of those items."""
    postures = [p for p in (image_posture(ds, vocabulary) for ds in datasets) if p]
    sources = (
        ("the order", vocabulary.variants.labels(order_text) if order_text.strip("\0 ") else []),
        ("the images' views", _view_variants(match.views, postures)),
        ("series names", vocabulary.variants.labels(series_blob) if series_blob else []),
    )
    for where, labels in sources:
        if not labels:
            continue
        wanted = set().union(*(_VARIANT_FAMILY.get(label, {label}) for label in labels))
        narrowed = [i for i in candidates if i.variant in wanted]
        if narrowed:
            match.variant = "+".join(dict.fromkeys(labels))
            match.evidence.append(f"exam variant {match.variant} from {where}")
            return narrowed
    return candidates


def _narrow_by_age(match: Match, candidates: list[Item], age: float | None) -> list[Item]:
    """Items with an age limit (``requires.max_age_years``): kept only for a patient under it,
    and then preferred to the others; kept with unknown age only when the order names them."""
    limited = [i for i in candidates if i.requires.max_age_years is not None]
    if not limited:
        return candidates
    others = [i for i in candidates if i not in limited]
    if age is None:
        if "INFANT" in (match.variant or "").split("+"):
            return limited
        if not others:
            return candidates
        match.evidence.append(f"patient age unknown: {', '.join(i.code for i in limited)} (age-limited) not chosen")
        return others
    fit = [i for i in limited if age < i.requires.max_age_years.value]  # type: ignore[union-attr]
    for item in limited:
        limit = item.requires.max_age_years.value  # type: ignore[union-attr]
        verb = "fits" if item in fit else "rules out"
        match.evidence.append(f"patient age {age:.1f} y {verb} {item.code} (under {limit:g} y)")
    return fit or others
