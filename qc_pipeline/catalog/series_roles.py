"""Every series of a study, with the role the checks give it: what a radiologist needs to see why
the pipeline thinks a series is (or is not) the FLAIR, the portal phase or the lateral view an
item needs.

MR: the sequence identification (``mr_sequences``); CT: contrast phase, kernel class and slice
thickness; DR: view and side. Non-image objects (SR, KOS, PR) are listed without a role. Headers
in, ``SeriesSummary`` out; no I/O. Each modality's role is worked out in one function below, so
that a series-level identification replaces it in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydicom.dataset import Dataset

from qc_pipeline.catalog.classify import catalog_modality, image_view
from qc_pipeline.catalog.ct_series import describe_ct_series
from qc_pipeline.catalog.items import Vocabulary
from qc_pipeline.catalog.mr_sequences import identify_series
from qc_pipeline.domain import CTRole, DRRole, MRRole, SeriesKind, SeriesRole, SeriesSummary
from qc_pipeline.io.dicom import text
from qc_pipeline.sources.base import LoadedStudy

logger = logging.getLogger(__name__)

_LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT"})
_DR_VIEW_TAGS = (
    ("ViewPosition", "(0018,5101)"),
    ("SeriesDescription", "(0008,103E)"),
    ("ProtocolName", "(0018,1030)"),
    ("ImageComments", "(0020,4000)"),
    ("AcquisitionDeviceProcessingDescription", "(0018,1400)"),
)


def mr_role(datasets: Sequence[Dataset], vocabulary: Vocabulary) -> MRRole:
    """The sequence of an MR series, decided from all its images (as completeness decides it)."""
    info = identify_series(datasets, vocabulary=vocabulary)
    return MRRole(
        weighting=info.weighting.value,
        plane=None if info.plane is None else info.plane.value,
        fat_suppressed=info.fat_suppressed,
        post_contrast=info.post_contrast,
        evidence=info.evidence,
    )


def ct_role(datasets: Sequence[Dataset], vocabulary: Vocabulary) -> CTRole:
    """Phase, kernel class and slice thickness of a CT series, as completeness reads them
    (``ct_series.describe_ct_series``); the acquisition key joins the evidence."""
    described = describe_ct_series(datasets, vocabulary)
    slice_mm = described.slice_mm
    slice_evidence = (
        f"slice {slice_mm:g} mm from SliceThickness (0018,0050)"
        if slice_mm is not None
        else "SliceThickness (0018,0050) missing or unreadable"
    )
    return CTRole(
        phase=described.phase.value,
        kernel_class=described.kernel_class.value,
        slice_mm=slice_mm,
        evidence=(*described.evidence, slice_evidence, f"acquisition: {described.acquisition}"),
    )


def dr_role(datasets: Sequence[Dataset], vocabulary: Vocabulary, body_part: str | None = None) -> DRRole:
    """View and side of a radiograph series; the views of its images, ``+``-joined, when they differ.

    ``body_part`` (the matched item's) gives view words their meaning there (on a chest, 正位 is
    the PA), as the completeness check reads them."""
    views: list[str] = []
    sides: list[str] = []
    evidence: list[str] = []
    for ds in datasets:
        view = image_view(ds, vocabulary, body_part)
        if view is not None and view not in views:
            views.append(view)
        side = (text(ds, "ImageLaterality") or text(ds, "Laterality") or "").upper()
        if side and side not in sides:
            sides.append(side)
    first = datasets[0]
    seen = [f"{keyword} {tag} {value!r}" for keyword, tag in _DR_VIEW_TAGS if (value := text(first, keyword))]
    if views:
        evidence.append(f"view {'+'.join(views)} from " + ("; ".join(seen) or "the headers"))
    else:
        evidence.append(
            "no view: "
            + ("; ".join(seen) + " name none" if seen else "ViewPosition (0018,5101) and the series names are empty")
        )
    if len(datasets) > 1:
        evidence.append(f"{len(datasets)} images in the series")
    for keyword, tag in (("ImageLaterality", "(0020,0062)"), ("Laterality", "(0020,0060)")):
        if value := text(first, keyword):
            evidence.append(f"side from {keyword} {tag} {value!r}")
            break
    return DRRole(view="+".join(views) or None, laterality="+".join(sides) or None, evidence=tuple(evidence))


def _role(
    kind: SeriesKind, datasets: Sequence[Dataset], vocabulary: Vocabulary, body_part: str | None
) -> SeriesRole | None:
    if kind is SeriesKind.MR:
        return mr_role(datasets, vocabulary)
    if kind is SeriesKind.CT:
        return ct_role(datasets, vocabulary)
    if kind is SeriesKind.DR:
        return dr_role(datasets, vocabulary, body_part)
    return None


def describe_series(
    study: LoadedStudy, vocabulary: Vocabulary, *, body_part: str | None = None
) -> tuple[SeriesSummary, ...]:
    """Every series of ``study``, ordered by SeriesNumber (none last), then UID, with its role.

    ``body_part``: the matched item's body part (lexicon label), which gives DR view words their
    meaning there; None when no item was matched.

    A series with no image object is ``NON_IMAGE``; image series of MR, CT or CR/DX/DR get the
    role of their modality, those of other modalities none.
    """
    images: dict[str, list[Dataset]] = {}
    for inst in study.images:
        images.setdefault(inst.ref.series_instance_uid, []).append(inst.dataset)
    out = []
    for ref in study.ref().series:
        members = images.get(ref.series_instance_uid, [])
        if not members:
            kind = SeriesKind.NON_IMAGE
        else:
            modality = catalog_modality(text(members[0], "Modality") or ref.modality)
            kind = SeriesKind(modality) if modality in ("MR", "CT", "DR") else SeriesKind.OTHER
        out.append(
            SeriesSummary(
                series_instance_uid=ref.series_instance_uid,
                series_number=ref.series_number,
                description=ref.description,
                modality=ref.modality,
                n_instances=len(ref.instances),
                kind=kind,
                role=_role(kind, members, vocabulary, body_part) if members else None,
            )
        )
    out.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid))
    logger.debug("study %s: %d series described", study.study_instance_uid, len(out))
    return tuple(out)
