"""Two `kubelab controlplane` processes on one etcd: one leads, the other takes over (issue 3).

Both serve the API; their schedulers and controller-managers elect a leader on the
kube-system Leases. The test kills the leading process with SIGKILL (no chance to release its
Leases), scales a Deployment through the survivor, and checks that the survivor's controllers
took over within the lease duration and that no pod was ever created twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import registry
from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.etcd import start_etcd
from tests.helpers.wait import wait_for

DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "ha", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "ha"}},
        "template": {"metadata": {"labels": {"app": "ha"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    },
}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RunningApiServer, RunningApiServer]]:
    etcd = start_etcd(tmp_path / "etcd")
    servers: list[RunningApiServer] = []
    try:
        for name in ("a", "b"):
            servers.append(
                start_apiserver(tmp_path / name, store="etcd", etcd_endpoints=[etcd.endpoint], controlplane=True)
            )
        yield servers[0], servers[1]
    finally:
        for s in servers:
            s.stop()
        etcd.stop()


def holder(client: Any, name: str) -> str:
    lease = client.get(registry.LEASES, name, "kube-system")
    return str(lease["spec"].get("holderIdentity", ""))


def pod_names(client: Any) -> list[str]:
    items = client.list(registry.PODS, "default", label_selector="app=ha")["items"]
    return sorted(p["metadata"]["name"] for p in items)


def test_the_standby_controlplane_takes_over_and_nothing_is_created_twice(
    pair: tuple[RunningApiServer, RunningApiServer],
) -> None:
    a, b = pair
    ca = a.client()
    wait_for(lambda: holder(ca, "kube-controller-manager"), timeout=30, message="a controller-manager leader")
    leader_ident = holder(ca, "kube-controller-manager")
    leader, survivor = (a, b) if leader_ident.endswith(f"_{a.pid}") else (b, a)
    assert leader_ident.endswith(f"_{leader.pid}"), (leader_ident, a.pid, b.pid)
    cs = survivor.client()

    ca.create(registry.DEPLOYMENTS, DEPLOY, "default")
    wait_for(lambda: len(pod_names(ca)) == 2, timeout=30, message="2 pods")
    first = pod_names(ca)

    leader.kill()  # SIGKILL: its Leases stay held until they expire
    cs.patch(registry.DEPLOYMENTS, "ha", {"spec": {"replicas": 4}}, "default", subresource="scale")
    # the standby's controllers must take over (lease 15 s) and scale up
    wait_for(lambda: len(pod_names(cs)) == 4, timeout=45, message="4 pods after the takeover")
    assert holder(cs, "kube-controller-manager").endswith(f"_{survivor.pid}")
    # exactly the 2 old pods plus 2 new ones: nothing duplicated across the change of leader
    now = pod_names(cs)
    assert set(first) <= set(now) and len(now) == 4
    rs = cs.list(registry.REPLICASETS, "default", label_selector="app=ha")["items"]
    assert len(rs) == 1 and wait_for(
        lambda: cs.get(registry.REPLICASETS, rs[0]["metadata"]["name"], "default")["status"].get("replicas") == 4,
        timeout=10, message="ReplicaSet status 4",
    )  # fmt: skip
