"""Server-side apply benchmark: the cost of an apply beside a merge patch of the same object.

Issue 15's goal: server-side apply costs at most 2× a merge patch per write, measured in the same
run. Both write the same change to the same kind of object (a Deployment with two containers,
ports and env — the list-map keys SSA tracks): ``spec.replicas`` and one container's image flip
every write, so every request is a real write (no no-op short cut).

Ours: the real ``kubelab apiserver`` subprocess (memory store, so the figure is the API server's
own work, not the disk's) over HTTPS with one keep-alive connection; rounds alternate apply and
merge patch so drift on the shared machine colours both alike. Reported: mean and p50/p99 per
write, and the server's CPU time per write (from ``/proc`` via psutil), which is the cost the goal
is about — wall time on a shared 2-core machine includes the client.

A last row prices managedFields on the create hot path in-process: the Update entry of a pod create
(``record_update`` + ``encode``) beside encoding the pod with orjson. Creates of the same shape (a
controller's pods) hit ``managedfields``' memo, as this loop does; a first create of a new shape
walks the object (about 25-50 µs for a defaulted pod on this machine).

Run: ``python -m tests.bench.bench_apply [--writes 300]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from controlplane.api import managedfields as mf
from tests.helpers.apiserver import start_apiserver

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def manifest(name: str, i: int) -> dict[str, Any]:
    container = {
        "name": "web",
        "image": f"nginx:1.{i % 2}",
        "ports": [{"containerPort": 80}, {"containerPort": 443}],
        "env": [{"name": f"E{j}", "value": str(j)} for j in range(5)],
    }
    sidecar = {"name": "log", "image": "busybox", "args": ["sh", "-c", "tail -f /dev/null"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"}},
        "spec": {
            "replicas": 1 + i % 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container, sidecar]}},
        },
    }


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_http(writes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_apiserver(Path(tmp), store="memory")
        try:
            assert srv.proc is not None
            proc = psutil.Process(srv.proc.pid)
            with srv.http() as http:
                for name in ("apply", "merge"):
                    r = http.post(DEPLOY, json=manifest(name, 0), params={"fieldManager": "bench"})
                    assert r.status_code == 201, r.text
                lat: dict[str, list[float]] = {"apply": [], "merge": []}
                cpu: dict[str, float] = {"apply": 0.0, "merge": 0.0}
                for i in range(1, writes + 1):
                    for kind in ("apply", "merge") if i % 2 else ("merge", "apply"):
                        body = manifest(kind, i)
                        if kind == "apply":
                            headers = {"Content-Type": "application/apply-patch+yaml"}
                            params = {"fieldManager": "bench", "force": "true"}
                        else:
                            body = {"spec": body["spec"]}
                            headers = {"Content-Type": "application/merge-patch+json"}
                            params = {"fieldManager": "bench"}
                        content = json.dumps(body)
                        c0 = sum(proc.cpu_times()[:2])
                        t0 = time.perf_counter()
                        r = http.patch(f"{DEPLOY}/{kind}", content=content, headers=headers, params=params)
                        lat[kind].append(time.perf_counter() - t0)
                        cpu[kind] += sum(proc.cpu_times()[:2]) - c0
                        assert r.status_code == 200, r.text
        finally:
            srv.stop()
    print(f"\n{writes} writes each, one keep-alive HTTPS connection, memory store, rounds alternating\n")
    print("| write | mean ms | p50 ms | p99 ms | server CPU ms/write |")
    print("|---|---|---|---|---|")
    for kind, label in (("merge", "merge patch"), ("apply", "server-side apply")):
        xs = [x * 1000 for x in lat[kind]]
        print(
            f"| {label} | {statistics.fmean(xs):.2f} | {_pct(xs, 0.5):.2f} | {_pct(xs, 0.99):.2f} "
            f"| {cpu[kind] * 1000 / writes:.2f} |"
        )
    ratio_wall = statistics.fmean(lat["apply"]) / statistics.fmean(lat["merge"])
    ratio_cpu = cpu["apply"] / cpu["merge"] if cpu["merge"] else float("nan")
    print(f"\napply / merge patch: {ratio_wall:.2f}× wall, {ratio_cpu:.2f}× server CPU (goal ≤ 2×)")


def bench_create_path(n: int = 2000) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
        },
        "status": {"phase": "Pending"},
    }
    t0 = time.perf_counter()
    for _ in range(n):
        orjson.dumps(pod)
    enc = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        mf.encode(mf.record_update([], None, copy.copy(pod), manager="kubectl-run", api_version="v1"))
    rec = (time.perf_counter() - t0) / n
    print("\n| create hot path (in-process) | µs per pod |")
    print("|---|---|")
    print(f"| orjson encode of the pod | {enc * 1e6:.1f} |")
    print(f"| managedFields Update entry (field set + encode, memo hit) | {rec * 1e6:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=300)
    args = ap.parse_args()
    bench_http(args.writes)
    bench_create_path()


if __name__ == "__main__":
    main()
