"""One study from source to stored decision: load, check, decide, store.

No Prefect here: ``flows/`` wraps these functions in tasks. Bad data never raises; only a failure
of the source or the store (``SourceError``, ``StoreError``) does, so that it can be retried.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol, TypeVar

from pydicom.dataset import Dataset

from qc_pipeline import __version__
from qc_pipeline.ai.runtime import Scorer, shared_scorer
from qc_pipeline.catalog import candidates, series_roles
from qc_pipeline.catalog.classify import Match, classify
from qc_pipeline.catalog.items import Catalog, load_catalog
from qc_pipeline.checks import (
    completeness,
    consistency,
    continuity,
    image_quality,
    integrity,
    metadata,
    report_presence,
    timeliness,
)
from qc_pipeline.checks.image_quality import PixelSource
from qc_pipeline.domain import (
    Decision,
    Finding,
    ItemRef,
    Measurement,
    PriorStudy,
    Provenance,
    SeriesSummary,
    StudySummary,
    Verdict,
)
from qc_pipeline.errors import ModelError, QCError
from qc_pipeline.io.dicom import text
from qc_pipeline.rules import Thresholds, decide_verdict, eligibility, load_thresholds
from qc_pipeline.rules.loader import ITEMS_DIR, default_thresholds_dir
from qc_pipeline.sources.base import LoadedStudy, StudyEntry, StudySource

logger = logging.getLogger(__name__)

CHECK_ERROR_RULE: Final = "integrity.check.error"
ITEM_MATCHED: Final = "catalog.item.matched"
ITEM_UNMATCHED: Final = "catalog.item.unmatched"
ITEM_AMBIGUOUS: Final = "catalog.item.ambiguous"
ITEM_EXCLUDED: Final = "catalog.item.excluded"
T = TypeVar("T")


def required_rules() -> frozenset[str]:
    """Every rule id the checks use; ``thresholds/`` must define exactly these."""
    return (
        metadata.RULE_IDS
        | integrity.RULE_IDS
        | candidates.RULE_IDS
        | completeness.RULE_IDS
        | continuity.RULE_IDS
        | timeliness.RULE_IDS
        | report_presence.RULE_IDS
        | consistency.RULE_IDS
        | image_quality.RULE_IDS
        | {CHECK_ERROR_RULE, ITEM_MATCHED, ITEM_UNMATCHED, ITEM_AMBIGUOUS, ITEM_EXCLUDED}
    )


def load_pipeline_thresholds(directory: Path | str | None = None) -> Thresholds:
    """Thresholds with every rule the checks use, and the item catalog they name.

    Read afresh whenever a file of the folder changed (its bytes), else the copy this process
    already read: a command checks the thresholds before its flow starts
    and the flow reads them again, and parsing 30-odd YAML files twice costs an interactive
    one-study run about 50 ms.
    """
    folder = Path(directory) if directory is not None else default_thresholds_dir()
    signature = _folder_signature(folder)
    cached = _THRESHOLDS_READ.get(folder)
    if signature is not None and cached is not None and cached[0] == signature:
        return cached[1]
    thresholds = load_thresholds(folder, required_rules=required_rules(), known_metrics=image_quality.known_metrics())
    catalog = load_catalog(thresholds.directory / ITEMS_DIR, thresholds.site.catalog_lists)
    loaded = dataclasses.replace(thresholds, catalog=catalog)
    if signature is not None:
        _THRESHOLDS_READ.clear()  # one folder per process in practice; never a growing cache
        _THRESHOLDS_READ[folder] = (signature, loaded)
    return loaded


_THRESHOLDS_READ: dict[Path, tuple[str, Thresholds]] = {}


def _folder_signature(folder: Path) -> str | None:
    """sha256 over the name and bytes of every file under ``folder``; None if it cannot be read.

    The bytes, not the modification times: a limit edited to a value of the same length within
    the file system's time resolution must still be read.
    """
    digest = hashlib.sha256()
    try:
        for f in sorted(f for f in folder.rglob("*") if f.is_file()):
            digest.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def ai_scorer() -> Scorer | ModelError:
    """This process's AI models (``$QC_MODELS_DIR``, else ``models/``), or why they cannot be used.

    Loaded and checked once per process (sha256, manifest vs the model); a ModelError is returned,
    not raised: the studies are still judged, each with an ``ai.model.unavailable`` finding.
    """
    try:
        return shared_scorer()
    except ModelError as exc:
        return exc


_HEAP_SETTLED = False


def settle_heap() -> None:
    """Leave what this process holds now (modules, thresholds, models, the Prefect client) out of
    every later cyclic garbage collection (``gc.freeze``), once per process.

    Judging a study allocates hundreds of thousands of objects (each header element is a few),
    and the collector's full passes walk every object the process holds, the long-lived ones it
    can never free included: a flow's process holds over 200,000 before its first study. Frozen,
    a 300-file CT costs the CLI 0.90 s instead of 1.00 s, and a run 0.46 s less before it (this
    VM, warm, means of 3 runs of 1 and of 4 studies). Frozen objects are still freed when nothing
    refers to them; only a reference cycle among them would outlive its use, and what is alive
    before the first study is kept for the life of the process anyway.
    """
    global _HEAP_SETTLED
    if _HEAP_SETTLED:
        return
    gc.collect()
    gc.freeze()
    _HEAP_SETTLED = True


def provenance(thresholds: Thresholds) -> Provenance:
    """Code, rules and models that judge now; the models part is empty when they cannot be loaded,
    so the studies judged without them are re-scored once the models are back."""
    scorer = ai_scorer()
    models = scorer.provenance if isinstance(scorer, Scorer) else {}
    return Provenance(pipeline_version=__version__, thresholds_version=thresholds.version, models=models)


def _parse_or_none(parse: Callable[[str | None], T], value: str | None) -> T | None:
    try:
        return parse(value)
    except ValueError:
        return None


def summarize(study: LoadedStudy, site_tz: dt.tzinfo) -> StudySummary:
    """Study-level header values, from the first image (or the first object if none)."""
    members = study.images or study.instances
    if not members:
        return StudySummary(study_instance_uid=study.study_instance_uid, received_at=study.received_at)
    ds = members[0].dataset
    dates = metadata.study_dates(ds, site_tz)
    acquired = dates.local_datetime()
    delay = None
    if acquired is not None and study.received_at is not None and dates.study_time is not None:
        delay = timeliness.upload_delay_hours(study.received_at, acquired)
    ref = study.ref()
    return StudySummary(
        study_instance_uid=study.study_instance_uid,
        patient_id=text(ds, "PatientID"),
        patient_sex=(text(ds, "PatientSex") or "").upper() or None,
        patient_birth_date=_parse_or_none(metadata.parse_da, text(ds, "PatientBirthDate")),
        accession_number=text(ds, "AccessionNumber"),
        institution=text(ds, "InstitutionName"),
        modalities=tuple(sorted({(text(i.dataset, "Modality") or "?").upper() for i in study.instances})),
        study_date=dates.study_date,
        study_time=dates.study_time,
        study_description=text(ds, "StudyDescription"),
        n_series=len(ref.series),
        n_instances=len(study.instances),
        received_at=study.received_at,
        upload_delay_h=delay,
    )


def _item_findings(match: Match, thresholds: Thresholds) -> list[Finding | None]:
    evidence = "; ".join(match.evidence)
    if match.item is not None:
        item = match.item
        return [
            thresholds.finding(
                ITEM_MATCHED,
                f"recognition item {item.code} {item.name_en} ({evidence})",
                f"互认项目 {item.code} {item.name_zh}（依据：{evidence}）",
                value=item.code,
            )
        ]
    if match.not_item is not None:
        en, zh = match.not_item
        return [
            thresholds.finding(ITEM_EXCLUDED, f"{en} ({evidence})", f"{zh}，不适用互认（依据：{evidence}）", value=en)
        ]
    if match.ambiguous:
        names = ", ".join(f"{i.code} {i.name_en}" for i in match.candidates)
        names_zh = "、".join(f"{i.code} {i.name_zh}" for i in match.candidates)
        if match.doubt is not None:
            doubt_en, doubt_zh = match.doubt
            message = f"{doubt_en}; candidate item(s): {names} ({evidence})"
            message_zh = f"{doubt_zh}；候选互认项目：{names_zh}，请人工确认"
        else:
            message = f"several recognition items fit: {names} ({evidence})"
            message_zh = f"可能对应多个互认项目：{names_zh}，请人工确认"
        return [
            thresholds.finding(ITEM_AMBIGUOUS, message, message_zh, value=",".join(i.code for i in match.candidates))
        ]
    return [
        thresholds.finding(
            ITEM_UNMATCHED,
            f"no recognition item fits this study ({evidence or 'no body part named'})",
            f"未能对应到互认项目（{evidence or '未识别出检查部位'}），不适用互认",
            value=evidence or None,
        )
    ]


def _series_datasets(study: LoadedStudy) -> dict[str, list[Dataset]]:
    groups: dict[str, list[Dataset]] = {}
    for inst in study.images:
        groups.setdefault(inst.ref.series_instance_uid, []).append(inst.dataset)
    return groups


def _run_checks(
    study: LoadedStudy,
    thresholds: Thresholds,
    summary: StudySummary,
    *,
    now: dt.datetime,
    others: Sequence[PriorStudy],
    pixels: PixelSource | None,
) -> tuple[bool, ItemRef | None, list[Finding], dict[str, float], tuple[Measurement, ...]]:
    findings: list[Finding | None] = list(integrity.check_integrity(study, thresholds))
    candidate, catalog_findings = candidates.check_candidate(study, thresholds)
    findings.extend(catalog_findings)
    metrics: dict[str, float] = {}
    measurements: tuple[Measurement, ...] = ()
    item_ref = None
    if not candidate:
        return False, None, [f for f in findings if f is not None], metrics, measurements
    catalog: Catalog = thresholds.catalog
    images = [i.dataset for i in study.images]
    non_images = [i.dataset for i in study.instances if not i.is_image]
    findings.extend(metadata.check_metadata(images, thresholds, now=now, non_images=non_images))
    findings.extend(report_presence.check_report_presence(non_images, thresholds))
    match = classify(images, catalog)
    findings.extend(_item_findings(match, thresholds))
    findings.extend(consistency.check_laterality(match.laterality, match.image_laterality, thresholds))
    if match.item is not None:
        item_ref = ItemRef(code=match.item.code, name_zh=match.item.name_zh, name_en=match.item.name_en)
        findings.extend(completeness.check_completeness(match.item, images, thresholds, catalog))
    elif not match.ambiguous:
        candidate = False
    if match.modality in ("CT", "MR"):
        for series_uid, members in _series_datasets(study).items():
            findings.extend(continuity.check_series_continuity(members, thresholds, series_instance_uid=series_uid))
    if pixels is not None and candidate:
        quality = image_quality.check_image_quality(
            study,
            thresholds,
            pixels,
            item_modality=match.item.modality if match.item is not None else None,
            item_code=match.item.code if match.item is not None else None,
            scorer=ai_scorer(),
        )
        measurements = quality.measurements
        findings.extend(quality.findings)
    if summary.upload_delay_h is not None:
        metrics[timeliness.UPLOAD_DELAY_METRIC] = summary.upload_delay_h
        findings.extend(
            timeliness.check_timeliness(
                summary.upload_delay_h, thresholds, upper_bound=study.received_at_is_upper_bound
            )
        )
    if others:
        findings.extend(
            consistency.check_across_studies(
                study_date=summary.study_date,
                sex=summary.patient_sex,
                birth_date=summary.patient_birth_date,
                others=others,
                thresholds=thresholds,
            )
        )
    return candidate, item_ref, [f for f in findings if f is not None], metrics, measurements


def judge(
    study: LoadedStudy,
    thresholds: Thresholds,
    *,
    now: dt.datetime,
    source_uri: str | None = None,
    others: Sequence[PriorStudy] = (),
    pixels: PixelSource | None = None,
) -> Decision:
    """The decision on one loaded study. Never raises for bad data.

    ``others`` are the stored studies of the same patient (consistency across studies);
    ``pixels`` gives the pixel data for the image-quality metrics (usually the study's source;
    None skips them). Only a failure of the source to deliver pixels raises (SourceError).
    """
    summary = StudySummary(study_instance_uid=study.study_instance_uid)
    findings: list[Finding] = []
    metrics: dict[str, float] = {}
    measurements: tuple[Measurement, ...] = ()
    item_ref = None
    candidate = False
    try:
        summary = summarize(study, thresholds.site.tzinfo())
        candidate, item_ref, findings, metrics, measurements = _run_checks(
            study, thresholds, summary, now=now, others=others, pixels=pixels
        )
    except QCError:
        raise
    except Exception as exc:  # a check must not take the run down: the study goes to a person
        logger.exception("checks failed on study %s", study.study_instance_uid)
        findings = _check_error(thresholds, exc, "The checks stopped with an unexpected error", "质控检查意外中断")
        candidate = True
    series, series_findings = _describe_series(study, thresholds, item_ref)
    findings = [*findings, *series_findings]
    verdict = decide_verdict(findings, candidate=candidate)
    eligible, until = eligibility(
        verdict, study_date=summary.study_date, modalities=summary.modalities, config=thresholds.site.eligibility
    )
    return Decision(
        study=summary,
        verdict=verdict,
        findings=tuple(findings),
        provenance=provenance(thresholds),
        content_fingerprint=study.entry.fingerprint,
        decided_at=now,
        eligible=eligible,
        eligible_until=until,
        item=item_ref,
        metrics=metrics,
        measurements=measurements,
        source_uri=source_uri,
        series=series,
    )


def _describe_series(
    study: LoadedStudy, thresholds: Thresholds, item_ref: ItemRef | None
) -> tuple[tuple[SeriesSummary, ...], list[Finding]]:
    """Each series with the role the checks read in it (views read with the matched item's body
    part); a failure here sends the study to a person (it never takes the other findings with it)."""
    try:
        catalog: Catalog = thresholds.catalog
        body_part = catalog.by_code(item_ref.code).body_part if item_ref is not None else None
        return series_roles.describe_series(study, catalog.vocabulary, body_part=body_part), []
    except QCError:
        raise
    except Exception as exc:
        logger.exception("series roles failed on study %s", study.study_instance_uid)
        return (), _check_error(thresholds, exc, "The series could not be described", "无法描述本检查的各序列")


def _check_error(thresholds: Thresholds, exc: Exception, what: str, what_zh: str) -> list[Finding]:
    """The review finding for a check that raised unexpectedly (empty when the rule is disabled)."""
    finding = thresholds.finding(
        CHECK_ERROR_RULE,
        f"{what} ({type(exc).__name__}: {exc}); please report it",
        f"{what_zh}（{type(exc).__name__}），请人工复核并报告此问题",
        value=type(exc).__name__,
    )
    return [finding] if finding is not None else []


class OutcomeStatus(StrEnum):
    JUDGED = "judged"
    UNCHANGED = "unchanged"
    LEASED = "leased"
    """Another worker holds the study's lease (it is judging it now): left to that worker."""


@dataclass(frozen=True, slots=True)
class StudyOutcome:
    """What happened to one study in a run (small and picklable: goes back to the flow)."""

    study_instance_uid: str
    status: OutcomeStatus
    verdict: Verdict | None = None
    saved: str | None = None
    bytes_fetched: int = 0
    """Bytes of pixel data (DICOM instances) the source fetched for the study (DICOMweb; 0 for a folder)."""


class ResultStoreLike(Protocol):
    """What ``process_entry`` needs of the results store."""

    def needs_judging(self, study_instance_uid: str, content_fingerprint: str, provenance: Provenance) -> bool: ...
    def save_decision(self, decision: Decision, *, run_id: str | None) -> object: ...
    def patient_studies(self, patient_id: str, *, exclude_study_uid: str | None = None) -> list[PriorStudy]: ...
    def study_lease(self, study_instance_uid: str, *, run_id: str | None) -> AbstractContextManager[bool]: ...


def process_entry(
    source: StudySource,
    entry: StudyEntry,
    store: ResultStoreLike,
    thresholds: Thresholds,
    *,
    run_id: str | None,
    now: dt.datetime | None = None,
    log_outcome: bool = True,
) -> StudyOutcome:
    """Judge one discovered study unless its current decision already covers this content, or
    another worker is judging it now (it holds the study's lease: ``store.leases``).

    ``log_outcome``: log the study's verdict (INFO, a line a study); a caller that judges several
    studies in one task logs them itself, in one record (:func:`log_outcomes`)."""
    now = now or dt.datetime.now(dt.UTC)
    prov = provenance(thresholds)
    if not store.needs_judging(entry.study_instance_uid, entry.fingerprint, prov):
        return StudyOutcome(entry.study_instance_uid, OutcomeStatus.UNCHANGED)
    with store.study_lease(entry.study_instance_uid, run_id=run_id) as mine:
        if not mine:
            logger.warning("study %s is being judged by another worker; left to it", entry.study_instance_uid)
            return StudyOutcome(entry.study_instance_uid, OutcomeStatus.LEASED)
        if not store.needs_judging(entry.study_instance_uid, entry.fingerprint, prov):  # judged meanwhile
            return StudyOutcome(entry.study_instance_uid, OutcomeStatus.UNCHANGED)
        return _judge_and_save(source, entry, store, thresholds, run_id=run_id, now=now, log_outcome=log_outcome)


def _judge_and_save(
    source: StudySource,
    entry: StudyEntry,
    store: ResultStoreLike,
    thresholds: Thresholds,
    *,
    run_id: str | None,
    now: dt.datetime,
    log_outcome: bool = True,
) -> StudyOutcome:
    study = source.load(entry)
    if study.received_at_is_upper_bound and study.received_at is not None:
        # "first seen" is the first time any run saw it, not this (re-)scoring's
        first_seen = getattr(store, "first_seen_at", None)
        earlier = first_seen(entry.study_instance_uid) if callable(first_seen) else None
        if earlier is not None and earlier < study.received_at:
            study.received_at = earlier
    patient_ids = {pid for i in study.images if (pid := text(i.dataset, "PatientID")) is not None}
    others: list[PriorStudy] = []
    if len(patient_ids) == 1:
        others = store.patient_studies(patient_ids.pop(), exclude_study_uid=entry.study_instance_uid)
    decision = judge(study, thresholds, now=now, source_uri=source.uri, others=others, pixels=source)
    saved = store.save_decision(decision, run_id=run_id)
    take_fetched = getattr(source, "take_fetched_bytes", None)
    fetched = int(take_fetched(entry.study_instance_uid)) if callable(take_fetched) else 0
    outcome = StudyOutcome(entry.study_instance_uid, OutcomeStatus.JUDGED, decision.verdict, str(saved), fetched)
    if log_outcome:
        logger.info("%s", outcome_line(outcome))
    return outcome


def log_outcomes(outcomes: Sequence[object], of: int) -> None:
    """One INFO record, a line per judged study of ``outcomes`` (other items are skipped), for a
    caller that judged ``of`` studies with ``log_outcome=False``."""
    judged = [outcome_line(o) for o in outcomes if isinstance(o, StudyOutcome) and o.status is OutcomeStatus.JUDGED]
    if judged:
        logger.info("%d of %d studies judged:\n%s", len(judged), of, "\n".join(judged))


def outcome_line(outcome: StudyOutcome) -> str:
    """``study <uid>: <verdict> (<saved>)``, and the pixel data fetched when some was: how an
    operator finds a study's verdict in the flow run's log."""
    line = f"study {outcome.study_instance_uid}: {outcome.verdict} ({outcome.saved})"
    if outcome.bytes_fetched:
        line += f", {outcome.bytes_fetched / 1e6:.1f} MB of pixel data fetched"
    return line
