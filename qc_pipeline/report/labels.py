"""User-facing words of the report, in Chinese and English."""

from __future__ import annotations

from typing import Final

from qc_pipeline.domain import VERDICT_LABELS
from qc_pipeline.labels import CATEGORIES

LANGS: Final = ("zh", "en")

_WORDS: Final[dict[str, tuple[str, str]]] = {
    "all": ("全部机构", "All institutions"),
    "unknown_institution": ("（未填写机构）", "(no institution)"),
    **{verdict: (zh, en) for verdict, (en, zh) in VERDICT_LABELS.items()},
    **CATEGORIES,
    "info": ("提示", "info"),
    # The QC centre evaluates; suspending or cancelling recognition is the health administration's
    # act (DB50/T §(九)): the report concludes and recommends, it does not cancel.
    "qualified": ("评价合格", "evaluation passed"),
    "not_qualified": ("不合格（建议暂停互认）", "failed (suspension of recognition recommended)"),
    "insufficient_data": ("数据不足，未评定", "insufficient data, not evaluated"),
    "pass_rate": ("合格率", "pass rate"),
    "incomplete": ("不完整", "incomplete"),
    "identity": ("身份信息错误", "identity error"),
    "late": ("上传超时", "late upload"),
    "unknown_delay": ("上传时间未知", "upload time unknown"),
    "confirm": ("维持", "confirmed"),
    "override": ("改判", "overturned"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "drift_previous": ("本机构上期", "this institution, previous period"),
    "drift_region": ("全部机构本期", "all institutions, this period"),
    "drift_alarm": ("报警", "alarm"),
    "drift_in_band": ("在控制限内", "in band"),
}


def word(key: str, lang: str) -> str:
    """The label of ``key`` (a verdict, category, outcome...), or ``key`` itself when unknown."""
    pair = _WORDS.get(key)
    if pair is None:
        return key
    return pair[0] if lang == "zh" else pair[1]


def pick(zh: str, en: str, lang: str) -> str:
    return zh if lang == "zh" else en
