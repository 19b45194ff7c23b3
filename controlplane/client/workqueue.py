"""The work queue: coalescing, fair, with delays and per-key exponential backoff (client-go's).

Role: event handlers ``add`` keys; workers ``get`` a key, sync it, then ``done`` it. Level-triggered
controllers depend on three guarantees, the same as client-go's ``workqueue``:

1. **Coalescing**: a key added many times before a worker picks it up is processed once
   (the *dirty* set).
2. **Exclusivity**: a key is never handed to two workers at once (the *processing* set). A key
   added while it is being processed is remembered as dirty and re-queued by ``done`` — so the
   change that arrived mid-sync is never lost.
3. **Delays**: ``add_after(key, d)`` parks the key in a heap until ``d`` clock seconds have passed
   (the earliest pending time per key wins); ``add_rate_limited`` uses the per-key exponential
   backoff ``base * 2**failures`` capped at ``max_delay`` (client-go's default item limiter: 5 ms
   to 1000 s), reset by ``forget``.

and one of our own: **priority**. ``add(key, urgent=True)`` puts a key in an urgent lane handed out
before every key of the normal lane; a key already queued normally moves up (no duplicate) when
added urgently again, and a key added urgently while it is processed is re-queued urgently by
``done``. Within a lane the order is FIFO; delayed and rate-limited keys land in the normal lane.
Controllers leave it unused. noded needs it: kubelet runs one goroutine per pod, so a new pod
starts at once, while noded's bounded pool of workers with one FIFO made a new pod wait behind
every resync already queued (after a burst: ~100 syncs, 5–9 s).

Concurrency: one lock and one condition guard everything; there is no background thread — due
delayed keys are moved onto the queue by whichever ``get``/``len`` looks first. After ``shutdown``,
``add`` is ignored and ``get`` returns None at once (level-triggered: nothing is lost by not
draining, the next start relists).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from controlplane.client.clock import Clock, RealClock

K = TypeVar("K", bound=Hashable)


class ExponentialBackoff(Generic[K]):
    """Per-key failure counter: ``base * 2**n`` seconds for the n-th requeue, capped."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n >= 64:  # 2**64 overflows nothing in Python, but keeps the float sane
            return self.max_delay
        return float(min(self.base * (2**n), self.max_delay))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock | None = None,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[K] = deque()  # the normal lane
        self._urgent: deque[K] = deque()
        self._dirty: set[K] = set()  # queued (in a lane) or to be re-queued by ``done``
        self._dirty_urgent: set[K] = set()  # the dirty keys that go to the urgent lane
        self._processing: set[K] = set()
        # Delaying heap of (ready_at, seq, key); ``_waiting`` holds each key's earliest ready_at so
        # an entry superseded by an earlier one is skipped when popped.
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, float] = {}
        self._seq = itertools.count()
        self._limiter: ExponentialBackoff[K] = ExponentialBackoff(base_delay, max_delay)
        self._shutting_down = False

    # -- adding ----------------------------------------------------------------------------------
    def add(self, key: K, *, urgent: bool = False) -> None:
        with self._lock:
            self._add_locked(key, urgent)

    def _add_locked(self, key: K, urgent: bool = False) -> None:
        if self._shutting_down:
            return
        if key in self._dirty:
            if urgent and key not in self._dirty_urgent:
                # Already waiting in the normal lane (or for ``done``): promote it.
                self._dirty_urgent.add(key)
                if key not in self._processing:
                    self._queue.remove(key)
                    self._urgent.append(key)
            return
        self._dirty.add(key)
        if urgent:
            self._dirty_urgent.add(key)
        if key in self._processing:
            return  # ``done`` will re-queue it
        (self._urgent if urgent else self._queue).append(key)
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        with self._lock:
            if self._shutting_down:
                return
            if delay <= 0:
                self._add_locked(key)
                return
            ready_at = self._clock.monotonic() + delay
            current = self._waiting.get(key)
            if current is not None and current <= ready_at:
                return  # already due earlier
            self._waiting[key] = ready_at
            heapq.heappush(self._heap, (ready_at, next(self._seq), key))
            # Wake a getter so it shortens its wait to the new earliest deadline.
            self._cond.notify_all()

    def add_rate_limited(self, key: K) -> None:
        with self._lock:
            delay = self._limiter.when(key)
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        with self._lock:
            self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        with self._lock:
            return self._limiter.num_requeues(key)

    # -- taking ----------------------------------------------------------------------------------
    def _promote_due_locked(self) -> float | None:
        """Move due delayed keys onto the queue; return seconds until the next one (or None)."""
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
            self._add_locked(key)
        return None

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process (urgent lane first; now exclusively yours until ``done``), or
        None on shutdown or when ``timeout`` clock seconds pass first."""
        with self._lock:
            deadline = None if timeout is None else self._clock.monotonic() + timeout
            while True:
                if self._shutting_down:
                    return None
                next_due = self._promote_due_locked()
                lane = self._urgent or self._queue
                if lane:
                    key = self._pop_locked(lane)
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

    def _pop_locked(self, lane: deque[K]) -> K:
        """Which ready key ``get`` hands out: the oldest (FIFO). A subclass may choose another order
        (the scheduler's priority queue); called with the lock held."""
        return lane.popleft()

    def done(self, key: K) -> None:
        with self._lock:
            self._processing.discard(key)
            if key in self._dirty and not self._shutting_down:
                (self._urgent if key in self._dirty_urgent else self._queue).append(key)
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
            return len(self._urgent) + len(self._queue)

    def __len__(self) -> int:
        return self.len()

    def waiting(self) -> int:
        """Keys parked by ``add_after``/``add_rate_limited`` and not yet due."""
        with self._lock:
            return len(self._waiting)

    def processing(self) -> int:
        with self._lock:
            return len(self._processing)

    def urgent_len(self) -> int:
        """Keys ready in the urgent lane."""
        with self._lock:
            return len(self._urgent)
