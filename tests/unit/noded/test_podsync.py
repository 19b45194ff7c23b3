"""Table tests for compute_pod_actions / compute_pod_status (FakeRuntime-free: plain data)."""

from __future__ import annotations

from typing import Any

import pytest

from noded.podsync import (
    Observed,
    PodActions,
    StartAction,
    backoff_delay,
    compute_pod_actions,
    compute_pod_status,
)
from noded.runtime.interface import ContainerState, ContainerStatus, SandboxState, SandboxStatus

NOW = 1000.0
SID = "default_web_aaaaaaaa_0"


def pod(
    policy: str = "Always", inits: int = 0, apps: int = 1, deleting: bool = False, phase: str | None = None
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default", "uid": "aaaaaaaa-1"},
        "spec": {
            "restartPolicy": policy,
            "containers": [{"name": f"app{i}", "image": "busybox"} for i in range(apps)],
        },
        "status": {},
    }
    if inits:
        p["spec"]["initContainers"] = [{"name": f"init{i}", "image": "busybox"} for i in range(inits)]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if phase:
        p["status"]["phase"] = phase
    return p


def sandbox(attempt: int = 0, ready: bool = True) -> SandboxStatus:
    return SandboxStatus(
        id=f"default_web_aaaaaaaa_{attempt}",
        name="web",
        namespace="default",
        uid="aaaaaaaa-1",
        attempt=attempt,
        state=SandboxState.READY if ready else SandboxState.NOTREADY,
        created_at=0,
        netns_path="/x",
        pid=1 if ready else 0,
    )


def ctr(
    name: str,
    state: str = "running",
    code: int = 0,
    attempt: int = 0,
    sid: str = SID,
    finished: float = NOW - 1,
    started: float = NOW - 2,
) -> ContainerStatus:
    st = {"running": ContainerState.RUNNING, "exited": ContainerState.EXITED}[state]
    return ContainerStatus(
        id=f"{sid}_{name}_{attempt}",
        sandbox_id=sid,
        name=name,
        attempt=attempt,
        state=st,
        created_at=started,
        started_at=started,
        finished_at=finished if state == "exited" else 0,
        exit_code=code,
    )


def actions(p: dict[str, Any], obs: Observed) -> PodActions:
    return compute_pod_actions(p, obs, now=NOW, backoff_base=10, backoff_cap=300)


def test_new_pod_creates_sandbox_then_starts_app() -> None:
    a = actions(pod(), Observed())
    assert a.create_sandbox and a.sandbox_attempt == 0 and not a.start
    a = actions(pod(), Observed(sandboxes=[sandbox()]))
    assert a.sandbox_id == SID and a.start == (StartAction("app0", 0),)


def test_dead_sandbox_is_recreated_with_next_attempt_and_old_containers_killed() -> None:
    obs = Observed(sandboxes=[sandbox(0, ready=False)], containers=[ctr("app0")])
    a = actions(pod(), obs)
    assert a.create_sandbox and a.sandbox_attempt == 1
    assert [k.name for k in a.kill] == ["app0"]


def test_init_containers_run_in_order_one_at_a_time() -> None:
    p = pod(inits=2)
    assert actions(p, Observed(sandboxes=[sandbox()])).start == (StartAction("init0", 0, True),)
    running = Observed(sandboxes=[sandbox()], containers=[ctr("init0")])
    assert actions(p, running).start == ()
    done0 = Observed(sandboxes=[sandbox()], containers=[ctr("init0", "exited", 0)])
    assert actions(p, done0).start == (StartAction("init1", 0, True),)
    both = Observed(sandboxes=[sandbox()], containers=[ctr("init0", "exited"), ctr("init1", "exited")])
    assert actions(p, both).start == (StartAction("app0", 0),)


def test_failed_init_with_never_fails_the_pod() -> None:
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("init0", "exited", 1)])
    a = actions(pod("Never", inits=1), obs)
    assert a.kill_pod and a.terminal_phase == "Failed" and not a.start


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 1, True),
        ("OnFailure", 0, False),
        ("Never", 1, False),
        ("Never", 0, False),
    ],
)
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("app0", "exited", code)])
    a = actions(pod(policy), obs)
    if restart:
        assert a.start == (StartAction("app0", 1),)
    else:
        assert not a.start and a.terminal_phase == ("Succeeded" if code == 0 else "Failed") and a.kill_pod


def test_crash_loop_backs_off_exponentially() -> None:
    assert [backoff_delay(n, 1, 10, 300) for n in range(1, 8)] == [0, 10, 20, 40, 80, 160, 300]
    # Third crash (attempt 2 exited 1 s ago): wait 20 s more, minus the second already passed.
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("app0", "exited", 1, a) for a in range(3)])
    a = actions(pod(), obs)
    assert not a.start and a.backoff["app0"] == pytest.approx(19)
    long_ago = Observed(
        sandboxes=[sandbox()], containers=[ctr("app0", "exited", 1, a, finished=NOW - 50) for a in range(3)]
    )
    assert actions(pod(), long_ago).start == (StartAction("app0", 3),)
    # Older exited instances are garbage-collected; the one before the current stays for --previous.
    assert set(actions(pod(), long_ago).remove) == {f"{SID}_app0_0"}


def test_deletion_kills_everything_and_finalizes() -> None:
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("app0"), ctr("app1")])
    a = actions(pod(apps=2, deleting=True), obs)
    assert a.kill_pod and a.finalize and {k.name for k in a.kill} == {"app0", "app1"}


def test_liveness_failure_kills_container() -> None:
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("app0")], liveness_failed={"app0"})
    a = actions(pod(), obs)
    assert [(k.name, k.reason) for k in a.kill] == [("app0", "Unhealthy")]


def test_terminal_pod_never_restarts() -> None:
    a = actions(pod(phase="Succeeded"), Observed(sandboxes=[sandbox()]))
    assert a.kill_pod and not a.start and not a.create_sandbox


def test_status_running_ready_and_restart_counts() -> None:
    obs = Observed(
        sandboxes=[sandbox()],
        containers=[ctr("app0", "exited", 1, 0), ctr("app0", "running", attempt=1)],
        pod_ip="10.244.1.5",
    )
    st = compute_pod_status(pod(), obs, host_ip="192.168.56.11", now=NOW)
    assert st["phase"] == "Running" and st["podIP"] == "10.244.1.5"
    [cs] = st["containerStatuses"]
    assert cs["restartCount"] == 1 and cs["ready"] and "running" in cs["state"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["containerID"] == f"runc://{SID}_app0_1"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"Initialized": "True", "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}


def test_status_readiness_false_and_waiting_reason() -> None:
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("app0")], ready={"app0": False})
    st = compute_pod_status(pod(), obs, host_ip="h", now=NOW)
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
    obs = Observed(sandboxes=[sandbox()], waiting={"app0": ("ImagePullBackOff", "Back-off pulling image")})
    st = compute_pod_status(pod(), obs, host_ip="h", now=NOW)
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"


def test_status_terminal_phases() -> None:
    obs = Observed(sandboxes=[sandbox()], containers=[ctr("app0", "exited", 0)])
    st = compute_pod_status(pod("Never"), obs, host_ip="h", terminal_phase="Succeeded", now=NOW)
    assert st["phase"] == "Succeeded"
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_image_pull_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    from noded.podsync import pull_backoff_remaining

    assert pull_backoff_remaining(0, 0.0, 100.0, 10.0, 300.0) == 0.0  # never failed
    assert pull_backoff_remaining(1, 100.0, 100.0, 10.0, 300.0) == 10.0
    assert pull_backoff_remaining(3, 100.0, 105.0, 10.0, 300.0) == 35.0  # 40 s, 5 s already waited
    assert pull_backoff_remaining(9, 100.0, 100.0, 10.0, 300.0) == 300.0  # capped
    assert pull_backoff_remaining(2, 100.0, 150.0, 10.0, 300.0) == 0.0  # the wait is over
