"""WorkQueue semantics (client-go's): coalescing, exclusivity, re-queue when dirty, delays, backoff."""

from __future__ import annotations

import threading

from controlplane.client.clock import FakeClock
from controlplane.client.controller import TemporaryError, process_one, run_workers
from controlplane.client.workqueue import WorkQueue
from tests.helpers.wait import wait_for


def test_add_coalesces_duplicates_and_keeps_fifo_order() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert len(q) == 3
    assert [q.get(timeout=0), q.get(timeout=0), q.get(timeout=0)] == ["a", "b", "c"]
    assert q.get(timeout=0) is None


def test_key_added_while_processing_is_requeued_on_done_not_handed_out_twice() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")  # changed while a worker holds it
    assert q.get(timeout=0) is None  # not given to a second worker
    q.add("a")  # still coalesced
    q.done("a")
    assert q.get(timeout=0) == "a"
    q.done("a")
    assert q.get(timeout=0) is None


def test_done_without_new_add_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    q.add("x")
    assert q.get(timeout=0) == "x"
    q.done("x")
    assert len(q) == 0


def test_add_after_waits_for_the_clock_and_earliest_time_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 3)  # earlier wins
    q.add_after("a", 20)  # later is ignored
    q.add_after("b", 5)
    assert len(q) == 0 and q.waiting() == 2
    clock.step(2.9)
    assert len(q) == 0
    clock.step(0.1)
    assert len(q) == 1 and q.get(timeout=0) == "a"
    clock.step(2)
    assert q.get(timeout=0) == "b"
    clock.step(100)
    assert q.get(timeout=0) is None  # the superseded 10 s and 20 s entries never fire


def test_add_after_zero_is_immediate() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    q.add_after("a", 0)
    assert q.get(timeout=0) == "a"


def test_rate_limited_backoff_doubles_from_5ms_to_1000s_and_forget_resets() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    for n in range(22):
        expected = min(0.005 * 2**n, 1000.0)
        q.add_rate_limited("k")
        assert q.num_requeues("k") == n + 1
        clock.step(expected - 1e-6)
        assert len(q) == 0, f"requeue {n} came before {expected}s"
        clock.step(2e-6)
        assert q.get(timeout=0) == "k", f"requeue {n} not due after {expected}s"
        q.done("k")
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    clock.step(0.005)
    assert q.get(timeout=0) == "k"


def test_blocking_get_wakes_when_fake_time_passes() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.add_after("late", 5)
    wait_for(clock.has_waiters, message="getter waiting")
    clock.step(4)
    assert not got
    clock.step(1)
    t.join(5)
    assert got == ["late"]


def test_shutdown_releases_blocked_getters_and_ignores_adds() -> None:
    q: WorkQueue[str] = WorkQueue()
    got: list[str | None] = ["sentinel"]
    t = threading.Thread(target=lambda: got.__setitem__(0, q.get()))
    t.start()
    q.shutdown()
    t.join(5)
    assert got == [None]
    q.add("a")
    assert len(q) == 0


def test_get_timeout_returns_none() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    got: list[str | None] = ["sentinel"]
    t = threading.Thread(target=lambda: got.__setitem__(0, q.get(timeout=2)))
    t.start()
    wait_for(clock.has_waiters, message="getter waiting")
    clock.step(2)
    t.join(5)
    assert got == [None]


def test_process_one_routes_outcomes() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    outcomes = {"ok": None, "later": TemporaryError(7), "boom": RuntimeError("x")}

    def sync(key: str) -> None:
        err = outcomes[key]
        if err is not None:
            raise err

    for k in outcomes:
        q.add(k)
    for _ in range(3):
        assert process_one(q, sync, timeout=0)
    assert q.num_requeues("ok") == 0
    assert q.num_requeues("boom") == 1
    clock.step(0.005)
    assert q.get(timeout=0) == "boom"
    q.done("boom")
    clock.step(7)
    assert q.get(timeout=0) == "later"


def test_a_sync_returning_a_delay_is_requeued_after_it_and_its_backoff_reset() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    calls: list[str] = []

    def sync(key: str) -> float | None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("first try fails")
        return 3.0 if len(calls) == 2 else None

    q.add("k")
    assert process_one(q, sync, timeout=0)  # raised: rate limited (5 ms)
    clock.step(0.005)
    assert process_one(q, sync, timeout=0)  # returned 3.0
    assert q.num_requeues("k") == 0  # it succeeded: the failure backoff is reset (RequeueAfter)
    clock.step(2.9)
    assert q.get(timeout=0) is None
    clock.step(0.1)
    assert process_one(q, sync, timeout=0)  # returned None: done, backoff reset
    assert q.num_requeues("k") == 0 and calls == ["k", "k", "k"]
    assert q.get(timeout=0) is None


def test_run_workers_never_runs_one_key_in_two_workers() -> None:
    q: WorkQueue[int] = WorkQueue()
    stop = threading.Event()
    active: set[int] = set()
    lock = threading.Lock()
    overlaps: list[int] = []
    counts: dict[int, int] = {}
    gate = threading.Event()

    def sync(key: int) -> None:
        with lock:
            if key in active:
                overlaps.append(key)
            active.add(key)
            counts[key] = counts.get(key, 0) + 1
        gate.wait(0.002)
        with lock:
            active.discard(key)

    runner = threading.Thread(target=run_workers, args=(q, sync, 4, stop))
    runner.start()
    for _ in range(50):
        for k in range(5):
            q.add(k)
    wait_for(lambda: len(q) == 0 and q.processing() == 0, message="queue drained")
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    assert overlaps == []
    assert set(counts) == set(range(5))
    assert all(c < 50 for c in counts.values())  # coalesced
