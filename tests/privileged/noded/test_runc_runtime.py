"""RuncRuntime against real runc, under a temp root and a throwaway netns.

Each test uses its own runtime root (so its runc ``--root``, bundles and cgroup parent are its
own) and removes everything it made at teardown, also on failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from noded.images.store import Image, ImageStore
from noded.runtime.interface import ContainerConfig, ContainerState, SandboxConfig
from noded.runtime.runc import RuncRuntime
from tests.helpers.netns import NetnsFactory
from tests.helpers.registry import Registry
from tests.helpers.wait import wait_for


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuncRuntime]:
    rt = RuncRuntime(tmp_path / "rt")
    try:
        yield rt
    finally:
        rt.remove_everything()


@pytest.fixture
def busybox(tmp_path: Path, registry: Registry) -> tuple[ImageStore, Image]:
    store = ImageStore(tmp_path / "images", insecure_registries=[registry.address])
    return store, store.ensure(f"{registry.address}/kubelab/busybox:latest")


def _sandbox(rt: RuncRuntime, netns: NetnsFactory, tmp_path: Path) -> str:
    ns = netns("pod")
    return rt.run_pod_sandbox(
        SandboxConfig(
            name="web",
            namespace="default",
            uid=str(uuid.uuid4()),
            attempt=0,
            hostname="web",
            netns_path=f"/var/run/netns/{ns}",
            log_dir=str(tmp_path / "logs"),
        )
    )


def _container(
    store: ImageStore, img: Image, name: str, argv: list[str], tmp_path: Path, resources: dict | None = None
) -> ContainerConfig:
    return ContainerConfig(
        name=name,
        attempt=0,
        image=img.ref,
        image_id=img.image_id,
        argv=argv,
        env=["PATH=/bin:/usr/bin", "GREETING=hi"],
        working_dir="/",
        mounts=[],
        log_path=str(tmp_path / "logs" / name / "0.log"),
        container={"name": name, "resources": resources or {}},
        layers=[str(p) for p in store.rootfs_layers(img)],
        image_config=img.config,
    )


def test_container_runs_in_sandbox_and_logs(
    runtime: RuncRuntime, netns: NetnsFactory, tmp_path: Path, busybox: tuple[ImageStore, Image]
) -> None:
    store, img = busybox
    sid = _sandbox(runtime, netns, tmp_path)
    [sb] = runtime.list_pod_sandboxes()
    assert sb.id == sid and sb.pid > 0 and sb.state == "SANDBOX_READY"
    cid = runtime.create_container(
        sid,
        _container(store, img, "app", ["sh", "-c", "echo $GREETING from $(hostname); echo err >&2; exit 3"], tmp_path),
    )
    runtime.start_container(cid)
    st = wait_for(lambda: (s := runtime.container_status(cid)).state == ContainerState.EXITED and s, 10)
    assert st.exit_code == 3 and st.reason == "Error"
    lines = Path(st.log_path).read_text().splitlines()
    assert [ln.split(" ", 3)[1:] for ln in lines] == [["stdout", "F", "hi from web"], ["stderr", "F", "err"]]
    runtime.remove_pod_sandbox(sid)
    assert runtime.list_pod_sandboxes() == [] and runtime.list_containers() == []


def test_oom_killed_and_stop(
    runtime: RuncRuntime, netns: NetnsFactory, tmp_path: Path, busybox: tuple[ImageStore, Image]
) -> None:
    store, img = busybox
    sid = _sandbox(runtime, netns, tmp_path)
    hog = runtime.create_container(
        sid,
        _container(
            store,
            img,
            "hog",
            ["sh", "-c", "x=a; while true; do x=$x$x; done"],
            tmp_path,
            {"limits": {"memory": "16Mi"}},
        ),
    )
    runtime.start_container(hog)
    st = wait_for(lambda: (s := runtime.container_status(hog)).state == ContainerState.EXITED and s, 20)
    assert st.reason == "OOMKilled" and st.exit_code == 137
    sleeper = runtime.create_container(sid, _container(store, img, "sleep", ["sleep", "1000"], tmp_path))
    runtime.start_container(sleeper)
    assert runtime.container_status(sleeper).state == ContainerState.RUNNING
    res = runtime.exec_sync(sleeper, ["sh", "-c", "echo $GREETING; exit 4"], 10)
    assert (res.exit_code, res.stdout) == (4, b"hi\n")
    runtime.stop_container(sleeper, 0.2)  # sleep as PID 1 ignores SIGTERM: killed after the grace
    st = runtime.container_status(sleeper)
    assert st.state == ContainerState.EXITED and st.exit_code == 137


def test_missing_command_fails_clearly(
    runtime: RuncRuntime, netns: NetnsFactory, tmp_path: Path, busybox: tuple[ImageStore, Image]
) -> None:
    store, img = busybox
    sid = _sandbox(runtime, netns, tmp_path)
    with pytest.raises(Exception) as info:
        cid = runtime.create_container(sid, _container(store, img, "bad", ["/no/such/binary"], tmp_path))
        runtime.start_container(cid)
    assert "/no/such/binary" in str(info.value)


def test_one_pods_listing_reads_only_that_pods_runc_state(
    runtime: RuncRuntime, netns: NetnsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod sync observes its own sandboxes and containers; deciding their state must not read
    every other container's (issue 4: with 100 pods that made each sync ~100× dearer)."""
    import noded.runtime.runc as runc_mod

    uids = [str(uuid.uuid4()) for _ in range(3)]
    sids = []
    for i, uid in enumerate(uids):
        ns = netns(f"p{i}")
        sids.append(
            runtime.run_pod_sandbox(
                SandboxConfig(f"web{i}", "default", uid, 0, f"web{i}", f"/var/run/netns/{ns}", str(tmp_path / "logs"))
            )
        )
    everything = runtime.list_pod_sandboxes()
    pid_of = {sb.id: sb.pid for sb in everything}
    assert sorted(pid_of) == sorted(sids) and all(pid_of.values())
    read: list[int] = []
    real = runc_mod._proc_start

    def counting(pid: int) -> int | None:
        read.append(pid)
        return real(pid)

    monkeypatch.setattr(runc_mod, "_proc_start", counting)
    mine = runtime.list_pod_sandboxes(uids[1])
    # The same answer as filtering the whole listing…
    assert mine == [sb for sb in everything if sb.uid == uids[1]]
    assert runtime.list_containers(sids[1]) == []
    # …from the state of that pod's sandbox alone.
    assert read == [pid_of[sids[1]]]
