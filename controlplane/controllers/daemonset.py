"""DaemonSet controller: one pod per eligible node.

Role: Kubernetes' daemon controller. A node is eligible when the pod template's ``nodeSelector``
and required node affinity match it and the pod tolerates its NoSchedule/NoExecute taints (plus
the tolerations every daemon pod gets, as in Kubernetes: not-ready and unreachable NoExecute,
disk/memory/pid-pressure and unschedulable NoSchedule — so a cordoned node keeps its daemons).

Placement: we set ``spec.nodeName`` on the pod directly (the pre-1.12 Kubernetes way) rather than
pinning it with ``spec.affinity`` for the scheduler to honour: a daemon pod must land on exactly
that node even when the scheduler's resource accounting says it is full, and the kubelet (noded)
runs any pod bound to it. The pod is therefore never seen by the scheduler.

``plan_daemon`` (pure): which nodes need a pod, which pods must go (node no longer eligible or
gone, duplicates — the oldest is kept, failed pods — recreated), and which out-of-date pods the
RollingUpdate strategy replaces now (``maxUnavailable``, default 1, counting pods already
unavailable). Pods carry ``controller-revision-hash`` = hash of the template (util.template_hash).
OnDelete strategy: out-of-date pods are left until someone deletes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import DAEMONSETS, NODES, PODS
from controlplane.controllers.base import NAMESPACE_INDEX, Controller, ControllerContext, Expectations, OwnedPodEvents
from controlplane.controllers.nodelifecycle import tolerates
from controlplane.controllers.replicaset import adopt, plan_claims, pod_from_template, release
from controlplane.controllers.util import (
    Obj,
    creation_time,
    generation_of,
    int_or_percent,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    key_of,
    labels_of,
    name_of,
    node_name_of,
    pod_phase,
    selector_matches,
    split_key,
    template_hash,
)

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"

DAEMON_TOLERATIONS: list[dict[str, Any]] = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _match_node_requirement(req: dict[str, Any], values_of: dict[str, str]) -> bool:
    key, op, vals = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    have = values_of.get(key)
    if op == "In":
        return have is not None and have in vals
    if op == "NotIn":
        return have is None or have not in vals
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt"):
        try:
            h, v = int(have or ""), int(vals[0])
        except (ValueError, IndexError):
            return False
        return h > v if op == "Gt" else h < v
    return False


def node_affinity_matches(pod_spec: dict[str, Any], node: Obj) -> bool:
    """nodeSelector AND requiredDuringScheduling node affinity (terms ORed, requirements ANDed)."""
    labels = labels_of(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": name_of(node)}
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fexprs = term.get("matchFields") or []
        if not exprs and not fexprs:
            continue
        if all(_match_node_requirement(e, labels) for e in exprs) and all(
            _match_node_requirement(e, fields) for e in fexprs
        ):
            return True
    return False


def daemon_tolerations(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    own = list(pod_spec.get("tolerations") or [])
    return own + [t for t in DAEMON_TOLERATIONS if t not in own]


def node_should_run(pod_spec: dict[str, Any], node: Obj) -> bool:
    if not node_affinity_matches(pod_spec, node):
        return False
    tols = daemon_tolerations(pod_spec)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tols):
            return False
    return True


@dataclass
class DaemonPlan:
    create_on: list[str] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    desired: int = 0


def plan_daemon(ds: Obj, nodes: Sequence[Obj], pods: Sequence[Obj], now: datetime) -> DaemonPlan:
    spec = ds.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    rev = template_hash(template)
    min_ready = int(spec.get("minReadySeconds") or 0)
    plan = DaemonPlan()
    by_node: dict[str, list[Obj]] = {}
    for p in pods:
        if is_deleting(p):
            continue
        by_node.setdefault(node_name_of(p), []).append(p)
    node_names = {name_of(n) for n in nodes}
    for n, ps in by_node.items():
        if n not in node_names:
            plan.delete.extend(ps)  # node gone (or never bound)
    unavailable = 0
    outdated: list[Obj] = []
    for node in sorted(nodes, key=name_of):
        n = name_of(node)
        here = sorted(by_node.get(n, []), key=lambda p: (creation_time(p), name_of(p)))
        if not node_should_run(pod_spec, node):
            plan.delete.extend(here)
            continue
        plan.desired += 1
        failed = [p for p in here if pod_phase(p) == "Failed"]
        plan.delete.extend(failed)
        alive = [p for p in here if pod_phase(p) != "Failed"]
        if not alive:
            plan.create_on.append(n)
            unavailable += 1
            continue
        plan.delete.extend(alive[1:])  # keep the oldest
        keep = alive[0]
        if not is_pod_available(keep, min_ready, now):
            unavailable += 1
        if labels_of(keep).get(REVISION_LABEL) != rev:
            outdated.append(keep)
    strategy = spec.get("updateStrategy") or {}
    if (strategy.get("type") or "RollingUpdate") == "RollingUpdate" and outdated:
        max_unavailable = (
            int_or_percent((strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1), plan.desired, round_up=True)
            or 1
        )
        budget = max_unavailable - unavailable
        # Unavailable outdated pods cost nothing extra to replace; replace them first.
        outdated.sort(key=lambda p: (is_pod_ready(p), name_of(p)))
        for p in outdated:
            if not is_pod_available(p, min_ready, now):
                plan.delete.append(p)
            elif budget > 0:
                plan.delete.append(p)
                budget -= 1
    return plan


def daemon_status(ds: Obj, nodes: Sequence[Obj], pods: Sequence[Obj], now: datetime) -> dict[str, Any]:
    spec = ds.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    rev = template_hash(template)
    min_ready = int(spec.get("minReadySeconds") or 0)
    eligible = {name_of(n) for n in nodes if node_should_run(pod_spec, n)}
    live = [p for p in pods if not is_deleting(p) and pod_phase(p) != "Failed"]
    scheduled = {node_name_of(p) for p in live}
    on_eligible = [p for p in live if node_name_of(p) in eligible]
    first_per_node: dict[str, Obj] = {}
    for p in sorted(on_eligible, key=lambda p: (creation_time(p), name_of(p))):
        first_per_node.setdefault(node_name_of(p), p)
    ready = sum(1 for p in first_per_node.values() if is_pod_ready(p))
    available = sum(1 for p in first_per_node.values() if is_pod_available(p, min_ready, now))
    status = dict(ds.get("status") or {})
    status.update(
        desiredNumberScheduled=len(eligible),
        currentNumberScheduled=len(scheduled & eligible),
        numberMisscheduled=len(scheduled - eligible),
        numberReady=ready,
        numberAvailable=available,
        numberUnavailable=max(0, len(eligible) - available),
        updatedNumberScheduled=sum(1 for p in first_per_node.values() if labels_of(p).get(REVISION_LABEL) == rev),
        observedGeneration=generation_of(ds),
    )
    return status


class DaemonSetController(OwnedPodEvents, Controller):
    owner_kind = "DaemonSet"

    name = "daemonset"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = Expectations()
        self.ds_informer = ctx.informers.get(DAEMONSETS)
        self.node_informer = ctx.informers.get(NODES)
        self.pod_informer = ctx.informers.get(PODS)
        self.ds_informer.add_handler(
            on_add=self.enqueue,
            on_update=lambda _o, n: self.enqueue(n),
            on_delete=lambda o: self.expectations.forget(key_of(o)),
        )
        self.node_informer.add_handler(on_add=self._all, on_update=self._node_updated, on_delete=self._all)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        # Heartbeats update node status constantly; only what decides eligibility matters here.
        if labels_of(old) != labels_of(new) or (old.get("spec") or {}).get("taints") != (new.get("spec") or {}).get(
            "taints"
        ):
            self._all(new)

    def _all(self, _node: Obj) -> None:
        for ds in self.ds_informer.list():
            self.enqueue(ds)

    def sync(self, key: str) -> None:
        ds = self.ds_informer.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        ns, _ = split_key(key)
        spec = ds.get("spec") or {}
        claims = plan_claims(ds, spec.get("selector"), self.pod_informer.by_index(NAMESPACE_INDEX, ns))
        pods = list(claims.owned)
        for p in claims.adopt:
            got = adopt(self.ctx, PODS, ds, p)
            if got is not None:
                pods.append(got)
        for p in claims.release:
            release(self.ctx, PODS, ds, p)
        nodes = self.node_informer.list()
        now = self.ctx.clock.now()
        if self.expectations.satisfied(key) and not is_deleting(ds):
            plan = plan_daemon(ds, nodes, pods, now)
            if plan.create_on or plan.delete:
                self.expectations.expect(key, len(plan.create_on), (key_of(p) for p in plan.delete))
            template = spec.get("template") or {}
            rev = template_hash(template)
            for node in plan.create_on:
                pod = pod_from_template(template, ds, extra_labels={REVISION_LABEL: rev})
                pod["spec"]["nodeName"] = node
                pod["spec"]["tolerations"] = daemon_tolerations(pod["spec"])
                try:
                    self.client.create(PODS, pod, namespace=ns)
                except errors.ApiError:
                    self.expectations.creation_observed(key)
                    raise
            for p in plan.delete:
                try:
                    self.client.delete(PODS, name_of(p), namespace=ns)
                except errors.NotFound:
                    self.expectations.deletion_observed(key, key_of(p))
        status = daemon_status(ds, nodes, pods, now)
        if status != (ds.get("status") or {}):
            new = dict(ds)
            new["status"] = status
            try:
                self.client.update_status(DAEMONSETS, new)
            except errors.NotFound:
                pass


def selects(ds: Obj, pod: Obj) -> bool:
    return selector_matches((ds.get("spec") or {}).get("selector"), labels_of(pod))
