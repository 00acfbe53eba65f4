"""Per-finding review and the audit share: how reviewers' judgements become labels for the models.

- A reviewer who holds the claim on a study confirms (the problem is there) or rejects (false
  alarm) each review/fail finding of its current machine decision, AI and objective alike, with
  the artifact actually seen (``thresholds/evaluation/finding_review.yaml``; the choice starts at
  the artifact the finding's code implies). Each judgement is stored with the reviewer, their role,
  the time, the study's content fingerprint and whether the study was an audit sample, and audited
  like the study decisions. A later judgement of the same finding supersedes the earlier one.
- A share of the studies the machine passed is drawn for a human audit: sha256 of the salt and the
  StudyInstanceUID, read as a number in [0, 1), below the share. The draw is deterministic (a
  re-run draws the same studies) and unpredictable without the salt. An audit sample enters the
  review queue marked as such; its verdict stays ``pass`` until a person decides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qc_pipeline.errors import ConfigError
from qc_pipeline.review.accounts import User
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.rules.loader import default_thresholds_dir, format_validation_error, read_yaml
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, FindingRecord, StudyRecord
from qc_pipeline.store.review import FindingReview, ReviewUser

logger = logging.getLogger(__name__)

JUDGEMENTS: Final = ("confirm", "reject")
REVIEWED_SEVERITIES: Final = ("review", "fail")
AI_PREFIX: Final = "ai."
FALLBACK_ARTIFACT: Final = "other"
_HASH_SPAN: Final = float(2**64)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditShare(_Strict):
    share: Annotated[float, Field(ge=0.0, le=1.0)]
    salt: str = Field(min_length=1)
    source: str = Field(min_length=3)


class Artifact(_Strict):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)]
    en: str = Field(min_length=2)
    zh: str = Field(min_length=2)


class Artifacts(_Strict):
    source: str = Field(min_length=3)
    codes: list[Artifact] = Field(min_length=1)


class Implied(_Strict):
    artifact: str
    words: list[str] = Field(min_length=1)


class FindingReviewConfig(_Strict):
    """``thresholds/evaluation/finding_review.yaml``."""

    version: str
    audit: AuditShare
    artifacts: Artifacts
    implied: list[Implied] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_codes(self) -> FindingReviewConfig:
        codes = [a.code for a in self.artifacts.codes]
        if len(set(codes)) != len(codes):
            raise ValueError("artifacts.codes: codes must be unique")
        if FALLBACK_ARTIFACT not in codes:
            raise ValueError(f"artifacts.codes: {FALLBACK_ARTIFACT!r} is needed (findings that imply no artifact)")
        unknown = [i.artifact for i in self.implied if i.artifact not in codes]
        if unknown:
            raise ValueError(f"implied: unknown artifact {', '.join(unknown)}; one of {', '.join(codes)}")
        return self

    @property
    def labels(self) -> dict[str, tuple[str, str]]:
        """Artifact code -> (English, Chinese), in the file's order (as ``review.i18n`` tables)."""
        return {a.code: (a.en, a.zh) for a in self.artifacts.codes}

    def implied_artifact(self, finding_code: str) -> str:
        """The artifact ``finding_code`` implies: the first ``implied`` entry one of whose words is
        a dot-separated part of the code; ``other`` when none."""
        parts = set(finding_code.split("."))
        for entry in self.implied:
            if parts.intersection(entry.words):
                return entry.artifact
        return FALLBACK_ARTIFACT

    def is_audit_sample(self, study_instance_uid: str) -> bool:
        return is_audit_sample(study_instance_uid, share=self.audit.share, salt=self.audit.salt)


def finding_review_path(thresholds_dir: Path | None = None) -> Path:
    return Path(thresholds_dir or default_thresholds_dir()) / "evaluation" / "finding_review.yaml"


@cache
def load_finding_review(thresholds_dir: Path | None = None) -> FindingReviewConfig:
    path = finding_review_path(thresholds_dir)
    data = read_yaml(path)
    try:
        return FindingReviewConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None


def audit_draw(study_instance_uid: str, salt: str) -> float:
    """sha256(salt, NUL, UID), its first 8 bytes read as a number in [0, 1)."""
    digest = hashlib.sha256(f"{salt}\0{study_instance_uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPAN


def is_audit_sample(study_instance_uid: str, *, share: float, salt: str) -> bool:
    """Whether a machine-passed study is drawn for a human audit (see the module docstring)."""
    return share > 0.0 and audit_draw(study_instance_uid, salt) < share


def audit_sample_ids(session: Session, config: FindingReviewConfig | None) -> list[int]:
    """Row ids of the studies whose current machine verdict is ``pass`` and that are drawn."""
    if config is None or config.audit.share <= 0.0:
        return []
    rows = session.execute(
        select(StudyRecord.id, StudyRecord.study_instance_uid)
        .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
        .where(DecisionRecord.is_current.is_(True), DecisionRecord.verdict == "pass")
    ).tuples()
    return [sid for sid, uid in rows if config.is_audit_sample(uid)]


def model_of(finding_code: str, models: dict[str, Any] | None) -> str | None:
    """``name@version`` of the model behind an AI finding (``ai.<model>.<label>...``), from the
    decision's provenance; ``name@unknown`` when the decision does not name its version; None for
    an objective finding."""
    if not finding_code.startswith(AI_PREFIX):
        return None
    parts = finding_code.split(".")
    name = parts[1] if len(parts) > 1 else ""
    version = (models or {}).get(name)
    return f"{name}@{version if version else 'unknown'}"


def reviewable(findings: Iterable[FindingRecord]) -> list[FindingRecord]:
    """The findings a reviewer judges one by one: review and fail severity."""
    return [f for f in findings if f.severity in REVIEWED_SEVERITIES]


def current_judgements(session: Session, decision_id: int) -> dict[int, dict[str, Any]]:
    """The current judgement of each finding of a machine decision, by finding id."""
    out: dict[int, dict[str, Any]] = {}
    for r, username in session.execute(
        select(FindingReview, ReviewUser.username)
        .join(ReviewUser, ReviewUser.id == FindingReview.user_id)
        .where(FindingReview.decision_id == decision_id, FindingReview.is_current.is_(True))
    ).tuples():
        if r.finding_id is not None:
            out[r.finding_id] = {
                "judgement": r.judgement,
                "reason_code": r.reason_code,
                "reviewer": username,
                "decided_at": r.decided_at.isoformat(),
            }
    return out


def judge_finding(
    store: ResultStore,
    config: FindingReviewConfig,
    uid: str,
    user: User,
    *,
    finding_id: int,
    judgement: str,
    reason_code: str,
    decision_id: int | None = None,
) -> dict[str, Any]:
    """Record a reviewer's judgement of one finding of the study's current machine decision.

    The reviewer must hold a live claim on the study (ReviewError 409 otherwise); ``decision_id``,
    when given, is the machine decision they saw (409 if the study was judged again since). The
    finding must belong to that decision and be of review or fail severity (404 otherwise).
    """
    from qc_pipeline.review import service  # the study helpers; service imports nothing of this module

    if judgement not in JUDGEMENTS:
        raise ReviewError(f"the judgement must be confirm or reject; got {judgement!r}", "判断须为确认或否认")
    if reason_code not in config.labels:
        raise ReviewError(f"unknown artifact {reason_code!r}; one of {', '.join(config.labels)}", "伪影类别无效")
    now = dt.datetime.now(dt.UTC)
    with store.writing("judge a finding") as session:
        study, machine = service._ids(session, uid)
        service._actionable(study)
        if decision_id is not None and decision_id != machine.id:
            raise ReviewError(
                "the study was judged again since you opened it; look at the new findings and judge again",
                "打开页面后该检查已被重新质控，请查看新的质控发现后再判断",
                status=409,
            )
        audit = machine.verdict == "pass" and config.is_audit_sample(study.study_instance_uid)
        if machine.verdict not in service.FLAGGED_VERDICTS and not audit:
            raise ReviewError(
                f"the machine verdict is {machine.verdict} and the study is no audit sample: nothing to judge",
                "机器结论为合格且非抽查样本：无需逐项判断",
                status=409,
            )
        if not service.holds_claim(session, study.id, user, now):
            raise ReviewError(
                "claim the study first: findings are judged by the reviewer who holds the claim",
                "请先认领该检查：由认领人逐项判断质控发现",
                status=409,
            )
        finding = session.scalars(
            select(FindingRecord).where(FindingRecord.id == finding_id, FindingRecord.decision_id == machine.id)
        ).one_or_none()
        if finding is None or finding.severity not in REVIEWED_SEVERITIES:
            raise ReviewError(
                f"the current machine decision has no review or fail finding {finding_id}",
                "当前结论中没有该质控发现",
                status=404,
            )
        session.execute(
            update(FindingReview)
            .where(FindingReview.finding_id == finding.id, FindingReview.is_current.is_(True))
            .values(is_current=False, superseded_at=now)
            .execution_options(synchronize_session=False)
        )
        session.add(
            FindingReview(
                study_id=study.id,
                decision_id=machine.id,
                finding_id=finding.id,
                finding_code=finding.code,
                finding_severity=finding.severity,
                series_instance_uid=finding.series_instance_uid,
                model=model_of(finding.code, machine.models),
                content_fingerprint=machine.content_fingerprint,
                judgement=judgement,
                reason_code=reason_code,
                user_id=user.id,
                reviewer_role=user.role,
                decided_at=now,
                audit_sample=audit,
                is_current=True,
            )
        )
        service._audit(session, user, "finding", study.id, f"{judgement} {finding.code} ({reason_code})")
    logger.info(
        "study %s: finding %s %sed by %s",
        service.study_key(study.study_instance_uid, study.id),
        finding.code,
        judgement,
        user.username,
    )
    return {
        "finding_id": finding_id,
        "finding_code": finding.code,
        "judgement": judgement,
        "reason_code": reason_code,
        "audit_sample": audit,
    }
