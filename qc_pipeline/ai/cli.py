"""``qc-pipeline models``: list, train and evaluate the ONNX classifiers (bilingual messages)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from qc_pipeline.cli_common import DB_OPTION_HELP
from qc_pipeline.cli_common import fail as _fail
from qc_pipeline.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)


def _models_dir(value: Path | None) -> Path:
    from qc_pipeline.ai.registry import default_models_dir

    return value or default_models_dir()


@click.group("models")
def models() -> None:
    """AI models: list, train, evaluate / AI 模型：列出、训练、评估."""


@models.command("list")
@click.option(
    "--dir",
    "models_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models folder (default: $QC_MODELS_DIR, else the shipped models: models/ in a checkout).",
)
def list_cmd(models_dir: Path | None) -> None:
    """Show the models with their versions and checksums, checked / 列出模型及其版本、校验值."""
    from qc_pipeline.ai.registry import load_registry
    from qc_pipeline.ai.runtime import Scorer

    directory = _models_dir(models_dir)
    try:
        scorer = Scorer(load_registry(directory))
    except ModelError as exc:
        _fail(f"the models cannot be used: {exc}", f"模型不可用：{exc}")
        return
    click.echo(f"模型 / models: {directory}")
    click.echo(f"  {'name 名称':22} {'version 版本':12} {'modality':8} {'kind':8} {'sha256':16}  labels 标签")
    for name, model in scorer.models.items():
        m = model.manifest
        click.echo(f"  {name:22} {m.version:12} {m.modality:8} {m.kind:8} {m.sha256[:16]}  {', '.join(m.labels)}")
    click.echo("全部模型校验通过并可由 onnxruntime 加载 / all models verified (sha256) and loaded by onnxruntime")


_CHECKOUT = Path(__file__).resolve().parents[2]
TRAINED_DIR = (_CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()) / "trained-models"
"""Where ``models train`` writes by default: ``trained-models/<version>/`` at the checkout's root
(ignored by git), or in the working folder for an installed qc-pipeline, so a
training run never replaces the models in use; they are installed by copying them into the
models folder after ``models evaluate`` and after the pins in ``thresholds/ai.yaml`` are updated."""


def train_destination(out_dir: Path | None, version: str, *, force: bool, models_dir: Path | None = None) -> Path:
    """The folder ``models train`` writes to, or ConfigError when writing there would replace
    models: the models folder in use (``models_dir``, default :func:`default_models_dir`), or any
    folder that already holds a model manifest, needs ``force``."""
    from qc_pipeline.ai.registry import default_models_dir
    from qc_pipeline.ai.specs import MODEL_SPECS

    destination = out_dir if out_dir is not None else TRAINED_DIR / version
    if force:
        return destination
    in_use = (models_dir or default_models_dir()).resolve()
    if destination.resolve() == in_use:
        raise ConfigError(
            f"{destination} is the models folder in use: training there would replace the models the rules of "
            "thresholds/ai.yaml were evaluated with; write elsewhere (--out) or pass --force"
        )
    existing = (
        sorted(p.name for p in destination.glob("*.json") if p.stem in MODEL_SPECS) if destination.is_dir() else []
    )
    if existing:
        raise ConfigError(
            f"{destination} already holds models ({', '.join(existing)}): choose another --out or --version, or pass --force"
        )
    return destination


@models.command("train")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the models (default: trained-models/<version>/; never the models folder in use without --force).",
)
@click.option("--force", is_flag=True, help="Write even into the models folder in use or over models already there.")
@click.option("--model", "names", multiple=True, help="Train only this model (repeatable), e.g. ct_artifacts.")
@click.option(
    "--epochs", type=click.IntRange(min=1), help="Epochs of the CNNs (default: DR 7, CT and MR 14; fine-tuning: 6)."
)
@click.option(
    "--n-train",
    type=click.IntRange(min=16),
    help="Training images per CNN (default: DR 2000, CT and MR 8000); fine-tuning: replay images (default 512).",
)
@click.option(
    "--version",
    "version",
    help="Version written into the manifests (default: the recipe version, qc_pipeline.modeltools.training.TrainingConfig.version).",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Radiologists' study decisions (qc-pipeline review export-labels): added to the acceptability models' "
    "training; or per-finding labels (qc-pipeline models export-labels): the artifact model of each labelled "
    "modality is fine-tuned on the site's series (starting from the models in use; needs --db).",
)
@click.option("--db", "db_url", help=DB_OPTION_HELP + " With per-finding --labels: where each study's source is found.")
@click.option(
    "--base",
    "base_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With per-finding --labels: the models folder to fine-tune from (default: $QC_MODELS_DIR, else the shipped models).",
)
def train_cmd(
    out_dir: Path | None,
    force: bool,
    names: tuple[str, ...],
    epochs: int | None,
    n_train: int | None,
    version: str | None,
    labels: Path | None,
    db_url: str | None,
    base_dir: Path | None,
) -> None:
    """Train the models from real and phantom images and export ONNX + manifests / 训练并导出模型.

    Needs the training extra: pip install -e '.[models]' (PyTorch CPU, skl2onnx).
    """
    import dataclasses

    from qc_pipeline.modeltools.training import TrainingConfig

    try:
        destination = train_destination(out_dir, version or TrainingConfig().version, force=force)
    except ConfigError as exc:
        _fail(str(exc), f"拒绝覆盖模型：{exc}")
        return
    try:
        import skl2onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        _fail(
            f"training needs the 'models' extra ({exc.name} is missing): .venv/bin/pip install -e '.[models]'",
            f"训练需要安装 models 依赖（缺少 {exc.name}）：.venv/bin/pip install -e '.[models]'",
        )
    from qc_pipeline.ai.specs import MODEL_SPECS
    from qc_pipeline.modeltools.training import train_all

    unknown = [n for n in names if n not in MODEL_SPECS]
    if unknown:
        _fail(f"unknown model {', '.join(unknown)} (known: {', '.join(MODEL_SPECS)})", f"未知模型 {', '.join(unknown)}")
    from qc_pipeline.modeltools.finetune import is_finding_label_file

    start = time.monotonic()
    if labels is not None and is_finding_label_file(labels):
        _finetune(destination, labels, names, epochs, n_train, version, db_url, base_dir, start)
        return
    config = TrainingConfig()
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"epochs": epochs, "n_train": n_train, "version": version, "labels": labels}.items()
        if v is not None
    }
    config = dataclasses.replace(config, **overrides)
    written = train_all(
        destination,
        config,
        names=names or None,
        progress=lambda message: click.echo(f"[{time.monotonic() - start:6.0f}s] {message}", err=True),
    )
    for path in written:
        click.echo(f"已写入 / written: {path} ({path.with_suffix('.onnx').name})")
    click.echo(
        f"下一步 / next: qc-pipeline models evaluate --dir {destination} --write; to install, copy the models into the "
        "models folder and update the pins and evidence in thresholds/ai.yaml"
    )


def _finetune(
    destination: Path,
    labels: Path,
    names: tuple[str, ...],
    epochs: int | None,
    n_replay: int | None,
    version: str | None,
    db_url: str | None,
    base_dir: Path | None,
    start: float,
) -> None:
    """``models train --labels`` with per-finding labels: fine-tune the artifact models."""
    import dataclasses

    from qc_pipeline.errors import StoreError
    from qc_pipeline.modeltools.finetune import FineTuneConfig, finetune_all, read_label_file, study_sources
    from qc_pipeline.modeltools.training import TrainingConfig
    from qc_pipeline.review.cli import _open_store

    rows = read_label_file(labels).rows
    store = _open_store(db_url, must_exist=True)
    try:
        sources = study_sources(store, {r["study_instance_uid"] for r in rows})
    except StoreError as exc:
        _fail(str(exc), "无法读取结果数据库")
        return
    finally:
        store.close()
    overrides = {k: v for k, v in {"epochs": epochs, "replay": n_replay}.items() if v is not None}
    config = dataclasses.replace(FineTuneConfig(), **overrides)
    try:
        written = finetune_all(
            destination,
            labels,
            sources=sources,
            names=names or None,
            base_dir=base_dir,
            config=config,
            version=version or f"{TrainingConfig().version}+site",
            progress=lambda message: click.echo(f"[{time.monotonic() - start:6.0f}s] {message}", err=True),
        )
    except (ConfigError, ModelError) as exc:
        _fail(str(exc), f"无法微调模型：{exc}")
        return
    if not written:
        _fail(
            f"{labels.name} labels no series of an artifact model's artifacts: nothing was fine-tuned",
            f"{labels.name} 中没有可用于微调伪影模型的标注序列",
        )
    for path in written:
        click.echo(f"已微调 / fine-tuned: {path} ({path.with_suffix('.onnx').name})")
    click.echo(
        f"下一步 / next: judge held-out studies with QC_MODELS_DIR={destination} and compare with qc-pipeline models "
        "validate; to install, copy the models into the models folder and update the pins and evidence in thresholds/ai.yaml"
    )


def _evaluation_options(command: Any) -> Any:
    """The models and thresholds folders an evaluation command reads (--dir, --thresholds)."""
    command = click.option(
        "--thresholds",
        "thresholds_dir",
        type=click.Path(file_okay=False),
        help="Thresholds folder (default: the shipped thresholds/).",
    )(command)
    return click.option(
        "--dir",
        "models_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Models folder (default: $QC_MODELS_DIR, else the shipped models: models/ in a checkout).",
    )(command)


def _evaluation_inputs(directory: Path, thresholds_dir: str | None) -> tuple[Any, Any]:
    """The scorer of ``directory`` and the thresholds, or the command stops saying why."""
    from qc_pipeline.ai.runtime import Scorer
    from qc_pipeline.pipeline import load_pipeline_thresholds

    try:
        return Scorer.load(directory), load_pipeline_thresholds(thresholds_dir)
    except (ModelError, ConfigError) as exc:
        _fail(str(exc), f"无法评估：{exc}")


@models.command("evaluate")
@_evaluation_options
@click.option("--write", is_flag=True, help="Write models/evaluation.json and the results tables of the model cards.")
def evaluate_cmd(models_dir: Path | None, thresholds_dir: str | None, write: bool) -> None:
    """Held-out evaluation through onnxruntime; prints the model cards' tables / 留出集评估."""
    from qc_pipeline.modeltools.evaluation import evaluate, markdown_table, write_results

    directory = _models_dir(models_dir)
    scorer, thresholds = _evaluation_inputs(directory, thresholds_dir)
    start = time.monotonic()
    results = evaluate(
        scorer, thresholds, progress=lambda m: click.echo(f"[{time.monotonic() - start:6.0f}s] {m}", err=True)
    )
    click.echo(markdown_table(results))
    if write:
        for path in write_results(results, directory):
            click.echo(f"已写入 / written: {path}")


@models.command("evaluate-torchio")
@_evaluation_options
@click.option("--n", "n", type=click.IntRange(min=8), default=120, show_default=True, help="Crops per case.")
@click.option("--write", is_flag=True, help="Write evaluation_torchio.json into the models folder.")
def evaluate_torchio_cmd(models_dir: Path | None, thresholds_dir: str | None, n: int, write: bool) -> None:
    """The MR artifact model on held-out real images with TorchIO's faults (a second simulator) / 第二模拟器评估.

    Needs the training extra: pip install -e '.[models]' (PyTorch, TorchIO).
    """
    try:
        import torchio  # noqa: F401
    except ImportError:
        _fail(
            "this evaluation needs the 'models' extra (torchio is missing): .venv/bin/pip install -e '.[models]'",
            "此评估需要安装 models 依赖（缺少 torchio）：.venv/bin/pip install -e '.[models]'",
        )
    from qc_pipeline.modeltools.external import evaluate_torchio, markdown

    directory = _models_dir(models_dir)
    scorer, thresholds = _evaluation_inputs(directory, thresholds_dir)
    results = evaluate_torchio(scorer, thresholds, n=n)
    click.echo(markdown(results))
    if write:
        out = directory / "evaluation_torchio.json"
        out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"已写入 / written: {out}")


@models.command("export-labels")
@click.option("--db", "db_url", help="Results database URL (default: $QC_DB_URL, else the local SQLite file).")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write."
)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Thresholds folder with evaluation/finding_review.yaml (default: the shipped thresholds/).",
)
def export_labels_cmd(db_url: str | None, out_path: Path, thresholds_dir: Path | None) -> None:
    """Write reviewers' per-finding judgements as per-series labels with provenance
    (format: qc_pipeline.review.finding_labels) / 导出医师对各质控发现的判断（逐序列标注，含来源）."""
    from qc_pipeline.errors import StoreError
    from qc_pipeline.review.cli import _open_store
    from qc_pipeline.review.finding_labels import export_finding_labels
    from qc_pipeline.review.finding_review import load_finding_review

    try:
        config = load_finding_review(thresholds_dir)
    except ConfigError as exc:
        _fail(str(exc), "逐项复核配置无效")
        return
    store = _open_store(db_url, must_exist=True)
    try:
        n = export_finding_labels(store, config, out_path)
    except StoreError as exc:
        _fail(str(exc), "无法读取结果数据库")
        return
    except OSError as exc:
        _fail(f"cannot write {out_path}: {exc.strerror}", f"无法写入 {out_path}")
        return
    finally:
        store.close()
    click.echo(f"逐项标注 / finding labels: {n} → {out_path}")


@models.command("validate")
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Per-finding labels written by `qc-pipeline models export-labels`.",
)
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--dir",
    "models_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models folder: the operating point of a score without a rule in thresholds/ai.yaml (default: $QC_MODELS_DIR, else the shipped models).",
)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Thresholds folder with evaluation/finding_review.yaml (default: the shipped thresholds/).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures as JSON."
)
def validate_cmd(
    labels_path: Path, db_url: str | None, models_dir: Path | None, thresholds_dir: Path | None, json_path: Path | None
) -> None:
    """How good each AI score is at this site, by its radiologists' labels: AUC, PPV of flags,
    false-flag rate and AI-only confirmed catches, with 95 % intervals, per institution
    (qc_pipeline.modeltools.site_validation) / 按本单位医师标注验证 AI 评分."""
    import json

    from qc_pipeline.cli_table import Column, print_table
    from qc_pipeline.modeltools.site_validation import ALL_SITES, table, validate

    config, rows, thresholds, scores, sites, _raw = _site_inputs(labels_path, db_url, models_dir, thresholds_dir)
    figures = validate(rows, scores, sites, thresholds, config.implied_artifact)
    if not figures:
        click.echo(
            "没有可用于验证的标注序列（需要已确认或已排除的发现，或抽查判为无问题的序列，且该序列有AI评分） / "
            "no labelled series to validate with (confirmed or rejected findings, or audited series judged clean, "
            "on series with AI scores)"
        )
    else:
        header, *body = table(figures, lambda s: "全部 all" if s == ALL_SITES else (s or "(未记录 / not recorded)"))
        keys = ["score", "artifact", "site", "counts", "auc", "ppv", "false_flags", "ai_only"]
        columns = [Column(k, h, wrap=k in ("site",)) for k, h in zip(keys, header, strict=True)]
        print_table(
            "AI 评分本单位验证 / AI scores validated by this site's labels",
            columns,
            [dict(zip(keys, r, strict=True)) for r in body],
            steps=[("drop", "artifact"), ("drop", "ai_only")],
        )
    if json_path is not None:
        json_path.write_text(json.dumps([f.as_dict() for f in figures], ensure_ascii=False, indent=1), encoding="utf-8")
        click.echo(f"已写入 / written: {json_path}")


@models.command("calibrate")
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Per-finding labels written by `qc-pipeline models export-labels`.",
)
@click.option("--db", "db_url", help=DB_OPTION_HELP)
@click.option(
    "--false-flag-rate",
    type=click.FloatRange(0.001, 0.5),
    default=0.05,
    show_default=True,
    help="At most this share of clean series flagged: the conformal limit of each score.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of the proposed limits and isotonic calibration (a site thresholds proposal).",
)
@click.option(
    "--dir",
    "models_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models folder whose scores are calibrated (default: $QC_MODELS_DIR, else the shipped models).",
)
@click.option(
    "--thresholds",
    "thresholds_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Thresholds folder with evaluation/finding_review.yaml (default: the shipped thresholds/).",
)
def calibrate_cmd(
    labels_path: Path,
    db_url: str | None,
    false_flag_rate: float,
    out_path: Path,
    models_dir: Path | None,
    thresholds_dir: Path | None,
) -> None:
    """Propose each AI score's limit for this site from its clean labelled series (split conformal:
    at most --false-flag-rate of clean series flagged) and an isotonic calibration; prints false
    flags and catches on the labelled series at the rule's limit (thresholds/ai.yaml) and at the proposed one. Nothing
    is applied: a limit becomes policy when copied into thresholds/ai.yaml and signed off /
    按本单位标注提出 AI 评分限值（保形校准）与等渗校准，不自动生效."""
    import datetime as dt
    import hashlib

    import yaml

    from qc_pipeline.cli_table import Column, print_table
    from qc_pipeline.modeltools.site_validation import _label_of as label_of
    from qc_pipeline.modeltools.site_validation import artifact_of, calibrate, series_labels

    config, rows, limits, scores, _sites, raw = _site_inputs(labels_path, db_url, models_dir, thresholds_dir)
    results = calibrate(rows, scores, limits, config.implied_artifact, false_flag_rate=false_flag_rate)
    labels = series_labels(rows, config.implied_artifact)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    document = {
        "version": f"site-calibration {today}",
        "source": (
            f"[D] proposed by qc-pipeline models calibrate on {today} from {labels_path.name} (sha256 "
            f"{hashlib.sha256(raw).hexdigest()[:16]}), {len(labels)} labelled series; not applied until copied "
            "into thresholds/ai.yaml and signed off"
        ),
        "false_flag_rate": false_flag_rate,
        "scores": [c.as_dict() | {"rule_limit": limits[c.score]} for c in results],
    }
    out_path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def counts(score: str, limit: float | None) -> str:
        if limit is None:
            return "—"
        artifact = artifact_of(score, config.implied_artifact)
        fp = tp = clean = pos = 0
        for key, series in labels.items():
            y, v = label_of(series, artifact), scores.get(key, {}).get(score)
            if y is None or v is None:
                continue
            clean, pos = clean + (y == 0), pos + (y == 1)
            fp, tp = fp + (y == 0 and v > limit), tp + (y == 1 and v > limit)
        return f"{fp}/{clean} · {tp}/{pos}"

    columns = [
        Column("score", "AI评分 score", wrap=False),
        Column("n", "无问题/有问题 clean/pos", wrap=False),
        Column("before", "规则限值 rule limit: 误报·检出 false flags·caught", wrap=False),
        Column("after", "建议限值 proposed: 误报·检出 false flags·caught", wrap=False),
        Column("why", "说明 note"),
    ]
    body = [
        {
            "score": c.score,
            "n": f"{c.clean}/{c.positives}",
            "before": f"{limits[c.score]:.3g}: {counts(c.score, limits[c.score])}",
            "after": "—" if c.threshold is None else f"{c.threshold:.3g}: {counts(c.score, c.threshold)}",
            "why": c.why_none or "",
        }
        for c in results
    ]
    if body:
        print_table(
            f"AI 评分限值校准（误报率 ≤ {false_flag_rate:g}） / AI score limits calibrated (false flags ≤ {false_flag_rate:g})",
            columns,
            body,
            steps=[("drop", "why")],
        )
        click.echo(
            "误报与检出在同一标注集上计算（偏乐观） / false flags and catches are counted on the labelled series "
            "themselves (optimistic)"
        )
    click.echo(
        f"已写入 / written: {out_path}（仅为建议，复制到 thresholds/ai.yaml 并签字后生效 / a proposal: applied only "
        "when copied into thresholds/ai.yaml and signed off)"
    )


def _site_inputs(labels_path: Path, db_url: str | None, models_dir: Path | None, thresholds_dir: Path | None):
    """What ``validate`` and ``calibrate`` read: the finding-review vocabulary, the label rows, each
    score's limit (its rule's in ai.yaml, else its model's), the stored scores and sites of the labelled studies, and the file's bytes."""
    import csv

    from qc_pipeline.ai.registry import load_models
    from qc_pipeline.ai.specs import score_metric
    from qc_pipeline.errors import StoreError
    from qc_pipeline.modeltools.site_validation import stored_scores
    from qc_pipeline.review.cli import _open_store
    from qc_pipeline.review.finding_labels import LABEL_COLUMNS
    from qc_pipeline.review.finding_review import load_finding_review
    from qc_pipeline.rules import load_thresholds

    try:
        config = load_finding_review(thresholds_dir)
        rule_set = load_thresholds(thresholds_dir)
        models, _problems = load_models(_models_dir(models_dir))
    except (ConfigError, ModelError) as exc:
        _fail(str(exc), "配置或模型不可用")
    raw = labels_path.read_bytes()
    with labels_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            _fail(
                f"{labels_path} is not a labels file of `models export-labels`: it lacks {', '.join(missing)}",
                f"{labels_path} 不是 models export-labels 导出的标注文件（缺少列 {', '.join(missing)}）",
                code=2,
            )
        rows = list(reader)
    # The limit of each score: its rule's in thresholds/ai.yaml (what flags once the rule is on;
    # off rules count too), else the model's own operating point from its manifest.
    limits = {
        score_metric(name, label): float(limit)
        for name, model in models.items()
        for label, limit in model.manifest.decision_thresholds.items()
    }
    limits.update(
        {
            rule.metric: float(rule.limit)
            for rule in rule_set.rules.values()
            if rule.metric in limits and rule.when == "above" and rule.limit is not None
        }
    )
    store = _open_store(db_url, must_exist=True)
    try:
        scores, sites = stored_scores(store, (r["study_instance_uid"] for r in rows))
    except StoreError as exc:
        _fail(str(exc), "无法读取结果数据库")
    finally:
        store.close()
    return config, rows, limits, scores, sites, raw
