"""What every benchmark writes: a JSON file in benchmarks/results/ with where and when it ran."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from qc_pipeline import __version__

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, rows: list[dict[str, Any]], *, small: bool, **extra: Any) -> Path:
    """``results/<name>-<host>[-small].json``: rows plus pipeline version, time, CPUs, Python and ``extra``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}-{platform.node() or 'host'}{'-small' if small else ''}.json"
    payload = {
        "benchmark": name,
        "pipeline_version": __version__,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **extra,
        "rows": rows,
    }
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
