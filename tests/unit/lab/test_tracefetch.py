"""lab.tracefetch: how ``kubelab trace`` reaches VM nodes (SSH on the node network, pods by nsenter)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab import trace, tracefetch


def test_commands_go_to_the_node_address_as_root_and_nothing_else_is_contacted() -> None:
    argv = tracefetch.ssh_argv(Path("/k/private_key"), "192.168.56.11", ["ip", "-j", "route", "get", "10.244.2.3"])
    assert argv[:3] == ["ssh", "-i", "/k/private_key"] and "BatchMode=yes" in argv
    assert argv[-2] == "vagrant@192.168.56.11"
    assert argv[-1] == "sudo -n ip -j route get 10.244.2.3"
    with pytest.raises(trace.TraceError, match="not on the node network"):
        tracefetch.ssh_argv(Path("/k"), "192.168.121.5", ["true"])  # the management network: never


def test_a_pods_namespace_is_entered_on_its_node_and_the_probe_uses_the_nodes_python() -> None:
    assert tracefetch.on_node("", ["iptables-save"]) == ["iptables-save"]
    pod = tracefetch.on_node("kl-default-c-1234", [sys.executable, "-c", "x"])
    assert pod == ["nsenter", "--net=/var/run/netns/kl-default-c-1234", "--", "python3", "-c", "x"]


def test_the_vm_lab_is_present_only_with_a_machine_key_and_the_admin_kubeconfig(tmp_path: Path) -> None:
    machines = tmp_path / "machines"
    assert tracefetch.machine_key("kl-node1", machines) is None
    (machines / "kl-node1" / "libvirt").mkdir(parents=True)
    (machines / "kl-node1" / "libvirt" / "private_key").write_text("k")
    assert tracefetch.machine_key("kl-node1", machines) is None  # no VM id: destroyed
    (machines / "kl-node1" / "libvirt" / "id").write_text("uuid")
    assert tracefetch.machine_key("kl-node1", machines) == machines / "kl-node1" / "libvirt" / "private_key"


def test_the_namespace_lab_keeps_its_names() -> None:
    # lab.trace's defaults are the one-machine lab's: bridge kl0, node NIC eth0
    assert trace.Lab.host_bridges == ("kl0",)
    assert trace.Lab.nic(object.__new__(trace.Lab), "kl-node1") == "eth0"
