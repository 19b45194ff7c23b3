"""``kubelab netagent`` against a real API server (memory store) and a real node namespace.

Nodes kl-node1 (192.168.56.11, 10.244.1.0/24) and kl-node2 (192.168.56.12, 10.244.2.0/24); the
agent for kl-node1 runs as a subprocess programming the namespace "n1" (``--netns``), which has a
veth on 192.168.56.0/24 so the gateways are reachable. A foreign route must survive everything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controlplane.api.registry import NODES
from tests.helpers.apiserver import start_apiserver
from tests.helpers.netns import NetnsFactory, sh
from tests.helpers.wait import wait_for


def node(name: str, cidr: str, ip: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def test_agent_follows_nodes(netns: NetnsFactory, tmp_path: Path) -> None:
    n1 = netns("n1")
    sh("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", netns=n1)
    sh("ip", "addr", "add", "192.168.56.11/24", "dev", "eth1", netns=n1)
    sh("ip", "link", "set", "eth1", "up", netns=n1)
    sh("ip", "link", "set", "eth1p", "up", netns=n1)
    sh("ip", "route", "add", "10.244.9.0/24", "via", "192.168.56.99", netns=n1)  # not ours
    srv = start_apiserver(tmp_path)
    agent = None
    try:
        client = srv.client()
        for name, cidr, ip in (
            ("kl-node1", "10.244.1.0/24", "192.168.56.11"),
            ("kl-node2", "10.244.2.0/24", "192.168.56.12"),
        ):
            created = client.create(NODES, node(name, cidr, ip))
            created["status"] = node(name, cidr, ip)["status"]
            client.update_status(NODES, created)
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab.cli",
                "netagent",
                "--node-name",
                "kl-node1",
                "--kubeconfig",
                str(srv.kubeconfig),
                "--netns",
                f"/var/run/netns/{n1}",
                "--resync",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def routes() -> str:
            return sh("ip", "route", netns=n1)

        wait_for(
            lambda: "10.244.2.0/24 via 192.168.56.12 dev eth1 proto 145" in routes(),
            timeout=20,
            message="route to node2",
        )
        assert "10.244.1.0/24" not in routes()  # our own CIDR is the bridge's, not a route
        assert sh("cat", "/proc/sys/net/ipv4/ip_forward", netns=n1).strip() == "1"
        client.create(NODES, node("kl-node3", "10.244.3.0/24", "192.168.56.13"))
        n3 = client.get(NODES, "kl-node3")
        n3["status"] = node("kl-node3", "10.244.3.0/24", "192.168.56.13")["status"]
        client.update_status(NODES, n3)
        wait_for(lambda: "10.244.3.0/24 via 192.168.56.13" in routes(), timeout=20, message="route to node3")
        client.delete(NODES, "kl-node2")
        wait_for(lambda: "10.244.2.0/24" not in routes(), timeout=20, message="node2's route removed")
        sh("ip", "route", "del", "10.244.3.0/24", netns=n1)  # someone removes ours by hand
        wait_for(lambda: "10.244.3.0/24 via 192.168.56.13" in routes(), timeout=20, message="route restored by resync")
        assert "10.244.9.0/24 via 192.168.56.99" in routes()
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=10)
        srv.stop()
