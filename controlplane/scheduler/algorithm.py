"""The scheduling algorithm: filters and scores over plain node/pod dicts (pure; no I/O).

Role: ``schedule(pod, snapshot) -> Decision``. Given one pod and a ``Snapshot`` of the nodes and
the pods already bound (or assumed) to them, pick the best feasible node or explain, per node, why
none fits — in kube-scheduler's own words, so the ``FailedScheduling`` event reads like Kubernetes'.

Filters (kube-scheduler's default plugin order; a node fails on the first plugin that rejects it):

1. NodeUnschedulable — ``spec.unschedulable`` (unless tolerated): "node(s) were unschedulable".
2. TaintToleration — untolerated ``NoSchedule``/``NoExecute`` taint: "node(s) had untolerated taint
   {key: value}". A node whose Ready condition is not True counts as tainted
   ``node.kubernetes.io/not-ready`` (False) or ``node.kubernetes.io/unreachable`` (Unknown) even
   before the node-lifecycle controller adds those taints, so DaemonSet-like tolerations work the
   same way in both cases.
3. NodeAffinity — ``nodeSelector`` and required node affinity (In, NotIn, Exists, DoesNotExist,
   Gt, Lt; terms ORed, expressions ANDed): "node(s) didn't match Pod's node affinity/selector".
4. NodePorts — a requested hostPort already used: "node(s) didn't have free ports for the
   requested pod ports".
5. NodeResourcesFit — requests vs allocatable minus what is bound: "Too many pods",
   "Insufficient cpu", "Insufficient memory" (all that apply).
6. InterPodAffinity — required pod affinity / anti-affinity of the incoming pod, and required
   anti-affinity of pods already placed: "node(s) didn't match pod affinity rules",
   "node(s) didn't match pod anti-affinity rules", "node(s) didn't satisfy existing pods
   anti-affinity rules". Any ``topologyKey`` works (``kubernetes.io/hostname`` is per node).

Scores (each 0–100, weighted as kube-scheduler's defaults): NodeResourcesFit least-allocated (1),
NodeResourcesBalancedAllocation (1), NodeAffinity preferred terms (2, normalised), TaintToleration
PreferNoSchedule (3, normalised, fewer is better), spreading pods of the same controller owner
across nodes (2, normalised; what SelectorSpread/default PodTopologySpread achieve). Ties are
broken at random (reservoir sampling, like kube-scheduler), so equal nodes fill evenly.

Performance invariants: quantities are parsed once per pod (``PodInfo``) and once per node
(``NodeInfo``, with running totals updated by ``Snapshot.add_pod``/``remove_pod``); the per-node
loop touches only precomputed numbers for "simple" pods (no selectors, affinity, ports or
tolerations) on "clean" nodes (schedulable, Ready, no hard taints). Like kube-scheduler's
``percentageOfNodesToScore``, large clusters stop filtering once enough feasible nodes are found,
starting each search where the previous one stopped.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Quantities have one home (controlplane/api/quantity.py); re-exported for the scheduler's callers.
from controlplane.api.quantity import QuantityError as QuantityError
from controlplane.api.quantity import int_value as int_value
from controlplane.api.quantity import milli_value as milli_value
from controlplane.api.quantity import parse_quantity as parse_quantity
from controlplane.api.selectors import LabelSelector

# -- Kubernetes wording (pkg/scheduler/framework/plugins/...) -------------------------------------
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_POD_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
PREEMPTION_NO_VICTIMS = "No preemption victims found for incoming pod"

TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
HOSTNAME_LABEL = "kubernetes.io/hostname"

# Requests assumed for scoring when a container asks for nothing (kube-scheduler's non-zero defaults).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

WEIGHT_LEAST_ALLOCATED = 1
WEIGHT_BALANCED = 1
WEIGHT_NODE_AFFINITY = 2
WEIGHT_TAINT = 3
WEIGHT_SPREAD = 2

MIN_FEASIBLE_NODES_TO_FIND = 100
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50


# -- label selection -------------------------------------------------------------------------------
def node_selector_requirement_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expr.get("key", "")
    op = expr.get("operator", "")
    values = expr.get("values") or []
    has = key in labels
    if op == "In":
        return has and labels[key] in values
    if op == "NotIn":
        return not has or labels[key] not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        if not has or len(values) != 1:
            return False
        try:
            actual, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return actual > bound if op == "Gt" else actual < bound
    return False


def node_selector_term_matches(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """One NodeSelectorTerm: all matchExpressions (labels) and matchFields (metadata.name) hold.
    An empty term matches nothing (as in Kubernetes)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(node_selector_requirement_matches(e, labels) for e in exprs):
        return False
    fields_view = {"metadata.name": name}
    return all(node_selector_requirement_matches(f, fields_view) for f in fields)


# -- taints and tolerations -------------------------------------------------------------------------
def toleration_tolerates(tol: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = tol.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = tol.get("key") or ""
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return not key or key == taint.get("key")
    if key != taint.get("key"):
        return False
    return (tol.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(toleration_tolerates(t, taint) for t in tolerations)


def taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '') or ''}}}"


# -- pods --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AffinityTerm:
    selector: LabelSelector
    namespaces: frozenset[str] | None  # None: every namespace
    topology_key: str

    def matches_pod(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return self.selector.matches(labels)


def _affinity_terms(terms: Any, pod_namespace: str) -> tuple[AffinityTerm, ...]:
    out = []
    for t in terms or []:
        if not isinstance(t, Mapping):
            continue
        namespaces: frozenset[str] | None
        if t.get("namespaceSelector") is not None and not t.get("namespaces"):
            # namespaceSelector {} selects all namespaces; label-based namespace selection would need
            # namespace labels, which a pure function does not have: treat any selector as "all".
            namespaces = None
        else:
            namespaces = frozenset(t.get("namespaces") or [pod_namespace])
        out.append(
            AffinityTerm(
                LabelSelector.from_dict(t.get("labelSelector")),
                namespaces,
                str(t.get("topologyKey") or HOSTNAME_LABEL),
            )
        )
    return tuple(out)


def _requests(pod: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(cpu milli, memory bytes, non-zero cpu milli, non-zero memory) the pod asks for.

    Effective request = max(sum over app containers, max over init containers) + overhead, as in
    kube-scheduler; a container with no request counts 0 (100m / 200Mi for scoring)."""
    spec = pod.get("spec") or {}
    cpu = mem = nz_cpu = nz_mem = 0
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        c_cpu = milli_value(req["cpu"]) if "cpu" in req else 0
        c_mem = int_value(req["memory"]) if "memory" in req else 0
        cpu += c_cpu
        mem += c_mem
        nz_cpu += c_cpu if "cpu" in req else DEFAULT_MILLI_CPU
        nz_mem += c_mem if "memory" in req else DEFAULT_MEMORY
    for c in spec.get("initContainers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        if "cpu" in req:
            cpu = max(cpu, milli_value(req["cpu"]))
            nz_cpu = max(nz_cpu, milli_value(req["cpu"]))
        if "memory" in req:
            mem = max(mem, int_value(req["memory"]))
            nz_mem = max(nz_mem, int_value(req["memory"]))
    overhead = spec.get("overhead") or {}
    if "cpu" in overhead:
        cpu += milli_value(overhead["cpu"])
        nz_cpu += milli_value(overhead["cpu"])
    if "memory" in overhead:
        mem += int_value(overhead["memory"])
        nz_mem += int_value(overhead["memory"])
    return cpu, mem, nz_cpu, nz_mem


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass
class PodInfo:
    key: str
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    cpu: int
    mem: int
    nz_cpu: int
    nz_mem: int
    host_ports: tuple[tuple[str, str, int], ...]
    tolerations: tuple[Mapping[str, Any], ...]
    node_selector: dict[str, str]
    required_terms: tuple[Mapping[str, Any], ...] | None
    preferred_terms: tuple[tuple[int, Mapping[str, Any]], ...]
    affinity_terms: tuple[AffinityTerm, ...]
    anti_affinity_terms: tuple[AffinityTerm, ...]
    owner: str | None
    simple: bool
    pod: Mapping[str, Any] = field(repr=False, default_factory=dict)


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    """Precompute everything the filters and scores need from a pod (raises QuantityError)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    cpu, mem, nz_cpu, nz_mem = _requests(pod)
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            hp = p.get("hostPort")
            if hp:
                ports.append((str(p.get("protocol") or "TCP"), str(p.get("hostIP") or "0.0.0.0"), int(hp)))
    affinity = spec.get("affinity") or {}
    node_aff = affinity.get("nodeAffinity") or {}
    required = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    required_terms = tuple(required.get("nodeSelectorTerms") or []) if isinstance(required, Mapping) else None
    preferred = tuple(
        (int(p.get("weight") or 0), p.get("preference") or {})
        for p in node_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    )
    pod_aff = affinity.get("podAffinity") or {}
    pod_anti = affinity.get("podAntiAffinity") or {}
    aff_terms = _affinity_terms(pod_aff.get("requiredDuringSchedulingIgnoredDuringExecution"), namespace)
    anti_terms = _affinity_terms(pod_anti.get("requiredDuringSchedulingIgnoredDuringExecution"), namespace)
    owner = next(
        (str(o.get("uid") or o.get("name")) for o in meta.get("ownerReferences") or [] if o.get("controller")),
        None,
    )
    tolerations = tuple(spec.get("tolerations") or [])
    node_selector = dict(spec.get("nodeSelector") or {})
    host_ports = tuple(ports)
    # "Simple": only resources can reject it on a clean node (schedulable, no NoSchedule/NoExecute
    # taints). Tolerations do not matter there — which is why the DefaultTolerationSeconds ones that
    # admission adds to every pod must not push it off the fast path.
    simple = not (node_selector or required_terms is not None or host_ports or aff_terms or anti_terms)
    return PodInfo(
        key=f"{namespace}/{meta.get('name', '')}",
        namespace=namespace,
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        cpu=cpu,
        mem=mem,
        nz_cpu=nz_cpu,
        nz_mem=nz_mem,
        host_ports=host_ports,
        tolerations=tolerations,
        node_selector=node_selector,
        required_terms=required_terms,
        preferred_terms=preferred,
        affinity_terms=aff_terms,
        anti_affinity_terms=anti_terms,
        owner=owner,
        simple=simple,
        pod=pod,
    )


# -- nodes --------------------------------------------------------------------------------------------
def node_ready_status(node: Mapping[str, Any]) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status") or "Unknown")
    return "Unknown"


class NodeInfo:
    """One node and the running totals of what is bound to it."""

    __slots__ = (
        "alloc_cpu",
        "alloc_mem",
        "alloc_pods",
        "anti_affinity_pods",
        "clean",
        "free_cpu",
        "free_mem",
        "free_pods",
        "hard_taints",
        "labels",
        "name",
        "node",
        "nz_cpu",
        "nz_mem",
        "owners",
        "pods",
        "ports",
        "prefer_taints",
        "req_cpu",
        "req_mem",
        "unschedulable",
    )

    def __init__(self, node: Mapping[str, Any]) -> None:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.node = node
        self.name: str = str(meta.get("name", ""))
        self.labels: dict[str, str] = dict(meta.get("labels") or {})
        self.alloc_cpu = milli_value(alloc["cpu"]) if "cpu" in alloc else 0
        self.alloc_mem = int_value(alloc["memory"]) if "memory" in alloc else 0
        self.alloc_pods = int_value(alloc["pods"]) if "pods" in alloc else 0
        self.unschedulable = bool(spec.get("unschedulable"))
        taints = [t for t in spec.get("taints") or [] if isinstance(t, Mapping)]
        ready = node_ready_status(node)
        keys = {t.get("key") for t in taints}
        if ready == "False" and TAINT_NOT_READY not in keys:
            taints.append({"key": TAINT_NOT_READY, "effect": "NoSchedule"})
        elif ready != "True" and ready != "False" and TAINT_UNREACHABLE not in keys:
            taints.append({"key": TAINT_UNREACHABLE, "effect": "NoSchedule"})
        self.hard_taints = tuple(t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute"))
        self.prefer_taints = tuple(t for t in taints if t.get("effect") == "PreferNoSchedule")
        self.clean = not self.unschedulable and not self.hard_taints
        self.req_cpu = self.req_mem = self.nz_cpu = self.nz_mem = 0
        # allocatable minus requested, kept current by add/remove (the filter's hot path reads these)
        self.free_cpu = self.alloc_cpu
        self.free_mem = self.alloc_mem
        self.free_pods = self.alloc_pods
        self.pods: dict[str, PodInfo] = {}
        self.ports: Counter[tuple[str, str, int]] = Counter()
        self.owners: Counter[str] = Counter()
        self.anti_affinity_pods = 0

    def add(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove(p.key)
        self.pods[p.key] = p
        self.req_cpu += p.cpu
        self.req_mem += p.mem
        self.free_cpu -= p.cpu
        self.free_mem -= p.mem
        self.free_pods -= 1
        self.nz_cpu += p.nz_cpu
        self.nz_mem += p.nz_mem
        for port in p.host_ports:
            self.ports[port] += 1
        if p.owner:
            self.owners[p.owner] += 1
        if p.anti_affinity_terms:
            self.anti_affinity_pods += 1

    def remove(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        self.req_cpu -= p.cpu
        self.req_mem -= p.mem
        self.free_cpu += p.cpu
        self.free_mem += p.mem
        self.free_pods += 1
        self.nz_cpu -= p.nz_cpu
        self.nz_mem -= p.nz_mem
        for port in p.host_ports:
            self.ports[port] -= 1
            if self.ports[port] <= 0:
                del self.ports[port]
        if p.owner:
            self.owners[p.owner] -= 1
            if self.owners[p.owner] <= 0:
                del self.owners[p.owner]
        if p.anti_affinity_terms:
            self.anti_affinity_pods -= 1
        return p

    def rebind(self, node: Mapping[str, Any]) -> NodeInfo:
        """A fresh NodeInfo for an updated Node object, keeping the bound pods."""
        fresh = NodeInfo(node)
        for p in self.pods.values():
            fresh.add(p)
        return fresh


class Snapshot:
    """Nodes and the pods bound or assumed to them. Not thread-safe: the scheduler owns the lock."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.order: list[str] = []
        self.infos: list[NodeInfo] = []  # parallel to ``order`` (the hot loop avoids dict lookups)
        self.prefer_tainted_nodes = 0  # nodes with PreferNoSchedule taints (scored only if any)
        self.pod_node: dict[str, str] = {}
        # Pods bound to nodes we have not seen (yet): counted as soon as the node appears.
        self._orphans: dict[str, dict[str, PodInfo]] = {}
        self.anti_affinity_pods = 0
        self.next_start = 0

    def set_node(self, node: Mapping[str, Any]) -> None:
        name = str((node.get("metadata") or {}).get("name", ""))
        old = self.nodes.get(name)
        if old is not None:
            self.anti_affinity_pods -= old.anti_affinity_pods
            self.prefer_tainted_nodes -= 1 if old.prefer_taints else 0
            info = old.rebind(node)
            self.infos[self.order.index(name)] = info
        else:
            info = NodeInfo(node)
            self.order.append(name)
            self.infos.append(info)
            for p in self._orphans.pop(name, {}).values():
                info.add(p)
        self.anti_affinity_pods += info.anti_affinity_pods
        self.prefer_tainted_nodes += 1 if info.prefer_taints else 0
        self.nodes[name] = info

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is None:
            return
        i = self.order.index(name)
        del self.order[i]
        del self.infos[i]
        self.prefer_tainted_nodes -= 1 if info.prefer_taints else 0
        self.anti_affinity_pods -= info.anti_affinity_pods
        if info.pods:
            self._orphans[name] = dict(info.pods)

    def add_pod(self, p: PodInfo, node_name: str) -> None:
        self.remove_pod(p.key)
        self.pod_node[p.key] = node_name
        info = self.nodes.get(node_name)
        if info is None:
            self._orphans.setdefault(node_name, {})[p.key] = p
            return
        info.add(p)
        if p.anti_affinity_terms:
            self.anti_affinity_pods += 1

    def remove_pod(self, key: str) -> None:
        node_name = self.pod_node.pop(key, None)
        if node_name is None:
            return
        info = self.nodes.get(node_name)
        if info is None:
            self._orphans.get(node_name, {}).pop(key, None)
            return
        p = info.remove(key)
        if p is not None and p.anti_affinity_terms:
            self.anti_affinity_pods -= 1

    def node_of(self, key: str) -> str | None:
        return self.pod_node.get(key)

    def __len__(self) -> int:
        return len(self.nodes)


# -- filters ------------------------------------------------------------------------------------------
@dataclass
class InterPodState:
    """Topology values (per key) that the incoming pod's required (anti-)affinity allows/forbids."""

    anti_forbidden: list[tuple[str, set[str]]]  # per incoming anti term: (topologyKey, values with a match)
    affinity_needed: list[tuple[str, set[str]]]  # per incoming affinity term: (topologyKey, values with a match)
    affinity_self_ok: bool  # no pod matches any affinity term anywhere, but the pod matches its own terms
    existing_forbidden: dict[str, set[str]]  # topologyKey -> values forbidden by existing pods' anti-affinity


def prepare_inter_pod(p: PodInfo, snap: Snapshot) -> InterPodState | None:
    if not p.affinity_terms and not p.anti_affinity_terms and snap.anti_affinity_pods == 0:
        return None
    anti = [(t.topology_key, set[str]()) for t in p.anti_affinity_terms]
    aff = [(t.topology_key, set[str]()) for t in p.affinity_terms]
    existing: dict[str, set[str]] = {}
    any_affinity_match = False
    for info in snap.nodes.values():
        labels = info.labels
        for other in info.pods.values():
            if other.key == p.key:
                continue
            for (tk, values), term in zip(anti, p.anti_affinity_terms, strict=True):
                if tk in labels and term.matches_pod(other.namespace, other.labels):
                    values.add(labels[tk])
            for (tk, values), term in zip(aff, p.affinity_terms, strict=True):
                if term.matches_pod(other.namespace, other.labels):
                    any_affinity_match = True
                    if tk in labels:
                        values.add(labels[tk])
            for term in other.anti_affinity_terms:
                if term.topology_key in labels and term.matches_pod(p.namespace, p.labels):
                    existing.setdefault(term.topology_key, set()).add(labels[term.topology_key])
    self_ok = (
        bool(p.affinity_terms)
        and not any_affinity_match
        and all(t.matches_pod(p.namespace, p.labels) for t in p.affinity_terms)
    )
    return InterPodState(anti, aff, self_ok, existing)


def filter_node(p: PodInfo, info: NodeInfo, inter: InterPodState | None = None) -> list[str]:
    """Why ``p`` cannot run on ``info`` (Kubernetes' reasons), or [] if it can."""
    labels = info.labels
    # 1. NodeUnschedulable
    if info.unschedulable and not tolerated(p.tolerations, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}):
        return [REASON_UNSCHEDULABLE]
    # 2. TaintToleration
    for taint in info.hard_taints:
        if not tolerated(p.tolerations, taint):
            return [taint_reason(taint)]
    # 3. NodeAffinity (nodeSelector AND required terms)
    for k, v in p.node_selector.items():
        if labels.get(k) != v:
            return [REASON_NODE_AFFINITY]
    if p.required_terms is not None and not any(
        node_selector_term_matches(t, labels, info.name) for t in p.required_terms
    ):
        return [REASON_NODE_AFFINITY]
    # 4. NodePorts (0.0.0.0 conflicts with every IP of the same protocol and port)
    if p.host_ports and info.ports:
        for proto, ip, port in p.host_ports:
            for uproto, uip, uport in info.ports:
                if uproto == proto and uport == port and (ip == uip or "0.0.0.0" in (ip, uip)):
                    return [REASON_PORTS]
    # 5. NodeResourcesFit
    reasons = []
    if len(info.pods) + 1 > info.alloc_pods:
        reasons.append(REASON_TOO_MANY_PODS)
    if p.cpu and info.req_cpu + p.cpu > info.alloc_cpu:
        reasons.append("Insufficient cpu")
    if p.mem and info.req_mem + p.mem > info.alloc_mem:
        reasons.append("Insufficient memory")
    if reasons:
        return reasons
    # 6. InterPodAffinity (kube-scheduler's order: affinity, anti-affinity, existing pods' anti-affinity)
    if inter is not None:
        for tk, values in inter.affinity_needed:
            if inter.affinity_self_ok:
                if tk not in labels:
                    return [REASON_POD_AFFINITY]
            elif tk not in labels or labels[tk] not in values:
                return [REASON_POD_AFFINITY]
        for tk, values in inter.anti_forbidden:
            if tk in labels and labels[tk] in values:
                return [REASON_POD_ANTI_AFFINITY]
        for tk, values in inter.existing_forbidden.items():
            if tk in labels and labels[tk] in values:
                return [REASON_EXISTING_ANTI_AFFINITY]
    return []


# Reasons a preemption (evicting lower-priority pods) could in principle resolve.
_RESOLVABLE = {
    REASON_TOO_MANY_PODS,
    "Insufficient cpu",
    "Insufficient memory",
    REASON_PORTS,
    REASON_POD_ANTI_AFFINITY,
    REASON_EXISTING_ANTI_AFFINITY,
}


# -- scores -------------------------------------------------------------------------------------------
def least_allocated(p: PodInfo, info: NodeInfo) -> float:
    total = 0.0
    for req, alloc in ((info.nz_cpu + p.nz_cpu, info.alloc_cpu), (info.nz_mem + p.nz_mem, info.alloc_mem)):
        if alloc > 0 and req <= alloc:
            total += (alloc - req) * 100.0 / alloc
    return total / 2


def balanced_allocation(p: PodInfo, info: NodeInfo) -> float:
    if info.alloc_cpu <= 0 or info.alloc_mem <= 0:
        return 0.0
    fc = min(1.0, (info.nz_cpu + p.nz_cpu) / info.alloc_cpu)
    fm = min(1.0, (info.nz_mem + p.nz_mem) / info.alloc_mem)
    # standard deviation of two fractions is |a-b|/2
    return (1.0 - abs(fc - fm) / 2) * 100.0


def preferred_affinity_raw(p: PodInfo, info: NodeInfo) -> int:
    return sum(w for w, term in p.preferred_terms if node_selector_term_matches(term, info.labels, info.name))


def untolerated_prefer_taints(p: PodInfo, info: NodeInfo) -> int:
    return sum(1 for t in info.prefer_taints if not tolerated(p.tolerations, t))


def score_nodes(p: PodInfo, nodes: list[NodeInfo], any_prefer_taints: bool = True) -> list[float]:
    """Weighted total score (higher is better) for each feasible node, in order.

    Least-allocated and balanced-allocation are fused into one loop over local variables: this is
    the hottest code of the scheduler (hundreds of nodes per pod)."""
    pc, pm = p.nz_cpu, p.nz_mem
    base: list[float] = []
    append = base.append
    for info in nodes:
        ac, am = info.alloc_cpu, info.alloc_mem
        rc, rm = info.nz_cpu + pc, info.nz_mem + pm
        if ac > 0 and am > 0:
            fc = rc / ac
            fm = rm / am
            la = ((1.0 - fc) * 100.0 if fc <= 1.0 else 0.0) + ((1.0 - fm) * 100.0 if fm <= 1.0 else 0.0)
            if fc > 1.0:
                fc = 1.0
            if fm > 1.0:
                fm = 1.0
            diff = fc - fm if fc >= fm else fm - fc
            append(WEIGHT_LEAST_ALLOCATED * la / 2 + WEIGHT_BALANCED * (1.0 - diff / 2) * 100.0)
        else:
            append(WEIGHT_LEAST_ALLOCATED * least_allocated(p, info) + WEIGHT_BALANCED * balanced_allocation(p, info))
    n = len(nodes)
    if p.preferred_terms:
        raw = [preferred_affinity_raw(p, i) for i in nodes]
        top = max(raw)
        if top > 0:
            for k in range(n):
                base[k] += WEIGHT_NODE_AFFINITY * raw[k] * 100.0 / top
    if any_prefer_taints and any(i.prefer_taints for i in nodes):
        taint_raw = [untolerated_prefer_taints(p, i) if i.prefer_taints else 0 for i in nodes]
        top_t = max(taint_raw)
        if top_t:
            for k in range(n):
                base[k] -= WEIGHT_TAINT * taint_raw[k] * 100.0 / top_t
    # Constant parts (a full taint score and, without an owner, a full spread score) are left out:
    # adding the same number to every node changes no decision.
    if p.owner:
        owner = p.owner
        counts = [i.owners.get(owner, 0) for i in nodes]
        top_c = max(counts)
        if top_c:
            f = WEIGHT_SPREAD * 100.0 / top_c
            for k in range(n):
                base[k] -= counts[k] * f
    return base


# -- the decision -------------------------------------------------------------------------------------
@dataclass
class Decision:
    node: str | None
    num_nodes: int
    reasons: Counter[str] = field(default_factory=Counter)  # reason -> how many nodes
    preemption: Counter[str] = field(default_factory=Counter)
    feasible: int = 0
    evaluated: int = 0

    def message(self) -> str:
        """kube-scheduler's FitError text (reasons sorted as strings, like Go's sort.Strings)."""
        if self.num_nodes == 0:
            return "no nodes available to schedule pods"
        parts = sorted(f"{v} {k}" for k, v in self.reasons.items())
        msg = f"0/{self.num_nodes} nodes are available: {', '.join(parts)}."
        if self.preemption:
            pre = sorted(f"{v} {k}" for k, v in self.preemption.items())
            msg += f" preemption: 0/{self.num_nodes} nodes are available: {', '.join(pre)}."
        return msg


def num_feasible_nodes_to_find(num_all: int, percentage: int | None = None) -> int:
    """kube-scheduler's ``numFeasibleNodesToFind`` (adaptive 50% − n/125, floor 5%, min 100 nodes)."""
    if num_all < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all
    pct = percentage or 0
    if pct <= 0:
        pct = max(5, BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_all // 125)
    if pct >= 100:
        return num_all
    return max(MIN_FEASIBLE_NODES_TO_FIND, num_all * pct // 100)


def schedule(
    p: PodInfo,
    snap: Snapshot,
    *,
    percentage_of_nodes_to_score: int | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Pick a node for ``p`` (filters, then scores over the feasible ones) or explain why none fits."""
    infos = snap.infos
    n = len(infos)
    decision = Decision(node=None, num_nodes=n)
    if n == 0:
        return decision
    want = num_feasible_nodes_to_find(n, percentage_of_nodes_to_score)
    inter = prepare_inter_pod(p, snap)
    feasible: list[NodeInfo] = []
    failed: dict[str, list[str]] = {}
    start = snap.next_start % n
    simple = p.simple and inter is None
    cpu, mem = p.cpu, p.mem
    evaluated = 0
    for info in itertools.chain(itertools.islice(infos, start, None), itertools.islice(infos, 0, start)):
        evaluated += 1
        # Fast path: only resources can reject a simple pod on a clean node.
        if (
            simple
            and info.clean
            and info.free_pods > 0
            and (not cpu or info.free_cpu >= cpu)
            and (not mem or info.free_mem >= mem)
        ):
            feasible.append(info)
            if len(feasible) >= want:
                break
            continue
        reasons = filter_node(p, info, inter)
        if reasons:
            failed[info.name] = reasons
        else:
            feasible.append(info)
            if len(feasible) >= want:
                break
    snap.next_start = (start + evaluated) % n
    decision.evaluated = evaluated
    decision.feasible = len(feasible)
    if not feasible:
        for reasons in failed.values():
            for r in reasons:
                decision.reasons[r] += 1
            if all(r in _RESOLVABLE for r in reasons):
                decision.preemption[PREEMPTION_NO_VICTIMS] += 1
            else:
                decision.preemption[PREEMPTION_NOT_HELPFUL] += 1
        return decision
    if len(feasible) == 1:
        decision.node = feasible[0].name
        return decision
    scores = score_nodes(p, feasible, snap.prefer_tainted_nodes > 0)
    best = max(scores)
    ties = [info for info, sc in zip(feasible, scores, strict=True) if sc >= best - 1e-9]
    chosen = ties[0] if len(ties) == 1 else ties[(rng or random).randrange(len(ties))]
    decision.node = chosen.name
    return decision
