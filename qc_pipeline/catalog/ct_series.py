"""A CT series as the pipeline understands it: contrast phase, kernel class, slice, acquisition.

An enhanced CT item counts contrast *phases*, not series: one helical scan is usually sent as a
thick and a thin reconstruction, in a soft-tissue and a sharp kernel, with coronal and sagittal
MPRs (ImageType DERIVED/SECONDARY). :func:`describe_ct_series` reads one series;
:func:`group_acquisitions` puts the series of a study into acquisitions and says how many there
are at least and at most when the headers cannot tell every pair apart.

What tells two series apart, strongest first: their AcquisitionTime (0008,0032) ranges (the
reconstructions of one scan cover the same seconds; phases are tens of seconds apart), their
AcquisitionNumber (0020,0012), the phase words of their names (lexicon ``phases``). A DERIVED
series (an MPR is often written later, with its own times and numbers) is joined to the
acquisition whose times or phase word it shares, never counted as a phase on its times alone.
The vocabulary (phase words, phase windows, kernel table, agent placeholders) is ``lexicon.yaml``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final, cast

from pydicom.dataset import Dataset

from qc_pipeline.catalog.contrast import contrast_agent, is_placeholder
from qc_pipeline.catalog.items import Vocabulary
from qc_pipeline.io.geometry import as_floats, frame_functional_group, header_text, header_value

logger = logging.getLogger(__name__)

SAME_ACQUISITION_GAP_S: Final = 3.0
"""Two AcquisitionTime ranges closer than this (seconds) are one acquisition. Reconstructions of
one helical scan cover the same range to within a gantry rotation (< 1 s); two phases of one
injection are at least ~15 s apart (arterial ~25-35 s, portal ~60-70 s: requirements.md)."""
_HALF_DAY_S: Final = 43_200.0
_TM: Final = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?$")
_DERIVED_IMAGE_TYPES: Final = frozenset({"DERIVED", "SECONDARY", "MPR", "MIP", "MINIP", "VRT", "REFORMATTED", "CURVED"})


class CTPhase(StrEnum):
    """The contrast phase of a CT series."""

    PLAIN = "PLAIN"
    ARTERIAL = "ARTERIAL"
    PORTAL = "PORTAL"
    VENOUS = "VENOUS"
    DELAYED = "DELAYED"
    POST_CONTRAST = "POST_CONTRAST"
    """After contrast, phase not named (no phase word, no usable bolus timing)."""
    LOCALIZER = "LOCALIZER"


NAMED_PHASES: Final = frozenset({CTPhase.ARTERIAL, CTPhase.PORTAL, CTPhase.VENOUS, CTPhase.DELAYED})
PHASE_NAMES: Final = {
    CTPhase.ARTERIAL: ("arterial", "动脉期"),
    CTPhase.PORTAL: ("portal venous", "门脉期"),
    CTPhase.VENOUS: ("venous", "静脉期"),
    CTPhase.DELAYED: ("delayed", "延迟期"),
}


class KernelClass(StrEnum):
    """What a reconstruction kernel is for, from its name (lexicon ``ct_kernels``)."""

    SOFT_TISSUE = "SOFT_TISSUE"
    BONE = "BONE"
    LUNG = "LUNG"
    BRAIN = "BRAIN"
    OTHER = "OTHER"
    """A kernel the table knows that is not one class by its name (a sharp body kernel: lung or bone)."""
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class CTSeriesRole:
    """One CT series as the pipeline understands it, with the reasons."""

    phase: CTPhase
    kernel_class: KernelClass
    slice_mm: float | None
    acquisition: str
    """What identifies the series' acquisition: its AcquisitionTime range, AcquisitionNumber, phase
    word, or "unknown"."""
    evidence: tuple[str, ...]
    kernel: str | None = None
    derived: bool = False
    """ImageType (0008,0008) DERIVED/SECONDARY or MPR/MIP: a reconstruction of another acquisition."""
    time_span_s: tuple[float, float] | None = None
    """First and last AcquisitionTime of the series, seconds after midnight."""
    acquisition_number: int | None = None
    delay_s: float | None = None
    """Seconds from ContrastBolusStartTime (0018,1042) to the first AcquisitionTime."""


def _image_type(ds: Dataset) -> list[str]:
    value = header_value(ds, "ImageType") or []
    # multi-valued: pydicom gives a MultiValue, or a str when the element holds one value
    values = [value] if isinstance(value, str) else list(cast("Iterable[object]", value))
    return [str(v).strip().upper() for v in values]


def is_localizer(ds: Dataset) -> bool:
    """A localizer/scout image: ImageType (0008,0008) contains LOCALIZER (or SCOUT)."""
    return bool({"LOCALIZER", "SCOUT"} & set(_image_type(ds)))


def is_derived(ds: Dataset) -> bool:
    """A reconstruction from other images (MPR, MIP): ImageType DERIVED or SECONDARY, or an MPR word."""
    return bool(_DERIVED_IMAGE_TYPES & set(_image_type(ds)))


def tm_seconds(value: object) -> float | None:
    """Seconds after midnight of a DICOM TM (``HHMMSS.FFFFFF``; the old ``HH:MM:SS`` too), or None."""
    if value is None:
        return None
    match = _TM.match(str(value).strip())
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    total = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0) + float(fraction or 0.0)
    return total if int(hours) < 24 and int(minutes or 0) < 60 and int(seconds or 0) < 61 else None


def _dt_seconds(value: object) -> float | None:
    """Seconds after midnight of the time part of a DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``)."""
    if value is None:
        return None
    raw = re.split(r"[+-]", str(value).strip(), maxsplit=1)[0]
    return tm_seconds(raw[8:]) if len(raw) > 8 else None


def _acquisition_seconds(ds: Dataset) -> list[float]:
    """AcquisitionDateTime or AcquisitionTime of ``ds``; per frame for an enhanced object."""
    frames = frame_functional_group(ds, "FrameContentSequence")
    found = [
        t for t in (_dt_seconds(header_text(item, "FrameAcquisitionDateTime")) for item in frames) if t is not None
    ]
    if found:
        return found
    own = _dt_seconds(header_text(ds, "AcquisitionDateTime"))
    if own is None:
        own = tm_seconds(header_text(ds, "AcquisitionTime"))
    return [own] if own is not None else []


def _fmt_tm(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:04.1f}"


def _first_kernel(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | bytes):
        try:
            value = next(iter(value))  # type: ignore[call-overload]
        except (TypeError, StopIteration):
            return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    text = text.split("\\")[0].strip().strip("\x00").strip()
    return text or None


def kernel_class(kernel: object, vocabulary: Vocabulary) -> tuple[KernelClass, str]:
    """The class of a ConvolutionKernel (0018,1210) value (its first value), and why.

    The kernel name is upper-cased, spaces and hyphens made "_", and matched in full against the
    patterns of the lexicon's ``ct_kernels`` table, class by class in the table's order.
    """
    name = _first_kernel(kernel)
    if name is None:
        return KernelClass.UNKNOWN, "no ConvolutionKernel (0018,1210)"
    key = re.sub(r"[\s\-]+", "_", name.upper())
    for label, patterns in vocabulary.lexicon.ct_kernels.classes.items():
        for pattern in patterns:
            if re.fullmatch(pattern, key):
                return KernelClass(label), f"kernel {name!r} → {label}"
    return KernelClass.UNKNOWN, f"kernel {name!r} is not in the kernel table (lexicon ct_kernels)"


def _numbers(datasets: Sequence[Dataset], keyword: str) -> list[float]:
    read = (as_floats(header_value(ds, keyword), count=1) for ds in datasets)
    return [v[0] for v in read if v is not None]


def _slice_mm(datasets: Sequence[Dataset]) -> float | None:
    """The most common SliceThickness (0018,0050) of the series."""
    values = [v for v in _numbers(datasets, "SliceThickness") if v > 0]
    return Counter(values).most_common(1)[0][0] if values else None


def _acquisition_number(datasets: Sequence[Dataset]) -> int | None:
    """AcquisitionNumber (0020,0012) when every image that has one agrees."""
    numbers = {int(v) for v in _numbers(datasets, "AcquisitionNumber")}
    return numbers.pop() if len(numbers) == 1 else None


def _window_phase(delay: float, vocabulary: Vocabulary) -> CTPhase | None:
    for label, (start, end) in vocabulary.lexicon.phase_windows.seconds.items():
        if start <= delay <= end:
            return CTPhase(label)
    return None


def describe_ct_series(datasets: Sequence[Dataset], vocabulary: Vocabulary) -> CTSeriesRole:
    """Phase, kernel class, slice thickness and acquisition of one CT series (its objects).

    Phase: LOCALIZER when every image is one; PLAIN when acquired before the recorded injection
    start or named plain; the phase word of its names (SeriesDescription, ProtocolName); else, after
    contrast (an agent tag that is not a placeholder, or contrast words), the phase whose window in
    the lexicon holds its delay after ContrastBolusStartTime (0018,1042), or POST_CONTRAST.
    """
    if not datasets:
        raise ValueError("describe_ct_series got no datasets: pass the objects of one series")
    head = datasets[0]
    evidence: list[str] = []
    kernel_value = header_value(head, "ConvolutionKernel")
    kernel_label, kernel_reason = kernel_class(kernel_value, vocabulary)
    evidence.append(kernel_reason)
    slice_mm = _slice_mm(datasets)
    derived = is_derived(head)
    times = sorted(t for ds in datasets for t in _acquisition_seconds(ds))
    span = (times[0], times[-1]) if times else None
    number = _acquisition_number(datasets)
    bolus = tm_seconds(header_text(head, "ContrastBolusStartTime"))
    delay = None
    if span is not None and bolus is not None:
        delay = span[0] - bolus
        if delay > _HALF_DAY_S:  # the clock passed midnight between the two times
            delay -= 2 * _HALF_DAY_S
        elif delay <= -_HALF_DAY_S:
            delay += 2 * _HALF_DAY_S
    if span is not None:
        acquisition = f"AcquisitionTime {_fmt_tm(span[0])}-{_fmt_tm(span[1])}"
    elif number is not None:
        acquisition = f"AcquisitionNumber {number}"
    else:
        acquisition = "unknown"
    if derived:
        evidence.append("ImageType DERIVED/SECONDARY: a reconstruction (MPR) of another acquisition")

    names = " | ".join(filter(None, (header_text(head, "SeriesDescription"), header_text(head, "ProtocolName"))))
    phase_hits = vocabulary.phases.find(names)[0] if names else []
    phase_words = sorted({label for label, _ in phase_hits})
    contrast_labels = vocabulary.contrast.labels(names) if names else []
    agent = next((a for a in (contrast_agent(ds, vocabulary) for ds in datasets) if a is not None), None)
    raw_agent = header_text(head, "ContrastBolusAgent")
    if agent is not None:
        evidence.append(agent)
    elif raw_agent is not None and is_placeholder(raw_agent, vocabulary):
        evidence.append(f"ContrastBolusAgent (0018,0010) {raw_agent!r} is a placeholder: no agent")

    def role(phase: CTPhase, why: str) -> CTSeriesRole:
        return CTSeriesRole(
            phase=phase,
            kernel_class=kernel_label,
            slice_mm=slice_mm,
            acquisition=acquisition,
            evidence=(why, *evidence),
            kernel=_first_kernel(kernel_value),
            derived=derived,
            time_span_s=span,
            acquisition_number=number,
            delay_s=delay,
        )

    if all(is_localizer(ds) for ds in datasets):
        return role(CTPhase.LOCALIZER, "ImageType LOCALIZER/SCOUT on every image")
    if delay is not None and delay < 0:
        return role(CTPhase.PLAIN, f"acquired {-delay:.0f} s before ContrastBolusStartTime (0018,1042): plain")
    if contrast_labels and contrast_labels[-1] == "plain" and not phase_words:
        return role(CTPhase.PLAIN, f"name {names!r} says plain")
    if len(phase_words) == 1:
        terms = ", ".join(sorted({term for _, term in phase_hits}))
        return role(CTPhase(phase_words[0]), f"name {names!r}: {terms} → {phase_words[0]}")
    if len(phase_words) > 1:
        return role(
            CTPhase.POST_CONTRAST, f"name {names!r} names several phases ({', '.join(phase_words)}): phase not named"
        )
    if agent is None and "enhanced" not in contrast_labels:
        return role(CTPhase.PLAIN, "no contrast agent and no contrast words")
    why = "post-contrast: " + ("contrast agent" if agent is not None else f"name {names!r}")
    if delay is None:
        return role(
            CTPhase.POST_CONTRAST,
            f"{why}; no phase word and no ContrastBolusStartTime (0018,1042) with AcquisitionTime",
        )
    if derived:  # an MPR's AcquisitionTime may be when it was reconstructed, not scanned
        return role(
            CTPhase.POST_CONTRAST, f"{why}; no phase word, and the times of a derived series do not name a phase"
        )
    windowed = _window_phase(delay, vocabulary)
    if windowed is None:
        return role(
            CTPhase.POST_CONTRAST, f"{why}; acquired {delay:.0f} s after ContrastBolusStartTime: in no phase window"
        )
    start, end = vocabulary.lexicon.phase_windows.seconds[windowed.value]  # type: ignore[index]
    return role(
        windowed, f"{why}; acquired {delay:.0f} s after ContrastBolusStartTime: {windowed} window {start:g}-{end:g} s"
    )


# --- acquisitions of a study --------------------------------------------------------------------


class Relation(Enum):
    SAME = "same"
    DIFFERENT = "different"
    UNKNOWN = "unknown"


def relation(a: CTSeriesRole, b: CTSeriesRole) -> tuple[Relation, str]:
    """Are two series of one study the same acquisition, and why (see the module docstring)."""
    derived = a.derived or b.derived
    if a.time_span_s is not None and b.time_span_s is not None:
        gap = max(a.time_span_s[0], b.time_span_s[0]) - min(a.time_span_s[1], b.time_span_s[1])
        if gap <= SAME_ACQUISITION_GAP_S:
            return Relation.SAME, "AcquisitionTime ranges overlap"
        if not derived:
            return Relation.DIFFERENT, f"AcquisitionTime ranges {gap:.0f} s apart"
    if a.acquisition_number is not None and b.acquisition_number is not None and not derived:
        if a.acquisition_number != b.acquisition_number:
            return Relation.DIFFERENT, f"AcquisitionNumber {a.acquisition_number} vs {b.acquisition_number}"
    if a.phase in NAMED_PHASES and b.phase in NAMED_PHASES:
        if a.phase == b.phase:
            return Relation.SAME, f"both {a.phase}"
        return Relation.DIFFERENT, f"{a.phase} vs {b.phase}"
    return Relation.UNKNOWN, "no AcquisitionTime, AcquisitionNumber or phase word tells them apart"


@dataclass(frozen=True)
class SeriesRef:
    """A series of the study and its role, for :func:`group_acquisitions`."""

    series_instance_uid: str
    description: str
    role: CTSeriesRole


@dataclass(frozen=True)
class Acquisition:
    """Series that are one acquisition (one scan of one phase)."""

    series: tuple[SeriesRef, ...]
    phase: CTPhase | None
    """The named phase (ARTERIAL, PORTAL, VENOUS, DELAYED); None when not named or named twice."""

    @property
    def label(self) -> str:
        return " + ".join(repr(s.description) for s in self.series)


@dataclass(frozen=True)
class Acquisitions:
    """The acquisitions of some series: ``at_least`` are certainly distinct, at most ``len(groups)``."""

    groups: tuple[Acquisition, ...]
    at_least: int
    undecided: tuple[tuple[SeriesRef, SeriesRef, str], ...]
    """Pairs of series in different groups not known to be different phases, and why: nothing tells
    them apart or together, or separate acquisitions carry the same phase name (a repeat, or a later
    phase named like the first)."""
    reconstructions: tuple[SeriesRef, ...] = ()
    """DERIVED series (MPRs) that nothing ties to one acquisition; taken as reconstructions of one of
    the ``groups`` they are not told apart from, never counted as a phase of their own."""

    @property
    def at_most(self) -> int:
        return len(self.groups)


def group_acquisitions(series: Sequence[SeriesRef]) -> Acquisitions:
    """Group ``series`` (of one contrast state) into acquisitions.

    Series are joined when :func:`relation` says SAME (transitively). A group of DERIVED series
    only (an MPR nothing ties to a scan) that some group with an original series is not told apart
    from is set aside as a reconstruction: an MPR is made from a scan, it is not one. ``at_least`` is
    the largest set of groups found pairwise DIFFERENT and not named the same phase (a greedy
    clique: a lower bound that never over-counts), ``at_most`` the number of groups.
    """
    n = len(series)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    relations: dict[tuple[int, int], Relation] = {}
    for i in range(n):
        for j in range(i + 1, n):
            found, _ = relation(series[i].role, series[j].role)
            relations[(i, j)] = found
            if found is Relation.SAME:
                parent[find(j)] = find(i)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    clusters = list(members.values())

    def different(x: list[int], y: list[int]) -> bool:
        return any(relations[(min(i, j), max(i, j))] is Relation.DIFFERENT for i in x for j in y)

    scans = [c for c in clusters if any(not series[i].role.derived for i in c)]
    set_aside = [
        c for c in clusters if all(series[i].role.derived for i in c) and any(not different(c, scan) for scan in scans)
    ]
    clusters = [c for c in clusters if c not in set_aside]

    def phase_of(cluster: list[int]) -> CTPhase | None:
        named = {series[i].role.phase for i in cluster if series[i].role.phase in NAMED_PHASES}
        return named.pop() if len(named) == 1 else None

    phases = [phase_of(c) for c in clusters]

    def distinct(x: int, y: int) -> bool:
        return different(clusters[x], clusters[y]) and (phases[x] is None or phases[x] != phases[y])

    at_least = 0
    for start in range(len(clusters)):
        chosen = [start]
        for other in range(len(clusters)):
            if other not in chosen and all(distinct(other, c) for c in chosen):
                chosen.append(other)
        at_least = max(at_least, len(chosen))
    aside = {i for c in set_aside for i in c}
    undecided = [
        (series[i], series[j], "no AcquisitionTime, AcquisitionNumber or phase word tells them apart")
        for (i, j), found in relations.items()
        if found is Relation.UNKNOWN and find(i) != find(j) and i not in aside and j not in aside
    ]
    for x in range(len(clusters)):
        for y in range(x + 1, len(clusters)):
            if phases[x] is not None and phases[x] == phases[y]:
                undecided.append(
                    (series[clusters[x][0]], series[clusters[y][0]], f"separate acquisitions both named {phases[x]}")
                )
    groups = tuple(
        Acquisition(series=tuple(series[i] for i in c), phase=p) for c, p in zip(clusters, phases, strict=True)
    )
    return Acquisitions(
        groups=groups,
        at_least=at_least,
        undecided=tuple(undecided),
        reconstructions=tuple(series[i] for c in set_aside for i in c),
    )
