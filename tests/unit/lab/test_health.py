"""lab.health's judges and ``kubelab up``'s wait for healthy components (no root, no lab)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lab import health, labcmd, state, statuscmd, supervisor
from lab.health import Health, judge_http, judge_lease, judge_node


def test_judge_http() -> None:
    ok = json.dumps({"lastUpdated": "x", "currentTime": "x", "nodeEligible": True, "lastError": ""})
    assert judge_http((200, ok, ""), "proxy") == (True, "", False)
    # kube-proxy answers 200 during its first 2 x sync period: the error still counts.
    nft = 'sync failed: exec: "nft": executable file not found in $PATH (install the nftables package)'
    failing = json.dumps({"lastUpdated": "x", "currentTime": "x", "nodeEligible": True, "lastError": nft})
    assert judge_http((200, failing, ""), "proxy") == (False, nft, True)
    assert judge_http((503, failing, ""), "proxy") == (False, nft, True)
    assert judge_http((None, "", "connection refused"), "proxy") == (
        False,
        "proxy not answering: connection refused",
        False,
    )
    assert judge_http((200, "ok", ""), "kubelet") == (True, "", False)
    assert judge_http((200, '{"health":"false","reason":"RAFT NO LEADER"}', ""), "etcd")[1] == "RAFT NO LEADER"


def test_judge_node() -> None:
    def node(status: str, message: str) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": "Ready", "status": status, "message": message}]}}

    assert judge_node(node("True", "kubelet is posting ready status")) == (True, "", False)
    starting = (
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
        "message:Network plugin returns error: cni plugin not initialized"
    )
    assert judge_node(node("False", starting))[2] is False  # every node says this while starting
    broken = "container runtime not ready: RuntimeReady=false reason:RuntimeNotReady message:exec: ..."
    assert judge_node(node("False", broken)) == (False, f"Node not Ready: {broken}", True)
    assert judge_node(None)[0] is False


def test_judge_lease() -> None:
    lease = {"spec": {"renewTime": "2026-01-01T00:00:00.000000Z", "leaseDurationSeconds": 15}}
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    assert judge_lease(lease, "kube-scheduler", t0 + 10)[0]
    ok, err, own = judge_lease(lease, "kube-scheduler", t0 + 60)
    assert not ok and own and "not renewed for 60s" in err
    assert judge_lease(None, "kube-scheduler", t0)[0] is False


def test_up_fails_with_the_components_own_error_and_log(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    err = 'sync failed: exec: "nft": executable file not found in $PATH (install the nftables package)'
    monkeypatch.setattr(
        labcmd,
        "component_health",
        lambda: [
            Health("kl-cp", "controlplane", True),
            Health("kl-node1", "proxy", False, err, own=True, log="/var/log/kubelab/kl-node1/proxy.log"),
        ],
    )
    with pytest.raises(labcmd.LabError) as info:
        labcmd.wait_healthy(120)
    text = str(info.value)
    assert now[0] == pytest.approx(health.OWN_ERROR_GRACE, abs=1.5)  # early, not at the deadline
    assert "proxy on kl-node1: " + err in text and "log: /var/log/kubelab/kl-node1/proxy.log" in text


def test_up_waits_while_components_start(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda s: now.__setitem__(0, now[0] + s))

    def states() -> list[Health]:
        if now[0] < 5:
            return [Health("kl-node1", "proxy", False, "proxy not answering: connection refused")]
        return [Health("kl-node1", "proxy", True)]

    monkeypatch.setattr(labcmd, "component_health", states)
    assert labcmd.wait_healthy(120)[0].healthy and now[0] == 5


def test_status_shows_each_components_health_and_last_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = 'exec: "nft": executable file not found in $PATH (install the nftables package)'
    comps = [
        {"node": "kl-cp", "name": "controlplane", "pid": 10, "wanted": True, "restarts": 0, "log": "/l/cp.log"},
        {"node": "kl-node1", "name": "proxy", "pid": 11, "wanted": True, "restarts": 0, "log": "/l/proxy.log"},
        {"node": "kl-node1", "name": "noded", "pid": None, "wanted": False, "restarts": 0, "log": "/l/noded.log"},
    ]
    monkeypatch.setattr(state, "read_plan", lambda: {"workers": ["kl-node1"], "store": "sqlite", "cni": "kubelab"})
    monkeypatch.setattr(supervisor, "request", lambda *a, **k: {"ok": True, "pid": 1, "components": comps})
    monkeypatch.setattr(statuscmd, "api", lambda *a, **k: {"items": []})
    monkeypatch.setattr(statuscmd, "lab_cluster", lambda plan: None)
    monkeypatch.setattr(
        health,
        "check",
        lambda c, cl: [
            Health("kl-cp", "controlplane", True, log="/l/cp.log"),
            Health("kl-node1", "proxy", False, err, own=True, log="/l/proxy.log"),
            Health("kl-node1", "noded", True, log="/l/noded.log", stopped=True),
        ],
    )
    assert statuscmd.cmd_status(None) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line.split()[4] for line in out.splitlines() if line.startswith("kl-")}
    assert rows[("kl-cp", "controlplane")] == "healthy"
    assert rows[("kl-node1", "proxy")] == "UNHEALTHY"
    assert rows[("kl-node1", "noded")] == "stopped"
    assert f"proxy on kl-node1: {err}" in out and "log: /l/proxy.log" in out
