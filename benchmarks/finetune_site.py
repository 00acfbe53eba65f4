"""Benchmark: does fine-tuning the MR artifact model on a site's reviewed series help at that site?

A simulated site of brain MR studies (seeded ``mr_head_phantom`` series, 64x64, 12 slices, the five
sequences of the demo's brain MR) with known defects on one series each: an N/2 ghost (``add_ghost``,
fraction 0.02-0.30) or excess noise (Rician sigma 40-110 instead of 10), or none. Steps:

1. every study is judged by the pipeline with the shipped models (``before.sqlite``);
2. a simulated radiologist works the review queue: each series-level finding is confirmed with
   the artifact the series really has, or rejected when it has none; every machine pass is
   drawn for the audit (share 1.0) and passed when it is truly clean (a defective pass is left
   undecided: its label would not say which artifact);
3. ``models export-labels`` writes the labels; they are split by study (even/odd position in
   the generated order) into a tuning half and a held-out half;
4. ``models train --labels tune.csv`` fine-tunes ``mr_artifacts`` from the shipped weights;
5. the studies are judged again with the fine-tuned model (the shipped models otherwise;
   ``after.sqlite``), and ``models validate --labels held.csv`` runs on both databases (limits: the
   rules' of ``thresholds/ai.yaml``);
6. since a fine-tuned model's scores need their own limit, each model's limit is also calibrated
   on the tuning half (split conformal, at most 5 % of its clean series flagged, as
   ``models calibrate`` does) and applied to the held-out half.

    .venv/bin/python -m benchmarks.finetune_site                # 40 studies, about 5 minutes on 2 shared cores
    .venv/bin/python -m benchmarks.finetune_site --small        # 12 studies, a quick check of the script

Prints the held-out table (per MR artifact score: labelled series, AUC with its 95 % interval,
false flags and PPV at the rule's limit, before and after) and writes
``benchmarks/results/finetune_site-<host>.json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from benchmarks._results import write_results
from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, MODELS_DIR_ENV
from qc_pipeline.ai.specs import MODEL_SPECS, score_metric
from qc_pipeline.cli import main
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.review import service
from qc_pipeline.review.accounts import create_user
from qc_pipeline.review.finding_review import AuditShare, judge_finding, load_finding_review
from qc_pipeline.rules import load_thresholds
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import Geometry, PatientInfo, Plane, SeriesInfo, StudyInfo, derive_uid, write_series
from qc_pipeline.sources import FolderSource
from qc_pipeline.store import ResultStore

SEED = 4242
NOW = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
SITE = "Simulated MR Site"
SEQUENCES = (  # name, scanning sequence, variant, options, TR, TE, TI, plane, brain signal, b value
    ("t2_tse_tra", ("SE",), ("SK", "SP"), (), 4200.0, 98.0, None, Plane.AXIAL, 400.0, None),
    ("t1_se_tra", ("SE",), ("SK", "SP"), (), 520.0, 12.0, None, Plane.AXIAL, 300.0, None),
    (
        "t2_tirm_tra_dark-fluid",
        ("SE", "IR"),
        ("SK", "SP", "MP"),
        ("IR",),
        9000.0,
        95.0,
        2500.0,
        Plane.AXIAL,
        350.0,
        None,
    ),
    ("ep2d_diff_tra b1000", ("EP",), ("SK", "SP"), ("PFP", "FS"), 5000.0, 80.0, None, Plane.AXIAL, 150.0, 1000.0),
    ("t2_tse_sag", ("SE",), ("SK", "SP"), (), 4000.0, 100.0, None, Plane.SAGITTAL, 400.0, None),
)
"""The five series of a plain brain MR (as the demo's brain MR, so the catalog's item is complete)."""
MR_SCORES = tuple(score_metric("mr_artifacts", label) for label in MODEL_SPECS["mr_artifacts"].labels)


def write_site(root: Path, n_studies: int) -> list[dict[str, Any]]:
    """The studies (one folder each) and their truth: per series, the defect written into it."""
    rng = np.random.default_rng(SEED)
    truth = []
    for i in range(n_studies):
        study_uid = derive_uid("finetune-site", SEED, i)
        kind = ("clean", "ghosting", "noise")[i % 3]
        defective = int(rng.integers(len(SEQUENCES)))
        date = dt.date(2026, 11, 1) + dt.timedelta(days=i % 28)
        patient = PatientInfo(
            name=f"Site^{i:03d}",
            id=f"S{i:06d}",
            sex="F" if i % 2 else "M",
            birth_date=dt.date(1950 + i % 40, 1 + i % 12, 1 + i % 27),
        )
        study = StudyInfo(
            study_instance_uid=study_uid,
            date=date,
            time=dt.time(9, 30),
            accession_number=f"MR{i:08d}",
            institution_name=SITE,
            description="头颅MR平扫",
        )
        series_truth = {}
        written = 0
        for number, (name, scanning, variant, options, tr, te, ti, plane, signal, b_value) in enumerate(
            SEQUENCES, start=1
        ):
            series_uid = derive_uid(study_uid, "series", number)
            defect = kind if number - 1 == defective else "clean"
            sigma = float(rng.uniform(40, 110)) if defect == "noise" else 10.0
            volume = phantoms.mr_head_phantom(
                n_slices=12, size=64, signal=signal, noise_sigma=sigma, seed=SEED + 10 * i + number
            )
            if defect == "ghosting":
                volume = phantoms.add_ghost(volume, fraction=float(rng.uniform(0.02, 0.30)), axis=-1)
            series = SeriesInfo(
                series_instance_uid=series_uid,
                modality="MR",
                number=number,
                description=name,
                body_part="HEAD",
                protocol_name=name,
                model="Site MR 1.5T",
                station_name="MR02",
                extra={
                    "ScanningSequence": list(scanning),
                    "SequenceVariant": list(variant),
                    "ScanOptions": list(options),
                    "RepetitionTime": tr,
                    "EchoTime": te,
                    "InversionTime": ti,
                    "EchoTrainLength": 1 if b_value is not None else 16,
                    "DiffusionBValue": b_value,
                    "ImagingFrequency": 63.9,
                    "MagneticFieldStrength": 1.5,
                    "InPlanePhaseEncodingDirection": "ROW",
                },
            )
            geometry = Geometry(
                pixel_spacing_mm=(3.59375, 3.59375),
                slice_thickness_mm=5.0,
                plane=plane,
                first_slice_offset_mm=-27.5,
            )
            paths = write_series(
                volume,
                root / f"study{i:03d}",
                patient=patient,
                study=study,
                series=series,
                geometry=geometry,
                first_file_number=written + 1,
            )
            written += len(paths)
            series_truth[series_uid] = defect
        truth.append({"index": i, "folder": f"study{i:03d}", "study_instance_uid": study_uid, "series": series_truth})
    return truth


def judge_all(studies: Path, truth: list[dict[str, Any]], url: str) -> None:
    thresholds = load_pipeline_thresholds()
    with ResultStore.open(url) as store:
        for case in truth:
            source = FolderSource(studies / case["folder"], file_times_are_upload_times=False)
            (entry,) = list(source.discover())
            store.save_decision(
                judge(source.load(entry), thresholds, now=NOW, source_uri=source.uri, pixels=source), run_id=None
            )


def review_all(truth: list[dict[str, Any]], url: str) -> dict[str, int]:
    """The simulated radiologist (see the module docstring); returns what they did."""
    done = {"confirmed": 0, "rejected": 0, "audited_clean": 0, "defective_pass_left": 0, "study_level_left": 0}
    thresholds = load_thresholds()
    config = load_finding_review().model_copy(
        update={"audit": AuditShare(share=1.0, salt="finetune", source="[D] benchmark: every pass audited")}
    )
    with ResultStore.open(url) as store:
        reviewer = create_user(store, "dr.sim", "simulated-reviewer-pw-1", role="reviewer")
        for case in truth:
            uid = case["study_instance_uid"]
            service.claim(store, uid, reviewer)
            view = service.study_view(store, thresholds, uid, review_config=config)
            if view.result["verdict"] == "pass":
                if all(d == "clean" for d in case["series"].values()):
                    service.decide(
                        store,
                        thresholds,
                        uid,
                        reviewer,
                        verdict="pass",
                        reason_code="image_quality_acceptable",
                        reason_text=None,
                        review_config=config,
                    )
                    done["audited_clean"] += 1
                else:
                    done["defective_pass_left"] += 1
                continue
            for item in view.finding_items:
                defect = case["series"].get(item["series_instance_uid"] or "")
                if defect is None:
                    done["study_level_left"] += 1
                    continue
                confirm = defect != "clean"
                judge_finding(
                    store,
                    config,
                    uid,
                    reviewer,
                    finding_id=item["id"],
                    judgement="confirm" if confirm else "reject",
                    reason_code=defect if confirm else item["implied"],
                )
                done["confirmed" if confirm else "rejected"] += 1
    return done


def split_labels(labels: Path, truth: list[dict[str, Any]], tune: Path, held: Path) -> dict[str, int]:
    tuning = {c["study_instance_uid"] for c in truth if c["index"] % 2 == 0}
    with labels.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    counts = {}
    for path, keep in ((tune, True), (held, False)):
        chosen = [r for r in rows if (r["study_instance_uid"] in tuning) == keep]
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields or [], lineterminator="\n")
            writer.writeheader()
            writer.writerows(chosen)
        counts[path.stem] = len(chosen)
    return counts


CALIBRATION_RATE = 0.05


def calibrated_figures(tune: Path, held: Path, url: str) -> dict[str, tuple[float | None, dict[str, Any] | None]]:
    """Per MR score: the conformal limit of the tuning half's clean series (``calibrate``, as
    ``models calibrate`` computes it) and the held-out figures at that limit."""
    from qc_pipeline.modeltools.site_validation import ALL_SITES, calibrate, stored_scores, validate

    implied = load_finding_review().implied_artifact
    rows = {}
    for name, path in (("tune", tune), ("held", held)):
        with path.open(encoding="utf-8", newline="") as handle:
            rows[name] = list(csv.DictReader(handle))
    with ResultStore.open(url) as store:
        scores, sites = stored_scores(store, {r["study_instance_uid"] for rs in rows.values() for r in rs})
    limits = {
        c.score: c.threshold
        for c in calibrate(rows["tune"], scores, MR_SCORES, implied, false_flag_rate=CALIBRATION_RATE)
    }
    usable = {k: v for k, v in limits.items() if v is not None}
    figures = {
        f.score: f.as_dict() for f in validate(rows["held"], scores, sites, usable, implied) if f.site == ALL_SITES
    }
    return {score: (limits.get(score), figures.get(score)) for score in MR_SCORES}


def _cli(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    if result.exit_code != 0:
        raise SystemExit(f"qc-pipeline {' '.join(args)} failed ({result.exit_code}):\n{result.output}")
    return result.output


def _pct(rate: dict[str, Any] | None) -> str:
    return "—" if not rate else f"{100 * rate['value']:.0f}% ({rate['k']}/{rate['n']})"


def _auc(f: dict[str, Any] | None) -> str:
    if not f or f["auc"] is None:
        return "—"
    ci = "" if f["auc_low"] is None else f" [{f['auc_low']:.2f}–{f['auc_high']:.2f}]"
    return f"{f['auc']:.3f}{ci}"


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--replay", type=int, default=512)
    parser.add_argument("--small", action="store_true", help="12 studies, 2 epochs, 64 replay images")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temporary one).")
    args = parser.parse_args(argv)
    if args.small:
        args.studies, args.epochs, args.replay = 12, 2, 64
    os.environ.pop(MODELS_DIR_ENV, None)
    work = args.keep or Path(tempfile.mkdtemp(prefix="finetune-site-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    truth = write_site(work / "studies", args.studies)
    before_url = f"sqlite:///{work / 'before.sqlite'}"
    judge_all(work / "studies", truth, before_url)
    timings["write_and_judge_s"] = time.monotonic() - t0
    reviewed = review_all(truth, before_url)
    labels, tune, held = work / "labels.csv", work / "tune.csv", work / "held.csv"
    _cli(["models", "export-labels", "--db", before_url, "--out", str(labels)])
    rows = split_labels(labels, truth, tune, held)
    t1 = time.monotonic()
    tuned = work / "tuned"
    shutil.rmtree(tuned, ignore_errors=True)
    _cli(
        ["models", "train", "--labels", str(tune), "--db", before_url, "--out", str(tuned)]
        + ["--epochs", str(args.epochs), "--n-train", str(args.replay), "--model", "mr_artifacts"]
    )
    timings["finetune_s"] = time.monotonic() - t1
    after_dir = work / "after-models"  # the shipped models with the fine-tuned MR artifact model
    shutil.rmtree(after_dir, ignore_errors=True)
    shutil.copytree(DEFAULT_MODELS_DIR, after_dir)
    for path in tuned.glob("mr_artifacts.*"):
        shutil.copy2(path, after_dir / path.name)
    after_url = f"sqlite:///{work / 'after.sqlite'}"
    held_truth = [c for c in truth if c["index"] % 2 == 1]
    os.environ[MODELS_DIR_ENV] = str(after_dir)
    try:
        judge_all(work / "studies", truth, after_url)  # the tuning half too: its scores calibrate the limits
    finally:
        os.environ.pop(MODELS_DIR_ENV, None)
    figures = {}
    for name, url, models in (("before", before_url, DEFAULT_MODELS_DIR), ("after", after_url, after_dir)):
        out = work / f"validate-{name}.json"
        _cli(["models", "validate", "--labels", str(held), "--db", url, "--dir", str(models), "--json", str(out)])
        figures[name] = {f["score"]: f for f in json.loads(out.read_text(encoding="utf-8")) if f["site"] == "*"}
    calibrated = {
        name: calibrated_figures(tune, held, url) for name, url in (("before", before_url), ("after", after_url))
    }
    manifest = json.loads((tuned / "mr_artifacts.json").read_text(encoding="utf-8"))
    table = []
    print(
        f"\nheld-out half: {len(held_truth)} studies; tuning half: {len(truth) - len(held_truth)} studies "
        f"({manifest['training']['site_labels']['series']} labelled series); review: {reviewed}"
    )
    print(
        "| score | held-out pos/neg | AUC before [95% CI] | AUC after [95% CI] | false flags before | after | PPV before | after |"
    )
    print("|---|---:|---|---|---|---|---|---|")
    for score in MR_SCORES:
        b, a = figures["before"].get(score), figures["after"].get(score)
        ref = b or a
        n = "—" if ref is None else f"{ref['positives']}/{ref['negatives']}"
        row = {
            "score": score,
            "positives": ref and ref["positives"],
            "negatives": ref and ref["negatives"],
            "before": b,
            "after": a,
        }
        table.append(row)
        print(
            f"| {score} | {n} | {_auc(b)} | {_auc(a)} | {_pct(b and b['false_flags'])} | {_pct(a and a['false_flags'])} "
            f"| {_pct(b and b['ppv'])} | {_pct(a and a['ppv'])} |"
        )
    print(
        f"\nat a limit calibrated on the tuning half (split conformal, <= {CALIBRATION_RATE:.0%} of clean series "
        "flagged; models calibrate), applied to the held-out half:"
    )
    print("| score | limit before | false flags | caught | limit after | false flags | caught |")
    print("|---|---:|---|---|---:|---|---|")
    for row in table:
        cells = []
        for name in ("before", "after"):
            limit, f = calibrated[name].get(row["score"], (None, None))
            row[f"calibrated_{name}"] = {"limit": limit, "figures": f}
            caught = "—" if f is None or f["ppv"] is None else f"{f['ppv']['k']}/{f['positives']}"
            cells += ["—" if limit is None else f"{limit:.3g}", _pct(f and f["false_flags"]), caught]
        print(f"| {row['score']} | " + " | ".join(cells) + " |")
    print(
        f"validation images (training distribution) AUC before {manifest['training']['val_auc_before']}, "
        f"after {manifest['training']['val_auc']}"
    )
    out = write_results(
        "finetune_site",
        table,
        small=args.small,
        studies=args.studies,
        epochs=args.epochs,
        replay=args.replay,
        label_rows=rows,
        review=reviewed,
        site_labels=manifest["training"]["site_labels"],
        val_auc_before=manifest["training"]["val_auc_before"],
        val_auc_after=manifest["training"]["val_auc"],
        timings={k: round(v, 1) for k, v in timings.items()},
    )
    print(f"written: {out}; work folder: {work}")


if __name__ == "__main__":
    main_()
