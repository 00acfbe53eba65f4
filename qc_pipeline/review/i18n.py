"""The review app's words in Chinese and English, and the code lists people choose from.

Pages take ``t(key)`` in the session's language (``zh`` by default, ``$QC_LANG`` or the switch
in the page header). Codes (reason codes, flags) are stored in English; only labels are translated.
"""

from __future__ import annotations

from typing import Final

from qc_pipeline import labels
from qc_pipeline.domain import VERDICT_LABELS

LANGS: Final = ("zh", "en")

DECISION_REASONS: Final[dict[str, tuple[str, str]]] = {
    "finding_confirmed": ("The machine's finding is right", "机器发现的问题属实"),
    "finding_not_relevant": ("Finding real but not relevant to diagnosis", "问题属实但不影响诊断"),
    "false_positive": ("False alarm: the images are fine", "误报：图像无此问题"),
    "image_quality_poor": ("Image quality not diagnostic", "图像质量不满足诊断要求"),
    "image_quality_acceptable": ("Image quality acceptable", "图像质量可接受"),
    "incomplete_study": ("Study incomplete for the item", "检查不完整"),
    "wrong_item": ("Wrong recognition item matched", "互认项目匹配错误"),
    "metadata_error": ("Header/identity error", "患者或检查信息错误"),
    "other": ("Other (explain in the text)", "其他（请在说明中写明）"),
}
"""Reason codes of a human decision (label for training: keep codes stable)."""

NEGATIVE_FLAGS: Final[dict[str, tuple[str, str]]] = {
    "emergency": ("Emergency examination", "急诊检查"),
    "forensic": ("Forensic assessment", "司法鉴定"),
    "patient_request": ("Patient request", "患者要求"),
    "clinical_need": ("Clinical need to repeat", "临床需要复查"),
    "other": ("Other (see note)", "其他（见备注）"),
}
"""Labels of the study-level flags set before migration 0011 (readable history only; no longer set:
the negative list of the Yubei plan §4(三) concerns a receiving visit,
``thresholds/evaluation/negative_list.yaml``)."""

VERDICTS: Final = VERDICT_LABELS

CATEGORIES: Final[dict[str, tuple[str, str]]] = {code: (en, zh) for code, (zh, en) in labels.CATEGORIES.items()}
"""Finding categories (English, Chinese), from ``qc_pipeline.labels`` (the one table)."""

AUDIT_EVENTS: Final[dict[str, tuple[str, str]]] = {
    "claim": ("claimed a study", "认领检查"),
    "release": ("released a claim", "释放认领"),
    "decision": ("decided a study", "提交复核结论"),
    "finding": ("judged a finding", "判断质控发现"),
    "flag": ("set a negative-list flag", "设置负面清单标记"),
    "unflag": ("cleared a negative-list flag", "取消负面清单标记"),
    "sign_in": ("signed in", "登录"),
    "sign_in_failed": ("sign-in failed", "登录失败"),
    "sign_in_locked": ("sign-in locked", "登录被锁定"),
    "logout": ("signed out", "退出"),
    "user_created": ("account created", "创建账号"),
    "password_changed": ("password changed", "修改密码"),
    "enabled": ("account enabled", "启用账号"),
    "disabled": ("account disabled", "停用账号"),
}
"""Audit event names (``review_events.event``) as the audit page shows them."""

WORDS: Final[dict[str, tuple[str, str]]] = {
    "app_title": ("Radiologist review", "影像质控人工复核"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "username": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "bad_credentials": ("Wrong user name or password.", "用户名或密码错误。"),
    "queue": ("Review queue", "复核队列"),
    "study": ("Study", "检查"),
    "studies": ("studies", "项检查"),
    "institution": ("Institution", "医院"),
    "modality": ("Modality", "类型"),
    "item": ("Item", "互认项目"),
    "category": ("Finding category", "问题类别"),
    "date_from": ("Study date from", "检查日期自"),
    "date_to": ("to", "至"),
    "verdict": ("Machine verdict", "机器结论"),
    "human_verdict": ("Human decision", "人工结论"),
    "status": ("Status", "状态"),
    "status_pending": ("to review", "待复核"),
    "status_decided": ("decided", "已复核"),
    "status_all": ("all", "全部"),
    "verdict_flagged": ("review + fail", "待复核+不合格"),
    "any": ("any", "全部"),
    "filter": ("Filter", "筛选"),
    "claimed_by": ("Being reviewed by", "复核人"),
    "claim": ("Claim", "认领"),
    "release": ("Release", "释放"),
    "claimed_by_other": ("Another reviewer is working on this study.", "其他医师正在复核此检查。"),
    "you_hold_claim": ("You are reviewing this study", "您正在复核此检查"),
    "until": ("until", "至"),
    "nothing_to_review": ("Nothing to review with these filters.", "当前筛选条件下没有待复核的检查。"),
    "accession": ("Accession", "检查号"),
    "patient": ("Patient", "患者"),
    "study_date": ("Study date", "检查日期"),
    "findings": ("Findings", "质控发现"),
    "severity": ("Severity", "严重程度"),
    "message": ("Message", "说明"),
    "value": ("Value", "数值"),
    "limit": ("Limit", "限值"),
    "metrics": ("Metrics against their limits", "图像质量指标与限值"),
    "metric": ("Metric", "指标"),
    "series": ("Series", "序列"),
    "ai_scores": ("AI scores", "AI 评分"),
    "no_ai_scores": ("No AI scores for this study.", "此检查暂无 AI 评分。"),
    "models": ("Models", "模型"),
    "key_images": ("Key images", "关键图像"),
    "matched_item": ("Matched item and why", "匹配的互认项目及依据"),
    "no_item": ("No recognition item matched.", "未匹配到互认项目。"),
    "viewer": ("Open in the imaging cloud viewer", "在影像云阅片器中打开"),
    "decision": ("Your decision", "复核结论"),
    "decide_pass": ("Pass — offer for recognition", "合格 — 可互认"),
    "decide_fail": ("Fail — not for recognition", "不合格 — 不予互认"),
    "confirms": ("confirms the machine", "确认机器结论"),
    "overrides": ("overrides the machine", "改判机器结论"),
    "reason_code": ("Reason", "理由"),
    "reason_text": ("Explanation", "说明"),
    "save_decision": ("Save decision", "提交复核结论"),
    "eligibility": ("Recognition eligibility", "互认资格"),
    "eligible": ("eligible", "可互认"),
    "not_eligible": ("not eligible", "不可互认"),
    "basis_machine": ("from the machine verdict", "依据机器结论"),
    "basis_human": ("from the human decision", "依据人工复核"),
    "basis_negative": ("negative list", "负面清单"),
    "history": ("Verdict history", "结论历史"),
    "machine": ("machine", "机器"),
    "human": ("human", "人工"),
    "by": ("by", "复核人"),
    "at": ("at", "时间"),
    "stands": ("in force", "有效"),
    "superseded": ("superseded", "已失效"),
    "negative_flags": ("Negative list (earlier study-level flags)", "负面清单（此前的检查级标记）"),
    "no_flags": ("No earlier negative-list flag.", "无此前的负面清单标记。"),
    "set_flag": ("Set flag", "添加标记"),
    "clear_flag": ("Clear", "取消"),
    "note": ("Note", "备注"),
    "flags_admin_only": ("Only QC administrators set negative-list flags.", "仅质控管理员可设置负面清单。"),
    "flags_withdrawn": (
        "Study-level negative-list flags are no longer set: the ten situations of the Yubei plan §4(三) concern a "
        "receiving visit and are recorded by the receiving hospital. Flags set earlier are listed above and do not "
        "withdraw the study.",
        "负面清单（渝北方案第四条第（三）项）的十种情形针对接诊时的复查，由接诊医院就该次就诊记录，不再标记检查本身；"
        "此前的标记仅供查阅，不影响本检查的互认。",
    ),
    "decision_saved": ("Decision saved.", "复核结论已保存。"),
    "flag_saved": ("Negative-list flag saved.", "负面清单已更新。"),
    "not_found": ("No such study.", "未找到该检查。"),
    "forbidden": ("You are not allowed to do this.", "您无权执行此操作。"),
    "csrf_failed": ("The form expired; reload the page and try again.", "表单已过期，请刷新页面后重试。"),
    "image_unavailable": ("Image not available", "无法显示图像"),
    "role_reviewer": ("reviewer", "复核医师"),
    "role_qc_admin": ("QC administrator", "质控管理员"),
    "role_grader": ("spot-check grader", "抽查评分人"),
    "language": ("中文", "English"),
    "marked": ("Marked", "标注"),
    "decided_by": ("Decided by", "复核人"),
    "reviewed_decision": ("reviewed machine decision", "所复核的机器结论"),
    "error": ("Error", "错误"),
    "back_to_queue": ("Back to the queue", "返回队列"),
    "series_roles": ("Series as the pipeline read them", "各序列的识别结果"),
    "series_number": ("No.", "序号"),
    "series_description": ("Series description", "序列描述"),
    "n_images": ("Images", "图像数"),
    "series_role": ("Read as", "识别为"),
    "evidence": ("Why", "依据"),
    "reasons_count": ("reasons", "条依据"),
    "fat_suppressed": ("fat-suppressed", "压脂"),
    "post_contrast": ("post-contrast", "增强"),
    "plane_unknown": ("plane unknown", "方位未知"),
    "kernel": ("kernel", "重建核"),
    "slice": ("slice", "层厚"),
    "view": ("view", "体位"),
    "side": ("side", "侧别"),
    "non_image": (
        "non-image object (report, key images, presentation state)",
        "非图像对象（报告、关键图像、显示状态）",
    ),
    "other_modality": ("no role for this modality", "此类型不识别"),
    "no_accession": ("no accession", "无检查号"),
    "study_level": ("Study", "检查整体"),
    "no_description": ("no description", "无描述"),
    "judged_metrics": ("Judged against a limit", "按限值判定"),
    "other_metrics": ("other measured values, not judged", "其他测量值（未判定）"),
    "no_judged_metrics": ("No value of this series was judged against a limit.", "此序列没有按限值判定的数值。"),
    "mark": ("Mark", "标记"),
    "no_judged_study_metrics": ("No study-level value was judged against a limit.", "没有按限值判定的检查整体数值。"),
    "ai_scores_count": (
        "AI scores (those beyond a limit are among the findings above)",
        "项 AI 评分（超出限值的已列入上方质控发现）",
    ),
    "event": ("Event", "事件"),
    "client": ("Client address", "客户端地址"),
    "detail": ("Detail", "详情"),
    "decided_banner": ("Decided", "已复核"),
    "claimed_by_label": ("Claimed by", "认领人"),
    "decision_blocked": (
        "You cannot decide while another reviewer holds the claim.",
        "其他医师认领期间您不能提交结论。",
    ),
    "finding_review": ("Each finding: is it there?", "逐项判断质控发现"),
    "finding_review_help": (
        "Confirm a finding when you see the problem, reject it when it is a false alarm, and name the artifact you "
        "see. These judgements teach the AI models; they do not decide the study.",
        "看到问题请确认，误报请否认，并选择实际看到的伪影类别。这些判断用于改进 AI 模型，不决定检查结论。",
    ),
    "artifact_seen": ("Artifact seen", "所见伪影"),
    "judge_confirm": ("Confirm", "确认"),
    "judge_reject": ("Reject", "否认"),
    "judged_confirm": ("confirmed", "已确认"),
    "judged_reject": ("rejected", "已否认"),
    "not_judged": ("not judged yet", "尚未判断"),
    "claim_to_judge": ("Claim the study to judge its findings.", "认领后可逐项判断质控发现。"),
    "audit_sample": ("audit sample", "抽查"),
    "audit_sample_note": (
        "Audit sample: the machine passed this study; it was drawn at random for a human check. Its verdict stays "
        "pass until you decide.",
        "抽查样本：机器判定合格，随机抽取供人工核查；在您作出结论前仍为合格。",
    ),
    "no_reviewable_findings": ("No review or fail finding to judge.", "没有需要逐项判断的质控发现。"),
    "no_series": (
        "No series recorded for this decision (judged before series were kept).",
        "此结论未记录序列（记录序列之前的结论）。",
    ),
}
"""Key -> (English, Chinese)."""


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "zh" else pair[0]


def translator(lang: str):
    """``t(key)`` for templates: the word in ``lang``; an unknown key shows itself (visible in tests)."""

    def t(key: str) -> str:
        pair = WORDS.get(key)
        return key if pair is None else pick(pair, lang)

    return t


def label(table: dict[str, tuple[str, str]], code: str | None, lang: str) -> str:
    if code is None:
        return "—"
    pair = table.get(code)
    return code if pair is None else pick(pair, lang)
