"""Where ``kubelab trace`` reads its facts when the nodes are machines, not namespaces on this host.

``lab.trace`` explains a connection from facts: a node's ``iptables-save``, its addresses, route
lookups (``ip -j route get … from … iif …``), the pod's veth and, with ``--probe``, one connection
and the node's conntrack entry. On the one-machine lab it reads them with ``nsenter`` into the node
namespaces (``trace.Lab``). On the Vagrant lab the same commands run on each VM, reached **over the
node network** (192.168.56.0/24, the node's InternalIP, never the management network) by SSH with
the per-machine key Vagrant generated (``vagrant/.vagrant/machines/NODE/PROVIDER/private_key``,
user ``vagrant``, passwordless sudo in the box): that is the authentication. A pod's network
namespace is entered on its node (``nsenter --net=/var/run/netns/<pod netns>``, the name
``noded.names.netns_name`` gives, the same as on the one-machine lab).

Why commands over SSH rather than the components' debug endpoints: the proxy's ``/debug/rules``
listens on 127.0.0.1 only and shows the proxy's own ruleset, not the whole nat/filter tables the
walk needs (the netagent's masquerade and NetworkPolicy chains); the netagent has no debug endpoint
for routes, and ``ip route get … iif cni0`` is a kernel lookup that only the node itself can answer.
The proxy's ``/debug/rules`` is still fetched (through the same SSH session, ``curl`` on the node's
loopback) when ``iptables-save`` lacks the proxy's chains, as a cross-check.

The API is read with ``vagrant/admin.kubeconfig`` (the cluster admin's client certificate).
Read-only: nothing here changes a node; ``--probe`` makes the one connection ``trace.probe`` makes.
Network safety: SSH only to the lab's node addresses (192.168.56.0/24), nothing else is contacted.
Concurrency: none, one command at a time.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab import trace

ROOT = Path(__file__).resolve().parent.parent
VAGRANT_DIR = ROOT / "vagrant"
KUBECONFIG = VAGRANT_DIR / "admin.kubeconfig"
SSH_USER = "vagrant"
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
)  # fmt: skip


def machine_key(node: str, machines: Path = VAGRANT_DIR / ".vagrant" / "machines") -> Path | None:
    """The private key Vagrant made for ``node`` (any provider), or None when it has no VM."""
    for key in sorted((machines / node).glob("*/private_key")):
        if (key.parent / "id").exists():
            return key
    return None


def vagrant_lab_present(machines: Path = VAGRANT_DIR / ".vagrant" / "machines") -> bool:
    return KUBECONFIG.exists() and any(machine_key(p.name, machines) for p in machines.glob("kl-*"))


def ssh_argv(key: Path, ip: str, argv: Sequence[str]) -> list[str]:
    """``argv`` as root on the node at ``ip``, a lab node address (anything else is refused)."""
    if ipaddress.IPv4Address(ip) not in trace.NODE_NETWORK:
        raise trace.TraceError(f"{ip} is not on the node network {trace.NODE_NETWORK}: not contacting it")
    remote = " ".join(shlex.quote(a) for a in argv)
    return ["ssh", "-i", str(key), *SSH_OPTIONS, f"{SSH_USER}@{ip}", f"sudo -n {remote}"]


def on_node(node_netns: str, argv: Sequence[str]) -> list[str]:
    """The command to run on the node: in the node's own namespace, or nsentered into a pod's."""
    argv = ["python3" if a == sys.executable else a for a in argv]  # the probe: the node's python
    return ["nsenter", f"--net=/var/run/netns/{node_netns}", "--", *argv] if node_netns else list(argv)


class VagrantLab(trace.Lab):
    """The Vagrant lab seen by ``kubelab trace``: same plan and addresses, nodes reached by SSH."""

    def __init__(self) -> None:
        from controlplane.client.kubeconfig import load_kubeconfig
        from lab import topology

        self.client = load_kubeconfig(KUBECONFIG)
        items = self._get("/api/v1/nodes").get("items", [])
        workers = [n for n in items if n["metadata"]["name"].startswith("kl-node")]
        self.net = topology.plan_lab(len(workers))
        self.node_ips = {n.ip: n.name for n in self.net.nodes}
        self.pod_nodes: dict[str, str] = {}  # pod netns -> its node, filled by pod_spot
        self.nics: dict[str, str] = {}
        self.host_bridges = self._host_bridges()

    # --- the API, with the admin kubeconfig ------------------------------------------------------

    def _get(self, path: str) -> dict[str, Any]:
        ctx = self.client.ssl_context()
        req = urllib.request.Request(self.client.server + path)
        if self.client.token:
            req.add_header("Authorization", f"Bearer {self.client.token}")
        kwargs: dict[str, Any] = {"context": ctx} if not isinstance(ctx, bool) else {}
        with urllib.request.urlopen(req, timeout=10, **kwargs) as resp:
            answer: dict[str, Any] = json.loads(resp.read() or b"{}")
            return answer

    def get(self, path: str) -> dict[str, Any]:
        try:
            return self._get(path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise KeyError(path) from None
            raise trace.TraceError(f"the API server answered {exc.code} for {path}") from exc
        except OSError as exc:
            raise trace.TraceError(
                f"the VM lab's API server does not answer ({exc}): `cd vagrant && vagrant status`"
            ) from exc

    def pod_spot(self, pod: dict[str, Any]) -> trace.Spot:
        spot = super().pod_spot(pod)
        self.pod_nodes[spot.netns] = spot.node
        return spot

    # --- the nodes, over SSH ---------------------------------------------------------------------

    def exec(self, netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        if not netns:  # the host itself
            return super().exec(netns, *argv, timeout=timeout)
        node = netns if netns in self.node_ips.values() else self.pod_nodes.get(netns, "")
        if not node:
            raise trace.TraceError(f"network namespace {netns}: no node known for it")
        key = machine_key(node)
        if key is None:
            raise trace.TraceError(
                f"node {node}: no VM (vagrant/.vagrant/machines/{node}); `cd vagrant && vagrant status`"
            )
        ip = next(ip for ip, name in self.node_ips.items() if name == node)
        remote = on_node("" if netns == node else netns, argv)
        return subprocess.run(
            ssh_argv(key, ip, remote), capture_output=True, text=True, timeout=timeout + 20, check=False
        )

    def has_netns(self, netns: str) -> bool:
        return netns in self.pod_nodes

    def nic(self, node: str) -> str:
        """The node's lab NIC, the one holding its 192.168.56.x address (eth1, enp0s8, …)."""
        if node not in self.nics:
            ip = next((ip for ip, name in self.node_ips.items() if name == node), "")
            self.nics[node] = next((dev for dev, a in self.addrs(node).items() if a == ip), "eth0")
        return self.nics[node]

    def save(self, node: str) -> str:
        text = super().save(node)
        if "KUBE-SERVICES" not in text:  # cross-check with what the proxy says it applied
            rules = self.exec(node, "curl", "-s", "--max-time", "5", "http://127.0.0.1:10249/debug/rules")
            if "KUBE-SERVICES" in rules.stdout:
                raise trace.TraceError(
                    f"{node}: the proxy reports rules (/debug/rules) that iptables-save does not show"
                )
        return text

    @staticmethod
    def _host_bridges() -> tuple[str, ...]:
        res = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=False)
        return tuple(
            link["ifname"]
            for link in json.loads(res.stdout or "[]")
            if any(a.get("local") == trace.HOST_IP for a in link.get("addr_info", []))
        )


def open_lab() -> trace.Lab:
    """The lab ``kubelab trace`` looks at: the one-machine lab when its plan exists, else the VM lab."""
    from lab import state

    if state.read_plan() is None and vagrant_lab_present():
        return VagrantLab()
    return trace.Lab()
