"""The metric registry is the one place a metric is declared: what each modality's measure()
reports, the names people read, the report's key metrics and the metrics rules may name."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qc_pipeline.ai.features import FEATURES
from qc_pipeline.checks.image_quality import METRIC_LABELS
from qc_pipeline.metrics import ct, dr, mr
from qc_pipeline.metrics.registry import REGISTRY, SPECS, Direction, format_value, key_metrics, units
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.report.data import KEY_METRICS
from qc_pipeline.samples.phantoms import ct_water_cylinder, dr_chest_phantom, mr_head_phantom


@pytest.fixture(scope="module")
def measured() -> dict[str, list[str]]:
    """The ids each modality's measure() reports, in order, on a small phantom."""
    return {
        "DR": [
            m.metric
            for m in dr.measure(
                dr_chest_phantom(rows=128, cols=128).astype(np.float32),
                spacing_mm=(0.2, 0.2),
                stored_range=(0.0, 4095.0),
                exposure_index=400.0,
                target_exposure_index=400.0,
                deviation_index=0.0,
            )
        ],
        "CT": [
            m.metric
            for m in ct.measure(
                ct_water_cylinder(n_slices=4, size=96).astype(np.float32), spacing_mm=(5.0, 0.8, 0.8), body_part="CHEST"
            )
        ],
        "MR": [
            m.metric
            for m in mr.measure(
                mr_head_phantom(n_slices=3, size=64).astype(np.float32),
                spacing_mm=(5.0, 1.0, 1.0),
                phase_encode_direction="COL",
            )
        ],
    }


@pytest.mark.parametrize("modality, module", [("DR", dr), ("CT", ct), ("MR", mr)])
def test_what_measure_reports_is_exactly_what_is_registered_in_order(measured, modality, module) -> None:
    assert measured[modality] == list(units(modality)) == list(module.METRICS)
    assert all(REGISTRY[m].unit == module.METRICS[m] for m in module.METRICS)


def test_every_metric_has_both_names_a_direction_and_one_entry() -> None:
    assert len(REGISTRY) == len(SPECS)
    for spec in SPECS:
        assert spec.modality in ("DR", "CT", "MR") and spec.id.startswith(spec.modality.lower() + ".")
        assert spec.label_en.strip() and spec.label_zh.strip() and spec.unit.strip(), spec.id
        assert isinstance(spec.direction, Direction)
    assert METRIC_LABELS == {s.id: (s.label_en, s.label_zh) for s in SPECS}


def test_rules_name_only_registered_metrics_and_every_key_metric_has_a_limit_to_plot() -> None:
    thresholds = load_pipeline_thresholds()
    named = {r.metric for r in thresholds.rules.values() if r.metric and not r.metric.startswith("ai.")}
    assert named and named <= set(REGISTRY)
    assert KEY_METRICS == key_metrics() and KEY_METRICS
    assert all(k in named for k in KEY_METRICS)
    # a limit's direction agrees with the metric's: no "above" limit on a higher-is-better metric
    for rule in thresholds.rules.values():
        spec = REGISTRY.get(rule.metric or "")
        if spec is not None and rule.when in ("above", "below"):
            assert not (spec.direction is Direction.HIGHER_BETTER and rule.when == "above"), rule.id
            assert not (spec.direction is Direction.LOWER_BETTER and rule.when == "below"), rule.id


def test_the_acceptability_models_read_registered_metrics_only() -> None:
    for modality, features in FEATURES.items():
        assert set(features) <= set(units(modality)), modality


def test_every_metric_has_a_display_format_that_formats_a_float() -> None:
    for spec in SPECS:
        assert re.fullmatch(r"\.\d[fg]", spec.format), spec.id
        assert format_value(spec.id, 12.5) == format(12.5, spec.format), spec.id


def test_a_value_is_written_in_its_metrics_format_and_an_unregistered_id_in_three_significant_digits() -> None:
    assert REGISTRY["dr.deviation_index"].format == ".1f" and format_value("dr.deviation_index", 3.04) == "3.0"
    assert format_value("ct.air_hu", -998.4) == "-998"
    assert format_value("dr.blur_effect", 0.2) == "0.200"
    # a rounded-away negative value has no sign: "0.0", not "-0.0"
    assert format_value("dr.deviation_index", -0.04) == "0.0"
    # significant digits never show an exponent: a large value is written whole, also after rounding up
    assert format_value("dr.vendor_exposure_indicator", 2145.3) == "2145"
    assert format_value("dr.vendor_exposure_indicator", 999.6) == "1000"
    assert format_value("dr.vendor_exposure_indicator", 2.345) == "2.35"  # a log-scale vendor indicator
    # AI scores are not registered here: three significant digits, as the findings have always shown them
    assert format_value("ai.dr_artifacts.saturation", 0.9591) == "0.959"


def test_a_value_is_written_apart_from_the_limit_it_was_judged_against() -> None:
    assert format_value("dr.deviation_index", 3.04, limit=3.0) == "3.04"  # not "3.0", the limit
    assert format_value("dr.deviation_index", 3.004, limit=3.0) == "3.004"
    assert format_value("mr.snr", 4.97, limit=5.0) == "4.97"
    assert format_value("dr.deviation_index", 3.5, limit=3.0) == "3.5"  # already apart: the format
    assert format_value("dr.deviation_index", 3.0, limit=3.0) == "3.0"  # the limit itself stays as it is
    assert format_value("ct.air_hu", -939.6, limit=-940.0) == "-939.6"
