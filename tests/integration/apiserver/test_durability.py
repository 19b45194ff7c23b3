"""Durability: SIGKILL the real API server mid-stream of writes; every acknowledged create survives.

For the sqlite store (the embedded default) and for etcd (a real Debian etcd on 127.0.0.1, left
running: it is the server that dies). Writers stream ConfigMap creates from several threads and
record each name that got ``201 Created``; the server is killed with SIGKILL while they are
still writing, restarted on the same data dir, and every recorded name must be there with the
data it was created with. Writes that got no answer may or may not be there — that is allowed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.etcd import EtcdProcess, start_etcd
from tests.helpers.wait import wait_for

WRITERS = 8
KILL_AFTER = 300  # acknowledged creates before the SIGKILL


@pytest.fixture(params=["sqlite", "etcd"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningApiServer]:
    etcd: EtcdProcess | None = None
    if request.param == "etcd":
        etcd = start_etcd(tmp_path)
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


def test_every_acknowledged_create_survives_sigkill(server: RunningApiServer) -> None:
    acked: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    unexpected: list[str] = []

    def writer(t: int) -> None:
        with server.http(timeout=5.0) as http:
            i = 0
            while not stop.is_set():
                name = f"cm-{t}-{i}"
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": str(i)}}
                try:
                    r = http.post("/api/v1/namespaces/default/configmaps", json=body)
                except httpx.HTTPError:
                    return  # the server is gone: this write was never acknowledged
                if r.status_code == 201:
                    with lock:
                        acked[name] = str(i)
                elif r.status_code != 503:
                    unexpected.append(f"{name}: {r.status_code} {r.text[:200]}")
                    return
                i += 1

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(WRITERS)]
    for th in threads:
        th.start()
    try:
        wait_for(lambda: len(acked) >= KILL_AFTER or unexpected, timeout=60, message=f"{KILL_AFTER} creates")
        assert unexpected == []
        server.kill()  # SIGKILL while the writers are still sending
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=15)
    assert not any(th.is_alive() for th in threads)
    with lock:
        expected = dict(acked)
    assert len(expected) >= KILL_AFTER

    server.start()
    with server.http(timeout=30.0) as http:
        r = http.get("/api/v1/namespaces/default/configmaps")
        assert r.status_code == 200, r.text
        found = {
            item["metadata"]["name"]: item.get("data", {}).get("n")
            for item in r.json()["items"]
            if item["metadata"]["name"].startswith("cm-")
        }
    lost = sorted(name for name in expected if found.get(name) != expected[name])
    assert lost == [], f"{len(lost)} of {len(expected)} acknowledged creates lost after SIGKILL, e.g. {lost[:5]}"
