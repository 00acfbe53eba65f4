"""Run by the packaging test with an installed wheel's interpreter (``python -I``), from a folder
outside the repository: write the demo studies, judge them as the QC flow does (one study after
another into a SQLite results database), print what was judged as JSON on stdout.

Only the installed ``qc_pipeline`` and ``flows`` are importable here; no QC_* variable is set, so
the thresholds, models and migrations come from the wheel's package data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import flows.qc_flow
import qc_pipeline
from qc_pipeline.errors import ModelError
from qc_pipeline.pipeline import ai_scorer, load_pipeline_thresholds, process_entry
from qc_pipeline.resources import SHIPPED, shipped_path
from qc_pipeline.samples.demo import DEMO_NOW, write_demo_studies
from qc_pipeline.sources.folder import FolderSource
from qc_pipeline.store import ResultStore


def main(out: Path) -> None:
    cases = write_demo_studies(out / "studies")
    thresholds = load_pipeline_thresholds()
    scorer = ai_scorer()
    if isinstance(scorer, ModelError):
        raise scorer
    store = ResultStore.open(f"sqlite:///{out / 'results.sqlite'}")
    source = FolderSource(out / "studies", file_times_are_upload_times=True)  # the demo sets upload times
    outcomes = [
        process_entry(source, entry, store, thresholds, run_id=None, now=DEMO_NOW) for entry in source.discover()
    ]
    rows = store.results()
    store.close()
    json.dump(
        {
            "modules": {"qc_pipeline": qc_pipeline.__file__, "flows": flows.qc_flow.__file__},
            "shipped": {name: str(shipped_path(name)) for name in SHIPPED},
            "thresholds": str(thresholds.directory),
            "models": sorted(scorer.provenance),
            "cases": len(cases),
            "outcomes": [str(o.status) for o in outcomes],
            "results": [
                {
                    "study_instance_uid": r["study_instance_uid"],
                    "verdict": r["verdict"],
                    "findings": [{"code": f["code"], "severity": f["severity"]} for f in r["findings"]],
                }
                for r in rows
            ],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
