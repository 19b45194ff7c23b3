"""StatefulSet controller: pods with stable ordinal names, started and stopped in order.

Role: Kubernetes' statefulset controller without volumes. Pods are ``<sts>-0 … <sts>-(n-1)`` with
``hostname`` = pod name and ``subdomain`` = ``spec.serviceName`` (stable DNS identity), labels
``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
``controller-revision-hash`` (util.template_hash of the template).

``plan_statefulset`` (pure), one step per sync as Kubernetes does:
- ``OrderedReady`` (default): create the lowest missing ordinal only when every lower one is
  Running and Ready; remove ordinals ≥ replicas highest first, one at a time, only when all the
  others are healthy;
- ``Parallel``: create every missing ordinal and remove every condemned one at once;
- failed pods are deleted (and recreated next step, same name);
- RollingUpdate: once all replicas are Running and Ready, delete the highest-ordinal pod that is
  out of date (``partition`` respected); it comes back with the new template. OnDelete: never.

Names are deterministic, so a stale cache can only cause an AlreadyExists/NotFound, which are
success: no expectations needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import PODS, STATEFULSETS
from controlplane.controllers.base import NAMESPACE_INDEX, Controller, ControllerContext
from controlplane.controllers.replicaset import adopt, plan_claims, pod_from_template, release
from controlplane.controllers.util import (
    Obj,
    controller_ref,
    generation_of,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    name_of,
    namespace_of,
    pod_phase,
    split_key,
    template_hash,
)

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", name_of(pod))
    return int(m.group(1)) if m else None


def healthy(pod: Obj) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod) and not is_deleting(pod)


@dataclass
class StsPlan:
    create: list[int] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def plan_statefulset(sts: Obj, pods: Sequence[Obj]) -> StsPlan:
    spec = sts.get("spec") or {}
    name = name_of(sts)
    replicas = 1 if spec.get("replicas") is None else int(spec["replicas"])
    parallel = spec.get("podManagementPolicy") == "Parallel"
    rev = template_hash(spec.get("template") or {})
    by_ord: dict[int, Obj] = {}
    for p in pods:
        o = ordinal_of(name, p)
        if o is not None:
            by_ord[o] = p
    plan = StsPlan()

    # Failed pods are replaced (deleted now, recreated with the same name later).
    for o in sorted(by_ord):
        p = by_ord[o]
        if pod_phase(p) == "Failed" and not is_deleting(p):
            plan.delete.append(p)
            if not parallel:
                return plan

    # Scale up / fill holes.
    for o in range(replicas):
        cur = by_ord.get(o)
        if cur is None:
            plan.create.append(o)
            if not parallel:
                return plan
        elif not parallel and not healthy(cur):
            return plan  # wait for it before going on
    if plan.create:
        return plan

    # Scale down: condemned ordinals, highest first.
    condemned = sorted((o for o in by_ord if o >= replicas), reverse=True)
    if condemned:
        live = [o for o in condemned if not is_deleting(by_ord[o])]
        if parallel:
            plan.delete.extend(by_ord[o] for o in live)
        elif (
            live
            and all(healthy(by_ord[o]) for o in range(replicas))
            and all(not is_deleting(by_ord[o]) for o in condemned if o > live[0])
        ):
            plan.delete.append(by_ord[live[0]])
        return plan

    # Rolling update: one out-of-date pod at a time, highest ordinal first, all others healthy.
    strategy = spec.get("updateStrategy") or {}
    if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
        return plan
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    if not all(o in by_ord and healthy(by_ord[o]) for o in range(replicas)):
        return plan
    for o in range(replicas - 1, partition - 1, -1):
        if labels_of(by_ord[o]).get(REVISION_LABEL) != rev:
            plan.delete.append(by_ord[o])
            break
    return plan


def sts_pod(sts: Obj, ordinal: int) -> Obj:
    spec = sts.get("spec") or {}
    template = spec.get("template") or {}
    name = f"{name_of(sts)}-{ordinal}"
    pod = pod_from_template(
        template,
        sts,
        name=name,
        extra_labels={REVISION_LABEL: template_hash(template), POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)},
    )
    pod["spec"]["hostname"] = name
    if spec.get("serviceName"):
        pod["spec"]["subdomain"] = spec["serviceName"]
    return pod


def sts_status(sts: Obj, pods: Sequence[Obj], now: Any) -> dict[str, Any]:
    spec = sts.get("spec") or {}
    rev = template_hash(spec.get("template") or {})
    live = [p for p in pods if not is_deleting(p) and ordinal_of(name_of(sts), p) is not None]
    updated = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == rev)
    status = dict(sts.get("status") or {})
    replicas = 1 if spec.get("replicas") is None else int(spec["replicas"])
    current_rev = status.get("currentRevision") or rev
    if updated == len(live) == replicas:
        current_rev = rev
    status.update(
        observedGeneration=generation_of(sts),
        replicas=len(live),
        readyReplicas=sum(1 for p in live if is_pod_ready(p)),
        availableReplicas=sum(1 for p in live if is_pod_available(p, int(spec.get("minReadySeconds") or 0), now)),
        currentReplicas=sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == current_rev),
        updatedReplicas=updated,
        currentRevision=f"{name_of(sts)}-{current_rev}",
        updateRevision=f"{name_of(sts)}-{rev}",
    )
    return status


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sts_informer = ctx.informers.get(STATEFULSETS)
        self.pod_informer = ctx.informers.get(PODS)
        self.sts_informer.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.pod_informer.add_handler(on_add=self._pod, on_update=lambda _o, n: self._pod(n), on_delete=self._pod)

    def _pod(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{namespace_of(pod)}/{ref.get('name')}")

    def sync(self, key: str) -> None:
        sts = self.sts_informer.get(key)
        if sts is None:
            return
        ns, _ = split_key(key)
        spec = sts.get("spec") or {}
        claims = plan_claims(sts, spec.get("selector"), self.pod_informer.by_index(NAMESPACE_INDEX, ns))
        pods = list(claims.owned)
        for p in claims.adopt:
            if ordinal_of(name_of(sts), p) is not None:
                got = adopt(self.ctx, PODS, sts, p)
                if got is not None:
                    pods.append(got)
        for p in claims.release:
            release(self.ctx, PODS, sts, p)
        if not is_deleting(sts):
            plan = plan_statefulset(sts, pods)
            for o in plan.create:
                try:
                    self.client.create(PODS, sts_pod(sts, o), namespace=ns)
                except errors.AlreadyExists:
                    pass
            for p in plan.delete:
                try:
                    self.client.delete(PODS, name_of(p), namespace=ns)
                except errors.NotFound:
                    pass
        status = sts_status(sts, pods, self.ctx.clock.now())
        if status != (sts.get("status") or {}):
            new = dict(sts)
            new["status"] = status
            try:
                self.client.update_status(STATEFULSETS, new)
            except errors.NotFound:
                pass
