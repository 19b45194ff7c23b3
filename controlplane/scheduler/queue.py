"""The scheduling queue: a work queue that hands out the highest-priority pod first.

Role: kube-scheduler's ``activeQ`` order (``PrioritySort``: ``spec.priority`` descending, then
arrival). The base ``WorkQueue`` keeps its guarantees (a key is in one cycle at a time, delayed
adds, urgent lane); only the choice among ready keys changes: the key with the highest priority,
the earliest queued among equals.

Concurrency: ``priority_of`` is called under the queue's lock, so it must not take locks that an
informer handler holds while adding to this queue: the scheduler passes a plain dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.client.workqueue import WorkQueue


class PriorityQueue(WorkQueue[str]):
    def __init__(self, name: str, priority_of: Callable[[str], int]) -> None:
        super().__init__(name)
        self._priority_of = priority_of

    def get(self, timeout: float | None = None) -> str | None:
        with self._lock:
            deadline = None if timeout is None else self._clock.monotonic() + timeout
            while True:
                if self._shutting_down:
                    return None
                next_due = self._promote_due_locked()
                lane = self._urgent or self._queue
                if lane:
                    best = max(range(len(lane)), key=lambda i: (self._priority_of(lane[i]), -i))
                    key = lane[best]
                    del lane[best]
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
