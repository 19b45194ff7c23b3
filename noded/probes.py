"""Liveness, readiness and startup probes (exec, httpGet, tcpSocket), one worker per probe.

Role: kubelet's prober: for each running container with probes, a worker thread runs its probe
every ``periodSeconds`` after ``initialDelaySeconds`` with ``timeoutSeconds``, and turns results into
state after ``successThreshold``/``failureThreshold`` consecutive results:
- startup: until it succeeds, liveness and readiness do not run and the container is not
  ``started``; reaching the failure threshold fails it like liveness;
- readiness: drives the container's ``ready`` (and so the pod's Ready condition and endpoints);
  false until the first success;
- liveness: reaching the failure threshold marks the container for a kill (podsync row 11).

httpGet and tcpSocket connect to the pod IP from noded's own network namespace (the node's), as
kubelet does; exec runs the command in the container through the runtime.
Concurrency: workers only write to ``ProbeManager``'s maps under its lock and call ``on_change``
(which enqueues the pod) when a result flips.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from noded.host import nsnet
from noded.runtime.interface import ContainerRuntime

log = logging.getLogger(__name__)


@dataclass
class PodProbeState:
    ready: dict[str, bool] = field(default_factory=dict)
    started: dict[str, bool] = field(default_factory=dict)
    liveness_failed: set[str] = field(default_factory=set)


def _port(container: Mapping[str, Any], port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"named port {port!r} not found in container ports")


def run_probe(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    container_id: str,
    pod_ip: str,
    runtime: ContainerRuntime,
    netns_path: str = "",
) -> tuple[bool, str]:
    """One probe execution → (success, message)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "exec" in probe:
            res = runtime.exec_sync(container_id, probe["exec"]["command"], timeout)
            out = (res.stdout + res.stderr).decode(errors="replace").strip()
            return res.exit_code == 0, f"exec failed with exit code {res.exit_code}: {out}"[:300]
        if "httpGet" in probe:
            hg = probe["httpGet"]
            host = hg.get("host") or pod_ip
            port = _port(container, hg["port"])
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            # Connect from the node's namespace (see noded.host.nsnet).
            conn.sock = nsnet.connect(host, port, timeout, netns_path)
            try:
                headers = {h["name"]: h["value"] for h in hg.get("httpHeaders") or []}
                headers.setdefault("User-Agent", "kube-probe/1.30")
                conn.request("GET", hg.get("path", "/"), headers=headers)
                code = conn.getresponse().status
            finally:
                conn.close()
            return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}"
        if "tcpSocket" in probe:
            ts = probe["tcpSocket"]
            nsnet.connect(ts.get("host") or pod_ip, _port(container, ts["port"]), timeout, netns_path).close()
            return True, ""
        return False, "probe has no handler"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, f"probe error: {exc}"


class _Worker(threading.Thread):
    def __init__(
        self,
        mgr: ProbeManager,
        key: str,
        kind: str,
        probe: Mapping[str, Any],
        container: Mapping[str, Any],
        container_id: str,
        pod_ip: str,
    ) -> None:
        super().__init__(daemon=True, name=f"probe-{kind}-{container_id}")
        self.mgr, self.key, self.kind, self.probe = mgr, key, kind, probe
        self.container, self.cid, self.pod_ip = container, container_id, pod_ip
        self.stop = threading.Event()

    def run(self) -> None:
        period = max(float(self.probe.get("periodSeconds", 10)), 0.05)
        ok_need = int(self.probe.get("successThreshold", 1))
        fail_need = int(self.probe.get("failureThreshold", 3))
        if self.stop.wait(float(self.probe.get("initialDelaySeconds", 0))):
            return
        oks = fails = 0
        name = self.container["name"]
        while not self.stop.is_set():
            if self.kind != "startup" and not self.mgr.is_started(self.key, name):
                self.stop.wait(min(period, 0.1))
                continue
            ok, msg = run_probe(
                self.probe, self.container, self.cid, self.pod_ip, self.mgr.runtime, self.mgr.netns_path
            )
            if self.stop.is_set():
                return
            oks, fails = (oks + 1, 0) if ok else (0, fails + 1)
            if ok and oks >= ok_need:
                self.mgr.record(self.key, name, self.kind, True, "")
                if self.kind == "startup":
                    return
            elif not ok:
                self.mgr.unhealthy(self.key, name, self.kind, msg)
                if fails >= fail_need:
                    self.mgr.record(self.key, name, self.kind, False, msg)
                    if self.kind in ("liveness", "startup"):
                        return
            self.stop.wait(period)


class ProbeManager:
    def __init__(
        self,
        runtime: ContainerRuntime,
        on_change: Callable[[str], None],
        on_unhealthy: Callable[[str, str, str, str], None] | None = None,
        netns_path: str = "",
    ) -> None:
        self.runtime = runtime
        self.netns_path = netns_path
        self.on_change = on_change
        self.on_unhealthy = on_unhealthy
        self._lock = threading.Lock()
        self._states: dict[str, PodProbeState] = {}
        self._workers: dict[tuple[str, str, str], _Worker] = {}  # (pod key, container id, kind)

    def state(self, key: str) -> PodProbeState:
        with self._lock:
            st = self._states.get(key)
            return PodProbeState(dict(st.ready), dict(st.started), set(st.liveness_failed)) if st else PodProbeState()

    def is_started(self, key: str, name: str) -> bool:
        with self._lock:
            st = self._states.get(key)
            return bool(st and st.started.get(name, True))

    def record(self, key: str, name: str, kind: str, ok: bool, msg: str) -> None:
        with self._lock:
            st = self._states.setdefault(key, PodProbeState())
            if kind == "readiness":
                changed = st.ready.get(name) != ok
                st.ready[name] = ok
            elif kind == "startup":
                changed = st.started.get(name) != ok
                st.started[name] = ok
                if not ok:
                    st.liveness_failed.add(name)
            else:
                changed = not ok and name not in st.liveness_failed
                if not ok:
                    st.liveness_failed.add(name)
        if changed:
            self.on_change(key)

    def unhealthy(self, key: str, name: str, kind: str, msg: str) -> None:
        if self.on_unhealthy:
            self.on_unhealthy(key, name, kind, msg)

    def sync(
        self,
        key: str,
        pod: Mapping[str, Any],
        running: Mapping[str, str],
        pod_ip: str,
        preexisting: Set[str] = frozenset(),
    ) -> None:
        """Make the workers match ``running`` ({container name: container id}) for pod ``key``."""
        specs = {c["name"]: c for c in pod.get("spec", {}).get("containers", [])}
        want: dict[tuple[str, str, str], tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        for name, cid in running.items():
            c = specs.get(name)
            if c is None:
                continue
            for kind in ("startup", "readiness", "liveness"):
                probe = c.get(f"{kind}Probe")
                if probe:
                    want[(key, cid, kind)] = (probe, c)
        with self._lock:
            st = self._states.setdefault(key, PodProbeState())
            for (k, cid, kind), w in list(self._workers.items()):
                if k == key and (k, cid, kind) not in want:
                    w.stop.set()
                    del self._workers[(k, cid, kind)]
            for wkey, (probe, c) in want.items():
                if wkey in self._workers:
                    continue
                name = c["name"]
                kind = wkey[2]
                # A new container instance starts over: not ready, not started, not failed. But a
                # container the API already shows ready/started (same container ID: noded was
                # restarted) keeps that until its probe says otherwise, so endpoints do not flap.
                known: Mapping[str, Any] = {}
                if wkey[1] in preexisting:
                    known = next(
                        (
                            cs
                            for cs in (pod.get("status") or {}).get("containerStatuses") or []
                            if cs.get("name") == name and cs.get("containerID") == f"runc://{wkey[1]}"
                        ),
                        {},
                    )
                if kind == "readiness":
                    st.ready[name] = bool(known.get("ready"))
                if kind == "startup":
                    st.started[name] = bool(known.get("started"))
                st.liveness_failed.discard(name)
                w = _Worker(self, key, kind, probe, c, wkey[1], pod_ip)
                self._workers[wkey] = w
                w.start()
            for name in list(st.ready):
                if name not in running:
                    st.ready.pop(name, None)

    def forget(self, key: str) -> None:
        with self._lock:
            for wkey, w in list(self._workers.items()):
                if wkey[0] == key:
                    w.stop.set()
                    del self._workers[wkey]
            self._states.pop(key, None)

    def stop_all(self) -> None:
        with self._lock:
            for w in self._workers.values():
                w.stop.set()
            self._workers.clear()
