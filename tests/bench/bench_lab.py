"""Lab benchmark: `kubelab up` to all nodes Ready, `kubelab down`, and the lab's memory.

For 2 and 8 workers: wall time of `up` (to every node Ready, as `up` itself waits for), the RSS and
PSS of every process the lab runs (the supervisor's children: control plane, noded, proxy, agent,
registry, DNS, metrics server, dashboard; plus the containers of the demo pods) with the demo
deployed, by component, and wall time of `down`.
Anchors (published, not measurable here): kind's one-node `create cluster` 12–17 s; k3s server
with a workload ~1.6 GB; our goals: `up` ≤ 10 s for 2 workers, the 2-worker lab ≤ 650 MB RSS
with the metrics server and dashboard (issue 13).

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


def _component(cmdline: list[str]) -> str:
    """The lab component a process is: its ``kubelab`` subcommand, else its ``-m`` module, else its program."""
    from lab.cli import COMMANDS

    module = cmdline[cmdline.index("-m") + 1] if "-m" in cmdline[:-1] else None
    if module == "lab.supervisor":
        return "supervisor"
    if module == "lab" or (cmdline and cmdline[0].endswith("/kubelab")):
        return next((a for a in cmdline[1:] if a in COMMANDS), "kubelab")
    if module:
        return module
    return os.path.basename(cmdline[0]) if cmdline else "?"


def lab_memory_mb() -> dict[str, tuple[float, float]]:
    """RSS and PSS (MB) by component: the supervisor's process tree and the containers of pods.

    RSS counts shared pages (the Python interpreter, libraries) in every process; PSS divides
    them among the processes sharing them, so the PSS total is what the lab really costs.
    """
    procs: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if "lab.supervisor" in " ".join(p.info["cmdline"] or []):
            procs[p.pid] = p
            procs.update((c.pid, c) for c in p.children(recursive=True))
    tree = set(procs)
    # containers are not the supervisor's children (runc reparents them): count them by cgroup
    for p in psutil.process_iter():
        try:
            with open(f"/proc/{p.pid}/cgroup") as f:
                if "kubelab" in f.read():
                    procs[p.pid] = p
        except (OSError, psutil.Error):
            continue
    by: dict[str, tuple[float, float]] = {}
    for p in procs.values():
        try:
            name = _component(p.cmdline()) if p.pid in tree else "containers"
            full = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = by.get(name, (0.0, 0.0))
        by[name] = (rss + full.rss / 2**20, pss + getattr(full, "pss", full.rss) / 2**20)
    return by


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="2,8")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_lab needs root")
        return 1
    rows = []
    workers_parts: dict[str, tuple[float, float]] = {}
    for workers in [int(w) for w in args.workers.split(",")]:
        ups, downs, rss, pss = [], [], [], []
        parts: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            ups.append(kubelab("up", "--workers", str(workers)))
            subprocess.run([sys.executable, "-m", "lab", "demo"], capture_output=True, check=False)
            mem = lab_memory_mb()
            rss.append(sum(r for r, _ in mem.values()))
            pss.append(sum(p for _, p in mem.values()))
            for name, (r, p) in mem.items():
                parts.setdefault(name, []).append((r, p))
            downs.append(kubelab("down"))
        u, d, r, s = Summary.of(ups), Summary.of(downs), Summary.of(rss), Summary.of(pss)
        workers_parts = {
            n: (Summary.of([x for x, _ in v]).median, Summary.of([y for _, y in v]).median) for n, v in parts.items()
        }
        rows.append([
            str(workers),
            f"{u.median:.1f} s ({u.p10:.1f}–{u.p90:.1f})",
            "≤ 10 s (2 workers); kind 12–17 s for 1 node",
            f"{d.median:.1f} s",
            f"{r.median:.0f} MB (PSS {s.median:.0f} MB)",
            "≤ 650 MB (2 workers, metrics server and dashboard included); k3s server ~1.6 GB",
        ])  # fmt: skip
    print_table(
        f"kubelab up / down / memory ({args.runs} runs each, median (p10–p90))",
        ["workers", "up → all Ready", "anchor", "down", "RSS with demo", "anchor"],
        rows,
    )
    if workers_parts:
        print_table(
            "memory by component, the last lab measured (MB; a component with several processes summed)",
            ["component", "processes' RSS", "PSS"],
            [[n, f"{r:.1f}", f"{p:.1f}"] for n, (r, p) in sorted(workers_parts.items(), key=lambda kv: -kv[1][0])],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
