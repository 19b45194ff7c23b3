"""The node network agent (``kubelab netagent``): routes to other nodes' pod CIDRs (host-gw).

Role: on every node, keep one route per *other* node in this node's network namespace,

    <node.spec.podCIDR> via <node's InternalIP>   proto kubelab (145)

so a packet from a pod to a pod on another node leaves through the node network unchanged (no
NAT, no tunnel: flannel's host-gw backend and Kubernetes The Hard Way's routes). It also makes
sure ``net.ipv4.ip_forward=1`` and ``net.bridge.bridge-nf-call-iptables=1`` hold in this
namespace (the second needs ``br_netfilter``, built into the lab's kernel; kube-proxy's rules
must see bridged pod-to-pod traffic).

Three layers (code-models §3.6):
- ``plan_routes(nodes, self_name)`` (pure): the desired {podCIDR: gateway} from the Nodes (typed
  read models, ``controlplane.api.models.Node``);
  ``diff_routes(desired, current)`` (pure): what to replace and what to delete;
- ``RouteDriver`` (protocol): ``owned()``, ``replace(dst, gw)``, ``delete(dst)``,
  ``ensure_sysctls()``; ``PyrouteDriver`` is the real one (pyroute2; the import cost does not
  matter in a long-lived agent), ``FakeRouteDriver`` the stateful fake;
- ``NetAgent``: a Node informer whose handlers only add one key (``ROUTES_KEY``) to a work queue;
  one worker (the client's ``worker_loop``) runs ``sync()`` (level-triggered: read the informer
  cache and the kernel, converge), also every ``resync`` seconds (``sync_once`` returns the delay
  to the worker loop), so a route someone deleted by hand comes back.

Backends: ``host-gw`` (above, the default) and ``vxlan`` (``VxlanDriver``, see ``plan_vxlan``)
for nodes without a shared L2 network.

Ownership: our routes carry routing protocol number 145 (``RTPROT_KUBELAB``); the agent lists and
deletes only routes with that protocol, so routes of the node's own (its bridge's connected
route, a default route, the lab's) are never touched. A restarted agent finds its routes again by
the same mark and removes those of nodes that vanished while it was down.

NetworkPolicy: unless ``--network-policy=false``, the agent also runs
``netplugin.policy.controller.PolicyController`` (its own informers and single worker), which keeps
the node's ``KUBELAB-*`` filter chains equal to the policies selecting this node's pods and removes
them when the agent stops (see ``netplugin/policy/plan.py`` for the chain layout).

Health (``--healthz-bind-address``, default 127.0.0.1:9099 — calico-node's health port): ``GET
/healthz`` answers 200 once the routes are programmed and the last sync (and the policy
controller's) succeeded, 503 otherwise, with JSON ``{"lastUpdated", "currentTime", "routes",
"lastError"}`` — the error that keeps the routes or the filter rules from being programmed.
A failing sync is one log line per distinct error, at most once a minute with a count, retried
with back-off (``controlplane.client.failures``): never a traceback per attempt.

Debug (``--debug-bind-address``, default 0.0.0.0:9098, HTTPS on the node's address, with
``--tls-cert-file``/``--tls-private-key-file``/``--client-ca-file``): ``/debug/network`` and
``/debug/network/route`` (``netplugin/debug.py``), authenticated and authorized through the API
server (``controlplane.client.delegated``); what ``kubelab trace`` reads from every node.

Concurrency: informer thread(s) enqueue; exactly one worker thread mutates the routes (and one,
the policy controller's, the filter table); the health server's threads only read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controlplane.api.models import Node
from controlplane.client.controller import worker_loop
from controlplane.client.failures import FailureLog
from controlplane.client.workqueue import WorkQueue

#: The agent's only work-queue key: every Node event means "converge the routes again".
ROUTES_KEY = "routes"

log = logging.getLogger("netplugin.agent")

RTPROT_KUBELAB = 145
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


# --- planner (pure) ----------------------------------------------------------------------------


def node_internal_ip(node: Node, family: int = 4) -> str | None:
    for addr in node.status.addresses:
        if addr.type == "InternalIP":
            try:
                ip = ipaddress.ip_address(addr.address)
            except ValueError:
                continue
            if ip.version == family:
                return str(ip)
    return None


def node_pod_cidrs(node: Node) -> list[str]:
    out = []
    for c in node.pod_cidrs():
        try:
            out.append(str(ipaddress.ip_network(c, strict=False)))
        except ValueError:
            log.warning("node %s has an invalid podCIDR %r; ignored", node.name, c)
    return out


def plan_routes(nodes: Iterable[Node], self_name: str) -> dict[str, str]:
    """{pod CIDR: gateway}: one route per other node that has a pod CIDR and an InternalIP of
    the CIDR's family. Our own node's CIDR is local (the bridge), so it gets no route."""
    desired: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name == self_name or node.metadata.deletion_timestamp:
            continue
        for cidr in node_pod_cidrs(node):
            gw = node_internal_ip(node, ipaddress.ip_network(cidr).version)
            if gw is not None:
                desired.setdefault(cidr, gw)
    return desired


@dataclass(frozen=True)
class RouteChanges:
    replace: dict[str, str]  # dst -> gw (new or with a changed gateway)
    delete: list[str]  # dst of owned routes no longer wanted

    @property
    def empty(self) -> bool:
        return not self.replace and not self.delete


def diff_routes(desired: Mapping[str, str], current: Mapping[str, str]) -> RouteChanges:
    replace = {dst: gw for dst, gw in desired.items() if current.get(dst) != gw}
    delete = sorted(dst for dst in current if dst not in desired)
    return RouteChanges(replace, delete)


# VXLAN backend (flannel's "vxlan", for nodes that do not share an L2 network): every node has a
# VXLAN device whose address is its pod CIDR's network address (10.244.N.0/32) and whose MAC is
# derived from that address (0a:58 + the 4 address bytes, OVN-Kubernetes' convention), so peers
# need no annotation to learn it: everything follows from the Node objects. Per peer: a route
# "<podCIDR> via <peer VTEP IP> dev klvxlan onlink", a permanent neighbour entry (VTEP IP → MAC)
# and an FDB entry (MAC → the peer's InternalIP), so no multicast or learning is needed.
VXLAN_DEV = "klvxlan"
VXLAN_VNI = 1
VXLAN_PORT = 8472
VXLAN_MTU = 1450  # 50 bytes of VXLAN/UDP/IP/Ethernet headers under a 1500-byte node network


@dataclass(frozen=True)
class VxlanPeer:
    cidr: str
    vtep_ip: str
    vtep_mac: str
    node_ip: str


def vxlan_peer(cidr: str, node_ip: str) -> VxlanPeer:
    net = ipaddress.ip_network(cidr, strict=False)
    mac = "0a:58:" + ":".join(f"{b:02x}" for b in net.network_address.packed[-4:])
    return VxlanPeer(str(net), str(net.network_address), mac, node_ip)


def plan_vxlan(nodes: Iterable[Node], self_name: str) -> tuple[VxlanPeer | None, list[VxlanPeer]]:
    """(this node's VTEP, the other nodes' VTEPs): IPv4 pod CIDRs of nodes with an InternalIP."""
    me: VxlanPeer | None = None
    peers: list[VxlanPeer] = []
    for node in sorted(nodes, key=lambda n: n.name):
        ip = node_internal_ip(node, 4)
        cidrs = [c for c in node_pod_cidrs(node) if ipaddress.ip_network(c).version == 4]
        if ip is None or not cidrs or node.metadata.deletion_timestamp:
            continue
        if node.name == self_name:
            me = vxlan_peer(cidrs[0], ip)
        else:
            peers.append(vxlan_peer(cidrs[0], ip))
    return me, peers


# --- drivers -----------------------------------------------------------------------------------


class RouteDriver(Protocol):
    def owned(self) -> dict[str, str]: ...  # our routes: dst -> gw

    def replace(self, dst: str, gw: str) -> None: ...

    def delete(self, dst: str) -> None: ...  # gone already: fine

    def ensure_sysctls(self) -> dict[str, str]: ...  # returns what it changed

    def close(self) -> None: ...


class FakeRouteDriver:
    """Routes as a dict, plus foreign routes the agent must never touch."""

    def __init__(self, foreign: Mapping[str, str] | None = None) -> None:
        self.routes: dict[str, tuple[str, int]] = {d: (g, 4) for d, g in (foreign or {}).items()}
        self.sysctls: dict[str, str] = {k: "0" for k in SYSCTLS}
        self.fail_replace: set[str] = set()

    def owned(self) -> dict[str, str]:
        return {d: g for d, (g, proto) in self.routes.items() if proto == RTPROT_KUBELAB}

    def replace(self, dst: str, gw: str) -> None:
        if dst in self.fail_replace:
            raise OSError(f"injected failure for {dst}")
        self.routes[dst] = (gw, RTPROT_KUBELAB)

    def delete(self, dst: str) -> None:
        if self.routes.get(dst, ("", 0))[1] == RTPROT_KUBELAB:
            del self.routes[dst]

    def ensure_sysctls(self) -> dict[str, str]:
        changed = {k: v for k, v in SYSCTLS.items() if self.sysctls.get(k) != v}
        self.sysctls.update(SYSCTLS)
        return changed

    def close(self) -> None:
        pass


class PyrouteDriver:
    """Routes in a namespace (``netns`` path, or the agent's own) through pyroute2."""

    def __init__(self, netns: str | None = None) -> None:
        from pyroute2 import IPRoute

        self.netns = netns
        self.ipr = IPRoute(netns=netns) if netns else IPRoute()

    def owned(self) -> dict[str, str]:
        out = {}
        for r in self.ipr.route("dump", proto=RTPROT_KUBELAB):
            if r.get("table") not in (254, None):
                continue
            dst = f"{r.get('dst')}/{r['dst_len']}"
            out[str(ipaddress.ip_network(dst, strict=False))] = str(r.get("gateway"))
        return out

    def replace(self, dst: str, gw: str) -> None:
        self.ipr.route("replace", dst=dst, gateway=gw, proto=RTPROT_KUBELAB)

    def delete(self, dst: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self.ipr.route("del", dst=dst, proto=RTPROT_KUBELAB)
        except NetlinkError as exc:
            if exc.code != 3:  # ESRCH: already gone
                raise

    def ensure_sysctls(self) -> dict[str, str]:
        changed = {}
        for key, want in SYSCTLS.items():
            value = _sysctl_in_netns(self.netns, key, want) if self.netns else _sysctl(key, want)
            if value is not None:
                changed[key] = value
        return changed

    def close(self) -> None:
        self.ipr.close()


class VxlanDriver(PyrouteDriver):
    """The VXLAN backend's kernel side (see ``plan_vxlan``); routes are still marked proto 145."""

    NUD_PERMANENT = 0x80
    NTF_SELF = 0x02
    RTNH_F_ONLINK = 0x04

    def _index(self) -> int | None:
        found = self.ipr.link_lookup(ifname=VXLAN_DEV)
        return int(found[0]) if found else None

    def ensure_device(self, me: VxlanPeer) -> None:
        idx = self._index()
        if idx is not None:
            link = self.ipr.get_links(idx)[0]
            info = dict(link.get("IFLA_LINKINFO").get("IFLA_INFO_DATA")["attrs"])
            if info.get("IFLA_VXLAN_LOCAL") != me.node_ip or link.get("IFLA_ADDRESS") != me.vtep_mac:
                log.info("vxlan device changed; recreating dev=%s", VXLAN_DEV)
                self.ipr.link("del", index=idx)
                idx = None
        if idx is None:
            self.ipr.link(
                "add",
                ifname=VXLAN_DEV,
                kind="vxlan",
                vxlan_id=VXLAN_VNI,
                vxlan_local=me.node_ip,
                vxlan_port=VXLAN_PORT,
                vxlan_learning=0,
                address=me.vtep_mac,
                mtu=VXLAN_MTU,
            )
            idx = self._index()
            assert idx is not None
            log.info("vxlan device created dev=%s local=%s mac=%s", VXLAN_DEV, me.node_ip, me.vtep_mac)
        self.ipr.link("set", index=idx, state="up")
        import socket

        have = {a.get("address") for a in self.ipr.get_addr(index=idx, family=socket.AF_INET)}
        for a in have - {me.vtep_ip, None}:
            self.ipr.addr("del", index=idx, address=a, prefixlen=32)
        if me.vtep_ip not in have:
            self.ipr.addr("add", index=idx, address=me.vtep_ip, prefixlen=32)

    def sync_peers(self, peers: list[VxlanPeer]) -> None:
        idx = self._index()
        assert idx is not None, "ensure_device first"
        want_neigh = {p.vtep_ip: p.vtep_mac for p in peers}
        want_fdb = {p.vtep_mac: p.node_ip for p in peers}
        for n in self.ipr.neigh("dump", ifindex=idx):
            dst, mac = n.get("dst"), n.get("lladdr")
            if dst is not None and want_neigh.get(dst) != mac:
                self.ipr.neigh("del", dst=dst, lladdr=mac, ifindex=idx)
        for f in self.ipr.fdb("dump", ifindex=idx):
            mac, dst = f.get("lladdr"), f.get("dst")
            if mac is not None and dst is not None and want_fdb.get(mac) != dst:
                self.ipr.fdb("del", ifindex=idx, lladdr=mac, dst=dst, flags=self.NTF_SELF, state=self.NUD_PERMANENT)
        for p in peers:
            self.ipr.neigh("replace", dst=p.vtep_ip, lladdr=p.vtep_mac, ifindex=idx, state=self.NUD_PERMANENT)
            self.ipr.fdb(
                "replace", ifindex=idx, lladdr=p.vtep_mac, dst=p.node_ip, flags=self.NTF_SELF, state=self.NUD_PERMANENT
            )

    def replace(self, dst: str, gw: str) -> None:
        idx = self._index()
        self.ipr.route("replace", dst=dst, gateway=gw, oif=idx, flags=self.RTNH_F_ONLINK, proto=RTPROT_KUBELAB)


def _sysctl(key: str, want: str) -> str | None:
    path = f"/proc/sys/{key}"
    with open(path) as f:
        if f.read().strip() == want:
            return None
    with open(path, "w") as f:
        f.write(want)
    return want


def _sysctl_in_netns(netns: str, key: str, want: str) -> str | None:
    # /proc/sys/net is the namespace of the *thread* that opens it, and the agent is threaded:
    # use a short-lived child process (ip netns exec's way) instead of setns in this process.
    import subprocess

    cur = subprocess.run(
        ["nsenter", f"--net={netns}", "cat", f"/proc/sys/{key}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if cur == want:
        return None
    subprocess.run(
        ["nsenter", f"--net={netns}", "sh", "-c", f"echo {want} > /proc/sys/{key}"], check=True, capture_output=True
    )
    return want


# --- the agent ---------------------------------------------------------------------------------


class RouteReconciler:
    """``sync(nodes)``: converge the kernel's owned routes on ``plan_routes(nodes)`` (host-gw), or
    on ``plan_vxlan(nodes)`` when the driver is a ``VxlanDriver`` (its device, neighbours and FDB
    first, then the same route diff)."""

    def __init__(self, driver: RouteDriver, node_name: str) -> None:
        self.driver = driver
        self.node_name = node_name

    def sync(self, nodes: Iterable[Node]) -> RouteChanges:
        nodes = list(nodes)
        changed = self.driver.ensure_sysctls()
        for k, v in changed.items():
            log.info("sysctl set key=%s value=%s", k, v)
        if isinstance(self.driver, VxlanDriver):
            me, peers = plan_vxlan(nodes, self.node_name)
            if me is None:
                raise RuntimeError(f"node {self.node_name} has no IPv4 podCIDR and InternalIP yet")
            self.driver.ensure_device(me)
            self.driver.sync_peers(peers)
            desired = {p.cidr: p.vtep_ip for p in peers}
        else:
            desired = plan_routes(nodes, self.node_name)
        changes = diff_routes(desired, self.driver.owned())
        errors = []
        for dst, gw in changes.replace.items():
            try:
                self.driver.replace(dst, gw)
                log.info("route replaced dst=%s via=%s", dst, gw)
            except Exception as exc:  # keep converging the others; report after
                errors.append(f"{dst} via {gw}: {exc}")
        for dst in changes.delete:
            try:
                self.driver.delete(dst)
                log.info("route deleted dst=%s", dst)
            except Exception as exc:
                errors.append(f"delete {dst}: {exc}")
        if errors:
            raise RuntimeError("route sync incomplete: " + "; ".join(errors))
        return changes


class NetAgent:
    """Informer on Nodes → one-key queue → ``RouteReconciler.sync`` (see module docstring)."""

    def __init__(self, client: Any, node_name: str, driver: RouteDriver, resync: float = 30.0) -> None:
        from controlplane.api.registry import NODES
        from controlplane.client.informer import Informer

        self.reconciler = RouteReconciler(driver, node_name)
        self.informer = Informer(client, NODES, name="netagent-nodes")
        self.nodes = self.informer.view(Node.decode)  # typed read models, decoded once per change
        self.resync = resync
        self.queue: WorkQueue[str] = WorkQueue("netagent-routes")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.syncs = 0
        self.routes = 0
        self.failures = FailureLog(log, "route sync", initial=0.2, cap=10.0)
        self.policies: Any = None  # the PolicyController, when NetworkPolicy is enforced

        def poke(*_objs: Any) -> None:
            self.queue.add(ROUTES_KEY)

        self.informer.add_handler(on_add=poke, on_update=poke, on_delete=poke)

    @property
    def last_error(self) -> str | None:
        return self.failures.last_error

    def health(self) -> tuple[int, bytes]:
        """(status, JSON body) of ``GET /healthz`` (module docstring)."""
        error = self.failures.last_error
        synced = self.failures.last_success_time
        if error is None and synced is None:
            error = "routes not programmed yet: waiting for the first route sync"
        policy_error = getattr(self.policies, "last_error", None)
        if error is None and policy_error:
            error = f"network policy rules not programmed: {policy_error}"
        body = {
            "lastUpdated": _rfc3339(synced),
            "currentTime": _rfc3339(time.time()),
            "routes": self.routes,
            "lastError": error or "",
        }
        return (503 if error else 200), json.dumps(body).encode()

    def start(self) -> None:
        self.informer.start()
        self._thread = threading.Thread(target=self._run, name="netagent-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.informer.wait_for_sync(None)
        self.queue.add(ROUTES_KEY)  # the first sync, even with no Node to route to
        worker_loop(self.queue, lambda _key: self.sync_once(), self._stop)

    def sync_once(self) -> float:
        """One level-triggered sync of the informer's Nodes; the seconds until the next one."""
        self.syncs += 1
        try:
            self.reconciler.sync(self.nodes.list())
            self.routes = len(self.reconciler.driver.owned())
        except Exception as exc:  # one line a minute per distinct error; retried with back-off
            return self.failures.failure(exc)
        self.failures.success()
        return self.resync

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.informer.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.reconciler.driver.close()


# --- CLI ---------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "netagent", help="node network agent: routes to other nodes' pod CIDRs (host-gw)"
    )
    p.add_argument("--node-name", required=True, help="this node's Node name")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the API server")
    p.add_argument("--netns", default=None, help="namespace path to program (default: the agent's own)")
    p.add_argument("--resync", type=float, default=30.0, help="seconds between full re-checks")
    p.add_argument(
        "--backend",
        choices=("host-gw", "vxlan"),
        default="host-gw",
        help="host-gw: routes via the other nodes' addresses (one L2 network); vxlan: a VXLAN overlay",
    )
    p.add_argument(
        "--cni-server",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the CNI server (netplugin/cniserver.py) the plugin launchers hand requests to (default: yes)",
    )
    p.add_argument(
        "--network-policy",
        type=_flag_bool,
        default=True,
        metavar="true|false",
        help="enforce NetworkPolicies with iptables filter rules (netplugin/policy; default: true)",
    )
    p.add_argument(
        "--policy-iptables",
        choices=("", "nft", "legacy"),
        default="",
        help="iptables variant for the policy rules (default: the host's `iptables`)",
    )
    p.add_argument(
        "--healthz-bind-address",
        default="127.0.0.1:9099",
        metavar="ADDR:PORT",
        help="serve /healthz here (routes and policy rules programmed?); '' disables it",
    )
    p.add_argument(
        "--debug-bind-address",
        default="0.0.0.0:9098",
        metavar="ADDR:PORT",
        help="HTTPS /debug/network for kubelab trace (needs the three TLS flags); '' disables it",
    )
    p.add_argument("--tls-cert-file", help="serving certificate of the debug endpoint (the node's)")
    p.add_argument("--tls-private-key-file", help="its key")
    p.add_argument("--client-ca-file", help="CA that signs client certificates (the cluster CA)")
    p.set_defaults(func=run_cli)


def serve_debug(args: argparse.Namespace, agent: NetAgent, client: Any) -> Any:
    """The authenticated ``/debug/network`` server, when the flags allow it (else None)."""
    from pathlib import Path

    from controlplane.client import delegated
    from netplugin.debug import NodeNetwork, debug_route, subprocess_runner

    if not args.debug_bind_address:
        return None
    if not (args.tls_cert_file and args.tls_private_key_file and args.client_ca_file):
        log.info("no /debug/network: it needs --tls-cert-file, --tls-private-key-file and --client-ca-file")
        return None

    def pod_cidrs() -> list[str]:
        node = agent.nodes.get_by_name(args.node_name)
        return node_pod_cidrs(node) if node is not None else []

    net = NodeNetwork(args.node_name, pod_cidrs, subprocess_runner(args.netns))
    ctx = delegated.server_context(Path(args.tls_cert_file), Path(args.tls_private_key_file), Path(args.client_ca_file))
    auth = delegated.DelegatedAuth(delegated.client_poster(client))
    return delegated.SecureServer(debug_route(net), auth, ctx, args.debug_bind_address, "netagent-debug").start()


def _rfc3339(t: float | None) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serve_health(agent: NetAgent, bind: str, stop: threading.Event) -> None:
    """``GET /healthz`` on ``bind`` in a daemon thread; a bind failure is logged and retried (5 s)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, body = agent.health() if self.path.split("?", 1)[0] == "/healthz" else (404, b"not found\n")
            self.send_response(code)
            self.send_header("Content-Type", "application/json" if code != 404 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # no access log
            return

    host, _, port = bind.rpartition(":")
    failures = FailureLog(log, f"starting the health server on {bind}", initial=5.0, cap=5.0)

    def run() -> None:
        while not stop.is_set():
            try:
                server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 9099)), Handler)
            except OSError as exc:
                stop.wait(failures.failure(exc))
                continue
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name="netagent-healthz-http", daemon=True).start()
            stop.wait()
            server.shutdown()
            server.server_close()
            return

    threading.Thread(target=run, name="netagent-healthz", daemon=True).start()


def _flag_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def start_cni_server(netns: str | None = None) -> Any:
    """The CNI server as a child process (it forks per request, so it must not share our threads)."""
    import os
    import subprocess
    import sys

    argv = [sys.executable, "-m", "netplugin.fast.cniserver", "--parent-pid", str(os.getpid())]
    if netns:
        argv = ["nsenter", f"--net={netns}", *argv]
    return subprocess.Popen(argv)


def run_cli(args: argparse.Namespace) -> int:
    import signal

    from controlplane.client.rest import ApiClient

    client = ApiClient.from_kubeconfig(args.kubeconfig)
    driver = VxlanDriver(args.netns) if args.backend == "vxlan" else PyrouteDriver(args.netns)
    agent = NetAgent(client, args.node_name, driver, resync=args.resync)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = start_cni_server(args.netns) if args.cni_server else None
    agent.start()
    policies = None
    if args.network_policy:
        from netplugin.policy.controller import PolicyController
        from netplugin.policy.driver import IptablesDriver

        policies = PolicyController(client, args.node_name, IptablesDriver(args.netns, args.policy_iptables))
        policies.start()
        agent.policies = policies
    if args.healthz_bind_address:
        serve_health(agent, args.healthz_bind_address, stop)
    debug = serve_debug(args, agent, client)
    log.info("netagent running node=%s cni_server=%s network_policy=%s", args.node_name, bool(server), bool(policies))
    try:
        stop.wait()
    finally:
        if debug is not None:
            debug.shutdown()
        if policies is not None:
            policies.stop()
        agent.stop()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    return 0
