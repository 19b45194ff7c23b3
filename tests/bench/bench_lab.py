"""Lab benchmark: `kubelab up` to all nodes Ready, `kubelab down`, and the lab's memory.

For 2 and 8 workers: wall time of `up` (to every node Ready, as `up` itself waits for), the RSS of
every process the lab runs (the supervisor's children: control plane, noded, proxy, agent,
registry; plus the containers of the demo pods) with the demo deployed, and wall time of `down`.
Anchors (published, not measurable here): kind's one-node `create cluster` 12–17 s; k3s server
with a workload ~1.6 GB; our goals: `up` ≤ 10 s for 2 workers, the 2-worker lab ≤ 600 MB RSS.

Run as root: ``python -m tests.bench.bench_lab [--workers 2,8] [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import psutil

from tests.bench.stats import Summary, print_table


def kubelab(*args: str) -> float:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"kubelab {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return time.monotonic() - t0


def lab_rss_mb() -> float:
    """RSS of the supervisor and everything below it (components, containers started by noded)."""
    total = 0
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "lab.supervisor" in cmd:
            procs = [p, *p.children(recursive=True)]
            total += sum(q.memory_info().rss for q in procs if q.is_running())
    # containers are children of runc's shim-less parent (reparented to init): count them by cgroup
    for p in psutil.process_iter(["cmdline"]):
        try:
            with open(f"/proc/{p.pid}/cgroup") as f:
                if "kubelab" in f.read():
                    total += p.memory_info().rss
        except (OSError, psutil.Error):
            continue
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="2,8")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_lab needs root")
        return 1
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        ups, downs, rss = [], [], []
        for _ in range(args.runs):
            ups.append(kubelab("up", "--workers", str(workers)))
            subprocess.run([sys.executable, "-m", "lab", "demo"], capture_output=True, check=False)
            rss.append(lab_rss_mb())
            downs.append(kubelab("down"))
        u, d, r = Summary.of(ups), Summary.of(downs), Summary.of(rss)
        rows.append([
            str(workers),
            f"{u.median:.1f} s ({u.p10:.1f}–{u.p90:.1f})",
            "≤ 10 s (2 workers); kind 12–17 s for 1 node",
            f"{d.median:.1f} s",
            f"{r.median:.0f} MB",
            "≤ 600 MB (2 workers); k3s server ~1.6 GB",
        ])  # fmt: skip
    print_table(
        f"kubelab up / down / memory ({args.runs} runs each, median (p10–p90))",
        ["workers", "up → all Ready", "anchor", "down", "RSS with demo", "anchor"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
