"""The one-machine lab's network: bridge ``kl0`` in the root namespace, one namespace per node.

Role: turn "a control plane and N workers" into kernel objects, and remove exactly those again.
The plan is pure (``plan_lab``); ``apply``/``teardown`` run it with ``ip`` commands.

Layout (DESIGN.md §3)::

    root namespace                     kl-cp (192.168.56.10)      kl-nodeN (192.168.56.10+N)
    kl0 192.168.56.1/24  ── klv-cp ──── eth0                        eth0 ── cni0 10.244.N.1/24 ── pods
                         ── klv-nodeN ─────────────────────────────┘
    routes: unreachable 10.244.0.0/16, 10.96.0.0/12 (safety, metric 4242)
            10.244.N.0/24 via 192.168.56.10+N      (host → pods, once the node has its podCIDR)
            10.96.0.0/12 via 192.168.56.11 metric 100  (host → service VIPs through a worker)
    kl-cp:  10.244.N.0/24 via 192.168.56.10+N      (replies from the API server and DNS to pods)

Invariants:
- Every object has a ``kl``-prefixed name (``kl0``, ``klv-*``, ``kl-*`` namespaces), so teardown
  removes ours and nothing else, and a second ``up`` can tell the lab is already there.
- Node namespaces get no default route: the only ways out of a node are kl0 (other nodes and the
  host) and its own bridge; nothing can reach the machine's uplink.
- The root namespace's ``ip_forward`` and iptables are left alone: the host only ever originates or
  receives lab traffic, it never routes it.

``kubelab topology --svg FILE | --png FILE`` draws this layout as the live cluster fills it (nodes,
bridges, pods, Service VIPs): ``register`` below; the picture is ``lab/dashboard/graph.py``'s, the one
the dashboard shows.

Concurrency: called from one process (``kubelab up``/``down``/``node``) at a time; the lab's state
lock (``lab/state.py``) serialises them.
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
from dataclasses import dataclass, field

BRIDGE = "kl0"
NODE_NETWORK = ipaddress.ip_network("192.168.56.0/24")
HOST_IP = "192.168.56.1"
CONTROL_PLANE_NAME = "kl-cp"
CONTROL_PLANE_IP = "192.168.56.10"
POD_NETWORK = "10.244.0.0/16"
SERVICE_NETWORK = "10.96.0.0/12"
SERVICE_ROUTE_METRIC = "100"
MAX_WORKERS = 50  # keeps every address inside 192.168.56.0/24 and pod CIDRs inside 10.244.0.0/16


class TopologyError(Exception):
    pass


@dataclass(frozen=True)
class NodeNet:
    name: str  # node name == netns name
    ip: str
    index: int  # 0 for the control plane, N for worker N
    host_veth: str  # the root-namespace end, attached to kl0

    @property
    def is_worker(self) -> bool:
        return self.index > 0

    @property
    def expected_pod_cidr(self) -> str | None:
        return f"10.244.{self.index}.0/24" if self.is_worker else None


@dataclass(frozen=True)
class LabNet:
    nodes: tuple[NodeNet, ...]
    bridge: str = BRIDGE
    host_ip: str = HOST_IP
    prefixlen: int = 24
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def workers(self) -> tuple[NodeNet, ...]:
        return tuple(n for n in self.nodes if n.is_worker)

    @property
    def control_plane(self) -> NodeNet:
        return self.nodes[0]

    def node(self, name: str) -> NodeNet:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TopologyError(f"no node named {name!r} in this lab (nodes: {', '.join(n.name for n in self.nodes)})")


def worker_name(index: int) -> str:
    return f"kl-node{index}"


def plan_lab(workers: int) -> LabNet:
    """The lab's addresses and names for ``workers`` workers (pure)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise TopologyError(f"--workers must be between 1 and {MAX_WORKERS}, not {workers}")
    nodes = [NodeNet(CONTROL_PLANE_NAME, CONTROL_PLANE_IP, 0, "klv-cp")]
    for i in range(1, workers + 1):
        nodes.append(NodeNet(worker_name(i), str(NODE_NETWORK.network_address + 10 + i), i, f"klv-node{i}"))
    return LabNet(nodes=tuple(nodes))


# --- executor -------------------------------------------------------------------------------


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise TopologyError(f"`{' '.join(argv)}` failed: {res.stderr.strip()}")
    return res


def sysctl_in(netns: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    res = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{netns}", "sh", "-c", f"echo {value} > {path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise TopologyError(f"cannot set {key}={value} in {netns}: {res.stderr.strip()}")


def existing_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_exists(name: str, netns: str | None = None) -> bool:
    return ip("link", "show", "dev", name, netns=netns, check=False).returncode == 0


def apply(lab: LabNet) -> None:
    """Create the bridge, the node namespaces and their links. Idempotent per object."""
    if not link_exists(lab.bridge):
        ip("link", "add", lab.bridge, "type", "bridge")
    ip("addr", "replace", f"{lab.host_ip}/{lab.prefixlen}", "dev", lab.bridge)
    ip("link", "set", lab.bridge, "up")
    have = existing_netns()
    for node in lab.nodes:
        if node.name not in have:
            ip("netns", "add", node.name)
        ip("link", "set", "lo", "up", netns=node.name)
        if not link_exists(node.host_veth):
            ip("link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0", "netns", node.name)
        ip("link", "set", node.host_veth, "master", lab.bridge)
        ip("link", "set", node.host_veth, "up")
        ip("addr", "replace", f"{node.ip}/{lab.prefixlen}", "dev", "eth0", netns=node.name)
        ip("link", "set", "eth0", "up", netns=node.name)
        if node.is_worker:
            # Service VIPs need *a* route for the proxy's rules to act on: locally sent packets are
            # routed before the nat OUTPUT chain rewrites them, and a pod's packet to a VIP without
            # endpoints must reach the filter table's REJECT ("connection refused"), not fail in
            # routing ("network unreachable"). On a real node the default route does this; ours has
            # none, so the route is on-link on eth0: anything not rewritten stays on kl0.
            ip("route", "replace", SERVICE_NETWORK, "dev", "eth0", netns=node.name)
    # The control plane answers pods directly (the `kubernetes` service → :6443, kube-dns → :53):
    # a pod's packet DNATed to 192.168.56.10 keeps the pod's source address unless the CNI plugin
    # masquerades it (ours does, the reference bridge in the lab does not), so kl-cp needs a route
    # back to each worker's pods — host-gw, as the network agent gives the workers.
    cp = lab.control_plane
    for node in lab.workers:
        if node.expected_pod_cidr:
            ip("route", "replace", node.expected_pod_cidr, "via", node.ip, "dev", "eth0", netns=cp.name)


def set_node_link(lab: LabNet, name: str, up: bool) -> None:
    """Cut (or restore) a node's wire to kl0 — the node drops off the network, its pods keep running."""
    node = lab.node(name)
    ip("link", "set", node.host_veth, "up" if up else "down")


def install_host_routes(lab: LabNet, pod_cidrs: dict[str, str], service_via: str | None) -> None:
    """Routes from the host to each node's pods, and to the service network through a worker."""
    for node in lab.workers:
        cidr = pod_cidrs.get(node.name)
        if cidr:
            ip("route", "replace", cidr, "via", node.ip, "dev", lab.bridge)
    if service_via:
        ip("route", "replace", SERVICE_NETWORK, "via", service_via, "dev", lab.bridge, "metric", SERVICE_ROUTE_METRIC)


def remove_host_routes() -> None:
    """Every route through kl0 that is not the connected /24 (all of them are ours)."""
    out = ip("route", "show", "dev", BRIDGE, check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and "via" in parts:
            ip("route", "del", *parts, check=False)


def teardown(lab_names: list[str] | None = None) -> list[str]:
    """Remove every ``kl``-named object: host routes, node namespaces, veths, kl0.

    Returns what was removed (for the user and for the leak test). Missing objects are fine.
    """
    removed: list[str] = []
    if link_exists(BRIDGE):
        remove_host_routes()
    names = lab_names if lab_names is not None else sorted(n for n in existing_netns() if is_lab_netns(n))
    for name in names:
        if name in existing_netns():
            ip("netns", "del", name, check=False)
            removed.append(f"netns {name}")
    out = ip("-br", "link", "show", "type", "veth", check=False).stdout
    for line in out.splitlines():
        dev = line.split()[0].split("@")[0]
        if dev.startswith("klv-"):
            ip("link", "del", dev, check=False)
            removed.append(f"veth {dev}")
    if link_exists(BRIDGE):
        ip("link", "del", BRIDGE, check=False)
        removed.append(f"bridge {BRIDGE}")
    return removed


def is_lab_netns(name: str) -> bool:
    return name == CONTROL_PLANE_NAME or (name.startswith("kl-node") and name[7:].isdigit())


def cmd_topology(args: argparse.Namespace) -> int:
    from lab.dashboard import cli  # the picture's code loads only when asked for

    return cli.cmd_topology(args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("topology", help="draw the running lab (nodes, bridges, pods, VIPs) as SVG or PNG")
    p.add_argument("--svg", metavar="FILE", default="", help="write the picture as SVG")
    p.add_argument("--png", metavar="FILE", default="", help="write the picture as PNG")
    p.add_argument("--kubeconfig", default="", help="read the cluster with this kubeconfig (default: the lab's admin)")
    p.set_defaults(func=cmd_topology_checked)


def cmd_topology_checked(args: argparse.Namespace) -> int:
    if not args.svg and not args.png:
        print("kubelab topology: say where: --svg FILE and/or --png FILE", flush=True)
        return 2
    return cmd_topology(args)
