"""Subresources with their own semantics: ``pods/binding``, ``pods/eviction`` and ``*/scale``.

Role: the small REST storages kube-apiserver registers beside a kind's main one
(``pkg/registry/core/pod/storage/storage.go``: ``BindingREST``, ``EvictionREST``;
``pkg/registry/apps/deployment/storage/storage.go``: ``ScaleREST``). ``status`` and ``finalize``
need no code of their own here: ``ResourceOps`` writes them (status split, namespace finalizers).

Invariants:
- A binding sets ``spec.nodeName`` once and adds ``PodScheduled=True``; a pod already bound or
  being deleted is a 409. It goes through ``ResourceOps.guaranteed_update`` (read, modify, write
  at the read revision, again on conflict), as kube-apiserver's binding goes through the
  storage's ``GuaranteedUpdate``, so it never overwrites a concurrent status update.
- A Scale is a view: reading it reads the object; writing it writes ``spec.replicas`` of the
  object through ``ResourceOps.update`` (admission included).
- An eviction deletes the pod only when its PodDisruptionBudgets allow it (``evictions``).

Concurrency: synchronous; runs on a store thread. Conflicts are retried a bounded number of times.
"""

from __future__ import annotations

from typing import Any

from controlplane.api import errors, registry
from controlplane.api.meta import now_rfc3339
from controlplane.api.registry import Resource
from controlplane.api.selectors import LabelSelector
from controlplane.apiserver import evictions
from controlplane.apiserver.resources import Obj, ResourceOps, conflict

_SCALE_RETRIES = 5


def bind(ops: ResourceOps, namespace: str | None, name: str, body: Any, dry: bool) -> Obj:
    """pods/binding: set ``spec.nodeName`` once (409 if the pod is already bound); a Success Status."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the request body must be a Binding object")
    target = body.get("target") or {}
    node = target.get("name") if isinstance(target, dict) else None
    if not node or not isinstance(node, str):
        raise errors.invalid("Binding", name, [errors.Cause("target.name", "Required value", "FieldValueRequired")])
    if target.get("kind") not in (None, "", "Node"):
        raise errors.invalid("Binding", name, [errors.Cause("target.kind", "must be Node")])
    want_uid = (body.get("metadata") or {}).get("uid")

    def assign(pod: Obj) -> Obj:
        # kube-apiserver's setPodNodeAndMetadata (pkg/registry/core/pod/storage/storage.go).
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            raise errors.Conflict(f"pod {name} is being deleted, cannot be assigned to a host", kind="pods", name=name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise errors.Conflict(
                f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"', kind="pods", name=name
            )
        if want_uid and want_uid != md.get("uid"):
            raise errors.Conflict(f"pod {name} has a different uid than the binding", kind="pods", name=name)
        pod.setdefault("spec", {})["nodeName"] = node
        conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append(
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        )
        pod.setdefault("status", {})["conditions"] = conds
        return pod

    ops.guaranteed_update(registry.PODS, namespace, name, assign, dry_run=dry)
    return success_status()


def evict(ops: ResourceOps, namespace: str | None, name: str, body: Any, dry: bool) -> None:
    """pods/eviction: delete the pod if its disruption budgets allow (429 otherwise)."""
    opts: Obj = {}
    if isinstance(body, dict) and isinstance(body.get("deleteOptions"), dict):
        opts = body["deleteOptions"]
    evictions.check_budget(ops, namespace or "", name, dry)
    ops.delete(registry.PODS, namespace, name, opts, dry_run=dry)


def update_scale(ops: ResourceOps, res: Resource, namespace: str | None, name: str, body: Any, dry: bool) -> Obj:
    """PUT */scale: ``spec.replicas`` of the object from the Scale; the new Scale."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the request body must be a Scale object")
    spec = body.get("spec")
    replicas = spec.get("replicas") if isinstance(spec, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid("Scale", name, [errors.Cause("spec.replicas", "must be a non-negative integer")])
    kv = ops.get_kv(res, namespace, name)
    obj = ops.decode(kv)
    want_rv = (body.get("metadata") or {}).get("resourceVersion")
    if want_rv and str(want_rv) != obj["metadata"]["resourceVersion"]:
        raise conflict(res, name)
    obj.setdefault("spec", {})["replicas"] = replicas
    return to_scale(res, ops.update(res, namespace, name, obj, dry_run=dry))


def patch_scale(
    ops: ResourceOps, res: Resource, namespace: str | None, name: str, raw: bytes, ctype: str, dry: bool
) -> Obj:
    """PATCH */scale: the patch applied to the current Scale, written as ``update_scale`` (retried on conflict)."""
    from controlplane.api import patch as patchlib

    for _ in range(_SCALE_RETRIES):
        obj = ops.get(res, namespace, name)
        scale = to_scale(res, obj)
        new_scale = patchlib.apply_patch(res, scale, raw, ctype)
        try:
            return update_scale(ops, res, namespace, name, new_scale, dry)
        except errors.Conflict:
            continue
    raise conflict(res, name)


def to_scale(res: Resource, obj: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale view of a Deployment, ReplicaSet, StatefulSet or ReplicationController."""
    md = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector") or {}
    if res is registry.REPLICATIONCONTROLLERS and isinstance(selector, dict):
        selector = {"matchLabels": selector}  # an RC's selector is an equality map
    sel = ""
    if isinstance(selector, dict):
        try:
            sel = str(LabelSelector.from_dict(selector))
        except errors.ApiError:
            sel = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
        "spec": {"replicas": int(spec.get("replicas", 1) or 0)},
        "status": {"replicas": int(status.get("replicas", 0) or 0), "selector": sel},
    }


def success_status() -> Obj:
    """``{"kind":"Status","status":"Success","code":201}``: the answer of a create that stores no object."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
