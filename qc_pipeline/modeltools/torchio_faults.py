"""MR faults made by TorchIO: the second simulator, used by the training and by its own evaluation.

TorchIO (Pérez-García et al., Comput Methods Programs Biomed 2021; a maintained library of MR
artifact simulation in k-space) models the MR faults another way than :mod:`qc_pipeline.modeltools.degrade`:

- ``RandomGhosting``: ghosts along the phase-encoding axis from a periodic k-space modulation;
- ``RandomMotion``: rigid motion at a few instants of the acquisition, the k-space of each pose
  spliced together (Shaw et al. 2019), which gives blurring and ghosts at once;
- ``RandomBiasField``: a smooth multiplicative field, a polynomial of order 3;
- ``RandomNoise``: Gaussian noise added to the magnitude (our own is Rician);
- ``RandomSpike``: one to three spikes in k-space (herringbone pattern), the ``spike`` label.

The transforms are defined once, here (:func:`cases`): the training draws half of its MR
motion-ghosting, noise and non-uniformity faults from them and all of its spike faults
(:data:`TRAINING_CASES`, :data:`TORCHIO_ALONE`, :mod:`qc_pipeline.modeltools.dataset`), and
:mod:`qc_pipeline.modeltools.external` scores the model on held-out real images degraded by all of
them. The held-out test set of the card makes its spikes with our own one-point k-space spike
(:func:`qc_pipeline.modeltools.degrade.mr_kspace_spike`), a simulator the model never trained on.

TorchIO draws its parameters from PyTorch's global random stream: :func:`degrade_with_torchio`
seeds it from the caller's seed inside a forked stream, so a sample is reproducible and the
caller's own PyTorch stream (the network's initial weights) is left as it was.

Needs the ``models`` extra (PyTorch, TorchIO); imported only when a transform is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.modeltools import degrade


@dataclass(frozen=True)
class Case:
    """One TorchIO fault: the label that names it and the transform's arguments."""

    label: str
    make: Callable[[], Any]
    """Builds the TorchIO transform (imported only when called)."""
    what: str


def cases() -> dict[str, Case]:
    """The TorchIO faults by name; each ``make`` imports TorchIO when called."""

    def tio() -> Any:
        import torchio

        return torchio

    # Intensities are relative to the image scaled to a 95th percentile of 1 (see apply); the noise
    # range is the label's own definition (SNR 3 to 8, degrade.MR_NOISE_SNR), the rest are
    # TorchIO's documented defaults or the middle of their useful range; the spike's intensity is the
    # ratio to the spectrum's maximum (TorchIO's definition; degrade.MR_SPIKE_INTENSITY, ours, is the same).
    low_snr, high_snr = degrade.MR_NOISE_SNR
    return {
        "ghosting": Case(
            "motion_ghosting",
            lambda: tio().RandomGhosting(num_ghosts=(4, 10), axes=(0, 1), intensity=(0.5, 1.0)),
            "RandomGhosting(num_ghosts=4-10, intensity=0.5-1.0)",
        ),
        "motion": Case(
            "motion_ghosting",
            lambda: tio().RandomMotion(degrees=8, translation=8, num_transforms=3),
            "RandomMotion(degrees=8, translation=8 mm, 3 movements)",
        ),
        "noise": Case(
            "noise",
            lambda: tio().RandomNoise(mean=0.0, std=(1 / high_snr, 1 / low_snr)),
            "RandomNoise(std = signal/8 to signal/3)",
        ),
        "bias_field": Case(
            "nonuniformity",
            lambda: tio().RandomBiasField(coefficients=0.6, order=3),
            "RandomBiasField(coefficients=±0.6, order=3)",
        ),
        "spike": Case(
            "spike",
            lambda: tio().RandomSpike(num_spikes=(1, 3), intensity=degrade.MR_SPIKE_INTENSITY),
            "RandomSpike(1-3 spikes, intensity 0.5-1.5 of the spectrum's maximum)",
        ),
    }


TRAINING_CASES: Final[dict[str, tuple[str, ...]]] = {
    "motion_ghosting": ("ghosting", "motion"),
    "noise": ("noise",),
    "nonuniformity": ("bias_field",),
    "spike": ("spike",),
}
"""The MR labels whose training faults come from TorchIO too, and the cases that make them. Not
wrap-around (TorchIO has no fold-over model)."""
TORCHIO_ALONE: Final = frozenset({"spike"})
"""The labels of :data:`TRAINING_CASES` whose training faults TorchIO alone makes (when a training
set draws from TorchIO at all, ``dataset.Simulation``): the spike is TorchIO's maintained k-space
spike model (``RandomSpike``); our own :func:`degrade.mr_kspace_spike` makes the held-out test
spikes only, so that the card's spike figures come from a simulator the model did not train on."""


def apply(transform: Any, image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``transform`` on a 2-D magnitude image, as a one-slice volume scaled to a 95th percentile of 1."""
    import torch
    import torchio

    level = float(np.percentile(image, 95.0)) or 1.0
    tensor = torch.from_numpy(np.ascontiguousarray(image / level, dtype=np.float32))[None, ..., None]
    out = transform(torchio.ScalarImage(tensor=tensor)).data[0, ..., 0].numpy()
    return np.abs(out).astype(np.float32) * np.float32(level)  # magnitude images are not negative


def degrade_with_torchio(image: npt.NDArray[np.float32], case: str, seed: int) -> npt.NDArray[np.float32]:
    """``image`` with the TorchIO fault ``case`` (a key of :func:`cases`), reproducible from ``seed``;
    PyTorch's global random stream is the same afterwards as before."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return apply(cases()[case].make(), image)
