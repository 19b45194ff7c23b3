"""A bounded-frequency runner: kube-proxy's BoundedFrequencyRunner, in Python.

Role: call ``fn`` (the proxier's sync) when asked (``run()``), but never more often than every
``min_interval`` seconds (requests inside the window coalesce into one call at its end), and at
least every ``max_interval`` seconds (the periodic resync). ``retry_after(d)`` schedules one call
``d`` seconds from now (after a failed sync) unless one is due sooner.

Concurrency: ``run``/``retry_after`` may be called from any thread (informer handlers); ``fn``
only ever runs on the thread that called ``loop`` — one sync at a time, never overlapping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from controlplane.client.failures import FailureLog

log = logging.getLogger(__name__)


class BoundedFrequencyRunner:
    def __init__(
        self,
        name: str,
        fn: Callable[[], None],
        min_interval: float,
        max_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0 or max_interval <= 0 or min_interval > max_interval:
            raise ValueError(f"{name}: need 0 <= min_interval ({min_interval}) <= max_interval ({max_interval})")
        self.name = name
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.clock = clock
        self._cond = threading.Condition()
        self._requested = False
        self._retry_at: float | None = None
        self._last_run: float | None = None
        self.runs = 0
        self._bugs = FailureLog(log, f"{name}: sync raised", cap=max_interval, clock=clock)

    def run(self) -> None:
        """Ask for a call as soon as ``min_interval`` allows."""
        with self._cond:
            self._requested = True
            self._cond.notify_all()

    def retry_after(self, delay: float) -> None:
        with self._cond:
            at = self.clock() + delay
            if self._retry_at is None or at < self._retry_at:
                self._retry_at = at
            self._cond.notify_all()

    def _next_due(self) -> float:
        """When the next call is due (caller holds the lock)."""
        if self._last_run is None:
            return self.clock() if self._requested else float("inf")
        due = self._last_run + self.max_interval
        if self._requested:
            due = min(due, self._last_run + self.min_interval)
        if self._retry_at is not None:
            due = min(due, max(self._retry_at, self._last_run + self.min_interval))
        return due

    def loop(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (``stop`` must be followed by ``run()`` to wake the loop)."""
        while not stop.is_set():
            with self._cond:
                wait = self._next_due() - self.clock()
                if wait > 0:
                    self._cond.wait(timeout=min(wait, 3600.0))
                    continue
                self._requested = False
                self._retry_at = None
                self._last_run = self.clock()
            if stop.is_set():
                return
            self.runs += 1
            try:
                self.fn()
            except Exception as exc:  # the sync logs and retries its own failures; this is a bug
                # The loop survives it (never a dead worker): the traceback once, then one line
                # a minute with a count, retried with back-off.
                self.retry_after(max(self.min_interval, self._bugs.failure(exc, traceback=True)))
            else:
                self._bugs.success()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
