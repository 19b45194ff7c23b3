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

With ``--control-planes 3`` (issue 17) the control plane is three namespaces ``kl-cp1..3``
(192.168.56.21–.23) behind HAProxy in ``kl-lb``, which holds 192.168.56.10 — still the one API
endpoint every kubeconfig names, as kubeadm's ``controlPlaneEndpoint``; with ``--etcd external`` the
etcd members get namespaces of their own, ``kl-etcd1..3`` (.31–.33). Every control plane and the
load balancer get the routes back to the workers' pods that kl-cp has.

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
from typing import Any

BRIDGE = "kl0"
NODE_NETWORK = ipaddress.ip_network("192.168.56.0/24")
HOST_IP = "192.168.56.1"
CONTROL_PLANE_NAME = "kl-cp"
CONTROL_PLANE_IP = "192.168.56.10"  # the API endpoint: kl-cp, or HAProxy in kl-lb with HA
LB_NAME = "kl-lb"
HA_CONTROL_PLANE_BASE = 20  # kl-cpN at 192.168.56.(20+N)
ETCD_BASE = 30  # kl-etcdN at 192.168.56.(30+N)
ROLES = ("controlplane", "worker", "lb", "etcd")
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
    index: int  # N for worker N, kl-cpN and kl-etcdN; 0 for kl-cp and kl-lb
    host_veth: str  # the root-namespace end, attached to kl0
    role: str = "worker"  # one of ROLES

    @property
    def is_worker(self) -> bool:
        return self.role == "worker"

    @property
    def is_control_plane(self) -> bool:
        return self.role == "controlplane"

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
        """The (first) control plane: kl-cp, or kl-cp1 with HA."""
        return self.control_planes[0]

    @property
    def control_planes(self) -> tuple[NodeNet, ...]:
        return tuple(n for n in self.nodes if n.is_control_plane)

    @property
    def lb(self) -> NodeNet | None:
        return next((n for n in self.nodes if n.role == "lb"), None)

    @property
    def etcd_nodes(self) -> tuple[NodeNet, ...]:
        """The namespaces of an external etcd (none when etcd is stacked or absent)."""
        return tuple(n for n in self.nodes if n.role == "etcd")

    @property
    def ha(self) -> bool:
        return self.lb is not None

    def etcd_members(self) -> list[tuple[str, str]]:
        """(name, IP) of every etcd member of an HA lab: the external ones, or one per control plane."""
        return [(n.name, n.ip) for n in (self.etcd_nodes or self.control_planes)]

    def node(self, name: str) -> NodeNet:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TopologyError(f"no node named {name!r} in this lab (nodes: {', '.join(n.name for n in self.nodes)})")


def worker_name(index: int) -> str:
    return f"kl-node{index}"


def _addr(offset: int) -> str:
    return str(NODE_NETWORK.network_address + offset)


def plan_lab(workers: int, control_planes: int = 1, etcd: str = "stacked") -> LabNet:
    """The lab's addresses and names for ``workers`` workers and 1 or 3 (or 5) control planes (pure).

    ``etcd``: ``stacked`` (a member on each control plane) or ``external`` (``kl-etcdN``); it only
    shapes an HA lab — the single control plane runs its store beside the API server."""
    from lab.hatopology import HaError, check_control_planes

    if not 1 <= workers <= MAX_WORKERS:
        raise TopologyError(f"--workers must be between 1 and {MAX_WORKERS}, not {workers}")
    try:
        check_control_planes(control_planes)
    except HaError as exc:
        raise TopologyError(str(exc)) from None
    if control_planes > 1 and workers > HA_CONTROL_PLANE_BASE - 11:
        raise TopologyError(
            f"--workers must be at most {HA_CONTROL_PLANE_BASE - 11} with --control-planes {control_planes} "
            f"(workers' addresses .11–.{HA_CONTROL_PLANE_BASE - 1} end where the control planes' begin)"
        )
    if etcd not in ("stacked", "external"):
        raise TopologyError(f"--etcd must be stacked or external, not {etcd!r}")
    if control_planes == 1:
        nodes = [NodeNet(CONTROL_PLANE_NAME, CONTROL_PLANE_IP, 0, "klv-cp", "controlplane")]
    else:
        nodes = [NodeNet(LB_NAME, CONTROL_PLANE_IP, 0, "klv-lb", "lb")]
        nodes += [
            NodeNet(f"kl-cp{i}", _addr(HA_CONTROL_PLANE_BASE + i), i, f"klv-cp{i}", "controlplane")
            for i in range(1, control_planes + 1)
        ]
        if etcd == "external":
            nodes += [
                NodeNet(f"kl-etcd{i}", _addr(ETCD_BASE + i), i, f"klv-etcd{i}", "etcd")
                for i in range(1, control_planes + 1)
            ]
    for i in range(1, workers + 1):
        nodes.append(NodeNet(worker_name(i), _addr(10 + i), i, f"klv-node{i}"))
    return LabNet(nodes=tuple(nodes))


def lab_of(plan: dict[str, Any]) -> LabNet:
    """The topology of a running lab, from its plan file (``lab/state.py``)."""
    return plan_lab(len(plan["workers"]), int(plan.get("control_planes", 1)), str(plan.get("etcd_topology", "stacked")))


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
    for cp in (*lab.control_planes, *([lab.lb] if lab.lb else [])):
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
    if name in (CONTROL_PLANE_NAME, LB_NAME):
        return True
    return any(name.startswith(p) and name[len(p) :].isdigit() for p in ("kl-node", "kl-cp", "kl-etcd"))


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
