"""CT series description (phase, kernel class, slice, acquisition) and the contrast agent tag.

Kernel names are the vendors' console values as they appear in ConvolutionKernel (0018,1210);
the expected class of each is the use the vendor names it for (Siemens B30f body soft tissue,
H31s head, B70f very sharp body; GE BONEPLUS; Philips L lung; Canon FC08 abdomen, FC52 lung).
"""

from __future__ import annotations

import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from qc_pipeline.catalog.classify import is_post_contrast
from qc_pipeline.catalog.contrast import contrast_agent
from qc_pipeline.catalog.ct_series import CTPhase, CTSeriesRole, KernelClass, describe_ct_series, kernel_class
from qc_pipeline.catalog.items import load_catalog
from qc_pipeline.rules import default_thresholds_dir


@pytest.fixture(scope="module")
def vocabulary():
    return load_catalog(default_thresholds_dir() / "items", ["yubei-2023.yaml"]).vocabulary


def ct(description: str = "Abdomen 5mm", **tags: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1719.1"
    ds.SeriesDescription = description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = 5.0
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("B30f", KernelClass.SOFT_TISSUE),
        (["Br40d", "3"], KernelClass.SOFT_TISSUE),  # Siemens ADMIRE: kernel, then strength
        ("Bv40", KernelClass.SOFT_TISSUE),
        ("I30f\\3", KernelClass.SOFT_TISSUE),
        ("Qr40", KernelClass.SOFT_TISSUE),
        ("H31s", KernelClass.BRAIN),
        ("Hr38", KernelClass.BRAIN),
        ("H70h", KernelClass.BONE),
        ("Br64", KernelClass.BONE),
        ("Bl57", KernelClass.LUNG),
        ("B70f", KernelClass.OTHER),  # very sharp body kernel: lung or bone, not told by the name
        ("STANDARD", KernelClass.SOFT_TISSUE),
        ("SOFT", KernelClass.SOFT_TISSUE),
        ("BONE", KernelClass.BONE),
        ("BONEPLUS", KernelClass.BONE),
        ("LUNG", KernelClass.LUNG),
        ("HD LUNG", KernelClass.LUNG),
        ("DETAIL", KernelClass.OTHER),
        ("B", KernelClass.SOFT_TISSUE),
        ("C", KernelClass.SOFT_TISSUE),
        ("D", KernelClass.OTHER),
        ("L", KernelClass.LUNG),
        ("YA", KernelClass.OTHER),
        ("UB", KernelClass.BRAIN),
        ("FC08", KernelClass.SOFT_TISSUE),
        ("FC26", KernelClass.BRAIN),
        ("FC30", KernelClass.BONE),
        ("FC52", KernelClass.LUNG),
        ("FC86", KernelClass.OTHER),
        ("B_SOFT_B", KernelClass.SOFT_TISSUE),
        ("B_SHARP_C", KernelClass.OTHER),
        ("H_SOFT_A", KernelClass.BRAIN),
        ("B_LUNG_A", KernelClass.LUNG),
        ("XYZ123", KernelClass.UNKNOWN),
        (None, KernelClass.UNKNOWN),
    ],
)
def test_kernel_class(vocabulary, kernel, expected):
    found, reason = kernel_class(kernel, vocabulary)
    assert found is expected
    assert ("not in the kernel table" in reason) == (expected is KernelClass.UNKNOWN and kernel is not None)


@pytest.mark.parametrize(
    "value",
    ["", "ANONYMIZED", "anonymised", "REMOVED", "DELETED", "XXX", "XXXX", "***", "NONE", "None", "N/A", "0", " 无 "],
)
def test_placeholder_agents_are_no_contrast(vocabulary, value):
    ds = ct(ContrastBolusAgent=value)
    assert contrast_agent(ds, vocabulary) is None
    assert is_post_contrast(ds, vocabulary) is False


def test_a_real_agent_and_the_agent_sequences_are_contrast(vocabulary):
    assert (
        contrast_agent(ct(ContrastBolusAgent="Iohexol 350"), vocabulary)
        == "ContrastBolusAgent (0018,0010) 'Iohexol 350'"
    )
    item = Dataset()
    item.CodeMeaning = "Iopromide"
    seq = ct(ContrastBolusAgentSequence=Sequence([item]))
    assert contrast_agent(seq, vocabulary) == "ContrastBolusAgentSequence (0018,0012) Iopromide"
    usage = Dataset()
    usage.ContrastBolusAgentAdministered = "YES"
    group = Dataset()
    group.ContrastBolusUsageSequence = Sequence([usage])
    enhanced = ct(SharedFunctionalGroupsSequence=Sequence([group]))
    assert contrast_agent(enhanced, vocabulary) is not None
    assert is_post_contrast(ct(ContrastBolusAgent="Iohexol"), vocabulary) is True


def test_describe_a_named_arterial_series(vocabulary):
    datasets = [
        ct(
            "Liver arterial 1mm",
            ContrastBolusAgent="Iohexol",
            ConvolutionKernel="B30f",
            SliceThickness=1.0,
            AcquisitionTime=f"10113{i}.5",
        )
        for i in range(3)
    ]
    role = describe_ct_series(datasets, vocabulary)
    assert isinstance(role, CTSeriesRole)
    assert role.phase is CTPhase.ARTERIAL
    assert role.kernel_class is KernelClass.SOFT_TISSUE and role.slice_mm == 1.0
    assert role.acquisition == "AcquisitionTime 10:11:30.5-10:11:32.5"
    assert any("arterial" in e for e in role.evidence) and any("B30f" in e for e in role.evidence)


def test_describe_phase_from_the_bolus_delay(vocabulary):
    role = describe_ct_series(
        [ct("C+", ContrastBolusAgent="Iohexol", AcquisitionTime="101130", ContrastBolusStartTime="101100")], vocabulary
    )
    assert role.phase is CTPhase.ARTERIAL
    assert any("30 s after" in e for e in role.evidence)
    late = describe_ct_series(
        [ct("C+", ContrastBolusAgent="Iohexol", AcquisitionTime="101150", ContrastBolusStartTime="101100")], vocabulary
    )
    assert late.phase is CTPhase.POST_CONTRAST  # 50 s: between the arterial and portal windows
    assert any("no phase window" in e for e in late.evidence)


@pytest.mark.parametrize(
    ("description", "tags", "phase"),
    [
        ("Head 5mm", {}, CTPhase.PLAIN),
        ("Head 5mm", {"ContrastBolusAgent": "ANONYMIZED"}, CTPhase.PLAIN),
        ("Head 5mm 平扫", {"ContrastBolusAgent": "Iohexol"}, CTPhase.PLAIN),
        ("Head 5mm", {"ContrastBolusAgent": "Iohexol"}, CTPhase.POST_CONTRAST),
        ("头颅增强", {}, CTPhase.POST_CONTRAST),
        ("门静脉期", {}, CTPhase.PORTAL),
        ("静脉期", {}, CTPhase.VENOUS),
        ("Abdomen portal venous", {}, CTPhase.PORTAL),
        ("延迟期 3min", {}, CTPhase.DELAYED),
        ("Topogram", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, CTPhase.LOCALIZER),
    ],
)
def test_describe_phase(vocabulary, description, tags, phase):
    role = describe_ct_series([ct(description, **tags)], vocabulary)
    assert role.phase is phase, role.evidence


def test_describe_is_frozen_and_reads_no_times_as_unknown(vocabulary):
    role = describe_ct_series([ct("C+", ContrastBolusAgent="Iohexol")], vocabulary)
    assert role.acquisition == "unknown" and role.kernel_class is KernelClass.UNKNOWN
    with pytest.raises(AttributeError, match="phase"):
        role.phase = CTPhase.PLAIN  # type: ignore[misc]


def test_describe_refuses_an_empty_series(vocabulary):
    with pytest.raises(ValueError, match="no datasets"):
        describe_ct_series([], vocabulary)


def test_golden_pydicom_ct_small(vocabulary):
    """pydicom's bundled CT_small.dcm (GE): ConvolutionKernel STANDARD, ContrastBolusAgent
    ISOVUE300/100, AcquisitionTime 112936, SliceThickness 5, no phase word, no bolus start time."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    role = describe_ct_series([ds], vocabulary)
    assert role.phase is CTPhase.POST_CONTRAST
    assert role.kernel_class is KernelClass.SOFT_TISSUE and role.kernel == "STANDARD"
    assert role.slice_mm == 5.0 and role.acquisition_number == 2
    assert role.acquisition == "AcquisitionTime 11:29:36.0-11:29:36.0"
    assert "ContrastBolusAgent (0018,0010) 'ISOVUE300/100'" in role.evidence


def test_garbled_values_are_read_as_absent(vocabulary):
    """Unreadable times, numbers and thickness: no crash, nothing invented from them."""
    ds = ct("C+", ContrastBolusAgent="Iohexol", AcquisitionTime="25:99:00", ContrastBolusStartTime="abc")
    for tag, vr, value in ((0x00180050, "DS", b"abc"), (0x00200012, "IS", b"x1"), (0x00181210, "SH", b"\xff\xfe")):
        ds[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, True, True)  # as read from a file
    with warnings.catch_warnings():  # pydicom may warn about the invalid DS/IS values it keeps as text
        warnings.simplefilter("ignore")
        role = describe_ct_series([ds], vocabulary)
    assert role.phase is CTPhase.POST_CONTRAST
    assert (role.slice_mm, role.acquisition_number, role.time_span_s, role.delay_s) == (None, None, None, None)
    assert role.acquisition == "unknown"
