"""Controller reaction: Deployment of 100 replicas created → 100 pods bound.

What is measured (the real ``kubelab apiserver`` on the memory store, the real scheduler and the
real controller-manager as separate processes, hollow nodes = Node objects only, no kubelets):

- **deployment → bound**: time from the Deployment's create call until a watch has seen all of
  its pods bound (Deployment controller → ReplicaSet → ReplicaSet controller → 100 pod creates →
  scheduler → bindings). Also split: until all 100 pods *exist*.
- **anchor, direct pods → bound** (same run, same servers): the test client creates the same 100
  pods itself (8 threads), and we time until all are bound. The difference is what the two
  controllers add; the ratio is reported.

For scale, Kubernetes' pod-startup SLO is p99 ≤ 5 s per pod from creation to running
(shared/reference/figures.md) — a per-pod latency on real clusters, not this batch figure.

``--quick``: 2 rounds instead of 5, 50 replicas instead of 100.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from controlplane.api.registry import DEPLOYMENTS, NAMESPACES, PODS
from controlplane.client.informer import Informer
from tests.bench.stats import Summary, fmt_ratio, print_table
from tests.helpers.apiserver import REPO, start_apiserver
from tests.helpers.hollow import HollowNodes

NODES = 20


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


class Watch:
    """Pods of one namespace: when the n-th appeared and when the n-th was bound."""

    def __init__(self, client: Any, ns: str, n: int) -> None:
        self.n = n
        self.seen: set[str] = set()
        self.bound: set[str] = set()
        self.all_created = threading.Event()
        self.all_bound = threading.Event()
        self.created_at = 0.0
        self.bound_at = 0.0
        self.lock = threading.Lock()
        self.inf = Informer(client, PODS, namespace=ns)
        self.inf.add_handler(on_add=self._on, on_update=lambda _o, p: self._on(p))

    def _on(self, p: dict[str, Any]) -> None:
        now = time.monotonic()
        with self.lock:
            name = p["metadata"]["name"]
            self.seen.add(name)
            if (p.get("spec") or {}).get("nodeName"):
                self.bound.add(name)
            if len(self.seen) >= self.n and not self.all_created.is_set():
                self.created_at = now
                self.all_created.set()
            if len(self.bound) >= self.n and not self.all_bound.is_set():
                self.bound_at = now
                self.all_bound.set()

    def __enter__(self) -> Watch:
        self.inf.start()
        self.inf.wait_for_sync(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.inf.stop()


def create(client: Any, res: Any, body: dict[str, Any], ns: str | None = None) -> None:
    """A create, tried twice: a pooled connection the server closed while idle can fail once."""
    for attempt in (0, 1):
        try:
            client.create(res, body, namespace=ns)
            return
        except httpx.HTTPError:
            if attempt:
                raise


def template() -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "bench"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "kubelab/pause", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
            ]
        },
    }


def one_deployment(client: Any, ns: str, replicas: int) -> tuple[float, float]:
    with Watch(client, ns, replicas) as w:
        t0 = time.monotonic()
        create(
            client,
            DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "bench"},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}}, "template": template()},
            },
            ns,
        )
        if not w.all_bound.wait(300):
            raise RuntimeError(f"only {len(w.bound)}/{replicas} pods bound after 300 s")
        return w.created_at - t0, w.bound_at - t0


def direct_pods(client: Any, ns: str, replicas: int) -> tuple[float, float]:
    with Watch(client, ns, replicas) as w:
        t0 = time.monotonic()

        def make(i: int) -> None:
            t = template()
            t["metadata"]["name"] = f"direct-{i}"
            create(client, PODS, {"apiVersion": "v1", "kind": "Pod", **t}, ns)

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(make, range(replicas)))
        if not w.all_bound.wait(300):
            raise RuntimeError(f"only {len(w.bound)}/{replicas} pods bound after 300 s")
        return w.created_at - t0, w.bound_at - t0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.bench_controllers")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds, replicas = (2, 50) if args.quick else (5, 100)
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-ctrl-") as tmp:
        tmp_path = Path(tmp)
        srv = start_apiserver(tmp_path, store="memory")
        procs: list[subprocess.Popen[bytes]] = []
        client = srv.client()
        try:
            HollowNodes(client, heartbeat=None).add_many(NODES, prefix="bench-node-", cpu="32", memory="64Gi")
            procs.append(
                spawn(
                    ["-m", "lab", "scheduler", "--kubeconfig", str(srv.kubeconfig), "--no-leader-elect"],
                    tmp_path / "scheduler.log",
                )
            )
            procs.append(
                spawn(
                    [
                        "-m",
                        "controlplane.controllers",
                        "--kubeconfig",
                        str(srv.kubeconfig),
                        "--no-leader-elect",
                        "--controllers",
                        "replicaset,deployment",
                    ],
                    tmp_path / "controller-manager.log",
                )
            )
            # warm-up: both components listed and watching
            ns0 = "bench-warmup"
            create(client, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns0}})
            one_deployment(client, ns0, 1)
            ours_created, ours_bound, direct_created, direct_bound = [], [], [], []
            for r in range(rounds):
                for kind in ("deploy", "direct"):
                    ns = f"bench-{kind}-{r}"
                    create(client, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                    if kind == "deploy":
                        c, b = one_deployment(client, ns, replicas)
                        ours_created.append(c)
                        ours_bound.append(b)
                    else:
                        c, b = direct_pods(client, ns, replicas)
                        direct_created.append(c)
                        direct_bound.append(b)
        finally:
            for p in procs:
                stop_process(p)
            client.close()
            srv.stop()
    ob, db = Summary.of(ours_bound), Summary.of(direct_bound)
    oc, dc = Summary.of(ours_created), Summary.of(direct_created)
    load = os.getloadavg()[0]
    print_table(
        f"Controller reaction: {replicas} replicas onto {NODES} hollow nodes, {rounds} rounds "
        f"(load average {load:.1f} on {os.cpu_count()} CPUs)",
        [
            "path",
            f"all {replicas} pods exist (median, p10–p90)",
            f"all {replicas} bound (median, p10–p90)",
            "ratio bound (ours / anchor)",
        ],
        [
            [
                "Deployment → ReplicaSet → pods → scheduler (ours)",
                f"{oc.median:.2f} s ({oc.p10:.2f}–{oc.p90:.2f})",
                f"{ob.median:.2f} s ({ob.p10:.2f}–{ob.p90:.2f})",
                fmt_ratio(ob.median, db.median),
            ],
            [
                "anchor: client creates the pods directly (8 threads) → scheduler",
                f"{dc.median:.2f} s ({dc.p10:.2f}–{dc.p90:.2f})",
                f"{db.median:.2f} s ({db.p10:.2f}–{db.p90:.2f})",
                "1.00×",
            ],
        ],
    )
    print(
        "\nReference: Kubernetes pod-startup SLO, p99 ≤ 5 s per pod (creation → running), "
        "shared/reference/figures.md; a per-pod latency on real clusters, not this batch time."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
