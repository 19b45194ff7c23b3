"""The metrics server's memory: the latest two points per node and container, and the rates from them.

Role (pure; no I/O): turn a kubelet's ``/metrics/resource`` text into points, keep the last two per
object, and render ``metrics.k8s.io/v1beta1`` NodeMetrics and PodMetrics the way metrics-server does
(``sigs.k8s.io/metrics-server/pkg/storage``): CPU is the rate of the cumulative counter between the
two points — ``(cpu₂ − cpu₁) / (t₂ − t₁)`` in nanocores — with ``timestamp`` the newer point's time
and ``window`` their distance; memory is the newer working set. An object with a single point, or
whose counter went down (a restarted container), has no rate yet and is left out, as metrics-server
does; a pod is served only when every one of its containers has a rate.

Quantities are written in Kubernetes' canonical form: CPU as ``<n>n``/``<u>u``/``<m>m``/cores, memory in
the largest binary suffix that divides it exactly (``36056Ki``), as ``resource.Quantity`` prints them.

Concurrency: ``MetricsStore`` is written by the scraper thread and read by request threads; one lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Obj = dict[str, Any]


@dataclass(frozen=True)
class Point:
    """One sample: cumulative CPU core-seconds and working-set bytes at ``time`` (epoch seconds)."""

    time: float
    cpu: float  # core-seconds, cumulative
    memory: float  # bytes
    mem_time: float = 0.0
    start_time: float = 0.0  # container start (resets the counter): a changed start is a new series


@dataclass
class NodeBatch:
    """What one scrape of one kubelet yields: the node's point and each container's, by (ns, pod, name)."""

    node: Point | None
    containers: dict[tuple[str, str, str], Point]


def parse_resource_metrics(text: str, scrape_time: float) -> NodeBatch:
    """Points from kubelet's ``/metrics/resource`` text (sample timestamps, else ``scrape_time``)."""
    node_cpu: tuple[float, float] | None = None
    node_mem: tuple[float, float] | None = None
    cpu: dict[tuple[str, str, str], tuple[float, float]] = {}
    mem: dict[tuple[str, str, str], tuple[float, float]] = {}
    start: dict[tuple[str, str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            ts = float(s.timestamp) if s.timestamp is not None else scrape_time
            if s.name == "node_cpu_usage_seconds_total":
                node_cpu = (ts, s.value)
            elif s.name == "node_memory_working_set_bytes":
                node_mem = (ts, s.value)
            elif s.name.startswith("container_"):
                key = (s.labels.get("namespace", ""), s.labels.get("pod", ""), s.labels.get("container", ""))
                if s.name == "container_cpu_usage_seconds_total":
                    cpu[key] = (ts, s.value)
                elif s.name == "container_memory_working_set_bytes":
                    mem[key] = (ts, s.value)
                elif s.name == "container_start_time_seconds":
                    start[key] = s.value
    node = None
    if node_cpu is not None and node_mem is not None:
        node = Point(node_cpu[0], node_cpu[1], node_mem[1], node_mem[0])
    containers = {k: Point(cpu[k][0], cpu[k][1], mem[k][1], mem[k][0], start.get(k, 0.0)) for k in cpu if k in mem}
    return NodeBatch(node, containers)


def rate(prev: Point, cur: Point) -> float | None:
    """CPU cores between two points; None when there is no forward time or the counter reset."""
    if cur.time <= prev.time or cur.cpu < prev.cpu or cur.start_time != prev.start_time:
        return None
    return (cur.cpu - prev.cpu) / (cur.time - prev.time)


def cpu_quantity(cores: float) -> str:
    """Nanocores in canonical Quantity form: ``2410117n``, ``12u``, ``250m``, ``1``."""
    n = round(cores * 1e9)
    for div, suffix in ((10**9, ""), (10**6, "m"), (10**3, "u")):
        if n % div == 0:
            return f"{n // div}{suffix}"
    return f"{n}n"


def memory_quantity(b: float) -> str:
    """Bytes in canonical BinarySI form: the largest of Ei…Ki that divides exactly, else bytes."""
    n = int(b)
    if n == 0:
        return "0"
    for power, suffix in ((6, "Ei"), (5, "Pi"), (4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")):
        if n % (1024**power) == 0:
            return f"{n // 1024**power}{suffix}"
    return str(n)


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(seconds: float) -> str:
    """A Go ``metav1.Duration`` string: ``5s``, ``4.997s``, ``1m0s``."""
    ms = round(seconds * 1000)
    mins, rest = divmod(ms, 60_000)
    secs = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:g}"
    return f"{mins}m{secs}s" if mins else f"{secs}s"


class MetricsStore:
    """Last two points per node and per container; the current pods of each node."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, tuple[Point | None, Point]] = {}
        self._containers: dict[tuple[str, str, str], tuple[Point | None, Point]] = {}
        self._pods_of_node: dict[str, set[tuple[str, str]]] = {}

    def store(self, node: str, batch: NodeBatch) -> None:
        with self._lock:
            if batch.node is not None:
                old = self._nodes.get(node)
                if old is None or batch.node.time > old[1].time:
                    self._nodes[node] = (old[1] if old else None, batch.node)
            pods = {(ns, pod) for ns, pod, _ in batch.containers}
            for key in [k for k in self._containers if (k[0], k[1]) in self._pods_of_node.get(node, set())]:
                if key not in batch.containers:
                    del self._containers[key]  # the container went away
            for key, p in batch.containers.items():
                old = self._containers.get(key)
                if old is None or p.time > old[1].time:
                    self._containers[key] = (old[1] if old else None, p)
            self._pods_of_node[node] = pods

    def forget_nodes_except(self, names: set[str]) -> None:
        with self._lock:
            for n in [n for n in self._nodes if n not in names]:
                del self._nodes[n]
            for n in [n for n in self._pods_of_node if n not in names]:
                for key in [k for k in self._containers if (k[0], k[1]) in self._pods_of_node[n]]:
                    del self._containers[key]
                del self._pods_of_node[n]

    def node_metrics(self, node: Obj, now: float) -> Obj | None:
        name = node["metadata"]["name"]
        with self._lock:
            pts = self._nodes.get(name)
        if pts is None or pts[0] is None:
            return None
        r = rate(pts[0], pts[1])
        if r is None:
            return None
        return {
            "kind": "NodeMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": name,
                "creationTimestamp": rfc3339(now),
                "labels": dict(node["metadata"].get("labels") or {}),
            },
            "timestamp": rfc3339(pts[1].time),
            "window": window(pts[1].time - pts[0].time),
            "usage": {"cpu": cpu_quantity(r), "memory": memory_quantity(pts[1].memory)},
        }

    def pod_metrics(self, pod: Obj, now: float) -> Obj | None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        with self._lock:
            found = sorted((k[2], v) for k, v in self._containers.items() if k[0] == ns and k[1] == name)
        if not found:
            return None
        containers = []
        newest: Point | None = None
        win = 0.0
        for cname, (prev, cur) in found:
            r = rate(prev, cur) if prev is not None else None
            if r is None or prev is None:
                return None  # metrics-server serves a pod only when all its containers have a rate
            containers.append({"name": cname, "usage": {"cpu": cpu_quantity(r), "memory": memory_quantity(cur.memory)}})
            if newest is None or cur.time > newest.time:
                newest, win = cur, cur.time - prev.time
        assert newest is not None
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": rfc3339(now),
                "labels": dict(meta.get("labels") or {}),
            },
            "timestamp": rfc3339(newest.time),
            "window": window(win),
            "containers": containers,
        }
