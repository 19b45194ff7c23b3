"""The one-machine lab end to end (issue 5's acceptance): `kubelab up`, the demo, failures, `down`.

Each module-scoped lab is brought up once with the real `kubelab up` (as root) and torn down with
`kubelab down` at the end; the teardown asserts the machine is as it was before (namespaces, links,
routes, root iptables, mounts, runc containers, lab processes). Every wait is a poll with a deadline.
Traffic goes only to lab addresses: 192.168.56.0/24, the pod network and the service network, all
inside namespaces the lab made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.wait import wait_for

KUBECONFIG = "/var/lib/kubelab/admin.kubeconfig"


def kubelab(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def kubectl(*args: str, timeout: float = 60, input_text: str | None = None) -> str:
    res = subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, *args],
        capture_output=True, text=True, timeout=timeout, input=input_text, check=False,
    )  # fmt: skip
    assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stderr}{res.stdout}"
    return res.stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def machine_snapshot() -> dict[str, str]:
    """What a lab must leave exactly as it found it."""
    runc_roots = sorted(str(p) for p in Path("/run/kubelab").rglob("runc")) if Path("/run/kubelab").exists() else []
    return {
        "netns": sh("ip", "netns", "list"),
        "links": "\n".join(sorted(line.split()[0] for line in sh("ip", "-br", "link").splitlines())),
        "routes": sh("ip", "route", "show", "table", "all"),
        "iptables-nft": "\n".join(line for line in sh("iptables-nft-save").splitlines() if not line.startswith("#")),
        "iptables-legacy": "\n".join(
            line for line in sh("iptables-legacy-save").splitlines() if not line.startswith("#")
        ),
        "mounts": "\n".join(
            line
            for line in Path("/proc/mounts").read_text().splitlines()
            if "kubelab" in line or "/var/run/netns" in line or "/run/netns" in line
        ),
        "runc": str(runc_roots),
        "state": str(Path("/var/lib/kubelab").exists()),
        # IP reservations (host-local's default place; the lab keeps its own under /var/lib/kubelab)
        "ipam": str(sorted(str(p) for p in Path("/var/lib/cni").rglob("*"))) if Path("/var/lib/cni").exists() else "",
        # the lab's own processes: its supervisor, the components it runs, its registry
        "processes": _our_processes(sh("pgrep", "-af", "lab.supervisor|/var/lib/kubelab")),
    }


def _our_processes(pgrep: str) -> str:
    """pgrep's lines for processes in this mount namespace: the lab's components (nsenter --net only)
    share it; a lab in another root (the clean room's, run beside this suite) does not."""
    ours = os.readlink("/proc/self/ns/mnt")
    keep = []
    for line in pgrep.splitlines():
        try:
            if os.readlink(f"/proc/{line.split()[0]}/ns/mnt") == ours:
                keep.append(line)
        except OSError:  # gone meanwhile
            continue
    return "\n".join(keep)


def http_get(url: str, timeout: float = 3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode().strip())


def lab(*up_args: str) -> Iterator[dict[str, str]]:
    before = machine_snapshot()
    res = kubelab("up", *up_args)
    try:
        assert res.returncode == 0, f"kubelab up failed:\n{res.stdout}\n{res.stderr}"
        yield {"up_output": res.stdout}
    finally:
        down = kubelab("down")
        assert down.returncode == 0, down.stdout + down.stderr
        try:
            wait_for(lambda: machine_snapshot() == before, timeout=30, message="the machine as it was")
        except AssertionError:
            after = machine_snapshot()
            diff = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            raise AssertionError(f"kubelab down left the machine changed: {diff}") from None


@pytest.fixture(scope="module")
def lab2() -> Iterator[dict[str, str]]:
    yield from lab("--workers", "2")


def pods(selector: str = "app=hello") -> list[dict[str, Any]]:
    """The live pods (a pod evicted from an unreachable node stays Terminating until its node answers)."""
    items: list[dict[str, Any]] = kubectl_json("get", "pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(p: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def test_up_reports_every_node_ready_and_where_to_look(lab2: dict[str, str]) -> None:
    out = lab2["up_output"]
    assert "The lab is up" in out and KUBECONFIG in out
    nodes = kubectl_json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["kl-node1", "kl-node2"]
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) for n in nodes)
    # node namespaces have no default route: nothing in the lab can reach the machine's uplink
    for node in ("kl-cp", "kl-node1", "kl-node2"):
        assert "default" not in sh("ip", "-n", node, "route")


def test_up_twice_reports_the_running_lab_and_changes_nothing(lab2: dict[str, str]) -> None:
    before = machine_snapshot()
    res = kubelab("up")
    assert res.returncode == 0 and "already up" in res.stdout
    assert machine_snapshot()["netns"] == before["netns"]


def test_demo_shows_the_vip_across_nodes(lab2: dict[str, str]) -> None:
    res = kubelab("demo", timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    ps = pods()
    assert len(ps) == 3 and all(ready(p) for p in ps)
    assert {p["spec"]["nodeName"] for p in ps} == {"kl-node1", "kl-node2"}
    vip = kubectl_json("get", "service", "hello")["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in ps}
    # from the host: every backend answers, each naming its pod and node
    seen: set[str] = set()

    def all_backends_answered() -> bool:
        answer = http_get(f"http://{vip}/")
        seen.update(n for n in names if n in answer)
        return seen == names

    wait_for(all_backends_answered, timeout=30, interval=0, message="every backend to answer through the VIP")
    # from a pod on one node to the VIP, answered (the demo's exec; here from each node's pod)
    for node in ("kl-node1", "kl-node2"):
        client = next(p["metadata"]["name"] for p in ps if p["spec"]["nodeName"] == node)
        assert "Hello from" in kubectl("exec", client, "--", "wget", "-qO-", f"http://{vip}/")
    # the NodePort on both node addresses
    for ip in ("192.168.56.11", "192.168.56.12"):
        assert "Hello from" in http_get(f"http://{ip}:30080/")


HAIRPIN_SVC = """\
apiVersion: v1
kind: Service
metadata: {name: hairpin}
spec:
  selector: {hairpin: "yes"}
  ports: [{port: 80, targetPort: 8080}]
"""

LOGGER_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: logger}
spec:
  containers:
  - name: main
    image: 192.168.56.1:5000/library/busybox:latest
    command: ["sh", "-c", "echo hello from the logger; echo second line; exec sleep 3600"]
"""


def test_a_pod_reaches_itself_through_its_own_service(lab2: dict[str, str]) -> None:
    target = pods()[0]["metadata"]["name"]
    kubectl("apply", "-f", "-", input_text=HAIRPIN_SVC)
    vip = kubectl_json("get", "service", "hairpin")["spec"]["clusterIP"]

    # no endpoints yet: the proxy's REJECT answers at once ("connection refused", not a hang)
    def refused() -> bool:
        res = subprocess.run(
            ["kubectl", "--kubeconfig", KUBECONFIG, "exec", target, "--", "wget", "-qO-", f"http://{vip}/"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        return res.returncode != 0 and "Connection refused" in res.stderr

    wait_for(refused, timeout=20, message="connection refused from a service without endpoints")
    kubectl("label", "pod", target, "hairpin=yes", "--overwrite")
    # the only endpoint is the client itself: the packet leaves the pod and is DNATed back into it
    wait_for(
        lambda: target in kubectl("exec", target, "--", "wget", "-qO-", f"http://{vip}/"),
        timeout=30, message="the pod's own answer through its service",
    )  # fmt: skip
    kubectl("delete", "service", "hairpin")


def test_logs_and_exec_through_the_api(lab2: dict[str, str]) -> None:
    kubectl("apply", "-f", "-", input_text=LOGGER_POD)
    kubectl("wait", "--for=condition=Ready", "pod/logger", "--timeout=60s")
    wait_for(lambda: "hello from the logger\nsecond line" in kubectl("logs", "logger"), timeout=20,
             message="the container's output through kubectl logs")  # fmt: skip
    assert kubectl("logs", "logger", "--tail=1").strip() == "second line"
    # exec runs in the pod's UTS namespace: the hostname is the pod's name
    assert kubectl("exec", "logger", "--", "hostname").strip() == "logger"
    res = subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, "exec", "logger", "--", "sh", "-c", "exit 3"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 3
    kubectl("delete", "pod", "logger", "--grace-period=1")


DNS_OBJECTS = """\
apiVersion: v1
kind: Service
metadata: {name: dnsweb}
spec:
  selector: {app: dnsweb}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: dnsclient}
spec:
  containers:
  - name: main
    image: 192.168.56.1:5000/library/busybox:latest
    command: ["sleep", "3600"]
"""


def test_cluster_dns_answers_pods_through_the_kube_dns_vip(lab2: dict[str, str]) -> None:
    kube_dns = kubectl_json("get", "service", "kube-dns", "-n", "kube-system")
    assert kube_dns["spec"]["clusterIP"] == "10.96.0.10"
    kubectl("apply", "-f", "-", input_text=DNS_OBJECTS)
    try:
        vip = kubectl_json("get", "service", "dnsweb")["spec"]["clusterIP"]
        kubectl("wait", "--for=condition=Ready", "pod/dnsclient", "--timeout=60s")

        def nslookup(name: str) -> str:
            # busybox's nslookup tries every search domain and exits 1 if any fails: read its output
            res = subprocess.run(
                ["kubectl", "--kubeconfig", KUBECONFIG, "exec", "dnsclient", "--", "nslookup", name],
                capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
            return res.stdout + res.stderr

        # the pod's resolver (10.96.0.10) is DNATed by its node's proxy to the DNS server in kl-cp
        wait_for(
            lambda: f"Address: {vip}" in nslookup("dnsweb.default.svc.cluster.local"),
            timeout=20, message="the service's ClusterIP from the cluster DNS",
        )  # fmt: skip
        # the short name through resolv.conf's search path
        short = nslookup("dnsweb")
        assert "Name:\tdnsweb.default.svc.cluster.local" in short and f"Address: {vip}" in short, short
        assert "NXDOMAIN" in nslookup("nope.default.svc.cluster.local")
        # names outside the cluster are refused, never forwarded off the machine
        assert "REFUSED" in nslookup("example.org")
    finally:
        kubectl("delete", "pod", "dnsclient", "--grace-period=1", "--wait=false")
        kubectl("delete", "service", "dnsweb")


def test_trace_explains_a_pod_to_service_path_and_the_probe_agrees(lab2: dict[str, str]) -> None:
    from proxy.rules import service_chain

    ps = [p for p in pods() if ready(p)]
    client = ps[0]
    node = client["spec"]["nodeName"]
    slices = kubectl_json("get", "endpointslices", "-l", "kubernetes.io/service-name=hello")["items"]
    endpoints = {
        f"{a}:8080": e.get("nodeName", "") for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]
    }
    assert len(endpoints) == 3 and set(endpoints.values()) == {"kl-node1", "kl-node2"}
    res = kubelab("trace", "--from", f"pod/{client['metadata']['name']}", "--to", "svc/hello:80", "--probe", timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert f"on node {node}" in out and "nat PREROUTING" in out
    assert service_chain("KUBE-SVC-", "default/hello:http", "tcp") in out
    for ep, ep_node in endpoints.items():
        assert f"DNAT to {ep}" in out
        if ep_node != node:  # a remote endpoint: the route to the other node, then its bridge
            other_ip = f"192.168.56.1{ep_node.removeprefix('kl-node')}"
            query = f"ip route get {ep.split(':')[0]} from {client['status']['podIP']} iif cni0"
            assert f"{query}` in {node} → via {other_ip} dev eth0" in out
            assert f"then on {ep_node}: `ip route get {ep.split(':')[0]}" in out
    probed = next(line.split()[2] for line in out.splitlines() if "probed endpoint:" in line)
    assert probed in endpoints
    # not a lab address: refused before anything is looked up or sent
    res = kubelab("trace", "--to", "8.8.8.8:53", timeout=30)
    assert res.returncode == 1 and "not a lab address" in res.stderr


NP_CLIENTS = """\
apiVersion: v1
kind: Pod
metadata: {name: np-ok, labels: {access: "true"}}
spec:
  containers: [{name: main, image: 192.168.56.1:5000/library/busybox:latest, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: np-no}
spec:
  containers: [{name: main, image: 192.168.56.1:5000/library/busybox:latest, command: ["sleep", "3600"]}]
"""
NP_POLICIES = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: hello-deny-ingress}
spec:
  podSelector: {matchLabels: {app: hello}}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: hello-allow-access}
spec:
  podSelector: {matchLabels: {app: hello}}
  ingress:
  - from: [{podSelector: {matchLabels: {access: "true"}}}]
    ports: [{port: 8080}]
"""


def test_network_policy_admits_the_labelled_client_and_drops_the_other(lab2: dict[str, str]) -> None:
    kubectl("apply", "-f", "-", input_text=NP_CLIENTS)
    try:
        vip = kubectl_json("get", "service", "hello")["spec"]["clusterIP"]
        kubectl("wait", "--for=condition=Ready", "pod/np-ok", "pod/np-no", "--timeout=60s")

        def answered(client: str) -> bool:
            # busybox-static's `wget -T` crashes: bound the attempt with `timeout` instead
            res = subprocess.run(
                ["kubectl", "--kubeconfig", KUBECONFIG, "exec", client, "--",
                 "timeout", "2", "wget", "-q", "-O", "-", f"http://{vip}/"],
                capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
            return "Hello from" in res.stdout

        assert answered("np-no")  # no policy yet: open
        kubectl("apply", "-f", "-", input_text=NP_POLICIES)
        assert "hello-allow-access   app=hello" in kubectl("get", "networkpolicy")
        # the netagent on every node renders the policy into its KUBELAB-* chains; every hello
        # pod is isolated, so whichever backend the VIP picks, the unlabelled client is dropped
        wait_for(lambda: not answered("np-no"), timeout=15, interval=0, message="np-no dropped by the policy")
        assert all(answered("np-ok") for _ in range(3))  # replies through any backend
        assert "KUBELAB-FIREWALL" in sh("ip", "netns", "exec", "kl-node1", "iptables", "-S", "FORWARD")
        kubectl("delete", "networkpolicy", "hello-deny-ingress", "hello-allow-access")
        wait_for(lambda: answered("np-no"), timeout=15, interval=0, message="np-no answered once the policy is gone")
    finally:
        subprocess.run(
            ["kubectl", "--kubeconfig", KUBECONFIG, "delete", "networkpolicy", "--all", "--wait=false"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        kubectl("delete", "pod", "np-ok", "np-no", "--grace-period=1", "--wait=false")


def test_a_deleted_pod_is_replaced_and_endpoints_and_rules_follow(lab2: dict[str, str]) -> None:
    victim = pods()[0]
    ip = victim["status"]["podIP"]
    kubectl("delete", "pod", victim["metadata"]["name"], "--wait=true")
    wait_for(lambda: len([p for p in pods() if ready(p)]) == 3, timeout=60, message="a replacement pod")

    def gone_everywhere() -> bool:
        slices = kubectl_json("get", "endpointslices", "-l", "kubernetes.io/service-name=hello")["items"]
        addrs = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
        rules = sh("ip", "netns", "exec", "kl-node1", "iptables", "-t", "nat", "-S")
        return ip not in addrs and f"{ip}:" not in rules and len(addrs) == 3

    wait_for(gone_everywhere, timeout=30, message="endpoints and iptables rules to drop the deleted pod")


def test_node_stop_moves_pods_and_node_start_brings_it_back(lab2: dict[str, str]) -> None:
    res = kubelab("node", "stop", "kl-node1")
    assert res.returncode == 0, res.stdout
    wait_for(lambda: not any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in kubectl_json("get", "node", "kl-node1")["status"]["conditions"]
    ), timeout=60, message="kl-node1 NotReady")  # fmt: skip
    wait_for(
        lambda: (ps := pods()) and all(p["spec"].get("nodeName") == "kl-node2" and ready(p) for p in ps)
        and len(ps) == 3,
        timeout=120, message="every hello pod Running on kl-node2",
    )  # fmt: skip
    res = kubelab("node", "start", "kl-node1")
    assert res.returncode == 0, res.stdout
    wait_for(lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in kubectl_json("get", "node", "kl-node1")["status"]["conditions"]
    ), timeout=60, message="kl-node1 Ready again")  # fmt: skip
    # its stale pods (evicted while it was away) are cleaned up on the node itself: no containers left
    wait_for(lambda: node_containers("kl-node1") == [], timeout=90, message="stale pods gone from kl-node1")


def node_containers(node: str) -> list[str]:
    root = f"/var/lib/kubelab/nodes/{node}/noded/runc"
    out = sh("runc", "--root", root, "list", "-q")
    return out.split()


def test_status_names_processes_and_logs(lab2: dict[str, str]) -> None:
    res = kubelab("status")
    assert res.returncode == 0
    for comp in ("controlplane", "noded", "proxy", "netagent", "registry"):
        assert comp in res.stdout
    assert "/var/log/kubelab/kl-node1/noded.log" in res.stdout
    # Every component's own health endpoint says it is healthy (lab/health.py).
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(("host ", "kl-"))]
    health = {f"{r[0]}/{r[1]}": r[4] for r in rows if len(r) >= 6}
    assert {"kl-node1/proxy", "kl-node1/netagent", "kl-node1/noded", "kl-cp/controlplane", "kl-cp/dns"} <= set(health)
    assert set(health.values()) == {"healthy"}, res.stdout


def test_a_killed_noded_is_restarted_not_lost(lab2: dict[str, str]) -> None:
    pid = next(
        line.split()[2] for line in kubelab("status").stdout.splitlines() if "kl-node2" in line and "noded" in line
    )
    os.kill(int(pid), 9)
    wait_for(
        lambda: any("kl-node2" in line and "noded" in line and line.split()[2] not in (pid, "starting")
                    for line in kubelab("status").stdout.splitlines()),
        timeout=30, message="noded restarted by the supervisor",
    )  # fmt: skip
