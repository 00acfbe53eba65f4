"""Upload timeliness: how long after acquisition the study reached the source (及时性)."""

from __future__ import annotations

import datetime as dt
from typing import Final

from qc_pipeline.domain import Finding
from qc_pipeline.rules.loader import Thresholds

RULE_IDS: Final = frozenset(
    {"timeliness.upload_delay.late", "timeliness.upload_delay.very_late", "timeliness.upload_delay.negative"}
)
UPLOAD_DELAY_METRIC: Final = "upload_delay_h"


def upload_delay_hours(received_at: dt.datetime, acquired_at: dt.datetime) -> float:
    """Upload delay in hours = time the source received the study - acquisition time.

    Both must be timezone-aware (DICOM local times are resolved with TimezoneOffsetFromUTC or
    the site zone before they get here).
    """
    if received_at.tzinfo is None or acquired_at.tzinfo is None:
        raise ValueError("received_at and acquired_at must be timezone-aware")
    return (received_at - acquired_at).total_seconds() / 3600.0


def check_timeliness(delay_h: float, thresholds: Thresholds) -> list[Finding]:
    """The worst timeliness finding for an upload delay of ``delay_h`` hours (at most one)."""
    shown = f"{delay_h:.1f} h"
    very_late = thresholds.limit("timeliness.upload_delay.very_late")
    late = thresholds.limit("timeliness.upload_delay.late")
    early = thresholds.limit("timeliness.upload_delay.negative")
    candidates: list[tuple[str, str, str]] = []
    if delay_h < -early:
        candidates.append(
            (
                "timeliness.upload_delay.negative",
                f"the study reached the source {-delay_h:.1f} h before its StudyDate/StudyTime: a clock is wrong",
                f"检查上传时间早于检查时间 {-delay_h:.1f} 小时：设备或服务器时钟有误",
            )
        )
    elif delay_h > very_late:
        candidates.append(
            (
                "timeliness.upload_delay.very_late",
                f"uploaded {shown} after acquisition (limit {very_late:g} h)",
                f"检查完成后 {shown} 才上传（上限 {very_late:g} 小时）",
            )
        )
    elif delay_h > late:
        candidates.append(
            (
                "timeliness.upload_delay.late",
                f"uploaded {shown} after acquisition (limit {late:g} h)",
                f"检查完成后 {shown} 才上传（上限 {late:g} 小时）",
            )
        )
    findings = [thresholds.finding(code, en, zh, value=shown) for code, en, zh in candidates]
    return [f for f in findings if f is not None]
