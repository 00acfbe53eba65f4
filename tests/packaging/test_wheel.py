"""`pip install .` (not editable) gives a working qc-pipeline: the wheel carries the thresholds,
the models, the templates and static files and the ``flows`` package, and judges the demo studies
from a folder outside the repository with no QC_* variable set.

The wheel is built from a copy of the sources (nothing is written into the checkout), installed
into a fresh virtual environment without the project; the dependencies come from this
interpreter's site-packages through a ``.pth`` line appended after the venv's own (so the
installed wheel, not the checkout, is what imports).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from qc_pipeline.resources import SHIPPED
from qc_pipeline.samples.demo import demo_cases
from tests.demo_expectations import assert_demo_rows, expected_verdict

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "qc_pipeline", "flows", "thresholds", "models")
"""What the build reads (pyproject's packages, readme and package data)."""
JUDGE_SCRIPT = Path(__file__).with_name("judge_demo_installed.py")
STEP_TIMEOUT_S = 180


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    python: Path
    site_packages: Path
    env: dict[str, str]
    """Without QC_* variables or PYTHONPATH."""


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "dist"), str(src)], cwd=src
    )
    (wheel,) = (base / "dist").glob("qc_pipeline-*.whl")

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "--no-compile", str(wheel)])
    site_packages = Path(
        _run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    dependencies = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "zz-qc-test-dependencies.pth").write_text(
        "".join(f"{p}\n" for p in dependencies), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    return Installed(wheel, venv, python, site_packages, env)


def test_the_wheel_carries_the_data_and_the_flows_package(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    shipped = [
        *(
            ("qc_pipeline/" + p.relative_to(ROOT).as_posix())
            for folder in ("thresholds", "models")
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
        ),
        *(
            p.relative_to(ROOT).as_posix()
            for folder in SHIPPED[2:]
            for p in (ROOT / "qc_pipeline" / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ),
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "flows").glob("*.py")),
    ]
    assert [n for n in shipped if n not in names] == []
    suffixes = collections.Counter(
        Path(n).suffix for n in names if n.startswith(("qc_pipeline/thresholds/", "qc_pipeline/models/"))
    )
    assert suffixes[".yaml"] >= 10 and suffixes[".onnx"] == 6 and suffixes[".json"] >= 6 and suffixes[".md"] >= 6
    assert not any(n.startswith(("tests/", "build/")) for n in names)


def test_a_build_in_the_checkout_leaves_nothing_git_tracks():
    """``pip wheel .`` in the checkout writes build/ and qc_pipeline.egg-info/ there: both are ignored."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "check-ignore", "build/", "qc_pipeline.egg-info/", "dist/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.split() == ["build/", "qc_pipeline.egg-info/", "dist/"]


def test_the_installed_lookups_find_the_wheels_files(installed, tmp_path):
    code = (
        "import json, qc_pipeline, flows; from qc_pipeline.resources import SHIPPED, shipped_path; "
        "print(json.dumps({'modules': [qc_pipeline.__file__, flows.__file__], "
        "'shipped': [str(shipped_path(n)) for n in SHIPPED]}))"
    )
    found = json.loads(_run([str(installed.python), "-I", "-c", code], cwd=tmp_path, env=installed.env).stdout)
    for path in map(Path, [*found["modules"], *found["shipped"]]):
        assert path.is_relative_to(installed.site_packages) and path.exists(), path
        assert not path.is_relative_to(ROOT), path


def test_the_installed_wheel_judges_the_demo_studies(installed, tmp_path):
    """Thresholds, models and migrations from the wheel; every demo case gets the verdict and the
    reasons it was built for."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = work / JUDGE_SCRIPT.name  # beside nothing of the project
    shutil.copy(JUDGE_SCRIPT, script)
    done = _run([str(installed.python), "-I", str(script), str(work / "demo")], cwd=work, env=installed.env)
    report = json.loads(done.stdout)
    site = installed.site_packages
    assert all(Path(p).is_relative_to(site) for p in report["modules"].values()), report["modules"]
    assert Path(report["thresholds"]) == site / "qc_pipeline" / "thresholds"
    assert report["models"] == [
        "ct_acceptability",
        "ct_artifacts",
        "dr_acceptability",
        "dr_artifacts",
        "mr_acceptability",
        "mr_artifacts",
    ]

    cases = demo_cases()
    rows = {r["study_instance_uid"]: r for r in report["results"]}
    assert report["cases"] == len(cases) == len(rows) and set(report["outcomes"]) == {"judged"}
    assert_demo_rows(rows, cases)
    verdicts = collections.Counter(r["verdict"] for r in rows.values())
    assert verdicts == collections.Counter(str(expected_verdict(c)) for c in cases)
    assert verdicts == {"fail": 9, "pass": 6, "not_applicable": 3, "review": 3}


def test_the_installed_command_validates_the_shipped_thresholds(installed, tmp_path):
    done = _run([str(installed.venv / "bin" / "qc-pipeline"), "thresholds"], cwd=tmp_path, env=installed.env)
    assert f"({installed.site_packages / 'qc_pipeline' / 'thresholds'})" in done.stdout.splitlines()[0]
    assert "timeliness" in done.stdout
