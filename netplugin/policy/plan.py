"""NetworkPolicy → iptables filter rules for the pods of one node (pure).

Role: ``render(policies, pods, namespaces, node_name)`` returns the ``iptables-restore`` input
(filter table, ``--noflush``) that enforces the Kubernetes NetworkPolicy semantics for the pods
scheduled on ``node_name``. No I/O: the controller feeds it informer caches and hands the text to
a driver.

Chain layout (kube-router's ``KUBE-NWPLCY-*`` / Calico's per-endpoint chains, our prefix)::

    FORWARD, INPUT ─► KUBELAB-FIREWALL
                 1. ctstate RELATED,ESTABLISHED → ACCEPT   (replies; a connection allowed when it
                                                            started stays allowed)
                 2. -s <pod IP> → KUBELAB-POD-EG-<hash>     one per local pod isolated for egress
                 3. -d <pod IP> → KUBELAB-POD-IN-<hash>     one per local pod isolated for ingress
    KUBELAB-POD-IN-<hash>  (ns/pod)
                 clear mark 0x20000; → KUBELAB-NP-IN-<hash> for every policy selecting the pod;
                 mark not set → DROP; clear mark (fall through: kube-proxy's FORWARD rules follow)
    KUBELAB-NP-IN-<hash>   (ns/policy): one rule per (peer × port) of its ingress rules:
                 [-s peer] [-p proto --dport port[:end]] → MARK 0x20000
    KUBELAB-NP-EX-<hash>   an ipBlock with ``except``: except CIDRs → RETURN, else → MARK
    (egress: the same with POD-EG / NP-EG and -d for peers.)

Why a mark: a packet from a local pod to a local pod must pass both the source's egress and the
destination's ingress in the one FORWARD traversal, so "allowed" cannot be ACCEPT (which would end
the traversal before the second check); each policy chain marks, the pod chain drops unmarked
packets and clears the bit again. 0x20000 is clear of kube-proxy's 0x4000 (masquerade) and 0x8000
(drop) bits.

Semantics (networking.k8s.io/v1):
- a pod is isolated for ingress (egress) only if some policy in its namespace selects it and has
  ``Ingress`` (``Egress``) in policyTypes; traffic is then allowed if any rule of any of those
  policies allows it (a union; no deny rules);
- peers: ``podSelector`` (the policy's namespace), ``namespaceSelector`` (every pod of the matching
  namespaces), both (matching pods in matching namespaces), ``ipBlock`` minus ``except``; no
  ``from``/``to`` = every source/destination; no ``ports`` = every port;
- ports: protocol (TCP default), number, ``endPort`` range, or a named port resolved against the
  *destination* pod's ``containerPorts`` (ingress: the selected pod; egress: each peer pod; a
  named port cannot be resolved for an ipBlock peer, so that combination allows nothing);
- traffic the node itself originates (kubelet probes, ``curl`` from the node) leaves through
  OUTPUT, never FORWARD, so it is always allowed — as Calico, Cilium and kube-router allow
  host-to-local-pod traffic; traffic routed in from other nodes *is* filtered (allow their node
  IPs with an ipBlock);
- Services work because filter/FORWARD sees the packet after kube-proxy's DNAT (PREROUTING), so
  policies are written against pod IPs and target ports, as in Kubernetes.

Naming: ``<prefix>-<13 base32 chars of sha256(key)>`` (kube-proxy's hashing), every name ≤ 28
characters (the kernel's limit); every rule carries ``-m comment --comment "ns/name …"``.
Deterministic: the same inputs give byte-identical output (the controller skips equal syncs).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.api import errors
from controlplane.api.selectors import LabelSelector

Obj = Mapping[str, Any]

FIREWALL = "KUBELAB-FIREWALL"
PREFIXES = (
    "KUBELAB-FIREWALL",
    "KUBELAB-POD-IN-",
    "KUBELAB-POD-EG-",
    "KUBELAB-NP-IN-",
    "KUBELAB-NP-EG-",
    "KUBELAB-NP-EX-",
)
ALLOW_MARK = "0x20000"
# The jump from FORWARD: kept apart from the chains (iptables-restore --noflush cannot "ensure" a
# rule in a chain it does not own), inserted first by the driver.
# INPUT too: a local pod's packets to this node's own addresses (a service on the node) never
# cross FORWARD, and egress policies cover them as well; the -d <pod IP> ingress jumps never
# match there.
JUMPS: tuple[tuple[str, list[str]], ...] = (
    ("FORWARD", ["-m", "comment", "--comment", "kubelab network policies", "-j", FIREWALL]),
    ("INPUT", ["-m", "comment", "--comment", "kubelab network policies", "-j", FIREWALL]),
)


def is_owned_chain(name: str) -> bool:
    return name.startswith(PREFIXES)


def chain_name(prefix: str, key: str) -> str:
    digest = base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()
    return f"{prefix}{digest[:13]}"


def _meta(obj: Obj) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _key(obj: Obj) -> str:
    m = _meta(obj)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def _selector(raw: Any) -> LabelSelector:
    """A metav1.LabelSelector; a malformed one (the API server rejects those) selects nothing."""
    if not isinstance(raw, dict):
        return LabelSelector.nothing()
    try:
        return LabelSelector.from_dict(raw)
    except errors.BadRequest:
        return LabelSelector.nothing()


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    node: str
    named_ports: Mapping[tuple[str, str], int]  # (name, protocol) → containerPort

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_info(pod: Obj) -> PodInfo | None:
    """The policy-relevant view of a Pod, or None for pods policies do not apply to: no IP yet,
    host-network (their IP is the node's), or finished."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    try:
        if ipaddress.ip_address(str(ip)).version != 4:  # IPv4 rules (the lab is single-stack)
            return None
    except ValueError:
        return None
    ports: dict[tuple[str, str], int] = {}
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        for p in (c or {}).get("ports") or []:
            if p.get("name") and isinstance(p.get("containerPort"), int):
                ports.setdefault((p["name"], p.get("protocol") or "TCP"), p["containerPort"])
    m = _meta(pod)
    return PodInfo(
        namespace=str(m.get("namespace", "")),
        name=str(m.get("name", "")),
        ip=str(ip),
        labels=dict(m.get("labels") or {}),
        node=str(spec.get("nodeName") or ""),
        named_ports=ports,
    )


@dataclass
class Ruleset:
    """Chains in order of creation, each with its rules (argument lists after ``-A CHAIN``)."""

    chains: dict[str, list[list[str]]] = field(default_factory=dict)

    def chain(self, name: str) -> list[list[str]]:
        return self.chains.setdefault(name, [])

    def restore_text(self, stale: Iterable[str] = ()) -> str:
        """``iptables-restore --noflush`` input: declaring a chain flushes (or creates) it, so the
        result is exactly these rules; ``stale`` owned chains are flushed and deleted."""
        stale = sorted(set(stale) - set(self.chains))
        lines = ["*filter"]
        lines += [f":{c} - [0:0]" for c in [*self.chains, *stale]]
        for c, rules in self.chains.items():
            lines += [" ".join(["-A", c, *(_quote(a) for a in r)]) for r in rules]
        lines += [f"-X {c}" for c in stale]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", text]


def _mark_allowed() -> list[str]:
    return ["-j", "MARK", "--set-xmark", f"{ALLOW_MARK}/{ALLOW_MARK}"]


@dataclass(frozen=True)
class _Port:
    protocol: str
    port: int | None  # None: every port of the protocol
    end: int | None = None

    def args(self) -> list[str]:
        proto = self.protocol.lower()
        out = ["-p", proto]
        if self.port is not None:
            spec = f"{self.port}:{self.end}" if self.end and self.end != self.port else str(self.port)
            out += ["-m", proto, "--dport", spec]
        return out


def _resolve_ports(raw_ports: Any, dest: PodInfo | None) -> list[_Port] | None:
    """The rule's ports for one destination: None = every port and protocol; [] = nothing
    (only named ports that ``dest`` does not have, or cannot have: an ipBlock)."""
    if not raw_ports:
        return None
    out: list[_Port] = []
    for p in raw_ports:
        if not isinstance(p, dict):
            continue
        proto = str(p.get("protocol") or "TCP")
        port = p.get("port")
        if port is None:
            out.append(_Port(proto, None))
        elif isinstance(port, int):
            end = p.get("endPort")
            out.append(_Port(proto, port, end if isinstance(end, int) else None))
        elif isinstance(port, str) and port.isdigit():
            out.append(_Port(proto, int(port)))
        elif dest is not None and (port, proto) in dest.named_ports:
            out.append(_Port(proto, dest.named_ports[(port, proto)]))
    return out


def _has_named_port(raw_ports: Any) -> bool:
    return any(
        isinstance(p, dict) and isinstance(p.get("port"), str) and not p["port"].isdigit() for p in raw_ports or []
    )


@dataclass(frozen=True)
class _Peer:
    pods: tuple[PodInfo, ...] = ()
    cidr: str | None = None
    excepts: tuple[str, ...] = ()
    everyone: bool = False


class _World:
    """Pods and namespaces, indexed for selector evaluation."""

    def __init__(self, pods: Iterable[PodInfo], namespaces: Iterable[Obj]) -> None:
        self.pods = sorted(pods, key=lambda p: (p.namespace, p.name))
        self.ns_labels: dict[str, Mapping[str, str]] = {}
        for ns in namespaces:
            m = _meta(ns)
            self.ns_labels[str(m.get("name", ""))] = dict(m.get("labels") or {})

    def _ns_labels(self, name: str) -> Mapping[str, str]:
        # The API server labels every namespace kubernetes.io/metadata.name=<name>; a namespace
        # the informer has not seen yet still matches selectors on that label.
        labels = dict(self.ns_labels.get(name, {}))
        labels.setdefault("kubernetes.io/metadata.name", name)
        return labels

    def select(self, namespace: str, sel: LabelSelector) -> tuple[PodInfo, ...]:
        return tuple(p for p in self.pods if p.namespace == namespace and sel.matches(p.labels))

    def peer(self, policy_ns: str, raw: Any) -> _Peer | None:
        if not isinstance(raw, dict):
            return None
        block = raw.get("ipBlock")
        if isinstance(block, dict):
            try:
                net = ipaddress.ip_network(str(block.get("cidr")), strict=False)
                excepts = tuple(str(ipaddress.ip_network(str(e), strict=False)) for e in block.get("except") or [])
            except ValueError:
                return None
            if net.version != 4:  # these are IPv4 (iptables) rules; an IPv6 block matches no packet here
                return None
            return _Peer(cidr=str(net), excepts=excepts)
        ns_raw, pod_raw = raw.get("namespaceSelector"), raw.get("podSelector")
        if ns_raw is None and pod_raw is None:
            return None
        pod_sel = _selector(pod_raw) if pod_raw is not None else LabelSelector.everything()
        if ns_raw is None:
            return _Peer(pods=self.select(policy_ns, pod_sel))
        ns_sel = _selector(ns_raw)
        pods = tuple(p for p in self.pods if ns_sel.matches(self._ns_labels(p.namespace)) and pod_sel.matches(p.labels))
        return _Peer(pods=pods)


def _policy_types(spec: Mapping[str, Any]) -> set[str]:
    types = spec.get("policyTypes")
    if types:
        return {str(t) for t in types}
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}  # the API's defaulting


def render(policies: Iterable[Obj], pods: Iterable[Obj], namespaces: Iterable[Obj], node_name: str) -> Ruleset:
    """The filter chains enforcing ``policies`` for the pods on ``node_name`` (see module doc).
    With no local pod selected by any policy the result is an empty KUBELAB-FIREWALL."""
    infos = [i for i in (pod_info(p) for p in pods) if i is not None]
    world = _World(infos, namespaces)
    local = [p for p in world.pods if p.node == node_name]
    rs = Ruleset()
    fw = rs.chain(FIREWALL)
    pols = sorted((p for p in policies if isinstance(p.get("spec"), dict)), key=_key)

    selecting: dict[str, dict[str, list[Obj]]] = {"Ingress": {}, "Egress": {}}
    for pol in pols:
        ns = str(_meta(pol).get("namespace", ""))
        spec = pol["spec"]
        sel = _selector(spec.get("podSelector") if spec.get("podSelector") is not None else {})
        types = _policy_types(spec)
        for pod in local:
            if pod.namespace == ns and sel.matches(pod.labels):
                for t in types & {"Ingress", "Egress"}:
                    selecting[t].setdefault(pod.key, []).append(pol)

    if selecting["Ingress"] or selecting["Egress"]:
        fw.append(
            [
                *_comment("replies and established connections"),
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ]
        )
    by_key = {p.key: p for p in local}
    rendered: set[str] = set()
    for direction, tag, addr in (("Egress", "EG", "-s"), ("Ingress", "IN", "-d")):
        for pod_key in sorted(selecting[direction]):
            pod = by_key[pod_key]
            pod_chain = chain_name(f"KUBELAB-POD-{tag}-", pod_key)
            fw.append([*_comment(f"{pod_key} {direction.lower()}"), addr, f"{pod.ip}/32", "-j", pod_chain])
            rules = rs.chain(pod_chain)
            rules.append([*_comment(f"{pod_key}: start undecided"), "-j", "MARK", "--set-xmark", f"0x0/{ALLOW_MARK}"])
            for pol in selecting[direction][pod_key]:
                np_chain = chain_name(f"KUBELAB-NP-{tag}-", _key(pol))
                rules.append([*_comment(f"{_key(pol)} selects {pod_key}"), "-j", np_chain])
                if np_chain not in rendered:
                    rendered.add(np_chain)
                    _render_policy(
                        rs,
                        np_chain,
                        pol,
                        direction,
                        world,
                        [p for p in local if _selects(p, selecting[direction], pol)],
                    )
            rules.append(
                [
                    *_comment(f"{pod_key}: no policy allows this {direction.lower()}"),
                    "-m",
                    "mark",
                    "!",
                    "--mark",
                    f"{ALLOW_MARK}/{ALLOW_MARK}",
                    "-j",
                    "DROP",
                ]
            )
            rules.append([*_comment(f"{pod_key}: allowed"), "-j", "MARK", "--set-xmark", f"0x0/{ALLOW_MARK}"])
    return rs


def _selects(pod: PodInfo, selecting: Mapping[str, list[Obj]], pol: Obj) -> bool:
    return any(p is pol for p in selecting.get(pod.key, []))


def _render_policy(rs: Ruleset, chain: str, pol: Obj, direction: str, world: _World, targets: list[PodInfo]) -> None:
    """One policy's rules for one direction. ``targets``: the local pods it selects (ingress named
    ports are resolved on them)."""
    ns = str(_meta(pol).get("namespace", ""))
    rules = rs.chain(chain)
    key = _key(pol)
    field_name, peers_name = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    peer_flag, target_flag = ("-s", "-d") if direction == "Ingress" else ("-d", "-s")
    for i, rule in enumerate(pol["spec"].get(field_name) or []):
        if not isinstance(rule, dict):
            continue
        comment = _comment(f"{key} {field_name}[{i}]")
        raw_ports = rule.get("ports")
        named = _has_named_port(raw_ports)
        raw_peers = rule.get(peers_name)
        peers = [_Peer(everyone=True)] if not raw_peers else [p for p in (world.peer(ns, r) for r in raw_peers) if p]
        for j, peer in enumerate(peers):
            # (address match, destination pod the ports resolve on) pairs for this peer
            matches: list[tuple[list[str], PodInfo | None]] = []
            if direction == "Ingress":
                srcs: list[list[str]]
                if peer.everyone:
                    srcs = [[]]
                elif peer.cidr is not None:
                    srcs = [[peer_flag, peer.cidr]]
                else:
                    srcs = [[peer_flag, f"{p.ip}/32"] for p in peer.pods]
                if named:  # resolve on each selected pod, matching its address
                    matches = [([*s, target_flag, f"{t.ip}/32"], t) for t in targets for s in srcs]
                else:
                    matches = [(s, None) for s in srcs]
            else:
                if peer.everyone:
                    matches = [([peer_flag, f"{p.ip}/32"], p) for p in world.pods] if named else [([], None)]
                elif peer.cidr is not None:
                    matches = [([peer_flag, peer.cidr], None)]
                else:
                    matches = [([peer_flag, f"{p.ip}/32"], p) for p in peer.pods]
            for addr, dest in matches:
                ports = _resolve_ports(raw_ports, dest)
                port_args: list[list[str]] = [[]] if ports is None else [p.args() for p in ports]
                for pa in port_args:
                    if peer.excepts:
                        ex = chain_name("KUBELAB-NP-EX-", f"{key} {field_name}[{i}] peer[{j}]")
                        if ex not in rs.chains:
                            ex_rules = rs.chain(ex)
                            ex_rules += [[*comment, peer_flag, e, "-j", "RETURN"] for e in peer.excepts]
                            ex_rules.append([*comment, *_mark_allowed()])
                        rules.append([*comment, *addr, *pa, "-j", ex])
                    else:
                        rules.append([*comment, *addr, *pa, *_mark_allowed()])
