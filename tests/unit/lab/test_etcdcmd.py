"""``kubelab etcd`` and the etcd/Lease lines of ``kubelab status`` (lab/etcdcmd.py), without a lab."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from lab import etcdcmd

STATUS = [
    {
        "Endpoint": "http://127.0.0.1:2379",
        "Status": {
            "header": {"cluster_id": 1, "member_id": 13668033151171901709, "revision": 42, "raft_term": 2},
            "version": "3.4.23",
            "dbSize": 2457600,
            "leader": 13668033151171901709,
            "raftTerm": 2,
        },
    },
    {
        "Endpoint": "http://192.168.56.22:2379",
        "Status": {"header": {"member_id": 7, "revision": 42}, "leader": 13668033151171901709, "raftTerm": 2},
    },
]
HEALTH = [
    {"endpoint": "http://127.0.0.1:2379", "health": True, "took": "2ms"},
    {"endpoint": "http://192.168.56.22:2379", "health": True, "took": "2ms"},
    {"endpoint": "http://192.168.56.23:2379", "health": False, "error": "context deadline exceeded"},
]


def test_etcdctl_runs_in_the_control_plane_netns_with_every_endpoint() -> None:
    argv = etcdcmd.etcdctl_argv({"store": "etcd"}, ["member", "list", "-w", "table"])
    assert argv == [
        "nsenter", "--net=/var/run/netns/kl-cp", "--",
        "etcdctl", "--endpoints", "http://127.0.0.1:2379", "member", "list", "-w", "table",
    ]  # fmt: skip
    plan = {
        "store": "etcd",
        "etcd": {
            "endpoints": ["https://192.168.56.21:2379", "https://192.168.56.22:2379"],
            "netns": "",
            "tls": {"ca": "/ca.crt", "cert": "/c.crt", "key": "/c.key"},
        },
    }
    etcdctl_argv = etcdcmd.etcdctl_argv(plan, ["endpoint", "status"])
    assert etcdctl_argv[:3] == ["etcdctl", "--endpoints", "https://192.168.56.21:2379,https://192.168.56.22:2379"]
    assert etcdctl_argv[3:] == ["--cacert", "/ca.crt", "--cert", "/c.crt", "--key", "/c.key", "endpoint", "status"]


def test_member_rows_name_the_leader_and_the_unhealthy_member() -> None:
    rows = etcdcmd.member_rows(STATUS, HEALTH)
    assert [(r[0], r[1].split()[0], r[2]) for r in rows] == [
        ("http://127.0.0.1:2379", "healthy", "leader"),
        ("http://192.168.56.22:2379", "healthy", "follower"),
        ("http://192.168.56.23:2379", "UNHEALTHY", "unknown"),
    ]
    assert "raft term 2" in rows[0][3] and "revision 42" in rows[0][3] and "2.5 MB" in rows[0][3]
    assert "context deadline exceeded" in rows[2][1]


def test_lease_rows_show_each_holder_or_none() -> None:
    def get(path: str) -> dict[str, Any]:
        if path.endswith("/kube-scheduler"):
            return {"spec": {"holderIdentity": "kl-cp_1234", "renewTime": "2026-01-01T00:00:00.000000Z"}}
        raise OSError("404 Not Found")

    assert etcdcmd.lease_rows(get) == [
        ("kube-scheduler", "kl-cp_1234", "2026-01-01T00:00:00.000000Z"),
        ("kube-controller-manager", "(none)", ""),
    ]
    lines = etcdcmd.status_lines({"store": "sqlite"}, get)
    assert not any("ETCD" in line for line in lines)
    assert any("kl-cp_1234" in line for line in lines)


def test_a_sqlite_lab_gets_a_clear_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(etcdcmd.state, "read_plan", lambda: {"store": "sqlite"})
    assert etcdcmd.cmd_etcd(argparse.Namespace(etcdctl_args=["member", "list"])) == 1
    out = capsys.readouterr().out
    assert "store is sqlite, not etcd" in out and "kubelab up --store etcd" in out
