"""HA lab benchmark (issue 17): failover gaps, leader takeover, creates through HAProxy, up time and memory.

On one ``kubelab up --control-planes 3 --workers 2`` lab (etcd stacked, TLS), as root:

- **write gap** when the etcd leader's node is stopped (``kubelab node stop``: wire cut, processes
  killed): four clients each create a ConfigMap every 20 ms through the API endpoint (HAProxy at
  192.168.56.10); the gap is the longest pause between two acknowledged writes around the stop (a
  write in flight on the failing node waits out its timeout; the others show when writes resume).
  Anchor: etcd's election timeout (1 s) plus HAProxy's detection (2 checks × 500 ms): 2 s, the
  goal. p50 over ``--runs`` (5).
- **scheduler/controller-manager takeover** after the node holding the ``kube-scheduler`` Lease is
  stopped (from the moment ``kubelab node stop`` has cut its wire and killed its processes): the
  time until another control plane holds it. Anchor: leaseDuration 15 s (the goal: ≤ 15 s). The
  Lease history is checked for two active leaders: the new holder's acquireTime must come after the
  old holder's last renewTime plus renewDeadline (10 s), when the old one would have stepped down.
- **pod creates/s** (64 connections, closed loop, pods bound to a node that does not exist so no
  container starts) through HAProxy to 3 API servers vs straight to 1 of them, same run.
- **up** to every node Ready, and the whole lab's memory (RSS and PSS of the supervisor's tree and
  the demo's containers). Goals: up ≤ 15 s, ≤ 1 GB RSS with 2 workers.

Run as root: ``python -m tests.bench.bench_ha [--runs 5] [--creates 3000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import ssl
import subprocess
import sys
import threading
import time
from typing import Any

import orjson

from controlplane.api.registry import CONFIGMAPS, LEASES
from controlplane.client.rest import ApiClient
from tests.bench.bench_apiserver import FastConn, pod_body, run_loop
from tests.bench.bench_lab import kubelab, lab_memory_mb
from tests.bench.stats import Summary, print_table
from tests.helpers.halab import CPS, etcd_leader
from tests.helpers.wait import wait_for

KUBECONFIG = "/var/lib/kubelab/admin.kubeconfig"
PKI = "/var/lib/kubelab/pki"
ENDPOINT = "192.168.56.10"
WRITERS = 4
RENEW_DEADLINE = 10  # kube-scheduler's leader election: 15 s lease, 10 s renew deadline, 2 s retry


def lab_cmd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def all_healthy() -> bool:
    if lab_cmd("etcd", "endpoint", "health", timeout=30).returncode != 0:
        return False
    from lab import clusterapi

    return all(clusterapi.ready(f"https://{ip}:6443") for ip in CPS.values())


def write_gap() -> float:
    """One run: writes every 20 ms, stop the etcd leader's node, the gap, start it again."""
    acks: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        with ApiClient.from_kubeconfig(KUBECONFIG, timeout=5) as c:
            while not stop.is_set():
                i += 1
                try:
                    c.create(CONFIGMAPS, {"metadata": {"generateName": "gap-"}, "data": {"i": str(i)}}, "default")
                    acks.append(time.monotonic())
                except Exception:  # refused, timed out, cut: what the failover causes
                    pass
                stop.wait(0.02)

    leader = etcd_leader(lab_cmd)
    # Four writers: a write in flight on the failing node (or proposed to the dead leader) waits out
    # its timeout, but the others show when the cluster takes writes again.
    threads = [threading.Thread(target=writer, daemon=True) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acks) >= 10, 30, interval=0.05, message="writes flowing")
    stopped = time.monotonic()
    lab_cmd("node", "stop", leader)
    wait_for(lambda: len([a for a in acks if a > stopped]) >= 20, 60, interval=0.05, message="writes after the stop")
    stop.set()
    for t in threads:
        t.join()
    acks.sort()
    # the longest pause between two acknowledged writes from just before the stop on (the stop
    # command itself takes a moment to cut the wire, so the gap starts somewhere after `stopped`)
    window = [a for a in acks if a >= stopped - 0.5]
    gap = max(b - a for a, b in itertools.pairwise(window))
    lab_cmd("node", "start", leader)
    wait_for(all_healthy, 120, interval=1, message="the three members and API servers healthy again")
    return gap


def _micro(s: str) -> float:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def takeover() -> tuple[float, bool]:
    """One run: stop the control plane holding kube-scheduler; seconds until another holds it, and
    whether the Lease history shows two active leaders at once."""
    history: list[dict[str, Any]] = []
    with ApiClient.from_kubeconfig(KUBECONFIG, timeout=5) as c:
        spec = c.get(LEASES, "kube-scheduler", "kube-system")["spec"]
        holder = spec["holderIdentity"]
        node = holder.split("_")[0]
        history.append(spec)
        lab_cmd("node", "stop", node)
        stopped = time.monotonic()  # the wire is cut and the processes killed by now
        while True:
            try:
                spec = c.get(LEASES, "kube-scheduler", "kube-system")["spec"]
            except Exception:  # an answer lost with the stopped node: ask again
                continue
            if spec.get("holderIdentity") not in (holder, None, ""):
                took = time.monotonic() - stopped
                break
            history.append(spec)
            if time.monotonic() - stopped > 120:
                raise SystemExit("no takeover within 120 s")
            time.sleep(0.1)
    last_renew = max(_micro(h["renewTime"]) for h in history if h.get("holderIdentity") == holder)
    # the old leader steps down renewDeadline after its last renewal if it cannot renew (it cannot:
    # it was killed, but the protocol must not count on that): the new holder must come after it
    overlap = _micro(spec["acquireTime"]) < last_renew + RENEW_DEADLINE
    lab_cmd("node", "start", node)
    wait_for(all_healthy, 120, interval=1, message="healthy again")
    return took, overlap


def bound_pod_request(path: str, name: str) -> bytes:
    """A pod bound to a node that does not exist: the API's whole create path, no container started."""
    pod = orjson.loads(pod_body(name, "default"))
    pod["spec"]["nodeName"] = "bench-nowhere"
    body = orjson.dumps(pod)
    return (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (path.encode(), ENDPOINT.encode(), len(body), body)
    )


async def _creates(host: str, ctx: ssl.SSLContext, total: int, clients: int, tag: str) -> float:
    loop = asyncio.get_running_loop()
    conns = [
        (await loop.create_connection(FastConn, host, 6443, ssl=ctx, server_hostname=host))[1] for _ in range(clients)
    ]
    path = "/api/v1/namespaces/default/pods"
    bodies = [bound_pod_request(path, f"{tag}-{i}") for i in range(total)]
    it = iter(bodies)
    t0 = time.monotonic()

    async def client(conn: FastConn) -> None:
        for body in it:
            code, answer = await conn.request(body)
            if code != 201:
                raise RuntimeError(f"create answered {code}: {answer[:200]!r}")

    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.monotonic() - t0
    for c in conns:
        c.close()
    return total / elapsed


def creates_per_second(total: int, clients: int = 64) -> tuple[float, float]:
    ctx = ssl.create_default_context(cafile=f"{PKI}/ca.crt")
    ctx.load_cert_chain(f"{PKI}/admin.crt", f"{PKI}/admin.key")
    through_lb = run_loop(_creates(ENDPOINT, ctx, total, clients, "lb"))
    one = run_loop(_creates(CPS["kl-cp1"], ctx, total, clients, "one"))
    subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, "delete", "pods", "--all", "--field-selector",
         "spec.nodeName=bench-nowhere", "--wait=false"], capture_output=True, check=False, timeout=600,
    )  # fmt: skip
    return through_lb, one


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--takeovers", type=int, default=3)
    p.add_argument("--creates", type=int, default=3000)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_ha needs root")
        return 1
    up = kubelab("up", "--control-planes", "3", "--workers", "2", "--no-dashboard")
    try:
        lab_cmd("demo", timeout=400)
        mem = lab_memory_mb()
        rss, pss = sum(r for r, _ in mem.values()), sum(q for _, q in mem.values())
        print(f"up {up:.1f} s; memory with the demo {rss:.0f} MB RSS, {pss:.0f} MB PSS", flush=True)
        lb, one = creates_per_second(args.creates)
        print(f"creates/s: {lb:.0f} through HAProxy, {one:.0f} to one API server", flush=True)
        gaps = []
        for _ in range(args.runs):
            gaps.append(write_gap())
            print(f"write gap {gaps[-1]:.2f} s", flush=True)
        takes = []
        for _ in range(args.takeovers):
            takes.append(takeover())
            print(f"takeover {takes[-1][0]:.1f} s, two leaders: {takes[-1][1]}", flush=True)
    finally:
        kubelab("down")
    g = Summary.of(gaps)
    tk = Summary.of([t for t, _ in takes])
    print_table(
        "HA control plane: 3 control planes, 3-member etcd (TLS), HAProxy; 2 workers (median (p10–p90))",
        ["what", "ours", "anchor", "ratio"],
        [
            [f"write gap, etcd leader's node stopped ({g.n} runs)", f"{g.median:.2f} s ({g.p10:.2f}–{g.p90:.2f})",
             "2 s (election timeout 1 s + HAProxy 2 × 500 ms)", f"{g.median / 2.0:.2f}×"],
            [f"kube-scheduler Lease takeover ({tk.n} runs)", f"{tk.median:.1f} s ({tk.p10:.1f}–{tk.p90:.1f})",
             "leaseDuration 15 s", f"{tk.median / 15:.2f}×"],
            ["two active leaders in the Lease history", str(sum(1 for _, o in takes if o)), "0", ""],
            [f"pod creates/s, 64 connections, {args.creates} pods", f"{lb:.0f}/s through HAProxy to 3",
             f"{one:.0f}/s to 1 API server", f"{lb / one:.2f}×"],
            ["kubelab up --control-planes 3 → all Ready", f"{up:.1f} s", "goal ≤ 15 s", f"{up / 15:.2f}×"],
            ["whole HA lab with the demo, RSS", f"{rss:.0f} MB (PSS {pss:.0f} MB)", "goal ≤ 1,024 MB",
             f"{rss / 1024:.2f}×"],
        ],
    )  # fmt: skip
    print_table(
        "HA lab memory by component (MB)",
        ["component", "RSS", "PSS"],
        [[n, f"{r:.1f}", f"{q:.1f}"] for n, (r, q) in sorted(mem.items(), key=lambda kv: -kv[1][0])],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
