"""Thresholds (validated YAML) and the rule that turns findings into a verdict."""

from qc_pipeline.rules.loader import Thresholds, default_thresholds_dir, load_thresholds
from qc_pipeline.rules.verdict import decide_verdict, eligibility

__all__ = ["Thresholds", "decide_verdict", "default_thresholds_dir", "eligibility", "load_thresholds"]
