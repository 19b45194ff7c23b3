"""Store benchmark: our backends beside the raw store they sit on, measured in the same run.

Anchors (DESIGN.md §5, figures.md: "raw etcd"):
- sqlite: Python's ``sqlite3`` with the pragmas ``SqliteStore`` uses (WAL, synchronous=FULL), one
  ``INSERT`` + ``COMMIT`` per operation, two ways: a connection per client thread (SQLite's own
  busy-wait locking decides who writes) and one shared connection behind a lock (no busy-waiting,
  still one fsync per write — the best a commit-per-write design can do).
- etcd: a plain ``PUT`` per operation through the same gRPC gateway (``/v3/kv/put``) over one
  keep-alive ``http.client`` connection per client (the HTTP stack EtcdStore's writes use) — the
  cheapest write etcd offers over HTTP, without our compare-and-swap ``Txn``.
Ours: ``SqliteStore.create`` and ``EtcdStore.create`` (create-if-absent, durable on return), at
1, 16 and 64 concurrent client threads, alternating with the anchors; then listing 10,000 keys;
then the delay from a create's acknowledgement to its delivery to 100 ``WatchCache`` subscribers,
beside a single direct store watch.

Run: ``python -m tests.bench.bench_store [--scale 0.2]`` (``--scale`` multiplies the operation
counts; 1.0 takes about a minute and a half here). etcd rows are skipped if etcd is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import shutil
import sqlite3
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from controlplane.apiserver.watchcache import Subscription, WatchCache
from controlplane.storage.etcd import EtcdStore
from controlplane.storage.sqlite import SqliteStore
from tests.bench.stats import Summary, fmt_ms, fmt_ratio, print_table
from tests.helpers.etcd import start_etcd

CLIENTS = (1, 16, 64)
OPS = {1: 400, 16: 1600, 64: 3200}  # per run at --scale 1
LIST_N = 10_000

# A realistic pod, ~1.2 KB of JSON, like the API server stores.
POD = orjson.dumps(
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "bench",
            "namespace": "default",
            "uid": "6f1a2b3c-0000-4000-8000-000000000000",
            "labels": {"app": "bench", "tier": "web"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "192.168.56.1:5000/kubelab/hello:latest",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "Always",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": True,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            ],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
)


class Result:
    def __init__(self, ops: int, elapsed: float, latencies: list[float]) -> None:
        self.ops = ops
        self.rate = ops / elapsed if elapsed > 0 else float("nan")
        self.latencies = latencies
        self.lat = Summary.of(latencies)
        self.rates = [self.rate]

    @classmethod
    def merge(cls, runs: list[Result]) -> Result:
        """Rounds of one configuration: median rate, min–max spread, pooled latencies."""
        out = cls(1, 1.0, [x for r in runs for x in r.latencies])
        out.rates = sorted(r.rate for r in runs)
        out.rate = statistics.median(out.rates)
        out.ops = sum(r.ops for r in runs)
        return out


ROUNDS = 3


def rounds(*runs: Callable[[int], Result]) -> list[Result]:
    """Alternate the anchors and ours, ROUNDS times each, so machine noise hits all alike."""
    results: list[list[Result]] = [[] for _ in runs]
    for r in range(ROUNDS):
        for i, run in enumerate(runs):
            results[i].append(run(r))
    return [Result.merge(rs) for rs in results]


def drive(clients: int, total: int, op: Callable[[int, int], object]) -> Result:
    """Run ``total`` operations split over ``clients`` threads; op(thread, i)."""
    per = max(1, total // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        lat = latencies[t]
        barrier.wait()
        try:
            for i in range(per):
                t0 = time.perf_counter()
                op(t, i)
                lat.append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return Result(per * clients, elapsed, [x for lat in latencies for x in lat])


# -- sqlite -----------------------------------------------------------------------------------


def raw_sqlite(path: Path, clients: int, total: int, run_id: str) -> Result:
    conns: list[sqlite3.Connection] = []
    for _ in range(clients):
        c = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        conns.append(c)
    conns[0].execute("CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)")

    def op(t: int, i: int) -> None:
        c = conns[t]
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO kv (name, value) VALUES (?, ?)", (f"/registry/pods/{run_id}/{t}/{i}", POD))
        c.execute("COMMIT")

    try:
        return drive(clients, total, op)
    finally:
        for c in conns:
            c.close()


def raw_sqlite_shared(path: Path, clients: int, total: int, run_id: str) -> Result:
    """One connection, a Python lock around each INSERT+COMMIT: no busy-waiting, still one fsync each."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    lock = threading.Lock()

    def op(t: int, i: int) -> None:
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO kv (name, value) VALUES (?, ?)", (f"/registry/pods/{run_id}/{t}/{i}", POD))
            conn.execute("COMMIT")

    try:
        return drive(clients, total, op)
    finally:
        conn.close()


def ours_sqlite(store: SqliteStore, clients: int, total: int, run_id: str) -> Result:
    return drive(clients, total, lambda t, i: store.create(f"/registry/pods/{run_id}/{t}/{i}", POD))


# -- etcd -------------------------------------------------------------------------------------


def raw_etcd(endpoint: str, clients: int, total: int, run_id: str, tls: ssl.SSLContext | None = None) -> Result:
    # One keep-alive http.client connection per client thread: the same cheap HTTP stack
    # EtcdStore's writes use (requests costs ~1 ms of CPU per call, which would make the anchor,
    # not etcd, the bottleneck). ``tls``: for an https endpoint (HTTPSConnection, as EtcdStore).
    host, _, port = endpoint.split("//", 1)[1].partition(":")
    value = base64.b64encode(POD).decode()
    conns: list[http.client.HTTPConnection] = [
        http.client.HTTPSConnection(host, int(port), timeout=30, context=tls)
        if tls is not None
        else http.client.HTTPConnection(host, int(port), timeout=30)
        for _ in range(clients)
    ]

    def op(t: int, i: int) -> None:
        key = base64.b64encode(f"/raw/{run_id}/{t}/{i}".encode()).decode()
        conn = conns[t]
        conn.request("POST", "/v3/kv/put", orjson.dumps({"key": key, "value": value}))
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"etcd put answered {r.status}")

    try:
        return drive(clients, total, op)
    finally:
        for conn in conns:
            conn.close()


def raw_etcd_grpc(
    endpoint: str, clients: int, total: int, run_id: str, tls: tuple[Path, Path, Path] | None = None
) -> Result:
    """Raw puts over etcd's native gRPC API — the cheapest client Python has: ``clients`` coroutines
    on one asyncio loop sharing one HTTP/2 channel (grpcio's C core does the wire work), with the
    stubs ``aetcd`` generates from etcd's ``rpc.proto``. ``tls``: (CA, client certificate, key) for an
    https endpoint."""
    import grpc
    import grpc.aio
    from aetcd import rpc

    target = endpoint.split("//", 1)[1]
    per = max(1, total // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]

    async def main() -> float:
        if tls is None:
            channel = grpc.aio.insecure_channel(target)
        else:
            ca, cert, key = (p.read_bytes() for p in tls)
            channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert))
        kv = rpc.KVStub(channel)
        await kv.Range(rpc.RangeRequest(key=b"warm"))  # connected before the clock starts

        async def worker(t: int) -> None:
            lat = latencies[t]
            for i in range(per):
                t0 = time.perf_counter()
                await kv.Put(rpc.PutRequest(key=f"/raw/{run_id}/{t}/{i}".encode(), value=POD))
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t) for t in range(clients)))
        elapsed = time.perf_counter() - t0
        await channel.close()
        return elapsed

    elapsed = asyncio.run(main())
    return Result(per * clients, elapsed, [x for lat in latencies for x in lat])


def ours_etcd(store: EtcdStore, clients: int, total: int, run_id: str) -> Result:
    return drive(clients, total, lambda t, i: store.create(f"/registry/pods/{run_id}/{t}/{i}", POD))


# -- list -------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int = 5) -> Summary:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Summary.of(samples)


# -- watch fan-out ----------------------------------------------------------------------------


def watch_lag(store: SqliteStore, watchers: int, events: int, clients: int = 16) -> tuple[Summary, Summary]:
    """Lag from a create's acknowledgement to its delivery: one direct store watch (the anchor)
    and ``watchers`` WatchCache subscribers on one asyncio loop (ours)."""
    events = max(1, events // clients) * clients  # what ``drive`` writes (readers wait for all)
    acked: dict[str, float] = {}
    direct: dict[str, float] = {}
    start = store.current_revision()
    cache = WatchCache(store, prefill=0)
    cache.start()
    loop = asyncio.new_event_loop()
    subs = [cache.subscribe("/registry/lag/", start, loop) for _ in range(watchers)]
    got: list[list[float]] = [[] for _ in subs]
    w = store.watch("/registry/lag/", start)

    def direct_reader() -> None:
        n = 0
        while n < events:
            batch = w.next_batch(timeout=5)
            now = time.perf_counter()
            for ev in batch:
                direct[ev.key] = now
            n += len(batch)

    async def consume(i: int, sub: Subscription) -> None:
        lag = got[i]
        while len(lag) < events:
            batch = await sub.next(5)
            if not batch:
                raise RuntimeError(f"subscriber {i} stalled or closed: {sub.closed_reason}")
            now = time.perf_counter()
            for ev in batch:
                lag.append(now - acked.get(ev.key, now))  # an ack not yet recorded counts as 0

    def write() -> None:
        def op(t: int, i: int) -> None:
            key = f"/registry/lag/{t}/{i}"
            store.create(key, POD)
            acked[key] = time.perf_counter()

        drive(clients, events, op)

    reader = threading.Thread(target=direct_reader)
    reader.start()
    writer = threading.Thread(target=write)
    writer.start()
    try:

        async def all_subscribers() -> None:
            await asyncio.gather(*(consume(i, s) for i, s in enumerate(subs)))

        loop.run_until_complete(all_subscribers())
    finally:
        writer.join()
        reader.join()
        w.close()
        cache.stop()
        loop.close()
    anchor = [max(0.0, direct[k] - acked[k]) for k in acked if k in direct]
    ours = [max(0.0, x) for lag in got for x in lag]
    return Summary.of(anchor), Summary.of(ours)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply operation counts")
    args = ap.parse_args()
    ops = {c: max(c, int(n * args.scale)) for c, n in OPS.items()}
    list_n = max(100, int(LIST_N * min(args.scale, 1.0)))
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-bench-store-"))
    rows: list[list[str]] = []
    list_rows: list[list[str]] = []
    try:
        # sqlite
        raw_path = tmp / "raw.db"
        store = SqliteStore(tmp / "ours.db")
        try:
            for c in CLIENTS:
                n = max(c, ops[c] // ROUNDS)
                anchor, shared, ours = rounds(
                    lambda r, c=c, n=n: raw_sqlite(raw_path, c, n, f"c{c}r{r}"),  # type: ignore[misc]
                    lambda r, c=c, n=n: raw_sqlite_shared(raw_path, c, n, f"s{c}r{r}"),  # type: ignore[misc]
                    lambda r, c=c, n=n: ours_sqlite(store, c, n, f"c{c}r{r}"),  # type: ignore[misc]
                )
                rows.append(_row("sqlite (raw: connection per client)", c, anchor, ours))
                rows.append(_row("sqlite (raw: one connection + lock)", c, shared, ours))
            # list: fill up to list_n keys under one prefix
            for i in range(list_n):
                store.create(f"/registry/pods/list/p{i:05d}", POD)
            conn = sqlite3.connect(raw_path)
            conn.executemany(
                "INSERT INTO kv (name, value) VALUES (?, ?)",
                [(f"/registry/pods/list/p{i:05d}", POD) for i in range(list_n)],
            )
            conn.commit()
            anchor_list = timed(
                lambda: conn.execute(
                    "SELECT name, value FROM kv WHERE name >= ? AND name < ? ORDER BY name",
                    ("/registry/pods/list/", "/registry/pods/list0"),
                ).fetchall()
            )
            conn.close()
            ours_list = timed(lambda: store.list("/registry/pods/list/"))
            list_rows.append(_list_row("sqlite", list_n, anchor_list, ours_list, "SELECT … ORDER BY name"))
        finally:
            store.close()

        # etcd
        if shutil.which("etcd") is None:
            print("\n(etcd not installed: etcd rows skipped)")
        else:
            etcd = start_etcd(tmp)
            try:
                est = EtcdStore([etcd.endpoint])
                try:
                    for c in CLIENTS:
                        n = max(c, ops[c] // ROUNDS)
                        anchor, ours = rounds(
                            lambda r, c=c, n=n: raw_etcd(etcd.endpoint, c, n, f"c{c}r{r}"),  # type: ignore[misc]
                            lambda r, c=c, n=n: ours_etcd(est, c, n, f"c{c}r{r}"),  # type: ignore[misc]
                        )
                        rows.append(_row("etcd", c, anchor, ours))
                    drive(16, list_n, lambda t, i: est.create(f"/registry/pods/list/p{t:02d}{i:05d}", POD))
                    http = httpx.Client(timeout=60)
                    b64 = base64.b64encode

                    def raw_range() -> None:
                        payload = {
                            "key": b64(b"/registry/pods/list/").decode(),
                            "range_end": b64(b"/registry/pods/list0").decode(),
                        }
                        r = http.post(f"{etcd.endpoint}/v3/kv/range", content=orjson.dumps(payload))
                        body = orjson.loads(r.content)
                        assert len(body["kvs"]) >= list_n // 16 * 16

                    anchor_list = timed(raw_range)
                    ours_list = timed(lambda: est.list("/registry/pods/list/"))
                    http.close()
                    list_rows.append(_list_row("etcd", list_n, anchor_list, ours_list, "one /v3/kv/range"))
                finally:
                    est.close()
            finally:
                etcd.stop()
        store = SqliteStore(tmp / "watch.db")
        try:
            n_events = max(200, int(2000 * min(args.scale, 1.0)))
            anchor_lag, ours_lag = watch_lag(store, 100, n_events)
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print_table(
        f"Store creates: ours beside the raw store (same run; median of {ROUNDS} alternating rounds, min–max)",
        [
            "backend",
            "clients",
            "raw ops/s",
            "ours ops/s",
            "ours/raw",
            "raw p50 / p99",
            "ours p50 / p99",
        ],
        rows,
    )
    print_table(
        f"List {list_n:,} keys (median of 5; p10–p90)",
        ["backend", "keys", "raw", "ours", "ours/raw", "raw is"],
        list_rows,
    )
    print_table(
        f"Watch delivery lag, sqlite, {n_events:,} creates from 16 clients (ack → delivery)",
        ["path", "watchers", "p50", "p90", "p99"],
        [
            [
                "raw: one direct SqliteStore watch",
                "1",
                fmt_ms(anchor_lag.median),
                fmt_ms(anchor_lag.p90),
                fmt_ms(anchor_lag.p99),
            ],
            [
                "ours: WatchCache subscribers (one loop)",
                "100",
                fmt_ms(ours_lag.median),
                fmt_ms(ours_lag.p90),
                fmt_ms(ours_lag.p99),
            ],
        ],
    )


def _rate(r: Result) -> str:
    return f"{r.rate:,.0f} ({r.rates[0]:,.0f}–{r.rates[-1]:,.0f})"


def _row(backend: str, clients: int, anchor: Result, ours: Result) -> list[str]:
    return [
        backend,
        str(clients),
        _rate(anchor),
        _rate(ours),
        fmt_ratio(ours.rate, anchor.rate),
        f"{fmt_ms(anchor.lat.median)} / {fmt_ms(anchor.lat.p99)}",
        f"{fmt_ms(ours.lat.median)} / {fmt_ms(ours.lat.p99)}",
    ]


def _list_row(backend: str, n: int, anchor: Summary, ours: Summary, what: str) -> list[str]:
    return [
        backend,
        f"{n:,}",
        f"{fmt_ms(anchor.median)} ({fmt_ms(anchor.p10)}–{fmt_ms(anchor.p90)})",
        f"{fmt_ms(ours.median)} ({fmt_ms(ours.p10)}–{fmt_ms(ours.p90)})",
        fmt_ratio(ours.median, anchor.median),
        what,
    ]


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
