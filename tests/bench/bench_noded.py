"""noded pod start-up latency beside the floor measured in the same run (DESIGN.md §5, issue 4).

- **floor**: the same steps done directly, no noded, no API: ``ip netns add``, CNI ADD (reference
  bridge + host-local, run in the node netns), ``runc run -d`` of pause and of the hello app joined
  to its namespaces, then poll until the first HTTP 200 from the node netns.
- **noded, 1 pod**: a pod (the hello image) created in the API with ``spec.nodeName`` set, until a
  watch sees it Running (issue 4's definition; the floor waits for the first HTTP 200, which comes
  a few ms after the app process starts). Sequential samples.
- **noded, batch of 30**: 30 pods created at once; time until the last is Running; per-pod
  latencies as well.
- **noded, 1 pod with 100 pods on the node**: the single-pod figure again after 100 pods run.
- noded's RSS with those pods (psutil, the noded process only; shims are ~100 KiB each).

Runs as root inside throwaway namespaces (API server on 127.0.0.1, node netns for pods, temp root
dirs); everything is removed at the end. ``--samples``, ``--batch``, ``--preload`` shrink it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from controlplane.api.registry import NODES, PODS
from lab.images import build_lab_images
from noded.host import nsnet
from noded.images.store import ImageStore
from noded.network.cni import CniInvoker, CniRuntimeConf, render_conflist
from tests.bench.stats import Summary, fmt_ms, fmt_ratio, print_table
from tests.helpers.apiserver import start_apiserver
from tests.helpers.netns import netns_factory, sh
from tests.helpers.registry import start_registry
from tests.helpers.wait import wait_for


def http_ok(ip: str, port: int, netns_path: str) -> bool:
    try:
        s = nsnet.connect(ip, port, 0.5, netns_path)
    except OSError:
        return False
    with s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            return b" 200 " in s.recv(64)
        except OSError:
            return False


def floor_once(tmp: Path, node_ns: str, cni: CniInvoker, hello_rootfs: Path, pause_rootfs: Path, i: int) -> float:
    """One direct start-up; returns seconds; cleans up after itself."""
    name = f"klbf{os.getpid() % 10000}-{i}"
    runc = ["runc", "--root", str(tmp / "floor-runc")]
    netns_path = f"/var/run/netns/{name}"
    t0 = time.monotonic()
    sh("ip", "netns", "add", name)
    try:
        net = cni.add(CniRuntimeConf(name, netns_path))
        ip = net.ip
        pause_b = tmp / f"floor-{i}-pause"
        app_b = tmp / f"floor-{i}-app"
        for b, root, args, ns in (
            (
                pause_b,
                pause_rootfs,
                ["/pause"],
                [
                    {"type": "pid"},
                    {"type": "ipc"},
                    {"type": "uts"},
                    {"type": "mount"},
                    {"type": "network", "path": netns_path},
                ],
            ),
            (app_b, hello_rootfs, ["/pause", "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"], None),
        ):
            b.mkdir()
            if ns is None:
                pid = json.loads(
                    subprocess.run([*runc, "state", f"{name}-pause"], capture_output=True, check=True).stdout
                )["pid"]
                ns = [
                    {"type": "pid"},
                    {"type": "mount"},
                    {"type": "network", "path": netns_path},
                    {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
                    {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                ]
            cfg = {
                "ociVersion": "1.0.2",
                "process": {
                    "args": args,
                    "cwd": "/",
                    "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin"],
                    "terminal": False,
                },
                "root": {"path": str(root), "readonly": True},
                "mounts": [
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                ],
                "linux": {"namespaces": ns},
            }
            (b / "config.json").write_text(json.dumps(cfg))
            cid = f"{name}-{'pause' if b == pause_b else 'app'}"
            subprocess.run(
                [*runc, "run", "-d", "--bundle", str(b), cid],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
        while not http_ok(ip, 8080, f"/var/run/netns/{node_ns}"):
            time.sleep(0.002)
        elapsed = time.monotonic() - t0
    finally:
        for cid in (f"{name}-app", f"{name}-pause"):
            subprocess.run([*runc, "kill", cid, "KILL"], capture_output=True, check=False)
        for cid in (f"{name}-app", f"{name}-pause"):
            with contextlib.suppress(Exception):
                wait_for(
                    lambda c=cid: (
                        b'"stopped"' in subprocess.run([*runc, "state", c], capture_output=True, check=False).stdout
                        or True
                    ),
                    5,
                )
            for _ in range(50):
                if subprocess.run([*runc, "delete", cid], capture_output=True, check=False).returncode == 0:
                    break
                time.sleep(0.02)
        with contextlib.suppress(Exception):
            cni.delete(CniRuntimeConf(name, netns_path))
        sh("ip", "netns", "del", name, check=False)
    return elapsed


class Watcher:
    """One watch on all pods; records when each pod is first seen Running."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.ready: dict[str, float] = {}
        self.cv = threading.Condition()
        self.stream = client.watch(PODS, namespace="default")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            for ev in self.stream:
                pod = ev.object
                st = pod.get("status") or {}
                ok = st.get("phase") == "Running"
                if ok:
                    with self.cv:
                        self.ready.setdefault(pod["metadata"]["name"], time.monotonic())
                        self.cv.notify_all()

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not all(n in self.ready for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pods not ready: {[n for n in names if n not in self.ready][:5]}")
                self.cv.wait(left)

    def close(self) -> None:
        self.stream.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--preload", type=int, default=100)
    ap.add_argument("--workers", type=int, default=8, help="noded --workers")
    ap.add_argument("--keep-log", type=Path, default=None, help="copy noded's (debug) log here at the end")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_noded needs root (runc, namespaces); skipped")
        return 0
    from tests.privileged.noded.test_noded_api import NODE, Cluster

    tmp = Path(tempfile.mkdtemp(prefix="kl-bench-noded-"))
    images = build_lab_images(tmp / "images")
    reg = start_registry(tmp)
    api = None
    cluster = None
    try:
        for name, layout in images.items():
            reg.push(layout, f"kubelab/{name}:latest")
        with netns_factory() as netns:
            node_ns = netns("bnode")
            # ---- floor ----
            conf_dir = tmp / "floor-cni"
            conf_dir.mkdir()
            (conf_dir / "10.conflist").write_text(
                json.dumps(
                    render_conflist("10.244.8.0/24", cni="reference", data_dir=str(tmp / "floor-ipam"), bridge="cni1")
                )
            )
            cni = CniInvoker(
                conf_dir,
                ["/usr/lib/cni"],
                tmp / "floor-cache",
                exec_prefix=["nsenter", f"--net=/var/run/netns/{node_ns}"],
            )
            store = ImageStore(tmp / "floor-store", insecure_registries=[reg.address])
            hello = store.ensure(f"{reg.address}/kubelab/hello:latest")
            pause = store.ensure(f"{reg.address}/kubelab/pause:latest")
            roots = {}
            for nm, img in (("hello", hello), ("pause", pause)):
                r = tmp / f"floor-rootfs-{nm}"
                r.mkdir()
                for layer in reversed(store.rootfs_layers(img)):  # bottom first
                    shutil.copytree(layer, r, symlinks=True, dirs_exist_ok=True)
                roots[nm] = r
            floor = [floor_once(tmp, node_ns, cni, roots["hello"], roots["pause"], i) for i in range(args.samples)]

            # ---- noded ----
            api = start_apiserver(tmp)
            cluster = Cluster(tmp, api, node_ns, reg, "reference")
            cluster.extra_args = ["--workers", str(args.workers)]
            cluster.start_noded()
            wait_for(lambda: cluster.client.get(NODES, NODE), 30)
            cluster.client.patch(NODES, NODE, {"spec": {"podCIDR": "10.244.9.0/24"}})
            wait_for(lambda: (cluster.cni_conf / "10-kubelab.conflist").exists(), 30)
            watcher = Watcher(cluster.client)

            def pod(name: str) -> dict[str, Any]:
                return {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {
                        "nodeName": NODE,
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "web",
                                "image": cluster.image("hello"),
                                "imagePullPolicy": "IfNotPresent",
                                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                            }
                        ],
                    },
                }

            def start(names: list[str]) -> list[float]:
                t0 = {}
                for n in names:
                    t0[n] = time.monotonic()
                    cluster.client.create(PODS, pod(n), "default")
                watcher.wait(names, 120)
                return [watcher.ready[n] - t0[n] for n in names]

            start([f"warm-{uuid.uuid4().hex[:4]}"])  # image pull happens here, not in the samples
            single = [start([f"one-{i}"])[0] for i in range(args.samples)]
            t_batch = time.monotonic()
            batch_lat = start([f"batch-{i}" for i in range(args.batch)])
            batch_all = time.monotonic() - t_batch
            have = 1 + args.samples + args.batch
            assert cluster.proc is not None
            noded_proc = psutil.Process(cluster.proc.pid)

            def cpu() -> float:  # noded's own CPU seconds (its threads; not runc/CNI children)
                t = noded_proc.cpu_times()
                return float(t.user + t.system)

            start([f"pre-{i}" for i in range(max(0, args.preload - have))])
            cpu_loaded0 = cpu()
            loaded = []
            for i in range(args.samples):
                loaded.append(start([f"loaded-{i}"])[0])
                print(f"loaded-{i}: {loaded[-1] * 1000:.0f} ms (ended {time.time():.3f})", file=sys.stderr)
            cpu_loaded = cpu() - cpu_loaded0
            rss = noded_proc.memory_info().rss
            n_pods = len(cluster.client.list(PODS, "default")["items"])
            watcher.close()

            f = Summary.of(floor)
            rows = []
            for label, samples in (
                ("1 pod", single),
                (f"batch of {args.batch} (per pod)", batch_lat),
                (f"1 pod, {n_pods - args.samples} pods on the node", loaded),
            ):
                s = Summary.of(samples)
                rows.append(
                    [
                        label,
                        fmt_ms(s.median),
                        f"{fmt_ms(s.p10)}–{fmt_ms(s.p90)}",
                        fmt_ms(s.p99),
                        fmt_ratio(s.median, f.median),
                    ]
                )
            rows.append(
                [
                    "floor (netns, CNI ADD, runc pause+app, HTTP 200)",
                    fmt_ms(f.median),
                    f"{fmt_ms(f.p10)}–{fmt_ms(f.p90)}",
                    fmt_ms(f.p99),
                    "1.00×",
                ]
            )
            print_table(
                "noded pod start-up (created → Running seen by watch)",
                ["case", "median", "p10–p90", "p99", "× floor"],
                rows,
            )
            print_table(
                "noded at scale",
                ["figure", "value"],
                [
                    [f"batch of {args.batch}: all Running", fmt_ms(batch_all)],
                    [f"noded RSS with {n_pods} pods", f"{rss / 2**20:.1f} MiB"],
                    [
                        f"noded CPU from the {n_pods - args.samples} pods Running to the last loaded sample",
                        f"{cpu_loaded:.2f} s",
                    ],
                    ["noded CPU, whole run", f"{cpu():.2f} s"],
                ],
            )
    finally:
        if cluster is not None:
            cluster.stop_noded()
            if args.keep_log is not None:
                shutil.copy(tmp / "noded.log", args.keep_log)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lab",
                    "noded",
                    "cleanup",
                    "--root-dir",
                    str(cluster.root),
                    "--log-root",
                    str(cluster.log_root),
                    "--node-netns",
                    cluster.node_ns,
                    "--cni-conf-dir",
                    str(cluster.cni_conf),
                    "--cni-bin-dir",
                    "/usr/lib/cni",
                ],
                capture_output=True,
                check=False,
            )
            cluster.client.close()
        if api is not None:
            api.stop()
        reg.stop()
        subprocess.run(["runc", "--root", str(tmp / "floor-runc"), "list"], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
