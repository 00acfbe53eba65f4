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


def check_timeliness(delay_h: float, thresholds: Thresholds, *, upper_bound: bool = False) -> list[Finding]:
    """The worst timeliness finding for an upload delay of ``delay_h`` hours (at most one).

    Late upload is a measure of the institution, reported in the evaluation: its rules' severity
    is ``info`` by default (``thresholds/timeliness.yaml``), so it sends no study to a radiologist.
    ``upper_bound``: the delay is at most ``delay_h`` (the source gives no upload time; the time
    the pipeline first saw the study stands in), and the finding says so; an early clock cannot
    be told from an upper bound.
    """
    shown = f"{'≤ ' if upper_bound else ''}{delay_h:.1f} h"
    at_most_en, at_most_zh = ("at most ", "最多 ") if upper_bound else ("", "")
    bound_en = (
        "; upper bound: this server gives no upload time, the time the pipeline first saw the study is used"
        if upper_bound
        else ""
    )
    bound_zh = "；上限估计：该服务器不提供上传时间，以质控系统首次发现该检查的时间代替" if upper_bound else ""
    very_late = thresholds.limit("timeliness.upload_delay.very_late")
    late = thresholds.limit("timeliness.upload_delay.late")
    early = thresholds.limit("timeliness.upload_delay.negative")
    candidates: list[tuple[str, str, str]] = []
    if delay_h < -early and not upper_bound:
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
                f"uploaded {at_most_en}{delay_h:.1f} h after acquisition (limit {very_late:g} h){bound_en}",
                f"检查完成后{at_most_zh}{delay_h:.1f} 小时上传（上限 {very_late:g} 小时）{bound_zh}",
            )
        )
    elif delay_h > late:
        candidates.append(
            (
                "timeliness.upload_delay.late",
                f"uploaded {at_most_en}{delay_h:.1f} h after acquisition (limit {late:g} h){bound_en}",
                f"检查完成后{at_most_zh}{delay_h:.1f} 小时上传（上限 {late:g} 小时）{bound_zh}",
            )
        )
    findings = [thresholds.finding(code, en, zh, value=shown) for code, en, zh in candidates]
    return [f for f in findings if f is not None]
