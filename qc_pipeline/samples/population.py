"""A seeded, generated population of judged studies from several fictional institutions.

For the evaluation report, the spot-check sampler and calibration: studies of DR, CT and MR
items of the catalog in force, from institutions in both regions (Chongqing and Sichuan), over
two half-years, with verdict mixes that differ per institution (one clearly fails the
qualification rule). No DICOM is written: each study is a ``Decision`` as the pipeline would
make it — findings from the real rules of ``thresholds/`` (image-quality findings by the same
function that judges measured metrics, timeliness by the same check), the verdict by
``decide_verdict``, eligibility by ``eligibility`` — stored with ``ResultStore.save_decision``.

Seeded and reproducible: the same seed and scale give the same studies, UIDs, values and
findings; writing them again stores nothing (the decision keys are unchanged). Institution names
are fictional on purpose; patient IDs are synthetic and no patient names exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from qc_pipeline.catalog.items import Catalog, Item, load_catalog
from qc_pipeline.checks import image_quality, timeliness
from qc_pipeline.domain import Decision, Finding, ItemRef, Measurement, StudySummary
from qc_pipeline.pipeline import ITEM_MATCHED, ITEM_UNMATCHED, provenance
from qc_pipeline.rules import Thresholds, decide_verdict, eligibility, load_thresholds
from qc_pipeline.rules.loader import ITEMS_DIR
from qc_pipeline.store import ResultStore, SaveOutcome

logger = logging.getLogger(__name__)

POPULATION_SEED: Final = 20261
POPULATION_SOURCE: Final = "population://qc-pipeline"
"""``source_uri`` of the generated studies (and of the run that stores them)."""
PERIODS: Final = ((dt.date(2026, 1, 1), dt.date(2026, 6, 30)), (dt.date(2026, 7, 1), dt.date(2026, 12, 31)))
"""The two half-years generated: 2026H1 and 2026H2 (study dates, site time)."""

REGIONS: Final = {"chongqing": ("重庆", "Chongqing"), "sichuan": ("四川", "Sichuan")}


@dataclass(frozen=True, slots=True)
class Profile:
    """How an institution's studies tend to look; probabilities per study, values per series.

    ``trend`` multiplies every defect probability in the second half-year (< 1: improving).
    """

    volume: int
    """Studies per half-year at scale 1."""
    modality_mix: tuple[float, float, float]
    """Shares of DR, CT and MR studies."""
    p_not_applicable: float
    p_incomplete: float
    p_continuity: float
    p_metadata_fail: float
    p_metadata_review: float
    dr_di_mean: float
    dr_di_sd: float
    ct_noise_median_hu: float
    mr_snr_median: float
    mr_ghost_median_percent: float
    delay_median_h: float
    delay_sigma: float
    """Log-normal spread of the upload delay (the median times exp(+-sigma) holds ~68 %)."""
    p_not_uploaded_in_time: float = 0.0
    """Share of studies uploaded days later (a batch upload), on top of the log-normal delays."""
    trend: float = 1.0


@dataclass(frozen=True, slots=True)
class Institution:
    """A fictional institution; ``name`` is what InstitutionName (0008,0080) holds."""

    code: str
    name: str
    name_en: str
    region: str
    """A key of ``REGIONS`` (``chongqing`` or ``sichuan``)."""
    profile: Profile

    @property
    def region_zh(self) -> str:
        return REGIONS[self.region][0]

    @property
    def region_en(self) -> str:
        return REGIONS[self.region][1]


INSTITUTIONS: Final = (
    Institution(
        "CQA",
        "重庆市示范医院A",
        "Chongqing Demonstration Hospital A",
        "chongqing",
        Profile(
            volume=60,
            modality_mix=(0.5, 0.3, 0.2),
            p_not_applicable=0.03,
            p_incomplete=0.03,
            p_continuity=0.01,
            p_metadata_fail=0.005,
            p_metadata_review=0.02,
            dr_di_mean=0.1,
            dr_di_sd=0.7,
            ct_noise_median_hu=12.0,
            mr_snr_median=28.0,
            mr_ghost_median_percent=1.0,
            delay_median_h=1.5,
            delay_sigma=0.8,
            trend=0.8,
        ),
    ),
    Institution(
        "CQB",
        "重庆市示范医院B",
        "Chongqing Demonstration Hospital B",
        "chongqing",
        Profile(
            volume=50,
            modality_mix=(0.55, 0.3, 0.15),
            p_not_applicable=0.05,
            p_incomplete=0.07,
            p_continuity=0.02,
            p_metadata_fail=0.01,
            p_metadata_review=0.05,
            dr_di_mean=0.4,
            dr_di_sd=1.0,
            ct_noise_median_hu=16.0,
            mr_snr_median=20.0,
            mr_ghost_median_percent=1.6,
            delay_median_h=4.0,
            delay_sigma=1.0,
            p_not_uploaded_in_time=0.03,
            trend=1.0,
        ),
    ),
    Institution(
        "CQC",
        "重庆市示范区医院C",
        "Chongqing Demonstration District Hospital C",
        "chongqing",
        Profile(
            volume=40,
            modality_mix=(0.5, 0.35, 0.15),
            p_not_applicable=0.05,
            p_incomplete=0.2,
            p_continuity=0.06,
            p_metadata_fail=0.05,
            p_metadata_review=0.1,
            dr_di_mean=1.6,
            dr_di_sd=1.4,
            ct_noise_median_hu=26.0,
            mr_snr_median=10.0,
            mr_ghost_median_percent=2.6,
            delay_median_h=20.0,
            delay_sigma=1.1,
            p_not_uploaded_in_time=0.1,
            trend=1.3,
        ),
    ),
    Institution(
        "SCD",
        "四川省示范医院D",
        "Sichuan Demonstration Hospital D",
        "sichuan",
        Profile(
            volume=55,
            modality_mix=(0.45, 0.3, 0.25),
            p_not_applicable=0.04,
            p_incomplete=0.04,
            p_continuity=0.01,
            p_metadata_fail=0.005,
            p_metadata_review=0.03,
            dr_di_mean=-0.2,
            dr_di_sd=0.8,
            ct_noise_median_hu=13.0,
            mr_snr_median=25.0,
            mr_ghost_median_percent=1.2,
            delay_median_h=2.0,
            delay_sigma=0.9,
            p_not_uploaded_in_time=0.01,
            trend=0.9,
        ),
    ),
    Institution(
        "SCE",
        "四川省示范医院E",
        "Sichuan Demonstration Hospital E",
        "sichuan",
        Profile(
            volume=45,
            modality_mix=(0.5, 0.25, 0.25),
            p_not_applicable=0.06,
            p_incomplete=0.04,
            p_continuity=0.03,
            p_metadata_fail=0.01,
            p_metadata_review=0.04,
            dr_di_mean=-0.1,
            dr_di_sd=0.8,
            ct_noise_median_hu=15.0,
            mr_snr_median=14.0,
            mr_ghost_median_percent=1.4,
            delay_median_h=6.0,
            delay_sigma=1.2,
            p_not_uploaded_in_time=0.04,
            trend=0.7,
        ),
    ),
)
"""Fictional institutions (no real hospital names), two to three per region."""


def institution_regions() -> dict[str, str]:
    """Institution name -> region key (``chongqing`` / ``sichuan``), for configurations to list."""
    return {i.name: i.region for i in INSTITUTIONS}


@dataclass(frozen=True, slots=True)
class PopulationSummary:
    """What ``generate_population`` made and what it stored."""

    n_studies: int
    outcomes: dict[str, int] = field(default_factory=dict)
    """``SaveOutcome`` value -> count (all ``unchanged`` on a re-run)."""
    verdicts: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    """The run that stored the new decisions; None when nothing was new."""


_SITE_TZ_FALLBACK: Final = dt.timezone(dt.timedelta(hours=8))


def load_population_thresholds() -> Thresholds:
    """``thresholds/`` with its item catalog (the rules the population uses must exist in it)."""
    thresholds = load_thresholds()
    catalog = load_catalog(thresholds.directory / ITEMS_DIR, thresholds.site.catalog_lists)
    return dataclasses.replace(thresholds, catalog=catalog)


def _uid(seed: int, *parts: object) -> str:
    """A ``2.25.<decimal>`` UID derived from the seed and ``parts`` (at most 44 characters)."""
    digest = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(map(str, (seed, "rng", *parts))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True, slots=True)
class _Series:
    uid: str
    label_en: str
    label_zh: str


def _finding(thresholds: Thresholds, rule_id: str, en: str, zh: str, **kwargs: object) -> list[Finding]:
    found = thresholds.finding(rule_id, en, zh, **kwargs)  # type: ignore[arg-type]
    return [] if found is None else [found]


def _judge(
    thresholds: Thresholds, metric: str, value: float, unit: str, series: _Series, modality: str, item_code: str
) -> tuple[Measurement, list[Finding]]:
    """The measurement and the finding the pipeline's image-quality rules give it."""
    m = Measurement(metric=metric, value=float(value), unit=unit, series_instance_uid=series.uid)
    target = image_quality.Target(modality.lower(), series.uid, (), series.label_en, series.label_zh)
    rules = image_quality.rules_by_metric(thresholds).get(metric, [])
    found = image_quality.judge_measurement(
        m, target, "DX" if modality == "DR" else modality, item_code, rules, thresholds
    )
    return m, [] if found is None else [found]


_DR_VIEWS: Final = {
    "PA": ("PA", "后前位"),
    "AP": ("AP", "正位"),
    "LAT": ("lateral", "侧位"),
    "OBL": ("oblique", "斜位"),
}


def _dr_views(item: Item) -> list[str]:
    groups = item.requires.views.groups if item.requires.views is not None else [["PA"]]
    return [str(g[0]) for g in groups]


def _image_quality(
    rng: np.random.Generator, thresholds: Thresholds, profile: Profile, item: Item, study_uid: str, bad: float
) -> tuple[list[Measurement], list[Finding], list[str]]:
    """Measurements per series/radiograph and their findings; also the views (DR) for completeness.

    ``bad`` scales the spread towards the limits (the second half-year's trend).
    """
    measurements: list[Measurement] = []
    findings: list[Finding] = []
    modality = item.modality
    views: list[str] = []
    if modality == "DR":
        views = _dr_views(item)
        for k, view in enumerate(views, start=1):
            en, zh = _DR_VIEWS.get(view, (view, view))
            s = _Series(
                f"{study_uid}.{k}",
                f"series 1 '{item.name_en} {en}', image {k}",
                f"序列 1 “{item.region_zh} {zh}” 第 {k} 幅",
            )
            values = (
                ("dr.deviation_index", rng.normal(profile.dr_di_mean, profile.dr_di_sd * bad), "1"),
                ("dr.clipped_stored_max_percent", float(rng.lognormal(math.log(0.05 * bad), 1.2)), "%"),
                ("dr.noise_relative_percent", float(rng.lognormal(math.log(0.7), 0.35 * bad)), "%"),
            )
            for metric, value, unit in values:
                m, f = _judge(thresholds, metric, value, unit, s, modality, item.code)
                measurements.append(m)
                findings += f
    elif modality == "CT":
        n_series = 1 if item.contrast != "enhanced" else 2
        head = item.code in {"YB-034", "YB-045"} or item.body_part in {"HEAD", "BRAIN"}
        median = profile.ct_noise_median_hu * (0.4 if head else 1.0)
        for k in range(1, n_series + 1):
            name = "平扫 5mm" if k == 1 else "增强 静脉期 5mm"
            s = _Series(f"{study_uid}.{k}", f"series {k} '{name}'", f"序列 {k} “{name}”")
            values = (
                ("ct.noise_hu", float(rng.lognormal(math.log(median), 0.3 * bad)), "HU"),
                ("ct.air_hu", float(rng.normal(-995.0, 12.0 * bad)), "HU"),
                ("ct.soft_tissue_hu", float(rng.normal(40.0, 12.0)), "HU"),
            )
            for metric, value, unit in values:
                m, f = _judge(thresholds, metric, value, unit, s, modality, item.code)
                measurements.append(m)
                findings += f
    else:
        names = ("t2_tse_tra", "t1_se_tra", "t2_flair_tra", "ep2d_diff_b1000")[: 2 + int(rng.integers(0, 3))]
        for k, name in enumerate(names, start=1):
            s = _Series(f"{study_uid}.{k}", f"series {k} '{name}'", f"序列 {k} “{name}”")
            values = (
                ("mr.snr", float(rng.lognormal(math.log(profile.mr_snr_median), 0.35 * bad)), "1"),
                (
                    "mr.ghosting_percent",
                    float(rng.lognormal(math.log(profile.mr_ghost_median_percent), 0.45 * bad)),
                    "%",
                ),
                ("mr.wrap_percent", float(rng.exponential(0.3 * bad)), "%"),
            )
            for metric, value, unit in values:
                m, f = _judge(thresholds, metric, value, unit, s, modality, item.code)
                measurements.append(m)
                findings += f
    return measurements, findings, views


def _completeness(rng: np.random.Generator, thresholds: Thresholds, item: Item, views: Sequence[str]) -> list[Finding]:
    if item.modality == "DR":
        if len(views) > 1:
            en, zh = _DR_VIEWS.get(views[-1], (views[-1], views[-1]))
            return _finding(
                thresholds,
                "completeness.dr.view_missing",
                f"{en} view missing for {item.name_en} ({len(views) - 1} image(s) in the study)",
                f"缺少{zh}（{item.name_zh}，本检查共 {len(views) - 1} 幅图像）",
            )
        return _finding(
            thresholds,
            "completeness.dr.view_missing",
            f"{views[0]} view missing for {item.name_en} (1 image(s) in the study)",
            f"缺少{_DR_VIEWS.get(views[0], (views[0], views[0]))[1]}（{item.name_zh}，本检查共 1 幅图像）",
        )
    if item.modality == "CT":
        if item.contrast == "enhanced" and rng.random() < 0.6:
            return _finding(
                thresholds,
                "completeness.ct.post_contrast_missing",
                f"post-contrast series missing for {item.name_en}: 0 found, 1 required",
                f"缺少增强序列（{item.name_zh}）：现有 0 个，要求至少 1 个",
            )
        limit = item.requires.max_slice_thickness_mm.value if item.requires.max_slice_thickness_mm else 1.25
        return _finding(
            thresholds,
            "completeness.ct.slice_thickness",
            f"no reconstruction of {limit:g} mm or thinner: the thinnest series is 5 mm",
            f"无层厚 ≤ {limit:g} mm 的重建序列：最薄为 5 mm",
            value="5 mm",
            limit=f"≤ {limit:g} mm",
        )
    if rng.random() < 0.7:
        return _finding(
            thresholds,
            "completeness.mr.sequence_missing",
            f"no axial T2-FLAIR for {item.name_en}",
            f"缺少横断位T2-FLAIR序列（{item.name_zh}）",
        )
    return _finding(
        thresholds,
        "completeness.mr.planes",
        f"{item.name_en} needs 3 planes; found 2 (axial, sagittal)",
        f"{item.name_zh}需 3 个方位，现有 2 个（横断位、矢状位）",
    )


def _metadata(
    rng: np.random.Generator, thresholds: Thresholds, profile: Profile, p_scale: float, study_date: dt.date
) -> list[Finding]:
    findings: list[Finding] = []
    if rng.random() < profile.p_metadata_fail * p_scale:
        raw = f"{study_date.year + 1}0101"
        findings += _finding(
            thresholds,
            "metadata.patient_birth_date.after_study",
            f"PatientBirthDate (0010,0030) {raw} is after StudyDate (0008,0020) {study_date:%Y%m%d}",
            f"出生日期 (0010,0030) {raw} 晚于检查日期 (0008,0020) {study_date:%Y%m%d}",
            value=raw,
            limit=f"<= {study_date:%Y%m%d}",
        )
    if rng.random() < profile.p_metadata_review * p_scale:
        findings += _finding(
            thresholds,
            "metadata.accession_number.missing",
            "AccessionNumber (0008,0050) is missing or empty",
            "检查号 (0008,0050) 缺失或为空",
        )
    return findings


def _continuity(thresholds: Thresholds, series_uid: str) -> list[Finding]:
    return _finding(
        thresholds,
        "continuity.slice.missing",
        "series 1: slice positions missing between 42.5 mm and 52.5 mm (spacing 5 mm)",
        "序列 1：层面位置 42.5 mm 与 52.5 mm 之间缺失层面（层间距 5 mm）",
        series_instance_uid=series_uid,
    )


def make_decisions(
    thresholds: Thresholds | None = None,
    *,
    seed: int = POPULATION_SEED,
    scale: float = 1.0,
    institutions: Sequence[Institution] = INSTITUTIONS,
) -> list[Decision]:
    """The population's decisions (nothing stored), ordered by institution, period and study.

    ``scale`` multiplies every institution's volume (0.2 gives ~100 studies for a quick test;
    at least 4 studies per institution and half-year).
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    thresholds = thresholds or load_population_thresholds()
    catalog: Catalog = thresholds.catalog
    site_tz = thresholds.site.tzinfo()
    prov = provenance(thresholds)
    by_modality = {m: catalog.for_modality(m) for m in ("DR", "CT", "MR")}
    decisions: list[Decision] = []
    for inst in institutions:
        p = inst.profile
        for period_index, (start, end) in enumerate(PERIODS):
            rng = _rng(seed, inst.code, period_index)
            p_scale = 1.0 if period_index == 0 else p.trend
            bad = 1.0 if period_index == 0 else math.sqrt(p.trend)
            n = max(4, round(p.volume * scale))
            days = (end - start).days + 1
            for i in range(n):
                uid = _uid(seed, inst.code, period_index, i)
                modality = str(rng.choice(["DR", "CT", "MR"], p=list(p.modality_mix)))
                item = by_modality[modality][int(rng.integers(0, len(by_modality[modality])))]
                study_date = start + dt.timedelta(days=int(rng.integers(0, days)))
                study_time = dt.time(int(rng.integers(8, 20)), int(rng.integers(0, 60)))
                acquired = dt.datetime.combine(study_date, study_time, tzinfo=site_tz)
                delay = float(rng.lognormal(math.log(p.delay_median_h), p.delay_sigma))
                if rng.random() < p.p_not_uploaded_in_time * p_scale:
                    delay += float(rng.uniform(72.0, 240.0))
                delay = round(delay, 3)
                received = acquired + dt.timedelta(hours=delay)
                not_applicable = rng.random() < p.p_not_applicable
                dicom_modality = {"DR": str(rng.choice(["DX", "CR"], p=[0.8, 0.2])), "CT": "CT", "MR": "MR"}[modality]
                findings: list[Finding] = []
                measurements: list[Measurement] = []
                item_ref: ItemRef | None = None
                if not_applicable:
                    dicom_modality = "US" if rng.random() < 0.5 else dicom_modality
                    if dicom_modality == "US":
                        findings += _finding(
                            thresholds,
                            "catalog.modality.not_candidate",
                            "Modality (0008,0060) US is not on the recognition list (CR, CT, DX, MR)",
                            "检查类型 (0008,0060) US 不在互认项目范围内",
                            value="US",
                            limit="CR,CT,DX,MR",
                        )
                    else:
                        findings += _finding(
                            thresholds,
                            ITEM_UNMATCHED,
                            "no recognition item fits this study (no body part named)",
                            "未能对应到互认项目（未识别出检查部位），不适用互认",
                        )
                else:
                    item_ref = ItemRef(code=item.code, name_zh=item.name_zh, name_en=item.name_en)
                    findings += _finding(
                        thresholds,
                        ITEM_MATCHED,
                        f"recognition item {item.code} {item.name_en} (StudyDescription)",
                        f"互认项目 {item.code} {item.name_zh}（依据：检查描述）",
                        value=item.code,
                    )
                    findings += _metadata(rng, thresholds, p, p_scale, study_date)
                    measurements, iq_findings, views = _image_quality(rng, thresholds, p, item, uid, bad)
                    if rng.random() < p.p_incomplete * p_scale:
                        findings += _completeness(rng, thresholds, item, views)
                    if modality != "DR" and rng.random() < p.p_continuity * p_scale:
                        findings += _continuity(thresholds, f"{uid}.1")
                    findings += iq_findings
                findings += timeliness.check_timeliness(delay, thresholds)
                verdict = decide_verdict(findings, candidate=not not_applicable)
                modalities = (dicom_modality,)
                eligible, until = eligibility(
                    verdict, study_date=study_date, modalities=modalities, config=thresholds.site.eligibility
                )
                n_series = len({m.series_instance_uid for m in measurements}) or 1
                summary = StudySummary(
                    study_instance_uid=uid,
                    patient_id=f"{inst.code}{period_index + 1}{i:05d}",
                    patient_sex=str(rng.choice(["F", "M"])),
                    patient_birth_date=dt.date(
                        int(rng.integers(1940, 2020)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
                    ),
                    accession_number=f"{inst.code}{study_date:%Y%m%d}{i:04d}",
                    institution=inst.name,
                    modalities=modalities,
                    study_date=study_date,
                    study_time=study_time,
                    study_description=item.name_zh if not not_applicable else "其他检查",
                    n_series=n_series,
                    n_instances=n_series * (2 if modality == "DR" else 40),
                    received_at=received.astimezone(dt.UTC),
                    upload_delay_h=delay,
                )
                decisions.append(
                    Decision(
                        study=summary,
                        verdict=verdict,
                        findings=tuple(findings),
                        provenance=prov,
                        content_fingerprint=hashlib.sha256(f"{uid}|{seed}".encode()).hexdigest(),
                        decided_at=(received + dt.timedelta(minutes=10)).astimezone(dt.UTC),
                        eligible=eligible,
                        eligible_until=until,
                        item=item_ref,
                        metrics={timeliness.UPLOAD_DELAY_METRIC: delay},
                        measurements=tuple(measurements),
                        source_uri=f"{POPULATION_SOURCE}/{inst.code}",
                    )
                )
    return decisions


def generate_population(
    store: ResultStore,
    thresholds: Thresholds | None = None,
    *,
    seed: int = POPULATION_SEED,
    scale: float = 1.0,
    institutions: Sequence[Institution] = INSTITUTIONS,
) -> PopulationSummary:
    """Store the population in ``store`` through ``save_decision``, in one run.

    Idempotent: decisions already stored (same decision key) are skipped, and no run is recorded
    when nothing is new.
    """
    thresholds = thresholds or load_population_thresholds()
    decisions = make_decisions(thresholds, seed=seed, scale=scale, institutions=institutions)
    prov = provenance(thresholds)
    pending = [d for d in decisions if store.needs_judging(d.study_instance_uid, d.content_fingerprint, prov)]
    outcomes: Counter[str] = Counter({str(SaveOutcome.UNCHANGED): len(decisions) - len(pending)})
    run_id = None
    if pending:
        run_id = store.start_run(
            source_uri=POPULATION_SOURCE,
            pipeline_version=prov.pipeline_version,
            thresholds_version=prov.thresholds_version,
        )
        for d in pending:
            outcomes[str(store.save_decision(d, run_id=run_id))] += 1
        store.finish_run(
            run_id,
            status="completed",
            n_studies=len(decisions),
            n_judged=len(pending),
            n_unchanged=len(decisions) - len(pending),
            n_errors=0,
        )
    logger.info("population (seed %d, scale %g): %d studies, %s", seed, scale, len(decisions), dict(outcomes))
    return PopulationSummary(
        n_studies=len(decisions),
        outcomes={k: v for k, v in sorted(outcomes.items()) if v},
        verdicts=dict(sorted(Counter(str(d.verdict) for d in decisions).items())),
        run_id=run_id,
    )
