"""API server benchmark: pod creates, a 10,000-pod list and watch fan-out, beside the raw store.

Issue 2's goals for the table: ≥ 1,000 pod creates/s on sqlite with p99 ≤ 50 ms at 64 clients;
a list of 10,000 pods ≤ 0.5 s; watch lag p99 ≤ 100 ms with 100 watchers. Kubernetes' own SLO is
p99 ≤ 1 s for a mutating call.

Anchors (measured in the same run, DESIGN.md §5): the raw store write rate at the same client
counts — sqlite ``INSERT``+``COMMIT`` (WAL, synchronous=FULL, one shared connection) and etcd ``PUT``
through its gateway — reusing ``bench_store``'s anchor functions.

Ours: the real ``kubelab apiserver`` subprocess over HTTPS with the admin client certificate.
The load generator is a small raw-asyncio HTTP/1.1 client (persistent TLS connections, one per
simulated client) so that client-side Python overhead stays well below the server's: on a 2-core
machine both share the CPU, which this table does not hide.

Run: ``python -m tests.bench.bench_apiserver [--scale 0.2] [--stores sqlite,etcd]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import tempfile
import time
from pathlib import Path

import orjson

from tests.bench.bench_store import Result, raw_etcd, raw_sqlite_shared
from tests.bench.stats import Summary, fmt_ms, fmt_ratio, print_table
from tests.helpers.apiserver import RunningApiServer, start_apiserver

CLIENTS = (1, 16, 64)
OPS = {1: 300, 16: 1600, 64: 3200}
LIST_N = 10_000
WATCHERS = 100
WATCH_EVENTS = 300


def pod_body(name: str, namespace: str) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench", "tier": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "kubelab/hello:latest",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    }
                ]
            },
        }
    )


class Conn:
    """One persistent HTTP/1.1 connection over TLS; requests in sequence."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, srv: RunningApiServer, ctx: ssl.SSLContext) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx, limit=1 << 24)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        code = int(status_line.split()[1])
        length = -1
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            return code, b"".join(parts)
        return code, await self.reader.readexactly(length) if length > 0 else b""

    def close(self) -> None:
        self.writer.close()


def tls(srv: RunningApiServer) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.ca_file))
    ctx.load_cert_chain(str(srv.cert_file), str(srv.key_file))
    return ctx


async def create_pods(srv: RunningApiServer, clients: int, total: int, namespace: str, prefix: str) -> Result:
    ctx = tls(srv)
    conns = [await Conn.open(srv, ctx) for _ in range(clients)]
    per = max(1, total // clients)
    latencies: list[float] = []
    path = f"/api/v1/namespaces/{namespace}/pods"

    async def worker(t: int) -> None:
        c = conns[t]
        for i in range(per):
            body = pod_body(f"{prefix}-{t}-{i}", namespace)
            t0 = time.perf_counter()
            code, resp = await c.request("POST", path, body)
            latencies.append(time.perf_counter() - t0)
            if code != 201:
                raise RuntimeError(f"create answered {code}: {resp[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(clients)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return Result(per * clients, elapsed, latencies)


async def ensure_namespace(srv: RunningApiServer, name: str) -> None:
    c = await Conn.open(srv, tls(srv))
    code, _ = await c.request("POST", "/api/v1/namespaces", orjson.dumps({"metadata": {"name": name}}))
    c.close()
    if code not in (201, 409):
        raise RuntimeError(f"namespace create answered {code}")


async def time_list(srv: RunningApiServer, namespace: str, repeat: int = 5) -> tuple[Summary, int]:
    c = await Conn.open(srv, tls(srv))
    samples = []
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        code, body = await c.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        doc = orjson.loads(body)  # a client has to parse it too
        samples.append(time.perf_counter() - t0)
        n = len(doc["items"])
        assert code == 200
    c.close()
    return Summary.of(samples), n


async def watch_lag(srv: RunningApiServer, namespace: str, watchers: int, events: int) -> Summary:
    """Per watcher and event: delivery time minus the create's acknowledgement time."""
    ctx = tls(srv)
    c = await Conn.open(srv, ctx)
    _code, body = await c.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    rv = orjson.loads(body)["metadata"]["resourceVersion"]
    c.close()
    acked: dict[str, float] = {}
    seen: list[dict[str, float]] = [{} for _ in range(watchers)]
    ready = 0

    async def watcher(w: int) -> None:
        nonlocal ready
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx, limit=1 << 24)
        writer.write(
            f"GET /api/v1/namespaces/{namespace}/pods?watch=1&resourceVersion={rv}&timeoutSeconds=120 HTTP/1.1\r\n"
            "Host: x\r\n\r\n".encode()
        )
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        ready += 1
        buf = b""
        got = seen[w]
        while len(got) < events:
            size = int((await reader.readline()).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            buf += data[:-2]
            *lines, buf = buf.split(b"\n")
            now = time.perf_counter()
            for line in lines:
                if line:
                    ev = orjson.loads(line)
                    got[ev["object"]["metadata"]["name"]] = now
        writer.close()

    tasks = [asyncio.ensure_future(watcher(w)) for w in range(watchers)]
    while ready < watchers:
        await asyncio.sleep(0.01)
    conns = [await Conn.open(srv, ctx) for _ in range(8)]

    async def writer_task(t: int) -> None:
        for i in range(t, events, len(conns)):
            name = f"w-{i}"
            code, _ = await conns[t].request("POST", f"/api/v1/namespaces/{namespace}/pods", pod_body(name, namespace))
            acked[name] = time.perf_counter()
            assert code == 201
            await asyncio.sleep(0.005)  # a steady stream, not one burst

    await asyncio.gather(*(writer_task(t) for t in range(len(conns))))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    for cc in conns:
        cc.close()
    lags = [max(0.0, got[name] - acked[name]) for got in seen for name in got if name in acked]
    return Summary.of(lags)


def anchor(store: str, data_dir: Path, etcd_endpoint: str | None, clients: int, total: int, run: str) -> Result:
    if store == "sqlite":
        return raw_sqlite_shared(data_dir / "anchor.db", clients, total, run)
    assert etcd_endpoint is not None
    return raw_etcd(etcd_endpoint, clients, total, run)


def run_store(store: str, scale: float, rows: dict[str, list[list[str]]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-apiserver-{store}-"))
    etcd = None
    endpoints: list[str] | None = None
    if store == "etcd":
        from tests.helpers.etcd import start_etcd

        etcd = start_etcd(tmp / "etcd")
        endpoints = [etcd.endpoint]
    srv = start_apiserver(tmp, store=store, etcd_endpoints=endpoints)
    try:
        # the anchor's sqlite table
        if store == "sqlite":
            import sqlite3

            conn = sqlite3.connect(tmp / "anchor.db")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)")
            conn.close()
        asyncio.run(ensure_namespace(srv, "bench"))
        for clients in CLIENTS:
            total = max(clients, int(OPS[clients] * scale))
            ours: list[Result] = []
            anchors: list[Result] = []
            for r in range(3):  # alternate, so machine noise hits both alike
                anchors.append(
                    anchor(store, tmp, endpoints[0] if endpoints else None, clients, total, f"a{clients}-{r}")
                )
                ours.append(asyncio.run(create_pods(srv, clients, total, "bench", f"c{clients}-{r}")))
            a, o = Result.merge(anchors), Result.merge(ours)
            s = Summary.of(o.latencies)
            rows["create"].append(
                [
                    store,
                    str(clients),
                    f"{o.rate:,.0f}/s ({min(o.rates):,.0f}–{max(o.rates):,.0f})",
                    fmt_ms(s.median),
                    fmt_ms(s.p99),
                    f"{a.rate:,.0f}/s",
                    fmt_ratio(o.rate, a.rate),
                ]
            )
        # list of 10,000 pods
        n_list = max(100, int(LIST_N * scale)) if scale < 1 else LIST_N
        asyncio.run(ensure_namespace(srv, "bench-list"))
        asyncio.run(create_pods(srv, 64, n_list, "bench-list", "l"))
        summary, n = asyncio.run(time_list(srv, "bench-list"))
        rows["list"].append([store, f"{n:,}", fmt_ms(summary.median), f"{fmt_ms(summary.p10)}–{fmt_ms(summary.p90)}"])
        # watch fan-out
        asyncio.run(ensure_namespace(srv, "bench-watch"))
        events = max(20, int(WATCH_EVENTS * scale))
        lag = asyncio.run(watch_lag(srv, "bench-watch", WATCHERS, events))
        rows["watch"].append([store, str(WATCHERS), str(events), fmt_ms(lag.median), fmt_ms(lag.p99), str(lag.n)])
    finally:
        srv.stop()
        if etcd is not None:
            etcd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--stores", default="sqlite,etcd")
    args = ap.parse_args()
    rows: dict[str, list[list[str]]] = {"create": [], "list": [], "watch": []}
    for store in args.stores.split(","):
        try:
            run_store(store, args.scale, rows)
        except FileNotFoundError as e:  # etcd not installed
            print(f"(skipping {store}: {e})")
    print_table(
        "API server: pod create throughput and latency (HTTPS, admin cert) vs the raw store write",
        ["store", "clients", "ours creates/s (min–max of 3)", "p50", "p99", "raw store writes/s", "ours/raw"],
        rows["create"],
    )
    print_table(
        "API server: list all pods of a namespace (incl. client JSON parse)",
        ["store", "pods", "median", "p10–p90"],
        rows["list"],
    )
    print_table(
        "API server: watch fan-out, create acknowledged → event delivered",
        ["store", "watchers", "events", "lag p50", "lag p99", "samples"],
        rows["watch"],
    )


if __name__ == "__main__":
    main()
