"""Benchmark: the proxy's syncs beside ``iptables-restore`` of the same rules, and the data path.

``python -m tests.bench.bench_proxy [--quick] [--sizes 1000,10000]`` (root). Everything runs in
namespaces of its own (``klbench-*``, removed at the end), with the safety routes held.

Control plane, for 1,000 and 10,000 services × 5 endpoints (``--quick``: 1,000 only), per backend
(iptables-restore on nf_tables, iptables-restore on legacy, python-iptables on legacy), each in a
worker process inside a fresh namespace so its memory and tables are its own:
- *full sync*: a new proxier's first sync (render + plan + apply; its informers have synced: the
  objects were handed to it and parsed on arrival as the handlers do, nothing is rendered or
  hashed yet) beside the floor, a plain ``iptables-restore`` of the very same ruleset text into
  empty tables (measured in the same run, same namespace, just before); the timed region is
  what a user waits for from "informers synced" to "rules in the kernel";
- *CPU*: the full sync's CPU seconds (our process, every thread, plus the tools it ran) beside
  the floor's (the tool's): what load on a shared machine skews least. Our full sync streams
  the rules into the restore while rendering, so on idle cores its wall time can approach the
  floor's even though its CPU time is higher (Python's rendering runs beside the tool's parse);
- *resync*: that proxier's periodic full sync over existing rules (what ``--sync-period``
  costs: every rule written again; fragments of unchanged service ports are reused);
- *one service*: our sync after one service's endpoints changed (median of 5) beside the floor,
  ``iptables-restore --noflush`` of a minimal batch rewriting that service's chains;
- *memory*: the worker's resident set growth (objects, model, fragments, last ruleset).

Data path: connections/s from a pod through a service VIP (DNAT by our rules) against straight to
the pod IP, interleaved runs in the same namespaces, each run bounded (machine-facts.md: keep a
run well under 25k connections; the client is inside the cluster CIDR so nothing is
masqueraded, which avoids the TIME_WAIT collision trap).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.stats import Summary, fmt_ms, fmt_ratio, print_table

REPO = Path(__file__).resolve().parents[2]
BACKENDS = {
    "restore (nft)": ("iptables-restore", "nft"),
    "restore (legacy)": ("iptables-restore", "legacy"),
    "python-iptables (legacy)": ("python-iptables", "legacy"),
    "python-iptables, libiptc only (legacy)": ("python-iptables-only", "legacy"),
}
# libiptc-only full syncs take minutes at 10k services (~40× the floor at 200): measured up to this.
LIBIPTC_ONLY_MAX = 1000


def objects(n: int, eps: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services, slices = [], []
    for i in range(n):
        name = f"svc-{i}"
        services.append(
            {
                "metadata": {"namespace": "bench", "name": name},
                "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "ports": [{"name": "http", "port": 80}]},
            }
        )
        slices.append(slice_for(name, i, eps))
    return services, slices


def slice_for(name: str, i: int, eps: int, gen: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "bench", "name": f"{name}-s", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [f"10.{128 + j // 65536}.{j // 256 % 256}.{(j + gen) % 256}"]}
            for j in range(i * eps, i * eps + eps)
        ],
    }


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def restore(mode: str, text: str, noflush: bool) -> float:
    argv = [f"iptables-{mode}-restore", "-w"] + (["--noflush"] if noflush else [])
    t0 = time.perf_counter()
    subprocess.run(argv, input=text, text=True, check=True, capture_output=True)
    return time.perf_counter() - t0


def cpu_now() -> tuple[float, float]:
    """(this process's CPU, all threads; CPU of its finished children), in seconds."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


def worker(n: int, backend_name: str) -> dict[str, Any]:
    """Runs inside a fresh namespace: measure one backend at one size, print JSON."""
    from proxy.backend.interface import make_plan
    from proxy.proxier import Proxier
    from proxy.rules import ProxyOptions, _hash, render

    choice, mode = BACKENDS[backend_name]
    base_rss = rss_kib()
    services, slices = objects(n)
    options = ProxyOptions(node_name="bench-node", cluster_cidr="10.244.0.0/16")

    def started() -> tuple[Proxier, Any]:
        """A proxy as it is when its informers have synced: every object handed to it (and
        parsed, as the handlers do on arrival), nothing rendered, no chain name hashed yet."""
        if choice.startswith("python-iptables"):
            from proxy.backend.iptc_backend import IptcBackend

            backend: Any = IptcBackend(full_via_restore=choice == "python-iptables")
        else:
            from proxy.backend.restore import RestoreBackend

            backend = RestoreBackend(mode)
        proxier = Proxier(backend, options, min_sync_period=0, sync_period=3600)
        proxier.expect_sources("all")
        for s in services:
            proxier.on_service(s)
        for s in slices:
            proxier.on_endpoint_slice(s)
        proxier.set_synced("all")
        _hash.cache_clear()  # the floor's render must not have warmed the names for our sync
        return proxier, backend

    # The floor: the same rules our first sync writes, as one plain text restored into empty tables.
    text = render(services, slices, options=options).text()
    empty = "*filter\nCOMMIT\n*nat\nCOMMIT\n*mangle\nCOMMIT\n"
    # libiptc alone: seconds each; 10k: 3 (a single legacy restore of 170k rules varies 2.2–3.3 s here)
    reps = 1 if choice == "python-iptables-only" else 5 if n <= 2000 else 3
    floors, fulls, resyncs = [], [], []
    floor_cpus, full_cpus, py_cpus = [], [], []  # CPU s: the tool's; ours (Python + tools); Python
    p: Any = None
    for _ in range(reps):
        p = backend = None  # the previous proxy (its runner refers back to it: a cycle) goes
        gc.collect()
        restore(mode, empty, noflush=False)
        _, c0 = cpu_now()
        floors.append(restore(mode, text, noflush=False))
        floor_cpus.append(cpu_now()[1] - c0)
        restore(mode, empty, noflush=False)  # empty tables again
        p, backend = started()  # a new proxy each time: its first sync, from the objects
        s0, c0 = cpu_now()
        t0 = time.perf_counter()
        p.sync()  # our first (full) sync into empty tables: render, plan, apply
        fulls.append(time.perf_counter() - t0)
        s1, c1 = cpu_now()
        full_cpus.append((s1 - s0) + (c1 - c0))
        py_cpus.append(s1 - s0)
        assert p.last_applied is not None and p.last_applied.full
        p._needs_full = True
        t0 = time.perf_counter()
        p.sync()  # our periodic full resync over existing rules (what --sync-period costs)
        resyncs.append(time.perf_counter() - t0)
    floor_full, ours_full, ours_resync = (statistics.median(x) for x in (floors, fulls, resyncs))
    partial, floor_partial = [], []

    def ours_one(gen: int) -> None:
        i = (gen * 7919) % n
        p.on_endpoint_slice(slice_for(f"svc-{i}", i, 5, gen))
        t0 = time.perf_counter()
        p.sync()
        partial.append(time.perf_counter() - t0)
        assert p.last_applied is not None and not p.last_applied.full

    def floor_one(gen: int) -> None:
        # A minimal --noflush batch rewriting one (other) service's chains: the same kind of
        # change, planned by us but restored straight by the tool.
        j = (gen * 104729 + 1) % n
        p.on_endpoint_slice(slice_for(f"svc-{j}", j, 5, gen))
        changed = p._fold_changes()
        touched: set[tuple[str, str]] = set()
        for key in changed:
            p._render_port(key, options, touched)
        rs = p._assemble(options, touched)
        plan = make_plan(rs, backend.applied, None, full=False, touched=touched)
        floor_partial.append(restore(mode, plan.restore_text(), noflush=True))
        backend.applied = plan.result

    # Interleaved, alternating which goes first: the first restore after a pause measured
    # consistently slower here, whichever it was.
    for gen in range(1, 7):
        first, second = (ours_one, floor_one) if gen % 2 else (floor_one, ours_one)
        first(gen)
        second(gen)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": n,
        "backend": backend_name,
        "rules": text.count("\n-A "),
        "floor_full": floor_full,
        "full": ours_full,
        "floor_full_cpu": statistics.median(floor_cpus),
        "full_cpu": statistics.median(full_cpus),
        "full_python_cpu": statistics.median(py_cpus),
        "resync": ours_resync,
        "partial": partial,
        "floor_partial": floor_partial,
        "rss_mib": (rss_kib() - base_rss) / 1024,
        "peak_mib": peak / 1024,
    }


def ns_exec(ns: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], text=True, capture_output=True, cwd=REPO, **kw)


def control_plane(sizes: list[int]) -> None:
    rows = []
    for n in sizes:
        for name in BACKENDS:
            if "libiptc only" in name and n > LIBIPTC_ONLY_MAX:
                rows.append([f"{n:,}", name, f"not run (> {LIBIPTC_ONLY_MAX} services: minutes)", *[""] * 8])
                continue
            ns = f"klbench-{os.getpid()}-cp"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            try:
                res = ns_exec(
                    ns, [sys.executable, "-m", "tests.bench.bench_proxy", "--worker", str(n), name], timeout=3600
                )
                if res.returncode != 0:
                    rows.append([f"{n:,}", name, "failed: " + res.stderr.strip().splitlines()[-1][:80], *[""] * 8])
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
            finally:
                subprocess.run(["ip", "netns", "del", ns], check=False)
            part, fpart = Summary.of(r["partial"]), Summary.of(r["floor_partial"])
            rows.append(
                [
                    f"{n:,} ({r['rules']:,} rules)",
                    name,
                    f"{r['full']:.2f} s",
                    f"{r['floor_full']:.2f} s",
                    fmt_ratio(r["full"], r["floor_full"]),
                    f"{r['full_cpu']:.2f} s / {r['floor_full_cpu']:.2f} s = "
                    + fmt_ratio(r["full_cpu"], r["floor_full_cpu"]),
                    f"{r['resync']:.2f} s",
                    f"{fmt_ms(part.median)} ({fmt_ms(part.p10)}–{fmt_ms(part.p90)})",
                    fmt_ms(fpart.median),
                    fmt_ratio(part.median, fpart.median),
                    f"{r['rss_mib']:.0f} MiB (peak {r['peak_mib']:.0f})",
                ]
            )
            print(f"  measured {n} services with {name}", file=sys.stderr, flush=True)
    print_table(
        "proxy sync vs iptables-restore of the same rules (services × 5 endpoints)",
        [
            "services",
            "backend",
            "full sync",
            "floor: restore",
            "ratio",
            "CPU: ours / floor",
            "resync",
            "one service (p10–p90)",
            "floor: minimal --noflush",
            "ratio",
            "memory",
        ],
        rows,
    )


def data_path(count: int, runs: int) -> None:
    """Connections/s from a pod to a VIP vs to the pod IP, in namespaces of our own.

    Two servers: one on the client's node (same bridge: the direct path never leaves L2 while
    the VIP path is routed through the node, so this is the worst case for the VIP) and one on
    another node (both paths routed; the VIP adds only the DNAT, the usual case in a cluster).
    """
    from proxy.backend.exec import CommandRunner
    from proxy.backend.restore import RestoreBackend
    from proxy.rules import ProxyOptions, render

    pid = os.getpid()
    na, nb = f"klbench-{pid}-na", f"klbench-{pid}-nb"
    client, local, remote = f"klbench-{pid}-cli", f"klbench-{pid}-srv1", f"klbench-{pid}-srv2"
    made: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []

    def sh(*argv: str) -> None:
        subprocess.run(list(argv), check=True, capture_output=True)

    try:
        for ns in (na, nb, client, local, remote):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", na, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nb)
        for i, ns in ((1, na), (2, nb)):
            sh("ip", "-n", ns, "addr", "add", f"192.168.56.1{i}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "add", "cni0", "type", "bridge")
            sh("ip", "-n", ns, "addr", "add", f"10.244.{i}.1/24", "dev", "cni0")
            sh("ip", "-n", ns, "link", "set", "cni0", "up")
            sh("ip", "-n", ns, "route", "add", f"10.244.{3 - i}.0/24", "via", f"192.168.56.1{3 - i}")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        for ns, node, ip, veth in (
            (client, na, "10.244.1.2", "vcli"),
            (local, na, "10.244.1.3", "vsrv1"),
            (remote, nb, "10.244.2.2", "vsrv2"),
        ):
            sh("ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", node, "link", "set", veth, "master", "cni0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", ip.rsplit(".", 1)[0] + ".1")
        services, slices = [], []
        for name, vip, ep, port in (
            ("local", "10.96.0.10", "10.244.1.3", 8080),
            ("remote", "10.96.0.11", "10.244.2.2", 8080),
            ("local-rr", "10.96.0.12", "10.244.1.3", 8081),
            ("remote-rr", "10.96.0.13", "10.244.2.2", 8081),
        ):
            services.append(
                {
                    "metadata": {"namespace": "b", "name": name},
                    "spec": {"clusterIP": vip, "ports": [{"name": "h", "port": 80 if port == 8080 else 81}]},
                }
            )
            slices.append(
                {
                    "metadata": {"namespace": "b", "name": f"{name}-s", "labels": {"kubernetes.io/service-name": name}},
                    "ports": [{"name": "h", "port": port, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [ep]}],
                }
            )
        RestoreBackend("nft", CommandRunner(netns=na)).apply(
            render(services, slices, options=ProxyOptions()), full=True
        )
        server_code = (
            "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "import threading\n"
            "def rr():\n r=socket.socket();r.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            " r.bind(('0.0.0.0',8081));r.listen(16)\n"
            " while True:\n  c,_=r.accept()\n  while c.recv(1):\n   c.sendall(b'y')\n  c.close()\n"
            "threading.Thread(target=rr,daemon=True).start()\n"
            "s.bind(('0.0.0.0',8080));s.listen(1024);print('ready',flush=True)\n"
            "while True:\n c,_=s.accept();c.sendall(b'x');c.close()\n"
        )
        for ns in (local, remote):
            srv = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", server_code], stdout=subprocess.PIPE
            )
            procs.append(srv)
            assert srv.stdout is not None and srv.stdout.readline().startswith(b"ready")
        client_code = (
            "import socket,sys,time\nhost,port,n=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])\nt=time.perf_counter()\n"
            "if port==8081 or port==81:\n"
            " s=socket.create_connection((host,port))\n"
            " for _ in range(n):\n  s.sendall(b'x');s.recv(1)\n"
            " s.close()\n"
            "else:\n"
            " for _ in range(n):\n  s=socket.create_connection((host,port));s.recv(1);s.close()\n"
            "print(n/(time.perf_counter()-t))\n"
        )
        targets = {
            "same node: VIP": ("10.96.0.10", "80"),
            "same node: pod IP": ("10.244.1.3", "8080"),
            "other node: VIP": ("10.96.0.11", "80"),
            "other node: pod IP": ("10.244.2.2", "8080"),
            "rr same node: VIP": ("10.96.0.12", "81"),
            "rr same node: pod IP": ("10.244.1.3", "8081"),
            "rr other node: VIP": ("10.96.0.13", "81"),
            "rr other node: pod IP": ("10.244.2.2", "8081"),
        }
        results: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(runs):
            for key, target in targets.items():
                n_ops = count * 10 if key.startswith("rr ") else count  # round trips are cheap
                res = ns_exec(client, [sys.executable, "-c", client_code, *target, str(n_ops)], timeout=600, check=True)
                results[key].append(float(res.stdout.strip()))
        rows = []
        for where in ("same node", "other node", "rr same node", "rr other node"):
            vip, direct = results[f"{where}: VIP"], results[f"{where}: pod IP"]
            label = f"requests/s, one connection, {where[3:]}" if where.startswith("rr ") else f"connections/s, {where}"
            rows.append(
                [
                    label,
                    f"{statistics.median(vip):.0f} ({min(vip):.0f}–{max(vip):.0f})",
                    f"{statistics.median(direct):.0f} ({min(direct):.0f}–{max(direct):.0f})",
                    fmt_ratio(statistics.median(vip), statistics.median(direct)),
                ]
            )
        print_table(
            f"data path from a pod: new connections (connect, 1 byte, close; {count} per run) and 1-byte "
            f"request/response round trips on one connection ({count * 10} per run); {runs} interleaved runs",
            ["what, where the server is", "through the VIP (DNAT)", "straight to the pod IP", "ratio VIP/direct"],
            rows,
        )
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_proxy")
    ap.add_argument("--quick", action="store_true", help="1,000 services only")
    ap.add_argument("--sizes", default="", help="comma-separated service counts (default 1000,10000)")
    ap.add_argument("--connections", type=int, default=1000, help="connections per data-path run (4 targets × 5 runs)")
    ap.add_argument("--data-path-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-data-path", action="store_true", help="only the control-plane (sync) table")
    ap.add_argument("--worker", nargs=2, metavar=("N", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1])))
        return 0
    if os.geteuid() != 0:
        print("bench_proxy needs root (namespaces and iptables)", file=sys.stderr)
        return 1
    from lab import safety

    sizes = [int(s) for s in args.sizes.split(",") if s] or ([1000] if args.quick else [1000, 10000])
    with safety.hold(f"bench-proxy-{os.getpid()}"):
        if not args.data_path_only:
            control_plane(sizes)
        if not args.no_data_path:
            data_path(args.connections, 5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
