"""The scheduling queue: a work queue that hands out the highest-priority pod first.

Role: kube-scheduler's ``activeQ`` order (``PrioritySort``: ``spec.priority`` descending, then
arrival). The base ``WorkQueue`` keeps its guarantees (a key is in one cycle at a time, delayed
adds, urgent lane); only the choice among ready keys changes: the key with the highest priority,
the earliest queued among equals.

Concurrency: ``priority_of`` is called under the queue's lock, so it must not take locks that an
informer handler holds while adding to this queue: the scheduler passes a plain dict lookup.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from controlplane.client.workqueue import WorkQueue


class PriorityQueue(WorkQueue[str]):
    def __init__(
        self, name: str, priority_of: Callable[[str], int], *, base_delay: float = 0.005, max_delay: float = 1000.0
    ) -> None:
        super().__init__(name, base_delay=base_delay, max_delay=max_delay)
        self._priority_of = priority_of

    def _pop_locked(self, lane: deque[str]) -> str:
        best = max(range(len(lane)), key=lambda i: (self._priority_of(lane[i]), -i))
        key = lane[best]
        del lane[best]
        return key
