"""Model cards (``models/<name>.md``), written from the manifest by ``qc-pipeline models train``.

The held-out results section is left between markers for ``qc-pipeline models evaluate --write``,
so a card's numbers always come from the evaluation command, never typed by hand. The known limits
and experiment history are the one part written by hand: in ``models/<name>.limits.md``, read here.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Final

from qc_pipeline.ai.registry import Manifest, default_models_dir
from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.modeltools import dataset, degrade

logger = logging.getLogger(__name__)

CARD_START: Final = "<!-- evaluation:start (written by qc-pipeline models evaluate --write) -->"
CARD_END: Final = "<!-- evaluation:end -->"
"""The markers around a card's held-out results, which ``evaluation.write_results`` replaces."""

DEGRADATION_TEXT: Final[dict[str, dict[str, str]]] = {
    "DR": {
        "exposure_fault": f"under-exposure: grey scale compressed to 45-75 %, quantum noise SD {degrade.DR_UNDER_NOISE[0]:.0%}-{degrade.DR_UNDER_NOISE[1]:.0%} of the 1-99 % range, level lowered; over-exposure: gain {degrade.DR_OVER_GAIN[0]}-{degrade.DR_OVER_GAIN[1]} above the 1st percentile, clipped at the stored maximum",
        "saturation": f"every value above the {degrade.DR_SATURATION_PERCENTILE[0]:.0f}th-{degrade.DR_SATURATION_PERCENTILE[1]:.0f}th percentile set to the stored maximum; labelled by the outcome: ≥ 1 % more pixels at the stored maximum (an over-exposure that clips counts, a draw on a crop already at the maximum there does not)",
        "blur_motion": f"Gaussian blur σ {degrade.DR_BLUR_SIGMA_PX[0]}-{degrade.DR_BLUR_SIGMA_PX[1]} px or a motion line kernel of {degrade.DR_MOTION_LENGTH_PX[0]}-{degrade.DR_MOTION_LENGTH_PX[1] - 1} px at a random angle (256-px working grid)",
        "collimation_cutoff": f"collimator shadow over {degrade.DR_CUTOFF_FRACTION[0]:.0%}-{degrade.DR_CUTOFF_FRACTION[1]:.0%} of one or two sides (bright unexposed, or black electronic shutter), soft penumbra",
    },
    "CT": {
        "excess_noise": f"correlated Gaussian noise (white noise smoothed by σ {degrade.CT_NOISE_KERNEL_PX[0]}-{degrade.CT_NOISE_KERNEL_PX[1]} px) that brings the image's global noise level, measured as `ct.noise_hu` measures it, to {degrade.CT_NOISE_SD_HU[0]:.0f}-{degrade.CT_NOISE_SD_HU[1]:.0f} HU at the acquisition matrix (clean images: up to {degrade.CT_CLEAN_NOISE_MAX_HU:.0f} HU, below)",
        "streaks": f"3-9 alternating bright/dark lines through 1-2 dense points inside the body, {degrade.CT_STREAK_HU[0]:.0f}-{degrade.CT_STREAK_HU[1]:.0f} HU, decaying over 60-200 px",
        "rings": f"1-4 circles about the isocentre through the body (radius {degrade.CT_RING_RADIUS_FRACTION[0]:.0%}-{degrade.CT_RING_RADIUS_FRACTION[1]:.0%} of half the shorter side), ±{degrade.CT_RING_HU[0]:.0f}-{degrade.CT_RING_HU[1]:.0f} HU",
        "motion": f"the image blended (30-50 %) with a copy shifted {degrade.CT_MOTION_SHIFT_PX[0]:.0f}-{degrade.CT_MOTION_SHIFT_PX[1]:.0f} px, plus edge streaks",
    },
    "MR": {
        "motion_ghosting": f"k-space phase errors on {degrade.MR_GHOST_LINES[0]:.0%}-{degrade.MR_GHOST_LINES[1]:.0%} of the phase-encode lines (random or every 3rd-8th line), shifts {degrade.MR_GHOST_SHIFT_PX[0]:.0f}-{degrade.MR_GHOST_SHIFT_PX[1]:.0f} px",
        "noise": f"Rician noise, SNR {degrade.MR_NOISE_SNR[0]:.0f}-{degrade.MR_NOISE_SNR[1]:.0f} relative to the 95th percentile",
        "wrap_around": f"field of view {degrade.MR_WRAP_FOV[0]:.0%}-{degrade.MR_WRAP_FOV[1]:.0%} of the object along phase encoding, circular folding",
        "nonuniformity": f"multiplicative bias field exp(a·p(x, y)), p a random 2nd-order polynomial scaled to ±1, a {degrade.MR_BIAS_AMPLITUDE[0]}-{degrade.MR_BIAS_AMPLITUDE[1]}",
        "spike": f"held-out test images only: one k-space point of {degrade.MR_SPIKE_INTENSITY[0]}-{degrade.MR_SPIKE_INTENSITY[1]} × the spectrum's maximum, {degrade.MR_SPIKE_RADIUS[0]:.0%}-{degrade.MR_SPIKE_RADIUS[1]:.0%} of the way from the centre to the edge, magnitude of the inverse transform (`degrade.mr_kspace_spike`); the training spikes are TorchIO's alone (below)",
    },
}

MODALITY_DATA: Final[dict[str, str]] = {
    "CT": (
        f"- CT phantoms: {dataset.P_CT_CYLINDER:.0%} of the seeds are the water cylinder, the others anatomical slices "
        "(head, skull base with mastoid air cells and sinuses, chest with lungs and ribs, abdomen with organs and bowel gas, "
        "on a couch: `qc_pipeline.samples.ct_anatomy`), so that dense bone beside air and a body's organs are seen clean.\n"
        f"- Acceptable variation: {dataset.P_CT_DOSE:.0%} of the images (clean or not) get correlated noise up to a global noise level of "
        f"{degrade.CT_CLEAN_NOISE_MAX_HU:.0f} HU (dose and patient-size variation; the objective review limit is 35 HU), and "
        f"{dataset.P_CT_FAINT_STREAKS:.0%} faint streaks of {degrade.CT_CLEAN_STREAK_HU[0]:.0f}-{degrade.CT_CLEAN_STREAK_HU[1]:.0f} HU "
        "(photon starvation at the skull base and shoulders is normal at a low level); the clean held-out images are left as "
        "their source has them.\n"
    ),
}

LIMITS_SUFFIX: Final = ".limits.md"
"""``<name>.limits.md`` beside each model: its known limits and experiment history, written by
hand. Training writes the rest of the card from the manifest and the code, and never this file,
so retraining regenerates the measured figures and keeps what people learnt about the model."""

NO_LIMITS: Final = "- (no known limits written yet: write them in `{file}` beside the model)"


def limits_path(name: str, models_dir: Path) -> Path:
    """Where the hand-written known limits of model ``name`` in ``models_dir`` are kept."""
    return models_dir / f"{name}{LIMITS_SUFFIX}"


def known_limits(name: str, models_dir: Path | None = None) -> str:
    """The hand-written known limits of model ``name``: ``<models_dir>/<name>.limits.md``, else
    those of the models in use (:func:`default_models_dir`), which a model trained into a new folder
    inherits; a placeholder saying which file to write when neither exists."""
    candidates = [limits_path(name, d) for d in (models_dir, default_models_dir()) if d is not None]
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8").rstrip()
    logger.warning("model %s has no known limits (%s): its card says so", name, candidates[0])
    return NO_LIMITS.format(file=candidates[0].name)


def _fine_tuned_text(training: dict[str, Any]) -> str:
    base, site = training.get("fine_tuned_from"), training.get("site_labels")
    if not base or not site:
        return ""
    return (
        f"- **Fine-tuned** from `{base['name']}` {base['version']} (sha256 `{base['sha256'][:16]}`) on "
        f"{site['series']} reviewed series of {site['studies']} studies of one site (label file `{site['file']}`, "
        f"sha256 `{site['sha256'][:16]}`, {site['rows']} rows; `qc_pipeline.modeltools.finetune`), with "
        f"{training.get('replay_images')} replay images of the training split; the data above is the base model's.\n"
    )


def _simulation_text(simulation: dict[str, Any] | None) -> str:
    """The second simulator and the acceptable ringing of a training set (manifest ``training.simulation``)."""
    if not simulation:
        return ""
    alone = set(simulation.get("torchio_alone") or ())
    cases = "; ".join(
        f"{label}: {', '.join(names)}" for label, names in simulation["torchio_cases"].items() if label not in alone
    )
    made = simulation.get("faults_train") or {}
    theirs = sum(n for key, n in made.items() if ":torchio." in key)
    alone_text = "".join(
        f" Every {label} training fault is TorchIO's ({', '.join(simulation['torchio_cases'][label])}: "
        f"{sum(n for key, n in made.items() if key.startswith(f'{label}:torchio.'))} faults); our own function makes the "
        "held-out test ones only."
        for label in sorted(alone)
    )
    return (
        f"\n- Second simulator: {simulation['torchio_share'] * 100:.0f} % of the faults of the labels TorchIO models are made by "
        f"TorchIO's transforms instead (`qc_pipeline.modeltools.torchio_faults`; {cases}), the others by the functions "
        f"above; {theirs} of the {sum(made.values())} training faults came from TorchIO.{alone_text} Wrap-around has no "
        "TorchIO model and stays ours alone. The held-out test images keep our simulator alone.\n"
        f"- Acceptable variation: {simulation['gibbs_share'] * 100:.0f} % of the training images (clean or not) carry truncation "
        f"(Gibbs) ringing: k-space kept over {simulation['gibbs_keep'][0] * 100:.0f}-{simulation['gibbs_keep'][1] * 100:.0f} % "
        "along one axis or both, zero-filled (`degrade.mr_gibbs_ringing`), so that normal ringing is not read as a fault."
    )


def card_text(manifest: Manifest, *, models_dir: Path | None = None) -> str:
    """The card of ``manifest``'s model: generated from the manifest and the code, with the results
    section left for ``models evaluate --write`` and the known limits read from
    :func:`known_limits` (``models_dir``: the folder the model is in, default the models in use)."""
    spec = MODEL_SPECS[manifest.name]
    modality = spec.modality
    train = dataset.REAL_SOURCES[modality]["train"]
    test = dataset.REAL_SOURCES[modality]["test"]
    seeds = dataset.PHANTOM_SEEDS
    t = manifest.training
    if spec.kind == "image":
        what = (
            f"A multi-label CNN ({t.get('parameters', '?')} parameters) that scores one {modality} image (or up to "
            f"{manifest.preprocessing.get('max_slices')} sampled slices of a series; the series score is the highest) for "
            + ", ".join(f"**{label}** ({en})" for label, en in zip(spec.labels, spec.labels_en, strict=True))
            + ". Input: `qc_pipeline.ai.preprocess.model_input` — 256-px working grid, channels "
            + ", ".join(f"`{c}`" for c in manifest.preprocessing.get("channels", []))
            + " at 128×128."
        )
        data = "\n".join(f"  - **{label}**: {DEGRADATION_TEXT[modality][label]}" for label in spec.labels)
        data = f"- Degradations (`qc_pipeline.modeltools.degrade`), zero (40 %), one or two per image:\n{data}"
        data += _simulation_text(t.get("simulation"))
    else:
        what = (
            f"Gradient boosting (scikit-learn, converted with skl2onnx) on the pipeline's own {modality} metrics, "
            "computed on the same working-grid images the CNN sees (`qc_pipeline.ai.features`), in the spirit of MRIQC's "
            "classifier: the probability that the image is **not acceptable** (any artifact). Features: "
            + ", ".join(f"`{f}`" for f in manifest.preprocessing.get("features", []))
            + "."
        )
        data = "- Labels: acceptable = no degradation applied; not acceptable = any degradation of the artifact model's list."
    data = MODALITY_DATA.get(modality, "") + data
    return f"""# {manifest.name} — {modality} {"artifact classifier" if spec.kind == "image" else "metric-based acceptability"}

Version `{manifest.version}`, file `{manifest.file}`, sha256 `{manifest.sha256}`.

{what}

Scores become findings (category `ai`, severity `review`: the AI flags, a radiologist decides) by the rules
of `thresholds/ai.yaml`.

## Data

- Real images (pixels from pydicom / pydicom-data): train `{"`, `".join(train)}`; held-out test `{"`, `".join(test)}`.
- Seeded synthetic phantoms (`qc_pipeline.samples.phantoms`): train seeds {seeds["train"].start}-{seeds["train"].stop - 1},
  validation seeds {seeds["val"].start}-{seeds["val"].stop - 1}, test seeds {seeds["test"].start}-{seeds["test"].stop - 1}.
- Each image: a random crop (75-100 % of each side) and flip of a source, 60 % real / 40 % phantom; for
  CT and MR a random acquisition matrix; for half the images a little smoothing (σ {dataset.PROCESSING_SMOOTH_PX[0]}-{dataset.PROCESSING_SMOOTH_PX[1]} px) or
  edge enhancement (reconstruction kernel / vendor processing, acceptable, not a label).
{data}
- Training images: {t.get("n_train")}, epochs: {t.get("epochs", "n/a")}, validation images: {t.get("n_val")} (validation: train sources, other seeds).
{_fine_tuned_text(t)}
## Split

Held out by source **and** seed: no test source file and no test phantom seed is used in training or
validation (`tests/ai/test_training.py` checks it). The demo's clean real images are test sources.

## Held-out results

`qc-pipeline models evaluate --write` (onnxruntime, the product path) writes this table; limits are those
of `thresholds/ai.yaml`. Brier score and ECE (10 bins) describe calibration.

{CARD_START}
(run `qc-pipeline models evaluate --write`)
{CARD_END}

Validation AUC during training: {", ".join(f"{k} {v}" for k, v in t.get("val_auc", {}).items())}.

## Decision thresholds

Operating points in the manifest (99 % specificity on validation): {", ".join(f"{k} {v}" for k, v in manifest.decision_thresholds.items())}.
The flow applies the limits of `thresholds/ai.yaml`, which start from these (never below 0.5). A rule there
is on only when its evidence clears the gate stated in that file: the lower 95 % bound of the AUC in the worst
real fold, the upper exact 95 % bound of the false flags over distinct clean real images, and at least one
faulty real image caught only by the AI (the second table above gives these figures, with the effective n).
Phantoms never count towards the gate. Each rule is pinned to `name@version+sha256` of this model: another
model file turns it off (info finding `ai.model.pin_mismatch`). A rule that does not clear the gate stays off
(score stored and shown to reviewers, no finding).

## Known limits

{known_limits(manifest.name, models_dir)}
- Synthetic degradations are physically motivated but not a substitute for labelled clinical artifacts; the
  held-out figures measure separation of these degradations, not clinical accuracy.

## Retraining

- From scratch: `.venv/bin/pip install -e '.[models]' && qc-pipeline models train --model {manifest.name}`
  (written to `trained-models/<version>/`, never over `models/` without `--force`), then
  `qc-pipeline models evaluate --dir trained-models/<version> --write`; to install, copy the model into `models/`
  and update the limits, pins and evidence in `thresholds/ai.yaml`. A new model version changes the decisions' provenance, so the nightly rescore
  re-judges the stored studies with it.
- The known limits above are written by hand in `{manifest.name}{LIMITS_SUFFIX}` beside the model: training copies
  that file and never rewrites it (edit it there, not in this card).
- On a centre's own studies: export the radiologists' review decisions as labels
  (`qc-pipeline review export-labels --out labels.csv`: study, series, modality, human decision, reason code,
  source) and run `qc-pipeline models train --labels labels.csv`: each reviewed study is read again from its
  source, its series' metric features join the acceptability models' training with the radiologist's
  decision as the label (fail = not acceptable); the manifest records how many were used and skipped.
  The artifact CNNs need per-artifact labels: map the review reason codes to artifact labels and add the
  images to the training sources (`qc_pipeline.modeltools.dataset.REAL_SOURCES`, or a local list). Keep a held-out
  set of the centre's own studies, by patient, and report its table here before deploying.
"""


def write_card(manifest: Manifest, models_dir: Path) -> Path:
    """Write the card of ``manifest``'s model into ``models_dir``. A folder without the model's
    ``<name>.limits.md`` gets a copy of the one in use, so that installing the trained files by
    copying them into the models folder keeps the hand-written text."""
    limits = limits_path(manifest.name, models_dir)
    if not limits.is_file():
        inherited = limits_path(manifest.name, default_models_dir())
        if inherited.is_file():
            shutil.copyfile(inherited, limits)
    path = models_dir / f"{manifest.name}.md"
    path.write_text(card_text(manifest, models_dir=models_dir), encoding="utf-8")
    return path
