"""Benchmark: MR sequence identification on real-scanner headers, per vendor.

Runs :func:`qc_pipeline.catalog.mr_sequences.identify_series` on every series of the conformance
set (``tests/data/mr_conformance``: GE, Siemens VB-XA30, Philips, Canon/Toshiba, United Imaging,
Hitachi, Hyperfine; sources and licences in its README), prints the share identified right per
vendor (weighting, and plane where the manifest gives one) and lists each series still wrong with
its header values. Writes JSON to ``benchmarks/results/mr_conformance-<host>.json``.

    .venv/bin/python -m benchmarks.mr_conformance            # a second or two
    .venv/bin/python -m benchmarks.mr_conformance --first    # only the first image of each series
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pydicom.dataset import Dataset

from benchmarks._results import write_results
from qc_pipeline.catalog.mr_sequences import SequenceInfo, identify_sequence, identify_series, read_mr_parameters
from tests.data.mr_conformance.conformance import evaluate, load_cases, table


def _first_image(datasets: Sequence[Dataset]) -> SequenceInfo:
    return identify_sequence(datasets[0])


def _header(ds: Dataset) -> str:
    p = read_mr_parameters(ds)
    parts = [
        f"ImageType {'/'.join(p.image_type) or '-'}",
        f"ScanningSequence {'/'.join(sorted(p.scanning_sequence)) or '-'}",
        f"TR {p.repetition_time}",
        f"TE {p.echo_time}",
        f"TI {p.inversion_time}",
        f"b {'/'.join(f'{b:g}' for b in p.b_values) or '-'}",
        f"B0 {ds.get('MagneticFieldStrength', '-')} T",
    ]
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", action="store_true", help="identify_sequence on the first image only (the old way)")
    args = parser.parse_args()
    outcomes = evaluate(load_cases(), _first_image if args.first else identify_series)
    print(f"{'vendor':16s} {'series':>6s} {'right':>6s} {'%':>6s}")
    rows = []
    for vendor, n, right, share in table(outcomes):
        print(f"{vendor:16s} {n:6d} {right:6d} {100 * share:6.1f}")
        rows.append({"vendor": vendor, "series": n, "right": right, "share": round(share, 4)})
    unscored = [o for o in outcomes if not o.case.known]
    print(f"\nnot scored (answer unknown): {', '.join(o.case.series for o in unscored) or 'none'}")
    wrong = [o for o in outcomes if o.case.known and not o.ok]
    print(f"still wrong: {len(wrong)}")
    for o in wrong:
        got = f"{o.info.weighting.value} {o.info.plane.value if o.info.plane else '-'}"
        want = f"{o.case.weighting} {o.case.plane or '-'}"
        print(f"- {o.case.series} ({o.case.vendor}, {o.case.description!r}): got {got}, expected {want}")
        print(f"    header: {_header(o.case.datasets()[0])}")
        print(f"    evidence: {' | '.join(o.info.evidence)}")
    out = write_results("mr_conformance", rows, small=args.first, wrong=[o.case.series for o in wrong])
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
