"""``PodQueue``: the agent's queue of pod keys, with an urgent lane for what a user asked for.

Role: the informer, the PLEG, the probes and the pod workers' own retries ``add`` pod keys; the
agent's ``workers`` threads ``get`` a key, sync that pod, then ``done`` it. It keeps the work
queue's guarantees (``controlplane.client.workqueue``, client-go's):

1. **Coalescing**: a key added many times before a worker takes it is synced once.
2. **Exclusivity**: a key is never handed to two workers at once; a key added while it is being
   synced is re-queued by ``done``, so a change that arrives mid-sync is never lost.
3. **Delays**: ``add_after`` parks a key until its time (the earliest wins); ``add_rate_limited``
   backs off per key (``base * 2**failures``, capped), reset by ``forget``.

and adds one: **priority**. Kubelet runs one goroutine per pod, so a pod created while 100 others
are being resynced starts at once. With a bounded pool of worker threads and one FIFO, a new pod
waited behind every resync already queued — after a burst (100 pods turning ready, each status
write echoed back by the watch, PLEG events) that was ~100 syncs and 5–9 s. So keys added with
``urgent=True`` (a pod that appeared, a spec or deletion change: the user is waiting) are handed
out before every key of the normal lane (status echoes, probe flips, PLEG events, retries). A key
already queued in the normal lane moves to the urgent one when it is added urgently again.
Within a lane the order is FIFO. Urgent keys can delay normal ones but never drop them.

Concurrency: one lock and one condition guard everything; no background thread — due delayed
keys are moved onto the normal lane by whichever ``get``/``len`` looks first. After ``shutdown``,
``add`` is ignored and ``get`` returns None at once (level-triggered: the next start relists).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque

from controlplane.client.clock import Clock, RealClock


class PodQueue:
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
    ) -> None:
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._urgent: deque[str] = deque()
        self._normal: deque[str] = deque()
        self._dirty: set[str] = set()  # queued (in a lane) or to be re-queued by ``done``
        self._dirty_urgent: set[str] = set()  # the dirty keys that go to the urgent lane
        self._processing: set[str] = set()
        # Delaying heap of (ready_at, seq, key); ``_waiting`` holds each key's earliest ready_at so
        # an entry superseded by an earlier one is skipped when popped.
        self._heap: list[tuple[float, int, str]] = []
        self._waiting: dict[str, float] = {}
        self._seq = itertools.count()
        self._failures: dict[str, int] = {}
        self._base_delay, self._max_delay = base_delay, max_delay
        self._shutting_down = False

    # -- adding ----------------------------------------------------------------------------------
    def add(self, key: str, *, urgent: bool = False) -> None:
        with self._lock:
            self._add_locked(key, urgent)

    def _add_locked(self, key: str, urgent: bool) -> None:
        if self._shutting_down:
            return
        if key in self._dirty:
            if urgent and key not in self._dirty_urgent:
                # Already waiting in the normal lane (or for ``done``): promote it.
                self._dirty_urgent.add(key)
                if key not in self._processing:
                    self._normal.remove(key)
                    self._urgent.append(key)
            return
        self._dirty.add(key)
        if urgent:
            self._dirty_urgent.add(key)
        if key in self._processing:
            return  # ``done`` will re-queue it
        (self._urgent if urgent else self._normal).append(key)
        self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        with self._lock:
            if self._shutting_down:
                return
            if delay <= 0:
                self._add_locked(key, False)
                return
            ready_at = self._clock.monotonic() + delay
            current = self._waiting.get(key)
            if current is not None and current <= ready_at:
                return  # already due earlier
            self._waiting[key] = ready_at
            heapq.heappush(self._heap, (ready_at, next(self._seq), key))
            self._cond.notify_all()  # a getter shortens its wait to the new earliest deadline

    def add_rate_limited(self, key: str) -> None:
        with self._lock:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
            delay = self._max_delay if n >= 64 else min(self._base_delay * 2**n, self._max_delay)
        self.add_after(key, delay)

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    # -- taking ----------------------------------------------------------------------------------
    def _promote_due_locked(self) -> float | None:
        """Move due delayed keys onto the normal lane; return seconds until the next (or None)."""
        now = self._clock.monotonic()
        while self._heap:
            ready_at, _, key = self._heap[0]
            if self._waiting.get(key) != ready_at:
                heapq.heappop(self._heap)  # superseded by an earlier add_after
                continue
            if ready_at > now:
                return ready_at - now
            heapq.heappop(self._heap)
            del self._waiting[key]
            self._add_locked(key, False)
        return None

    def get(self, timeout: float | None = None) -> str | None:
        """The next key (urgent lane first), now exclusively yours until ``done``; None on
        shutdown or when ``timeout`` clock seconds pass first."""
        with self._lock:
            deadline = None if timeout is None else self._clock.monotonic() + timeout
            while True:
                if self._shutting_down:
                    return None
                next_due = self._promote_due_locked()
                lane = self._urgent if self._urgent else self._normal
                if lane:
                    key = lane.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    self._dirty_urgent.discard(key)
                    return key
                wait = next_due
                if deadline is not None:
                    left = deadline - self._clock.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._clock.wait(self._cond, wait)

    def done(self, key: str) -> None:
        with self._lock:
            self._processing.discard(key)
            if key in self._dirty and not self._shutting_down:
                (self._urgent if key in self._dirty_urgent else self._normal).append(key)
                self._cond.notify()

    # -- lifecycle -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        with self._lock:
            self._shutting_down = True
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._lock:
            return self._shutting_down

    def len(self) -> int:
        """Keys ready to be handed out now, both lanes (delayed keys count once due)."""
        with self._lock:
            self._promote_due_locked()
            return len(self._urgent) + len(self._normal)

    def __len__(self) -> int:
        return self.len()

    def urgent_len(self) -> int:
        with self._lock:
            return len(self._urgent)
