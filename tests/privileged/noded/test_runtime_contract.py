"""One contract for both runtimes: FakeRuntime must behave like RuncRuntime on real runc.

Each case runs against the fake and against runc (temp root, throwaway netns, busybox from the
test registry); it checks outcomes (states, exit codes, ids, errors), never call sequences.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from noded.images.store import ImageStore
from noded.runtime.fake import FakeRuntime
from noded.runtime.interface import (
    AlreadyExists,
    ContainerConfig,
    ContainerState,
    CreateContainerError,
    NotFound,
    SandboxConfig,
    SandboxState,
)
from noded.runtime.runc import RuncRuntime
from tests.helpers.netns import NetnsFactory
from tests.helpers.registry import Registry
from tests.helpers.wait import wait_for


@pytest.fixture(params=["fake", "runc"])
def rt(request: pytest.FixtureRequest, tmp_path: Path, netns: NetnsFactory, registry: Registry) -> Iterator[Any]:
    ns = netns("pod")
    if request.param == "fake":
        runtime: Any = FakeRuntime()
        layers: list[str] = []
        image_config: dict[str, Any] = {}
    else:
        runtime = RuncRuntime(tmp_path / "rt")
        store = ImageStore(tmp_path / "images", insecure_registries=[registry.address])
        img = store.ensure(f"{registry.address}/kubelab/busybox:latest")
        layers, image_config = [str(p) for p in store.rootfs_layers(img)], img.config
    runtime.test_netns = f"/var/run/netns/{ns}"
    runtime.test_layers = layers
    runtime.test_image_config = image_config
    runtime.test_logs = tmp_path / "logs"
    try:
        yield runtime
    finally:
        if isinstance(runtime, RuncRuntime):
            runtime.remove_everything()


def sandbox(rt: Any, attempt: int = 0, uid: str | None = None) -> str:
    return str(
        rt.run_pod_sandbox(
            SandboxConfig(
                name="web",
                namespace="default",
                uid=uid or str(uuid.uuid4()),
                attempt=attempt,
                hostname="web",
                netns_path=rt.test_netns,
                log_dir=str(rt.test_logs),
            )
        )
    )


def container(rt: Any, name: str = "app", attempt: int = 0) -> ContainerConfig:
    return ContainerConfig(
        name=name,
        attempt=attempt,
        image="busybox",
        image_id="sha256:x",
        argv=["sleep", "1000"],
        env=["PATH=/bin"],
        working_dir="/",
        mounts=[],
        log_path=str(rt.test_logs / name / f"{attempt}.log"),
        container={"name": name},
        layers=rt.test_layers,
        image_config=rt.test_image_config,
    )


def test_sandbox_and_container_lifecycle(rt: Any) -> None:
    uid = str(uuid.uuid4())
    sid = sandbox(rt, uid=uid)
    [sb] = rt.list_pod_sandboxes(uid)
    assert sb.id == sid and sb.state == SandboxState.READY and sb.pid > 0 and sb.attempt == 0
    cid = rt.create_container(sid, container(rt))
    assert rt.container_status(cid).state == ContainerState.CREATED
    rt.start_container(cid)
    st = rt.container_status(cid)
    assert st.state == ContainerState.RUNNING and st.started_at > 0 and st.name == "app"
    assert [c.id for c in rt.list_containers(sid)] == [cid]
    rt.stop_container(cid, 0)
    st = wait_for(lambda: (s := rt.container_status(cid)).state == ContainerState.EXITED and s, 10)
    assert st.exit_code == 137 and st.reason == "Error"
    rt.remove_container(cid)
    assert rt.list_containers(sid) == []
    rt.stop_pod_sandbox(sid)
    assert rt.list_pod_sandboxes(uid)[0].state == SandboxState.NOTREADY
    rt.remove_pod_sandbox(sid)
    assert rt.list_pod_sandboxes(uid) == []


def test_ids_are_unique_and_missing_things_are_idempotent(rt: Any) -> None:
    uid = str(uuid.uuid4())
    sid = sandbox(rt, uid=uid)
    with pytest.raises(AlreadyExists):
        sandbox(rt, uid=uid)
    cid = rt.create_container(sid, container(rt))
    with pytest.raises(AlreadyExists):
        rt.create_container(sid, container(rt))
    assert rt.create_container(sid, container(rt, attempt=1)) != cid
    with pytest.raises(NotFound):
        rt.container_status("no-such-container")
    rt.stop_container("no-such-container", 0)  # missing: success, like CRI
    rt.remove_container("no-such-container")
    rt.remove_pod_sandbox("no-such-sandbox")


def test_removing_a_sandbox_removes_its_containers_and_a_stopped_one_takes_none(rt: Any) -> None:
    uid = str(uuid.uuid4())
    sid = sandbox(rt, uid=uid)
    cid = rt.create_container(sid, container(rt))
    rt.start_container(cid)
    rt.stop_pod_sandbox(sid)
    assert rt.container_status(cid).state == ContainerState.EXITED
    with pytest.raises(CreateContainerError):
        rt.create_container(sid, container(rt, "late"))
    rt.remove_pod_sandbox(sid)
    assert rt.list_containers() == [] and rt.list_pod_sandboxes() == []
