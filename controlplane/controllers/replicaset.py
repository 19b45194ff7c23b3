"""The ReplicaSet controller: keep ``spec.replicas`` active pods matching the selector.

Role: the Kubernetes ReplicaSet controller's behaviour. ``sync(ns/name)``:

1. read the ReplicaSet from the cache; gone → forget expectations, done;
2. wait until the expectations of our last burst of creates/deletes are met (the cache is stale);
3. claim pods: adopt orphans that match the selector (set our controller ownerReference),
   release pods we control that no longer match (remove our ownerReference);
4. ``plan_replicas`` (pure): how many pods to create, which to delete (ranked: unscheduled <
   pending < not-ready < ready, recently-ready first, more restarts first, newer first);
5. act: create from the template (``generateName: <rs>-``, controller ownerReference), delete the
   chosen pods; record expectations first so the next sync waits for the informer to see them;
6. write status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration) only when it changed — the controller is the one writer of RS status.

Concurrency: handlers run on informer threads and only enqueue owner keys and update
expectations; ``sync`` runs on worker threads, never two for the same key.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controlplane.api import errors, registry
from controlplane.api.registry import PODS, REPLICASETS, Resource
from controlplane.controllers.base import (
    NAMESPACE_INDEX,
    OWNER_INDEX,
    Controller,
    ControllerContext,
    Expectations,
    ignore_not_found,
)
from controlplane.controllers.util import (
    Obj,
    controller_ref,
    creation_time,
    generation_of,
    is_deleting,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    key_of,
    labels_of,
    name_of,
    namespace_of,
    new_controller_ref,
    node_name_of,
    owner_refs,
    pod_phase,
    pod_ready_since,
    selector_matches,
    split_key,
    uid_of,
)

log = logging.getLogger(__name__)

# Kubernetes caps one sync's creates/deletes (burstReplicas) so a huge scale-up is spread over
# several syncs and a failing API is not hammered.
BURST_REPLICAS = 500


# ---------------------------------------------------------------------------------------------
# pure planning


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj) -> tuple[Any, ...]:
    """Sort key: pods that sort first are deleted first (Kubernetes' ActivePods ordering)."""
    restarts = sum(int(cs.get("restartCount") or 0) for cs in (pod.get("status") or {}).get("containerStatuses") or [])
    ready_since = pod_ready_since(pod)
    return (
        1 if node_name_of(pod) else 0,  # unscheduled first
        _PHASE_RANK.get(pod_phase(pod), 1),  # pending < unknown < running
        1 if is_pod_ready(pod) else 0,  # not-ready < ready
        -(ready_since.timestamp()) if ready_since else 0.0,  # ready for less time first
        -restarts,  # more restarts first
        -creation_time(pod).timestamp(),  # newer first
        name_of(pod),  # total order, for stable plans
    )


@dataclass(frozen=True)
class ReplicaPlan:
    create: int
    delete: tuple[Obj, ...]


def plan_replicas(desired: int, active: Sequence[Obj], burst: int = BURST_REPLICAS) -> ReplicaPlan:
    """How to get from ``active`` pods to ``desired``: a count to create or the pods to delete."""
    diff = len(active) - max(desired, 0)
    if diff < 0:
        return ReplicaPlan(create=min(-diff, burst), delete=())
    if diff > 0:
        ranked = sorted(active, key=deletion_rank)
        return ReplicaPlan(create=0, delete=tuple(ranked[: min(diff, burst)]))
    return ReplicaPlan(create=0, delete=())


def compute_rs_status(rs: Obj, pods: Sequence[Obj], now: datetime) -> dict[str, Any]:
    """The ReplicaSet's status from the pods it controls (all of them; inactive ones are skipped)."""
    active = [p for p in pods if is_pod_active(p)]
    spec = rs.get("spec") or {}
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status: dict[str, Any] = dict(rs.get("status") or {})
    status.update(
        replicas=len(active),
        fullyLabeledReplicas=sum(1 for p in active if all(labels_of(p).get(k) == v for k, v in tmpl_labels.items())),
        readyReplicas=sum(1 for p in active if is_pod_ready(p)),
        availableReplicas=sum(1 for p in active if is_pod_available(p, min_ready, now)),
        observedGeneration=generation_of(rs),
    )
    return status


def pod_from_template(
    template: Obj,
    owner: Obj,
    *,
    name: str | None = None,
    generate_name: str | None = None,
    extra_labels: dict[str, str] | None = None,
) -> Obj:
    """A new pod from a workload's pod template, controlled by ``owner``."""
    t = copy.deepcopy(template)
    md: dict[str, Any] = dict(t.get("metadata") or {})
    labels = dict(md.get("labels") or {})
    labels.update(extra_labels or {})
    pod_meta: dict[str, Any] = {"namespace": namespace_of(owner), "ownerReferences": [new_controller_ref(owner)]}
    if labels:
        pod_meta["labels"] = labels
    if md.get("annotations"):
        pod_meta["annotations"] = dict(md["annotations"])
    if md.get("finalizers"):
        pod_meta["finalizers"] = list(md["finalizers"])
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = generate_name or f"{name_of(owner)}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(t.get("spec") or {})}


# ---------------------------------------------------------------------------------------------
# claiming: adoption and release (shared by every controller that owns pods)


@dataclass(frozen=True)
class ClaimPlan:
    owned: tuple[Obj, ...]
    adopt: tuple[Obj, ...]
    release: tuple[Obj, ...]


def plan_claims(owner: Obj, selector: dict[str, Any] | None, candidates: Sequence[Obj]) -> ClaimPlan:
    """Which of ``candidates`` (same namespace) the owner keeps, adopts and releases.

    Owned: controlled by us and matching. Adopt: no controller, matching, not being deleted, and
    only while the owner itself is not being deleted. Release: controlled by us, no longer matching.
    """
    owned: list[Obj] = []
    adopt: list[Obj] = []
    release: list[Obj] = []
    uid = uid_of(owner)
    for p in candidates:
        ref = controller_ref(p)
        matches = selector_matches(selector, labels_of(p)) if selector is not None else False
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                owned.append(p)
            elif not is_deleting(p):
                release.append(p)
        elif matches and not is_deleting(p) and not is_deleting(owner):
            adopt.append(p)
    return ClaimPlan(tuple(owned), tuple(adopt), tuple(release))


def adopt(ctx: ControllerContext, res: Any, owner: Obj, obj: Obj) -> Obj | None:
    """Add our controller ownerReference to an orphan (merge patch with a uid precondition).

    First the owner is read fresh from the API, not the cache (client-go's
    ``RecheckDeletionTimestamp`` in controller_ref_manager.go): an owner deleted with
    ``propagationPolicy=Orphan`` may still look alive in the informer while the garbage collector
    strips its dependents' ownerReferences; adopting them back then would tie them to an owner
    about to vanish, and the collector would delete what the user asked to keep.
    """
    owner_res = registry.for_kind(str(owner.get("apiVersion", "")), str(owner.get("kind", "")))
    if owner_res is not None:
        try:
            fresh = ctx.client.get(owner_res, name_of(owner), namespace=namespace_of(owner) or None)
        except errors.NotFound:
            return None
        if uid_of(fresh) != uid_of(owner) or is_deleting(fresh):
            return None
    refs = [*owner_refs(obj), new_controller_ref(owner)]
    body = {"metadata": {"ownerReferences": refs, "uid": uid_of(obj)}}
    try:
        result: Obj = ctx.client.patch(res, name_of(obj), body, namespace=namespace_of(obj))
        return result
    except (errors.NotFound, errors.Conflict, errors.Invalid):
        return None


def release(ctx: ControllerContext, res: Any, owner: Obj, obj: Obj) -> None:
    refs = [r for r in owner_refs(obj) if r.get("uid") != uid_of(owner)]
    body = {"metadata": {"ownerReferences": refs or None, "uid": uid_of(obj)}}
    try:
        ctx.client.patch(res, name_of(obj), body, namespace=namespace_of(obj))
    except (errors.NotFound, errors.Conflict, errors.Invalid):
        pass


def status_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return (old or {}) != new


# ---------------------------------------------------------------------------------------------
# the controller


class ReplicaSetController(Controller):
    """Also the ReplicationController's controller, through ``resource``/``owner_kind``/``selector_of``
    (Kubernetes runs the same code for both: pkg/controller/replication wraps the RS manager)."""

    name = "replicaset"
    workers = 4
    resource: Resource = REPLICASETS
    owner_kind = "ReplicaSet"

    @staticmethod
    def selector_of(owner: Obj) -> dict[str, Any] | None:
        """The owner's selector as a LabelSelector dict (set-based for ReplicaSets)."""
        sel = (owner.get("spec") or {}).get("selector")
        return sel if isinstance(sel, dict) else None

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = Expectations()
        self.rs_informer = ctx.informers.get(self.resource)
        self.pod_informer = ctx.informers.get(PODS)
        self.rs_informer.add_handler(
            on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n), on_delete=self._rs_deleted
        )
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    # -- handlers: map pod events to owner keys, and observe expectations ----------------------
    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.owner_kind:
            return None
        return f"{namespace_of(pod)}/{ref.get('name')}"

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.forget(key_of(rs))
        self.enqueue(rs)

    def _enqueue_matching(self, pod: Obj) -> None:
        # An orphan: any ReplicaSet whose selector matches may adopt it.
        for rs in self.rs_informer.by_index(NAMESPACE_INDEX, namespace_of(pod)):
            if selector_matches(self.selector_of(rs), labels_of(pod)):
                self.enqueue(rs)

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            if is_deleting(pod):
                self.expectations.deletion_observed(key, key_of(pod))
            self.queue.add(key)
        elif controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        old_key = self._owner_key(old)
        if old_key and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            if is_deleting(new) and not is_deleting(old):
                self.expectations.deletion_observed(key, key_of(new))
            self.queue.add(key)
        elif controller_ref(new) is None:
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, key_of(pod))
            self.queue.add(key)

    # -- sync ------------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        ns, _ = split_key(key)
        spec = rs.get("spec") or {}
        selector = self.selector_of(rs)
        needs_sync = self.expectations.satisfied(key) and not is_deleting(rs)

        # Step 3: claim.
        candidates = self.pod_informer.by_index(NAMESPACE_INDEX, ns)
        claims = plan_claims(rs, selector, candidates)
        owned = list(claims.owned)
        for p in claims.adopt:
            adopted = adopt(self.ctx, PODS, rs, p)
            if adopted is not None:
                owned.append(adopted)
        for p in claims.release:
            release(self.ctx, PODS, rs, p)

        # Steps 4-5: plan and act.
        if needs_sync:
            active = [p for p in owned if is_pod_active(p)]
            plan = plan_replicas(int(spec.get("replicas", 1)), active)
            if plan.create or plan.delete:
                self.expectations.expect(key, plan.create, (key_of(p) for p in plan.delete))
                self._create_pods(rs, key, plan.create)
                for p in plan.delete:
                    self._delete_pod(key, p)

        # Step 6: status.
        self._write_status(rs, owned)

    def _create_pods(self, rs: Obj, key: str, count: int) -> None:
        template = (rs.get("spec") or {}).get("template") or {}
        for i in range(count):
            pod = pod_from_template(template, rs)
            try:
                created = self.client.create(PODS, pod, namespace=namespace_of(rs))
            except errors.ApiError as e:
                # The create will never be observed: lower expectations for it and the rest.
                for _ in range(count - i):
                    self.expectations.creation_observed(key)
                self.ctx.event(rs, "Warning", "FailedCreate", f"Error creating: {e}")
                if isinstance(e, errors.NotFound | errors.Forbidden):  # namespace going away
                    return
                raise
            # What `kubectl describe rs` shows, one line per pod as in Kubernetes.
            self.ctx.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")

    def _delete_pod(self, key: str, pod: Obj) -> None:
        try:
            self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod))
        except errors.NotFound:
            self.expectations.deletion_observed(key, key_of(pod))
        except errors.ApiError:
            self.expectations.deletion_observed(key, key_of(pod))
            raise
        rs = self.rs_informer.get(key)
        self.ctx.event(rs or pod, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")

    def _write_status(self, rs: Obj, owned: Sequence[Obj]) -> None:
        status = compute_rs_status(rs, owned, self.ctx.clock.now())
        if not status_changed(rs.get("status"), status):
            return
        new = dict(rs)
        new["status"] = status
        ignore_not_found(lambda: self.client.update_status(self.resource, new))


def owned_pods(informer: Any, owner: Obj) -> list[Obj]:
    """Pods whose controller ownerReference points at ``owner`` (from the OWNER_INDEX)."""
    return list(informer.by_index(OWNER_INDEX, uid_of(owner)))
