"""The controller skeleton: shared informers, work queues of keys, expectations, a wall clock.

Role: what every controller in this package is built from, in client-go's shape:

    informer events ──► handler computes the affected key(s) ──► queue.add(key)
    worker: key = queue.get() ──► controller.sync(key) ──► read cache, plan (pure), act (client)

Invariants:
- Handlers never call the API; they only enqueue keys (and record expectations being observed).
- ``sync(key)`` is level-triggered: it reads the current cache, not the event, so it is safe to run
  any number of times, after a crash, or for a key whose object is gone.
- Expectations stop a controller from acting twice on a stale cache: after creating N pods, the
  owner is not synced again until the informer has seen those N creations (or a TTL passed).

Concurrency: informers run their own threads and call handlers there; ``run_workers`` runs
``workers`` threads per controller, and the work queue guarantees a key is never synced by two
threads at once. ``Expectations`` is the only shared mutable state and takes a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from controlplane.api import errors
from controlplane.api.registry import Resource
from controlplane.client.controller import TemporaryError
from controlplane.controllers.util import Obj, controller_ref, is_deleting, key_of, namespace_of, node_name_of, uid_of

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# seams: what a controller needs from the client package (structural, so fakes need no base class)


class ApiClientLike(Protocol):
    def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj: ...

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
    ) -> Obj: ...

    def create(self, res: Resource, obj: Obj, namespace: str | None = None) -> Obj: ...

    def update(self, res: Resource, obj: Obj) -> Obj: ...

    def update_status(self, res: Resource, obj: Obj) -> Obj: ...

    def patch(
        self,
        res: Resource,
        name: str,
        body: Any,
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj: ...

    def post_subresource(self, res: Resource, name: str, sub: str, body: Any, namespace: str | None = None) -> Any: ...

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: dict[str, Any] | None = None,
    ) -> Any: ...


M = TypeVar("M")


class ViewLike(Protocol[M]):
    """An informer's cache as typed read models (``controlplane.client.informer.View``)."""

    def get(self, key: str) -> M | None: ...

    def by_index(self, name: str, value: str) -> list[M]: ...

    def list(self) -> list[M]: ...


class InformerLike(Protocol):
    def add_handler(
        self,
        on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> None: ...

    def add_index(self, name: str, fn: Callable[[Obj], list[str]]) -> None: ...

    def by_index(self, name: str, value: str) -> list[Obj]: ...

    def get(self, key: str) -> Obj | None: ...

    def list(self) -> list[Obj]: ...

    def has_synced(self) -> bool: ...

    def view(self, decode: Callable[[Obj], M]) -> ViewLike[M]: ...


class QueueLike(Protocol):
    def add(self, key: str) -> None: ...

    def add_after(self, key: str, delay: float) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A wall clock tests move by hand (``step``), so grace periods need no waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def step(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# shared informers


# Indexes every informer gets: by namespace, by uid (owner lookups), by controlling owner's uid.
NAMESPACE_INDEX = "namespace"
UID_INDEX = "uid"
OWNER_INDEX = "owner"  # controller ownerReference uid
NODE_INDEX = "node"  # pods only: spec.nodeName


def _ns_index(o: Obj) -> list[str]:
    return [namespace_of(o)]


def _uid_index(o: Obj) -> list[str]:
    return [uid_of(o)]


def _owner_index(o: Obj) -> list[str]:
    ref = controller_ref(o)
    return [str(ref.get("uid"))] if ref else []


def _node_index(o: Obj) -> list[str]:
    n = node_name_of(o)
    return [n] if n else []


class SharedInformers:
    """One informer per resource, shared by every controller of the manager (one watch each)."""

    def __init__(self, new_informer: Callable[[Resource], InformerLike]) -> None:
        self._new = new_informer
        self._informers: dict[Resource, InformerLike] = {}
        self._lock = threading.Lock()

    def get(self, res: Resource) -> InformerLike:
        with self._lock:
            inf = self._informers.get(res)
            if inf is None:
                inf = self._new(res)
                inf.add_index(NAMESPACE_INDEX, _ns_index)
                inf.add_index(UID_INDEX, _uid_index)
                inf.add_index(OWNER_INDEX, _owner_index)
                if res.plural == "pods" and res.group == "":
                    inf.add_index(NODE_INDEX, _node_index)
                self._informers[res] = inf
            return inf

    def all(self) -> list[InformerLike]:
        with self._lock:
            return list(self._informers.values())

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self.all())


# ---------------------------------------------------------------------------------------------
# expectations


@dataclass
class _Expect:
    creates: int = 0
    deletes: set[str] = field(default_factory=set)
    timestamp: float = 0.0


class Expectations:
    """client-go's (UID-tracking) ControllerExpectations, keyed by owner key.

    ``expect`` before acting; informer handlers call ``creation_observed`` / ``deletion_observed``;
    ``satisfied`` is true once everything expected was seen, or after ``ttl`` seconds (a lost
    event must not wedge the owner forever).
    """

    def __init__(self, ttl: float = 300.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._mono = monotonic
        self._lock = threading.Lock()
        self._by_key: dict[str, _Expect] = {}

    def expect(self, key: str, creates: int = 0, deletes: Iterable[str] = ()) -> None:
        with self._lock:
            self._by_key[key] = _Expect(creates, set(deletes), self._mono())

    def creation_observed(self, key: str) -> None:
        with self._lock:
            e = self._by_key.get(key)
            if e is not None and e.creates > 0:
                e.creates -= 1

    def deletion_observed(self, key: str, dependent_key: str) -> None:
        with self._lock:
            e = self._by_key.get(key)
            if e is not None:
                e.deletes.discard(dependent_key)

    def satisfied(self, key: str) -> bool:
        with self._lock:
            e = self._by_key.get(key)
            if e is None:
                return True
            if e.creates <= 0 and not e.deletes:
                return True
            return self._mono() - e.timestamp > self._ttl

    def forget(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)


class OwnedPodEvents:
    """Pod events → the key of the object that controls the pod, with its expectations observed.

    For controllers whose pods are only ever their own (DaemonSet, Job): a pod whose controllerRef
    names an ``owner_kind`` wakes that owner; a create or a started deletion is counted against
    the owner's expectations, so its next sync knows the informer has caught up. (The ReplicaSet
    controller has its own richer version: it also adopts orphans that match its selector.)
    """

    owner_kind: ClassVar[str]
    expectations: Expectations
    queue: Any

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.owner_kind:
            return None
        return f"{namespace_of(pod)}/{ref.get('name')}"

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        if key:
            if is_deleting(new) and not is_deleting(old):
                self.expectations.deletion_observed(key, key_of(new))
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, key_of(pod))
            self.queue.add(key)


# ---------------------------------------------------------------------------------------------
# the controller context


@dataclass
class ControllerContext:
    client: ApiClientLike
    informers: SharedInformers
    new_queue: Callable[[str], Any]
    clock: Clock = field(default_factory=SystemClock)
    recorder: Any = None  # EventRecorder-like: .event(obj, type_, reason, message)

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.event(obj, type_, reason, message)
        except Exception:  # events are best effort, like client-go's recorder
            log.debug("event not recorded", exc_info=True)


class Controller:
    """A named controller: a queue of keys and a ``sync``. Subclasses register handlers in __init__."""

    name = "controller"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.queue: Any = ctx.new_queue(self.name)

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def sync(self, key: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def sync_handler(self, key: str) -> None:
        """``sync`` as the worker loop calls it: a 409 means our cache was stale — an expected
        "not yet" (retry soon, quietly), not a failure to log with a traceback."""
        try:
            self.sync(key)
        except errors.Conflict as e:
            raise TemporaryError(0.05, f"{self.name} {key}: {e}") from None


def ignore_not_found(fn: Callable[[], Any]) -> Any:
    """Run a delete/update where "already gone" is success (idempotent verbs)."""
    try:
        return fn()
    except errors.NotFound:
        return None


def ignore_exists(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except errors.AlreadyExists:
        return None
