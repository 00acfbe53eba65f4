"""The shipped data is package data: found with importlib.resources, overridable by variables."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

import qc_pipeline.resources as resources
from qc_pipeline.ai.registry import DEFAULT_MODELS_DIR, MODELS_DIR_ENV, default_models_dir
from qc_pipeline.errors import ConfigError
from qc_pipeline.resources import MODELS, SHIPPED, THRESHOLDS, shipped_path
from qc_pipeline.rules.loader import THRESHOLDS_ENV, default_thresholds_dir, load_thresholds

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("relative", SHIPPED)
def test_every_shipped_folder_is_found_and_holds_files(relative):
    path = shipped_path(relative)
    assert path.is_absolute() and path.is_dir(), path
    assert any(p.is_file() for p in path.rglob("*")), f"{path} holds no files"


def test_in_a_checkout_the_lookups_are_the_documented_root_folders(monkeypatch):
    """The README, the model cards and the operators name thresholds/ and models/ at the root, and
    training writes there: the package's links lead to them, and the lookups resolve the links."""
    monkeypatch.delenv(THRESHOLDS_ENV, raising=False)
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    assert (ROOT / "qc_pipeline" / THRESHOLDS).is_symlink() and (ROOT / "qc_pipeline" / MODELS).is_symlink()
    assert default_thresholds_dir() == ROOT / "thresholds"
    assert default_models_dir() == DEFAULT_MODELS_DIR == ROOT / "models"
    assert (DEFAULT_MODELS_DIR / "ct_artifacts.onnx").is_file()


def test_the_override_variables_still_win(monkeypatch, tmp_path):
    monkeypatch.setenv(THRESHOLDS_ENV, str(tmp_path / "my-thresholds"))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "my-models"))
    assert default_thresholds_dir() == tmp_path / "my-thresholds"
    assert default_models_dir() == tmp_path / "my-models"
    with pytest.raises(ConfigError, match="my-thresholds"):
        load_thresholds()


def test_a_package_inside_an_archive_is_refused_with_the_way_out(monkeypatch, tmp_path):
    """Loaders need real paths: a zip import is said to be unsupported, not read as empty."""
    archive = tmp_path / "qc.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("qc_pipeline/thresholds/site.yaml", "x: 1\n")
    monkeypatch.setattr(resources, "files", lambda package: zipfile.Path(archive, "qc_pipeline/"))
    with pytest.raises(ConfigError, match=r"thresholds folder is inside an archive .*QC_THRESHOLDS_DIR"):
        shipped_path(THRESHOLDS)
