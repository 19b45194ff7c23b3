"""PodWorker with real runc, real images from a real registry and the reference CNI plugins.

The "node" is a throwaway netns: the CNI plugins run inside it (``nsenter --net``), so the bridge
and the veth host ends live there, and pods are reached from it. Pod netns names carry a test
prefix. Everything is removed at teardown (pods, netns, runtime root, cgroups).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from noded.images.store import ImageStore
from noded.network.cni import CniInvoker, render_conflist
from noded.network.netns import NetnsManager
from noded.podworker import PodWorker, WorkerConfig
from noded.runtime.runc import RuncRuntime
from tests.helpers.netns import NetnsFactory, sh
from tests.helpers.registry import Registry
from tests.helpers.wait import wait_for
from tests.unit.noded.test_podworker import FakeApi

CNI_BIN = "/usr/lib/cni"


class Node:
    def __init__(self, tmp: Path, node_ns: str, registry: Registry) -> None:
        self.ns = node_ns
        self.api = FakeApi()
        self.prefix = f"kt{os.getpid() % 10000}x{uuid.uuid4().hex[:4]}-"
        conf_dir = tmp / "cni-conf"
        conf_dir.mkdir()
        (conf_dir / "10-kubelab.conflist").write_text(
            json.dumps(render_conflist("10.244.7.0/24", cni="reference", data_dir=str(tmp / "ipam")))
        )
        self.runtime = RuncRuntime(tmp / "root")
        self.images = ImageStore(tmp / "root" / "images", insecure_registries=[registry.address])
        self.cni = CniInvoker(
            conf_dir, [CNI_BIN], tmp / "root" / "cni-cache", exec_prefix=["nsenter", f"--net=/var/run/netns/{node_ns}"]
        )
        self.netns = NetnsManager()
        cfg = WorkerConfig(
            node_name="n1",
            node_ip="192.168.56.11",
            root_dir=tmp / "root",
            log_root=tmp / "logs",
            netns_prefix=self.prefix,
            backoff_base=0.2,
            backoff_cap=1,
        )
        self.worker = PodWorker(cfg, self.runtime, self.images, self.cni, self.netns, self.api)
        self.registry = registry

    def image(self, name: str) -> str:
        return f"{self.registry.address}/kubelab/{name}:latest"

    def cleanup(self) -> None:
        self.worker.close()
        self.runtime.remove_everything()
        for n in self.netns.list(self.prefix):
            self.netns.delete(n)


@pytest.fixture
def node(tmp_path: Path, netns: NetnsFactory, registry: Registry) -> Iterator[Node]:
    n = Node(tmp_path, netns("node"), registry)
    try:
        yield n
    finally:
        n.cleanup()


def mkpod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"containers": containers, **spec},
        "status": {},
    }


def converge(node: Node, pod: dict[str, Any], cond: Any, timeout: float = 20) -> dict[str, Any]:
    def step() -> Any:
        node.worker.sync_pod(pod)
        st = node.api.statuses[-1] if node.api.statuses else {}
        return st if cond(st) else None

    return wait_for(step, timeout, interval=0.1, message="pod status")


def test_two_containers_share_localhost_and_pod_is_reachable_from_node(node: Node) -> None:
    pod = mkpod(
        "duo",
        [
            {
                "name": "web",
                "image": node.image("hello"),
                "env": [{"name": "POD_NAME", "value": "duo"}, {"name": "NODE_NAME", "value": "n1"}],
            },
            {
                "name": "client",
                "image": node.image("busybox"),
                "command": ["sh", "-c", "until wget -qO- http://127.0.0.1:8080/ ; do sleep 0.1; done; sleep 1000"],
            },
        ],
        terminationGracePeriodSeconds=1,
    )
    st = converge(node, pod, lambda s: s.get("phase") == "Running" and all(c["ready"] for c in s["containerStatuses"]))
    ip = st["podIP"]
    assert ip.startswith("10.244.7.")
    out = wait_for(lambda: sh("wget", "-qO-", f"http://{ip}:8080/", netns=node.ns, check=False), 10)
    assert out.strip() == "Hello from duo on n1"
    # The client container reached the web container over the pod's shared loopback.
    log = Path(
        st["containerStatuses"][1]["containerID"]
        and node.runtime.container_status(st["containerStatuses"][1]["containerID"][7:]).log_path
    )
    wait_for(lambda: "Hello from duo on n1" in log.read_text(), 10)
    # Hostname is the pod name (the sandbox's UTS namespace).
    cid = st["containerStatuses"][1]["containerID"][7:]
    assert node.runtime.exec_sync(cid, ["hostname"], 5).stdout.strip() == b"duo"
    # Deletion: graceful kill, CNI DEL, netns removal, object deleted.
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    node.worker.sync_pod(pod)
    assert node.api.deleted == ["duo"]
    assert node.runtime.list_containers() == [] and node.runtime.list_pod_sandboxes() == []
    assert node.netns.list(node.prefix) == []
    assert sh("ip", "-br", "link", netns=node.ns).count("veth") == 0


def test_init_container_and_oom_and_exit_codes(node: Node) -> None:
    pod = mkpod(
        "job",
        [
            {
                "name": "hog",
                "image": node.image("busybox"),
                "command": ["sh", "-c", "cat /work/msg; x=a; while true; do x=$x$x; done"],
                "resources": {"limits": {"memory": "16Mi"}},
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            },
        ],
        restartPolicy="Never",
        initContainers=[
            {
                "name": "prep",
                "image": node.image("busybox"),
                "command": ["sh", "-c", "echo prepared > /work/msg"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    st = converge(node, pod, lambda s: s.get("phase") == "Failed")
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    log = node.runtime.container_status(st["containerStatuses"][0]["containerID"][7:]).log_path
    assert "stdout F prepared" in Path(log).read_text()


def test_missing_image_and_missing_command(node: Node) -> None:
    pod = mkpod("bad", [{"name": "c", "image": node.image("does-not-exist")}])
    st = converge(
        node, pod, lambda s: s["containerStatuses"][0]["state"].get("waiting", {}).get("reason") == "ImagePullBackOff"
    )
    assert "manifest unknown" in st["containerStatuses"][0]["state"]["waiting"]["message"]
    pod2 = mkpod("nocmd", [{"name": "c", "image": node.image("busybox"), "command": ["/nope"]}], restartPolicy="Never")
    st = converge(node, pod2, lambda s: s.get("phase") == "Failed")
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError" and "/nope" in term["message"]


def test_create_delete_cycles_leave_nothing_behind(node: Node, tmp_path: Path) -> None:
    cycles = int(os.environ.get("KUBELAB_LEAK_CYCLES", "15"))
    for i in range(cycles):
        pod = mkpod(
            f"cyc{i}",
            [{"name": "c", "image": node.image("busybox"), "command": ["sleep", "3600"]}],
            terminationGracePeriodSeconds=0,
        )
        converge(node, pod, lambda s: s.get("phase") == "Running")
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        node.worker.sync_pod(pod)
    assert node.api.deleted == [f"cyc{i}" for i in range(cycles)]
    assert json.loads(sh("runc", "--root", str(tmp_path / "root" / "runc"), "list", "--format", "json") or "null") in (
        None,
        [],
    )
    assert node.netns.list(node.prefix) == []
    assert "veth" not in sh("ip", "-br", "link", netns=node.ns)
    assert str(tmp_path) not in sh("mount")
    ipam = [p.name for p in (tmp_path / "ipam").rglob("*") if p.name.startswith("10.")]
    assert ipam == []
    assert not any((tmp_path / "logs").iterdir()) if (tmp_path / "logs").exists() else True
    assert not any((tmp_path / "root" / "containers").iterdir())
    assert not any((tmp_path / "root" / "pods").iterdir())


def test_failing_cni_plugin_is_undone_reported_and_retried(node: Node, tmp_path: Path) -> None:
    good = (tmp_path / "cni-conf" / "10-kubelab.conflist").read_text()
    bins = tmp_path / "bad-bin"
    bins.mkdir()
    plugin = bins / "exploding"
    plugin.write_text(
        '#!/bin/sh\ncat >/dev/null\n[ "$CNI_COMMAND" = DEL ] && exit 0\n'
        'echo \'{"cniVersion":"1.0.0","code":11,"msg":"IP pool exhausted"}\'; exit 1\n'
    )
    plugin.chmod(0o755)
    conf = json.loads(good)
    conf["plugins"].append({"type": "exploding"})
    (tmp_path / "cni-conf" / "10-kubelab.conflist").write_text(json.dumps(conf))
    node.cni.bin_dirs.append(bins)
    pod = mkpod("unlucky", [{"name": "c", "image": node.image("busybox"), "command": ["sleep", "3600"]}])
    delay = node.worker.sync_pod(pod)
    assert delay is not None and delay > 0
    assert any(r == "FailedCreatePodSandBox" and "IP pool exhausted" in m for r, m in node.api.events)
    assert node.netns.list(node.prefix) == [] and node.runtime.list_pod_sandboxes() == []
    assert "veth" not in sh("ip", "-br", "link", netns=node.ns)  # the bridge plugin's ADD was undone by DEL
    assert [p.name for p in (tmp_path / "ipam").rglob("10.*")] == []
    (tmp_path / "cni-conf" / "10-kubelab.conflist").write_text(good)
    converge(node, pod, lambda s: s.get("phase") == "Running")
