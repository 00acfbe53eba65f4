"""Datasets built from WADO-RS metadata with the bulk data references emptied are the datasets
pydicom builds with a bulk data handler that returns nothing (the headers only), at any depth."""

from __future__ import annotations

import copy

from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filereader import dcmread

from qc_pipeline.sources.dicomweb import _bulk_data_emptied


def _metadata(name: str) -> dict:
    ds = dcmread(get_testdata_file(name))
    # every binary value of 16 bytes or more becomes a bulk data reference, as servers write them
    return ds.to_json_dict(bulk_data_threshold=16, bulk_data_element_handler=lambda _e: "http://server/bulk")


def _references(obj: dict) -> int:
    """Bulk data references in a metadata object, those in sequence items included."""
    count = 0
    for element in obj.values():
        if "BulkDataURI" in element:
            count += 1
        elif element.get("vr") == "SQ":
            count += sum(_references(item) for item in element.get("Value", []))
    return count


def test_emptied_bulk_data_builds_the_datasets_an_empty_handler_builds():
    references = 0
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "emri_small.dcm"):
        obj = _metadata(name)
        references += _references(obj)
        before = copy.deepcopy(obj)
        with_handler = Dataset.from_json(obj, bulk_data_uri_handler=lambda *_: b"")
        emptied = Dataset.from_json(_bulk_data_emptied(obj))
        assert emptied == with_handler, name
        assert obj == before, f"{name}: the server's metadata object was changed"
    assert references > 4  # pixel data and other binary values, some inside sequences


def test_bulk_data_in_a_sequence_item_is_emptied_too():
    obj = {
        "00081140": {"vr": "SQ", "Value": [{"00290010": {"vr": "OB", "BulkDataURI": "http://server/bulk/1"}}]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "http://server/bulk/2"},
        "00100020": {"vr": "LO", "Value": ["P1"]},
    }
    emptied = _bulk_data_emptied(obj)
    assert emptied["7FE00010"] == {"vr": "OW", "InlineBinary": ""}
    assert emptied["00081140"]["Value"][0]["00290010"] == {"vr": "OB", "InlineBinary": ""}
    assert emptied["00100020"] is obj["00100020"]
    ds = Dataset.from_json(emptied)
    assert ds.PixelData == b"" and ds.PatientID == "P1"
