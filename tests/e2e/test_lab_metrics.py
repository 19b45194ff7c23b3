"""Resource metrics in the lab (issue 13): ``kubectl top`` through the aggregation layer, checked against
the cgroup files themselves.

One lab (2 workers) with the demo app, a CPU burner (busybox ``while :; do :; done``) and a pod that
holds 50 MiB in its container's ``/dev/shm`` tmpfs (charged to its memory cgroup; noded's emptyDir
has no ``medium: Memory`` yet). The test reads the same cgroup files noded does: CPU from
``cpuacct.usage`` (v1; ``cpu.stat`` usage_usec on v2) sampled by a thread every 0.1 s, so the rate the metrics API
reports for its window can be compared with what the kernel counted over that window (±20%); memory
as usage minus inactive file (±20%). Lab brought up and down by the module fixture (run under
``flock /tmp/kubelab-lab.lock``).
"""

from __future__ import annotations

import glob
import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_lab import kubectl, kubectl_json, kubelab, lab
from tests.helpers.wait import wait_for

CG = Path("/sys/fs/cgroup")
V2 = (CG / "cgroup.controllers").exists()
MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: cpu-burner, labels: {app: burner}}
spec:
  containers:
  - name: burn
    image: 192.168.56.1:5000/library/busybox
    command: ["sh", "-c", "while :; do :; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: mem-holder, labels: {app: mem}}
spec:
  containers:
  - name: hold
    image: 192.168.56.1:5000/library/busybox
    command: ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=50 && exec sleep 3600"]
"""


@pytest.fixture(scope="module")
def lab2() -> Iterator[dict[str, str]]:
    yield from lab("--workers", "2")


def cgroup_dir(pod: str, container: str, controller: str) -> Path:
    pattern = f"kubelab/*/default_{pod}_*_{container}_*"
    found = glob.glob(str(CG / pattern) if V2 else str(CG / controller / pattern))
    assert len(found) == 1, found
    return Path(found[0])


def cpu_ns(d: Path) -> int:
    if V2:
        stat = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) * 1000
    return int((d / "cpuacct.usage").read_text())


def working_set(d: Path) -> int:
    stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
    usage = int((d / ("memory.current" if V2 else "memory.usage_in_bytes")).read_text())
    return max(0, usage - int(stat["inactive_file" if V2 else "total_inactive_file"]))


def cores(q: str) -> float:
    """A CPU quantity in cores (``2410117n``, ``250m``, ``1``)."""
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    return float(q[:-1]) * units[q[-1]] if q[-1] in units else float(q)


def mem_bytes(q: str) -> float:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return float(q[:-2]) * units[q[-2:]] if q[-2:] in units else float(q)


def duration(w: str) -> float:
    m, _, s = w.rpartition("m")
    return float(m or 0) * 60 + float(s.rstrip("s"))


def pod_metrics(name: str) -> dict[str, Any] | None:
    try:
        out = kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{name}")
    except AssertionError:
        return None
    obj: dict[str, Any] = json.loads(out)
    return obj


def kubelet_get(ip: str, path: str, parse: bool = True) -> Any:
    ctx = ssl.create_default_context(cafile="/var/lib/kubelab/pki/ca.crt")
    ctx.load_cert_chain("/var/lib/kubelab/pki/admin.crt", "/var/lib/kubelab/pki/admin.key")
    with urllib.request.urlopen(f"https://{ip}:10250{path}", context=ctx, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if parse else body


def top_rows(*args: str) -> dict[str, list[str]]:
    lines = kubectl("top", *args).strip().splitlines()[1:]
    return {line.split()[0] if "-A" not in args else line.split()[1]: line.split() for line in lines}


def test_kubectl_top_matches_the_cgroups(lab2: dict[str, str]) -> None:
    demo = kubelab("demo", timeout=400)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    kubectl("apply", "-f", "-", input_text=MANIFEST)
    try:
        _check(lab2)
    finally:
        kubectl("delete", "pod", "cpu-burner", "mem-holder", "--wait=false")


def _check(lab2: dict[str, str]) -> None:
    wait_for(
        lambda: all(
            kubectl_json("get", "pod", p)["status"].get("phase") == "Running" for p in ("cpu-burner", "mem-holder")
        ),
        timeout=120,
        message="the burner and memory pods to run",
    )
    # the aggregator's first availability check may not have run yet (Available "Unknown" at first)
    wait_for(
        lambda: "kube-system/metrics-server   True" in kubectl("get", "apiservices", "v1beta1.metrics.k8s.io"),
        timeout=60,
        interval=1,
        message="the v1beta1.metrics.k8s.io APIService to be Available",
    )

    # kubectl top nodes: both workers, non-zero CPU and memory
    def nodes_ok() -> bool:
        rows = top_rows("nodes")
        return set(rows) >= {"kl-node1", "kl-node2"} and all(
            cores(rows[n][1]) > 0 and mem_bytes(rows[n][3]) > 0 for n in ("kl-node1", "kl-node2")
        )

    wait_for(nodes_ok, timeout=60, interval=1, message="kubectl top nodes to show both workers")
    raw = json.loads(kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"))
    assert {i["metadata"]["name"] for i in raw["items"]} == {"kl-node1", "kl-node2"}, raw

    # kubectl top pods -A: every demo pod with non-zero CPU and memory
    hello = [p["metadata"]["name"] for p in kubectl_json("get", "pods", "-l", "app=hello")["items"]]
    assert len(hello) == 3, hello

    def pods_ok() -> bool:
        # kubectl rounds to 1m and 1Mi (an idle hello pod holds ~550Ki: "0Mi"): non-zero is checked
        # on the API's own quantities, presence on kubectl's table.
        rows = top_rows("pods", "-A")
        if not all(p in rows for p in hello):
            return False
        metrics = [pod_metrics(p) for p in hello]
        return all(
            m is not None
            and all(cores(c["usage"]["cpu"]) > 0 and mem_bytes(c["usage"]["memory"]) > 0 for c in m["containers"])
            for m in metrics
        )

    wait_for(pods_ok, timeout=60, interval=1, message="kubectl top pods -A to show the demo pods")
    # kubelet's Summary API on a worker's kubelet port (any cluster client certificate: the admin's)
    summary = kubelet_get("192.168.56.11", "/stats/summary")
    assert summary["node"]["nodeName"] == "kl-node1" and summary["node"]["cpu"]["usageCoreNanoSeconds"] > 0, summary[
        "node"
    ]
    empty = [
        p["podRef"] for p in summary["pods"] if not (p["podRef"]["namespace"] and p["memory"]["workingSetBytes"] > 0)
    ]
    assert not empty, f"pods without a namespace or a working set in kl-node1's summary: {empty}"
    assert "node_cpu_usage_seconds_total " in kubelet_get("192.168.56.11", "/metrics/resource", parse=False)
    per_container = kubectl("top", "pod", hello[0], "--containers")
    assert per_container.splitlines()[0].split()[:2] == ["POD", "NAME"] and hello[0] in per_container, per_container

    _burner_matches_kernel()
    _memory_holder_matches()


def counter_at(samples: list[tuple[float, int]], t: float) -> float | None:
    """The kernel's cumulative CPU counter at ``t``, interpolated between the sampler's two nearest reads."""
    for (t0, c0), (t1, c1) in pairwise(samples):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
    return None


def kernel_rates(samples: list[tuple[float, int]], end: float, win: float) -> list[float] | None:
    """The kernel's CPU rate (cores) over every window the API's numbers can stand for.

    The API's ``timestamp`` is cut to whole seconds (as ``metav1.Time`` is), so the scrape that ended the
    window happened somewhere in ``[end, end + 1)``; the window itself is exact. Each candidate end,
    20 ms apart, gives the kernel's own rate over ``[e - win, e]``. None while the samples do not cover them.
    """
    rates = []
    for i in range(50):
        e = end + i * 0.02
        b, a = counter_at(samples, e - win), counter_at(samples, e)
        if a is None or b is None:
            return None
        rates.append((a - b) / 1e9 / win)
    return rates


def _burner_matches_kernel() -> None:
    # the CPU burner: what the metrics API says for its window against the kernel's counter then
    d = cgroup_dir("cpu-burner", "burn", "cpuacct")
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), cpu_ns(d)))
            stop.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    started = time.time()
    try:

        def measured() -> tuple[float, list[float]] | None:
            m = pod_metrics("cpu-burner")
            if m is None:
                return None
            end = datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00")).timestamp()
            win = duration(m["window"])
            if end - win < started + 0.5:  # only windows this sampler saw whole
                return None
            rates = kernel_rates(list(samples), end, win)
            return (cores(m["containers"][0]["usage"]["cpu"]), rates) if rates else None

        api_cores, rates = wait_for(measured, timeout=40, interval=0.5, message="two scrapes of the burner")
    finally:
        stop.set()
        t.join(timeout=5)
    # ~1 core on an idle machine; on a shared 2-core machine it gets what the scheduler leaves it (and
    # the kubectl calls here take their share), so the check is the API against the kernel's own count
    # over the same window, wherever in its timestamp's second that window ended.
    low, high = min(rates), max(rates)
    print(f"cpu-burner: metrics API {api_cores:.3f} cores, cgroup {low:.3f}–{high:.3f} cores")
    assert high > 0.05, f"the burner got only {high:.2f} cores"
    assert 0.8 * low <= api_cores <= 1.2 * high, (
        f"the metrics API says {api_cores:.3f} cores; the kernel counted {low:.3f}–{high:.3f} over that window"
    )


def _memory_holder_matches() -> None:
    # the memory holder: 50 MiB in its cgroup, as the API reports it
    md = cgroup_dir("mem-holder", "hold", "memory")
    wait_for(lambda: working_set(md) >= 50 << 20, timeout=30, message="the 50 MiB to be written")

    def memory_close() -> bool:
        m = pod_metrics("mem-holder")
        if m is None:
            return False
        api = mem_bytes(m["containers"][0]["usage"]["memory"])
        return abs(api - working_set(md)) <= 0.2 * working_set(md)

    wait_for(memory_close, timeout=30, interval=0.5, message="the memory holder's working set in the API")
    top = kubectl("top", "pod", "mem-holder", "--containers").splitlines()[1].split()
    assert top[1] == "hold" and 0.8 * 50 <= mem_bytes(top[3]) / (1 << 20) <= 1.2 * 60, top
