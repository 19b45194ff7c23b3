"""Node lifecycle: notice nodes that stopped heartbeating, taint them, evict their pods.

Role: Kubernetes' node lifecycle controller and its NoExecute taint manager, in one loop keyed
by node name (``sync`` also re-queues itself every ``monitor_period``: staleness is the absence of
events, so it has to be polled).

Heartbeats: a node is alive while its Lease ``kube-node-lease/<node>`` ``spec.renewTime`` or its
Ready condition's ``lastHeartbeatTime`` keeps changing. As in Kubernetes, we time them with *our*
clock (when we saw the value change), never the node's, so skewed clocks do not matter; the clock
is injected, so tests move time by hand.

Pure steps (table-tested):
- ``desired_taints(ready_status, stale)``: stale → ``node.kubernetes.io/unreachable`` NoSchedule +
  NoExecute; Ready=False → ``node.kubernetes.io/not-ready`` NoSchedule + NoExecute; otherwise none
  of those (so a node that heartbeats again is untainted).
- ``unknown_conditions(node, now)``: every condition → Unknown, Ready with reason
  NodeStatusUnknown, "Kubelet stopped posting node status." (NodeStatusNeverUpdated if it never did).
- ``eviction_time(pod, taints, default_seconds)``: when a pod on a NoExecute-tainted node must go —
  an untolerated taint: now; a toleration with ``tolerationSeconds``: taint time + seconds; forever
  otherwise. A pod without a toleration for not-ready/unreachable gets ``default_seconds``
  (``--pod-eviction-timeout``, Kubernetes' DefaultTolerationSeconds admission, 300 s); a pod's own
  ``tolerationSeconds`` wins — except a toleration exactly like the one that admission adds
  (Exists, NoExecute, 300 s), which counts as the default (see ``_is_admission_default``).

Acts: writes the node's status (conditions) and taints, marks the pods of an unreachable node
NotReady (so endpoints drop them at once, as Kubernetes' MarkPodsNotReady does), and deletes pods
past their eviction time (the API's graceful delete; the ReplicaSet controller replaces them).

Concurrency: health records are touched by one worker per node key (the queue guarantees it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controlplane.api import errors
from controlplane.api.models import Lease, Node
from controlplane.api.registry import LEASES, NODES, PODS
from controlplane.client.controller import TemporaryError
from controlplane.controllers.base import NODE_INDEX, Controller, ControllerContext
from controlplane.controllers.util import (
    Obj,
    format_time,
    get_condition,
    is_deleting,
    name_of,
    namespace_of,
    node_name_of,
    parse_time,
)

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
OUR_TAINT_KEYS = (TAINT_UNREACHABLE, TAINT_NOT_READY)


# ---------------------------------------------------------------------------------------------
# pure


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    op = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if op == "Exists":
        return key == "" or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def desired_taints(ready_status: str | None, stale: bool) -> list[tuple[str, str]]:
    """(key, effect) pairs of our taints the node should carry."""
    if stale or ready_status == "Unknown":
        key = TAINT_UNREACHABLE
    elif ready_status == "False":
        key = TAINT_NOT_READY
    else:
        return []
    return [(key, "NoSchedule"), (key, "NoExecute")]


def reconcile_taints(
    current: Sequence[dict[str, Any]], want: list[tuple[str, str]], now: datetime
) -> list[dict[str, Any]] | None:
    """The node's new taint list, or None when nothing changes. Foreign taints are kept as they are."""
    keep = [t for t in current if t.get("key") not in OUR_TAINT_KEYS]
    ours = {(t.get("key"), t.get("effect")): t for t in current if t.get("key") in OUR_TAINT_KEYS}
    new_ours: list[dict[str, Any]] = []
    for key, effect in want:
        existing = ours.get((key, effect))
        if existing is not None:
            new_ours.append(existing)
        else:
            t: dict[str, Any] = {"key": key, "effect": effect}
            if effect == "NoExecute":
                t["timeAdded"] = format_time(now)
            new_ours.append(t)
    result = keep + new_ours
    if {(t.get("key"), t.get("effect")) for t in result} == {(t.get("key"), t.get("effect")) for t in current} and len(
        result
    ) == len(current):
        return None
    return result


def unknown_conditions(node: Obj, now: datetime) -> list[dict[str, Any]]:
    ts = format_time(now)
    conds = copy.deepcopy((node.get("status") or {}).get("conditions") or [])
    if not any(c.get("type") == "Ready" for c in conds):
        conds.append(
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }
        )
        return conds
    for c in conds:
        if c.get("status") == "Unknown":
            continue
        c["status"] = "Unknown"
        c["reason"] = "NodeStatusUnknown"
        c["message"] = "Kubelet stopped posting node status."
        c["lastTransitionTime"] = ts
    return conds


ADMISSION_DEFAULT_SECONDS = 300


def _is_admission_default(t: dict[str, Any]) -> bool:
    """The toleration the API server's DefaultTolerationSeconds admission adds to every pod.

    It is indistinguishable from one a user wrote with the same values, so we read it as "no
    opinion" and let ``--pod-eviction-timeout`` decide (which defaults to the same 300 s) — that is
    what makes the lab's short eviction timeout work. Any other tolerationSeconds is the pod's own.
    """
    return (
        t.get("key") in OUR_TAINT_KEYS
        and t.get("operator") == "Exists"
        and t.get("effect") == "NoExecute"
        and t.get("tolerationSeconds") == ADMISSION_DEFAULT_SECONDS
    )


def eviction_time(pod: Obj, taints: Sequence[dict[str, Any]], default_seconds: float) -> datetime | None:
    """When this pod must leave a node with these taints (None: never). Kubernetes' taint manager."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadline: datetime | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        added = parse_time(taint.get("timeAdded")) or datetime.fromtimestamp(0).astimezone()
        matching = [t for t in tolerations if tolerates(t, taint) and not _is_admission_default(t)]
        if not matching:
            if taint.get("key") in OUR_TAINT_KEYS:
                seconds: float | None = default_seconds  # DefaultTolerationSeconds admission
            else:
                seconds = 0.0
        else:
            limits = [t.get("tolerationSeconds") for t in matching]
            if any(s is None for s in limits):
                seconds = None  # tolerated forever
            else:
                seconds = max(0.0, float(min(int(s) for s in limits if s is not None)))
        if seconds is None:
            continue
        at = added + timedelta(seconds=seconds)
        deadline = at if deadline is None or at < deadline else deadline
    return deadline


def heartbeat_value(node: Node, lease: Lease | None) -> str:
    """What changes whenever the kubelet shows it is alive: its Lease's renewTime and the Ready
    condition's lastHeartbeatTime (the node lifecycle controller's ``tryUpdateNodeHealth``)."""
    renew = (lease.spec.renew_time if lease else None) or ""
    ready = node.condition("Ready")
    return f"{renew}|{(ready.last_heartbeat_time if ready else None) or ''}"


@dataclass
class Health:
    value: str
    observed_at: datetime


# ---------------------------------------------------------------------------------------------
# the controller


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    workers = 2

    def __init__(
        self,
        ctx: ControllerContext,
        grace_period: float = 40.0,
        pod_eviction_timeout: float = 300.0,
        monitor_period: float = 5.0,
    ) -> None:
        super().__init__(ctx)
        self.grace = grace_period
        self.eviction_timeout = pod_eviction_timeout
        self.monitor_period = monitor_period
        self.health: dict[str, Health] = {}
        self.node_informer = ctx.informers.get(NODES)
        self.lease_informer = ctx.informers.get(LEASES)
        self.pod_informer = ctx.informers.get(PODS)
        # Typed read models for what is only read; the node dicts are copied and written back.
        self.nodes = self.node_informer.view(Node.decode)
        self.leases = self.lease_informer.view(Lease.decode)
        self.node_informer.add_handler(
            on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n), on_delete=self._node_deleted
        )
        self.lease_informer.add_handler(on_add=self._lease_event, on_update=lambda _o, n: self._lease_event(n))
        self.pod_informer.add_handler(on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n))

    def _node_deleted(self, node: Obj) -> None:
        self.health.pop(name_of(node), None)

    def _lease_event(self, lease: Obj) -> None:
        if namespace_of(lease) == NODE_LEASE_NAMESPACE:
            self.queue.add(name_of(lease))

    def _pod_event(self, pod: Obj) -> None:
        # A pod newly bound to a NoExecute-tainted node must get an eviction deadline too.
        node = node_name_of(pod)
        if node:
            n = self.nodes.get(node)
            if n is not None and any(t.effect == "NoExecute" for t in n.spec.taints):
                self.queue.add(node)

    def is_stale(self, node: Node, now: datetime) -> bool:
        name = node.name
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        value = heartbeat_value(node, lease)
        h = self.health.get(name)
        if h is None or h.value != value:
            self.health[name] = h = Health(value, now)
        return (now - h.observed_at).total_seconds() > self.grace

    def sync(self, key: str) -> None:
        node = self.node_informer.get(key)
        if node is None:
            self.health.pop(key, None)
            return
        now = self.ctx.clock.now()
        typed = self.nodes.get(key)
        if typed is None:  # in the raw cache but does not decode (logged by the informer)
            return
        stale = self.is_stale(typed, now)
        ready = get_condition(node, "Ready")
        ready_status = ready.get("status") if ready else None

        # Step 1: a stale node's conditions become Unknown.
        if stale and ready_status != "Unknown":
            fresh = copy.deepcopy(node)
            fresh.setdefault("status", {})["conditions"] = unknown_conditions(node, now)
            try:
                node = self.client.update_status(NODES, fresh)
            except errors.Conflict:
                raise TemporaryError(0.05, "node changed; retry") from None
            except errors.NotFound:
                return
            log.info("node %s: no heartbeat for %.0fs; Ready=Unknown", key, self.grace)
            self.ctx.event(node, "Normal", "NodeNotReady", f"Node {key} status is now: NodeNotReady")
            ready_status = "Unknown"
            self._mark_pods_not_ready(key, now)

        # Step 2: our taints follow the Ready condition and the heartbeat.
        taints = (node.get("spec") or {}).get("taints") or []
        want = desired_taints(ready_status if stale or ready_status != "Unknown" else "True", stale)
        new_taints = reconcile_taints(taints, want, now)
        if new_taints is not None:
            fresh = copy.deepcopy(node)
            fresh.setdefault("spec", {})["taints"] = new_taints or None
            if not new_taints:
                fresh["spec"].pop("taints", None)
            try:
                node = self.client.update(NODES, fresh)
            except errors.Conflict:
                raise TemporaryError(0.05, "node changed; retry") from None
            except errors.NotFound:
                return
            taints = new_taints
            log.info("node %s: taints now %s", key, [f"{t['key']}:{t['effect']}" for t in new_taints])

        # Step 3: evict pods past their toleration time.
        next_check = self.monitor_period
        if any(t.get("effect") == "NoExecute" for t in taints):
            for pod in self.pod_informer.by_index(NODE_INDEX, key):
                if is_deleting(pod):
                    continue
                at = eviction_time(pod, taints, self.eviction_timeout)
                if at is None:
                    continue
                wait = (at - now).total_seconds()
                if wait > 0:
                    next_check = min(next_check, wait)
                    continue
                self._evict(pod, key)
        self.queue.add_after(key, max(0.05, next_check))

    def _mark_pods_not_ready(self, node_name: str, now: datetime) -> None:
        for pod in self.pod_informer.by_index(NODE_INDEX, node_name):
            conds = copy.deepcopy((pod.get("status") or {}).get("conditions") or [])
            changed = False
            for c in conds:
                if c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False":
                    c.update(status="False", lastTransitionTime=format_time(now))
                    changed = True
            if not changed:
                continue
            fresh = copy.deepcopy(pod)
            fresh["status"]["conditions"] = conds
            try:
                self.client.update_status(PODS, fresh)
            except (errors.NotFound, errors.Conflict):
                # a conflict means someone else wrote it; next sync's taint path still evicts
                continue

    def _evict(self, pod: Obj, node_name: str) -> None:
        log.info("evicting pod %s/%s from node %s", namespace_of(pod), name_of(pod), node_name)
        try:
            self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod))
        except errors.NotFound:
            return
        self.ctx.event(
            pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {namespace_of(pod)}/{name_of(pod)}"
        )
