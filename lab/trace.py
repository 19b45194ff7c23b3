"""``kubelab trace``: explain, step by step, the path of one new connection through the lab.

``kubelab trace --from pod/client --to svc/hello:80 [--probe]`` answers the question lab users
ask when cross-node Service traffic misbehaves (lab-faq §5 item 4): which chain DNATs, to which
endpoints and with what chance, whether the packet is masqueraded (and why: off-cluster source,
hairpin, NodePort), which route carries it to the endpoint's node, and how the reply comes back.
Sources: ``pod/NAME``, ``node/NAME``, ``host``; targets: ``svc/NAME[:PORT]``, ``pod/NAME:PORT``,
``IP:PORT`` (a ClusterIP, a pod IP, or a node IP with a NodePort).

Structure (functional core, imperative shell):
- ``explain(Facts) -> list[Step]`` is pure: the facts are the source node's ``iptables-save``
  walked by ``proxy.trace.Tracer`` (a ``Walk``), the route lookups (``Route``, parsed from
  ``ip -j route get``) and what the lab's objects say (which pod owns an IP, which node owns a
  pod CIDR). ``render`` prints the steps. Both are unit-tested without a lab.
- ``collect(...)`` gathers the facts from the running cluster, read-only, with the admin
  kubeconfig's credentials: the objects from the API; from each node involved, at its InternalIP,
  the network agent's ``/debug/network`` (the node's ``iptables-save``, addresses, pods' veths) and
  ``/debug/network/route`` (the node kernel's ``ip route get``), the proxy's ``/debug/rules`` as a
  cross-check — HTTPS endpoints that authenticate and authorize the caller through the API server
  (``Lab``). No namespace is entered and nothing runs on a node, so the same code reads the
  namespace lab, the VM lab and any cluster running kubelab's node components.
- ``--probe`` makes ONE connection from the source to the traced (lab) address (a Python one-shot
  connect with a 2 s timeout, inside the source pod's netns for a pod) and reads the source
  node's conntrack entry for it, which names the endpoint the kernel chose. It acts, so it needs
  to be where the source is: ``nsenter`` on this host, or SSH on the VM lab (``lab.tracefetch``).

Network safety: targets must be lab addresses (the pod network, the service network, the node
network); anything else is refused before any lookup or packet.

Long function kept whole: ``explain`` (~145 lines) walks one packet hop by hop (source, DNAT,
masquerade, route, endpoint, reply) in the order a learner reads the answer.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from controlplane.api import errors
from controlplane.client.kubeconfig import ClientConfig
from proxy.trace import Hop, Tracer, Walk

POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
SERVICE_NETWORK = ipaddress.IPv4Network("10.96.0.0/12")
NODE_NETWORK = ipaddress.IPv4Network("192.168.56.0/24")
LAB_RANGES = (POD_NETWORK, SERVICE_NETWORK, NODE_NETWORK)
HOST_IP = "192.168.56.1"
NODEPORT_RANGE = range(30000, 32768)
PROBE_TIMEOUT = 2.0


class TraceError(Exception):
    """Bad input or a lab that cannot answer: the message says which."""


# --- facts (what the driver collects) ------------------------------------------------------------


@dataclass(frozen=True)
class Spot:
    """Where a packet starts, or the owner of an address."""

    kind: str  # "pod" | "node" | "host"
    name: str  # "default/client" | "kl-node1" | "host"
    ip: str
    node: str = ""  # the node hosting the pod, the node itself, "" for the host
    netns: str = ""  # the pod's or the node's netns ("" = the root namespace)


@dataclass(frozen=True)
class Target:
    ip: str
    port: int
    proto: str  # "tcp" | "udp"
    label: str  # how to name it: "service default/hello:80 (ClusterIP 10.96.0.2)"


@dataclass(frozen=True)
class Route:
    """One ``ip -j route get`` answer, and where it was asked."""

    where: str  # the netns it was looked up in ("" = the host)
    query: str  # the command, for the reader to rerun
    dev: str = ""
    gateway: str = ""
    prefsrc: str = ""
    kind: str = "unicast"  # "unicast" | "local" | "unreachable" | "error: …"

    @classmethod
    def parse(cls, where: str, query: str, answer: str) -> Route:
        try:
            items = json.loads(answer)
            r = items[0]
        except (ValueError, IndexError, KeyError, TypeError):
            return cls(where, query, kind="error: " + (answer.strip() or "no answer"))
        return cls(where, query, r.get("dev", ""), r.get("gateway", ""), r.get("prefsrc", ""), r.get("type", "unicast"))

    def text(self) -> str:
        if self.kind.startswith("error"):
            return self.kind
        if self.kind not in ("unicast", ""):
            return f"{self.kind} (dev {self.dev})" if self.dev else self.kind
        via = f"via {self.gateway} " if self.gateway else ""
        src = f" src {self.prefsrc}" if self.prefsrc else ""
        return f"{via}dev {self.dev}{src}"


@dataclass(frozen=True)
class Arrival:
    """The endpoint's side: the node it lives on, that node's route to it, and its owner."""

    node: str
    owner: Spot | None  # the pod (or node) holding the endpoint IP; None if nobody known does
    route: Route | None = None  # on the endpoint's node (None when it is the source node)
    veth: str = ""  # the pod's host-side veth on that node's cni0


@dataclass
class Facts:
    source: Spot
    target: Target
    node: str  # the node whose rules decide (the source pod's node, the node, or the host's next hop)
    walk: Walk
    cluster_cidr: str = str(POD_NETWORK)
    host_route: Route | None = None  # from the host: its route to the target
    routes: dict[str, Route] = field(default_factory=dict)  # endpoint ip → route on the deciding node
    arrivals: dict[str, Arrival] = field(default_factory=dict)  # endpoint ip → its side
    addrs: dict[str, str] = field(default_factory=dict)  # deciding node's dev → its IPv4
    probe: list[str] = field(default_factory=list)  # lines from --probe
    host_link: str = "kl0"  # the host's link on the node network (a VM lab's bridge is not kl0)
    sources: list[str] = field(default_factory=list)  # the debug endpoints the facts were read from


@dataclass(frozen=True)
class Step:
    title: str
    lines: tuple[str, ...]


# --- the explanation (pure) ----------------------------------------------------------------------


def brief(hop: Hop) -> str:
    """The rule without its comment (the comment is shown beside it)."""
    words = hop.args()
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "-m" and i + 1 < len(words) and words[i + 1] == "comment":
            i += 2
            continue
        if words[i] == "--comment":
            i += 2
            continue
        out.append(words[i])
        i += 1
    return " ".join(out)


def hop_line(hop: Hop) -> str:
    note = f'   "{hop.comment}"' if hop.comment else ""
    return f"{hop.table} {hop.chain}: {brief(hop)}{note}"


def common_prefix(paths: Sequence[tuple[Hop, ...]]) -> tuple[Hop, ...]:
    if not paths:
        return ()
    n = min(len(p) for p in paths)
    i = 0
    while i < n and all(p[i] == paths[0][i] for p in paths):
        i += 1
    return paths[0][:i]


def owner_text(spot: Spot | None) -> str:
    if spot is None:
        return "no pod or node of the lab holds this address"
    if spot.kind == "pod":
        return f"pod {spot.name} on {spot.node}"
    return spot.name if spot.kind == "host" else f"node {spot.name}"


def mark_reason(hop: Hop, src: str, cluster_cidr: str) -> str:
    words = hop.args()
    if hop.chain.startswith("KUBE-SEP-") and "-s" in words:
        return (
            f"hairpin: the endpoint {words[words.index('-s') + 1].removesuffix('/32')} is the source itself "
            f"({hop.chain}); without SNAT it would answer itself directly and the reply would skip the un-DNAT"
        )
    if hop.chain.startswith(("KUBE-SVC-", "KUBE-SVL-")) and "-s" in words:
        return f"the source {src} is not in the cluster CIDR {cluster_cidr} ({hop.chain}: ! -s {cluster_cidr})"
    if hop.chain.startswith("KUBE-EXT-"):
        return (
            f'NodePort/external traffic ({hop.chain}: "{hop.comment}") is masqueraded '
            "so the reply returns via this node"
        )
    return f"{hop.chain}: {hop.comment or brief(hop)}"


def explain(f: Facts) -> list[Step]:
    w, src, tgt = f.walk, f.source, f.target
    steps: list[Step] = []

    # 1. where it starts
    start: list[str] = []
    if src.kind == "pod":
        start.append(f"pod {src.name}, IP {src.ip}, netns {src.netns}, on node {src.node}")
        start.append(f"It leaves the pod's eth0 and arrives on {src.node}'s bridge cni0: nat PREROUTING runs there.")
    elif src.kind == "node":
        start.append(f"node {src.name} (netns {src.netns}), source address {w.packet.src}")
        start.append(f"A packet {src.name} sends itself: nat OUTPUT runs in {src.name}.")
    else:
        start.append(f"the host (root namespace, {src.ip} on {f.host_link})")
        if f.host_route is not None:
            start.append(f"`{f.host_route.query}` → {f.host_route.text()}")
        start.append(f"It arrives on {f.node}'s eth0: nat PREROUTING runs in {f.node}.")
    start.append(f"to {tgt.label}: {tgt.proto} {tgt.ip}:{tgt.port}")
    steps.append(Step("Start", tuple(start)))

    # 2. the nat walk on the deciding node
    nat: list[str] = []
    dnat = [b for b in w.branches if b.verdict == "DNAT"]
    others = [b for b in w.branches if b.verdict != "DNAT"]
    paths = [b.nat for b in w.branches]
    shared = common_prefix(paths) if len(paths) > 1 else (paths[0] if paths else ())
    nat.append(f"({f.node}'s iptables-save, from its network agent) nat {w.hook}:")
    nat += ["  " + hop_line(h) for h in shared]
    if dnat:
        svc_chain = next((h.target for h in shared if h.target.startswith(("KUBE-SVC-", "KUBE-SVL-"))), "")
        if len(dnat) > 1:
            nat.append(f"  {svc_chain or 'the service chain'} picks one of {len(dnat)} endpoints at random "
                       "(-m statistic --mode random; the last rule takes the rest):")  # fmt: skip
        for b in dnat:
            rest = b.nat[len(shared) :]
            sep = next((h for h in b.nat if h.target.startswith("KUBE-SEP-")), None)
            prob = "the only endpoint" if len(dnat) == 1 else "the rest"
            if sep is not None and sep.probability is not None:
                pick = next((h for h in b.nat if h.probability is not None and h.target == sep.target), sep)
                prob = "--probability " + _prob_text(pick)
            arrival = f.arrivals.get(b.packet.dst)
            who = owner_text(arrival.owner if arrival else None)
            nat.append(
                f"  → {sep.target if sep else '?'} ({prob}; chance {b.chance:.1%}): DNAT to {b.endpoint} ({who})"
            )
            nat += ["      " + hop_line(h) for h in rest]
        for chain, seconds in w.affinity:
            nat.append(
                f"  note: sessionAffinity ClientIP on {chain}: a client seen in the last {seconds} s goes back to "
                "its endpoint (-m recent --rcheck); this first-connection view shows the random choice"
            )
    for b in others:
        if b.verdict in ("REJECT", "DROP"):
            nat.append(f"  no DNAT: the filter table decides ({b.verdict})")
            nat += ["  " + hop_line(h) for h in deciding(b.filter)]
            if b.verdict == "REJECT":
                nat.append('  → the sender gets an ICMP port unreachable at once ("connection refused", not a hang)')
            else:
                nat.append("  → the packet is dropped (the sender times out)")
        else:
            nat.append(
                f"  no KUBE-SERVICES rule matches {tgt.ip}:{tgt.port}/{tgt.proto}: not a service address or port; "
                "the packet is routed unchanged"
            )
    steps.append(Step(f"{f.node}: the nat table (kube-proxy's rules)", tuple(nat)))

    # 3. masquerade
    masq: list[str] = []
    for b in [x for x in w.branches if x.verdict not in ("REJECT", "DROP")]:
        dest = b.endpoint or b.packet.dst
        reasons = [mark_reason(h, w.packet.src, f.cluster_cidr) for h in b.mark_reasons]
        snat = b.snat_rule
        if b.masquerade and snat is not None:
            route = f.routes.get(b.packet.dst)
            addr = f.addrs.get(route.dev, "") if route else ""
            to = f"{addr} ({f.node}'s address on {route.dev})" if route and addr else "the egress interface's address"
            why = "; ".join(reasons) if reasons else f"{snat.chain}: {snat.comment or brief(snat)}"
            if not reasons and snat.chain.startswith("KLCNI-"):
                why = (
                    f'the CNI plugin\'s ipMasq ({snat.chain}, "{snat.comment}"): pod traffic to an address outside '
                    f"the cluster CIDR {f.cluster_cidr} leaves with the node's address"
                )
            by = (
                "KUBE-POSTROUTING MASQUERADE (marked 0x4000 by KUBE-MARK-MASQ)"
                if reasons
                else snat.chain + " MASQUERADE"
            )
            masq.append(f"{dest}: SNAT by {by}: source {w.packet.src} → {to}")
            masq.append(f"    why: {why}")
        else:
            who = "the endpoint" if b.endpoint else "the destination"
            masq.append(f"{dest}: not marked for masquerade, no SNAT: {who} sees the source {w.packet.src}")
    if not masq:
        masq.append("nothing leaves: the connection is refused/dropped before POSTROUTING")
    steps.append(Step("Masquerade (KUBE-MARK-MASQ → POSTROUTING)", tuple(masq)))

    # 4. the route
    route_lines: list[str] = []
    for b in [x for x in w.branches if x.verdict not in ("REJECT", "DROP")]:
        dst = b.packet.dst
        r = f.routes.get(dst)
        a = f.arrivals.get(dst)
        if r is None:
            route_lines.append(f"{dst}: (no route looked up)")
            continue
        route_lines.append(f"{dst}: `{r.query}` in {f.node} → {r.text()}")
        if b.delivered_locally or r.kind == "local":
            route_lines.append(f"    delivered to {f.node} itself")
        elif a is not None and a.node == f.node and r.dev == "cni0":
            route_lines.append(f"    the same node's bridge cni0 → {owner_text(a.owner)}" + _pod_end(a))
        elif a is not None and r.gateway:
            route_lines.append(f"    over the node network ({r.dev}) to {a.node} ({r.gateway})")
            if a.route is not None:
                route_lines.append(f"    then on {a.node}: `{a.route.query}` → {a.route.text()}")
            route_lines.append(f"    → {owner_text(a.owner)}" + _pod_end(a))
        elif a is not None:
            route_lines.append(f"    on the node network ({r.dev}) → {owner_text(a.owner)}")
    if not route_lines:
        route_lines.append("no route: the packet does not leave " + f.node)
    steps.append(Step("Route", tuple(route_lines)))

    # 5. the reply
    reply: list[str] = []
    for b in [x for x in w.branches if x.verdict not in ("REJECT", "DROP")]:
        dst = b.endpoint or f"{b.packet.dst}:{b.packet.dport}"
        undo = []
        if b.masquerade:
            undo.append("un-SNAT")
        if b.endpoint:
            undo.append(f"un-DNAT (source back to {tgt.ip}:{tgt.port})")
        a = f.arrivals.get(b.packet.dst)
        if a is not None and a.owner is None:
            reply.append(f"{dst}: nobody in the lab holds this address, so nothing answers (the connection times out)")
            continue
        how = f"conntrack on {f.node} reverses it: " + " and ".join(undo) if undo else "no NAT to undo"
        back = ""
        if a is not None and a.node and a.node != f.node:
            back = f"routed back to {f.node} (where it was NATed) → " if undo else f"routed back to {f.node} → "
        reply.append(f"{dst} answers → {back}{how} → {src.name} {w.packet.src}")
    if not reply:
        reply.append("no reply: the connection was refused/dropped on " + f.node)
    steps.append(Step("Reply", tuple(reply)))
    if f.probe:
        steps.append(Step("Probe (one real connection)", tuple(f.probe)))
    if f.sources:
        steps.append(Step("Read from (the nodes' authenticated debug endpoints)", tuple(f.sources)))
    return steps


def _prob_text(hop: Hop) -> str:
    words = hop.args()
    return words[words.index("--probability") + 1] if "--probability" in words else f"{hop.probability}"


def deciding(hops: Sequence[Hop]) -> list[Hop]:
    """The hops on the way to the last one (the verdict), without detours that returned."""
    kept: list[Hop] = []
    for h in reversed(hops):
        if not kept or h.target == kept[-1].chain:
            kept.append(h)
    return kept[::-1]


def _pod_end(a: Arrival) -> str:
    if a.owner is None or a.owner.kind != "pod":
        return ""
    veth = f" via {a.veth}" if a.veth else ""
    return f" (netns {a.owner.netns}{veth})"


def render(steps: Sequence[Step]) -> str:
    out: list[str] = []
    for i, s in enumerate(steps, 1):
        out.append(f"{i}. {s.title}")
        out += ["   " + line for line in s.lines]
    return "\n".join(out) + "\n"


def parse_conntrack(text: str, sport: int) -> tuple[str, str] | None:
    """(reply source ip:port = the endpoint, the whole line) for the entry of our source port."""
    for line in text.splitlines():
        words = line.split()
        kv = [w.split("=", 1) for w in words if "=" in w]
        sports = [v for k, v in kv if k == "sport"]
        if sports and sports[0] == str(sport):
            srcs = [v for k, v in kv if k == "src"]
            ports = [v for k, v in kv if k == "sport"]
            if len(srcs) >= 2 and len(ports) >= 2:
                return f"{srcs[1]}:{ports[1]}", line.strip()
    return None


# --- argument parsing (pure) ---------------------------------------------------------------------


def in_lab(ip: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return any(addr in net for net in LAB_RANGES)


def parse_address(text: str) -> tuple[str, int]:
    ip, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise TraceError(f"--to {text!r}: expected IP:PORT (e.g. 10.96.0.2:80)")
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise TraceError(f"--to {text!r}: {ip!r} is not an IPv4 address") from None
    if not in_lab(ip):
        raise TraceError(
            f"--to {text!r}: {ip} is not a lab address (pods {POD_NETWORK}, services {SERVICE_NETWORK}, "
            f"nodes {NODE_NETWORK}); kubelab trace only looks at and probes the lab"
        )
    return ip, int(port)


# --- the driver ----------------------------------------------------------------------------------

#: The node components' authenticated debug endpoints (HTTPS on each node's InternalIP).
NETAGENT_PORT = 9098  # the network agent's /debug/network and /debug/network/route (netplugin/debug.py)
PROXY_PORT = 10253  # the proxy's /debug/rules (proxy/server.py)
# A node's /debug/network forks ip and iptables-save once per link, pod and table: milliseconds on
# the namespace lab, but over 10 s on a VM under software emulation with six VMs on two cores
# (seen in the HA VM test); so a long read timeout there (connecting keeps ApiClient's 10 s: a node
# that is down still fails fast). The API itself keeps 10 s.
API_TIMEOUT = 10.0
NODE_DEBUG_TIMEOUT = 60.0


def _run(argv: Sequence[str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def internal_ip(node: dict[str, Any]) -> str:
    addrs = (node.get("status") or {}).get("addresses") or []
    return next((str(a["address"]) for a in addrs if a.get("type") == "InternalIP" and a.get("address")), "")


class Lab:
    """The running cluster, read-only, as ``kubelab trace`` sees it: the API (the admin kubeconfig's
    credentials) and each node's debug endpoints at its InternalIP (Node ``status.addresses``):

    - ``https://<ip>:9098/debug/network``: the network agent's view of the node — addresses, routes,
      each local pod's veth/IP/MAC, the nat and filter tables (``iptables-save``) and its policy chains;
    - ``https://<ip>:9098/debug/network/route?to=&from=&iif=``: the node kernel's route lookup;
    - ``https://<ip>:10253/debug/rules?format=json``: the proxy's last applied rules (a cross-check).

    The same credentials (client certificate or token) authenticate to the nodes as to the API
    server; the nodes check them with a TokenReview/SubjectAccessReview. Nothing is run on a node
    and no namespace is entered: the same code reads the namespace lab, the VMs and any cluster
    running kubelab's node components. Only ``--probe``, which acts, runs a command in the source's
    namespace (``exec``: ``lab.tracefetch``). The host's own route lookup runs here, on the host.
    """

    def __init__(self, kubeconfig: str | None = None, *, config: ClientConfig | None = None) -> None:
        from controlplane.client.kubeconfig import load_kubeconfig

        self.config = config if config is not None else load_kubeconfig(str(kubeconfig))
        self._node_ips: dict[str, str] | None = None  # InternalIP → node name, read when first needed
        self._host: tuple[tuple[str, ...], str] | None = None
        self._network: dict[str, dict[str, Any]] = {}
        self.sources: list[str] = []  # the endpoints read, for the reader

    @property
    def node_ips(self) -> dict[str, str]:
        if self._node_ips is None:
            nodes = self.get("/api/v1/nodes").get("items", [])
            self._node_ips = {internal_ip(n): n["metadata"]["name"] for n in nodes if internal_ip(n)}
        return self._node_ips

    @property
    def host_bridges(self) -> tuple[str, ...]:
        if self._host is None:
            self._host = self._host_side()
        return self._host[0]

    @property
    def host_ip(self) -> str:
        if self._host is None:
            self._host = self._host_side()
        return self._host[1]

    def pod_interface(self, netns: str, node: str) -> str:
        """The pod's side of its veth as its node's network agent sees it (``eth0 IP MAC``)."""
        pods = self.network(node).get("pods", [])
        p = next((p for p in pods if p.get("netns") == netns), None)
        if p is None:
            return f"{node}'s network agent lists no netns {netns}"
        side = f"(host side {p.get('veth')} on {p.get('bridge')})"
        return f"{p.get('ifname', '?')} {p.get('ip', '?')} {p.get('mac', '?')} {side}"

    # --- the API ---------------------------------------------------------------------------------

    def _client(self, server: str, timeout: float = API_TIMEOUT) -> Any:
        import dataclasses

        from controlplane.client.rest import ApiClient

        return ApiClient(server, config=dataclasses.replace(self.config, server=server), timeout=timeout)

    def get(self, path: str) -> dict[str, Any]:
        try:
            with self._client(self.config.server) as client:
                answer = client.request("GET", path)
        except errors.NotFound:
            raise KeyError(path) from None
        except errors.ApiError as exc:
            raise TraceError(f"the API server answered {exc.code} for {path}: {exc.message}") from exc
        except (OSError, ValueError, httpx.HTTPError) as exc:
            raise TraceError(
                f"the API server at {self.config.server} does not answer ({exc}): is the lab up? `kubelab status`"
            ) from exc
        return answer if isinstance(answer, dict) else {}

    def pod(self, ns: str, name: str) -> dict[str, Any]:
        try:
            return self.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        except KeyError:
            raise TraceError(f"no pod {ns}/{name} (kubectl get pods -n {ns})") from None

    def pod_spot(self, pod: dict[str, Any]) -> Spot:
        from noded import names

        md = pod["metadata"]
        ns, name = md.get("namespace", "default"), md["name"]
        ip = (pod.get("status") or {}).get("podIP", "")
        node = (pod.get("spec") or {}).get("nodeName", "")
        if not ip or not node:
            raise TraceError(f"pod {ns}/{name} has no IP yet (not running on a node)")
        return Spot("pod", f"{ns}/{name}", ip, node, names.netns_name(ns, name, md.get("uid", "")))

    # --- the nodes' debug endpoints --------------------------------------------------------------

    def node_ip(self, node: str) -> str:
        ip = next((ip for ip, name in self.node_ips.items() if name == node), "")
        if not ip:
            raise TraceError(f"node {node}: no InternalIP in its Node status (kubectl get node {node} -o wide)")
        return ip

    def fetch(self, node: str, port: int, path: str, params: dict[str, str] | None = None) -> Any:
        """GET a node component's debug endpoint with the admin credentials."""
        server = f"https://{self.node_ip(node)}:{port}"
        what = {NETAGENT_PORT: "network agent", PROXY_PORT: "proxy"}.get(port, "component")
        try:
            with self._client(server, NODE_DEBUG_TIMEOUT) as client:
                answer = client.request("GET", path, params=params)
        except errors.ApiError as exc:
            raise TraceError(f"{node}'s {what} at {server}{path} answered {exc.code}: {exc.message}") from exc
        except (OSError, ValueError, httpx.HTTPError) as exc:
            raise TraceError(
                f"{node}'s {what} at {server}{path} does not answer ({exc}): is it running with its debug "
                "endpoint (--debug-bind-address and the TLS flags)?"
            ) from exc
        entry = f"{node}: {server}{path}"
        if entry not in self.sources:
            self.sources.append(entry)
        return answer

    def network(self, node: str) -> dict[str, Any]:
        if node not in self._network:
            answer = self.fetch(node, NETAGENT_PORT, "/debug/network")
            self._network[node] = answer if isinstance(answer, dict) else {}
        return self._network[node]

    def has_netns(self, netns: str, node: str) -> bool:
        return any(p.get("netns") == netns for p in self.network(node).get("pods", []))

    def nic(self, node: str) -> str:
        """The node's link holding its InternalIP (eth0 in the namespace lab, eth1/enp0s8 on VMs)."""
        ip = self.node_ip(node)
        return next((dev for dev, a in self.addrs(node).items() if a == ip), "eth0")

    def route(self, node: str, *args: str) -> Route:
        """``ip route get ARGS`` on ``node`` (asked of its network agent), or here for ``""`` (the host)."""
        if not node:
            res = _run(["ip", "-j", "route", "get", *args])
            return Route.parse("", " ".join(["ip", "route", "get", *args]), res.stdout or res.stderr)
        params = {"to": args[0]}
        words = list(args[1:])
        for key, value in zip(words[::2], words[1::2], strict=False):
            params[key] = value
        answer = self.fetch(node, NETAGENT_PORT, "/debug/network/route", params)
        query = answer.get("query", "") if isinstance(answer, dict) else ""
        if not isinstance(answer, dict) or "routes" not in answer:
            error = answer.get("error", "no answer") if isinstance(answer, dict) else str(answer)
            return Route.parse(node, query, error)
        return Route.parse(node, query, json.dumps(answer["routes"]))

    def addrs(self, node: str) -> dict[str, str]:
        return dict(self.network(node).get("addresses") or {})

    def save(self, node: str) -> str:
        text = str((self.network(node).get("iptables") or {}).get("text", ""))
        if "KUBE-SERVICES" not in text:  # cross-check with what the proxy says it applied
            try:
                rules = self.fetch(node, PROXY_PORT, "/debug/rules", {"format": "json"})
            except TraceError:
                return text
            if isinstance(rules, dict) and "KUBE-SERVICES" in str(rules.get("rules", "")):
                raise TraceError(f"{node}: the proxy reports rules (/debug/rules) that the node's tables do not show")
        return text

    def veth_of(self, pod_netns: str, node: str) -> str:
        pods = self.network(node).get("pods", [])
        return next((str(p.get("veth", "")) for p in pods if p.get("netns") == pod_netns), "")

    def exec(self, netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in a node's or pod's namespace: only ``--probe`` does (``lab.tracefetch``)."""
        from lab import tracefetch

        return tracefetch.probe_exec(self, netns, list(argv), timeout)

    def _host_side(self) -> tuple[tuple[str, ...], str]:
        """This host's links on the node network (kl0; a VM lab's bridge) and its address there."""
        res = _run(["ip", "-j", "-4", "addr"])
        links: list[str] = []
        host_ip = HOST_IP
        try:
            items = json.loads(res.stdout or "[]")
        except ValueError:
            items = []
        for link in items:
            for a in link.get("addr_info", []):
                net = ipaddress.IPv4Network(f"{a.get('local')}/{a.get('prefixlen', 32)}", strict=False)
                mine = a.get("local") not in self.node_ips
                if mine and any(ipaddress.IPv4Address(ip) in net for ip in self.node_ips):
                    links.append(str(link["ifname"]))
                    host_ip = str(a["local"])
        return tuple(links), host_ip


def resolve_source(lab: Lab, text: str, ns: str) -> Spot:
    kind, _, name = text.partition("/")
    if text == "host":
        return Spot("host", "host", lab.host_ip)
    if kind == "pod" and name:
        spot = lab.pod_spot(lab.pod(ns, name))
        if not lab.has_netns(spot.netns, spot.node):
            raise TraceError(f"pod {spot.name}: {spot.node}'s network agent lists no netns {spot.netns}")
        return spot
    if kind == "node" and name:
        for ip, node in sorted(lab.node_ips.items(), key=lambda kv: kv[1]):
            if node == name:
                return Spot("node", node, ip, node, node)
        raise TraceError(f"no node {name!r} in this lab (nodes: {', '.join(sorted(lab.node_ips.values()))})")
    raise TraceError(f"--from {text!r}: expected pod/NAME, node/NAME or host")


def resolve_target(lab: Lab, text: str, ns: str, proto: str | None) -> Target:
    kind, _, rest = text.partition("/")
    if kind in ("svc", "service") and rest:
        name, _, port_text = rest.partition(":")
        try:
            svc = lab.get(f"/api/v1/namespaces/{ns}/services/{name}")
        except KeyError:
            raise TraceError(f"no service {ns}/{name} (kubectl get services -n {ns})") from None
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        listed = ", ".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" + (f" ({p['name']})" if p.get("name") else "")
                           for p in ports)  # fmt: skip
        if port_text:
            chosen = [p for p in ports if str(p.get("port")) == port_text or p.get("name") == port_text]
        else:
            chosen = ports if len(ports) == 1 else []
            if len(ports) > 1:
                raise TraceError(f"service {ns}/{name} has several ports ({listed}): say which, svc/{name}:PORT")
        if proto:
            chosen = [p for p in chosen if p.get("protocol", "TCP").lower() == proto]
        if not chosen:
            what = f"port {port_text}" if port_text else "port"
            raise TraceError(f"service {ns}/{name} has no {proto + ' ' if proto else ''}{what} "
                             f"(its ports: {listed or 'none'})")  # fmt: skip
        p = chosen[0]
        vip = spec.get("clusterIP", "")
        if not vip or vip == "None":
            raise TraceError(f"service {ns}/{name} is headless (no ClusterIP): trace a pod instead")
        label = f"service {ns}/{name}:{p.get('port')} (ClusterIP {vip})"
        return Target(vip, int(p["port"]), p.get("protocol", "TCP").lower(), label)
    if kind == "pod" and rest:
        name, _, port_text = rest.partition(":")
        if not port_text.isdigit():
            raise TraceError(f"--to {text!r}: a pod needs a port, pod/{name}:PORT")
        spot = lab.pod_spot(lab.pod(ns, name))
        return Target(spot.ip, int(port_text), proto or "tcp", f"pod {spot.name} on {spot.node}")
    ip, port = parse_address(text)
    label = f"address {ip}"
    if ipaddress.IPv4Address(ip) in SERVICE_NETWORK:
        label = f"service address {ip}"
        for svc in lab.get("/api/v1/services").get("items", []):
            if (svc.get("spec") or {}).get("clusterIP") == ip:
                md = svc["metadata"]
                label = f"service {md.get('namespace')}/{md['name']}:{port} (ClusterIP {ip})"
    elif ip in lab.node_ips:
        label = f"node {lab.node_ips[ip]}"
        if port in NODEPORT_RANGE:
            label = f"NodePort {port} on node {lab.node_ips[ip]}"
            for svc in lab.get("/api/v1/services").get("items", []):
                if any(p.get("nodePort") == port for p in (svc.get("spec") or {}).get("ports") or []):
                    md = svc["metadata"]
                    label += f" (service {md.get('namespace')}/{md['name']})"
    return Target(ip, port, proto or "tcp", label)


def owners(lab: Lab) -> dict[str, Spot]:
    """Every pod IP and node IP of the lab → its owner."""
    out: dict[str, Spot] = {ip: Spot("node", name, ip, name, name) for ip, name in lab.node_ips.items()}
    out[lab.host_ip] = Spot("host", "host", lab.host_ip)
    for pod in lab.get("/api/v1/pods").get("items", []):
        if (pod.get("status") or {}).get("podIP") and (pod.get("spec") or {}).get("nodeName"):
            if (pod.get("spec") or {}).get("hostNetwork"):
                continue
            spot = lab.pod_spot(pod)
            out.setdefault(spot.ip, spot)
    return out


def collect(lab: Lab, src: Spot, tgt: Target) -> Facts:
    host_route = None
    if src.kind == "host":
        host_route = lab.route("", tgt.ip)
        node = lab.node_ips.get(host_route.gateway) or lab.node_ips.get(tgt.ip, "")
        if host_route.dev not in lab.host_bridges or not node:
            raise TraceError(f"the host's route to {tgt.ip} ({host_route.text()}) does not lead into the lab")
    else:
        node = src.node
    addrs = lab.addrs(node)
    save = lab.save(node)
    src_ip = src.ip
    if src.kind == "node":
        src_ip = lab.route(node, tgt.ip).prefsrc or src.ip
    tracer = Tracer.from_save(save, (*addrs.values(),))
    walk = tracer.walk(src_ip, tgt.ip, tgt.port, tgt.proto)
    who = owners(lab)
    facts = Facts(src, tgt, node, walk, host_route=host_route, addrs=addrs)
    facts.host_link = ", ".join(lab.host_bridges) or "the node network"
    for b in walk.branches:
        if b.verdict in ("REJECT", "DROP"):
            continue
        ep = b.packet.dst
        if ep in facts.routes:
            continue
        if src.kind == "pod":
            r = lab.route(node, ep, "from", src_ip, "iif", "cni0")
        elif src.kind == "host":
            r = lab.route(node, ep, "from", src_ip, "iif", lab.nic(node))
        else:
            r = lab.route(node, ep)
        facts.routes[ep] = r
        owner = who.get(ep)
        if r.gateway:
            dest_node = lab.node_ips.get(r.gateway, "")
        elif owner is not None and owner.kind == "pod":
            dest_node = owner.node
        else:
            dest_node = owner.node if owner is not None else node
        dest_route = None
        if dest_node and dest_node != node and owner is not None and owner.kind == "pod":
            seen_src = addrs.get(r.dev, src_ip) if b.masquerade else src_ip
            dest_route = lab.route(dest_node, ep, "from", seen_src, "iif", lab.nic(dest_node))
            if dest_route.kind.startswith("error"):
                dest_route = lab.route(dest_node, ep)
        veth = lab.veth_of(owner.netns, owner.node) if owner is not None and owner.kind == "pod" else ""
        facts.arrivals[ep] = Arrival(dest_node, owner, dest_route, veth)
    return facts


PROBE = """
import socket, sys
ip, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
s.bind(("0.0.0.0", 0))
try:
    s.connect((ip, port))
    if proto == "udp":
        s.send(b"kubelab trace probe\\n")
    print(s.getsockname()[1], "connected")
except OSError as e:
    print(s.getsockname()[1], "failed:", e)
s.close()
"""


def probe(lab: Lab, src: Spot, facts: Facts) -> list[str]:
    """One connection from the source to the traced (lab) address, and its conntrack entry."""
    tgt = facts.target
    if not in_lab(tgt.ip):  # parse_address refused it already; never probe outside the lab
        raise TraceError(f"refusing to probe {tgt.ip}: not a lab address")
    netns = src.netns if src.kind in ("pod", "node") else ""
    argv = (sys.executable, "-c", PROBE, tgt.ip, str(tgt.port), tgt.proto, str(PROBE_TIMEOUT))
    res = lab.exec(netns, *argv, timeout=PROBE_TIMEOUT + 8)
    where = f"netns {netns}" if netns else "the host"
    first = (res.stdout.strip().splitlines() or [res.stderr.strip() or "no output"])[0]
    lines = [f"from {where}: {tgt.proto} connect to {tgt.ip}:{tgt.port} (timeout {PROBE_TIMEOUT:.0f} s): {first}"]
    sport_text = first.split()[0] if first.split() else ""
    if not sport_text.isdigit():
        return lines
    sport = int(sport_text)
    ct = lab.exec(facts.node, "conntrack", "-L", "-p", tgt.proto, "-d", tgt.ip, "--dport", str(tgt.port))
    found = parse_conntrack(ct.stdout, sport)
    q = f"conntrack -L -p {tgt.proto} -d {tgt.ip} --dport {tgt.port}"
    if found is None:
        lines.append(f"`{q}` in {facts.node}: no entry for source port {sport} (refused before conntrack confirmed it)")
        return lines
    endpoint, line = found
    lines.append(f"`{q}` in {facts.node}, source port {sport}:")
    lines.append(f"  {line}")
    lines.append(f"probed endpoint: {endpoint} (the source of the reply tuple conntrack expects)")
    return lines


def cmd_trace(args: argparse.Namespace) -> int:
    try:
        if args.to and ":" in args.to and "/" not in args.to:
            parse_address(args.to)  # refuse non-lab addresses before looking for a lab
        from lab import tracefetch  # the VM lab when there is no one-machine lab here

        lab = tracefetch.open_lab(args.kubeconfig)
        src = resolve_source(lab, args.source, args.namespace)
        tgt = resolve_target(lab, args.to, args.namespace, args.proto)
        facts = collect(lab, src, tgt)
        if args.probe:
            facts.probe = probe(lab, src, facts)
        facts.sources = list(lab.sources)
    except TraceError as exc:
        print(f"kubelab trace: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(explain(facts)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trace",
        help="explain a connection's path: DNAT chain, endpoints, masquerade, routes, reply",
        description="kubelab trace --from pod/client --to svc/hello:80 [--probe]",
    )
    p.add_argument("--from", dest="source", default="host", help="pod/NAME, node/NAME or host (default host)")
    p.add_argument("--to", required=True, help="svc/NAME[:PORT], pod/NAME:PORT or IP:PORT (a lab address)")
    p.add_argument("-n", "--namespace", default="default", help="namespace of pod/ and svc/ names")
    p.add_argument(
        "--proto", choices=["tcp", "udp"], default=None, help="protocol (default: the service port's, or tcp)"
    )
    p.add_argument("--probe", action="store_true", help="make one real connection and show its conntrack entry")
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="the cluster to trace (default: the lab's admin kubeconfig, the VM lab's, then $KUBECONFIG)",
    )
    p.set_defaults(func=cmd_trace)
