"""The dashboard's live view of the cluster: informers in, one rendered state out, pushed to pages.

Role: five informers (Nodes, Pods, Services, EndpointSlices, Events — ``controlplane.client``,
list + watch, the way every component of the project watches) keep caches; any change marks the
view dirty. One render thread turns the caches into a ``State`` (tables + the topology SVG from
``graph``) and wakes every subscribed page (server-sent events). Resource use comes from
``metrics.k8s.io/v1beta1`` when the API serves it (polled every ``METRICS_PERIOD``), else
"metrics not available".

Invariants: read-only — the hub only lists, watches and GETs; the state it publishes is immutable
once published (pages get the same object); the version increases with every published state.

Concurrency: informer handlers (their threads) only set a ``threading.Event``; the render thread
alone builds states, debouncing bursts by ``DEBOUNCE`` seconds so a rollout redraws once, not per
event. Subscribers are asyncio queues woken with ``call_soon_threadsafe``. Veth names (one
``ip`` lookup per pod, read from the node's namespace) are resolved by a side thread and cached
by pod UID, so a slow lookup never delays a redraw.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from controlplane.api import errors, registry
from controlplane.client.informer import Informer
from controlplane.client.rest import ApiClient
from lab import topology
from lab.dashboard import graph

log = logging.getLogger(__name__)

DEBOUNCE = 0.05
METRICS_PERIOD = 10.0
MAX_EVENTS = 100
Obj = dict[str, Any]


@dataclass(frozen=True)
class State:
    version: int
    svg: str
    nodes: list[Obj]
    pods: list[Obj]
    services: list[Obj]
    events: list[Obj]
    metrics: str  # "" when served, else why not ("metrics not available")
    error: str = ""

    def as_json(self) -> Obj:
        return {
            "version": self.version,
            "svg": self.svg,
            "nodes": self.nodes,
            "pods": self.pods,
            "services": self.services,
            "events": self.events,
            "metrics": self.metrics,
            "error": self.error,
        }


def _conditions(n: Obj) -> list[str]:
    return [f"{c.get('type')}={c.get('status')}" for c in (n.get("status") or {}).get("conditions") or []]


def tables(snap: graph.Snapshot, node_use: dict[str, Obj], pod_use: dict[str, Obj], events: list[Obj]) -> Obj:
    """The page's tables from the same snapshot the picture is drawn from (pure)."""
    eps = graph.ready_endpoints(snap.slices)
    nodes = [
        {
            "name": n["metadata"]["name"],
            "ip": graph.node_ip(n),
            "podCIDR": (n.get("spec") or {}).get("podCIDR", ""),
            "ready": graph.node_ready(n),
            "conditions": _conditions(n),
            "usage": node_use.get(n["metadata"]["name"], {}),
        }
        for n in sorted(snap.nodes, key=graph.key)
    ]
    pods = [
        {
            "namespace": p["metadata"].get("namespace", ""),
            "name": p["metadata"]["name"],
            "node": (p.get("spec") or {}).get("nodeName", ""),
            "phase": "Terminating"
            if p["metadata"].get("deletionTimestamp")
            else (p.get("status") or {}).get("phase", ""),
            "ip": (p.get("status") or {}).get("podIP", ""),
            "veth": snap.veths.get(graph.key(p), ""),
            "containers": [c.get("name", "") for c in (p.get("spec") or {}).get("containers") or []],
            "usage": pod_use.get(graph.key(p), {}),
        }
        for p in sorted(snap.pods, key=lambda p: ((p.get("spec") or {}).get("nodeName", ""), graph.key(p)))
    ]
    services = [
        {
            "namespace": s["metadata"].get("namespace", ""),
            "name": s["metadata"]["name"],
            "type": (s.get("spec") or {}).get("type", "ClusterIP"),
            "clusterIP": (s.get("spec") or {}).get("clusterIP", ""),
            "ports": graph.service_ports(s),
            "endpoints": [a for a, _ in eps.get(graph.key(s), [])],
        }
        for s in sorted(snap.services, key=graph.key)
    ]
    return {"nodes": nodes, "pods": pods, "services": services, "events": events}


def event_rows(events: list[Obj]) -> list[Obj]:
    def when(e: Obj) -> str:
        md = e.get("metadata") or {}
        return str(e.get("lastTimestamp") or e.get("eventTime") or md.get("creationTimestamp") or "")

    rows = []
    for e in sorted(events, key=when, reverse=True)[:MAX_EVENTS]:
        obj = e.get("involvedObject") or {}
        rows.append({
            "time": when(e), "type": e.get("type", ""), "reason": e.get("reason", ""),
            "object": f"{obj.get('kind', '')}/{obj.get('name', '')}", "namespace": obj.get("namespace", ""),
            "message": e.get("message", ""), "count": e.get("count", 1),
        })  # fmt: skip
    return rows


@dataclass
class Hub:
    client: ApiClient
    lab: topology.LabNet | None = None
    veth_of: Callable[[Obj], str] | None = None  # pod → its host-side veth ("" when unknown)
    informers: dict[str, Informer] = field(default_factory=dict)
    state: State | None = None

    def __post_init__(self) -> None:
        for name, res in (("nodes", registry.NODES), ("pods", registry.PODS), ("services", registry.SERVICES),
                          ("slices", registry.ENDPOINTSLICES), ("events", registry.EVENTS)):  # fmt: skip
            inf = Informer(self.client, res, name=f"dashboard-{name}")
            inf.add_handler(lambda o: self.changed(), lambda a, b: self.changed(), lambda o: self.changed())
            self.informers[name] = inf
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[State]]] = set()
        self._veths: dict[str, str] = {}  # pod uid → veth
        self._veth_wanted: dict[str, Obj] = {}
        self._veth_event = threading.Event()
        self._metrics: tuple[dict[str, Obj], dict[str, Obj], str] = ({}, {}, "metrics not available")
        self._version = 0
        self.render_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()
        for target, name in ((self._render_loop, "render"), (self._metrics_loop, "metrics"),
                             (self._veth_loop, "veths")):  # fmt: skip
            threading.Thread(target=target, name=f"dashboard-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._veth_event.set()
        for inf in self.informers.values():
            inf.stop()

    def changed(self) -> None:
        self._dirty.set()

    # -- subscribers (asyncio side) -------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[State]:
        q: asyncio.Queue[State] = asyncio.Queue(maxsize=1)
        with self._lock:
            self._subs.add((asyncio.get_running_loop(), q))
            if self.state is not None:
                q.put_nowait(self.state)
        return q

    def unsubscribe(self, q: asyncio.Queue[State]) -> None:
        with self._lock:
            self._subs = {s for s in self._subs if s[1] is not q}

    @staticmethod
    def _offer(q: asyncio.Queue[State], st: State) -> None:
        # only the newest state matters: a slow page skips intermediate ones
        while not q.empty():
            q.get_nowait()
        q.put_nowait(st)

    def _publish(self, st: State) -> None:
        with self._lock:
            self.state = st
            subs = list(self._subs)
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(self._offer, q, st)
            except RuntimeError:  # that page's loop is gone
                self.unsubscribe(q)

    # -- the render thread --------------------------------------------------------------------------
    def snapshot(self) -> graph.Snapshot:
        inf = self.informers
        pods = inf["pods"].list()
        veths: dict[str, str] = {}
        with self._lock:
            uids = {str(p["metadata"].get("uid", "")) for p in pods}
            self._veths = {u: v for u, v in self._veths.items() if u in uids}  # forget deleted pods
            for p in pods:
                uid = str(p["metadata"].get("uid", ""))
                if uid in self._veths:
                    veths[graph.key(p)] = self._veths[uid]
                elif (p.get("status") or {}).get("podIP") and not (p.get("spec") or {}).get("hostNetwork"):
                    self._veth_wanted[uid] = p
            if self._veth_wanted:
                self._veth_event.set()
        return graph.Snapshot(inf["nodes"].list(), pods, inf["services"].list(), inf["slices"].list(), veths, self.lab)

    def render_once(self) -> State:
        started = time.monotonic()
        snap = self.snapshot()
        error = ""
        try:
            svg = graph.svg_element(graph.render(graph.to_dot(graph.build(snap))))
        except graph.GraphError as exc:
            svg, error = "", str(exc)
        node_use, pod_use, why = self._metrics
        t = tables(snap, node_use, pod_use, event_rows(self.informers["events"].list()))
        self._version += 1
        self.render_seconds = time.monotonic() - started
        return State(self._version, svg, t["nodes"], t["pods"], t["services"], t["events"], why, error)

    def _render_loop(self) -> None:
        for inf in self.informers.values():
            inf.wait_for_sync(30)
        self._dirty.set()
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            time.sleep(DEBOUNCE)  # coalesce a burst of watch events into one redraw
            self._dirty.clear()
            try:
                self._publish(self.render_once())
            except Exception:  # a bad object must not kill the view: log it, keep the last state
                log.exception("dashboard: rendering the cluster failed")

    # -- side threads ---------------------------------------------------------------------------------
    def _veth_loop(self) -> None:
        while not self._stop.is_set():
            self._veth_event.wait()
            self._veth_event.clear()
            with self._lock:
                wanted, self._veth_wanted = self._veth_wanted, {}
            found = False
            for uid, pod in wanted.items():
                if self.veth_of is None or self._stop.is_set():
                    continue
                veth = self.veth_of(pod)  # subprocesses: outside the lock
                if veth:
                    with self._lock:
                        self._veths[uid] = veth
                    found = True
            if found:
                self.changed()

    def read_metrics(self) -> tuple[dict[str, Obj], dict[str, Obj], str]:
        """NodeMetrics and PodMetrics through the API (aggregated), or why they are not there."""
        try:
            nodes = self.client.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes", timeout=5)
            pods = self.client.request("GET", "/apis/metrics.k8s.io/v1beta1/pods", timeout=5)
        except (errors.ApiError, httpx.HTTPError, OSError, ValueError) as exc:
            log.debug("metrics.k8s.io: %s", exc)
            return {}, {}, "metrics not available"
        node_use = {i["metadata"]["name"]: i.get("usage", {}) for i in (nodes or {}).get("items", [])}
        pod_use: dict[str, Obj] = {}
        for i in (pods or {}).get("items", []):
            total: dict[str, str] = {}
            for c in i.get("containers", []):
                for k, v in (c.get("usage") or {}).items():
                    total[k] = f"{total[k]} + {v}" if k in total else str(v)
            pod_use[graph.key(i)] = total
        return node_use, pod_use, ""

    def _metrics_loop(self) -> None:
        while not self._stop.is_set():
            m = self.read_metrics()
            if m != self._metrics:
                self._metrics = m
                self.changed()
            self._stop.wait(METRICS_PERIOD)
