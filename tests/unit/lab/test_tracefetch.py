"""How ``kubelab trace`` reads a cluster: over the nodes' authenticated debug endpoints, never by
entering a namespace (lab/trace.py ``Lab``, lab/tracefetch.py), and how ``--probe`` reaches VMs.

The cluster here is data served by an ``httpx.MockTransport``: the API server at
https://192.168.56.10:6443, kl-node1 (192.168.56.11) and kl-node2 (192.168.56.12) with their network
agents on :9098; pods client and hello-a on kl-node1 (10.244.1.5, 10.244.1.2), hello-b on kl-node2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.client.kubeconfig import ClientConfig
from controlplane.client.rest import ApiClient
from lab import trace, tracefetch
from noded import names
from tests.unit.lab.test_trace import VIP, objects, save_text

PODS = {  # name → (uid, ip, node)
    "client": ("c1111111", "10.244.1.5", "kl-node1"),
    "hello-a": ("a2222222", "10.244.1.2", "kl-node1"),
    "hello-b": ("b3333333", "10.244.2.2", "kl-node2"),
}
NODES = {"kl-node1": "192.168.56.11", "kl-node2": "192.168.56.12"}


def pod(name: str) -> dict[str, Any]:
    uid, ip, node = PODS[name]
    return {"metadata": {"namespace": "default", "name": name, "uid": uid},
            "spec": {"nodeName": node}, "status": {"podIP": ip}}  # fmt: skip


def network(node: str) -> dict[str, Any]:
    n = node[-1]
    pods = [
        {"netns": names.netns_name("default", name, uid), "veth": f"veth{uid}", "ip": ip, "mac": "0a:58:00:00:00:0" + n}
        for name, (uid, ip, where) in PODS.items()
        if where == node and name != "ghost"  # a pod the API has but its node's agent does not see
    ]
    return {"node": node, "podCIDRs": [f"10.244.{n}.0/24"], "addresses": {"eth0": NODES[node], "cni0": f"10.244.{n}.1"},
            "pods": pods, "iptables": {"command": "iptables-save", "text": save_text()}}  # fmt: skip


class Cluster:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.auth: list[str] = []
        self.timeouts: dict[str, float] = {}  # server → the read timeout its client was given

    def handle(self, request: httpx.Request) -> httpx.Response:
        host, path, q = request.url.host, request.url.path, dict(request.url.params)
        self.requests.append(f"{host}:{request.url.port}{path}")
        self.auth.append(request.headers.get("Authorization", ""))
        if host == "192.168.56.10":
            if path == "/api/v1/nodes":
                items = [{"metadata": {"name": n}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
                         for n, ip in [("kl-cp", "192.168.56.10"), *NODES.items()]]  # fmt: skip
                return httpx.Response(200, json={"items": items})
            if path == "/api/v1/pods":
                return httpx.Response(200, json={"items": [pod(n) for n in PODS]})
            if path.startswith("/api/v1/namespaces/default/pods/"):
                return httpx.Response(200, json=pod(path.rsplit("/", 1)[1]))
            if path == "/api/v1/namespaces/default/services/hello":
                return httpx.Response(200, json=objects([])[0][0])
        node = next((n for n, ip in NODES.items() if ip == host), None)
        if node is not None and request.url.port == trace.NETAGENT_PORT:
            if path == "/debug/network":
                return httpx.Response(200, json=network(node))
            if path == "/debug/network/route":
                to = q["to"]
                query = "ip route get " + " ".join([to, *(f"{k} {q[k]}" for k in ("from", "iif") if k in q)])
                here = to.startswith(f"10.244.{node[-1]}.")
                r = {"dst": to, "dev": "cni0"} if here else {"dst": to, "gateway": "192.168.56.12", "dev": "eth0"}
                return httpx.Response(200, json={"query": query, "routes": [r]})
        return httpx.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound", "message": "no"})


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cluster:
    c = Cluster()
    cfg = ClientConfig(server="https://192.168.56.10:6443", token="admin-token")

    def client(self: trace.Lab, server: str, timeout: float = trace.API_TIMEOUT) -> ApiClient:
        c.timeouts[server] = timeout
        return ApiClient(server, token="admin-token", transport=httpx.MockTransport(c.handle), timeout=timeout)

    monkeypatch.setattr("controlplane.client.kubeconfig.load_kubeconfig", lambda path, context=None: cfg)
    monkeypatch.setattr(trace.Lab, "_client", client)
    monkeypatch.setattr(trace.Lab, "_host_side", lambda self: (("kl0",), "192.168.56.1"))
    return c


def test_a_pod_to_service_trace_is_read_from_the_debug_endpoints_and_runs_no_command(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Any] = []

    def no_command(*args: Any, **kw: Any) -> Any:
        ran.append(args)
        raise AssertionError(f"trace ran a command: {args}")

    monkeypatch.setattr(subprocess, "run", no_command)
    monkeypatch.setattr(subprocess, "Popen", no_command)
    lab = trace.Lab("/nowhere/admin.kubeconfig")
    assert lab.node_ips == {"192.168.56.10": "kl-cp", **{ip: n for n, ip in NODES.items()}}
    src = trace.resolve_source(lab, "pod/client", "default")
    tgt = trace.resolve_target(lab, "svc/hello:80", "default", None)
    f = trace.collect(lab, src, tgt)
    f.sources = list(lab.sources)
    out = trace.render(trace.explain(f))
    assert ran == []
    assert "nat PREROUTING" in out and "DNAT to 10.244.2.2:8080 (pod default/hello-b on kl-node2)" in out
    assert "`ip route get 10.244.2.2 from 10.244.1.5 iif cni0` in kl-node1 → via 192.168.56.12 dev eth0" in out
    assert "over the node network (eth0) to kl-node2" in out and "via vethb3333333" in out
    assert "kl-node1: https://192.168.56.11:9098/debug/network" in out
    assert "https://192.168.56.12:9098/debug/network/route" in out
    # every request carried the kubeconfig's credentials, to the API server or a node's InternalIP
    assert set(cluster.auth) == {"Bearer admin-token"}
    assert {r.split(":")[0] for r in cluster.requests} == {"192.168.56.10", "192.168.56.11", "192.168.56.12"}
    # the nodes' debug endpoints get the long read timeout (they fork tools), the API its usual one
    assert cluster.timeouts["https://192.168.56.11:9098"] == trace.NODE_DEBUG_TIMEOUT > trace.API_TIMEOUT
    assert cluster.timeouts["https://192.168.56.10:6443"] == trace.API_TIMEOUT
    assert VIP in out


def test_a_pod_its_node_does_not_list_is_refused(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = trace.Lab("/nowhere/admin.kubeconfig")
    monkeypatch.setitem(PODS, "ghost", ("d4444444", "10.244.1.9", "kl-node1"))
    with pytest.raises(trace.TraceError, match="network agent lists no netns"):
        trace.resolve_source(lab, "pod/ghost", "default")


def test_a_node_without_its_debug_endpoint_is_a_clear_error(cluster: Cluster) -> None:
    lab = trace.Lab("/nowhere/admin.kubeconfig")
    with pytest.raises(trace.TraceError, match=r"kl-cp's network agent at https://192\.168\.56\.10:9098"):
        lab.network("kl-cp")


def test_the_kubeconfig_is_the_flag_then_the_labs_then_the_vm_labs_then_kubeconfig(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lab import state

    monkeypatch.setattr(state, "read_plan", lambda: {"workers": []})
    assert tracefetch.kubeconfig_path("/x/k") == "/x/k"
    assert tracefetch.kubeconfig_path() == str(state.ADMIN_KUBECONFIG)
    monkeypatch.setattr(state, "read_plan", lambda: None)
    monkeypatch.setattr(tracefetch, "vagrant_lab_present", lambda: True)
    assert tracefetch.kubeconfig_path() == str(tracefetch.KUBECONFIG)
    monkeypatch.setattr(tracefetch, "vagrant_lab_present", lambda: False)
    monkeypatch.setenv("KUBECONFIG", "/k/one:/k/two")
    assert tracefetch.kubeconfig_path() == "/k/one"
    monkeypatch.delenv("KUBECONFIG")
    with pytest.raises(trace.TraceError, match="no lab is up"):
        tracefetch.kubeconfig_path()


# --- --probe on VMs: SSH on the node network --------------------------------------------------------


def test_probe_commands_go_to_the_node_address_as_root_and_nothing_else_is_contacted() -> None:
    argv = tracefetch.ssh_argv(Path("/k/private_key"), "192.168.56.11", ["conntrack", "-L"])
    assert argv[:3] == ["ssh", "-i", "/k/private_key"] and "BatchMode=yes" in argv
    assert argv[-2] == "vagrant@192.168.56.11"
    assert argv[-1] == "sudo -n conntrack -L"
    with pytest.raises(trace.TraceError, match="not on the node network"):
        tracefetch.ssh_argv(Path("/k"), "192.168.121.5", ["true"])  # the management network: never


def test_a_pods_namespace_is_entered_on_its_node_and_the_probe_uses_the_nodes_python() -> None:
    assert tracefetch.on_node("", ["conntrack", "-L"]) == ["conntrack", "-L"]
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


def test_probe_elsewhere_is_refused_with_the_reason(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = trace.Lab("/nowhere/admin.kubeconfig")
    monkeypatch.setattr(tracefetch, "machine_key", lambda node: None)
    netns = names.netns_name("default", "client", "c1111111")
    with pytest.raises(trace.TraceError, match="neither on this host nor on a VM"):
        tracefetch.probe_exec(lab, netns + "-not-here", ["true"], 1.0)
    assert json.dumps(lab.sources)  # only endpoints were read
