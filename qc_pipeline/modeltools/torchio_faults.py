"""MR faults made by TorchIO: the second simulator, used by the training and by its own evaluation.

TorchIO (Pérez-García et al., Comput Methods Programs Biomed 2021; a maintained library of MR
artifact simulation in k-space) models the MR faults another way than :mod:`qc_pipeline.modeltools.degrade`:

- ``RandomGhosting``: ghosts along the phase-encoding axis from a periodic k-space modulation;
- ``RandomMotion``: rigid motion at a few instants of the acquisition, the k-space of each pose
  spliced together (Shaw et al. 2019), which gives blurring and ghosts at once;
- ``RandomBiasField``: a smooth multiplicative field, a polynomial of order 3;
- ``RandomNoise``: Gaussian noise added to the magnitude (our own is Rician);
- ``RandomSpike``: a spike in k-space (herringbone pattern), a fault no label of the model names.

The transforms are defined once, here (:func:`cases`): the training draws half of its MR
motion-ghosting, noise and non-uniformity faults from them (:data:`TRAINING_CASES`,
:mod:`qc_pipeline.modeltools.dataset`) and :mod:`qc_pipeline.modeltools.external` scores the model
on held-out real images degraded by all of them. TorchIO draws its parameters from PyTorch's global
random stream: :func:`degrade_with_torchio` seeds it from the caller's seed inside a forked stream,
so a sample is reproducible and the caller's own PyTorch stream (the network's initial weights) is
left as it was.

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
    """One TorchIO fault: the label that names it (None: no label does) and the transform's arguments."""

    label: str | None
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
    # TorchIO's documented defaults or the middle of their useful range.
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
        "spike": Case(None, lambda: tio().RandomSpike(num_spikes=(1, 3), intensity=(0.5, 1.5)), "RandomSpike(1-3)"),
    }


TRAINING_CASES: Final[dict[str, tuple[str, ...]]] = {
    "motion_ghosting": ("ghosting", "motion"),
    "noise": ("noise",),
    "nonuniformity": ("bias_field",),
}
"""The MR labels whose training faults come from TorchIO too, and the cases that make them. Not
wrap-around (TorchIO has no fold-over model) and not the spike (no label names it: adding one is a
new label with its own evidence, models/mr_artifacts.limits.md)."""


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
