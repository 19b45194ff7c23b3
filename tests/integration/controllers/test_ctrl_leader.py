"""Leader election: two controller-manager processes, kill the leader, the other takes over within
the lease duration and no pod is created twice.

Lease timings are short (3 s lease, 2 s renew deadline, 0.5 s retry) to keep the test quick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.registry import LEASES, PODS, REPLICASETS
from controlplane.client.informer import Informer
from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.wait import wait_for

REPO = Path(__file__).resolve().parents[3]
LEASE = 3.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path, store="memory")
    try:
        yield srv
    finally:
        srv.stop()


def start_manager(srv: RunningApiServer, identity: str, log_dir: Path) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"{identity}.log", "ab")  # noqa: SIM115 (handed to the child)
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controlplane.controllers",
                "--kubeconfig",
                str(srv.kubeconfig),
                "--identity",
                identity,
                "--controllers",
                "replicaset",
                "--leader-elect-lease-duration",
                f"{LEASE}s",
                "--leader-elect-renew-deadline",
                "2s",
                "--leader-elect-retry-period",
                "500ms",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def holder(client: Any) -> str:
    lease = client.get(LEASES, "kube-controller-manager", "kube-system")
    return str(lease["spec"].get("holderIdentity") or "")


def test_leader_failover_creates_no_pod_twice(server: RunningApiServer, tmp_path: Path) -> None:
    client = server.client()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    adds: Counter[str] = Counter()
    lock = threading.Lock()

    def on_add(p: dict[str, Any]) -> None:
        with lock:
            adds[p["metadata"]["name"]] += 1

    pods = Informer(client, PODS, namespace="default")
    pods.add_handler(on_add=on_add)
    pods.start()
    try:
        assert pods.wait_for_sync(10)
        for ident in ("cm-a", "cm-b"):
            procs[ident] = start_manager(server, ident, tmp_path)
        leader = wait_for(lambda: holder(client) in procs and holder(client), timeout=20, message="a leader")
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 5,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "hello"}]},
                },
            },
        }
        client.create(REPLICASETS, rs, namespace="default")
        wait_for(lambda: len(pods.list()) == 5, timeout=20, message="5 pods from the first leader")

        os.kill(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait(timeout=10)
        killed_at = time.monotonic()
        other = next(i for i in procs if i != leader)
        wait_for(lambda: holder(client) == other, timeout=LEASE + 5, message="the other instance takes over")
        takeover = time.monotonic() - killed_at
        # The follower may only take over once the lease has expired by its own clock; it notices
        # within one retry period of that.
        assert takeover <= LEASE + 1.5, f"take-over took {takeover:.1f}s"

        client.patch(REPLICASETS, "web", {"spec": {"replicas": 8}}, namespace="default")
        wait_for(lambda: len(pods.list()) == 8, timeout=20, message="new leader scales to 8")
        wait_for(
            lambda: (client.get(REPLICASETS, "web", "default").get("status") or {}).get("replicas") == 8,
            timeout=20,
            message="new leader's status",
        )
        with lock:
            assert sum(adds.values()) == 8 and max(adds.values()) == 1, adds
        assert len(client.list(PODS, namespace="default")["items"]) == 8
    finally:
        pods.stop()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        client.close()
