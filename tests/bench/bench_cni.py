"""CNI benchmark: kubelab-bridge + kubelab-ipam against the reference bridge + host-local.

Measured in the same run, interleaved (ours, reference, ours, …) inside throwaway namespaces: the
benchmark process switches itself into a fresh "host" namespace (so both plugins create their
bridge there and the exec cost is the plugin's, not ``ip netns exec``'s) and execs the plugins
like a runtime does, one pod namespace per attachment.

Three designs of ours run against the reference, all four interleaved:
   (a) stdlib-only plugin doing the work itself: our launcher (``python -IS``), a hand-written
       rtnetlink encoder, kubelab-ipam run in-process when it is ours (``KUBELAB_CNI_NO_SERVER=1``);
   (b) "thick": the same launcher as a thin client handing the request over a unix socket to the
       node's CNI server (``netplugin/cniserver.py``, plugin kept imported, fork per request);
   (c) as (b) with the thin client compiled from ``netplugin/thinclient.c`` (no interpreter).
Wall time is what a runtime waits; CPU time (user+sys of the plugin processes) is shown too,
because on a shared machine wall time mostly measures the neighbours. For (b) and (c) the CPU
column counts only the client: the server's forked child does the work outside our accounting.

Tables:
1. ADD and DEL latency, p50 / p99 (+ p10–p90), each design vs reference, with ratios;
2. 100 sequential ADDs (wall time for all);
3. more exec-path variants for scale: IPAM exec'd as a second process, the pip console script
   (venv interpreter with ``site``), a thick client that does no work at all (the floor of (b)),
   ``python -IS -c pass`` and ``import pyroute2``.

``python -m tests.bench.bench_cni [--n 50] [--seq 100]``; needs root. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from netplugin.fast.rtnl import setns
from netplugin.install import base_interpreter, install_plugins
from tests.bench.stats import Summary, fmt_ms, fmt_ratio, print_table
from tests.helpers.netns import netns_factory

REFERENCE_BIN = "/usr/lib/cni"
ROOT = Path(__file__).resolve().parents[2]


SUBNETS = {"a": "10.244.1.0/24", "b": "10.244.2.0/24", "c": "10.244.4.0/24", "ref": "10.244.3.0/24"}


def conf(kind: str, data_dir: str) -> bytes:
    ours = kind != "ref"
    c: dict[str, Any] = {
        "cniVersion": "1.0.0",  # what the reference 1.1.1 plugins speak; ours accept it too
        "name": f"bench-{kind}",
        "type": "kubelab-bridge" if ours else "bridge",
        "bridge": {"a": "cni0", "b": "cni1", "c": "cni3", "ref": "cni2"}[kind],
        "isGateway": True,
        "isDefaultGateway": True,
        "hairpinMode": True,
        "ipam": {
            "type": "kubelab-ipam" if ours else "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": SUBNETS[kind]}]],
        },
    }
    return json.dumps(c).encode()


KINDS = ("a", "b", "c", "ref")
LABEL = {
    "a": "(a) kubelab, stdlib plugin in the exec",
    "b": "(b) kubelab, Python thin client → CNI server",
    "c": "(c) kubelab, native thin client → CNI server",
    "ref": "reference bridge + host-local",
}


class Runner:
    def __init__(self, bin_dir: str, native_dir: str, data_dir: str) -> None:
        self.cni_path = {k: f"{native_dir if k == 'c' else bin_dir}:{REFERENCE_BIN}" for k in KINDS}
        self.exe = {
            "a": f"{bin_dir}/kubelab-bridge",
            "b": f"{bin_dir}/kubelab-bridge",
            "c": f"{native_dir}/kubelab-bridge",
            "ref": f"{REFERENCE_BIN}/bridge",
        }
        self.conf = {k: conf(k, data_dir) for k in KINDS}

    def call(
        self,
        kind: str,
        command: str,
        cid: str,
        netns: str,
        exe: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[float, float]:
        """Exec one plugin command; return (wall seconds, CPU seconds of the plugin processes)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path[kind],
            **({"KUBELAB_CNI_NO_SERVER": "1"} if kind == "a" else {}),
            **(extra or {}),
        }
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        res = subprocess.run([exe or self.exe[kind]], input=self.conf[kind], env=env, capture_output=True, check=False)
        dt = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            raise RuntimeError(f"{kind} {command} failed: {res.stdout.decode()} {res.stderr.decode()}")
        return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def timed_exec(argv: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


THICK_CLIENT = """
import _socket, sys
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read() or b"{}")
s.shutdown(1)
sys.stdout.buffer.write(s.recv(65536))
"""


def thick_lower_bound(n: int, tmp: str) -> list[float]:
    """A thick plugin's floor: interpreter start + one unix-socket round trip, no work done."""
    path = f"{tmp}/agent.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(65536)
            c.sendall(b'{"cniVersion":"1.0.0"}')
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    client = f"{tmp}/thick-client"
    Path(client).write_text(f"#!{base_interpreter()} -IS\n{THICK_CLIENT}")
    os.chmod(client, 0o755)
    try:
        return timed_exec([client, path], n)
    finally:
        stop.set()
        srv.close()


def cell(samples: list[float]) -> str:
    x = Summary.of(samples)
    return f"{fmt_ms(x.median)} (p99 {fmt_ms(x.p99)}; {fmt_ms(x.p10)}–{fmt_ms(x.p90)})"


def start_cni_server() -> subprocess.Popen[bytes]:
    """The CNI server for the namespace this process is in (inherited by the child)."""
    from netplugin.fast.thin import socket_path

    proc = subprocess.Popen([sys.executable, "-m", "netplugin.fast.cniserver"], cwd=str(ROOT))
    deadline = time.monotonic() + 20
    while not os.path.exists(socket_path()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("CNI server did not start")
        time.sleep(0.05)
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=50, help="ADD/DEL pairs per design for the latency table")
    ap.add_argument("--seq", type=int, default=100, help="sequential ADDs for the throughput table")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_cni needs root (namespaces, veths)", file=sys.stderr)
        return 1
    own_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    server: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-cni-") as tmp, netns_factory() as make:
        bin_dir, native_dir = f"{tmp}/bin", f"{tmp}/native"
        install_plugins(bin_dir, native=False)
        install_plugins(native_dir, native=True)
        run = Runner(bin_dir, native_dir, f"{tmp}/ipam")
        host = make("benchhost")
        fd = os.open(f"/var/run/netns/{host}", os.O_RDONLY)
        setns(fd, host)  # this single-threaded process now lives in the throwaway host netns
        os.close(fd)
        try:
            server = start_cni_server()
            pods = [f"/var/run/netns/{make(f'b{i}')}" for i in range(max(args.n, args.seq, 10))]
            wall: dict[str, dict[str, list[float]]] = {k: {"ADD": [], "DEL": []} for k in KINDS}
            cpu: dict[str, dict[str, list[float]]] = {k: {"ADD": [], "DEL": []} for k in KINDS}
            for kind in KINDS:  # warm-up (page cache, bridge creation), not measured
                run.call(kind, "ADD", "warm", pods[0])
                run.call(kind, "DEL", "warm", pods[0])
            for i in range(args.n):
                order = KINDS[i % 4 :] + KINDS[: i % 4]  # rotate who goes first
                for op in ("ADD", "DEL"):
                    for kind in order:
                        w, c = run.call(kind, op, f"{kind}{i}", pods[i], extra={"CNI_IFNAME": f"e{kind}"})
                        wall[kind][op].append(w)
                        cpu[kind][op].append(c)
            rows = []
            for op in ("ADD", "DEL"):
                ref_w, ref_c = Summary.of(wall["ref"][op]), Summary.of(cpu["ref"][op])
                for kind in KINDS:
                    w, c = Summary.of(wall[kind][op]), Summary.of(cpu[kind][op])
                    rows.append(
                        [
                            op,
                            LABEL[kind],
                            cell(wall[kind][op]),
                            fmt_ratio(w.median, ref_w.median),
                            fmt_ratio(w.p99, ref_w.p99),
                            fmt_ms(c.median),
                            fmt_ratio(c.median, ref_c.median),
                        ]
                    )
            print_table(
                f"CNI ADD/DEL latency ({args.n} each, interleaved; wall median (p99; p10–p90))",
                ["op", "design", "wall", "ratio p50", "ratio p99", "CPU p50", "CPU ratio"],
                rows,
            )
            # Sequential ADDs, timed per design in chunks of 10 taken in turn (so a burst of load
            # from the neighbours hits every design alike); each design's total is the sum.
            totals = dict.fromkeys(KINDS, 0.0)
            for start in range(0, args.seq, 10):
                chunk = range(start, min(start + 10, args.seq))
                for kind in KINDS[start // 10 % 4 :] + KINDS[: start // 10 % 4]:
                    t = time.perf_counter()
                    for i in chunk:
                        run.call(kind, "ADD", f"s{kind}{i}", pods[i % len(pods)], extra={"CNI_IFNAME": f"s{kind}"})
                    totals[kind] += time.perf_counter() - t
            for kind in KINDS:
                for i in range(args.seq):
                    run.call(kind, "DEL", f"s{kind}{i}", pods[i % len(pods)], extra={"CNI_IFNAME": f"s{kind}"})
            seq_rows = [[LABEL[k], f"{totals[k]:.2f} s", fmt_ratio(totals[k], totals["ref"])] for k in KINDS]
            print_table(
                f"{args.seq} sequential ADDs (wall time for all)", ["design", "total", "vs reference"], seq_rows
            )
            # more variants, for scale
            k = max(10, args.n // 2)
            venv_script = str(Path(sys.executable).parent / "kubelab-bridge")
            variants: list[tuple[str, str, dict[str, str], str | None]] = [
                ("(a′) as (a), kubelab-ipam exec'd as a second process", "a", {"KUBELAB_CNI_EXEC_IPAM": "1"}, None),
                ("(a″) as (a), via pip's console script (venv python with site)", "a", {}, venv_script),
            ]
            ref_median = Summary.of(wall["ref"]["ADD"]).median
            vrows = []
            for name, kind, extra, exe in variants:
                samples = []
                for i in range(k):
                    samples.append(
                        run.call(kind, "ADD", f"v{i}", pods[i], exe=exe, extra={"CNI_IFNAME": "ev", **extra})[0]
                    )
                    run.call(kind, "DEL", f"v{i}", pods[i], extra={"CNI_IFNAME": "ev"})
                x = Summary.of(samples)
                vrows.append([name, fmt_ms(x.median), fmt_ms(x.p99), fmt_ratio(x.median, ref_median)])
            floor = Summary.of(thick_lower_bound(k, tmp))
            vrows.append(
                [
                    "thick client that does no work (floor of (b))",
                    fmt_ms(floor.median),
                    fmt_ms(floor.p99),
                    fmt_ratio(floor.median, ref_median),
                ]
            )
            base = Summary.of(timed_exec([base_interpreter(), "-IS", "-c", "pass"], k))
            vrows.append(
                ["`python -IS -c pass`", fmt_ms(base.median), fmt_ms(base.p99), fmt_ratio(base.median, ref_median)]
            )
            pr = Summary.of(timed_exec([sys.executable, "-c", "import pyroute2"], max(3, k // 5)))
            vrows.append(
                ["`python -c 'import pyroute2'`", fmt_ms(pr.median), fmt_ms(pr.p99), fmt_ratio(pr.median, ref_median)]
            )
            print_table(
                f"More ADD exec paths, for scale ({k} each; ratio to the reference ADD p50 above)",
                ["variant", "p50", "p99", "vs reference"],
                vrows,
            )
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
            setns(own_ns, "the benchmark's own namespace")
            os.close(own_ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
