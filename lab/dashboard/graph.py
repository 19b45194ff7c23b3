"""The topology picture: cluster objects → boxes and lines → Graphviz DOT → SVG/PNG.

Role: one pure function, ``build(Snapshot) -> Graph``, turns what the API says (Nodes, Pods,
Services, EndpointSlices) plus what only the machine knows (each pod's host-side veth, the lab's
node links from ``lab/topology.py``) into the picture a learner wants: each node as a box holding
its ``eth0`` and its ``cni0`` bridge with the pods (IP, veth) on it, the node network ``kl0`` and the
host, the routes between nodes' pod CIDRs, and each Service VIP with lines to its *ready*
endpoints. ``to_dot`` writes it as DOT; Graphviz's ``dot`` (Debian's ``graphviz``) lays it out —
the layout is a real graph layout, never computed here. ``kubelab topology`` and the dashboard draw
the same picture through these functions.

Invariants: ``build`` and ``to_dot`` are pure and deterministic (sorted input → identical DOT, so
an unchanged cluster redraws identically); every box has a stable SVG id (``pod:NS/NAME``,
``svc:NS/NAME``, ``node:NAME``, …) that the page and the browser test find it by.

Concurrency: none here; ``render`` runs one ``dot`` process per call.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab import topology

Obj = dict[str, Any]
DOT_TIMEOUT = 20.0


class GraphError(Exception):
    """``dot`` is missing or failed: the message says which."""


@dataclass(frozen=True)
class Box:
    id: str
    label: str
    kind: str  # host | kl0 | eth0 | cni0 | pod | vip
    group: str = ""  # the node box (cluster) it is drawn in: a node's name, "services", or ""
    state: str = ""  # pod phase, node readiness: picks the colour


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    kind: str  # wire | veth | forward | route | endpoint
    label: str = ""


@dataclass
class Graph:
    boxes: list[Box] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # group id → its title

    def box(self, box_id: str) -> Box | None:
        return next((b for b in self.boxes if b.id == box_id), None)


@dataclass(frozen=True)
class Snapshot:
    """What the picture is drawn from. ``veths``: pod key ``ns/name`` → its host-side veth (may be
    partial: a pod whose veth is not known yet is drawn without it)."""

    nodes: list[Obj]
    pods: list[Obj]
    services: list[Obj]
    slices: list[Obj]
    veths: Mapping[str, str] = field(default_factory=dict)
    lab: topology.LabNet | None = None  # the one-machine lab's plan: kl-cp and the node links


def key(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def node_ip(node: Obj) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address", ""))
    return ""


def node_ready(node: Obj) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def bridge_address(pod_cidr: str) -> str:
    """cni0's address: the first host of the node's pod CIDR (DESIGN.md §3: 10.244.N.1/24)."""
    try:
        net = ipaddress.ip_network(pod_cidr, strict=False)
    except ValueError:
        return ""
    return f"{net.network_address + 1}/{net.prefixlen}"


def service_ports(svc: Obj) -> str:
    parts = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        text = f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        if p.get("targetPort") not in (None, p.get("port")):
            text += f"→{p.get('targetPort')}"
        if p.get("nodePort"):
            text += f" NodePort {p['nodePort']}"
        parts.append(text)
    return ", ".join(parts)


def ready_endpoints(slices: Iterable[Obj]) -> dict[str, list[tuple[str, str]]]:
    """Service key ``ns/name`` → its ready endpoints as (address, pod key or "")."""
    out: dict[str, list[tuple[str, str]]] = {}
    for sl in slices:
        md = sl.get("metadata") or {}
        svc = (md.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            continue
        eps = out.setdefault(f"{md.get('namespace', '')}/{svc}", [])
        for ep in sl.get("endpoints") or []:
            # EndpointSlice semantics: a nil `ready` means ready (discovery/v1 EndpointConditions)
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            ref = ep.get("targetRef") or {}
            pod = f"{ref.get('namespace', md.get('namespace', ''))}/{ref['name']}" if ref.get("kind") == "Pod" else ""
            for addr in ep.get("addresses") or []:
                if (str(addr), pod) not in eps:
                    eps.append((str(addr), pod))
    return out


def build(snap: Snapshot) -> Graph:
    g = Graph()
    host_routes = []
    g.boxes.append(Box("kl0", f"{topology.BRIDGE}\\nnode network {topology.NODE_NETWORK}", "kl0"))
    owner_of_ip: dict[str, str] = {}  # node and pod IPs → box id (for endpoints and routes)
    links = {n.name: n.host_veth for n in snap.lab.nodes} if snap.lab else {}
    if snap.lab is not None:
        cp = snap.lab.control_plane
        g.groups[cp.name] = f"{cp.name} (control plane)"
        g.boxes.append(Box(f"eth0:{cp.name}", f"eth0 {cp.ip}\\nAPI server :6443, DNS :53", "eth0", cp.name))
        g.edges.append(Edge("kl0", f"eth0:{cp.name}", "wire", cp.host_veth))
        owner_of_ip[cp.ip] = f"eth0:{cp.name}"
    nodes = sorted(snap.nodes, key=key)
    for n in nodes:
        name = str((n.get("metadata") or {}).get("name", ""))
        ip, cidr = node_ip(n), str((n.get("spec") or {}).get("podCIDR") or "")
        ready = node_ready(n)
        g.groups[name] = f"{name} ({'Ready' if ready else 'NotReady'})"
        g.boxes.append(Box(f"eth0:{name}", f"eth0 {ip}", "eth0", name, "Ready" if ready else "NotReady"))
        g.edges.append(Edge("kl0", f"eth0:{name}", "wire", links.get(name, "")))
        if ip:
            owner_of_ip[ip] = f"eth0:{name}"
        if cidr:
            g.boxes.append(Box(f"cni0:{name}", f"cni0 {bridge_address(cidr)}\\npod CIDR {cidr}", "cni0", name))
            g.edges.append(Edge(f"eth0:{name}", f"cni0:{name}", "forward"))
            if ip:
                host_routes.append(f"{cidr} via {ip}")
    # routes between nodes' pod CIDRs (host-gw, kept by each node's network agent): one line per pair
    # of nodes, labelled with the route each of the two holds to the other
    routed = [n for n in nodes if (n.get("spec") or {}).get("podCIDR") and node_ip(n)]
    for i, a in enumerate(routed):
        for b in routed[i + 1 :]:
            an, bn = a["metadata"]["name"], b["metadata"]["name"]
            label = f"{an}: {b['spec']['podCIDR']} via {node_ip(b)}\\n{bn}: {a['spec']['podCIDR']} via {node_ip(a)}"
            g.edges.append(Edge(f"cni0:{an}", f"cni0:{bn}", "route", label))
    route_text = "".join(f"\\l{r}" for r in host_routes)
    g.boxes.insert(0, Box("host", f"host (root namespace)\\n{topology.HOST_IP} on {topology.BRIDGE}{route_text}\\l",
                          "host"))  # fmt: skip
    g.edges.insert(0, Edge("host", "kl0", "wire"))
    node_names = {str(n["metadata"]["name"]) for n in nodes}
    pod_keys: set[str] = set()
    for p in sorted(snap.pods, key=key):
        spec, status = p.get("spec") or {}, p.get("status") or {}
        node = str(spec.get("nodeName") or "")
        if node not in node_names or spec.get("hostNetwork"):
            continue
        k = key(p)
        pod_ip = str(status.get("podIP") or "")
        phase = "Terminating" if (p.get("metadata") or {}).get("deletionTimestamp") else str(status.get("phase", ""))
        veth = snap.veths.get(k, "")
        label = f"{k}\\n{pod_ip or '(no IP yet)'}  {phase}" + (f"\\n{veth}" if veth else "")
        g.boxes.append(Box(f"pod:{k}", label, "pod", node, phase))
        if (p.get("spec") or {}) and g.box(f"cni0:{node}") is not None:
            g.edges.append(Edge(f"cni0:{node}", f"pod:{k}", "veth", veth))
        pod_keys.add(k)
        if pod_ip:
            owner_of_ip.setdefault(pod_ip, f"pod:{k}")
    eps = ready_endpoints(snap.slices)
    for s in sorted(snap.services, key=key):
        vip = str((s.get("spec") or {}).get("clusterIP") or "")
        k = key(s)
        shown_vip = "headless" if vip in ("", "None") else f"VIP {vip}"
        g.boxes.append(Box(f"svc:{k}", f"svc {k}\\n{shown_vip}\\n{service_ports(s)}", "vip", "services"))
        g.groups["services"] = "Services (kube-proxy's DNAT on every node)"
        for addr, pod in eps.get(k, []):
            target = f"pod:{pod}" if pod in pod_keys else owner_of_ip.get(addr, "")
            if target:
                g.edges.append(Edge(f"svc:{k}", target, "endpoint", addr))
    return g


# --- DOT --------------------------------------------------------------------------------------

STYLE = {
    "host": 'shape=box style="rounded,filled" fillcolor="#e8eefc"',
    "kl0": 'shape=box style="filled" fillcolor="#fde9c8" penwidth=2',
    "eth0": 'shape=box style="rounded,filled" fillcolor="#ffffff"',
    "cni0": 'shape=box style="filled" fillcolor="#fff3b0"',
    "pod": 'shape=box style="rounded,filled"',
    "vip": 'shape=box style="rounded,filled" fillcolor="#f3e1fb"',
}
POD_COLOUR = {"Running": "#d7f5d0", "Pending": "#fff1c2", "Terminating": "#eeeeee", "Failed": "#f9d0d0"}
EDGE_STYLE = {
    "wire": 'dir=none penwidth=2 color="#c07a00"',
    "forward": 'dir=none color="#888888"',
    "veth": 'dir=none color="#2f7d32"',
    "route": 'dir=both style=dashed color="#1f5fbf" fontcolor="#1f5fbf" constraint=false',
    "endpoint": 'color="#8e3bb5" fontcolor="#8e3bb5"',
}


def q(text: str) -> str:
    """A DOT double-quoted string; ``\\n``/``\\l`` written by ``build`` are kept as line breaks."""
    return '"' + text.replace('"', '\\"') + '"'


def _attrs(box: Box) -> str:
    extra = STYLE.get(box.kind, "")
    if box.kind == "pod":
        extra += f' fillcolor="{POD_COLOUR.get(box.state, "#eeeeee")}"'
    if box.kind == "eth0" and box.state == "NotReady":
        extra += ' color="#c62828" penwidth=2'
    css = f"{box.kind}" + (f" {box.state.lower()}" if box.state else "")
    return f"id={q(box.id)} class={q(css)} label={q(box.label)} {extra}"


def to_dot(g: Graph) -> str:
    lines = [
        "digraph kubelab {",
        '  graph [rankdir=TB fontname="Helvetica" fontsize=11 nodesep=0.25 ranksep=0.5 newrank=true];',
        '  node [fontname="Helvetica" fontsize=10];',
        '  edge [fontname="Helvetica" fontsize=8];',
    ]
    for b in g.boxes:
        if not b.group:
            lines.append(f"  {q(b.id)} [{_attrs(b)}];")
    for i, (gid, title) in enumerate(g.groups.items()):
        kind = "services" if gid == "services" else "node"
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    id={q(kind + ":" + gid if kind == "node" else "services")} label={q(title)} '
                     f'style="rounded" color="#555555" fontsize=11;')  # fmt: skip
        for b in g.boxes:
            if b.group == gid:
                lines.append(f"    {q(b.id)} [{_attrs(b)}];")
        lines.append("  }")
    for e in g.edges:
        label = f" label={q(e.label)}" if e.label else ""
        eid = f"{e.kind}:{e.src}->{e.dst}"
        lines.append(f"  {q(e.src)} -> {q(e.dst)} [id={q(eid)} class={q(e.kind)} {EDGE_STYLE[e.kind]}{label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str = "svg") -> bytes:
    """Lay the graph out with Graphviz: ``dot -Tsvg`` or ``dot -Tpng``."""
    if fmt not in ("svg", "png"):
        raise GraphError(f"unknown picture format {fmt!r} (svg or png)")
    try:
        res = subprocess.run(["dot", f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                             timeout=DOT_TIMEOUT, check=False)  # fmt: skip
    except FileNotFoundError:
        raise GraphError("`dot` is not installed (Debian package graphviz): run `make deps`") from None
    except subprocess.TimeoutExpired:
        raise GraphError(f"`dot -T{fmt}` took longer than {DOT_TIMEOUT:.0f}s") from None
    if res.returncode != 0:
        raise GraphError(f"`dot -T{fmt}` failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def svg_element(svg: bytes) -> str:
    """The ``<svg>`` element alone (no XML prolog or DOCTYPE), to inline into the page."""
    text = svg.decode()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text
