"""The import contracts (.importlinter) hold on the tree and fail when a forbidden import is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("controlplane", "noded", "proxy", "netplugin", "lab")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / ".importlinter"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the contracts (only .py files: what import-linter reads)."""
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed in this environment")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_a_component_importing_lab_breaks_the_contracts(tree: Path) -> None:
    assert lint_imports(tree).returncode == 0
    agent = tree / "noded" / "agent.py"
    agent.write_text(agent.read_text() + "\nfrom lab import state  # noqa\n")
    res = lint_imports(tree)
    assert res.returncode != 0
    assert "components never import lab" in res.stdout and "BROKEN" in res.stdout
    assert "noded.agent -> lab.state" in res.stdout


def test_the_lab_importing_a_component_internal_breaks_the_contracts(tree: Path) -> None:
    labcmd = tree / "lab" / "labcmd.py"
    labcmd.write_text(labcmd.read_text() + "\nfrom netplugin import install  # noqa\n")
    res = lint_imports(tree)
    assert res.returncode != 0
    assert "lab.labcmd -> netplugin.install" in res.stdout
