"""Watch streams against the real server: resume from a resourceVersion, RV 0, timeouts, bookmarks."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from tests.helpers.apiserver import RunningApiServer
from tests.helpers.wait import wait_for

CM = "/api/v1/namespaces/default/configmaps"


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"w": "1"}}, "data": data}


def read_events(http: httpx.Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    events = []
    with http.stream("GET", path, params={"watch": "true", **params}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        for line in r.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    return events


def test_watch_from_list_rv_sees_changes_in_order(http: httpx.Client) -> None:
    listing = http.get(CM).json()
    rv = listing["metadata"]["resourceVersion"]
    http.post(CM, json=cm("w-a", k="1"))
    obj = http.get(f"{CM}/w-a").json()
    obj["data"] = {"k": "2"}
    http.put(f"{CM}/w-a", json=obj)
    http.delete(f"{CM}/w-a")
    events = read_events(http, CM, {"resourceVersion": rv, "timeoutSeconds": "1"})
    mine = [(e["type"], e["object"]["data"]["k"]) for e in events if e["object"]["metadata"]["name"] == "w-a"]
    assert mine == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events if e["type"] != "BOOKMARK"]
    assert rvs == sorted(rvs) and int(rvs[0]) > int(rv)


def test_watch_rv0_sends_synthetic_added_then_live(http: httpx.Client, server: RunningApiServer) -> None:
    http.post(CM, json=cm("w-existing"))
    got: list[dict[str, Any]] = []

    def reader() -> None:
        with (
            server.http() as c,
            c.stream("GET", CM, params={"watch": "1", "resourceVersion": "0", "timeoutSeconds": "4"}) as r,
        ):
            for line in r.iter_lines():
                if line.strip():
                    got.append(json.loads(line))

    t = threading.Thread(target=reader)
    t.start()

    def seen() -> list[tuple[str, str]]:
        return [(e["type"], e["object"]["metadata"]["name"]) for e in list(got) if e["type"] != "BOOKMARK"]

    wait_for(lambda: ("ADDED", "w-existing") in seen(), timeout=5, message="synthetic ADDED")
    assert ("ADDED", "w-live") not in seen()
    assert http.post(CM, json=cm("w-live")).status_code == 201  # a live change while the watch is open
    wait_for(lambda: ("ADDED", "w-live") in seen(), timeout=5, message="live ADDED")
    t.join(timeout=10)
    assert not t.is_alive()


def test_watch_bookmarks_only_when_allowed(http: httpx.Client) -> None:
    # the module's server sends bookmarks every second (--watch-bookmark-interval 1s)
    rv = http.get(CM).json()["metadata"]["resourceVersion"]
    with_bm = read_events(http, CM, {"resourceVersion": rv, "timeoutSeconds": "3", "allowWatchBookmarks": "true"})
    bookmarks = [e for e in with_bm if e["type"] == "BOOKMARK"]
    assert bookmarks, with_bm
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    without = read_events(http, CM, {"resourceVersion": rv, "timeoutSeconds": "2"})
    assert not [e for e in without if e["type"] == "BOOKMARK"]


def test_bad_resource_version_is_400(http: httpx.Client) -> None:
    r = http.get(CM, params={"watch": "true", "resourceVersion": "abc"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
