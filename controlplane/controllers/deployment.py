"""The Deployment controller: roll a pod template out through ReplicaSets.

Role: Kubernetes' deployment controller. A Deployment owns ReplicaSets named
``<deployment>-<pod-template-hash>``; the one whose template equals the Deployment's (ignoring the
hash label) is the *new* ReplicaSet, the others are *old*. ``sync(ns/name)``:

1. claim ReplicaSets (controller ownerReference; adopt orphans matching the selector);
2. find the new ReplicaSet, or plan its creation (hash = FNV-32a of the canonical JSON template
   plus ``status.collisionCount``, Kubernetes' SafeEncodeString alphabet — see util.template_hash);
   give it revision max(old)+1 (``deployment.kubernetes.io/revision``), which is also how
   ``kubectl rollout undo`` works: the client copies an old template back, the old ReplicaSet
   becomes the new one and gets the next revision;
3. one step of the strategy (pure ``plan_rollout``): RollingUpdate scales the new ReplicaSet up
   within ``replicas + maxSurge`` (surge rounds up) and old ones down keeping
   ``replicas - maxUnavailable`` available (unavailable rounds down; both 0 → maxUnavailable 1);
   Recreate scales old ones to 0, waits until their pods are gone, then scales the new one up;
   paused Deployments only scale;
4. when the rollout is complete, delete old ReplicaSets beyond ``revisionHistoryLimit``;
5. status: replicas, updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
   observedGeneration, conditions Available and Progressing (reasons NewReplicaSetCreated,
   FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded,
   DeploymentPaused, DeploymentResumed) — what ``kubectl rollout status`` reads.

Scaling writes go as merge patches of ``spec.replicas`` + annotations, so they never conflict with
the ReplicaSet controller's status writes. Concurrency: as every controller (see base.py).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import DEPLOYMENTS, PODS, REPLICASETS
from controlplane.client.controller import TemporaryError
from controlplane.controllers.base import (
    NAMESPACE_INDEX,
    OWNER_INDEX,
    Controller,
    ControllerContext,
    ignore_not_found,
)
from controlplane.controllers.replicaset import adopt, plan_claims, release
from controlplane.controllers.util import (
    Obj,
    annotations_of,
    controller_ref,
    creation_time,
    generation_of,
    get_condition,
    int_or_percent,
    is_deleting,
    key_of,
    labels_of,
    name_of,
    namespace_of,
    new_controller_ref,
    parse_time,
    pod_phase,
    selector_matches,
    set_condition,
    split_key,
    template_hash,
    templates_equal_ignoring_hash,
    uid_of,
)

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
DEFAULT_PROGRESS_DEADLINE = 600
DEFAULT_HISTORY_LIMIT = 10


# ---------------------------------------------------------------------------------------------
# small accessors


def replicas_of(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def status_int(obj: Obj, field_name: str) -> int:
    return int((obj.get("status") or {}).get(field_name) or 0)


def revision_of(rs: Obj) -> int:
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against spec.replicas, rounding as Kubernetes does."""
    replicas = replicas_of(d)
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        # Both zero would never make progress; Kubernetes allows one unavailable pod.
        unavailable = 1
    return surge, min(unavailable, replicas)


def strategy_type(d: Obj) -> str:
    return str(((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate")


def is_paused(d: Obj) -> bool:
    return bool((d.get("spec") or {}).get("paused"))


# ---------------------------------------------------------------------------------------------
# the new ReplicaSet


def find_new_rs(d: Obj, rses: Sequence[Obj]) -> Obj | None:
    """The ReplicaSet whose template equals the Deployment's (oldest first if several)."""
    template = (d.get("spec") or {}).get("template") or {}
    for rs in sorted(rses, key=lambda r: (creation_time(r), name_of(r))):
        if templates_equal_ignoring_hash((rs.get("spec") or {}).get("template") or {}, template):
            return rs
    return None


def new_rs_object(d: Obj, revision: int, replicas: int) -> Obj:
    """The ReplicaSet a Deployment creates for its current template."""
    spec = d.get("spec") or {}
    collision = (d.get("status") or {}).get("collisionCount")
    template = copy.deepcopy(spec.get("template") or {})
    h = template_hash(template, collision)
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
    surge, _ = fenceposts(d)
    rs_spec: dict[str, Any] = {"replicas": replicas, "selector": selector, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name_of(d)}-{h}",
            "namespace": namespace_of(d),
            "labels": dict(tmeta["labels"]),
            "annotations": {
                REVISION: str(revision),
                DESIRED_REPLICAS: str(replicas_of(d)),
                MAX_REPLICAS: str(replicas_of(d) + (surge if strategy_type(d) == "RollingUpdate" else 0)),
            },
            "ownerReferences": [new_controller_ref(d)],
        },
        "spec": rs_spec,
    }


# ---------------------------------------------------------------------------------------------
# pure rollout planning


def new_rs_target(d: Obj, all_rs: Sequence[Obj], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow right now."""
    replicas = replicas_of(d)
    current_new = replicas_of(new_rs)
    if strategy_type(d) == "Recreate":
        return replicas
    if current_new >= replicas:
        return replicas
    surge, _ = fenceposts(d)
    max_total = replicas + surge
    current_total = sum(replicas_of(r) for r in all_rs)
    if current_total >= max_total:
        return current_new
    return current_new + min(max_total - current_total, replicas - current_new)


def old_scale_down(d: Obj, all_rs: Sequence[Obj], old_rs: Sequence[Obj], new_rs: Obj) -> dict[str, int]:
    """reconcileOldReplicaSets: new replica counts for old ReplicaSets, never going below
    ``replicas - maxUnavailable`` available pods. Unhealthy old pods go first."""
    old_total = sum(replicas_of(r) for r in old_rs)
    if old_total == 0:
        return {}
    _, max_unavailable = fenceposts(d)
    min_available = replicas_of(d) - max_unavailable
    all_total = sum(replicas_of(r) for r in all_rs)
    new_unavailable = replicas_of(new_rs) - status_int(new_rs, "availableReplicas")
    max_scaled_down = all_total - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    result: dict[str, int] = {}
    ordered = sorted(old_rs, key=lambda r: (creation_time(r), name_of(r)))
    # 1. unhealthy replicas (not available) can go without reducing availability
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        cur = replicas_of(rs)
        unhealthy = cur - status_int(rs, "availableReplicas")
        if cur == 0 or unhealthy <= 0:
            continue
        down = min(unhealthy, max_scaled_down - cleaned)
        result[name_of(rs)] = cur - down
        cleaned += down
    # 2. then available ones, as far as availability allows
    available = sum(status_int(r, "availableReplicas") for r in all_rs)
    budget = min(available - min_available, max_scaled_down - cleaned)
    for rs in ordered:
        if budget <= 0:
            break
        cur = result.get(name_of(rs), replicas_of(rs))
        if cur == 0:
            continue
        down = min(cur, budget)
        result[name_of(rs)] = cur - down
        budget -= down
    return {k: v for k, v in result.items() if v != next(replicas_of(r) for r in old_rs if name_of(r) == k)}


@dataclass
class RolloutPlan:
    create: Obj | None = None
    scale: dict[str, int] = field(default_factory=dict)
    annotate: dict[str, dict[str, str]] = field(default_factory=dict)
    delete: list[Obj] = field(default_factory=list)
    new_rs_name: str = ""
    complete: bool = False


def plan_rollout(d: Obj, rses: Sequence[Obj], old_pods_running: bool) -> RolloutPlan:
    """One step of the Deployment's strategy over its (claimed) ReplicaSets. Pure.

    ``old_pods_running``: whether any pod of an old ReplicaSet is still not terminated (Recreate
    waits for that before scaling the new ReplicaSet up).
    """
    plan = RolloutPlan()
    replicas = replicas_of(d)
    new_rs = find_new_rs(d, rses)
    old_rs = [r for r in rses if new_rs is None or uid_of(r) != uid_of(new_rs)]
    max_old_revision = max((revision_of(r) for r in old_rs), default=0)

    if new_rs is None and is_paused(d):
        # Paused with a changed template: no new ReplicaSet; only keep the scale right.
        active = [r for r in rses if replicas_of(r) > 0] or list(rses)
        if active:
            newest = max(active, key=lambda r: (creation_time(r), name_of(r)))
            total = sum(replicas_of(r) for r in active)
            if total != replicas:
                plan.scale[name_of(newest)] = max(0, replicas_of(newest) + replicas - total)
        return plan

    if new_rs is None:
        if strategy_type(d) == "Recreate":
            initial = 0
        else:
            stub = {"spec": {"replicas": 0}}
            initial = new_rs_target(d, list(rses), stub)
        plan.create = new_rs_object(d, max_old_revision + 1, initial)
        plan.new_rs_name = name_of(plan.create)
        return plan

    plan.new_rs_name = name_of(new_rs)
    # Keep revision and scale annotations of the new ReplicaSet current.
    want_rev = max_old_revision + 1 if revision_of(new_rs) <= max_old_revision else revision_of(new_rs)
    surge, _ = fenceposts(d)
    want_ann = {
        REVISION: str(want_rev),
        DESIRED_REPLICAS: str(replicas),
        MAX_REPLICAS: str(replicas + (surge if strategy_type(d) == "RollingUpdate" else 0)),
    }
    have = annotations_of(new_rs)
    if any(have.get(k) != v for k, v in want_ann.items()):
        plan.annotate[name_of(new_rs)] = want_ann

    if is_paused(d):
        if replicas_of(new_rs) != replicas and all(replicas_of(r) == 0 for r in old_rs):
            plan.scale[name_of(new_rs)] = replicas
        return plan

    if strategy_type(d) == "Recreate":
        active_old = [r for r in old_rs if replicas_of(r) > 0]
        if active_old:
            for r in active_old:
                plan.scale[name_of(r)] = 0
            return plan
        if old_pods_running:
            return plan
        if replicas_of(new_rs) != replicas:
            plan.scale[name_of(new_rs)] = replicas
            return plan
    else:
        target = new_rs_target(d, rses, new_rs)
        if target != replicas_of(new_rs):
            plan.scale[name_of(new_rs)] = target
            return plan
        down = old_scale_down(d, rses, old_rs, new_rs)
        if down:
            plan.scale.update(down)
            return plan

    plan.complete = is_complete(d, new_rs, rses)
    if plan.complete:
        plan.delete = history_to_delete(d, old_rs)
    return plan


def is_complete(d: Obj, new_rs: Obj, rses: Sequence[Obj]) -> bool:
    replicas = replicas_of(d)
    return (
        replicas_of(new_rs) == replicas
        and status_int(new_rs, "replicas") == replicas
        and status_int(new_rs, "availableReplicas") >= replicas
        and all(replicas_of(r) == 0 and status_int(r, "replicas") == 0 for r in rses if uid_of(r) != uid_of(new_rs))
    )


def history_to_delete(d: Obj, old_rs: Sequence[Obj]) -> list[Obj]:
    """Old, fully scaled-down ReplicaSets beyond revisionHistoryLimit, oldest revision first."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
    dead = [r for r in old_rs if replicas_of(r) == 0 and status_int(r, "replicas") == 0 and not is_deleting(r)]
    if len(dead) <= limit:
        return []
    dead.sort(key=lambda r: (revision_of(r), creation_time(r)))
    return dead[: len(dead) - limit]


# ---------------------------------------------------------------------------------------------
# status


def compute_status(
    d: Obj,
    rses: Sequence[Obj],
    new_rs: Obj | None,
    now: datetime,
    *,
    created_new: bool = False,
) -> dict[str, Any]:
    """The Deployment's status after this sync (pure)."""
    old_status: dict[str, Any] = copy.deepcopy(d.get("status") or {})
    replicas = replicas_of(d)
    active = list(rses)
    status: dict[str, Any] = {
        "observedGeneration": generation_of(d),
        "replicas": sum(status_int(r, "replicas") for r in active),
        "updatedReplicas": status_int(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(status_int(r, "readyReplicas") for r in active),
        "availableReplicas": sum(status_int(r, "availableReplicas") for r in active),
        "conditions": old_status.get("conditions") or [],
    }
    status["unavailableReplicas"] = max(0, replicas - status["availableReplicas"])
    if old_status.get("collisionCount") is not None:
        status["collisionCount"] = old_status["collisionCount"]

    _, max_unavailable = fenceposts(d)
    if status["availableReplicas"] >= replicas - max_unavailable:
        set_condition(
            status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
            update_time_field="lastUpdateTime",
        )
    else:
        set_condition(
            status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
            update_time_field="lastUpdateTime",
        )

    progressing = _progressing(d, rses, new_rs, old_status, status, now, created_new)
    if progressing is not None:
        set_condition(status, "Progressing", *progressing, now, update_time_field="lastUpdateTime")
    return status


def _progressing(
    d: Obj,
    rses: Sequence[Obj],
    new_rs: Obj | None,
    old_status: dict[str, Any],
    status: dict[str, Any],
    now: datetime,
    created_new: bool,
) -> tuple[str, str, str] | None:
    """The Progressing condition's (status, reason, message), in the deployment controller's
    order of precedence (pkg/controller/deployment/progress.go); None: leave it as it is."""
    progressing = get_condition(d, "Progressing")
    rs_name = name_of(new_rs) if new_rs else ""
    if is_paused(d):
        return "Unknown", "DeploymentPaused", "Deployment is paused"
    if progressing is not None and progressing.get("reason") == "DeploymentPaused":
        return "Unknown", "DeploymentResumed", "Deployment is resumed"
    if created_new:
        return "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
    if new_rs is None:
        return None
    if is_complete(d, new_rs, rses):
        return "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.'
    if progressing is None:
        return "True", "FoundNewReplicaSet", f'Found new replica set "{rs_name}"'
    if _made_progress(old_status, status):
        return "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
    if _timed_out(d, progressing, now):
        return "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.'
    return None


def _made_progress(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """DeploymentProgressing: more updated/ready/available pods, or fewer old ones, than before."""
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(new.get("replicas") or 0) - int(new.get("updatedReplicas") or 0)
    return (
        int(new.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0)
        or new_old < old_old
        or int(new.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0)
        or int(new.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0)
    )


def _timed_out(d: Obj, progressing: dict[str, Any], now: datetime) -> bool:
    if progressing.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
        return False
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
    if deadline is None:
        return False
    since = parse_time(progressing.get("lastUpdateTime"))
    return since is not None and (now - since).total_seconds() > int(deadline)


def next_resync(d: Obj, status: dict[str, Any], now: datetime) -> float | None:
    """Seconds until the progress deadline could pass, so ``sync`` can re-check it then."""
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
    if deadline is None or is_paused(d):
        return None
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") in (
            "NewReplicaSetCreated",
            "FoundNewReplicaSet",
            "ReplicaSetUpdated",
            "DeploymentResumed",
        ):
            since = parse_time(c.get("lastUpdateTime"))
            if since is not None:
                return max(0.0, int(deadline) - (now - since).total_seconds()) + 1.0
    return None


# ---------------------------------------------------------------------------------------------
# the controller


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.d_informer = ctx.informers.get(DEPLOYMENTS)
        self.rs_informer = ctx.informers.get(REPLICASETS)
        self.pod_informer = ctx.informers.get(PODS)
        self.d_informer.add_handler(
            on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n), on_delete=self.enqueue
        )
        self.rs_informer.add_handler(
            on_add=self._rs_event, on_update=lambda o, n: self._rs_event(n, o), on_delete=self._rs_event
        )
        self.pod_informer.add_handler(on_delete=self._pod_deleted)

    def _rs_event(self, rs: Obj, old: Obj | None = None) -> None:
        for obj in (rs, old):
            if obj is None:
                continue
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "Deployment":
                self.queue.add(f"{namespace_of(obj)}/{ref.get('name')}")
            elif ref is None:
                for d in self.d_informer.by_index(NAMESPACE_INDEX, namespace_of(obj)):
                    if selector_matches((d.get("spec") or {}).get("selector"), labels_of(obj)):
                        self.enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        # Recreate waits for old pods to be gone: a pod deletion may unblock it.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(f"{namespace_of(pod)}/{ref.get('name')}")
        if rs is not None:
            self._rs_event(rs)

    def sync(self, key: str) -> None:
        d = self.d_informer.get(key)
        if d is None or is_deleting(d):
            return
        ns, _ = split_key(key)
        spec = d.get("spec") or {}
        selector = spec.get("selector")
        if not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions")):
            # An empty selector would match every pod: Kubernetes refuses to act on it.
            self.ctx.event(d, "Warning", "SelectingAll", "This deployment is selecting all pods.")
            return

        # Step 1: claim ReplicaSets.
        claims = plan_claims(d, selector, self.rs_informer.by_index(NAMESPACE_INDEX, ns))
        rses = list(claims.owned)
        for rs in claims.adopt:
            adopted = adopt(self.ctx, REPLICASETS, d, rs)
            if adopted is not None:
                rses.append(adopted)
        for rs in claims.release:
            release(self.ctx, REPLICASETS, d, rs)

        # Steps 2-4: plan one step.
        new_rs = find_new_rs(d, rses)
        old_uids = {uid_of(r) for r in rses if new_rs is None or uid_of(r) != uid_of(new_rs)}
        old_pods_running = any(
            pod_phase(p) not in ("Succeeded", "Failed")
            for u in old_uids
            for p in self.pod_informer.by_index(OWNER_INDEX, u)
        )
        plan = plan_rollout(d, rses, old_pods_running)
        created = False
        if plan.create is not None:
            new_rs = self._create_rs(d, plan.create)
            created = new_rs is not None and uid_of(new_rs) not in {uid_of(r) for r in rses}
            if new_rs is not None:
                rses.append(new_rs)
        updated: dict[str, Obj] = {}
        for name in set(plan.scale) | set(plan.annotate):
            body: dict[str, Any] = {}
            if name in plan.scale:
                body["spec"] = {"replicas": plan.scale[name]}
            if name in plan.annotate:
                body["metadata"] = {"annotations": plan.annotate[name]}
            try:
                updated[name] = self.client.patch(REPLICASETS, name, body, namespace=ns)
            except errors.NotFound:
                continue
            if name in plan.scale:
                self.ctx.event(d, "Normal", "ScalingReplicaSet", f"Scaled replica set {name} to {plan.scale[name]}")
        for rs in plan.delete:
            try:
                self.client.delete(REPLICASETS, name_of(rs), namespace=ns)
            except errors.NotFound:
                pass
        rses = [updated.get(name_of(r), r) for r in rses if r not in plan.delete]
        new_rs = find_new_rs(d, rses) if new_rs is not None else None

        # Step 5: status, and the revision on the Deployment itself.
        now = self.ctx.clock.now()
        status = compute_status(d, rses, new_rs, now, created_new=created)
        if new_rs is not None:
            rev = str(revision_of(new_rs))
            if annotations_of(d).get(REVISION) != rev and rev != "0":
                ignore_not_found(
                    lambda: self.client.patch(
                        DEPLOYMENTS, name_of(d), {"metadata": {"annotations": {REVISION: rev}}}, namespace=ns
                    )
                )
        if status != (d.get("status") or {}):
            fresh = dict(d)
            fresh["status"] = status
            latest = self.d_informer.get(key)
            if latest is not None:
                fresh["metadata"] = latest.get("metadata")
            try:
                self.client.update_status(DEPLOYMENTS, fresh)
            except errors.Conflict:
                raise TemporaryError(0.05, "deployment changed while syncing") from None
            except errors.NotFound:
                return
        delay = next_resync(d, status, now)
        if delay is not None:
            self.queue.add_after(key, delay)

    def _create_rs(self, d: Obj, rs: Obj) -> Obj | None:
        ns = namespace_of(d)
        try:
            created: Obj = self.client.create(REPLICASETS, rs, namespace=ns)
            return created
        except errors.AlreadyExists:
            existing = self.client.get(REPLICASETS, name_of(rs), namespace=ns)
            ours = controller_ref(existing)
            same = templates_equal_ignoring_hash(
                (existing.get("spec") or {}).get("template") or {}, (d.get("spec") or {}).get("template") or {}
            )
            if ours is not None and ours.get("uid") == uid_of(d) and same:
                return existing  # our own, not yet in the cache
            # A hash collision: bump collisionCount so the next hash differs.
            fresh = self.client.get(DEPLOYMENTS, name_of(d), namespace=ns)
            st = dict(fresh.get("status") or {})
            st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
            fresh["status"] = st
            self.client.update_status(DEPLOYMENTS, fresh)
            raise TemporaryError(0.05, f"hash collision on {name_of(rs)}") from None
        except errors.NotFound:
            return None  # namespace is going away


def deployment_key(d: Obj) -> str:
    return key_of(d)
