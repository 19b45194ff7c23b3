"""A two-node lab built from namespaces for the proxy's privileged tests.

Topology (every namespace made by the ``netns`` fixture, safety routes held; nothing in the root
namespace):

    host ns:  bridge kl0 (no address)
      ├─ node1 ns: eth0 192.168.56.11/24, bridge cni0 10.244.1.1/24, route 10.244.2.0/24 via .12
      │     ├─ pod p1a: eth0 10.244.1.2/24 (default via 10.244.1.1)
      │     └─ pod p1b: eth0 10.244.1.3/24
      └─ node2 ns: eth0 192.168.56.12/24, bridge cni0 10.244.2.1/24, route 10.244.1.0/24 via .11
            └─ pod p2a: eth0 10.244.2.2/24

Nodes route 10.96.0.0/12 out of eth0 (standing in for a real node's default route), forward
(ip_forward=1 in their own namespace), call iptables for bridged traffic
(bridge-nf-call-iptables, per namespace), and have hairpin mode on their pods' bridge ports so a
pod can reach itself through a service. Nodes have no default route.

The proxy runs as the real daemon (``python -m proxy``) inside a node namespace, reading its
objects from a file the test rewrites (``--objects-file``), with the backend under test:
``iptables-restore`` on nf_tables or ``python-iptables`` on the legacy tables. Servers are tiny
stdlib programs (echo.py) killed by pid at teardown (and the netns fixture kills leftovers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import NetnsFactory, sh
from tests.helpers.wait import wait_for

REPO = Path(__file__).resolve().parents[3]
ECHO = str(Path(__file__).with_name("echo.py"))
BACKENDS = {"restore-nft": ("iptables-restore", "nft"), "python-iptables-legacy": ("python-iptables", "legacy")}


class Lab:
    def __init__(self, netns: NetnsFactory, tmp: Path, backend: str) -> None:
        self.tmp = tmp
        self.backend, self.mode = BACKENDS[backend]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.host = netns("host")
        sh("ip", "link", "add", "kl0", "type", "bridge", netns=self.host)
        sh("ip", "link", "set", "kl0", "up", netns=self.host)
        self.nodes: dict[str, str] = {}
        self.node_ip: dict[str, str] = {}
        self.pods: dict[str, str] = {}
        self.pod_ip: dict[str, str] = {}
        for i in (1, 2):
            name = f"node{i}"
            ns = netns(name)
            self.nodes[name], self.node_ip[name] = ns, f"192.168.56.{10 + i}"
            sh("ip", "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns, netns=self.host)
            sh("ip", "link", "set", f"n{i}", "master", "kl0", "up", netns=self.host)
            sh("ip", "addr", "add", f"192.168.56.{10 + i}/24", "dev", "eth0", netns=ns)
            sh("ip", "link", "set", "eth0", "up", netns=ns)
            sh("ip", "link", "add", "cni0", "type", "bridge", netns=ns)
            sh("ip", "addr", "add", f"10.244.{i}.1/24", "dev", "cni0", netns=ns)
            sh("ip", "link", "set", "cni0", "up", netns=ns)
            other = 3 - i
            sh("ip", "route", "add", f"10.244.{other}.0/24", "via", f"192.168.56.{10 + other}", netns=ns)
            # A route covering the service range: on a real node the default route plays this
            # part. Without one, a packet to a VIP that no rule DNATs (a service without
            # endpoints) fails routing ("network unreachable") before filter's REJECT can answer
            # "connection refused". Nothing leaves: every VIP packet is DNAT-ed or rejected first,
            # and eth0 only reaches the host namespace of this test.
            sh("ip", "route", "add", "10.96.0.0/12", "dev", "eth0", netns=ns)
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=ns)
            sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", netns=ns)
        for pod, node, ip in (
            ("p1a", "node1", "10.244.1.2"),
            ("p1b", "node1", "10.244.1.3"),
            ("p2a", "node2", "10.244.2.2"),
        ):
            self.add_pod(netns, pod, node, ip)

    def add_pod(self, netns: NetnsFactory, pod: str, node: str, ip: str) -> None:
        ns, node_ns = netns(pod), self.nodes[node]
        veth = f"v{pod}"
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=node_ns)
        sh("ip", "link", "set", veth, "master", "cni0", "up", netns=node_ns)
        sh("ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on", netns=node_ns)
        sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", netns=ns)
        sh("ip", "link", "set", "eth0", "up", netns=ns)
        sh("ip", "route", "add", "default", "via", ip.rsplit(".", 1)[0] + ".1", netns=ns)
        self.pods[pod], self.pod_ip[pod] = ns, ip

    # --- processes -----------------------------------------------------------------------------
    def spawn(self, ns: str, argv: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        self.procs.append(p)
        return p

    def server(
        self, pod: str, port: int = 8080, proto: str = "tcp", name: str | None = None
    ) -> subprocess.Popen[bytes]:
        ready = self.tmp / f"ready-{pod}-{proto}-{port}"
        p = self.spawn(self.pods[pod], [sys.executable, ECHO, f"{proto}-server", name or pod, str(port), str(ready)])
        wait_for(ready.exists, 10, message=f"{proto} server in {pod}")
        return p

    def tcp(self, pod_or_node: str, host: str, port: int, count: int = 1) -> list[str]:
        ns = self.pods.get(pod_or_node) or self.nodes[pod_or_node]
        return sh(sys.executable, ECHO, "tcp-client", host, str(port), str(count), netns=ns, timeout=60).split("\n")[
            :-1
        ]

    def udp(self, pod: str, host: str, port: int, src: int = 40000) -> str:
        return sh(sys.executable, ECHO, "udp-client", host, str(port), str(src), netns=self.pods[pod]).strip()

    # --- the proxy -----------------------------------------------------------------------------
    def objects_file(self, node: str) -> Path:
        return self.tmp / f"objects-{node}.json"

    def write_objects(self, objs: list[dict[str, Any]], nodes: tuple[str, ...] = ("node1", "node2")) -> None:
        for node in nodes:
            path = self.objects_file(node)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"kind": "List", "items": objs}))
            os.replace(tmp, path)  # atomic: the proxy never reads half a file

    def start_proxy(self, node: str, *extra: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "proxy",
            "--node-name",
            node,
            "--objects-file",
            str(self.objects_file(node)),
            "--backend",
            self.backend,
            "--min-sync-period",
            "0",
            "--sync-period",
            "30s",
            "--metrics-bind",
            "127.0.0.1:10249",
            *extra,
        ]
        return self.spawn(self.nodes[node], argv, log=self.tmp / f"proxy-{node}.log")

    def proxy_log(self, node: str) -> str:
        return (self.tmp / f"proxy-{node}.log").read_text(errors="replace")

    def save(self, node: str, table: str = "nat") -> str:
        return sh(f"iptables-{self.mode}-save", "-t", table, netns=self.nodes[node])

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture(params=sorted(BACKENDS))
def lab(request: pytest.FixtureRequest, netns: NetnsFactory, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(netns, tmp_path, request.param)
    try:
        yield lab
    finally:
        lab.stop()


# --- objects ---------------------------------------------------------------------------------


def service(
    name: str, ip: str, port: int = 80, *, proto: str = "TCP", ns: str = "default", **spec: Any
) -> dict[str, Any]:
    p: dict[str, Any] = {"name": "p", "port": port, "protocol": proto}
    if "node_port" in spec:
        p["nodePort"] = spec.pop("node_port")
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": ip, "ports": [p], **spec},
    }


def slice_(
    svc: str, endpoints: list[tuple[str, str, bool]], port: int = 8080, *, proto: str = "TCP", ns: str = "default"
) -> dict[str, Any]:
    """An EndpointSlice: endpoints are (ip, nodeName, ready)."""
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"namespace": ns, "name": f"{svc}-abc", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": port, "protocol": proto}],
        "endpoints": [
            {"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}} for ip, node, ready in endpoints
        ],
    }
