"""The catalogue's requirement models refuse what cannot be checked, naming the key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qc_pipeline.catalog.items import (
    KernelTable,
    MRSeriesNames,
    PhasesReq,
    PhaseWindows,
    SequencesReq,
    load_catalog,
    load_lexicon,
)
from qc_pipeline.rules import default_thresholds_dir


def test_named_phases_cannot_exceed_the_minimum():
    with pytest.raises(ValidationError, match=r"'named' lists 2 phases but 'min' is 1"):
        PhasesReq(min=1, named=[["ARTERIAL"], ["PORTAL"]], source="test")
    with pytest.raises(ValidationError, match="an empty group in 'named'"):
        PhasesReq(min=2, named=[[]], source="test")
    with pytest.raises(ValidationError, match="Input should be 'ARTERIAL', 'PORTAL', 'VENOUS' or 'DELAYED'"):
        PhasesReq(min=1, named=[["PORTAL_VENOUS"]], source="test")


def test_sequences_need_required_or_alternatives():
    with pytest.raises(ValidationError, match="sequences needs 'required' or 'alternatives'"):
        SequencesReq(source="test")


def test_kernel_patterns_must_compile():
    with pytest.raises(ValidationError, match=r"ct_kernels.classes.BONE: 'B\[7' is not a regular expression"):
        KernelTable(classes={"BONE": ["B[7"]}, source="test")


def test_mr_series_name_patterns_must_compile_and_name_every_weighting_the_code_ranks():
    shipped = load_lexicon(default_thresholds_dir() / "items").mr_series_names.model_dump()
    broken = {**shipped, "planes": {**shipped["planes"], "CORONAL": "(?:cor"}}
    with pytest.raises(
        ValidationError, match=r"mr_series_names.planes.CORONAL: '\(\?:cor' is not a regular expression"
    ):
        MRSeriesNames.model_validate(broken)
    without_flair = {**shipped, "weightings": {k: v for k, v in shipped["weightings"].items() if k != "FLAIR"}}
    with pytest.raises(ValidationError, match=r"mr_series_names.weightings: no pattern for FLAIR"):
        MRSeriesNames.model_validate(without_flair)
    with pytest.raises(ValidationError, match=r"weightings.T3.\[key\]\n  Input should be 'LOCALIZER'"):
        MRSeriesNames.model_validate({**shipped, "weightings": {**shipped["weightings"], "T3": "t3"}})


def test_phase_windows_must_be_ordered():
    with pytest.raises(ValidationError, match=r"phase window ARTERIAL: \[45, 15\] must have 0 <= from < to"):
        PhaseWindows(seconds={"ARTERIAL": (45, 15)}, source="test")


def test_every_enhanced_ct_item_names_its_phase_requirement_with_a_source():
    catalog = load_catalog(default_thresholds_dir() / "items", ["yubei-2023.yaml"])
    expected = {  # requirements.md, enhanced CT items
        "YB-045": (1, []),
        "YB-046": (1, []),
        "YB-049": (1, []),
        "YB-047": (2, [["ARTERIAL"], ["PORTAL", "VENOUS"]]),
        "YB-048": (2, []),
        "YB-050": (2, []),
        "YB-051": (3, [["ARTERIAL"], ["VENOUS", "PORTAL"], ["DELAYED"]]),
    }
    for code, (minimum, named) in expected.items():
        req = catalog.by_code(code).requires.post_contrast_phases
        assert req is not None and (req.min, req.named) == (minimum, named), code
        assert "requirements.md" in req.source
    plain_items = [i for i in catalog.for_modality("CT") if i.contrast == "plain"]
    assert plain_items and all(i.requires.post_contrast_phases is None for i in plain_items)
