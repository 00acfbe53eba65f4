"""One place for the people-facing names (Chinese and English) of rules, metrics, categories and
fee schemes, used by the report and the command line instead of their ids."""

from __future__ import annotations

from typing import Final

CATEGORIES: Final[dict[str, tuple[str, str]]] = {
    "metadata": ("患者及检查信息", "patient and exam information"),
    "timeliness": ("及时性", "timeliness"),
    "completeness": ("完整性", "completeness"),
    "continuity": ("连续性", "continuity"),
    "integrity": ("文件完整性", "integrity"),
    "image_quality": ("图像质量", "image quality"),
    "ai": ("AI 评分", "AI"),
    "catalog": ("项目对应", "catalog"),
}

_OUTCOMES: Final[dict[str, tuple[str, str]]] = {
    "review": ("（需复核）", " (review)"),
    "fail": ("（不合格）", " (fail)"),
}

_WORDS: Final[dict[str, tuple[str, str]]] = {
    "dr": ("DR", "DR"),
    "ct": ("CT", "CT"),
    "mr": ("MR", "MR"),
    "missing": ("缺失", "missing"),
    "invalid": ("无效", "invalid"),
    "unknown": ("未知", "unknown"),
    "high": ("偏高", "high"),
    "low": ("偏低", "low"),
    "review": ("需复核", "review"),
    "fail": ("不合格", "fail"),
    "inconsistent": ("不一致", "inconsistent"),
    "duplicate": ("重复", "duplicate"),
    "gap": ("缺号", "gap"),
    "error": ("检查出错", "error"),
    "unavailable": ("不可用", "unavailable"),
    "not_scored": ("未评分", "not scored"),
    "pin_mismatch": ("与评估版本不符", "not the evaluated version"),
    "unmeasurable": ("无法测量", "unmeasurable"),
    "not_applicable": ("不适用", "not applicable"),
    "metric": ("指标", "metric"),
    "indicator": ("指示值", "indicator"),
    "pixels": ("像素数据", "pixel data"),
    "lossy_compression": ("有损压缩", "lossy compression"),
    "not_decoded": ("无法解码", "not decoded"),
    "parallel_imaging": ("并行采集", "parallel imaging"),
    "air_high": ("空气CT值偏高", "air CT number high"),
    "air_low": ("空气CT值偏低", "air CT number low"),
    "soft_tissue_high": ("软组织CT值偏高", "soft-tissue CT number high"),
    "soft_tissue_low": ("软组织CT值偏低", "soft-tissue CT number low"),
    "noise": ("噪声", "noise"),
    "truncation": ("扫描野截断", "truncation"),
    "coverage": ("扫描范围不足", "coverage"),
    "ring": ("环状伪影", "ring artifact"),
    "deviation_index_high": ("偏差指数 DI 偏高", "deviation index DI high"),
    "deviation_index_low": ("偏差指数 DI 偏低", "deviation index DI low"),
    "deviation_index_vendor_high": ("厂商换算偏差指数偏高", "vendor deviation index high"),
    "deviation_index_vendor_low": ("厂商换算偏差指数偏低", "vendor deviation index low"),
    "vendor_exposure_outside_range": ("厂商曝光指示值超出范围", "vendor exposure indicator out of range"),
    "clipped_stored_max": ("像素饱和于最大存储值", "pixels saturated at the stored maximum"),
    "pileup_max": ("像素堆积于图像最大值", "pixels piled at the image maximum"),
    "noise_relative": ("相对噪声偏高", "relative noise high"),
    "burnout_anatomy": ("解剖区域过曝", "anatomy burned out"),
    "snr": ("信噪比偏低", "SNR low"),
    "ghosting": ("鬼影", "ghosting"),
    "wrap": ("卷褶伪影", "wrap-around"),
    "model": ("模型", "model"),
    "score": ("评分", "score"),
    "dr_artifacts": ("DR 伪影", "DR artifacts"),
    "ct_artifacts": ("CT 伪影", "CT artifacts"),
    "mr_artifacts": ("MR 伪影", "MR artifacts"),
    "dr_acceptability": ("DR 可接受性", "DR acceptability"),
    "ct_acceptability": ("CT 可接受性", "CT acceptability"),
    "mr_acceptability": ("MR 可接受性", "MR acceptability"),
    "exposure_fault": ("曝光错误", "exposure fault"),
    "saturation": ("饱和", "saturation"),
    "blur_motion": ("模糊或运动", "blur or motion"),
    "collimation_cutoff": ("照射野切割", "collimation cut-off"),
    "excess_noise": ("噪声过大", "excess noise"),
    "streaks": ("条纹伪影", "streaks"),
    "rings": ("环状伪影", "rings"),
    "motion": ("运动伪影", "motion"),
    "motion_ghosting": ("运动鬼影", "motion ghosting"),
    "wrap_around": ("卷褶伪影", "wrap-around"),
    "nonuniformity": ("不均匀", "non-uniformity"),
    "spike": ("尖峰伪影", "spike (herringbone) artifact"),
    "unacceptable": ("不可接受", "unacceptable"),
    "modality": ("检查类型", "modality"),
    "not_candidate": ("不在互认范围", "not in scope"),
    "no_images": ("无图像", "no images"),
    "item": ("互认项目", "recognition item"),
    "matched": ("已对应", "matched"),
    "unmatched": ("无法对应", "not matched"),
    "ambiguous": ("对应不唯一", "ambiguous"),
    "excluded": ("排除", "excluded"),
    "view_missing": ("缺少体位", "view missing"),
    "view_unknown": ("体位未知", "view unknown"),
    "posture": ("体位姿势", "posture"),
    "plain_missing": ("缺少平扫", "plain scan missing"),
    "post_contrast_missing": ("缺少增强", "post-contrast missing"),
    "phase_missing": ("缺少期相", "phase missing"),
    "phase_unconfirmed": ("期相未确认", "phase unconfirmed"),
    "slice_thickness": ("层厚", "slice thickness"),
    "sequence_missing": ("缺少序列", "sequence missing"),
    "plane_unconfirmed": ("方位未确认", "plane unconfirmed"),
    "protocol_incomplete": ("方案不完整", "protocol incomplete"),
    "planes": ("方位", "planes"),
    "post_contrast_planes": ("增强方位", "post-contrast planes"),
    "report": ("报告", "report"),
    "not_checked": ("未核查", "not checked"),
    "instance_number": ("图像编号", "instance number"),
    "slice": ("层面", "slice"),
    "duplicate_position": ("位置重复", "duplicate position"),
    "orientation": ("方向", "orientation"),
    "pixel_spacing": ("像素间距", "pixel spacing"),
    "matrix": ("矩阵", "matrix"),
    "file": ("文件", "file"),
    "unreadable": ("无法读取", "unreadable"),
    "pixel_data": ("像素数据", "pixel data"),
    "truncated": ("被截断", "truncated"),
    "header": ("文件头", "header"),
    "missing_uid": ("缺少 UID", "UID missing"),
    "uid": ("UID", "UID"),
    "instance": ("图像", "instance"),
    "duplicate_uid": ("UID 重复", "duplicate UID"),
    "series": ("序列", "series"),
    "mixed_modality": ("混合检查类型", "mixed modality"),
    "non_image": ("非图像对象", "non-image object"),
    "skipped": ("已跳过", "skipped"),
    "check": ("检查", "check"),
    "patient_name": ("患者姓名", "patient name"),
    "charset": ("字符集", "character set"),
    "nonstandard": ("不规范", "non-standard"),
    "patient_id": ("患者 ID", "patient ID"),
    "patient_sex": ("患者性别", "patient sex"),
    "patient_birth_date": ("出生日期", "birth date"),
    "missing_age_recorded": ("缺失（已记录年龄）", "missing (age recorded)"),
    "after_study": ("晚于检查日期", "after the study"),
    "implausible": ("不合理", "implausible"),
    "patient_age": ("患者年龄", "patient age"),
    "study_date": ("检查日期", "study date"),
    "future": ("在未来", "in the future"),
    "study_time": ("检查时间", "study time"),
    "timezone_offset": ("时区偏移", "time-zone offset"),
    "accession_number": ("检查号", "accession number"),
    "institution": ("机构名称", "institution"),
    "patient": ("患者信息", "patient"),
    "laterality": ("左右侧", "laterality"),
    "conflict": ("矛盾", "conflict"),
    "conflict_across_studies": ("跨检查矛盾", "conflict across studies"),
    "upload_delay": ("上传延迟", "upload delay"),
    "late": ("超时", "late"),
    "very_late": ("严重超时", "very late"),
    "negative": ("为负", "negative"),
    "upload_delay_h": ("上传延迟", "upload delay"),
}

SEVERITIES: Final[dict[str, tuple[str, str]]] = {
    "info": ("提示", "note"),
    "review": ("需复核", "review"),
    "fail": ("不合格", "fail"),
}
"""A finding's severity as people read it."""

SCHEMES: Final[dict[str, tuple[str, str]]] = {
    "chongqing": ("重庆口径", "Chongqing scheme"),
    "national": ("国家口径", "national scheme"),
}


def pick(zh: str, en: str, lang: str) -> str:
    return zh if lang == "zh" else en


def category_label(category: str, lang: str) -> str:
    zh, en = CATEGORIES.get(category, (category.replace("_", " "),) * 2)
    return pick(zh, en, lang)


def severity_label(severity: str, lang: str) -> str:
    zh, en = SEVERITIES.get(severity, (severity,) * 2)
    return pick(zh, en, lang)


def _word(token: str, lang: str) -> str:
    zh, en = _WORDS.get(token, (token.replace("_", " "),) * 2)
    return pick(zh, en, lang)


def rule_label(rule_id: str, lang: str) -> str:
    """A short name of a rule: its category, then its subject words, then review/fail; never the id."""
    parts = rule_id.split(".")
    outcome = ""
    if len(parts) > 2 and parts[-1] in _OUTCOMES:
        outcome = pick(*_OUTCOMES[parts[-1]], lang)
        parts = parts[:-1]
    head, rest = category_label(parts[0], lang), [_word(t, lang) for t in parts[1:]]
    if lang == "zh":
        return f"{head}：{''.join(rest)}{outcome}" if rest else head
    return f"{head}: {' '.join(rest)}{outcome}" if rest else head


def metric_label(metric: str, lang: str) -> str:
    """The name of a measured metric or AI score; its words, never the dotted id, when unnamed."""
    from qc_pipeline.checks.image_quality import metric_label as names

    pair = names(metric)
    if pair == (metric, metric):
        return rule_label(metric, lang) if "." in metric else _word(metric, lang)
    en, zh = pair
    return pick(zh, en, lang)


def scheme_label(scheme_id: str, lang: str) -> str:
    zh, en = SCHEMES.get(scheme_id, (scheme_id.replace("_", " "),) * 2)
    return pick(zh, en, lang)
