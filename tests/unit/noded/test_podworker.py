# ruff: noqa: RUF059  (each test unpacks the whole fixture tuple for readability)
"""PodWorker.sync_pod against FakeRuntime, FakeCni, FakeNetns and a fake API (no root)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from noded.network.cni import FakeCni
from noded.network.netns import FakeNetns
from noded.podworker import PodWorker, WorkerConfig
from noded.runtime.fake import FakeRuntime
from noded.runtime.interface import ContainerState


class FakeApi:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.svcs: list[dict[str, Any]] = []

    def update_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        self.statuses.append(copy.deepcopy(status))

    def delete_pod(self, pod: dict[str, Any]) -> None:
        self.deleted.append(pod["metadata"]["name"])

    def event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((reason, message))

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def services(self) -> list[dict[str, Any]]:
        return self.svcs


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(tmp_path: Path) -> tuple[PodWorker, FakeRuntime, FakeCni, FakeNetns, FakeApi, Clock]:
    clock = Clock()
    rt, cni, ns, api = FakeRuntime(clock), FakeCni(), FakeNetns(), FakeApi()
    cfg = WorkerConfig(
        node_name="n1",
        node_ip="192.168.56.11",
        root_dir=tmp_path / "root",
        log_root=tmp_path / "logs",
        backoff_base=10,
        backoff_cap=300,
    )
    w = PodWorker(cfg, rt, None, cni, ns, api, clock=clock)
    yield w, rt, cni, ns, api, clock
    w.close()


def mkpod(**spec: Any) -> dict[str, Any]:
    base = {
        "containers": [
            {
                "name": "app",
                "image": "busybox",
                "command": ["sleep", "1000"],
                "env": [{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }
        ]
    }
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default", "uid": "1234abcd-0000"}, "spec": base, "status": {}}


def test_pod_runs_and_reports(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod()
    assert w.sync_pod(pod) is None
    st = api.statuses[-1]
    assert st["phase"] == "Running" and st["podIP"] == "10.244.0.2" and st["hostIP"] == "192.168.56.11"
    assert st["containerStatuses"][0]["ready"] is True
    assert ns.names == {"default_web_1234abcd"}
    [cid] = [c.id for c in rt.list_containers()]
    assert "ME=web" in rt.configs[cid].env
    assert [r for r, _ in api.events] == ["Created", "Started"]
    # A second sync changes nothing and writes nothing.
    n = len(api.statuses)
    w.sync_pod(pod)
    assert len(api.statuses) == n and len(rt.list_containers()) == 1


def test_crash_loop_and_restart_counts(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod()
    w.sync_pod(pod)
    for expected_wait in (0, 10, 20):
        [c] = [c for c in rt.list_containers() if c.state == ContainerState.RUNNING]
        rt.exit(c.id, 1)
        clock.t += 1
        delay = w.sync_pod(pod)
        if expected_wait:
            assert delay is not None and delay == pytest.approx(expected_wait - 1, abs=0.1)
            cs = api.statuses[-1]["containerStatuses"][0]
            assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            assert cs["lastState"]["terminated"]["exitCode"] == 1
            clock.t += expected_wait
            w.sync_pod(pod)
    cs = api.statuses[-1]["containerStatuses"][0]
    assert cs["restartCount"] == 3 and "running" in cs["state"]
    assert ("BackOff", "Back-off restarting failed container app in pod web") in api.events


def test_init_containers_then_app(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod(initContainers=[{"name": "init", "image": "busybox", "command": ["true"]}])
    w.sync_pod(pod)
    assert api.statuses[-1]["phase"] == "Pending"
    assert [c.name for c in rt.list_containers()] == ["init"]
    rt.exit(rt.list_containers()[0].id, 0)
    w.sync_pod(pod)
    assert sorted(c.name for c in rt.list_containers()) == ["app", "init"]
    st = api.statuses[-1]
    assert st["phase"] == "Running" and st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_cni_failure_is_undone_retried_and_reported(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    cni.fail_add = "no IP addresses available"
    pod = mkpod()
    delay = w.sync_pod(pod)
    assert delay is not None and delay > 0
    assert ns.names == set() and rt.list_pod_sandboxes() == []
    assert ("DEL", "default_web_1234abcd_0") in cni.calls  # DEL even after the failed ADD
    assert any(r == "FailedCreatePodSandBox" and "no IP addresses" in m for r, m in api.events)
    cni.fail_add = None
    w.sync_pod(pod)
    assert api.statuses[-1]["phase"] == "Running"


def test_deletion_tears_down_and_deletes(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod()
    w.sync_pod(pod)
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 1
    w.sync_pod(pod)
    assert rt.list_pod_sandboxes() == [] and rt.list_containers() == []
    assert ns.names == set() and cni.attached == {}
    assert api.deleted == ["web"]
    assert ("Killing", "Stopping container app") in api.events


def test_never_policy_completes(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod(restartPolicy="Never")
    w.sync_pod(pod)
    rt.exit(rt.list_containers()[0].id, 0)
    w.sync_pod(pod)
    assert api.statuses[-1]["phase"] == "Succeeded"
    assert cni.attached == {}  # the sandbox is stopped and its IP released once the pod is done
    w.sync_pod(pod)
    assert len([c for c in rt.list_containers() if c.state == ContainerState.RUNNING]) == 0


def test_missing_configmap_waits_with_reason(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod(volumes=[{"name": "cfg", "configMap": {"name": "settings"}}])
    w.sync_pod(pod)
    cs = api.statuses[-1]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    api.objects[("configMap", "default", "settings")] = {"data": {"a.conf": "x=1"}}
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
    w.sync_pod(pod)
    assert api.statuses[-1]["phase"] == "Running"
    assert (w.pod_dir("1234abcd-0000") / "volumes" / "cfg" / "a.conf").read_text() == "x=1"


def test_missing_command_is_a_clear_error(env: Any) -> None:
    w, rt, cni, ns, api, clock = env
    pod = mkpod()
    del pod["spec"]["containers"][0]["command"]
    w.sync_pod(pod)
    cs = api.statuses[-1]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert "no command specified" in cs["state"]["waiting"]["message"]
