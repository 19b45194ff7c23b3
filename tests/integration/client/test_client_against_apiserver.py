"""The client against the real API server: CRUD errors, informer add/update/delete, relist after
410 Gone (server restart after compaction), leader election between two electors."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.api.registry import CONFIGMAPS, LEASES, NAMESPACES
from controlplane.client.informer import Informer
from controlplane.client.leaderelection import LeaderElector
from controlplane.client.rest import ApiClient
from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.wait import wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(
        tmp_path_factory.mktemp("client-api"), store="sqlite", extra_args=["--etcd-compaction-interval", "0.5s"]
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: RunningApiServer) -> Iterator[ApiClient]:
    c = ApiClient.from_kubeconfig(server.kubeconfig)
    yield c
    c.close()


@pytest.fixture
def ns(client: ApiClient) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def cm(name: str, ns: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def test_crud_and_typed_errors(client: ApiClient, ns: str) -> None:
    created = client.create(CONFIGMAPS, cm("a", ns, k="1"))
    assert created["metadata"]["resourceVersion"]
    with pytest.raises(errors.AlreadyExists):
        client.create(CONFIGMAPS, cm("a", ns))
    stale = dict(created)
    created["data"] = {"k": "2"}
    updated = client.update(CONFIGMAPS, created)
    with pytest.raises(errors.Conflict):
        client.update(CONFIGMAPS, {**stale, "data": {"k": "3"}})
    patched = client.patch(CONFIGMAPS, "a", {"data": {"j": "x"}}, namespace=ns)
    assert (
        patched["data"] == {"k": "2", "j": "x"}
        and patched["metadata"]["resourceVersion"] != updated["metadata"]["resourceVersion"]
    )
    assert [o["metadata"]["name"] for o in client.list(CONFIGMAPS, ns)["items"]] == ["a"]
    client.delete(CONFIGMAPS, "a", ns)
    with pytest.raises(errors.NotFound):
        client.get(CONFIGMAPS, "a", ns)


def compacted_revision(metrics_text: str) -> int:
    for line in metrics_text.splitlines():
        if line.startswith("apiserver_storage_compacted_revision "):
            return int(float(line.split()[1]))
    return 0


def test_informer_sees_creates_updates_deletes_and_relists_after_410(
    server: RunningApiServer, client: ApiClient, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controlplane.client.informer")
    client.create(CONFIGMAPS, cm("pre", ns))
    inf = Informer(client, CONFIGMAPS, namespace=ns)
    log: list[tuple[str, str]] = []
    inf.add_handler(
        on_add=lambda o: log.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: log.append(("update", new["metadata"]["name"])),
        on_delete=lambda o: log.append(("delete", o["metadata"]["name"])),
    )
    inf.add_index("k", lambda o: list((o.get("data") or {}).values()))
    inf.start()
    try:
        assert inf.wait_for_sync(10)
        client.create(CONFIGMAPS, cm("x", ns, k="v1"))
        client.patch(CONFIGMAPS, "x", {"data": {"k": "v2"}}, namespace=ns)
        client.delete(CONFIGMAPS, "pre", ns)
        wait_for(lambda: log == [("add", "pre"), ("add", "x"), ("update", "x"), ("delete", "pre")], message=str(log))
        assert [o["metadata"]["name"] for o in inf.by_index("k", "v2")] == ["x"]
        assert inf.lists == 1

        # Move the revision far past what the informer saw, let the store compact it away, and
        # restart the server (its watch cache starts empty): the informer's re-watch from its old
        # resourceVersion gets 410 Gone and it must relist.
        other = client  # writes outside the informer's namespace
        scratch = f"{ns}-scratch"
        other.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": scratch}})
        for i in range(10):
            last = other.create(CONFIGMAPS, cm(f"s{i}", scratch))
        written = int(last["metadata"]["resourceVersion"])
        with server.http() as http:
            wait_for(
                lambda: compacted_revision(http.get("/metrics").text) >= written,
                timeout=15, message=f"the store compacted past revision {written}",
            )  # fmt: skip
        server.restart()
        wait_for(lambda: inf.lists >= 2, timeout=30, message="relist after 410")
        assert any("expired; relisting" in r.getMessage() for r in caplog.records)
        client.create(CONFIGMAPS, cm("after", ns))
        wait_for(lambda: inf.get(f"{ns}/after") is not None, timeout=10, message="watching again")
        assert sorted(inf.keys()) == [f"{ns}/after", f"{ns}/x"]
    finally:
        inf.stop()


def test_two_electors_one_leader_and_takeover_after_the_leader_dies(client: ApiClient, tmp_path: Path) -> None:
    name = f"lease-{uuid.uuid4().hex[:6]}"
    leading: dict[str, threading.Event] = {i: threading.Event() for i in ("a", "b")}
    stops = {i: threading.Event() for i in ("a", "b")}
    electors = {
        i: LeaderElector(
            client,
            "kube-system",
            name,
            i,
            lease_duration=2,
            renew_deadline=1.5,
            retry_period=0.2,
            on_started_leading=leading[i].set,
            release_on_stop=False,  # stopping without release = dying
        )
        for i in ("a", "b")
    }
    threads = {i: threading.Thread(target=electors[i].run, args=(stops[i],), daemon=True) for i in electors}
    for t in threads.values():
        t.start()
    try:
        first = wait_for(lambda: next((i for i in leading if leading[i].is_set()), None), message="a leader")
        second = "b" if first == "a" else "a"
        time.sleep(0.6)  # a few renew periods: the follower must stay a follower
        assert not leading[second].is_set()
        stops[first].set()
        died = time.monotonic()
        assert leading[second].wait(5)
        assert time.monotonic() - died >= 1.0  # not before the lease could have expired
        spec = client.get(LEASES, name, "kube-system")["spec"]
        assert spec["holderIdentity"] == second and spec["leaseTransitions"] == 1
    finally:
        for s in stops.values():
            s.set()
        for t in threads.values():
            t.join(5)
