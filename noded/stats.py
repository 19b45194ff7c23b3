"""Resource statistics of this node and its pods: kubelet's ``/stats/summary`` and ``/metrics/resource``.

Role: read each pod's and container's cgroup statistics and the node's, and render them the two
ways kubelet serves them — the Summary API JSON (``k8s.io/kubelet/pkg/apis/stats/v1alpha1``) and the
Prometheus text of kubelet's resource metrics collector
(``pkg/kubelet/metrics/collectors/resource_metrics.go``: the same metric names, labels, HELP
strings, stability tags and millisecond sample timestamps). The metrics server scrapes the latter.

What is measured, as cadvisor does it:
- CPU: the cgroup's cumulative usage (cgroup v2 ``cpu.stat`` ``usage_usec`` × 1000; on a v1/hybrid
  host such as this lab machine ``cpuacct.usage``, already in ns) is ``usageCoreNanoSeconds``;
  ``usageNanoCores`` is the rate between two samples at least ``MIN_RATE_INTERVAL`` apart (cadvisor
  samples every ~10 s in housekeeping; we sample on demand and keep the previous sample per cgroup).
- memory: ``usageBytes`` is ``memory.current`` (v1: ``memory.usage_in_bytes``); the working set is
  usage minus ``inactive_file`` (v1: ``total_inactive_file``) from ``memory.stat``, floored at 0 —
  what ``kubectl top`` shows and what eviction uses. ``rssBytes`` is ``anon`` (v1: ``total_rss``).
- a pod: kubelab has no pod-level cgroup (each container, and the pause sandbox, is a sibling cgroup
  under noded's parent ``/kubelab/<hash8>``), so a pod's figures are the sums of its sandbox's and its
  running containers' — what a pod cgroup would hold, except that a restarted container's past CPU
  time is not carried (cadvisor's pod cgroup would keep it).
- the node: psutil's CPU times (user+nice+system+irq+softirq+steal) and ``/proc/meminfo``
  (usage = total − free; working set = usage − ``Inactive(file)``), as for the root cgroup. In the
  one-machine lab every node is a namespace on one host, so each reports the host.

Layout: pure parsers and renderers; a ``CgroupReader`` (files under a root, so tests and the bench
use fixture directories) and a ``HostReader`` (psutil) as the two side-effect seams, each with a
fake. Concurrency: ``StatsProvider`` is called from the kubelet API's request threads; its
previous-sample table is guarded by a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from noded.runtime.interface import ContainerRuntime, ContainerState, SandboxState

MIN_RATE_INTERVAL = 1.0  # seconds between the two samples a usageNanoCores is computed from

Obj = dict[str, Any]


# ---- parsing (pure) ------------------------------------------------------------------------


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.stat``, ``/proc/meminfo`` without the ``kB``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


@dataclass(frozen=True)
class CgroupSample:
    """One cgroup's figures at one moment (``None``: the file was not there)."""

    time: float
    cpu_usage_ns: int | None
    memory_usage: int | None = None
    working_set: int | None = None
    rss: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None


def sample_v2(now: float, cpu_stat: str | None, memory_current: str | None, memory_stat: str | None) -> CgroupSample:
    """A cgroup v2 sample from the text of ``cpu.stat``, ``memory.current`` and ``memory.stat``."""
    cpu = parse_flat_keyed(cpu_stat).get("usage_usec") if cpu_stat is not None else None
    return _memory(now, cpu * 1000 if cpu is not None else None, memory_current, memory_stat, v1=False)


def sample_v1(
    now: float, cpuacct_usage: str | None, usage_in_bytes: str | None, memory_stat: str | None
) -> CgroupSample:
    """A cgroup v1 sample from ``cpuacct.usage`` (ns), ``memory.usage_in_bytes`` and ``memory.stat``."""
    cpu = int(cpuacct_usage.strip()) if cpuacct_usage and cpuacct_usage.strip().isdigit() else None
    return _memory(now, cpu, usage_in_bytes, memory_stat, v1=True)


def _memory(now: float, cpu: int | None, usage_text: str | None, stat_text: str | None, v1: bool) -> CgroupSample:
    usage = int(usage_text.strip()) if usage_text and usage_text.strip().isdigit() else None
    stat = parse_flat_keyed(stat_text) if stat_text is not None else {}
    prefix = "total_" if v1 else ""
    working_set = None
    if usage is not None:
        # cadvisor setMemoryStats: workingSet = usage - inactive_file, never below zero.
        working_set = max(0, usage - stat.get(prefix + "inactive_file", 0))
    return CgroupSample(
        time=now,
        cpu_usage_ns=cpu,
        memory_usage=usage,
        working_set=working_set,
        rss=stat.get(prefix + ("rss" if v1 else "anon")),
        page_faults=stat.get(prefix + "pgfault"),
        major_page_faults=stat.get(prefix + "pgmajfault"),
    )


def nano_cores(prev: tuple[float, int] | None, cur: tuple[float, int]) -> int | None:
    """CPU rate in nanocores between two (time, cumulative ns) samples; None without a usable pair."""
    if prev is None:
        return None
    dt = cur[0] - prev[0]
    du = cur[1] - prev[1]
    if dt <= 0 or du < 0:  # clock went back, or the counter reset (the cgroup was recreated)
        return None
    return int(du / dt)


# ---- side-effect seams ---------------------------------------------------------------------


class CgroupReader(Protocol):
    def read(self, path: str) -> CgroupSample | None:
        """The sample of the cgroup at ``path`` (e.g. ``/kubelab/ab12cd34/<id>``), None if it is gone."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class FsCgroupReader:
    """Reads cgroupfs under ``root``: unified (v2) when ``root/cgroup.controllers`` exists, else v1."""

    def __init__(self, root: str | Path = "/sys/fs/cgroup", clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.v2 = (self.root / "cgroup.controllers").exists()
        self.clock = clock

    def read(self, path: str) -> CgroupSample | None:
        rel = path.lstrip("/")
        now = self.clock()
        if self.v2:
            d = self.root / rel
            cpu = _read(d / "cpu.stat")
            if cpu is None:
                return None
            return sample_v2(now, cpu, _read(d / "memory.current"), _read(d / "memory.stat"))
        cpu = _read(self.root / "cpuacct" / rel / "cpuacct.usage")
        mem = self.root / "memory" / rel
        if cpu is None:
            return None
        return sample_v1(now, cpu, _read(mem / "memory.usage_in_bytes"), _read(mem / "memory.stat"))


class FakeCgroupReader:
    """In-memory cgroups for unit tests: ``samples[path] = CgroupSample``."""

    def __init__(self) -> None:
        self.samples: dict[str, CgroupSample] = {}

    def read(self, path: str) -> CgroupSample | None:
        return self.samples.get(path)


@dataclass(frozen=True)
class HostSample:
    time: float
    cpu_usage_ns: int
    memory_usage: int
    working_set: int
    available: int
    rss: int | None = None


class HostReader(Protocol):
    def read(self) -> HostSample: ...


class PsutilHostReader:
    """The node's figures from psutil and ``/proc/meminfo`` (for ``Inactive(file)``)."""

    def read(self) -> HostSample:
        import psutil

        now = time.time()
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        busy += getattr(t, "steal", 0.0)
        vm = psutil.virtual_memory()
        meminfo = parse_flat_keyed(_read(Path("/proc/meminfo")) or "")
        inactive_file = meminfo.get("Inactive(file)", 0) * 1024
        usage = vm.total - vm.free
        return HostSample(
            time=now,
            cpu_usage_ns=int(busy * 1e9),
            memory_usage=usage,
            working_set=max(0, usage - inactive_file),
            available=vm.available,
            rss=meminfo.get("AnonPages", 0) * 1024 or None,
        )


# ---- the provider ----------------------------------------------------------------------------


def rfc3339(t: float) -> str:
    """RFC 3339 with microseconds: kubelet's JSON has whole seconds, but a rate over 5 s scrapes
    needs the sample's real time (kubelet's Prometheus timestamps carry it; ours come from here)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StatsProvider:
    """Builds the Summary from the runtime's sandboxes/containers and the two readers.

    ``runtime`` is the ``ContainerRuntime``; ``cgroup_path(id)`` maps a sandbox or container id to
    its cgroup path (``RuncRuntime``: ``{cgroup_parent}/{id}``).
    """

    def __init__(
        self,
        node_name: str,
        runtime: Any,
        cgroups: CgroupReader,
        host: HostReader,
        cgroup_path: Callable[[str], str],
    ) -> None:
        self.node_name = node_name
        self.runtime = runtime
        self.cgroups = cgroups
        self.host = host
        self.cgroup_path = cgroup_path
        self._lock = threading.Lock()
        self._prev: dict[str, tuple[float, int]] = {}  # key → (time, cumulative ns) of the rate base
        self._rate: dict[str, int] = {}  # key → the last rate computed

    def _cpu(self, key: str, t: float, usage: int | None) -> Obj | None:
        if usage is None:
            return None
        with self._lock:
            prev = self._prev.get(key)
            if prev is None or t - prev[0] >= MIN_RATE_INTERVAL or usage < prev[1]:
                rate = nano_cores(prev, (t, usage))
                if rate is not None:
                    self._rate[key] = rate
                elif prev is not None:
                    self._rate.pop(key, None)  # counter reset: no rate until the next pair
                self._prev[key] = (t, usage)
            out: Obj = {"time": rfc3339(t), "usageCoreNanoSeconds": usage}
            if key in self._rate:
                out["usageNanoCores"] = self._rate[key]
            return out

    def forget_except(self, keys: Iterable[str]) -> None:
        """Drop the rate state of cgroups no longer listed (containers and pods that went away)."""
        keep = set(keys)
        with self._lock:
            for k in [k for k in self._prev if k not in keep]:
                del self._prev[k]
                self._rate.pop(k, None)

    def summary(self) -> Obj:
        h = self.host.read()
        node: Obj = {
            "nodeName": self.node_name,
            "cpu": self._cpu("node", h.time, h.cpu_usage_ns),
            "memory": _memory_obj(h.time, h.memory_usage, h.working_set, h.rss, available=h.available),
        }
        pods: list[Obj] = []
        seen = ["node"]
        containers_by_sandbox: dict[str, list[Any]] = {}
        for c in self.runtime.list_containers():
            if c.state == ContainerState.RUNNING:
                containers_by_sandbox.setdefault(c.sandbox_id, []).append(c)
        for sb in self.runtime.list_pod_sandboxes():
            if sb.state != SandboxState.READY:
                continue
            pods.append(self._pod(sb, containers_by_sandbox.get(sb.id, []), seen))
        self.forget_except(seen)
        return {"node": node, "pods": pods}

    def _pod(self, sb: Any, containers: list[Any], seen: list[str]) -> Obj:
        latest: dict[str, Any] = {}
        for c in containers:  # one entry per container name: the newest attempt
            if c.name not in latest or c.attempt > latest[c.name].attempt:
                latest[c.name] = c
        entries: list[Obj] = []
        base = self.cgroups.read(self.cgroup_path(sb.id))
        cpu_total = base.cpu_usage_ns if base else None
        mem = [base] if base else []
        t = base.time if base else time.time()
        for name in sorted(latest):
            c = latest[name]
            s = self.cgroups.read(self.cgroup_path(c.id))
            entry: Obj = {"name": name, "startTime": rfc3339(c.started_at or c.created_at)}
            if s is not None:
                seen.append(c.id)
                cpu = self._cpu(c.id, s.time, s.cpu_usage_ns)
                if cpu is not None:
                    entry["cpu"] = cpu
                entry["memory"] = _memory_obj(s.time, s.memory_usage, s.working_set, s.rss, s)
                if s.cpu_usage_ns is not None:
                    cpu_total = (cpu_total or 0) + s.cpu_usage_ns
                mem.append(s)
                t = max(t, s.time)
            entries.append(entry)
        pod: Obj = {
            "podRef": {"name": sb.name, "namespace": sb.namespace, "uid": sb.uid},
            "startTime": rfc3339(sb.created_at),
            "containers": entries,
        }
        key = f"pod/{sb.id}"
        seen.append(key)
        cpu = self._cpu(key, t, cpu_total)
        if cpu is not None:
            pod["cpu"] = cpu
        if mem:
            pod["memory"] = _memory_obj(
                t,
                _sum(s.memory_usage for s in mem),
                _sum(s.working_set for s in mem),
                _sum(s.rss for s in mem),
            )
        return pod


def _sum(values: Iterable[int | None]) -> int | None:
    vals = [v for v in values if v is not None]
    return sum(vals) if vals else None


def _memory_obj(
    t: float,
    usage: int | None,
    working_set: int | None,
    rss: int | None,
    s: CgroupSample | None = None,
    available: int | None = None,
) -> Obj:
    out: Obj = {"time": rfc3339(t)}
    if available is not None:
        out["availableBytes"] = available
    if usage is not None:
        out["usageBytes"] = usage
    if working_set is not None:
        out["workingSetBytes"] = working_set
    if rss is not None:
        out["rssBytes"] = rss
    if s is not None and s.page_faults is not None:
        out["pageFaults"] = s.page_faults
        out["majorPageFaults"] = s.major_page_faults or 0
    return out


# ---- /metrics/resource (pure) ----------------------------------------------------------------

_HELP = {
    "container_cpu_usage_seconds_total": (
        "counter",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    ),
    "container_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "[STABLE] Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the pod in bytes"),
    "resource_scrape_error": ("gauge", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise"),
    "scrape_error": ("gauge", "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise"),
}


def _ms(rfc: str) -> int:
    return round(datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp() * 1000)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def render_resource_metrics(summary: Obj | None) -> str:
    """kubelet's ``/metrics/resource`` text for a Summary (None: the scrape failed → error 1 only)."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: dict[str, str], value: float, ts: str | None) -> None:
        lab = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
        line = f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}"
        samples[name].append(f"{line} {_ms(ts)}" if ts else line)

    if summary is not None:
        node = summary.get("node") or {}
        cpu, mem = node.get("cpu") or {}, node.get("memory") or {}
        if "usageCoreNanoSeconds" in cpu:
            add("node_cpu_usage_seconds_total", {}, cpu["usageCoreNanoSeconds"] / 1e9, cpu["time"])
        if "workingSetBytes" in mem:
            add("node_memory_working_set_bytes", {}, mem["workingSetBytes"], mem["time"])
        for pod in summary.get("pods") or []:
            ref = {"pod": pod["podRef"]["name"], "namespace": pod["podRef"]["namespace"]}
            for c in pod.get("containers") or []:
                labels = {**ref, "container": c["name"]}
                if c.get("startTime"):
                    add("container_start_time_seconds", labels, _ms(c["startTime"]) / 1000, None)
                cc, cm = c.get("cpu") or {}, c.get("memory") or {}
                if "usageCoreNanoSeconds" in cc:
                    add("container_cpu_usage_seconds_total", labels, cc["usageCoreNanoSeconds"] / 1e9, cc["time"])
                if "workingSetBytes" in cm:
                    add("container_memory_working_set_bytes", labels, cm["workingSetBytes"], cm["time"])
            pc, pm = pod.get("cpu") or {}, pod.get("memory") or {}
            if "usageCoreNanoSeconds" in pc:
                add("pod_cpu_usage_seconds_total", ref, pc["usageCoreNanoSeconds"] / 1e9, pc["time"])
            if "workingSetBytes" in pm:
                add("pod_memory_working_set_bytes", ref, pm["workingSetBytes"], pm["time"])
    err = 0 if summary is not None else 1
    add("resource_scrape_error", {}, err, None)
    add("scrape_error", {}, err, None)
    out: list[str] = []
    for name in sorted(samples):
        if samples[name]:
            kind, help_ = _HELP[name]
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples[name]]
    return "\n".join(out) + "\n"


__all__ = [
    "CgroupReader",
    "CgroupSample",
    "FakeCgroupReader",
    "FsCgroupReader",
    "HostReader",
    "HostSample",
    "PsutilHostReader",
    "StatsProvider",
    "nano_cores",
    "parse_flat_keyed",
    "render_resource_metrics",
    "sample_v1",
    "sample_v2",
]


# ---- the kubelet API's hook ------------------------------------------------------------------

class StatsSource(Protocol):
    """What the stats endpoints need of a node (``noded.server.KubeletHost`` has both)."""

    @property
    def node_name(self) -> str: ...

    @property
    def runtime(self) -> ContainerRuntime: ...


_PROVIDERS: dict[int, StatsProvider] = {}
_PROVIDERS_LOCK = threading.Lock()
ROUTES = ("/stats/summary", "/metrics/resource")


def provider_for(node: StatsSource) -> StatsProvider:
    """The one ``StatsProvider`` of a running noded (made on first use: rates need its memory)."""
    with _PROVIDERS_LOCK:
        p = _PROVIDERS.get(id(node))
        if p is None or p.runtime is not node.runtime:
            parent = str(getattr(node.runtime, "cgroup_parent", "/kubelab"))
            p = StatsProvider(
                node.node_name,
                node.runtime,
                FsCgroupReader(),
                PsutilHostReader(),
                lambda cid: f"{parent}/{cid}",
            )
            _PROVIDERS[id(node)] = p
        return p


def serve(node: StatsSource, path: str) -> tuple[int, bytes, str]:
    """Status, body and content type for ``GET /stats/summary`` or ``GET /metrics/resource``.

    A failure to collect is never a dead request thread: the Summary answers a 500 ``Status``,
    the resource metrics answer 200 with ``resource_scrape_error 1`` (as kubelet's collector does).
    """
    import json
    import logging

    try:
        summary: Obj | None = provider_for(node).summary()
    except Exception as e:
        logging.getLogger(__name__).exception("collecting resource stats failed")
        if path == "/stats/summary":
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": f"failed to get node stats: {e}", "reason": "InternalError", "code": 500}  # fmt: skip
            return 500, json.dumps(status).encode(), "application/json"
        summary = None
    if path == "/stats/summary":
        return 200, json.dumps(summary).encode(), "application/json"
    return 200, render_resource_metrics(summary).encode(), "text/plain; version=0.0.4; charset=utf-8"
