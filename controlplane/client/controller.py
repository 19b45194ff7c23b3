"""The worker loop shared by every informer-driven component (client-go's ``processNextWorkItem``).

Role: pull keys from a ``WorkQueue`` and call ``sync(key)``; decide what happens to the key from
how ``sync`` ended (kopf's error taxonomy, controller-runtime's ``Result.RequeueAfter``):

- returned ``None`` → ``forget`` (reset its backoff);
- returned a delay in seconds → done for now, again after that long: ``forget`` and
  ``add_after(key, delay)`` (controller-runtime's ``RequeueAfter``; a periodic resync, a probe's
  next period, a back-off the sync keeps itself);
- raised ``TemporaryError(delay)`` → "not yet, and I know when": ``add_after(key, delay)``;
- raised anything else → logged, ``add_rate_limited`` (exponential per-key backoff).

The controllers, the scheduler, the network agent, the NetworkPolicy controller, the DNS server's
view and noded's pod workers all run on this one loop (``worker_loop``/``run_workers``).

Either way ``done(key)`` runs last, which re-queues the key if it changed during the sync.

Concurrency: ``workers`` threads share one queue; the queue guarantees a key is never in two
workers at once. ``run_workers`` blocks until ``stop`` is set, then shuts the queue down and joins
its threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from controlplane.client.workqueue import WorkQueue

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class TemporaryError(Exception):
    """Raised by a sync that cannot finish yet and wants another try after ``delay`` seconds."""

    def __init__(self, delay: float = 1.0, message: str = "") -> None:
        super().__init__(message or f"retry in {delay}s")
        self.delay = delay


def process_one(queue: WorkQueue[K], sync: Callable[[K], float | None], timeout: float | None = None) -> bool:
    """Process one key. False when the queue is shut down or ``timeout`` passed with no key."""
    key = queue.get(timeout=timeout)
    if key is None:
        return False
    try:
        requeue_after = sync(key)
    except TemporaryError as e:
        log.debug("%s: %s (retry in %.3fs)", key, e, e.delay)
        queue.add_after(key, e.delay)
    except Exception:
        log.exception("%s: sync of %r failed; will retry with backoff", queue.name or "queue", key)
        queue.add_rate_limited(key)
    else:
        queue.forget(key)
        if requeue_after is not None:
            queue.add_after(key, requeue_after)
    finally:
        queue.done(key)
    return True


def worker_loop(queue: WorkQueue[K], sync: Callable[[K], float | None], stop: threading.Event) -> None:
    while not stop.is_set() and not queue.shutting_down:
        process_one(queue, sync, timeout=0.5)


def run_workers(
    queue: WorkQueue[K],
    sync: Callable[[K], float | None],
    workers: int,
    stop: threading.Event,
    *,
    name: str = "",
) -> None:
    """Run ``workers`` threads over ``queue`` until ``stop`` is set (blocks)."""
    threads = [
        threading.Thread(
            target=worker_loop,
            args=(queue, sync, stop),
            name=f"{name or queue.name or 'worker'}-{i}",
            daemon=True,
        )
        for i in range(max(1, workers))
    ]
    for t in threads:
        t.start()
    stop.wait()
    queue.shutdown()
    for t in threads:
        t.join(timeout=30)
