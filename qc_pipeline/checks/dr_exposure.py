"""Vendor exposure indicators of radiographs: which tag holds which indicator, and its judgement.

Radiographs without the IEC 62494-1 tags still carry their vendor's own exposure indicator
(Carestream/Kodak EI, Fuji/Konica S, Agfa lgM, Siemens EXI, Philips EI_s, ...). Which
manufacturer writes which indicator in which tag, its relation to exposure and its target are
policy, in ``thresholds/dr_exposure/vendor_indicators.yaml``; this module reads that table and a
header into a :class:`qc_pipeline.metrics.dr.VendorIndicator`, and judges an indicator that has
no published conversion to a deviation index against its vendor range.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from qc_pipeline.domain import Finding, Measurement
from qc_pipeline.errors import ConfigError
from qc_pipeline.io.dicom import text
from qc_pipeline.io.geometry import as_floats
from qc_pipeline.metrics.dr import VendorIndicator
from qc_pipeline.rules.loader import Thresholds, format_validation_error, read_yaml

logger = logging.getLogger(__name__)

TABLE_PATH: Final = Path("dr_exposure") / "vendor_indicators.yaml"
"""The vendor table, relative to the thresholds folder (a subfolder: the rule loader reads only the top level)."""
OUTSIDE_VENDOR_RANGE: Final = "image_quality.dr.vendor_exposure_outside_range.review"
RULE_IDS: Final = frozenset({OUTSIDE_VENDOR_RANGE})
_HEX_TAG: Final = re.compile(r"^\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?$")


class IndicatorRow(BaseModel):
    """One vendor indicator: where it is written and how it relates to the detector exposure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    manufacturer_words: list[str] = Field(min_length=1)
    """Lower-case words, one of which occurs in Manufacturer (0008,0070)."""
    tag: str
    """A DICOM keyword (``RelativeXRayExposure``) or a tag ``gggg,eeee`` (private tags too)."""
    unit: str = Field(min_length=1)
    conversion: Literal["proportional", "inverse", "log", "none"]
    target: float | None = None
    per_decade: float | None = Field(default=None, gt=0)
    plausible: tuple[float, float] | None = None
    review_outside: tuple[float, float] | None = None
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _complete(self) -> IndicatorRow:
        if tag_for_keyword(self.tag) is None and not _HEX_TAG.match(self.tag):
            raise ValueError(f"tag {self.tag!r} is neither a DICOM keyword nor 'gggg,eeee'")
        if self.conversion != "none" and (self.target is None or not math.isfinite(self.target)):
            raise ValueError(f"conversion {self.conversion!r} needs a finite 'target'")
        if self.conversion == "log" and self.per_decade is None:
            raise ValueError("conversion 'log' needs 'per_decade' (vendor units per factor 10 of exposure)")
        for name, pair in (("plausible", self.plausible), ("review_outside", self.review_outside)):
            if pair is not None and not pair[0] < pair[1]:
                raise ValueError(f"'{name}' must be [low, high] with low < high, found {list(pair)}")
        if self.review_outside is not None and self.conversion != "none":
            raise ValueError("'review_outside' is for conversion 'none'; converted indicators are judged by their DI")
        if any(w != w.lower() or not w.strip() for w in self.manufacturer_words):
            raise ValueError(f"manufacturer_words must be non-empty lower-case words, found {self.manufacturer_words}")
        return self

    def tag_label(self) -> str:
        number = self.tag_number()
        keyword = keyword_for_tag(number) or "private tag"
        return f"{keyword} ({number.group:04X},{number.element:04X})"

    def tag_number(self) -> BaseTag:
        match = _HEX_TAG.match(self.tag)
        if match:
            return Tag(int(match[1], 16), int(match[2], 16))
        number = tag_for_keyword(self.tag)
        if number is None:  # refused by _complete: only a row built without validation gets here
            raise TypeError(f"tag {self.tag!r} is neither a DICOM keyword nor 'gggg,eeee'")
        return Tag(number)


class IndicatorTable(BaseModel):
    """``thresholds/dr_exposure/vendor_indicators.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    indicators: list[IndicatorRow]


@functools.lru_cache(maxsize=8)
def vendor_table(thresholds_dir: Path) -> IndicatorTable:
    """The vendor table of a thresholds folder; an empty table (and a warning) when it has none.

    Raises ConfigError naming file, key and value when the table is malformed.
    """
    path = Path(thresholds_dir) / TABLE_PATH
    if not path.is_file():
        logger.warning("no vendor exposure indicator table at %s: vendor indicators are not read", path)
        return IndicatorTable(version="absent", indicators=[])
    data = read_yaml(path)
    try:
        return IndicatorTable.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None


def read_indicator(ds: Dataset, table: IndicatorTable) -> VendorIndicator | None:
    """The first indicator of ``table`` whose manufacturer matches and whose tag holds a number."""
    manufacturer = (text(ds, "Manufacturer") or "").lower()
    if not manufacturer:
        return None
    for row in table.indicators:
        if not any(word in manufacturer for word in row.manufacturer_words):
            continue
        element = ds.get(row.tag_number())
        if element is None:
            continue
        value = as_floats(element.value, count=1)
        if value is None:
            continue
        return VendorIndicator(
            name=row.name,
            tag=row.tag_label(),
            value=value[0],
            unit=row.unit,
            conversion=row.conversion,
            target=row.target,
            source=row.source,
            per_decade=row.per_decade,
            plausible=row.plausible,
            review_outside=row.review_outside,
        )
    return None


def range_finding(
    indicator: VendorIndicator | None,
    measurement: Measurement,
    thresholds: Thresholds,
    *,
    label_en: str,
    label_zh: str,
    series_instance_uid: str,
    sop_instance_uid: str | None,
) -> Finding | None:
    """A review finding when an indicator without a DI conversion lies outside its vendor range."""
    if indicator is None or indicator.review_outside is None or measurement.value is None:
        return None
    low, high = indicator.review_outside
    value = measurement.value
    if low <= value <= high:
        return None
    relation_en, relation_zh = ("below", "低于") if value < low else ("above", "高于")
    return thresholds.finding(
        OUTSIDE_VENDOR_RANGE,
        f"{label_en}: vendor exposure indicator {indicator.name} {value:g} ({indicator.tag}) is {relation_en} "
        f"the vendor range {low:g}-{high:g}; it has no published conversion to a deviation index, so a person "
        f"judges the exposure (source: {indicator.source})",
        f"{label_zh}：厂商曝光指示值 {indicator.name} {value:g}（{indicator.tag}）{relation_zh}厂商参考范围 "
        f"{low:g}–{high:g}；该指示值无公开的偏差指数换算方法，需人工判断曝光",
        value=f"{value:g} {indicator.unit}",
        limit=f"{low:g}-{high:g} {indicator.unit}",
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
    )
