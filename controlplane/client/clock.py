"""Clocks: the one seam through which the client machinery reads time and waits.

Role: the work queue (delays, backoff), leader election (lease expiry) and heartbeats take a
``Clock`` so tests can drive time by hand with ``FakeClock`` (client-go's ``clock.FakeClock``,
trio's ``MockClock``) instead of sleeping.

Invariants: ``monotonic()`` never goes backwards; ``time()`` is wall-clock seconds since the epoch
(used only for timestamps written into objects). ``wait(cond, timeout)`` is called with ``cond``
held and returns when notified or when ``timeout`` seconds of *this clock's* time have passed.

Concurrency: all methods are thread-safe. ``FakeClock.step`` wakes every waiter so it re-checks
its deadline against the new time.
"""

from __future__ import annotations

import threading
import time as _time
import weakref
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        """Wait on ``cond`` (held by the caller) for at most ``timeout`` clock seconds."""
        ...


class RealClock:
    def monotonic(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(timeout if timeout is None else max(0.0, timeout))


class FakeClock:
    """A clock that moves only when a test calls ``step``/``set``.

    Waiters block (really) until a step moves fake time past their deadline or they are notified.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._lock = threading.Lock()
        self._tick = threading.Condition(self._lock)
        # Conditions of waiters, so a step can wake them (weak: a dropped queue is not kept alive).
        self._waiters: weakref.WeakSet[threading.Condition] = weakref.WeakSet()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._now + self._wall_offset

    def step(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot step backwards")
        with self._lock:
            self._now += seconds
            self._tick.notify_all()
            waiters = list(self._waiters)
        for cond in waiters:
            with cond:
                cond.notify_all()

    def set(self, t: float) -> None:
        self.step(max(0.0, t - self.monotonic()))

    def sleep(self, seconds: float) -> None:
        with self._lock:
            deadline = self._now + seconds
            while self._now < deadline:
                self._tick.wait()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        # Registered while ``cond`` is held, so a concurrent ``step`` (which must take ``cond`` to
        # notify) cannot slip between our registration and our wait: no lost wake-up.
        with self._lock:
            self._waiters.add(cond)
            if timeout is not None and timeout <= 0:
                return
        cond.wait()

    def has_waiters(self) -> bool:
        with self._lock:
            return len(self._waiters) > 0
