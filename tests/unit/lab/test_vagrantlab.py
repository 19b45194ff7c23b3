"""lab.vagrantlab: which VM a lab node is, and which of its NICs ``kubelab node stop`` cuts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import vagrantlab

DOMIFLIST = """\
 Interface   Type      Source         Model    MAC
-----------------------------------------------------------
 vnet0       network   kubelab-mgmt   virtio   52:54:00:aa:aa:aa
 vnet1       network   kubelab-lab    virtio   52:54:00:bb:bb:bb
"""


def test_only_the_lab_network_nic_is_cut_never_the_management_one() -> None:
    assert vagrantlab.lab_network_macs(DOMIFLIST) == ["52:54:00:bb:bb:bb"]
    assert vagrantlab.lab_network_macs("") == []


def test_a_node_is_the_vm_vagrant_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    assert vagrantlab.machine("kl-node1") is None
    (tmp_path / "kl-node1" / "libvirt").mkdir(parents=True)
    (tmp_path / "kl-node1" / "libvirt" / "id").write_text("0b7e-uuid\n")
    assert vagrantlab.machine("kl-node1") == ("libvirt", "0b7e-uuid")


def test_only_workers_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    assert vagrantlab.node("stop", "kl-cp") == 1
    assert "only workers" in capsys.readouterr().out
