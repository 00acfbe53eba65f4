"""The inference runtime (``qc_pipeline.ai``) stands apart from training and evaluation
(``qc_pipeline.modeltools``): judging a study loads no training code, no PyTorch and no
scikit-learn, and neither package has an import cycle."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.imports import imported_by

PACKAGES = ("qc_pipeline.ai", "qc_pipeline.modeltools")
NOT_AT_JUDGING = (
    "qc_pipeline.modeltools",
    "torch",
    "sklearn",
    "skl2onnx",
    "onnx",
    "onnxscript",
    "qc_pipeline.samples",
    "tests",  # demo and phantom generators, test harnesses and oracles
)


def _modules(package: str) -> list[str]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return [package] + [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


MODULES = [m for package in PACKAGES for m in _modules(package)]


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(module: str):
    # A cycle between modules that import names from each other fails only for some import
    # orders; importing each module first, alone, tries the order that would fail.
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _imports(module: str, *, deferred: bool) -> set[str]:
    """The qc_pipeline.ai / qc_pipeline.modeltools modules that ``module`` imports: at module level,
    and with ``deferred`` also inside functions (imported when called)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree) if deferred else tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def test_no_import_cycle_in_the_ai_packages():
    # Deferred imports count too: a cycle hidden by an import inside a function is still a cycle.
    graph = {module: _imports(module, deferred=True) for module in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, f"import cycle: {' -> '.join([*path, module, target])}"
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [])


def test_the_runtime_imports_nothing_of_the_training_package():
    # Only the models CLI group imports it, inside the commands that train, evaluate and validate.
    runtime = [m for m in MODULES if m.startswith("qc_pipeline.ai")]
    imported = {(m, t) for m in runtime for t in _imports(m, deferred=m != "qc_pipeline.ai.cli")}
    assert not {(m, t) for m, t in imported if t.startswith("qc_pipeline.modeltools")}


def test_judging_loads_no_training_code_samples_or_test_oracles():
    # What the flow and the checks import at judging time, the command line and the models CLI
    # group (its training commands import qc_pipeline.modeltools when they run).
    code = "\n".join(
        f"import {m}"
        for m in (
            "qc_pipeline.checks.image_quality",
            "qc_pipeline.pipeline",
            "flows.qc_flow",
            "qc_pipeline.cli",
            *(m for m in MODULES if m.startswith("qc_pipeline.ai")),
        )
    )
    loaded = imported_by(code, NOT_AT_JUDGING + tuple(m for m in MODULES if m.startswith("qc_pipeline.modeltools.")))
    assert loaded == []
