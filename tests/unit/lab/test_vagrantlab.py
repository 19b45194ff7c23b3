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


def _vms(machines: Path, *names: str) -> None:
    for n in names:
        (machines / n / "libvirt").mkdir(parents=True)
        (machines / n / "libvirt" / "id").write_text(f"{n}-uuid\n")


@pytest.mark.parametrize("etcd", ["stacked", "external"])
def test_the_plan_follows_the_vms_vagrant_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, etcd: str) -> None:
    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    _vms(tmp_path, "kl-lb", "kl-cp1", "kl-cp2", "kl-cp3", "kl-node1", "kl-node2")
    if etcd == "external":
        _vms(tmp_path, "kl-etcd1", "kl-etcd2", "kl-etcd3")
    plan = vagrantlab._plan()
    assert [n.name for n in plan.nodes] == [n.name for n in vagrantlab.topology.plan_lab(2, 3, etcd).nodes]


def test_ha_control_planes_stop_and_start_the_endpoint_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    _vms(tmp_path, "kl-lb", "kl-cp1", "kl-cp2", "kl-cp3", "kl-node1", "kl-node2")
    cut: list[tuple[str, bool]] = []
    monkeypatch.setattr(vagrantlab, "set_link", lambda name, up: cut.append((name, up)) or f"link {name}")
    monkeypatch.setattr(vagrantlab, "route_via", lambda ip: pytest.fail("the service route stays on kl-node1"))
    assert vagrantlab.node("stop", "kl-lb") == 1
    assert "the API endpoint itself" in capsys.readouterr().out
    assert vagrantlab.node("stop", "kl-cp2") == 0
    assert "Leases move" in capsys.readouterr().out
    assert vagrantlab.node("start", "kl-cp2") == 0
    assert cut == [("kl-cp2", False), ("kl-cp2", True)]


def test_kubelab_etcd_on_the_vm_lab_reaches_every_member_from_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab import etcdcmd

    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    _vms(tmp_path, "kl-lb", "kl-cp1", "kl-cp2", "kl-cp3", "kl-etcd1", "kl-etcd2", "kl-etcd3", "kl-node1")
    argv = etcdcmd.etcdctl_argv(vagrantlab.etcd_plan(vagrantlab._plan()), ["member", "list"])
    assert argv[0] == "etcdctl"  # no namespace to enter: the host is on the lab network
    assert argv[argv.index("--endpoints") + 1] == ",".join(f"https://192.168.56.3{i}:2379" for i in (1, 2, 3))
    assert argv[argv.index("--cert") + 1].endswith("vagrant/.prep/cluster/pki/etcd/healthcheck-client.crt")
    assert argv[-2:] == ["member", "list"]


def test_etcd_is_refused_on_the_single_control_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    _vms(tmp_path, "kl-cp", "kl-node1")
    assert vagrantlab.etcd(["member", "list"]) == 1
    assert "SQLite" in capsys.readouterr().out


def test_status_of_the_ha_vm_lab_shows_haproxy_members_and_leases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    from lab import etcdcmd, trace, tracefetch

    monkeypatch.setattr(vagrantlab, "MACHINES", tmp_path)
    _vms(tmp_path, "kl-lb", "kl-cp1", "kl-cp2", "kl-cp3", "kl-node1")
    for n in ("kl-lb", "kl-cp1", "kl-cp2", "kl-cp3", "kl-node1"):
        (tmp_path / n / "libvirt" / "private_key").write_text("key")

    def no_api() -> None:
        raise trace.TraceError("no answer")

    asked: dict[str, list[str]] = {}

    def fake_run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        ip = next(a.split("@")[1] for a in argv if a.startswith("vagrant@"))
        asked[ip] = argv[-1].split()[4:]  # "sudo -n systemctl is-active UNIT…"
        return subprocess.CompletedProcess(argv, 0, " ".join("active" for _ in asked[ip]), "")

    monkeypatch.setattr(tracefetch, "VagrantLab", no_api)
    monkeypatch.setattr(vagrantlab, "_run", fake_run)
    monkeypatch.setattr(etcdcmd, "_run_json", lambda plan, args: None)  # no etcdctl towards the lab here
    assert vagrantlab.status() == 0
    out = capsys.readouterr().out
    assert asked["192.168.56.10"] == ["haproxy"]
    assert asked["192.168.56.21"] == ["kubelab-etcd", "kubelab-controlplane", "kubelab-dns", "kubelab-metrics-server"]
    assert "kl-lb" in out and "haproxy=active" in out and "kubelab-etcd=active" in out
    assert "ETCD MEMBER" in out and "LEASE (kube-system)" in out and "kube-scheduler" in out
