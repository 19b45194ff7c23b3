"""Two `kubelab scheduler --leader-elect` processes: one schedules; kill it and the other takes over
within the lease duration, and no pod is ever bound twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.api.registry import EVENTS, LEASES, NAMESPACES, NODES, PODS
from controlplane.client.informer import Informer
from controlplane.client.rest import ApiClient
from tests.helpers.apiserver import REPO, RunningApiServer
from tests.helpers.hollow import HollowNodes
from tests.helpers.wait import wait_for

LEASE_DURATION = 3.0


class SchedulerProcess:
    def __init__(self, kubeconfig: Path, identity: str, log: Path) -> None:
        self.identity = identity
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lab",
                    "scheduler",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--leader-elect",
                    "--identity",
                    identity,
                    "--leader-elect-lease-duration",
                    str(LEASE_DURATION),
                    "--leader-elect-renew-deadline",
                    "2",
                    "--leader-elect-retry-period",
                    "0.3",
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def schedulers(server: RunningApiServer, tmp_path: Path) -> Iterator[dict[str, SchedulerProcess]]:
    procs = {
        ident: SchedulerProcess(server.kubeconfig, ident, tmp_path / f"{ident}.log") for ident in ("sched-a", "sched-b")
    }
    yield procs
    for p in procs.values():
        p.stop()


def holder(client: ApiClient) -> str:
    try:
        return str(client.get(LEASES, "kube-scheduler", "kube-system")["spec"].get("holderIdentity") or "")
    except errors.NotFound:
        return ""


def test_leader_killed_other_takes_over_within_lease_duration_no_double_binding(
    client: ApiClient, schedulers: dict[str, SchedulerProcess]
) -> None:
    ns = f"le-{uuid.uuid4().hex[:6]}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    nodes = HollowNodes(client, heartbeat=None)
    node_names = [f"{ns}-n{i}" for i in range(3)]
    for n in node_names:
        nodes.add(n, labels={"pool": ns})
    seen: dict[str, set[str]] = defaultdict(set)
    watcher = Informer(client, PODS, namespace=ns)

    def record(pod: dict[str, Any]) -> None:
        if pod["spec"].get("nodeName"):
            seen[pod["metadata"]["name"]].add(pod["spec"]["nodeName"])

    watcher.add_handler(on_add=record, on_update=lambda old, new: record(new))
    watcher.start()

    def mkpod(name: str) -> None:
        client.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "x"}], "nodeSelector": {"pool": ns}},
            },
        )

    try:
        leader = wait_for(lambda: holder(client) in schedulers and holder(client), timeout=20, message="a leader")
        follower = next(i for i in schedulers if i != leader)
        for i in range(5):
            mkpod(f"before-{i}")
        wait_for(lambda: all(f"before-{i}" in seen for i in range(5)), timeout=15, message="leader binds")

        schedulers[leader].kill()
        killed_at = time.monotonic()
        for i in range(5):
            mkpod(f"after-{i}")
        wait_for(lambda: holder(client) == follower, timeout=LEASE_DURATION + 5, message="takeover")
        took = time.monotonic() - killed_at
        assert took <= LEASE_DURATION + 1.5, f"takeover took {took:.1f}s"
        wait_for(lambda: all(f"after-{i}" in seen for i in range(5)), timeout=15, message="new leader binds")
        lease = client.get(LEASES, "kube-scheduler", "kube-system")["spec"]
        assert lease["leaseTransitions"] >= 1
        # no pod was ever bound to two nodes, and each got exactly one Scheduled event
        assert {name: len(nodes_) for name, nodes_ in seen.items()} == {name: 1 for name in seen}
        scheduled = [e for e in client.list(EVENTS, ns)["items"] if e["reason"] == "Scheduled"]
        per_pod = defaultdict(int)
        for e in scheduled:
            per_pod[e["involvedObject"]["name"]] += e.get("count", 1)
        assert all(v == 1 for v in per_pod.values()), per_pod
    finally:
        watcher.stop()
        for n in node_names:
            try:
                client.delete(NODES, n)
            except errors.NotFound:
                pass
