"""Watch streams against the real server: resume from a resourceVersion, RV 0, timeouts, bookmarks."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.apiserver import RunningApiServer, start_apiserver
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
            c.stream("GET", CM, params={"watch": "1", "resourceVersion": "0", "timeoutSeconds": "3"}) as r,
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
    with_bm = read_events(http, CM, {"resourceVersion": rv, "timeoutSeconds": "2", "allowWatchBookmarks": "true"})
    bookmarks = [e for e in with_bm if e["type"] == "BOOKMARK"]
    assert bookmarks, with_bm
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    without = read_events(http, CM, {"resourceVersion": rv, "timeoutSeconds": "1"})
    assert not [e for e in without if e["type"] == "BOOKMARK"]


def test_bad_resource_version_is_400(http: httpx.Client) -> None:
    r = http.get(CM, params={"watch": "true", "resourceVersion": "abc"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"


def test_too_old_resource_version_gives_410_error_event(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path, store="sqlite", extra_args=["--watch-cache-window", "5"])
    try:
        with srv.http() as c:
            first = c.post(CM, json=cm("old-0")).json()["metadata"]["resourceVersion"]
            for i in range(1, 10):
                c.post(CM, json=cm(f"old-{i}"))

            # The watch cache takes the creates from the store a moment after they are answered;
            # until it has the last of them, ``first`` is still inside its window (no 410 yet).
            def expired() -> list[dict[str, Any]] | None:
                got = read_events(c, CM, {"resourceVersion": first, "timeoutSeconds": "1"})
                return got if got and got[0]["type"] == "ERROR" else None

            events = wait_for(expired, timeout=15, message="a watch from a revision the window dropped to give 410")
            assert len(events) == 1 and events[0]["type"] == "ERROR"
            status = events[0]["object"]
            assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
            assert "too old resource version" in status["message"]
            # a recent revision still works
            last = c.get(CM).json()["metadata"]["resourceVersion"]
            c.post(CM, json=cm("old-new"))
            names = [
                e["object"]["metadata"]["name"]
                for e in read_events(c, CM, {"resourceVersion": last, "timeoutSeconds": "1"})
            ]
            assert names == ["old-new"]
    finally:
        srv.stop()


def test_slow_watcher_is_closed_without_stalling_others(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path, store="memory", extra_args=["--watch-max-pending", "20"])
    try:
        rv = "0"
        with srv.http() as c:
            rv = c.get(CM).json()["metadata"]["resourceVersion"]
        # the slow watcher: a tiny receive buffer and nobody reading it
        ctx = ssl.create_default_context(cafile=str(srv.ca_file))
        ctx.load_cert_chain(str(srv.cert_file), str(srv.key_file))
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", srv.port))
        slow = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        slow.sendall(f"GET {CM}?watch=1&resourceVersion={rv} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        fast: list[str] = []

        def fast_reader() -> None:
            with (
                srv.http(timeout=60) as c2,
                c2.stream("GET", CM, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "30"}) as r,
            ):
                for line in r.iter_lines():
                    if line.strip():
                        fast.append(json.loads(line)["object"]["metadata"]["name"])
                        if len(fast) == 150:
                            return

        t = threading.Thread(target=fast_reader, daemon=True)
        t.start()
        big = "x" * 60_000
        with srv.http() as c:
            for i in range(150):
                assert c.post(CM, json=cm(f"big-{i}", data=big)).status_code == 201
            wait_for(
                lambda: "apiserver_watch_slow_watchers_closed_total 1.0" in c.get("/metrics").text,
                timeout=20,
                message="the slow watcher to be closed",
            )
        t.join(timeout=30)
        assert fast == [f"big-{i}" for i in range(150)]  # the fast watcher missed nothing
        slow.settimeout(10)
        received = b""
        while chunk := slow.recv(1 << 20):  # the server closes the slow watcher's connection
            received += chunk
        assert 0 < received.count(b'"type":"ADDED"') < 150
        slow.close()
    finally:
        srv.stop()
