"""Benchmark: AI inference time per series/study with the shipped models.

Times :meth:`qc_pipeline.ai.runtime.Scorer.score` (preprocessing of up to 8 sampled slices,
the artifact CNN, the metric features and the acceptability model, through onnxruntime) on
decoded seeded phantoms of the sizes hospitals send: a 300-slice 512x512 CT series, a 2500x2000
radiograph, a 30-slice 256x256 MR series; medians of ``--repeat`` runs, with 1 and 2
onnxruntime threads. Decoding is not included (see ``benchmarks.metrics``).

    .venv/bin/python -m benchmarks.ai            # about a minute
    .venv/bin/python -m benchmarks.ai --small    # a quick smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks._results import write_results
from qc_pipeline.ai.registry import load_registry
from qc_pipeline.ai.runtime import Scorer
from qc_pipeline.samples import phantoms


def _cases(small: bool) -> list[tuple[str, str, list[np.ndarray], float, tuple[float, float] | None]]:
    n_ct, side = (20, 256) if small else (300, 512)
    ct = phantoms.ct_water_cylinder(n_slices=n_ct, size=side, noise_sd_hu=12.0, seed=1).astype(np.float32)
    mr = phantoms.mr_head_phantom(n_slices=10 if small else 30, size=256, noise_sigma=6.0, seed=1).astype(np.float32)
    rows, cols = (500, 400) if small else (2500, 2000)
    dr = phantoms.dr_chest_phantom(rows=rows, cols=cols, seed=1).astype(np.float32)
    return [
        (f"CT {n_ct}x{side}²", "CT", list(ct), 0.7, None),
        (f"DR {rows}x{cols}", "DR", [dr], 0.15, (0.0, 4095.0)),
        (f"MR {len(mr)}x256²", "MR", list(mr), 0.9, None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = load_registry()
    rows = []
    for threads in (1, 2):
        scorer = Scorer(registry, threads=threads)
        for label, modality, slices, pixel_mm, stored in _cases(args.small):
            scorer.score(modality, slices, pixel_mm=pixel_mm, stored_range=stored)  # warm-up
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                scorer.score(modality, slices, pixel_mm=pixel_mm, stored_range=stored)
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "case": label,
                    "threads": threads,
                    "median_s": round(statistics.median(times), 4),
                    "min_s": round(min(times), 4),
                    "repeat": args.repeat,
                }
            )
            print(
                f"{label:16} threads {threads}: median {statistics.median(times) * 1000:7.1f} ms  (min {min(times) * 1000:.1f})"
            )
    out = write_results("ai", rows, small=args.small, models={n: m.provenance for n, m in registry.items()})
    print(f"written: {out}")


if __name__ == "__main__":
    main()
