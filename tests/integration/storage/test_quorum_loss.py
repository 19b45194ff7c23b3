"""A 3-member etcd cluster (real Debian etcd on loopback, no root) under a real API server: with two
members stopped, quorum is lost — writes get a 503 ServiceUnavailable Status whose message says so,
with no traceback in the server log, and /readyz fails its etcd check; with them back, writes work."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.apiserver import start_apiserver
from tests.helpers.etcd import free_port
from tests.helpers.wait import wait_for


@dataclass
class Member:
    name: str
    client: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Member]]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    members = []
    for i, (cport, pport) in enumerate(ports):
        d = tmp_path / f"m{i}"
        d.mkdir()
        client = f"http://127.0.0.1:{cport}"
        argv = ["etcd", "--name", f"m{i}", "--data-dir", str(d / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                "--initial-cluster", initial, "--initial-cluster-token", f"kltest-{ports[0][0]}",
                "--initial-cluster-state", "new",
                "--heartbeat-interval", "50", "--election-timeout", "500"]  # fmt: skip
        members.append(Member(f"m{i}", client, argv, d / "etcd.log"))
    try:
        for m in members:
            m.start()

        def healthy() -> bool:
            try:
                r = httpx.post(f"{members[0].client}/v3/kv/put", json={"key": "aGVhbHRo", "value": ""}, timeout=1)
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        wait_for(healthy, timeout=30, message="the 3-member etcd cluster to commit a write")
        yield members
    finally:
        for m in members:
            m.stop()


def test_quorum_loss_gives_a_clear_503_and_readyz_says_so(tmp_path: Path, cluster: list[Member]) -> None:
    srv = start_apiserver(tmp_path, store="etcd", etcd_endpoints=[m.client for m in cluster])
    try:
        with srv.http(timeout=60) as c:

            def cm(name: str) -> httpx.Response:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}
                return c.post("/api/v1/namespaces/default/configmaps", json=body)

            assert cm("before").status_code == 201
            cluster[1].stop()
            cluster[2].stop()
            r = cm("during")
            assert r.status_code == 503, r.text
            status = r.json()
            assert status["kind"] == "Status" and status["reason"] == "ServiceUnavailable"
            assert "quorum" in status["message"] and "etcdserver" in status["message"], status["message"]

            def not_ready() -> bool:
                res = c.get("/readyz")
                return res.status_code == 503 and "[-]etcd failed" in res.text and "quorum" in res.text

            wait_for(not_ready, timeout=15, message="/readyz failing its etcd check")
            cluster[1].start()
            cluster[2].start()
            wait_for(lambda: c.get("/readyz").status_code == 200, timeout=30, message="/readyz ok again")
            wait_for(lambda: cm("after").status_code == 201, timeout=30, message="writes accepted again")
    finally:
        srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
