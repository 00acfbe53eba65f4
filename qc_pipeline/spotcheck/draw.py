"""The stratified draw of a period's studies and their blinded assignment to reviewers.

The population of a draw is every study whose current decision's verdict has a sampling rate,
whose study date falls in the period, whose institution is configured, and that no earlier draw
took. It is split into strata (``sampling.strata``: region, institution, modality, item,
verdict). Each stratum gives the sum of its studies' rates, rounded down or up at random (seeded):
every study is drawn with its verdict's rate. Then each group of strata sharing the
``sampling.minimum_keys`` values is topped up to ``minimum_per_stratum``; a group smaller than
that is taken whole and reported as under-filled.

Which studies are taken is decided by a sort key, SHA-256 of ``"<seed>:<study UID>"``: the lowest
keys first. So the draw depends on nothing but the seed, the sampling settings and the population
(not on the database's row order, the library versions or the machine), anyone can recompute it
with a SHA-256 tool, and ``verify`` re-draws it from the recorded population to prove it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import logging
import math
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from qc_pipeline.errors import SpotCheckError
from qc_pipeline.spotcheck.blinding import case_code, patient_pseudonym
from qc_pipeline.spotcheck.config import SpotCheckConfig
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord
from qc_pipeline.store.spotcheck import (
    SpotCheckAssignment,
    SpotCheckCase,
    SpotCheckDraw,
    SpotCheckPopulation,
    read_session,
    write_session,
)

logger = logging.getLogger(__name__)

DR_MODALITIES: Final = frozenset({"CR", "DX", "DR"})
NO_ITEM: Final = "-"
PRIMARY_READING: Final = 1
SECOND_READING: Final = 2
_PERIOD = re.compile(r"^(?P<year>\d{4})(?:-(?P<month>\d{2})|-?[Qq](?P<quarter>[1-4])|-?[Hh](?P<half>[12]))?$")


@dataclass(frozen=True, slots=True)
class Period:
    """A reporting period: ``2026-10`` (month), ``2026-Q4``, ``2026-H2`` or ``2026``."""

    label: str
    start: dt.date
    end: dt.date
    """Last day, inclusive."""

    @classmethod
    def parse(cls, text: str) -> Period:
        m = _PERIOD.match(text.strip())
        if m is None or (m["month"] is not None and not 1 <= int(m["month"]) <= 12):
            raise SpotCheckError(
                f"period {text!r} is not one of YYYY-MM, YYYY-Qn, YYYY-Hn, YYYY (e.g. 2026-10, 2026-Q4, 2026-H2)"
            )
        year = int(m["year"])
        if m["month"]:
            first, last = int(m["month"]), int(m["month"])
        elif m["quarter"]:
            first = 3 * int(m["quarter"]) - 2
            last = first + 2
        elif m["half"]:
            first = 6 * int(m["half"]) - 5
            last = first + 5
        else:
            first, last = 1, 12
        end = dt.date(year, last, calendar.monthrange(year, last)[1])
        # One label per period, whichever spelling was typed (2026H2 and 2026-H2 are one period).
        label = f"{year:04d}" + (
            f"-{m['month']}"
            if m["month"]
            else f"-Q{m['quarter']}"
            if m["quarter"]
            else f"-H{m['half']}"
            if m["half"]
            else ""
        )
        return cls(label, dt.date(year, first, 1), end)

    @classmethod
    def previous_month(cls, today: dt.date) -> Period:
        first = today.replace(day=1) - dt.timedelta(days=1)
        return cls.parse(f"{first.year:04d}-{first.month:02d}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One study of a draw's population."""

    study_id: int
    study_instance_uid: str
    stratum: str
    verdict: str


@dataclass(frozen=True, slots=True)
class StratumReport:
    """One group of strata at the level the minimum applies to (``sampling.minimum_keys``)."""

    stratum: str
    population: int
    expected: float
    """The sum of its studies' sampling rates (what proportional allocation alone would give)."""
    drawn: int
    underfilled: bool
    """Fewer studies than the minimum per stratum: all of them were drawn."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "stratum": self.stratum,
            "population": self.population,
            "expected": self.expected,
            "drawn": self.drawn,
            "underfilled": self.underfilled,
        }


@dataclass(frozen=True)
class DrawReport:
    """What a draw did (or, when ``created`` is false, what the earlier draw of the period did)."""

    period: str
    seed: str
    config_hash: str
    config_version: str
    population_size: int
    population_digest: str
    n_drawn: int
    strata: list[StratumReport]
    excluded: dict[str, Any]
    created_at: dt.datetime
    created: bool
    assignments: dict[str, int] = field(default_factory=dict)
    """Reviewer account -> number of studies assigned."""

    @property
    def underfilled(self) -> list[StratumReport]:
        return [s for s in self.strata if s.underfilled]


def sort_key(seed: str, study_instance_uid: str) -> str:
    """The draw order of a study: SHA-256 hex of ``"<seed>:<uid>"`` (lowest first)."""
    return hashlib.sha256(f"{seed}:{study_instance_uid}".encode()).hexdigest()


def _uniform(seed: str, purpose: str, study_instance_uid: str) -> float:
    """A number in [0, 1) that depends only on the seed, the purpose and the study."""
    return int(hashlib.sha256(f"{seed}:{purpose}:{study_instance_uid}".encode()).hexdigest()[:13], 16) / 16**13


def population_digest(candidates: Iterable[Candidate]) -> str:
    """SHA-256 of the population's sorted ``uid<TAB>stratum`` lines."""
    digest = hashlib.sha256()
    for line in sorted(f"{c.study_instance_uid}\t{c.stratum}\n" for c in candidates):
        digest.update(line.encode())
    return digest.hexdigest()


def stratum_size(seed: str, stratum: str, n: int, expected: float) -> int:
    """How many studies a stratum of ``n`` gives when ``expected`` (the sum of its studies'
    rates) are due: floor(expected), plus one with probability frac(expected) (seeded by the
    stratum). Every study then has its verdict's rate as inclusion probability, and small strata
    are not over-sampled by rounding up."""
    expected = round(expected, 9)  # 0.05 * 20 is 1.0000000000000002 in binary floating point
    whole = math.floor(expected)
    extra = 1 if _uniform(seed, "stratum", stratum) < expected - whole else 0
    return min(n, whole + extra)


def select_sample(
    candidates: Sequence[Candidate],
    *,
    seed: str,
    rates: Mapping[str, float],
    minimum: int,
    minimum_keys: Sequence[str],
) -> tuple[set[str], list[StratumReport]]:
    """The drawn study UIDs and the report per minimum group. Pure: same input, same draw.

    1. Each stratum (all keys) gives ``stratum_size`` studies, those with the lowest sort keys.
    2. Each group of strata sharing the ``minimum_keys`` values that got fewer than ``minimum``
       is topped up from its other studies, lowest sort keys first; a group with fewer studies
       than ``minimum`` is taken whole and reported as under-filled.
    """
    order = {c.study_instance_uid: sort_key(seed, c.study_instance_uid) for c in candidates}
    by_stratum: dict[str, list[Candidate]] = defaultdict(list)
    by_group: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_stratum[c.stratum].append(c)
        by_group[group_label(c.stratum, minimum_keys)].append(c)
    drawn: set[str] = set()
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum], key=lambda c: order[c.study_instance_uid])
        size = stratum_size(seed, stratum, len(members), sum(rates[c.verdict] for c in members))
        drawn.update(c.study_instance_uid for c in members[:size])
    reports = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda c: order[c.study_instance_uid])
        have = sum(c.study_instance_uid in drawn for c in members)
        for c in members:
            if have >= minimum:
                break
            if c.study_instance_uid not in drawn:
                drawn.add(c.study_instance_uid)
                have += 1
        expected = round(sum(rates[c.verdict] for c in members), 6)
        reports.append(StratumReport(group, len(members), expected, have, len(members) < minimum))
    return drawn, reports


def group_label(stratum: str, keys: Sequence[str]) -> str:
    """The part of a stratum label (``region=..|institution=..|...``) named by ``keys``."""
    parts = dict(part.split("=", 1) for part in stratum.split("|"))
    return "|".join(f"{k}={parts[k]}" for k in keys)


def normalise_modality(modality: str | None) -> str:
    """``CR``/``DX``/``DR`` -> ``DR``; of several (``CT,SR``) the first of DR, CT, MR; else as stored."""
    parts = [p.strip().upper() for p in (modality or "").split(",") if p.strip()]
    for p in parts:
        if p in DR_MODALITIES:
            return "DR"
        if p in ("CT", "MR"):
            return p
    return parts[0] if parts else "-"


def stratum_label(keys: Sequence[str], values: Mapping[str, str]) -> str:
    """``region=chongqing|institution=...|verdict=pass`` (``|`` and ``=`` in values become ``/``)."""
    return "|".join(f"{k}={values[k].replace('|', '/').replace('=', '/')}" for k in keys)


def eligible_population(
    store: ResultStore, config: SpotCheckConfig, period: Period
) -> tuple[list[Candidate], dict[str, Any], dict[int, tuple[int, str | None, str | None, str | None, str]]]:
    """The population of a draw for ``period``, the counts of what was left out and why, and per
    study id (decision id, patient id, modality, item code, institution as configured)."""
    keys = config.sampling.strata
    rates = config.sampling.rates
    query = (
        select(StudyRecord, DecisionRecord)
        .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
        .where(
            DecisionRecord.is_current.is_(True),
            StudyRecord.study_date >= period.start,
            StudyRecord.study_date <= period.end,
        )
    )
    with read_session(store) as session:
        rows = session.execute(query).tuples().all()
        already = set(session.scalars(select(SpotCheckCase.study_id)).all())
    candidates: list[Candidate] = []
    details: dict[int, tuple[int, str | None, str | None, str | None, str]] = {}
    unconfigured: Counter[str] = Counter()
    not_sampled: Counter[str] = Counter()
    n_already = 0
    for study, decision in rows:
        if decision.verdict not in rates:
            not_sampled[decision.verdict] += 1
            continue
        institution = config.institution(study.institution)
        if institution is None:
            unconfigured[study.institution or "(none)"] += 1
            continue
        if study.id in already:
            n_already += 1
            continue
        modality = normalise_modality(study.modality)
        values = {
            "region": institution.region,
            "institution": institution.name,
            "modality": modality,
            "item": decision.item_code or NO_ITEM,
            "verdict": decision.verdict,
        }
        candidates.append(Candidate(study.id, study.study_instance_uid, stratum_label(keys, values), decision.verdict))
        details[study.id] = (decision.id, study.patient_id, modality, decision.item_code, institution.name)
    excluded = {
        "already_drawn": n_already,
        "verdict_not_sampled": dict(sorted(not_sampled.items())),
        "unconfigured_institution": dict(sorted(unconfigured.items())),
    }
    return candidates, excluded, details


def draw(
    store: ResultStore,
    config: SpotCheckConfig,
    period: Period | str,
    *,
    key: bytes,
    seed: str | None = None,
    created_by: str = "cli",
    now: dt.datetime | None = None,
) -> DrawReport:
    """Draw the spot-check sample of ``period`` and assign it, blinded, to reviewers.

    A period is drawn once: when it was drawn already, nothing is written and the earlier draw's
    report is returned (``created`` false), whatever ``seed`` says. ``seed`` (any text, e.g. a
    number announced in advance) defaults to 64 random bits; ``key`` makes the pseudonyms.
    """
    period = Period.parse(period) if isinstance(period, str) else period
    existing = draw_report(store, period.label)
    if existing is not None:
        logger.info("period %s was drawn already (seed %s); nothing drawn", period.label, existing.seed)
        return existing
    if seed is not None and not (1 <= len(seed) <= 40 and seed.isprintable()):
        raise SpotCheckError(f"seed must have 1 to 40 printable characters, got {len(seed)}")
    seed = seed or str(secrets.randbits(64))
    now = now or dt.datetime.now(dt.UTC)
    candidates, excluded, details = eligible_population(store, config, period)
    sampling = config.sampling
    drawn, strata = select_sample(
        candidates,
        seed=seed,
        rates=dict(sampling.rates.items()),  # keyed by str, as select_sample takes them
        minimum=sampling.minimum_per_stratum,
        minimum_keys=sampling.minimum_keys,
    )
    digest = population_digest(candidates)
    record = SpotCheckDraw(
        period=period.label,
        seed=seed,
        config_hash=config.config_hash,
        config_version=config.version,
        sampling=sampling.model_dump(mode="json"),
        population_size=len(candidates),
        population_digest=digest,
        n_drawn=len(drawn),
        excluded=excluded,
        strata=[s.as_dict() for s in strata],
        created_at=now,
        created_by=created_by,
    )
    cases = sorted(
        (c for c in candidates if c.study_instance_uid in drawn), key=lambda c: sort_key(seed, c.study_instance_uid)
    )
    try:
        with write_session(store) as session:
            session.add(record)
            session.flush()
            session.add_all(
                SpotCheckPopulation(
                    draw_id=record.id,
                    study_id=c.study_id,
                    stratum=c.stratum,
                    verdict=c.verdict,
                    drawn=c.study_instance_uid in drawn,
                )
                for c in candidates
            )
            loads: Counter[str] = Counter()
            for c in cases:
                decision_id, patient_id, modality, item_code, institution = details[c.study_id]
                region = config.institution(institution).region  # type: ignore[union-attr]
                case = SpotCheckCase(
                    draw_id=record.id,
                    study_id=c.study_id,
                    decision_id=decision_id,
                    case_code=case_code(key, c.study_instance_uid),
                    patient_pseudonym=patient_pseudonym(key, patient_id, c.study_instance_uid),
                    stratum=c.stratum,
                    machine_verdict=c.verdict,
                    institution=institution,
                    region=region,
                    modality=modality,
                    item_code=item_code,
                    sort_key=sort_key(seed, c.study_instance_uid),
                )
                session.add(case)
                session.flush()
                readings = [(PRIMARY_READING, [r for r in config.reviewers if r.region != region])]
                if _uniform(seed, "second-reading", c.study_instance_uid) < sampling.second_reading_rate:
                    readings.append((SECOND_READING, [r for r in config.reviewers if r.region == region]))
                for reading, pool in readings:
                    if not pool:
                        continue  # no reviewer in the study's own region: no second reading
                    reviewer = min(pool, key=lambda r: (loads[r.account], r.account))
                    loads[reviewer.account] += 1
                    session.add(
                        SpotCheckAssignment(
                            case_id=case.id,
                            reviewer=reviewer.account,
                            reviewer_region=reviewer.region,
                            reading=reading,
                            assigned_at=now,
                        )
                    )
    except IntegrityError as exc:  # another process drew the period (or one of its studies) meanwhile
        existing = draw_report(store, period.label)
        if existing is not None:
            return existing
        raise SpotCheckError(f"the draw of {period.label} collided with another draw; run it again") from exc
    logger.info(
        "period %s drawn: %d of %d studies (seed %s, config %s)",
        period.label,
        len(drawn),
        len(candidates),
        seed,
        config.config_hash[:12],
    )
    report = draw_report(store, period.label)
    assert report is not None
    return DrawReport(**{**report.__dict__, "created": True})


def draw_report(store: ResultStore, period: str) -> DrawReport | None:
    """The recorded draw of ``period``, or None."""
    with read_session(store) as session:
        record = session.scalars(select(SpotCheckDraw).where(SpotCheckDraw.period == period)).one_or_none()
        if record is None:
            return None
        loads = Counter(
            session.scalars(
                select(SpotCheckAssignment.reviewer)
                .join(SpotCheckCase, SpotCheckCase.id == SpotCheckAssignment.case_id)
                .where(SpotCheckCase.draw_id == record.id)
            ).all()
        )
    return DrawReport(
        period=record.period,
        seed=record.seed,
        config_hash=record.config_hash,
        config_version=record.config_version,
        population_size=record.population_size,
        population_digest=record.population_digest,
        n_drawn=record.n_drawn,
        strata=[StratumReport(**s) for s in record.strata],
        excluded=dict(record.excluded),
        created_at=record.created_at,
        created=False,
        assignments=dict(sorted(loads.items())),
    )


@dataclass(frozen=True, slots=True)
class Verification:
    period: str
    ok: bool
    population_size: int
    n_drawn: int
    problems: list[str]


def verify(store: ResultStore, period: str) -> Verification:
    """Draw the period again from its recorded seed, sampling and population, and compare with
    what was drawn and stored (an audit: nothing is written)."""
    with read_session(store) as session:
        record = session.scalars(select(SpotCheckDraw).where(SpotCheckDraw.period == period)).one_or_none()
        if record is None:
            raise SpotCheckError(f"period {period!r} has not been drawn: qc-pipeline spot-check draw --period {period}")
        rows = (
            session.execute(
                select(SpotCheckPopulation, StudyRecord.study_instance_uid)
                .join(StudyRecord, StudyRecord.id == SpotCheckPopulation.study_id)
                .where(SpotCheckPopulation.draw_id == record.id)
            )
            .tuples()
            .all()
        )
        stored_cases = set(
            session.scalars(
                select(StudyRecord.study_instance_uid)
                .join(SpotCheckCase, SpotCheckCase.study_id == StudyRecord.id)
                .where(SpotCheckCase.draw_id == record.id)
            ).all()
        )
        seed, sampling, digest, strata = (
            record.seed,
            dict(record.sampling),
            record.population_digest,
            list(record.strata),
        )
    candidates = [Candidate(p.study_id, uid, p.stratum, p.verdict) for p, uid in rows]
    problems = []
    if population_digest(candidates) != digest:
        problems.append("the recorded population does not match its digest")
    flagged = {uid for p, uid in rows if p.drawn}
    redrawn, reports = select_sample(
        candidates,
        seed=seed,
        rates=sampling["rates"],
        minimum=int(sampling["minimum_per_stratum"]),
        minimum_keys=sampling["minimum_keys"],
    )
    if redrawn != flagged:
        problems.append(f"{len(redrawn ^ flagged)} studies differ between the re-draw and the recorded draw")
    if stored_cases != flagged:
        problems.append(f"{len(stored_cases ^ flagged)} drawn studies have no case, or cases were added")
    if [r.as_dict() for r in reports] != strata:
        problems.append("the per-stratum report differs from the re-draw")
    return Verification(period, not problems, len(candidates), len(flagged), problems)
