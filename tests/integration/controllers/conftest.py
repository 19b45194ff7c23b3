"""A small real cluster for controller tests: the real API server (subprocess, memory store), the
real scheduler and controller-manager (threads of this process), hollow nodes and a fake kubelet.

Short timings so the whole module stays fast: node grace period 4 s, pod eviction timeout 2 s,
heartbeats every 0.5 s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.hollow import FakeKubelet, HollowNodes
from tests.helpers.wait import wait_for

GRACE = 4.0
EVICTION = 2.0


class RetryOnce:
    """The test's own API calls, each retried once after a transport error.

    A pooled keep-alive connection that the server closed while idle can fail a request before
    any response (seen as an SSL EOF); the components retry through their work queues, the test
    retries here. Creates use fixed names, so a retried create cannot make a second object.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            try:
                return attr(*args, **kw)
            except httpx.TransportError:
                return attr(*args, **kw)

        return call


@dataclass
class Cluster:
    server: RunningApiServer
    client: Any
    nodes: HollowNodes
    kubelet: FakeKubelet
    stop: threading.Event
    threads: list[threading.Thread]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from controlplane.controllers.manager import ControllerOptions, run_controller_manager
    from controlplane.scheduler import run_scheduler

    tmp: Path = tmp_path_factory.mktemp("ctrl-cluster")
    server = start_apiserver(tmp, store="memory")
    client = server.client()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    nodes = HollowNodes(client, heartbeat=0.5)
    kubelet = FakeKubelet(client)
    try:
        for n in ("kl-node1", "kl-node2", "kl-node3"):
            nodes.add(n)
        nodes.start()
        kubelet.start()
        opts = ControllerOptions(
            node_monitor_grace_period=GRACE, pod_eviction_timeout=EVICTION, node_monitor_period=0.5, leader_elect=False
        )
        for target, args, kw in (
            (run_scheduler, (client, stop), {"leader_elect": False}),
            (run_controller_manager, (client, stop, opts), {}),
        ):
            t = threading.Thread(target=target, args=args, kwargs=kw, daemon=True)
            t.start()
            threads.append(t)
        # Pods get IPs from their node's podCIDR (fake kubelet): wait for node IPAM first, so
        # no two pods share an address.
        wait_for(
            lambda: all((kubelet.node_informer.get(n) or {}).get("spec", {}).get("podCIDR") for n in nodes.names),
            timeout=20,
            message="podCIDRs on every hollow node",
        )
        yield Cluster(server, RetryOnce(client), nodes, kubelet, stop, threads)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        kubelet.stop()
        nodes.stop()
        client.close()
        server.stop()
