"""The scheduler loop: watch unscheduled pods, pick nodes with ``algorithm.schedule``, bind them.

Role: kube-scheduler's control loop, informer-driven, talking only to the API server.

Inputs (two informers, started together):
- **pods** (all of them): an unbound pod (no ``spec.nodeName``) whose ``spec.schedulerName`` is
  ours and that is not being deleted is *queued*; pods naming another scheduler are left alone
  (another scheduler may run beside us). Bound, non-terminal pods feed the ``Snapshot`` (what each
  node already carries).
- **nodes**: feed the ``Snapshot``.

Scheduling cycle (one pod at a time, in one thread, like kube-scheduler):
1. take a key from the scheduling queue; re-read the pod from the cache (it may be gone or bound);
2. under the snapshot lock, run ``algorithm.schedule``; on success **assume** the pod on the node
   at once (add it to the snapshot), so the next pods of a burst see the capacity as used and the
   cluster is never overcommitted while bindings are in flight;
3. hand the binding (``POST pods/{name}/binding``) to a pool of binder threads and go on with the
   next pod. A failed binding *forgets* the assumption and requeues the pod with backoff (a 409 or
   404 means the pod was bound by someone else or deleted: drop it).

Unschedulable pods get ``PodScheduled=False`` (reason ``Unschedulable``, Kubernetes' message, via
the ``status`` subresource) and a ``FailedScheduling`` Warning event, and wait in the
*unschedulable* set. They are retried with per-pod backoff (1 s doubling to 10 s, as
kube-scheduler's ``podInitialBackoffSeconds``/``podMaxBackoffSeconds``) when something that could
make them fit happens — a node is added or its schedulability changes (allocatable, labels, taints,
unschedulable, Ready), a bound pod goes away — or at the latest every ``unschedulable_flush``
seconds, and at once when the pod itself is updated.

The cycle runs on the client's worker loop (``controlplane.client.controller.worker_loop``):
``schedule_one`` is its sync, returning the pod's backoff delay when it must be tried again.

Concurrency: informer handlers (informer threads), the scheduling thread and binder threads share
the snapshot and the queue bookkeeping under ``self._lock``. The work queue guarantees a pod is in
one scheduling cycle at a time; an assumed pod is not scheduled again until its binding ends.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from controlplane.api import errors
from controlplane.api.registry import NODES, PODS
from controlplane.client.controller import worker_loop
from controlplane.client.events import EventRecorder
from controlplane.client.informer import Informer
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import ExponentialBackoff, WorkQueue
from controlplane.scheduler import algorithm as alg
from controlplane.scheduler import preemption
from controlplane.scheduler.queue import PriorityQueue

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
Obj = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def node_schedulability(node: Obj) -> tuple[Any, ...]:
    """What about a node matters for scheduling (heartbeats change nothing here)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    return (
        repr(sorted((meta.get("labels") or {}).items())),
        repr(spec.get("taints") or []),
        bool(spec.get("unschedulable")),
        repr(sorted((status.get("allocatable") or {}).items())),
        alg.node_ready_status(node),
    )


class Scheduler:
    def __init__(
        self,
        client: ApiClient,
        *,
        scheduler_name: str = DEFAULT_SCHEDULER_NAME,
        percentage_of_nodes_to_score: int | None = None,
        bind_workers: int = 16,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        unschedulable_flush: float = 60.0,
        record_scheduled_events: bool = True,
        recorder: EventRecorder | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.scheduler_name = scheduler_name
        self.percentage = percentage_of_nodes_to_score
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.unschedulable_flush = unschedulable_flush
        self.record_scheduled_events = record_scheduled_events
        self.recorder = recorder or EventRecorder(client, scheduler_name)
        self.rng = rng or random.Random()
        self.pods = Informer(client, PODS, name="scheduler-pods")
        self.nodes = Informer(client, NODES, name="scheduler-nodes")
        # spec.priority of queued pods, read by the queue under its own lock (a plain dict: no lock)
        self._priorities: dict[str, int] = {}
        # A cycle that raises is retried on the client's worker loop with the same backoff curve.
        self.queue: WorkQueue[str] = PriorityQueue(
            "scheduler", lambda k: self._priorities.get(k, 0), base_delay=initial_backoff, max_delay=max_backoff
        )
        self.preempted = 0
        self.snapshot = alg.Snapshot()
        self._lock = threading.Lock()
        self._assumed: dict[str, str] = {}  # pod key -> node, binding in flight
        # kube-scheduler's pod backoff (podBackoffQ): initial_backoff * 2**(failed attempts - 1),
        # capped; per pod, reset when it is bound or deleted. Guarded by ``_lock``.
        self._pod_backoff: ExponentialBackoff[str] = ExponentialBackoff(initial_backoff, max_backoff)
        self._backoff_until: dict[str, float] = {}
        self._unschedulable: set[str] = set()
        # Bumped whenever unschedulable pods are moved back to the queue; a cycle that fails after a
        # move it could not see requeues its pod instead of parking it (kube-scheduler's moveRequestCycle).
        self._move_seq = 0
        self._bind_pool = ThreadPoolExecutor(max_workers=bind_workers, thread_name_prefix="binder")
        self._stop = threading.Event()
        self.bound = 0
        self.failed_attempts = 0
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handler(self._on_node_add, self._on_node_update, self._on_node_delete)

    # -- event handlers (informer threads) ------------------------------------------------------------
    def responsible_for(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name

    def _wants_scheduling(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and self.responsible_for(pod)
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
            and not is_terminal(pod)
        )

    def _on_pod_add(self, pod: Obj) -> None:
        self._on_pod(pod, None)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        self._on_pod(new, old)

    def _on_pod(self, pod: Obj, old: Obj | None) -> None:
        key = _key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            if is_terminal(pod):
                self._forget_bound(key)
                return
            labels = (pod.get("metadata") or {}).get("labels") or {}
            with self._lock:
                self._assumed.pop(key, None)
                self._unschedulable.discard(key)
                self._pod_backoff.forget(key)
                self._backoff_until.pop(key, None)
                current = self.snapshot.node_of(key)
                info = self.snapshot.nodes.get(node)
                placed = info.pods.get(key) if info is not None else None
                if current == node and placed is not None and placed.labels == labels:
                    return  # a status update of a pod we already count
            try:
                pinfo = alg.pod_info(pod)
            except alg.QuantityError as e:
                log.warning("bound pod %s has a bad quantity, not counted: %s", key, e)
                return
            with self._lock:
                self.snapshot.add_pod(pinfo, node)
            return
        if self._wants_scheduling(pod):
            self._priorities[key] = preemption.priority(pod)
            with self._lock:
                parked = key in self._unschedulable
                if parked and old is not None and not _only_status_changed(old, pod):
                    # The pod itself changed (e.g. its tolerations): it may fit now.
                    self._unschedulable.discard(key)
                    parked = False
            if not parked:
                self.queue.add(key)
        elif (pod.get("metadata") or {}).get("deletionTimestamp"):
            with self._lock:
                self._unschedulable.discard(key)

    def _forget_bound(self, key: str) -> None:
        with self._lock:
            had = self.snapshot.node_of(key) is not None
            self.snapshot.remove_pod(key)
            self._assumed.pop(key, None)
        if had:
            self._move_unschedulable("a pod left its node")

    def _on_pod_delete(self, pod: Obj) -> None:
        key = _key(pod)
        self._priorities.pop(key, None)
        with self._lock:
            self._unschedulable.discard(key)
            self._pod_backoff.forget(key)
            self._backoff_until.pop(key, None)
        self._forget_bound(key)

    def _on_node_add(self, node: Obj) -> None:
        with self._lock:
            self.snapshot.set_node(node)
        self._move_unschedulable("node added")

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        with self._lock:
            self.snapshot.set_node(new)
        if node_schedulability(old) != node_schedulability(new):
            self._move_unschedulable("node changed")

    def _on_node_delete(self, node: Obj) -> None:
        with self._lock:
            self.snapshot.remove_node(str((node.get("metadata") or {}).get("name", "")))

    # -- queue bookkeeping --------------------------------------------------------------------------------
    def _requeue_with_backoff(self, key: str) -> None:
        with self._lock:
            until = self._backoff_until.get(key, 0.0)
        self.queue.add_after(key, max(0.0, until - time.monotonic()))

    def _move_unschedulable(self, why: str) -> None:
        with self._lock:
            self._move_seq += 1
            keys = list(self._unschedulable)
            self._unschedulable.clear()
        if keys:
            log.debug("%s: retrying %d unschedulable pod(s)", why, len(keys))
        for key in keys:
            self._requeue_with_backoff(key)

    # -- the scheduling cycle ---------------------------------------------------------------------------
    def schedule_one(self, key: str) -> float | None:
        """One scheduling cycle for ``key`` (the worker loop's sync): None, or seconds after which
        to try the pod again (it failed after a move it could not see)."""
        pod = self.pods.get(key)
        if pod is None or not self._wants_scheduling(pod):
            return None
        with self._lock:
            if key in self._assumed:
                return None  # binding in flight
        try:
            info = alg.pod_info(pod)
        except alg.QuantityError as e:
            return self._fail(pod, key, f"invalid resource request: {e}", None)
        with self._lock:
            seq = self._move_seq
            decision = alg.schedule(info, self.snapshot, percentage_of_nodes_to_score=self.percentage, rng=self.rng)
            if decision.node is not None:
                self.snapshot.add_pod(info, decision.node)
                self._assumed[key] = decision.node
        if decision.node is None:
            self._try_preemption(pod, info)
            return self._fail(pod, key, decision.message(), seq)
        self._priorities.pop(key, None)
        self._bind_pool.submit(self._bind, pod, key, decision.node)
        return None

    def _try_preemption(self, pod: Obj, info: alg.PodInfo) -> None:
        """PostFilter: nominate a node and evict the lower-priority pods in the way (if any)."""
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        with self._lock:
            on_nominated = (
                [q.pod for q in self.snapshot.nodes[nominated].pods.values()]
                if (nominated in self.snapshot.nodes)
                else []
            )
            if not preemption.eligible(info, on_nominated):
                return  # its earlier victims are still terminating
            cand = preemption.preempt(info, self.snapshot)
        if cand is None:
            return
        meta = pod["metadata"]
        log.info("preempting %d pod(s) on %s for %s", len(cand.victims), cand.node, _key(pod))
        try:
            fresh = self.client.get(PODS, meta["name"], namespace=meta["namespace"])
            fresh.setdefault("status", {})["nominatedNodeName"] = cand.node
            self.client.update_status(PODS, fresh)
        except (errors.ApiError, httpx.HTTPError, OSError) as e:
            log.warning("nominating %s for %s: %s", cand.node, _key(pod), e)
            return
        for victim in cand.victims:
            try:
                self.client.delete(PODS, victim.name, namespace=victim.namespace)
            except errors.NotFound:
                continue
            except (errors.ApiError, httpx.HTTPError, OSError) as e:
                log.warning("preempting %s: %s", victim.key, e)
                continue
            self.preempted += 1
            self.recorder.event(
                dict(victim.pod), "Normal", "Preempted", f"Preempted by pod {meta.get('uid')} on node {cand.node}"
            )

    def _bind(self, pod: Obj, key: str, node: str) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            self.client.post_subresource(PODS, meta["name"], "binding", binding, namespace=meta["namespace"])
        except (errors.Conflict, errors.NotFound, errors.AlreadyExists) as e:
            # Bound by someone else, or deleted: nothing to retry. Drop our assumption unless the
            # informer already confirmed a binding to the same node.
            log.info("binding %s to %s: %s", key, node, e)
            with self._lock:
                if self._assumed.pop(key, None) is not None:
                    self.snapshot.remove_pod(key)
            return
        except (errors.ApiError, httpx.HTTPError, OSError) as e:
            log.warning("binding %s to %s failed: %s; will retry", key, node, e)
            with self._lock:
                if self._assumed.pop(key, None) is not None:
                    self.snapshot.remove_pod(key)
                delay = self._pod_backoff.when(key)
                self._backoff_until[key] = time.monotonic() + delay
            self.queue.add_after(key, delay)  # from a binder thread, not the worker loop
            return
        self.bound += 1
        if self.record_scheduled_events:
            self.recorder.event(
                pod, "Normal", "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}"
            )

    def _fail(self, pod: Obj, key: str, message: str, seq: int | None) -> float | None:
        """Record a failed cycle; park the pod as unschedulable until a move, or, when a move
        happened during the cycle, return its backoff delay (the worker loop requeues it)."""
        self.failed_attempts += 1
        with self._lock:
            delay = self._pod_backoff.when(key)
            self._backoff_until[key] = time.monotonic() + delay
            missed_a_move = seq is not None and seq != self._move_seq
            if not missed_a_move:
                self._unschedulable.add(key)
        log.info("pod %s is unschedulable: %s", key, message)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        self._set_unschedulable_condition(pod, message)
        return delay if missed_a_move else None

    def _set_unschedulable_condition(self, pod: Obj, message: str) -> None:
        status = pod.get("status") or {}
        conditions = list(status.get("conditions") or [])
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if (
            current is not None
            and current.get("status") == "False"
            and current.get("reason") == "Unschedulable"
            and current.get("message") == message
        ):
            return
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": current.get("lastTransitionTime")
            if current is not None and current.get("status") == "False"
            else _now(),
        }
        new = copy.deepcopy(pod)
        new_status = new.setdefault("status", {})
        new_status.setdefault("phase", "Pending")
        new_status["conditions"] = [c for c in conditions if c.get("type") != "PodScheduled"] + [cond]
        try:
            self.client.update_status(PODS, new)
        except (errors.Conflict, errors.NotFound):
            pass  # changed meanwhile; the next attempt writes it again
        except (errors.ApiError, httpx.HTTPError) as e:
            log.warning("could not set PodScheduled=False on %s: %s", _key(pod), e)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> bool:
        """Start the informers and wait for both caches (until ``stop``): scheduling on a partial
        view would mark pods unschedulable for want of nodes we have not listed yet."""
        self.nodes.start()
        self.pods.start()
        waited = 0
        while not (self.nodes.wait_for_sync(1.0) and self.pods.wait_for_sync(1.0)):
            waited += 1
            if stop is not None and stop.is_set():
                return False
            if waited % 30 == 0:
                log.warning("scheduler: caches still not synced after %ds", waited)
        return True

    def run(self, stop: threading.Event) -> None:
        """Start the informers and schedule until ``stop`` is set (blocks)."""
        if not self.start(stop):
            self.shutdown()
            return
        flusher = threading.Thread(target=self._flush_loop, args=(stop,), name="sched-flush", daemon=True)
        flusher.start()
        log.info("scheduler %s: running with %d nodes", self.scheduler_name, len(self.snapshot))
        # One cycle at a time (kube-scheduler's scheduleOne), on the client's worker loop: a cycle
        # that raises is retried with the queue's backoff, one that returns a delay after it.
        worker_loop(self.queue, self.schedule_one, stop)
        self.shutdown()

    def _flush_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.unschedulable_flush):
            self._move_unschedulable("periodic flush")

    def shutdown(self) -> None:
        self.queue.shutdown()
        self._bind_pool.shutdown(wait=True, cancel_futures=False)
        self.pods.stop()
        self.nodes.stop()
        self.recorder.flush(5)


def _only_status_changed(old: Obj, new: Obj) -> bool:
    return old.get("spec") == new.get("spec") and (old.get("metadata") or {}).get("labels") == (
        new.get("metadata") or {}
    ).get("labels")
