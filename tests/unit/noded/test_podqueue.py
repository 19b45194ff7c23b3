"""noded's pod queue: the work queue's guarantees plus the urgent lane (no threads, a fake clock)."""

from __future__ import annotations

from controlplane.client.clock import FakeClock
from controlplane.client.workqueue import WorkQueue


def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while (k := q.get(timeout=0)) is not None:
        out.append(k)
        q.done(k)
    return out


def test_urgent_keys_are_handed_out_before_every_queued_normal_key() -> None:
    q = WorkQueue[str](clock=FakeClock())
    for i in range(100):
        q.add(f"default/resync-{i}")
    q.add("default/new", urgent=True)
    assert q.len() == 101 and q.urgent_len() == 1
    assert q.get(timeout=0) == "default/new"
    # The normal lane keeps its FIFO order behind it.
    assert drain(q) == [f"default/resync-{i}" for i in range(100)]


def test_coalescing_and_promotion_to_the_urgent_lane_without_a_duplicate() -> None:
    q = WorkQueue[str](clock=FakeClock())
    q.add("a")
    q.add("b")
    q.add("b")
    q.add("b", urgent=True)  # already queued as normal: moves ahead, still once
    q.add("b")  # a normal add never demotes it
    assert q.len() == 2
    assert drain(q) == ["b", "a"]


def test_a_key_is_never_handed_out_twice_at_once_and_an_urgent_add_mid_sync_is_kept() -> None:
    q = WorkQueue[str](clock=FakeClock())
    q.add("p")
    q.add("other")
    assert q.get(timeout=0) == "p"
    q.add("p", urgent=True)  # arrives while "p" is being synced
    assert q.get(timeout=0) == "other"  # not "p": it is still being processed
    assert q.get(timeout=0) is None
    q.add("late")
    q.done("p")  # re-queued, in the urgent lane
    assert q.get(timeout=0) == "p"
    q.done("p")
    q.done("other")
    assert drain(q) == ["late"]


def test_delays_and_rate_limits_land_in_the_normal_lane() -> None:
    clock = FakeClock()
    q = WorkQueue[str](clock=clock, base_delay=1.0)
    q.add_after("retry", 5)
    q.add_after("retry", 2)  # the earliest wins
    q.add_rate_limited("failing")  # 1 s
    assert q.get(timeout=0) is None and q.len() == 0
    clock.step(1.5)
    assert q.get(timeout=0) == "failing"
    q.done("failing")
    q.add_rate_limited("failing")  # second failure: 2 s
    assert q.num_requeues("failing") == 2
    clock.step(0.6)  # retry due (t=2.1)
    q.add("user", urgent=True)
    assert [q.get(timeout=0), q.get(timeout=0)] == ["user", "retry"]
    clock.step(2)
    assert q.get(timeout=0) == "failing"
    q.forget("failing")
    assert q.num_requeues("failing") == 0


def test_shutdown_ignores_adds_and_ends_gets() -> None:
    q = WorkQueue[str](clock=FakeClock())
    q.add("a", urgent=True)
    q.shutdown()
    q.add("b")
    assert q.shutting_down
    assert q.get(timeout=0) is None
