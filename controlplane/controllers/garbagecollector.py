"""Garbage collector: delete dependents whose owners are gone; honour foreground and orphan.

Role: Kubernetes' garbage collector, level-triggered over ownerReferences rather than a graph:

- *dependent* keys: an object with ownerReferences. ``sync`` asks, for each owner reference,
  whether that owner (kind, name **and uid**) still exists — first in the informer cache, then,
  if the cache does not have it, with a live GET (a brand-new owner may not be cached yet; a
  dependent is deleted only on the API's word). All owners absent → delete the dependent
  (background, with a uid precondition); some absent → remove just those references.
- *owner* keys: an object being deleted that carries a GC finalizer.
  ``orphan``: remove this owner from its dependents' ownerReferences, then drop the finalizer.
  ``foregroundDeletion``: delete the dependents (foreground, so it recurses), wait until none
  with ``blockOwnerDeletion`` remains, then drop the finalizer (the API server then removes the
  owner). Background deletion needs nothing here: the API server removes the owner at once and
  its dependents become dependents with an absent owner.

Dependents are found through an index of owner uids on every informer. Keys are
``<resource index>|<mode>|<ns/name>``. Kinds we do not serve are treated as present (never
delete what we cannot check). Events are not watched (they carry no owners).
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import EVENTS, RESOURCES, Resource, for_kind
from controlplane.client.controller import TemporaryError
from controlplane.controllers.base import UID_INDEX, Controller, ControllerContext, InformerLike
from controlplane.controllers.util import Obj, key_of, meta, name_of, namespace_of, owner_refs, split_key, uid_of

log = logging.getLogger(__name__)

OWNER_UIDS_INDEX = "ownerUids"
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


def _owner_uids(o: Obj) -> list[str]:
    return [str(r.get("uid")) for r in owner_refs(o) if r.get("uid")]


def watched_resources() -> list[Resource]:
    return [r for r in RESOURCES if r != EVENTS and "watch" in r.verbs]


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 4

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.resources = watched_resources()
        self.informers: dict[Resource, InformerLike] = {}
        for i, res in enumerate(self.resources):
            inf = ctx.informers.get(res)
            inf.add_index(OWNER_UIDS_INDEX, _owner_uids)
            self.informers[res] = inf
            inf.add_handler(
                on_add=functools.partial(self._changed, i),
                on_update=functools.partial(self._updated, i),
                on_delete=functools.partial(self._deleted, i),
            )

    # -- handlers ----------------------------------------------------------------------------------
    def _changed(self, idx: int, obj: Obj) -> None:
        if owner_refs(obj):
            self.queue.add(f"{idx}|dep|{key_of(obj)}")
        fins = meta(obj).get("finalizers") or []
        if meta(obj).get("deletionTimestamp") and (ORPHAN in fins or FOREGROUND in fins):
            self.queue.add(f"{idx}|owner|{key_of(obj)}")

    def _updated(self, idx: int, _old: Obj, obj: Obj) -> None:
        self._changed(idx, obj)

    def _deleted(self, idx: int, obj: Obj) -> None:
        uid = uid_of(obj)
        for i, res in enumerate(self.resources):
            for dep in self.informers[res].by_index(OWNER_UIDS_INDEX, uid):
                self.queue.add(f"{i}|dep|{key_of(dep)}")
        # A dependent's deletion may unblock an owner in foreground deletion.
        for ref in owner_refs(obj):
            self._enqueue_owner_ref(ref, namespace_of(obj))

    def _enqueue_owner_ref(self, ref: dict[str, Any], ns: str) -> None:
        res = for_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if res is None or res not in self.informers:
            return
        idx = self.resources.index(res)
        key = f"{ns}/{ref.get('name')}" if res.namespaced else str(ref.get("name"))
        self.queue.add(f"{idx}|owner|{key}")

    # -- owner lookup ------------------------------------------------------------------------------
    def owner_state(self, ref: dict[str, Any], dependent_ns: str) -> tuple[str, Obj | None]:
        """("present"|"absent", owner) for one ownerReference, the API having the last word."""
        res = for_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if res is None:
            return "present", None
        uid = str(ref.get("uid", ""))
        inf = self.informers.get(res)
        if inf is not None:
            for o in inf.by_index(UID_INDEX, uid):
                return "present", o
        try:
            live = self.client.get(res, str(ref.get("name", "")), namespace=dependent_ns if res.namespaced else None)
        except errors.NotFound:
            return "absent", None
        return ("present", live) if uid_of(live) == uid else ("absent", None)

    # -- sync ---------------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        idx_s, mode, obj_key = key.split("|", 2)
        res = self.resources[int(idx_s)]
        obj = self.informers[res].get(obj_key)
        if obj is None:
            return
        if mode == "dep":
            self._sync_dependent(res, obj)
        else:
            self._sync_owner(res, obj)

    def _sync_dependent(self, res: Resource, obj: Obj) -> None:
        refs = owner_refs(obj)
        if not refs:
            return
        ns = namespace_of(obj)
        absent = [r for r in refs if self.owner_state(r, ns)[0] == "absent"]
        if not absent:
            return
        ns_arg = ns if res.namespaced else None
        if len(absent) == len(refs):
            if meta(obj).get("deletionTimestamp"):
                return
            log.info("gc: deleting %s %s: its owners are gone", res.kind, key_of(obj))
            try:
                self.client.delete(
                    res,
                    name_of(obj),
                    namespace=ns_arg,
                    propagation_policy="Background",
                    preconditions={"uid": uid_of(obj)},
                )
            except (errors.NotFound, errors.Conflict):
                pass
            return
        gone = {str(r.get("uid")) for r in absent}
        keep = [r for r in refs if str(r.get("uid")) not in gone]
        self._patch_refs(res, obj, keep)

    def _patch_refs(self, res: Resource, obj: Obj, refs: list[dict[str, Any]]) -> None:
        body = {"metadata": {"ownerReferences": refs or None, "uid": uid_of(obj)}}
        try:
            self.client.patch(res, name_of(obj), body, namespace=namespace_of(obj) if res.namespaced else None)
        except (errors.NotFound, errors.Conflict):
            pass

    def dependents(self, owner: Obj) -> list[tuple[Resource, Obj]]:
        uid = uid_of(owner)
        return [(res, d) for res in self.resources for d in self.informers[res].by_index(OWNER_UIDS_INDEX, uid)]

    def _sync_owner(self, res: Resource, owner: Obj) -> None:
        fins = list(meta(owner).get("finalizers") or [])
        if not meta(owner).get("deletionTimestamp"):
            return
        uid = uid_of(owner)
        deps = self.dependents(owner)
        if ORPHAN in fins:
            for dres, d in deps:
                self._patch_refs(dres, d, [r for r in owner_refs(d) if r.get("uid") != uid])
            self._remove_finalizer(res, owner, ORPHAN)
            return
        if FOREGROUND in fins:
            blocking = 0
            for dres, d in deps:
                ref = next((r for r in owner_refs(d) if r.get("uid") == uid), {})
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                if meta(d).get("deletionTimestamp"):
                    continue
                try:
                    self.client.delete(
                        dres,
                        name_of(d),
                        namespace=namespace_of(d) if dres.namespaced else None,
                        propagation_policy="Foreground",
                        preconditions={"uid": uid_of(d)},
                    )
                except (errors.NotFound, errors.Conflict):
                    pass
            if blocking:
                raise TemporaryError(0.5, f"{key_of(owner)}: waiting for {blocking} blocking dependent(s)")
            self._remove_finalizer(res, owner, FOREGROUND)

    def _remove_finalizer(self, res: Resource, obj: Obj, finalizer: str) -> None:
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [f for f in meta(obj).get("finalizers") or [] if f != finalizer]
        try:
            self.client.update(res, new)
        except errors.NotFound:
            return
        except errors.Conflict:
            raise TemporaryError(0.05, "owner changed; retry") from None


def split(key: str) -> tuple[str, str]:
    return split_key(key)
