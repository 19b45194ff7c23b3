"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go's ``leaderelection``).

Role: among several copies of a component (scheduler, controller-manager), exactly one acts at a
time. The Lease's spec is the lock record: ``holderIdentity``, ``leaseDurationSeconds``,
``acquireTime``, ``renewTime`` and ``leaseTransitions``. Writes use the Lease's
``resourceVersion`` (optimistic concurrency): of two candidates racing for a free lease, the API
server lets exactly one update win; the other gets 409 Conflict and stays a follower.

Expiry is judged by *our* clock, not by the timestamps in the record (clock skew between
machines must not matter): a follower notes the local monotonic time whenever it sees the record
change, and only takes over once ``lease_duration`` has passed since it last saw a change. The
leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` (< lease_duration)
it steps down *before* anyone else may take over, so two leaders never overlap, as long as clocks
run at the same rate. One refinement over client-go: a change first seen now happened after our
previous read, so when that read was the one just before (a retry period ago) the change is dated
from it — the earliest it can have happened — which is still more than ``renew_deadline`` after the
leader's renewal when ``lease_duration - retry period (with jitter) > renew_deadline`` (15 > 2.4 +
10 with Kubernetes' 15 s / 10 s / 2 s; otherwise the plain rule applies). A dead leader is then
replaced ~``lease_duration`` after its last renewal instead of up to a retry period later.

Lifecycle of ``run(stop)``: acquire (retrying every ``retry_period`` ± jitter) → call
``on_started_leading(lost)`` in a new thread, where ``lost`` is a ``threading.Event`` set when
leadership ends → renew until lost or ``stop`` → set ``lost``, call ``on_stopped_leading()``. On
``stop`` the leader releases the lease (empty holder, duration 1 s) so a peer takes over at once;
after an involuntary loss it becomes a candidate again. ``on_started_leading`` may return at once (having
started its own threads) or block until ``lost`` is set; either way we keep leading until the
lease is lost or ``stop`` is set. ``run`` returns once ``stop`` is set.
"""

from __future__ import annotations

import inspect
import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from controlplane.api import errors
from controlplane.api.registry import LEASES
from controlplane.client.clock import Clock, RealClock
from controlplane.client.rest import ApiClient

log = logging.getLogger(__name__)


def micro_time(t: float) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


class LeaderElector:
    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        on_started_leading: Callable[..., None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        *,
        clock: Clock | None = None,
        release_on_stop: bool = True,
        recorder: Any = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("leader election needs lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.release_on_stop = release_on_stop
        self.recorder = recorder  # an EventRecorder: "<identity> became leader" on the Lease, as client-go
        self.clock: Clock = clock or RealClock()
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._looked_at: float | None = None  # our clock at the last successful read of the record
        # A change first seen now happened after our previous read: a candidate may date it from
        # that read (the earliest it can have happened) only while that still leaves the old leader
        # more than renew_deadline to step down (lease_duration - retry period with jitter > it).
        self._max_read_gap = 1.2 * retry_period + 0.1
        self._date_from_previous_read = lease_duration - self._max_read_gap > renew_deadline
        self._lease: dict[str, Any] | None = None
        self._leading = threading.Event()
        self.transitions_seen = 0

    # -- state --------------------------------------------------------------------------------------
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def observed_holder(self) -> str:
        return str((self._observed_spec or {}).get("holderIdentity") or "")

    # -- one attempt -----------------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One round: True if we hold the lease afterwards."""
        now_wall = self.clock.time()
        looked = self.clock.monotonic()
        now = micro_time(now_wall)
        try:
            lease = self.client.get(LEASES, self.name, self.namespace)
        except errors.NotFound:
            record = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": record,
            }
            try:
                self._lease = self.client.create(LEASES, body, self.namespace)
            except (errors.AlreadyExists, errors.Conflict):
                return False
            self._observe(record)
            return True
        spec = dict(lease.get("spec") or {})
        previous, self._looked_at = self._looked_at, looked
        if spec != self._observed_spec:
            # Only when the previous read was the one just before (a retry period ago): after a gap
            # (our API server was down) the change may be much later than that read.
            recent = previous is not None and looked - previous <= self._max_read_gap
            dated = self._date_from_previous_read and recent and spec.get("holderIdentity") != self.identity
            self._observe(spec, at=previous if dated else None)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock.monotonic() < self._observed_at + duration:
            return False  # somebody else holds an unexpired lease
        record = dict(spec)
        record["holderIdentity"] = self.identity
        record["leaseDurationSeconds"] = int(self.lease_duration)
        record["renewTime"] = now
        if holder != self.identity:
            record["acquireTime"] = now
            record["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = record
        try:
            self._lease = self.client.update(LEASES, lease)
        except (errors.Conflict, errors.NotFound):
            return False
        self._observe(record)
        return True

    def _observe(self, spec: dict[str, Any], at: float | None = None) -> None:
        self._observed_spec = spec
        self._observed_at = self.clock.monotonic() if at is None else at

    def release(self) -> None:
        """Give the lease up (only if we still hold it), so a peer need not wait for expiry."""
        lease = self._lease
        if lease is None:
            return
        try:
            current = self.client.get(LEASES, self.name, self.namespace)
            spec = current.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = micro_time(self.clock.time())
            current["spec"] = spec
            self.client.update(LEASES, current)
        except (errors.ApiError, httpx.HTTPError) as e:
            log.info("lease %s/%s: release failed: %s", self.namespace, self.name, e)

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except (errors.ApiError, httpx.HTTPError, OSError) as e:
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    # -- the loop --------------------------------------------------------------------------------------
    def next_attempt_in(self) -> float:
        """A candidate's wait before its next try: ``retry_period`` (± jitter), but no later than the
        moment the observed holder's lease expires by our clock — a leader that died is replaced
        ``lease_duration`` after we last saw it renew, not up to a retry period later."""
        wait = self.retry_period * (1 + 0.2 * random.random())
        spec = self._observed_spec or {}
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            until_expiry = self._observed_at + duration - self.clock.monotonic()
            if until_expiry > 0:
                wait = min(wait, until_expiry + 0.01)
        return wait

    def _sleep(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` (clock time), True if stop was set."""
        if isinstance(self.clock, RealClock):
            return stop.wait(seconds)
        deadline = self.clock.monotonic() + seconds
        while self.clock.monotonic() < deadline:
            if stop.wait(0.005):
                return True
        return stop.is_set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # 1. acquire
            while not stop.is_set():
                if self._attempt():
                    break
                if self._sleep(stop, self.next_attempt_in()):
                    return
            if stop.is_set():
                return
            # client-go's words, in the log and as an Event on the Lease (`kubectl get events -n kube-system`)
            log.info("successfully acquired lease %s/%s (%s)", self.namespace, self.name, self.identity)
            if self.recorder is not None and self._lease is not None:
                self.recorder.event(self._lease, "Normal", "LeaderElection", f"{self.identity} became leader")
            lost = threading.Event()
            self._leading.set()
            worker = None
            if self.on_started_leading is not None:
                cb = self.on_started_leading
                args = (lost,) if _takes_argument(cb) else ()
                worker = threading.Thread(target=cb, args=args, name=f"leading-{self.name}", daemon=True)
                worker.start()
            # 2. renew until the deadline passes without a successful renewal, or stop
            last_renew = self.clock.monotonic()
            while not stop.is_set():
                if self._sleep(stop, self.retry_period):
                    break
                if self._attempt():
                    last_renew = self.clock.monotonic()
                elif self.clock.monotonic() - last_renew >= self.renew_deadline or (
                    self.observed_holder() not in ("", self.identity)
                ):
                    log.warning("lease %s/%s: %s lost leadership", self.namespace, self.name, self.identity)
                    break
            # 3. step down
            self._leading.clear()
            lost.set()
            if stop.is_set() and self.release_on_stop:
                self.release()
            if self.on_stopped_leading is not None:
                try:
                    self.on_stopped_leading()
                except Exception:
                    log.exception("on_stopped_leading failed")
            if worker is not None:
                worker.join(timeout=self.renew_deadline)
