"""The classifiers qc-pipeline knows: their names, modalities, labels and what each label means.

The shipped manifests in ``models/`` must agree with these specs (the registry refuses a manifest
whose labels differ), so a rule in ``thresholds/ai.yaml`` can name ``ai.<model>.<label>`` before
any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    modality: Literal["DR", "CT", "MR"]
    kind: Literal["image", "metrics"]
    labels: tuple[str, ...]
    labels_en: tuple[str, ...]
    labels_zh: tuple[str, ...]


MODEL_SPECS: Final[dict[str, ModelSpec]] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "dr_artifacts",
            "DR",
            "image",
            ("exposure_fault", "saturation", "blur_motion", "collimation_cutoff"),
            ("exposure fault", "saturation", "blur or motion", "collimation cut-off"),
            ("曝光不当", "饱和", "模糊或运动伪影", "照射野切割"),
        ),
        ModelSpec(
            "ct_artifacts",
            "CT",
            "image",
            ("excess_noise", "streaks", "rings", "motion"),
            ("excess noise", "streak artifacts", "ring artifacts", "motion artifacts"),
            ("噪声过大", "条纹伪影", "环状伪影", "运动伪影"),
        ),
        ModelSpec(
            "mr_artifacts",
            "MR",
            "image",
            ("motion_ghosting", "noise", "wrap_around", "nonuniformity", "spike"),
            (
                "motion ghosting",
                "noise",
                "wrap-around",
                "intensity non-uniformity",
                "k-space spike / herringbone artifact",
            ),
            ("运动鬼影", "噪声", "卷褶伪影", "信号不均匀", "尖峰伪影（人字形伪影）"),
        ),
        ModelSpec("dr_acceptability", "DR", "metrics", ("unacceptable",), ("not acceptable",), ("不可接受",)),
        ModelSpec("ct_acceptability", "CT", "metrics", ("unacceptable",), ("not acceptable",), ("不可接受",)),
        ModelSpec("mr_acceptability", "MR", "metrics", ("unacceptable",), ("not acceptable",), ("不可接受",)),
    )
}

SCORE_UNIT: Final = "probability"


def score_metric(model: str, label: str) -> str:
    """The measurement id of one score, e.g. ``ai.ct_artifacts.streaks``."""
    return f"ai.{model}.{label}"


def score_metrics() -> dict[str, str]:
    """Every score id -> its unit (for the thresholds loader's known metrics)."""
    return {score_metric(s.name, label): SCORE_UNIT for s in MODEL_SPECS.values() for label in s.labels}


def score_labels() -> dict[str, tuple[str, str]]:
    """Every score id -> (English, Chinese) name for messages."""
    out: dict[str, tuple[str, str]] = {}
    for s in MODEL_SPECS.values():
        for label, en, zh in zip(s.labels, s.labels_en, s.labels_zh, strict=True):
            prefix_en, prefix_zh = (
                ("AI score", "AI评分") if s.kind == "image" else ("metric-based AI score", "基于指标的AI评分")
            )
            out[score_metric(s.name, label)] = (f"{prefix_en}: {en}", f"{prefix_zh}：{zh}")
    return out
