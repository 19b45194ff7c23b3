"""The agent's scheduling of pod syncs (issue 4's "1 pod with 100 pods on the node"): a pod a user
just created is synced before resyncs of running pods that are already queued.

No threads and no API server: a ``Noded`` whose informer is a dict, whose pod worker runs on
FakeRuntime/FakeCni/FakeNetns, driven by calling its informer handlers and ``sync`` by hand.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from noded import names
from noded.agent import Noded, NodedConfig
from noded.network.cni import FakeCni
from noded.network.netns import FakeNetns
from noded.podworker import PodWorker, WorkerConfig
from noded.runtime.fake import FakeRuntime
from noded.runtime.interface import ContainerState


class Pods:
    """The pod informer's cache."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.pods.get(key)

    def list(self) -> list[dict[str, Any]]:
        return list(self.pods.values())


class Api:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, dict[str, Any]]] = []

    def update_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        self.statuses.append((names.pod_key(pod), copy.deepcopy(status)))

    def delete_pod(self, pod: dict[str, Any]) -> None:
        pass

    def event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        pass

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def services(self) -> list[dict[str, Any]]:
        return []


def mkpod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1d"]}]},
        "status": {},
    }


@pytest.fixture
def noded(tmp_path: Path) -> Any:
    cfg = NodedConfig("n1", "192.168.56.11", tmp_path / "root", tmp_path / "cni", [tmp_path / "bin"])
    n = Noded(cfg, client=object(), runtime=FakeRuntime())  # type: ignore[arg-type]
    n.pods = Pods()  # type: ignore[assignment]
    n.api = Api()
    wcfg = WorkerConfig(node_name="n1", node_ip="192.168.56.11", root_dir=cfg.root_dir, log_root=tmp_path / "logs")
    n.worker = PodWorker(wcfg, n.runtime, None, FakeCni(), FakeNetns(), n.api, on_change=n.queue.add)
    yield n
    n.worker.close()


def create(n: Any, name: str) -> None:
    pod = mkpod(name)
    n.pods.pods[names.pod_key(pod)] = pod
    n._on_add(pod)


def running(n: Any, name: str) -> bool:
    return any(c.state == ContainerState.RUNNING and f"_{name}_" in c.id for c in n.runtime.list_containers())


def test_a_new_pod_is_synced_before_queued_resyncs_of_100_running_pods(noded: Any) -> None:
    n = noded
    for i in range(100):
        create(n, f"old-{i}")
    while (key := n.queue.get(timeout=0)) is not None:
        n.sync(key)
        n.queue.done(key)
    assert all(running(n, f"old-{i}") for i in range(100))
    # The burst after 100 pods start: every status write comes back as a status-only update, and
    # events (probe flips, PLEG) ask for resyncs of pods that need nothing.
    for i in range(100):
        key = f"default/old-{i}"
        old = n.pods.pods[key]
        new = copy.deepcopy(old)
        new["metadata"]["resourceVersion"] = "2"
        new["status"] = {"phase": "Running"}
        n.pods.pods[key] = new
        n._on_update(old, new)
        n.queue.add(key)  # what the probes' and PLEG's on_change do
    assert n.queue.len() == 100
    # A user creates a pod now: it is the next one synced, not the 101st.
    create(n, "new")
    assert n.queue.get(timeout=0) == "default/new"
    n.sync("default/new")
    n.queue.done("default/new")
    assert running(n, "new")
    assert any(k == "default/new" and st.get("phase") == "Running" for k, st in n.api.statuses)
    assert n.queue.len() == 100  # no resync ran before it
    # A change of what a pod should be (here its deletion) is urgent too; a status echo is not.
    key = "default/old-50"
    old = n.pods.pods[key]
    deleting = copy.deepcopy(old)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    n._on_update(old, deleting)
    echo = copy.deepcopy(n.pods.pods["default/old-99"])
    echo["status"]["podIP"] = "10.244.0.9"
    n._on_update(n.pods.pods["default/old-99"], echo)
    assert n.queue.get(timeout=0) == key
    assert n.queue.get(timeout=0) == "default/old-0"  # then the resyncs, in order
