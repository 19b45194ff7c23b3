"""A stateful fake of the API as controllers see it: client verbs + informer caches over one dict.

``FakeCluster`` plays the API server (uids, generateName, resourceVersion checks, generation bumps,
merge patches, deletion with finalizers) and hands out ``FakeInformer``s that read the same dict
and call handlers synchronously on every change, so a test drives a controller with ``sync(key)``
and checks outcomes, not call sequences. ``RecordingQueue`` stands in for the work queue.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from controlplane.api import errors
from controlplane.api.registry import NAMESPACES, PODS, RESOURCES, Resource
from controlplane.controllers.base import ControllerContext, FakeClock, SharedInformers
from controlplane.controllers.util import format_time

M = TypeVar("M")

Obj = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


class RecordingQueue:
    def __init__(self, name: str = "") -> None:
        self.name = name
        self.added: list[str] = []
        self.after: list[tuple[str, float]] = []

    def add(self, key: str) -> None:
        self.added.append(key)

    def add_after(self, key: str, delay: float) -> None:
        self.after.append((key, delay))

    def add_rate_limited(self, key: str) -> None:
        self.added.append(key)

    def drain(self) -> list[str]:
        keys = list(dict.fromkeys(self.added))
        self.added.clear()
        return keys


class FakeInformer:
    def __init__(self, cluster: FakeCluster, res: Resource) -> None:
        self.cluster = cluster
        self.res = res
        self.handlers: list[tuple[Any, Any, Any]] = []
        self.indexes: dict[str, Callable[[Obj], list[str]]] = {}

    def add_handler(self, on_add: Any = None, on_update: Any = None, on_delete: Any = None) -> None:
        self.handlers.append((on_add, on_update, on_delete))

    def add_index(self, name: str, fn: Callable[[Obj], list[str]]) -> None:
        self.indexes[name] = fn

    def get(self, key: str) -> Obj | None:
        o = self.cluster.objects[self.res].get(key)
        return copy.deepcopy(o) if o is not None else None

    def list(self) -> list[Obj]:
        return [copy.deepcopy(o) for o in self.cluster.objects[self.res].values()]

    def by_index(self, name: str, value: str) -> list[Obj]:
        fn = self.indexes[name]
        return [o for o in self.list() if value in fn(o)]

    def has_synced(self) -> bool:
        return True

    def view(self, decode: Callable[[Obj], M]) -> FakeView[M]:
        return FakeView(self, decode)


class FakeView(Generic[M]):
    """A typed view over the fake's objects (decoded on each read: fine for a fake)."""

    def __init__(self, informer: FakeInformer, decode: Callable[[Obj], M]) -> None:
        self.informer = informer
        self.decode = decode

    def get(self, key: str) -> M | None:
        o = self.informer.get(key)
        return self.decode(o) if o is not None else None

    def list(self) -> list[M]:
        return [self.decode(o) for o in self.informer.list()]

    def by_index(self, name: str, value: str) -> list[M]:
        return [self.decode(o) for o in self.informer.by_index(name, value)]


class FakeCluster:
    def __init__(self) -> None:
        self.objects: dict[Resource, dict[str, Obj]] = {r: {} for r in RESOURCES}
        self.informers: dict[Resource, FakeInformer] = {}
        self.rv = itertools.count(1)
        self.clock = FakeClock()
        self.calls: list[tuple[str, str, str]] = []  # (verb, plural, name)
        self.fail_next: dict[str, errors.ApiError] = {}
        self.queues: dict[str, RecordingQueue] = {}
        self.subresource_posts: list[tuple[str, str, Any]] = []

    # -- wiring --------------------------------------------------------------------------------
    def informer(self, res: Resource) -> FakeInformer:
        if res not in self.informers:
            self.informers[res] = FakeInformer(self, res)
        return self.informers[res]

    def context(self) -> ControllerContext:
        def new_queue(name: str) -> RecordingQueue:
            self.queues[name] = RecordingQueue(name)
            return self.queues[name]

        return ControllerContext(
            client=self, informers=SharedInformers(self.informer), new_queue=new_queue, clock=self.clock
        )

    def _fire(self, res: Resource, kind: str, old: Obj | None, new: Obj | None) -> None:
        inf = self.informers.get(res)
        if inf is None:
            return
        for on_add, on_update, on_delete in list(inf.handlers):
            if kind == "add" and on_add:
                on_add(copy.deepcopy(new))
            elif kind == "update" and on_update:
                on_update(copy.deepcopy(old), copy.deepcopy(new))
            elif kind == "delete" and on_delete:
                on_delete(copy.deepcopy(old))

    @staticmethod
    def key(res: Resource, name: str, namespace: str | None) -> str:
        return f"{namespace}/{name}" if res.namespaced else name

    # -- seeding (no calls recorded) -------------------------------------------------------------
    def seed(self, res: Resource, obj: Obj) -> Obj:
        o = copy.deepcopy(obj)
        md = o.setdefault("metadata", {})
        if res.namespaced:
            md.setdefault("namespace", "default")
        md.setdefault("uid", str(uuid.uuid4()))
        md.setdefault("creationTimestamp", format_time(self.clock.now()))
        md["resourceVersion"] = str(next(self.rv))
        if res.has_generation:
            md.setdefault("generation", 1)
        o.setdefault("apiVersion", res.api_version)
        o.setdefault("kind", res.kind)
        k = self.key(res, md["name"], md.get("namespace"))
        old = self.objects[res].get(k)
        self.objects[res][k] = o
        self._fire(res, "update" if old else "add", old, o)
        return copy.deepcopy(o)

    def all(self, res: Resource) -> list[Obj]:
        return [copy.deepcopy(o) for o in self.objects[res].values()]

    def obj(self, res: Resource, name: str, namespace: str | None = "default") -> Obj | None:
        o = self.objects[res].get(self.key(res, name, namespace))
        return copy.deepcopy(o) if o else None

    def _check_fail(self, verb: str) -> None:
        e = self.fail_next.pop(verb, None)
        if e is not None:
            raise e

    # -- client verbs ----------------------------------------------------------------------------
    def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj:
        o = self.objects[res].get(self.key(res, name, namespace))
        if o is None:
            raise errors.not_found(res.plural, name, res.group)
        return copy.deepcopy(o)

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
    ) -> Obj:
        items = [
            copy.deepcopy(o)
            for o in self.objects[res].values()
            if not namespace or o["metadata"].get("namespace") == namespace
        ]
        return {"kind": res.list_kind, "items": items, "metadata": {"resourceVersion": str(next(self.rv))}}

    def create(self, res: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        self._check_fail("create")
        o = copy.deepcopy(obj)
        md = o.setdefault("metadata", {})
        if res.namespaced:
            md["namespace"] = namespace or md.get("namespace") or "default"
            if res != NAMESPACES and md["namespace"] not in self.objects[NAMESPACES] and self.objects[NAMESPACES]:
                raise errors.not_found("namespaces", md["namespace"])
        if not md.get("name"):
            md["name"] = md.get("generateName", "x-") + uuid.uuid4().hex[:5]
        k = self.key(res, md["name"], md.get("namespace"))
        if k in self.objects[res]:
            raise errors.already_exists(res.plural, md["name"], res.group)
        self.calls.append(("create", res.plural, md["name"]))
        md.pop("resourceVersion", None)
        return self.seed(res, o)

    def _replace(self, res: Resource, obj: Obj, status_only: bool) -> Obj:
        md = obj["metadata"]
        k = self.key(res, md["name"], md.get("namespace"))
        old = self.objects[res].get(k)
        if old is None:
            raise errors.not_found(res.plural, md["name"], res.group)
        if md.get("resourceVersion") and md["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, md["name"], res.group)
        new = copy.deepcopy(old)
        if status_only:
            new["status"] = copy.deepcopy(obj.get("status"))
        else:
            for f, v in obj.items():
                if f not in ("status", "metadata"):
                    new[f] = copy.deepcopy(v)
            for f in ("labels", "annotations", "ownerReferences", "finalizers"):
                if f in md:
                    new["metadata"][f] = copy.deepcopy(md[f])
                else:
                    new["metadata"].pop(f, None)
            if res.has_generation and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return self._store(res, k, old, new)

    def _store(self, res: Resource, k: str, old: Obj, new: Obj) -> Obj:
        new["metadata"]["resourceVersion"] = str(next(self.rv))
        md = new["metadata"]
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            del self.objects[res][k]
            self._fire(res, "delete", old, None)
            return copy.deepcopy(new)
        self.objects[res][k] = new
        self._fire(res, "update", old, new)
        return copy.deepcopy(new)

    def update(self, res: Resource, obj: Obj) -> Obj:
        self._check_fail("update")
        self.calls.append(("update", res.plural, obj["metadata"]["name"]))
        return self._replace(res, obj, status_only=False)

    def update_status(self, res: Resource, obj: Obj) -> Obj:
        self._check_fail("update_status")
        self.calls.append(("update_status", res.plural, obj["metadata"]["name"]))
        return self._replace(res, obj, status_only=True)

    def patch(
        self,
        res: Resource,
        name: str,
        body: Any,
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        self._check_fail("patch")
        self.calls.append(("patch", res.plural + (f"/{subresource}" if subresource else ""), name))
        k = self.key(res, name, namespace)
        old = self.objects[res].get(k)
        if old is None:
            raise errors.not_found(res.plural, name, res.group)
        uid = (body.get("metadata") or {}).get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise errors.conflict(res.plural, name, res.group)
        new = merge_patch(old, body)
        if subresource != "status":
            new["status"] = copy.deepcopy(old.get("status"))
            if new.get("status") is None:
                new.pop("status", None)
        if res.has_generation and new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return self._store(res, k, old, new)

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: dict[str, Any] | None = None,
    ) -> Any:
        self._check_fail("delete")
        k = self.key(res, name, namespace)
        old = self.objects[res].get(k)
        if old is None:
            raise errors.not_found(res.plural, name, res.group)
        self.calls.append(("delete", res.plural, name))
        if preconditions and preconditions.get("uid") not in (None, old["metadata"]["uid"]):
            raise errors.conflict(res.plural, name, res.group)
        fins = list(old["metadata"].get("finalizers") or [])
        if propagation_policy == "Foreground" and "foregroundDeletion" not in fins:
            fins.append("foregroundDeletion")
        if propagation_policy == "Orphan" and "orphan" not in fins:
            fins.append("orphan")
        if fins or (res == PODS and old["spec"].get("nodeName") and grace_period_seconds != 0 and self.graceful_pods):
            new = copy.deepcopy(old)
            new["metadata"]["finalizers"] = fins
            new["metadata"].setdefault("deletionTimestamp", format_time(self.clock.now()))
            if not fins:
                new["metadata"]["finalizers"] = ["fake/kubelet"]  # a kubelet would finish it
            return self._store(res, k, old, new)
        del self.objects[res][k]
        self._fire(res, "delete", old, None)
        return {}

    graceful_pods = False

    def post_subresource(self, res: Resource, name: str, sub: str, body: Any, namespace: str | None = None) -> Any:
        self.subresource_posts.append((res.plural, name, sub))
        if sub == "eviction":
            return self.delete(res, name, namespace)
        if sub == "finalize":  # the real verb is PUT; the controller falls back to this on fakes
            k = self.key(res, name, namespace)
            old = self.objects[res][k]
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["finalizers"] = list((body.get("spec") or {}).get("finalizers") or [])
            if new["metadata"].get("deletionTimestamp") and not new["spec"]["finalizers"]:
                del self.objects[res][k]
                self._fire(res, "delete", old, None)
                return new
            return self._store(res, k, old, new)
        raise errors.NotFound(f"no subresource {sub}")

    # -- test conveniences -------------------------------------------------------------------------
    def set_pod_state(
        self,
        name: str,
        *,
        phase: str = "Running",
        ready: bool = True,
        node: str | None = None,
        namespace: str = "default",
        ip: str | None = None,
    ) -> Obj:
        k = f"{namespace}/{name}"
        old = self.objects[PODS][k]
        new = copy.deepcopy(old)
        if node is not None:
            new["spec"]["nodeName"] = node
        st = new.setdefault("status", {})
        st["phase"] = phase
        if ip:
            st["podIP"] = ip
        st["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": format_time(self.clock.now()),
            }
        ]
        return self._store(PODS, k, old, new)
