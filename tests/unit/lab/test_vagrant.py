"""The Vagrantfile is valid and defines the same nodes as the one-machine lab (DESIGN.md §3)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import topology

VAGRANT_DIR = Path(__file__).resolve().parents[3] / "vagrant"
pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (make deps)")


def vagrant(tmp_path: Path, *args: str, workers: int = 2) -> str:
    env = {
        **os.environ,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),  # leave no .vagrant/ behind in the tree
        "VAGRANT_HOME": str(tmp_path / "home"),
        "KUBELAB_WORKERS": str(workers),
    }
    res = subprocess.run(["vagrant", *args], cwd=VAGRANT_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_vagrant_validate_passes(tmp_path: Path) -> None:
    assert "validated successfully" in vagrant(tmp_path, "validate")


@pytest.mark.parametrize("workers", [1, 3])
def test_vms_are_the_one_machine_labs_nodes(tmp_path: Path, workers: int) -> None:
    out = vagrant(tmp_path, "status", "--machine-readable", workers=workers)
    machines = re.findall(r"^\d+,([^,]+),state,", out, flags=re.M)
    assert machines == [n.name for n in topology.plan_lab(workers).nodes]


def test_every_vm_address_is_the_designs() -> None:
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert f'ip: "{topology.CONTROL_PLANE_IP}"' in text
    # workers: 192.168.56.(10 + i), as topology.plan_lab computes
    assert 'ip: "192.168.56.#{10 + i}"' in text
    assert "libvirt__forward_mode: \"none\"" in text and "management_network_mode = \"none\"" in text
