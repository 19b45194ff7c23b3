"""noded's CPU for one resource-metrics scrape of a node with 100 pods (issue 13: goal ≤ 100 ms).

- **anchor**: reading the same cgroup files with plain ``open().read()`` and nothing else — the floor
  any implementation pays.
- **noded**: ``StatsProvider.summary()`` + ``render_resource_metrics()`` — what ``GET
  /metrics/resource`` costs noded — over 100 pods (a sandbox and one container each, so 200 cgroups
  in cgroup v2 layout under a temp dir). CPU time of this process (``time.process_time``), medians
  over ``--samples`` scrapes. The runtime is a stand-in listing those pods (RuncRuntime's own
  listing is measured by bench_noded); the node figures come from psutil as in noded.

No root needed; the temp dir is removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from noded.runtime.interface import ContainerState, ContainerStatus, SandboxState, SandboxStatus
from noded.stats import FsCgroupReader, PsutilHostReader, StatsProvider, render_resource_metrics
from tests.bench.stats import Summary, fmt_ms, fmt_ratio, print_table

PARENT = "kubelab/bench"


class _Runtime:
    def __init__(self, n: int) -> None:
        self.sandboxes = [
            SandboxStatus(f"sb{i}", f"pod-{i}", "default", f"uid-{i}", 0, SandboxState.READY, 1.0, "") for i in range(n)
        ]
        self.containers = [
            ContainerStatus(f"sb{i}_app", f"sb{i}", "app", 0, ContainerState.RUNNING, 1.0) for i in range(n)
        ]

    def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]:
        return self.sandboxes

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        return self.containers


def make_cgroups(root: Path, ids: list[str]) -> None:
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    for i, cid in enumerate(ids):
        d = root / PARENT / cid
        d.mkdir(parents=True)
        (d / "cpu.stat").write_text(f"usage_usec {1000 * i}\nuser_usec 0\nsystem_usec 0\n")
        (d / "memory.current").write_text(f"{(i + 1) << 20}\n")
        (d / "memory.stat").write_text("anon 1048576\nfile 0\ninactive_file 4096\nactive_file 0\npgfault 1\n")


def cpu_of(fn: Any, samples: int) -> Summary:
    out = []
    for _ in range(samples):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return Summary.of(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--samples", type=int, default=30)
    args = ap.parse_args(argv)
    rt = _Runtime(args.pods)
    ids = [s.id for s in rt.sandboxes] + [c.id for c in rt.containers]
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-stats-") as tmp:
        root = Path(tmp)
        make_cgroups(root, ids)
        files = [root / PARENT / i / f for i in ids for f in ("cpu.stat", "memory.current", "memory.stat")]

        def raw() -> None:
            for f in files:
                with open(f) as fh:
                    fh.read()

        provider = StatsProvider("bench", rt, FsCgroupReader(root), PsutilHostReader(), lambda i: f"/{PARENT}/{i}")

        def scrape() -> None:
            body = render_resource_metrics(provider.summary())
            assert body.count("container_cpu_usage_seconds_total{") == args.pods

        anchor = cpu_of(raw, args.samples)
        ours = cpu_of(scrape, args.samples)
    print_table(
        f"noded CPU per /metrics/resource scrape, {args.pods} pods ({args.samples} scrapes)",
        ["what", "median", "p90", "vs. reading the files"],
        [
            ["read the cgroup files only (anchor)", fmt_ms(anchor.median), fmt_ms(anchor.p90), "1.00×"],
            ["noded summary + render", fmt_ms(ours.median), fmt_ms(ours.p90), fmt_ratio(ours.median, anchor.median)],
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
