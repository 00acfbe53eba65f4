"""Every objective image-quality metric, registered once: id, unit, names, direction, display
format, report role.

The modality modules (:mod:`~qc_pipeline.metrics.dr`, :mod:`~qc_pipeline.metrics.ct`,
:mod:`~qc_pipeline.metrics.mr`) compute the values; what a metric *is* for the people who read it
lives here, and everything else derives from it: each module's ``METRICS`` (id -> unit, the order
its ``measure()`` reports), the names in findings, the review app and the reports
(``checks.image_quality.METRIC_LABELS``), how a value is written for them (:func:`format_value`),
and the metrics the biannual report plots
(``report.data.KEY_METRICS``). The limits stay in ``thresholds/`` (policy, with sources); the
AI acceptability models read the features their manifests name, so a metric added here does not
change an existing model's input. How to add one: ``docs/adding-a-metric.md``.

Pure data: no imports of the modality modules (they import this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Direction(StrEnum):
    """Which values are the good ones (what a reader and a limit's ``when`` should expect)."""

    HIGHER_BETTER = "higher_better"
    LOWER_BETTER = "lower_better"
    IN_RANGE = "in_range"
    """Good near a target (deviation index 0, air -1000 HU): limits on both sides."""
    CONTEXT = "context"
    """What is right depends on the exam (field coverage, collimated area): no general direction."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric as people read it."""

    id: str
    """``<modality>.<name>``, as stored and as rules name it."""
    unit: str
    """UCUM-like unit shown after the value ("1" for a dimensionless ratio)."""
    label_en: str
    label_zh: str
    direction: Direction
    format: str
    """Python format spec of the value as people read it (findings, review app, CLI), e.g. ``".1f"``:
    fixed decimals fine enough to compare a value with its limits; ``".3g"`` (three significant
    digits, never an exponent: :func:`format_value`) where the scale differs by vendor or bit depth."""
    key: bool = False
    """Plotted per institution against its limits in the biannual report."""

    @property
    def modality(self) -> str:
        return self.id.split(".", 1)[0].upper()


_H, _L, _R, _C = Direction.HIGHER_BETTER, Direction.LOWER_BETTER, Direction.IN_RANGE, Direction.CONTEXT

# In each modality, the order in which its measure() reports (the order of its METRICS).
SPECS: Final[tuple[MetricSpec, ...]] = (
    # DR (qc_pipeline/metrics/dr.py)
    MetricSpec("dr.exposure_index", "EI", "exposure index EI", "曝光指数 EI", _R, ".0f"),
    MetricSpec("dr.deviation_index", "DI", "deviation index DI", "偏差指数 DI", _R, ".1f", key=True),
    MetricSpec(
        "dr.vendor_exposure_indicator", "vendor units", "vendor exposure indicator", "厂商曝光指示值", _R, ".3g"
    ),
    MetricSpec(
        "dr.deviation_index_vendor",
        "DI",
        "deviation index from the vendor indicator",
        "由厂商曝光指数换算的偏差指数",
        _R,
        ".1f",
    ),
    MetricSpec("dr.pixel_exposure_voi_percent", "%", "pixel exposure estimate", "像素曝光估计", _R, ".1f"),
    MetricSpec(
        "dr.clipped_stored_max_percent",
        "%",
        "pixels saturated at the stored maximum",
        "饱和于最大存储值的像素",
        _L,
        ".2f",
    ),
    MetricSpec(
        "dr.clipped_stored_min_percent",
        "%",
        "pixels clipped at the stored minimum",
        "截断于最小存储值的像素",
        _L,
        ".2f",
    ),
    MetricSpec("dr.pileup_max_percent", "%", "pixels piled at the image maximum", "堆积于图像最大值的像素", _L, ".2f"),
    MetricSpec("dr.pileup_min_percent", "%", "pixels piled at the image minimum", "堆积于图像最小值的像素", _L, ".2f"),
    MetricSpec(
        "dr.burnout_anatomy_percent",
        "%",
        "anatomy burned out at the over-exposed end",
        "解剖区域过曝烧穿（暗端饱和）的像素",
        _L,
        ".1f",
    ),
    MetricSpec("dr.dynamic_range_used_percent", "%", "dynamic range used", "动态范围利用率", _H, ".1f"),
    MetricSpec("dr.noise_sd", "pixel value", "noise SD", "噪声标准差", _L, ".3g"),
    MetricSpec("dr.noise_relative_percent", "%", "relative noise", "相对噪声", _L, ".2f"),
    MetricSpec("dr.snr", "1", "SNR", "信噪比", _H, ".1f"),
    MetricSpec("dr.collimated_field_percent", "%", "collimated field", "照射野面积", _C, ".1f"),
    MetricSpec("dr.edge_anatomy_percent", "%", "anatomy at the image edge", "图像边缘处解剖结构", _L, ".1f"),
    MetricSpec("dr.blur_effect", "1", "blur effect", "模糊度", _L, ".3f"),
    # CT (qc_pipeline/metrics/ct.py)
    MetricSpec("ct.air_hu", "HU", "air CT number", "空气CT值", _R, ".0f"),
    MetricSpec("ct.soft_tissue_hu", "HU", "soft-tissue CT number", "软组织CT值", _R, ".1f"),
    MetricSpec(
        "ct.noise_hu", "HU", "image noise (global noise level)", "图像噪声（全局噪声水平）", _L, ".3g", key=True
    ),
    MetricSpec(
        "ct.noise_measured_hu",
        "HU",
        "image noise as measured, at the series' slice thickness",
        "实测图像噪声（本序列层厚）",
        _L,
        ".3g",
    ),
    MetricSpec(
        "ct.truncated_slices_percent",
        "%",
        "slices with the body cut at the field of view",
        "身体超出扫描野的层面",
        _L,
        ".1f",
    ),
    MetricSpec(
        "ct.coverage_end_percent",
        "%",
        "anatomy still present at the end of the scan range",
        "扫描范围末端仍存在的目标解剖",
        _L,
        ".1f",
    ),
    MetricSpec("ct.streak_index", "1", "streak artifact index", "条纹伪影指数", _L, ".2f"),
    MetricSpec("ct.ring_hu", "HU", "ring artifact amplitude", "环状伪影幅度", _L, ".1f"),
    # MR (qc_pipeline/metrics/mr.py)
    MetricSpec("mr.snr", "1", "SNR", "信噪比", _H, ".1f", key=True),
    MetricSpec("mr.cnr", "1", "CNR", "对比噪声比", _H, ".1f"),
    MetricSpec("mr.ghosting_percent", "%", "ghosting ratio", "鬼影（伪影）比", _L, ".2f", key=True),
    MetricSpec(
        "mr.piu_percent",
        "%",
        "percent integral uniformity (median over slices, not the ACR phantom PIU)",
        "积分均匀度（各层中位数，非ACR体模PIU）",
        _H,
        ".1f",
    ),
    MetricSpec("mr.efc", "1", "entropy focus criterion", "熵聚焦准则 EFC", _L, ".3f"),
    MetricSpec("mr.fber", "1", "foreground-background energy ratio", "前景背景能量比 FBER", _H, ".3g"),
    MetricSpec("mr.fov_coverage_percent", "%", "field-of-view coverage", "视野覆盖率", _C, ".1f"),
    MetricSpec("mr.edge_contact_percent", "%", "object touching the field-of-view edge", "物体触及视野边缘", _C, ".1f"),
    MetricSpec("mr.wrap_percent", "%", "wrap-around (aliasing)", "卷褶伪影", _L, ".2f"),
    MetricSpec(
        "mr.inu_range_percent",
        "%",
        "intensity non-uniformity (N4 bias-field range)",
        "信号强度不均匀性（N4偏置场范围）",
        _L,
        ".1f",
    ),
)

REGISTRY: Final = MappingProxyType({spec.id: spec for spec in SPECS})
"""Metric id -> its spec."""

DEFAULT_FORMAT: Final = ".3g"
"""The format of a value whose id is not registered here (AI scores ``ai.<model>.<label>``)."""


MAX_EXTRA_DIGITS: Final = 6
"""At most this many digits more than the format's, to write a value apart from its limit."""


def format_value(metric_id: str, value: float, *, limit: float | None = None) -> str:
    """``value`` of ``metric_id`` as people read it, in the metric's registered :attr:`MetricSpec.format`
    (:data:`DEFAULT_FORMAT` for an unregistered id).

    A significant-digits (``g``) format never shows an exponent: a value of that many digits or
    more is written whole (2145, -1000). A value that rounds to zero is written without a sign
    ("0.0", not "-0.0"). ``limit``: the limit the value was judged against; a value other than the
    limit is never written as the limit ("3.04 DI is above the limit 3 DI", not "3.0 DI"): it gets
    more digits until it reads apart from it.
    """
    spec = REGISTRY.get(metric_id)
    fmt = DEFAULT_FORMAT if spec is None else spec.format
    kind, digits = fmt[-1], int(fmt[1:-1])
    for extra in range(MAX_EXTRA_DIGITS + 1):
        text = _written(value, f".{digits + extra}{kind}")
        if limit is None or value == limit or not math.isfinite(value) or float(text) != limit:
            break
    return text


def _written(value: float, fmt: str) -> str:
    text = format(value, fmt)
    if "e" in text and abs(value) >= 1.0:  # a g format on a value of more digits than it keeps
        text = format(value, ".0f")
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def units(modality: str) -> MappingProxyType[str, str]:
    """``modality``'s metrics (DR, CT, MR) -> unit, in the order its ``measure()`` reports."""
    return MappingProxyType({s.id: s.unit for s in SPECS if s.modality == modality})


def labels() -> dict[str, tuple[str, str]]:
    """Metric id -> (English, Chinese) name."""
    return {s.id: (s.label_en, s.label_zh) for s in SPECS}


def key_metrics() -> tuple[str, ...]:
    """The metrics the biannual report plots against their limits, DR, CT, MR in turn."""
    return tuple(s.id for s in SPECS if s.key)


def fault_side(metric_id: str) -> str:
    """The side of a limit on which ``metric_id`` signals a fault, as a rule's ``when`` names it:
    ``"above"`` for a lower-is-better metric, ``"below"`` for a higher-is-better one.

    Raises :class:`KeyError` for an unregistered id and :class:`ValueError` for a metric that is good
    in a range or depends on the exam (no single side).
    """
    spec = REGISTRY.get(metric_id)
    if spec is None:
        raise KeyError(f"metric {metric_id!r} is not in qc_pipeline.metrics.registry; register it there first")
    if spec.direction is Direction.LOWER_BETTER:
        return "above"
    if spec.direction is Direction.HIGHER_BETTER:
        return "below"
    raise ValueError(
        f"metric {metric_id!r} is {spec.direction.value}: it has no single fault side; "
        "expected a lower_better or higher_better metric"
    )
