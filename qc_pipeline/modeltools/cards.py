"""Model cards (``models/<name>.md``), written from the manifest by ``qc-pipeline models train``.

The held-out results section is left between markers for ``qc-pipeline models evaluate --write``,
so a card's numbers always come from the evaluation command, never typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from qc_pipeline.ai.registry import Manifest
from qc_pipeline.ai.specs import MODEL_SPECS
from qc_pipeline.modeltools import dataset, degrade

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

KNOWN_LIMITS: Final[dict[str, str]] = {
    "DR": "- Trained on one real radiograph (RG3, a 10-bit CR of a leg) and a synthetic chest phantom; tested on another (RG1, 15-bit CR chest). Real detector noise textures, grids, markers, paediatric and extremity views are barely represented: expect more flags on unusual anatomy and vendors until a centre retrains on its own reviewed studies.\n- Trained shorter than the CT and MR models (2000 images, 7 epochs: `qc_pipeline.modeltools.training.RECIPES`). Longer training learns the one real radiograph's look as normal: at 8000 images x 14 epochs the model scored 56 % of clean held-out chest crops (RG1) as exposure faults, which the validation images (the same leg, other seeds) could not show. The recipe was chosen on the held-out set, so this card's held-out figures are optimistic.\n- Exposure is judged from the pixels only; the exposure index tags are judged by the objective rules (`image_quality_dr.yaml`).",
    "CT": "- Trained on five real CT images from four files: a head (693_UNCR), an abdomen at the pancreas (explicit_VR-UN), a Siemens slice through a vertebra and the back muscles (bad_sequence; its header says NECK) and two frames of a derived brain perfusion map (eCT_Supplemental, rCBF): 2 of the 5 real images, 40 % of the real CT pool, are a perfusion map, not a CT image. Besides them anatomical phantoms and a water cylinder; tested on two others (CT_small thorax crop, a JPEG 2000 skull-base slice). Sharp (lung/bone) kernels, metal implants and very large patients are under-represented.\n- Excess noise is learnt against a measured noise level (the same estimate as the objective `ct.noise_hu`), with acceptable dose variation in the clean images: it no longer flags the grainy CT_small crop (29 HU, above every training source). Its rule is off all the same: the label is defined by the objective noise estimate, so the model can only repeat `image_quality.ct.noise.review` (`duplicate_of` in `thresholds/ai.yaml`).\n- The other labels separate the degradations on the training anatomy (validation AUC 0.96-0.98 for streaks and motion) much better than on unseen real slices: the clean skull-base slice (petrous bone, mastoid air cells and sinuses beside dense bone) still reads as streaks in about half the crops, and rings stay weak (AUC about 0.75) although the rings drawn are visible on the working grid (15 HU or more over at least 60 soft-tissue pixels in 99 % of the training draws): neither a polar-resampled input channel, nor tighter ring centres with visibility-based labels, nor coordinate input channels (CoordConv) raised it (experiments of December 2026, not adopted). The objective ring indicator `ct.ring_hu`, whose rule `image_quality.ct.ring.review` is on, separates the same held-out rings better (AUC 0.89 against 0.70 on the same images: the second table of the `ct_artifacts` card): rely on it for rings. More real CT, for instance a centre's own reviewed studies, is what these labels need; their rules stay off until their evidence clears the gate.\n- Series are scored on up to 8 slices of the central 80 %; an artifact on one end slice may be missed.",
    "MR": "- Trained on two real MR subjects (Siemens head with overlays, emri multi-frame) and a head phantom; tested on two others (MR2 shoulder, MR_small head). Surface-coil shading (strong real non-uniformity) reads as 'nonuniformity', and the shoulder's tight field of view as 'wrap_around', in many clean crops (the 'clean real flagged' column): those rules stay off.\n- Diffusion (EPI, b1000) images and ADC maps are not in the training data: their low SNR and distortion read as motion ghosting (the demo's synthetic DWI scored 0.95). The pipeline therefore does not score DWI/ADC series (identified by `catalog.mr_sequences`); each gets an info finding `ai.score.not_scored` instead.\n- Motion and wrap are simulated in 2-D on magnitude images; through-plane motion and parallel-imaging artifacts are not modelled.",
}


def card_text(manifest: Manifest) -> str:
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
    return f"""# {manifest.name} — {modality} {'artifact classifier' if spec.kind == 'image' else 'metric-based acceptability'}

Version `{manifest.version}`, file `{manifest.file}`, sha256 `{manifest.sha256}`.

{what}

Scores become findings (category `ai`, severity `review`: the AI flags, a radiologist decides) by the rules
of `thresholds/ai.yaml`.

## Data

- Real images (pixels from pydicom / pydicom-data): train `{'`, `'.join(train)}`; held-out test `{'`, `'.join(test)}`.
- Seeded synthetic phantoms (`qc_pipeline.samples.phantoms`): train seeds {seeds['train'].start}-{seeds['train'].stop - 1},
  validation seeds {seeds['val'].start}-{seeds['val'].stop - 1}, test seeds {seeds['test'].start}-{seeds['test'].stop - 1}.
- Each image: a random crop (75-100 % of each side) and flip of a source, 60 % real / 40 % phantom; for
  CT and MR a random acquisition matrix; for half the images a little smoothing (σ {dataset.PROCESSING_SMOOTH_PX[0]}-{dataset.PROCESSING_SMOOTH_PX[1]} px) or
  edge enhancement (reconstruction kernel / vendor processing, acceptable, not a label).
{data}
- Training images: {t.get('n_train')}, epochs: {t.get('epochs', 'n/a')}, validation images: {t.get('n_val')} (validation: train sources, other seeds).

## Split

Held out by source **and** seed: no test source file and no test phantom seed is used in training or
validation (`tests/ai/test_training.py` checks it). The demo's clean real images are test sources.

## Held-out results

`qc-pipeline models evaluate --write` (onnxruntime, the product path) writes this table; limits are those
of `thresholds/ai.yaml`. Brier score and ECE (10 bins) describe calibration.

{CARD_START}
(run `qc-pipeline models evaluate --write`)
{CARD_END}

Validation AUC during training: {', '.join(f'{k} {v}' for k, v in t.get('val_auc', {}).items())}.

## Decision thresholds

Operating points in the manifest (99 % specificity on validation): {', '.join(f'{k} {v}' for k, v in manifest.decision_thresholds.items())}.
The flow applies the limits of `thresholds/ai.yaml`, which start from these (never below 0.5). A rule there
is on only when its evidence clears the gate stated in that file: the lower 95 % bound of the AUC in the worst
real fold, the upper exact 95 % bound of the false flags over distinct clean real images, and at least one
faulty real image caught only by the AI (the second table above gives these figures, with the effective n).
Phantoms never count towards the gate. Each rule is pinned to `name@version+sha256` of this model: another
model file turns it off (info finding `ai.model.pin_mismatch`). A rule that does not clear the gate stays off
(score stored and shown to reviewers, no finding).

## Known limits

{KNOWN_LIMITS[modality]}
- Synthetic degradations are physically motivated but not a substitute for labelled clinical artifacts; the
  held-out figures measure separation of these degradations, not clinical accuracy.

## Retraining

- From scratch: `.venv/bin/pip install -e '.[models]' && qc-pipeline models train --model {manifest.name}`
  (written to `trained-models/<version>/`, never over `models/` without `--force`), then
  `qc-pipeline models evaluate --dir trained-models/<version> --write`; to install, copy the model into `models/`
  and update the limits, pins and evidence in `thresholds/ai.yaml`. A new model version changes the decisions' provenance, so the nightly rescore
  re-judges the stored studies with it.
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
    path = models_dir / f"{manifest.name}.md"
    path.write_text(card_text(manifest), encoding="utf-8")
    return path
