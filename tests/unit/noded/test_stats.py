"""noded/stats.py: cgroup parsing (fixture files, v2 and v1), CPU-rate math, Summary and /metrics/resource."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noded.runtime.interface import ContainerState, ContainerStatus, SandboxState, SandboxStatus
from noded.stats import (
    CgroupSample,
    FakeCgroupReader,
    FsCgroupReader,
    HostSample,
    StatsProvider,
    nano_cores,
    parse_flat_keyed,
    render_resource_metrics,
)

FIX = Path(__file__).parent / "fixtures" / "cgroup"


def test_v2_fixture_reads_cpu_in_ns_and_working_set_minus_inactive_file() -> None:
    r = FsCgroupReader(FIX / "v2", clock=lambda: 100.0)
    assert r.v2
    s = r.read("/pod")
    assert s is not None
    assert s.cpu_usage_ns == 2_500_000_000  # usage_usec × 1000
    assert s.memory_usage == 60817408
    assert s.working_set == 60817408 - 6291456  # memory.current − inactive_file
    assert s.rss == 52428800  # anon
    assert (s.page_faults, s.major_page_faults) == (13000, 7)


def test_v1_fixture_reads_cpuacct_and_total_inactive_file() -> None:
    r = FsCgroupReader(FIX / "v1", clock=lambda: 100.0)
    assert not r.v2
    s = r.read("pod")
    assert s is not None
    assert s.cpu_usage_ns == 1234567890
    assert s.memory_usage == 58720256
    assert s.working_set == 58720256 - 4194304
    assert s.rss == 50331648


def test_missing_cgroup_is_none(tmp_path: Path) -> None:
    assert FsCgroupReader(FIX / "v2").read("/gone") is None
    assert FsCgroupReader(FIX / "v1").read("/gone") is None


def test_working_set_never_negative(tmp_path: Path) -> None:
    d = tmp_path / "cg"
    d.mkdir()
    (tmp_path / "cgroup.controllers").write_text("")
    (d / "cpu.stat").write_text("usage_usec 1\n")
    (d / "memory.current").write_text("100\n")
    (d / "memory.stat").write_text("inactive_file 4096\n")
    s = FsCgroupReader(tmp_path).read("cg")
    assert s is not None and s.working_set == 0


def test_parse_flat_keyed_skips_garbage_and_reads_meminfo() -> None:
    assert parse_flat_keyed("a 1\nbad\nb x\nInactive(file):  12 kB\n") == {"a": 1, "Inactive(file)": 12}


def test_nano_cores() -> None:
    assert nano_cores(None, (1.0, 5)) is None
    assert nano_cores((10.0, 0), (15.0, 5_000_000_000)) == 1_000_000_000  # 5 s of CPU in 5 s = 1 core
    assert nano_cores((10.0, 0), (12.0, 500_000_000)) == 250_000_000
    assert nano_cores((10.0, 9), (15.0, 5)) is None  # counter reset
    assert nano_cores((10.0, 0), (10.0, 5)) is None  # no time passed


@dataclass
class _Runtime:
    sandboxes: list[SandboxStatus] = field(default_factory=list)
    containers: list[ContainerStatus] = field(default_factory=list)

    def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]:
        return self.sandboxes

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        return self.containers


class _Host:
    def __init__(self) -> None:
        self.t = 1000.0
        self.cpu = 50 * 10**9

    def read(self) -> HostSample:
        return HostSample(self.t, self.cpu, memory_usage=4 << 30, working_set=3 << 30, available=1 << 30)


def _setup() -> tuple[StatsProvider, FakeCgroupReader, _Host]:
    sb = SandboxStatus("sb1", "web", "default", "uid-1", 0, SandboxState.READY, 900.0, "/var/run/netns/x")
    gone = SandboxStatus("sb2", "old", "default", "uid-2", 0, SandboxState.NOTREADY, 900.0, "")
    app = ContainerStatus("sb1_app_0", "sb1", "app", 0, ContainerState.RUNNING, 901.0, started_at=902.0)
    dead = ContainerStatus("sb1_side_0", "sb1", "side", 0, ContainerState.EXITED, 901.0)
    cg = FakeCgroupReader()
    host = _Host()
    p = StatsProvider("kl-node1", _Runtime([sb, gone], [app, dead]), cg, host, lambda i: f"/kubelab/h/{i}")
    return p, cg, host


def _sample(t: float, cpu: int, ws: int) -> CgroupSample:
    return CgroupSample(time=t, cpu_usage_ns=cpu, memory_usage=ws + 100, working_set=ws, rss=ws)


def test_summary_shape_and_rates_between_samples() -> None:
    p, cg, host = _setup()
    cg.samples["/kubelab/h/sb1"] = _sample(1000.0, 10**6, 1000)
    cg.samples["/kubelab/h/sb1_app_0"] = _sample(1000.0, 2 * 10**9, 50 << 20)
    first = p.summary()
    assert first["node"]["nodeName"] == "kl-node1"
    assert "usageNanoCores" not in first["node"]["cpu"]  # one sample: no rate yet
    assert [pod["podRef"] for pod in first["pods"]] == [{"name": "web", "namespace": "default", "uid": "uid-1"}]
    pod = first["pods"][0]
    assert [c["name"] for c in pod["containers"]] == ["app"]  # running containers only
    assert pod["memory"]["workingSetBytes"] == 1000 + (50 << 20)  # sandbox + containers
    assert pod["cpu"]["usageCoreNanoSeconds"] == 10**6 + 2 * 10**9

    # 5 s later the app burned 5 s of CPU (1 core), the node 10 s (2 cores).
    host.t, host.cpu = 1005.0, 60 * 10**9
    cg.samples["/kubelab/h/sb1"] = _sample(1005.0, 10**6, 1000)
    cg.samples["/kubelab/h/sb1_app_0"] = _sample(1005.0, 7 * 10**9, 50 << 20)
    s = p.summary()
    assert s["node"]["cpu"]["usageNanoCores"] == 2 * 10**9
    app = s["pods"][0]["containers"][0]
    assert app["cpu"]["usageNanoCores"] == 10**9
    assert app["memory"]["workingSetBytes"] == 50 << 20
    assert s["pods"][0]["cpu"]["usageNanoCores"] == 10**9
    assert s["node"]["memory"] == {
        "time": "1970-01-01T00:16:45.000000Z",
        "availableBytes": 1 << 30,
        "usageBytes": 4 << 30,
        "workingSetBytes": 3 << 30,
    }

    # A request 0.2 s later keeps the rate (a base closer than MIN_RATE_INTERVAL is not used).
    host.t = 1005.2
    assert p.summary()["node"]["cpu"]["usageNanoCores"] == 2 * 10**9


def test_pod_without_cgroups_still_listed_without_figures() -> None:
    p, _cg, _host = _setup()
    pod = p.summary()["pods"][0]
    assert "cpu" not in pod and "memory" not in pod
    assert pod["containers"] == [{"name": "app", "startTime": "1970-01-01T00:15:02.000000Z"}]


def test_render_resource_metrics_names_labels_and_timestamps() -> None:
    p, cg, _host = _setup()
    cg.samples["/kubelab/h/sb1"] = _sample(1000.5, 0, 0)
    cg.samples["/kubelab/h/sb1_app_0"] = _sample(1000.5, 1_500_000_000, 1024)
    text = render_resource_metrics(p.summary())
    lines = text.splitlines()
    assert "# TYPE container_cpu_usage_seconds_total counter" in lines
    assert 'container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 1.5 1000500' in lines
    assert 'container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 1024 1000500' in lines
    assert 'pod_cpu_usage_seconds_total{namespace="default",pod="web"} 1.5 1000500' in lines
    assert 'pod_memory_working_set_bytes{namespace="default",pod="web"} 1024 1000500' in lines
    assert "node_cpu_usage_seconds_total 50 1000000" in lines
    assert f"node_memory_working_set_bytes {3 << 30} 1000000" in lines
    assert 'container_start_time_seconds{container="app",namespace="default",pod="web"} 902' in lines
    assert "resource_scrape_error 0" in lines and "scrape_error 0" in lines
    assert (
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds" in lines
    )


def test_render_failed_scrape_reports_error_only() -> None:
    assert render_resource_metrics(None).splitlines()[-1] == "scrape_error 1"
    assert "resource_scrape_error 1" in render_resource_metrics(None)
    assert "node_cpu" not in render_resource_metrics(None)


def test_label_values_are_escaped() -> None:
    s = {"node": {}, "pods": [{"podRef": {"name": 'a"b', "namespace": "n"}, "containers": [], "memory": {
        "time": "1970-01-01T00:00:01Z", "workingSetBytes": 1}}]}  # fmt: skip
    assert 'pod_memory_working_set_bytes{namespace="n",pod="a\\"b"} 1 1000' in render_resource_metrics(s)


class _BrokenRuntime:
    cgroup_parent = "/kubelab/x"

    def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]:
        raise OSError("runc state: no such file")

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        raise OSError("runc state: no such file")


class _NoPods:
    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def list(self) -> list[dict[str, Any]]:
        return []


def test_serve_reports_a_failed_collection_without_dying() -> None:
    from noded import stats
    from noded.server import KubeletHost

    node = KubeletHost(node_name="n", pods=_NoPods(), runtime=_BrokenRuntime())  # type: ignore[arg-type]
    code, body, ctype = stats.serve(node, "/metrics/resource")
    assert code == 200 and ctype.startswith("text/plain") and b"resource_scrape_error 1" in body
    code, body, ctype = stats.serve(node, "/stats/summary")
    assert code == 500 and b'"reason": "InternalError"' in body and b"runc state" in body
