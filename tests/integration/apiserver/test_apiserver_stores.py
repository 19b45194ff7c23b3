"""The same API semantics on the durable stores (sqlite and real etcd), including a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.etcd import start_etcd

CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(params=["sqlite", "etcd"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningApiServer]:
    etcd = start_etcd(tmp_path) if request.param == "etcd" else None
    try:
        srv = start_apiserver(
            tmp_path, store=request.param, etcd_endpoints=[etcd.endpoint] if etcd is not None else None
        )
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        if etcd is not None:
            etcd.stop()


def test_crud_watch_and_restart(durable: RunningApiServer) -> None:
    with durable.http() as c:
        rv0 = c.get(CM).json()["metadata"]["resourceVersion"]
        a = c.post(CM, json={"metadata": {"name": "s-a"}, "data": {"v": "1"}}).json()
        a["data"] = {"v": "2"}
        b = c.put(f"{CM}/s-a", json=a).json()
        assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
        a["data"] = {"v": "stale"}
        assert c.put(f"{CM}/s-a", json=a).status_code == 409
        assert c.post(CM, json={"metadata": {"name": "s-b"}}).status_code == 201
        assert c.delete(f"{CM}/s-b").status_code == 200
        events = []
        with c.stream("GET", CM, params={"watch": "1", "resourceVersion": rv0, "timeoutSeconds": "1"}) as r:
            for line in r.iter_lines():
                if line.strip():
                    e = json.loads(line)
                    events.append((e["type"], e["object"]["metadata"]["name"]))
        assert events == [("ADDED", "s-a"), ("MODIFIED", "s-a"), ("ADDED", "s-b"), ("DELETED", "s-b")]
        rv1 = c.get(CM).json()["metadata"]["resourceVersion"]
    durable.restart()
    with durable.http() as c:
        got = c.get(f"{CM}/s-a").json()
        assert got["data"] == {"v": "2"} and got["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
        assert c.get(f"{CM}/s-b").status_code == 404
        # a watcher resuming across the restart sees only what happened after its revision
        c.post(CM, json={"metadata": {"name": "s-c"}})
        names = []
        with c.stream("GET", CM, params={"watch": "1", "resourceVersion": rv1, "timeoutSeconds": "1"}) as r:
            for line in r.iter_lines():
                if line.strip():
                    names.append(json.loads(line)["object"]["metadata"]["name"])
        assert names == ["s-c"]
        # the system namespaces and the kubernetes Service were not duplicated by the second start
        svcs = [s["metadata"]["name"] for s in c.get("/api/v1/namespaces/default/services").json()["items"]]
        assert svcs.count("kubernetes") == 1
