"""People-facing outputs read from the results store: calibration of limits, evaluation reports."""
