"""Leader election rounds and event aggregation against a tiny in-memory fake API (MockTransport)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pytest

from controlplane.client.clock import FakeClock
from controlplane.client.events import EventRecorder
from controlplane.client.leaderelection import LeaderElector
from controlplane.client.rest import ApiClient
from tests.helpers.wait import wait_for


class FakeObjects:
    """Objects by path with resourceVersion checks on PUT (409 on mismatch), merge-patch of top keys."""

    def __init__(self) -> None:
        self.objs: dict[str, dict[str, Any]] = {}
        self.rv = 0
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.hook = False

    def handler(self, req: httpx.Request) -> httpx.Response:
        path = req.url.path
        with self.lock:
            self.log.append((req.method, path))
            if req.method == "GET":
                if path not in self.objs:
                    return httpx.Response(404, json={"reason": "NotFound", "code": 404, "message": "not found"})
                return httpx.Response(200, json=self.objs[path])
            body = orjson.loads(req.content)
            if req.method == "POST":
                path = f"{path}/{body['metadata']['name']}"
                if path in self.objs:
                    return httpx.Response(409, json={"reason": "AlreadyExists", "code": 409, "message": "exists"})
            elif req.method == "PUT":
                cur = self.objs.get(path)
                if cur is None:
                    return httpx.Response(404, json={"reason": "NotFound", "code": 404, "message": "gone"})
                if body["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
                    return httpx.Response(409, json={"reason": "Conflict", "code": 409, "message": "modified"})
            elif req.method == "PATCH":
                cur = self.objs.get(path)
                if cur is None:
                    return httpx.Response(404, json={"reason": "NotFound", "code": 404, "message": "gone"})
                body = {**cur, **body}
            self.rv += 1
            body["metadata"]["resourceVersion"] = str(self.rv)
            self.objs[path] = body
            return httpx.Response(201 if req.method == "POST" else 200, json=body)


LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sched"


def electors(api: FakeObjects, clock: FakeClock) -> tuple[LeaderElector, LeaderElector]:
    client = ApiClient("http://api.test", transport=httpx.MockTransport(lambda r: api.handler(r)))
    mk = lambda ident: LeaderElector(  # noqa: E731
        client, "kube-system", "sched", ident, lease_duration=15, renew_deadline=10, retry_period=2, clock=clock
    )
    return mk("a"), mk("b")


def test_one_leader_then_takeover_only_after_lease_duration_without_renewal() -> None:
    api, clock = FakeObjects(), FakeClock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    spec = api.objs[LEASE_PATH]["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 15 and spec["renewTime"].endswith("Z")
    # a keeps renewing: b never gets it, however long
    for _ in range(20):
        clock.step(2)
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
    # a dies (stops renewing): b waits a full lease duration from the earliest the last renewal can
    # have happened by its own clock — its previous read, 2 s before it saw the change — which is
    # still 13 s after the renewal, past a's renew deadline (10 s): a has stepped down by then
    clock.step(12.9)
    assert b.try_acquire_or_renew() is False
    clock.step(0.2)
    assert b.try_acquire_or_renew() is True
    spec = api.objs[LEASE_PATH]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # a comes back: it sees b's fresh record and stays a follower
    assert a.try_acquire_or_renew() is False


def test_an_update_based_on_a_stale_read_loses_with_conflict() -> None:
    api, clock = FakeObjects(), FakeClock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b starts watching the record now
    clock.step(16)  # a looks dead to b ...
    real = api.handler

    def renew_first(req: httpx.Request) -> httpx.Response:
        if req.method == "PUT" and api.hook:
            api.hook = False
            assert a.try_acquire_or_renew()  # ... but a renews between b's read and b's write
        return real(req)

    api.hook = True
    api.handler = renew_first  # type: ignore[method-assign]
    assert b.try_acquire_or_renew() is False
    assert api.objs[LEASE_PATH]["spec"]["holderIdentity"] == "a"
    assert api.objs[LEASE_PATH]["spec"]["leaseTransitions"] == 0


def test_release_lets_a_peer_take_over_at_once() -> None:
    api, clock = FakeObjects(), FakeClock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert api.objs[LEASE_PATH]["spec"]["holderIdentity"] == ""
    assert b.try_acquire_or_renew() is True


def test_run_calls_callbacks_and_releases_on_stop() -> None:
    api = FakeObjects()
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    started, stopped = threading.Event(), threading.Event()
    lost_seen: list[threading.Event] = []

    def on_start(lost: threading.Event) -> None:
        lost_seen.append(lost)
        started.set()

    el = LeaderElector(
        client, "kube-system", "sched", "a", 3, 2, 0.05, on_started_leading=on_start, on_stopped_leading=stopped.set
    )
    stop = threading.Event()
    t = threading.Thread(target=el.run, args=(stop,))
    t.start()
    assert started.wait(5)
    assert el.is_leader()
    stop.set()
    t.join(5)
    assert stopped.is_set() and lost_seen[0].is_set() and not el.is_leader()
    assert api.objs[LEASE_PATH]["spec"]["holderIdentity"] == ""


def test_bad_timings_are_refused() -> None:
    client = ApiClient("http://api.test", transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaderElector(client, "ns", "x", "me", lease_duration=5, renew_deadline=10)


def test_identical_events_aggregate_into_one_with_a_count() -> None:
    api = FakeObjects()
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    rec = EventRecorder(client, "default-scheduler")
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "ns1", "uid": "u1"}}
    for _ in range(3):
        rec.event(pod, "Warning", "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.")
    rec.event(pod, "Normal", "Scheduled", "Successfully assigned ns1/web to n1")
    assert rec.flush(5)
    events = [o for p, o in api.objs.items() if "/events/" in p]
    by_reason = {e["reason"]: e for e in events}
    assert len(events) == 2
    failed = by_reason["FailedScheduling"]
    assert failed["count"] == 3 and failed["type"] == "Warning"
    assert failed["involvedObject"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "name": "web",
        "uid": "u1",
        "namespace": "ns1",
    }
    assert failed["source"] == {"component": "default-scheduler"}
    assert failed["metadata"]["namespace"] == "ns1" and failed["metadata"]["name"].startswith("web.")
    assert by_reason["Scheduled"]["count"] == 1
    assert [m for m, _ in api.log].count("POST") == 2
    rec.close()


def test_leader_whose_callback_returns_at_once_keeps_leading() -> None:
    api = FakeObjects()
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    starts: list[int] = []
    el = LeaderElector(client, "kube-system", "sched", "a", 3, 2, 0.02, on_started_leading=lambda: starts.append(1))
    stop = threading.Event()
    t = threading.Thread(target=el.run, args=(stop,))
    t.start()
    try:
        wait_for(lambda: [m for m, _ in api.log].count("PUT") >= 5, message="several renewals")
        assert starts == [1] and el.is_leader()
    finally:
        stop.set()
        t.join(5)


def test_a_new_leader_says_so_in_an_event_on_the_lease() -> None:
    """client-go's LeaderElection event: "<identity> became leader", about the Lease, once per term."""
    api = FakeObjects()
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    said: list[tuple[str, str, str, str]] = []

    class Recorder:
        def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
            said.append((obj["kind"], obj["metadata"]["name"], reason, message))

    el = LeaderElector(client, "kube-system", "sched", "kl-cp2_1", 3, 2, 0.02, recorder=Recorder())
    stop = threading.Event()
    t = threading.Thread(target=el.run, args=(stop,))
    t.start()
    try:
        wait_for(lambda: [m for m, _ in api.log].count("PUT") >= 3, message="several renewals")
        assert said == [("Lease", "sched", "LeaderElection", "kl-cp2_1 became leader")]
    finally:
        stop.set()
        t.join(5)


def test_a_candidate_tries_again_when_the_lease_it_saw_expires_not_a_retry_later() -> None:
    api, clock = FakeObjects(), FakeClock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert 2 <= b.next_attempt_in() <= 2.4  # far from expiry: the retry period (with jitter)
    clock.step(14.0)  # a died right after renewing; b last saw a change 14 s ago
    assert abs(b.next_attempt_in() - 1.01) < 1e-6  # at expiry, not up to 2.4 s after it
    clock.step(1.01)
    assert b.try_acquire_or_renew() is True
    assert 2 <= b.next_attempt_in() <= 2.4  # the holder now: plain retry period


def test_a_change_seen_after_a_gap_in_reading_is_dated_when_seen() -> None:
    """A candidate that could not read for a while (its API server was down) must not date a fresh
    renewal from its old read: that would take an active leader's lease."""
    api, clock = FakeObjects(), FakeClock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    for _ in range(10):  # b reads nothing for 20 s while a keeps renewing
        clock.step(2)
        assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # sees a's latest renewal now: dated now, not 20 s ago
    clock.step(14.9)
    assert not b.try_acquire_or_renew()
    clock.step(0.2)
    assert b.try_acquire_or_renew()


def test_timings_without_the_margin_keep_client_gos_rule() -> None:
    """lease 5 s, renew deadline 4 s, retry 1 s: 5 - 1.3 < 4, so a change is dated when it is seen."""
    api, clock = FakeObjects(), FakeClock()
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    a = LeaderElector(client, "kube-system", "sched", "a", 5, 4, 1, clock=clock)
    b = LeaderElector(client, "kube-system", "sched", "b", 5, 4, 1, clock=clock)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    clock.step(1)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    clock.step(4.9)
    assert not b.try_acquire_or_renew()
    clock.step(0.2)
    assert b.try_acquire_or_renew()
