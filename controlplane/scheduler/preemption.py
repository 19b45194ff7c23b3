"""Preemption: which lower-priority pods to evict so a pending higher-priority pod fits.

Role: kube-scheduler's ``pkg/scheduler/framework/plugins/defaultpreemption`` and
``framework/preemption``, reduced to what kubelab's filters can resolve (node resources: pod count,
cpu, memory). Pure functions over the scheduler's ``Snapshot``; the scheduler does the I/O
(``status.nominatedNodeName`` on the preemptor, deleting the victims).

- ``select_victims(p, node)`` (``SelectVictimsOnNode``): remove every pod of lower priority than
  ``p`` from a copy of the node; if ``p`` still does not fit, the node is no candidate. Otherwise
  add them back one by one, highest priority first (earlier start first among equals), keeping each
  that still lets ``p`` fit ("reprieve"); the rest are the victims.
- ``pick_node(candidates)`` (``pickOneNodeForPreemption``): the node whose most important victim
  is least important, then the smallest sum of victim priorities, then the fewest victims, then
  the node name (deterministic).
- ``eligible(p, nominated_node_pods)`` (``PodEligibleToPreemptOthers``): a pod with
  ``preemptionPolicy: Never`` never preempts; a pod already nominated to a node where a
  lower-priority pod is terminating waits for it instead of preempting again.

Not modelled: PodDisruptionBudgets among victims (kube-scheduler prefers victims whose eviction
violates no budget), inter-pod affinity and host ports as resolvable reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.scheduler.algorithm import REASON_TOO_MANY_PODS, NodeInfo, PodInfo, Snapshot, filter_node

# The filter reasons removing pods can fix here.
RESOLVABLE = frozenset({REASON_TOO_MANY_PODS, "Insufficient cpu", "Insufficient memory"})


def priority(pod: Mapping[str, Any]) -> int:
    value = (pod.get("spec") or {}).get("priority")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _start(p: PodInfo) -> str:
    status = p.pod.get("status") or {}
    meta = p.pod.get("metadata") or {}
    return str(status.get("startTime") or meta.get("creationTimestamp") or "")


@dataclass(frozen=True)
class Candidate:
    node: str
    victims: tuple[PodInfo, ...]


def _fits(p: PodInfo, node: Mapping[str, Any], pods: Iterable[PodInfo]) -> bool:
    sim = NodeInfo(node)
    for q in pods:
        sim.add(q)
    return not filter_node(p, sim)


def select_victims(p: PodInfo, info: NodeInfo) -> tuple[PodInfo, ...] | None:
    """The fewest lower-priority pods of ``info`` to remove so ``p`` fits, or None if none do."""
    mine = priority(p.pod)
    lower = [q for q in info.pods.values() if priority(q.pod) < mine]
    higher = [q for q in info.pods.values() if priority(q.pod) >= mine]
    if not lower or not _fits(p, info.node, higher):
        return None
    kept = list(higher)
    victims: list[PodInfo] = []
    # reprieve the most important first: they are the last we want to evict
    for q in sorted(lower, key=lambda q: (-priority(q.pod), _start(q), q.key)):
        if _fits(p, info.node, [*kept, q]):
            kept.append(q)
        else:
            victims.append(q)
    return tuple(victims)


def candidates(p: PodInfo, snapshot: Snapshot) -> list[Candidate]:
    """Every node where evicting lower-priority pods would let ``p`` fit."""
    out: list[Candidate] = []
    for info in snapshot.infos:
        reasons = filter_node(p, info)
        if not reasons or not set(reasons) <= RESOLVABLE:
            continue  # fits already (nothing to preempt) or unfixable by eviction
        victims = select_victims(p, info)
        if victims:
            out.append(Candidate(info.name, victims))
    return out


def pick_node(cands: Sequence[Candidate]) -> Candidate | None:
    if not cands:
        return None

    def rank(c: Candidate) -> tuple[int, int, int, str]:
        prios = [priority(v.pod) for v in c.victims]
        return (max(prios), sum(prios), len(prios), c.node)

    return min(cands, key=rank)


def eligible(p: PodInfo, nominated_node_pods: Iterable[Mapping[str, Any]]) -> bool:
    """Whether ``p`` may preempt (``nominated_node_pods``: the pods on its nominated node, if any)."""
    spec = p.pod.get("spec") or {}
    if spec.get("preemptionPolicy") == "Never":
        return False
    mine = priority(p.pod)
    return not any(
        (q.get("metadata") or {}).get("deletionTimestamp") and priority(q) < mine for q in nominated_node_pods
    )


def preempt(p: PodInfo, snapshot: Snapshot) -> Candidate | None:
    """The node to nominate and the pods to evict for ``p``, or None (no preemption helps)."""
    if not eligible(p, ()):
        return None
    return pick_node(candidates(p, snapshot))
