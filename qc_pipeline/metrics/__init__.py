"""Objective image-quality metrics: pure functions on decoded arrays (``dr``, ``ct``, ``mr``).

Each module has ``METRICS`` (metric id -> unit) and ``measure(...)``, which computes all of the
modality's metrics from one decoded array and never raises for bad image content (a metric that
cannot be computed has value None and a reason). No I/O, no thresholds, no rounding: the limits
are in ``thresholds/image_quality_*.yaml`` and the wiring in :mod:`qc_pipeline.checks.image_quality`.
"""
