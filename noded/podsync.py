"""Pod sync: what to do for one pod (pure ``compute_pod_actions``) and the status it has (pure
``compute_pod_status``). The executor that carries the actions out is ``noded.podworker``.

This is kubelet's ``computePodActions`` / ``SyncPod`` split. ``observed`` is what the runtime
reports for the pod's uid (sandboxes and containers, found again after any noded restart through
their annotations), plus noded's in-memory per-pod notes (probe results, waiting reasons).

State table (first matching row wins; "policy" is ``spec.restartPolicy``):

| #  | pod                      | observed                              | action                                  |
|----|--------------------------|---------------------------------------|-----------------------------------------|
| 1  | being deleted            | anything                              | kill_pod (graceful), finalize, delete   |
| 2  | Succeeded/Failed already | sandbox still running                 | kill_pod, never start anything again    |
| 3  | not terminal             | no READY sandbox (new, died, reboot)  | create sandbox (attempt = last+1); kill |
|    |                          |                                       | containers of older sandboxes           |
| 4  | init i not Completed     | i running                             | wait                                    |
| 5  | init i exited non-zero   | policy Never                          | kill_pod; phase Failed                  |
| 6  | init i exited non-zero   | policy Always/OnFailure               | restart i after back-off                |
| 7  | init i never ran         |                                       | start i (one init container at a time)  |
| 8  | inits done; app c        | never ran                             | start c                                 |
| 9  | app c exited             | Always, or OnFailure and exit ≠ 0     | restart after back-off (restartCount+1) |
| 10 | app c exited             | Never, or OnFailure and exit = 0      | leave it terminated                     |
| 11 | app c running            | spec hash changed / liveness failed   | kill c (then row 9)                     |
| 12 | no app c will run again  |                                       | phase Succeeded/Failed; kill sandbox    |

Back-off (kubelet's): the first restart is immediate, then 10 s, 20 s, 40 s … capped at 5 min
(``base``/``cap`` configurable so tests run fast); a container that ran for 10 min resets it.
Exited container instances are kept (the last one per name, for ``logs --previous``) and removed
when a newer one exists.

Long function kept whole: ``compute_pod_actions`` (~120 lines) follows the state table row by row,
so the table and the code read side by side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from noded import names
from noded.runtime.interface import ContainerState, ContainerStatus, SandboxState, SandboxStatus

BACKOFF_BASE = 10.0
BACKOFF_CAP = 300.0


@dataclass
class Observed:
    """The runtime's view of one pod, plus noded's notes about it."""

    sandboxes: list[SandboxStatus] = field(default_factory=list)
    containers: list[ContainerStatus] = field(default_factory=list)
    liveness_failed: set[str] = field(default_factory=set)  # container names
    ready: dict[str, bool] = field(default_factory=dict)  # readiness probe results
    started: dict[str, bool] = field(default_factory=dict)  # startup probe results
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, message)
    pod_ip: str = ""
    sandbox_error: str = ""

    def ready_sandbox(self) -> SandboxStatus | None:
        ready = [s for s in self.sandboxes if s.state == SandboxState.READY]
        return max(ready, key=lambda s: s.attempt) if ready else None

    def latest(self, name: str, sandbox_id: str | None = None) -> ContainerStatus | None:
        """The newest instance of container ``name`` (in ``sandbox_id`` if given)."""
        cs = [c for c in self.containers if c.name == name and (sandbox_id is None or c.sandbox_id == sandbox_id)]
        return max(cs, key=lambda c: (c.attempt, c.created_at)) if cs else None

    def restart_count(self, name: str) -> int:
        """Next attempt number: one past the highest instance seen in any sandbox."""
        cs = [c.attempt for c in self.containers if c.name == name]
        return max(cs) + 1 if cs else 0


@dataclass(frozen=True)
class KillAction:
    container_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class StartAction:
    name: str
    attempt: int
    init: bool = False


@dataclass(frozen=True)
class PodActions:
    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_attempt: int = 0
    sandbox_id: str | None = None
    start: tuple[StartAction, ...] = ()
    kill: tuple[KillAction, ...] = ()
    remove: tuple[str, ...] = ()  # exited container instances to garbage-collect
    backoff: Mapping[str, float] = field(default_factory=dict)  # name -> seconds still to wait
    terminal_phase: str | None = None  # "Succeeded" | "Failed" once nothing will run again
    finalize: bool = False  # the pod is being deleted: tear down and delete the API object


def backoff_delay(restarts: int, ran_for: float, base: float, cap: float) -> float:
    """Delay before restart number ``restarts`` (≥1): 0 for the first, then base·2^(n-2)."""
    if restarts <= 1 or ran_for >= 2 * BACKOFF_CAP:
        return 0.0
    return float(min(cap, base * 2 ** (restarts - 2)))


def pull_backoff_remaining(failures: int, last_failure: float, now: float, base: float, cap: float) -> float:
    """Seconds an image pull must still wait after ``failures`` failed pulls (kubelet's image
    back-off: base·2^(n-1), capped; 0 when there was no failure or the wait is over)."""
    if failures <= 0:
        return 0.0
    return max(0.0, float(min(base * 2 ** (failures - 1), cap)) - (now - last_failure))


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _running(c: ContainerStatus | None) -> bool:
    return c is not None and c.state in (ContainerState.RUNNING, ContainerState.CREATED)


def _exited(c: ContainerStatus | None) -> bool:
    return c is not None and c.state in (ContainerState.EXITED, ContainerState.UNKNOWN)


def compute_pod_actions(
    pod: Mapping[str, Any],
    observed: Observed,
    *,
    now: float | None = None,
    backoff_base: float = BACKOFF_BASE,
    backoff_cap: float = BACKOFF_CAP,
) -> PodActions:
    """Follow the state table above, row by row."""
    now = time.time() if now is None else now
    spec = pod.get("spec", {})
    policy = spec.get("restartPolicy", "Always")
    phase = pod.get("status", {}).get("phase")
    live = [c for c in observed.containers if _running(c)]
    all_kill = tuple(KillAction(c.id, c.name, "Killing") for c in live)

    # Row 1: deletion.
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return PodActions(kill_pod=True, kill=all_kill, finalize=True)
    # Row 2: already terminal (a terminal pod never runs again).
    if phase in ("Succeeded", "Failed"):
        if live or observed.ready_sandbox():
            return PodActions(kill_pod=True, kill=all_kill, terminal_phase=phase)
        return PodActions(terminal_phase=phase)

    sandbox = observed.ready_sandbox()
    inits = [c["name"] for c in spec.get("initContainers") or []]
    apps = [c["name"] for c in spec.get("containers") or []]
    hashes = {
        c["name"]: names.container_hash(c) for c in (spec.get("initContainers") or []) + spec.get("containers", [])
    }

    # Row 3: (re)create the sandbox; kill whatever still runs in older sandboxes.
    if sandbox is None:
        attempt = max((s.attempt for s in observed.sandboxes), default=-1) + 1
        return PodActions(create_sandbox=True, sandbox_attempt=attempt, kill=all_kill)

    sid = sandbox.id
    kills: list[KillAction] = [KillAction(c.id, c.name, "Killing") for c in live if c.sandbox_id != sid]
    removes: list[str] = []
    for name in set(inits + apps):
        inst = sorted((c for c in observed.containers if c.name == name), key=lambda c: (c.attempt, c.created_at))
        # Keep the current instance and the one before it (``logs --previous``, kubelet's
        # MaxPerPodContainer=1 dead container); older exited instances go.
        removes.extend(c.id for c in inst[:-2] if _exited(c))
    backoff: dict[str, float] = {}

    def restart_or_wait(name: str, last: ContainerStatus, init: bool) -> StartAction | None:
        attempt = observed.restart_count(name)
        ran_for = max(0.0, (last.finished_at or now) - (last.started_at or last.finished_at or now))
        delay = backoff_delay(attempt, ran_for, backoff_base, backoff_cap)
        remaining = (last.finished_at or now) + delay - now
        if remaining > 0:
            backoff[name] = remaining
            return None
        return StartAction(name, attempt, init)

    # Rows 4–7: init containers, in order, one at a time, in this sandbox.
    for name in inits:
        last = observed.latest(name, sid)
        if last is None:
            return PodActions(
                sandbox_id=sid,
                start=(StartAction(name, observed.restart_count(name), True),),
                kill=tuple(kills),
                remove=tuple(removes),
            )
        if _running(last):
            return PodActions(sandbox_id=sid, kill=tuple(kills), remove=tuple(removes))
        if last.exit_code == 0:
            continue
        if policy == "Never":
            return PodActions(
                kill_pod=True, sandbox_id=sid, kill=tuple(kills), terminal_phase="Failed", remove=tuple(removes)
            )
        act = restart_or_wait(name, last, True)
        return PodActions(
            sandbox_id=sid, start=(act,) if act else (), kill=tuple(kills), remove=tuple(removes), backoff=backoff
        )

    # Rows 8–11: app containers.
    starts: list[StartAction] = []
    will_run = False
    any_failed = False
    for c in spec.get("containers", []):
        name = c["name"]
        last = observed.latest(name, sid)
        if last is None:
            prev = observed.latest(name)  # from an older sandbox (after a sandbox re-create)
            if prev is not None and _exited(prev) and not should_restart(policy, prev.exit_code):
                any_failed |= prev.exit_code != 0
                continue
            starts.append(StartAction(name, observed.restart_count(name)))
            will_run = True
            continue
        if _running(last):
            will_run = True
            changed = last.labels.get(names.CONTAINER_HASH) not in (None, hashes[name])
            if name in observed.liveness_failed or changed:
                kills.append(KillAction(last.id, name, "Unhealthy" if name in observed.liveness_failed else "Changed"))
            continue
        if should_restart(policy, last.exit_code):
            will_run = True
            act = restart_or_wait(name, last, False)
            if act:
                starts.append(act)
            continue
        any_failed |= last.exit_code != 0
    # Row 12: nothing will run again → terminal.
    if not will_run and apps:
        return PodActions(
            kill_pod=True,
            sandbox_id=sid,
            kill=tuple(kills),
            terminal_phase="Failed" if any_failed else "Succeeded",
            remove=tuple(removes),
        )
    return PodActions(sandbox_id=sid, start=tuple(starts), kill=tuple(kills), remove=tuple(removes), backoff=backoff)


# ---- status ------------------------------------------------------------------------------------


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _container_status(
    spec_c: Mapping[str, Any], observed: Observed, sid: str | None, init: bool, policy: str
) -> dict[str, Any]:
    name = spec_c["name"]
    insts = sorted((c for c in observed.containers if c.name == name), key=lambda c: (c.attempt, c.created_at))
    cur = insts[-1] if insts else None
    prev = insts[-2] if len(insts) > 1 else None
    st: dict[str, Any] = {
        "name": name,
        "image": spec_c.get("image", ""),
        "imageID": "",
        "restartCount": cur.attempt if cur else 0,
        "ready": False,
        "started": False,
        "state": {"waiting": {"reason": "ContainerCreating"}},
        "lastState": {},
    }

    def terminated(c: ContainerStatus) -> dict[str, Any]:
        t: dict[str, Any] = {
            "exitCode": c.exit_code,
            "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
            "startedAt": rfc3339(c.started_at) if c.started_at else None,
            "finishedAt": rfc3339(c.finished_at or c.created_at),
            "containerID": f"runc://{c.id}",
        }
        if c.message:
            t["message"] = c.message
        return t

    if cur is not None:
        st["imageID"] = cur.image_id
        st["containerID"] = f"runc://{cur.id}"
        if cur.state == ContainerState.RUNNING:
            st["state"] = {"running": {"startedAt": rfc3339(cur.started_at or cur.created_at)}}
            started = observed.started.get(name, True)
            st["started"] = started
            st["ready"] = (not init) and started and observed.ready.get(name, True)
        elif cur.state == ContainerState.CREATED:
            st["state"] = {"waiting": {"reason": "ContainerCreating"}}
        else:
            term = terminated(cur)
            if name in observed.waiting:
                # A restart is pending (back-off): the current state is waiting, the exit is lastState.
                reason, msg = observed.waiting[name]
                st["state"] = {"waiting": {"reason": reason, "message": msg}}
                st["lastState"] = {"terminated": term}
            else:
                st["state"] = {"terminated": term}
                if prev is not None and _exited(prev):
                    st["lastState"] = {"terminated": terminated(prev)}
        if cur.state != ContainerState.EXITED and prev is not None and _exited(prev):
            st["lastState"] = {"terminated": terminated(prev)}
    elif name in observed.waiting:
        reason, msg = observed.waiting[name]
        st["state"] = {"waiting": {"reason": reason, "message": msg}}
    elif init:
        st["state"] = {"waiting": {"reason": "PodInitializing"}}
    return st


def compute_pod_status(
    pod: Mapping[str, Any],
    observed: Observed,
    *,
    host_ip: str,
    terminal_phase: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The pod's ``status`` as noded sees it (merged over the existing one by the caller)."""
    now = time.time() if now is None else now
    spec = pod.get("spec", {})
    old = pod.get("status", {}) or {}
    policy = spec.get("restartPolicy", "Always")
    sandbox = observed.ready_sandbox()
    sid = sandbox.id if sandbox else None
    init_specs = spec.get("initContainers") or []
    app_specs = spec.get("containers") or []
    init_st = [_container_status(c, observed, sid, True, policy) for c in init_specs]
    app_st = [_container_status(c, observed, sid, False, policy) for c in app_specs]
    initialized = all("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0 for s in init_st)
    if init_specs and not initialized:
        for s in app_st:
            if "waiting" in s["state"] and s["state"]["waiting"].get("reason") == "ContainerCreating":
                s["state"] = {"waiting": {"reason": "PodInitializing"}}
    containers_ready = bool(app_st) and all(s["ready"] for s in app_st)

    if terminal_phase:
        phase = terminal_phase
    elif old.get("phase") in ("Succeeded", "Failed"):
        phase = old["phase"]
    elif not initialized or sandbox is None:
        phase = "Pending"
    elif all("running" in s["state"] or "terminated" in s["state"] or s["lastState"] for s in app_st):
        phase = "Running"
    else:
        phase = "Pending"
    if phase in ("Succeeded", "Failed"):
        containers_ready = False
        for s in app_st:
            s["ready"] = False

    old_conds = {c["type"]: c for c in old.get("conditions") or []}

    def cond(type_: str, ok: bool, reason: str = "") -> dict[str, Any]:
        status = "True" if ok else "False"
        prev = old_conds.get(type_)
        ts = prev["lastTransitionTime"] if prev and prev.get("status") == status else rfc3339(now)
        c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": ts}
        if reason and not ok:
            c["reason"] = reason
        return c

    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            cond("Initialized", initialized, "ContainersNotInitialized"),
            cond("Ready", containers_ready, "ContainersNotReady"),
            cond("ContainersReady", containers_ready, "ContainersNotReady"),
            cond("PodScheduled", True),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": old.get("startTime") or rfc3339(now),
        "containerStatuses": app_st,
        "qosClass": old.get("qosClass") or qos_class(spec),
    }
    if init_st:
        status["initContainerStatuses"] = init_st
    pod_ip = observed.pod_ip or (old.get("podIP") if sandbox is not None else "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if observed.sandbox_error and sandbox is None:
        status["message"] = observed.sandbox_error
    return status


def qos_class(spec: Mapping[str, Any]) -> str:
    cs: Sequence[Mapping[str, Any]] = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in cs:
        r = c.get("resources") or {}
        lim, req = r.get("limits") or {}, r.get("requests") or {}
        if lim or req:
            any_set = True
        for k in ("cpu", "memory"):
            if k not in lim or (k in req and req[k] != lim[k]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
