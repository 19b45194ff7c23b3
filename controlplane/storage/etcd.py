"""``EtcdStore``: the ``Store`` interface on a real etcd v3, through etcd's gRPC gateway (JSON) and,
for creates, its native gRPC API.

Role: ``--store etcd``. Revisions are etcd's own, 1:1: our global revision is etcd's store
revision, a key's ``mod_revision``/``create_revision`` are etcd's, so a ``resourceVersion`` means
the same thing here as in Kubernetes on etcd.

Client choice: ``etcd3gw`` (maintained, OpenStack) speaks the gateway etcd 3.4 serves at
``/v3/``. We use it for the key-value calls: every write is one ``Txn`` (``Etcd3Client.
transaction``) whose compares give us compare-and-swap exactly as Kubernetes' etcd3 store does:
- create:  ``create_revision(key) == 0`` → put
- update:  ``create_revision(key) > 0 AND mod_revision(key) == expected`` → put, else range
- delete:  ``create_revision(key) > 0 [AND mod_revision(key) == expected]`` → delete (prev_kv),
  else range; the failure branch's range tells ``KeyNotFoundError`` from ``ConflictError``.
What etcd3gw lacks, and how we fill it:
- compaction: it has no method, so we post ``/v3/kv/compaction`` through its generic ``post``.
- watch: its ``Watcher`` drops ``canceled``/``compact_revision`` responses (a watch on compacted
  history would hang silently instead of giving 410) and stops a stream by reaching into a
  private socket; so watches stream ``/v3/watch`` themselves (``EtcdWatch``: our own HTTP/1.1
  client, ``etcdhttp``), parse every response, and are woken on ``close`` by shutting their
  socket down.
- large lists: its ``post`` decodes with the stdlib ``json`` via ``requests``; ranges (``list``)
  go through the keep-alive pool below + ``orjson``, paged by key at one pinned revision, which
  is several times faster for 10,000 objects (measured by ``tests/bench/bench_store.py``).
- per-request cost: ``requests`` spends ~1 ms of Python per call; the write transactions and
  ranges go through a small keep-alive pool of ``etcdhttp.GatewayConnection`` with orjson instead
  (same requests, same error mapping: ``_GatewayPool``), over TLS as over plain HTTP. Issue 17
  measured the client CPU of ``store.create`` at 240 µs with ``http.client``, 93 µs with it.

Creates (``create_nowait``, the API server's hot path) go over etcd's native gRPC API instead
(``etcdgrpc``: one HTTP/2 connection, a hand-encoded ``TxnRequest``, the same compare-and-put).
Issue 17 measured why: through the gateway etcd spends ~570 µs of its own CPU on a create and its
watch event (``jsonpb`` decodes the JSON, re-scanning the base64 value at every nesting level, then
calls etcd's gRPC server over loopback); natively ~270 µs. grpcio's Python client was tried first
and reverted: ~150-190 µs of Python per call and a poller thread cost the API server more than
etcd saved, as did the ``h2`` library (~170 µs per call). The small client of ``etcdgrpc`` costs
less than the HTTP/1.1 writer it replaced, and sends the creates of one event-loop turn together.
A create it cannot carry (a value over one HTTP/2 frame, a connection down, a stream refused,
no answer within the timeout) takes the blocking gateway ``create`` on a fallback thread, with its
failover, as before. Everything else (reads, updates, deletes, watches) stays on the gateway.

TLS (kube-apiserver's ``--etcd-cafile``/``--etcd-certfile``/``--etcd-keyfile``): ``https://``
endpoints are verified against the CA given (the system's CAs if none) and shown the client
certificate, on every transport alike: one ``ssl.SSLContext`` serves the ``_GatewayPool`` and the
watches (``etcdhttp``), the ``httpx`` client (health) and, through the same files, the
``requests`` session of etcd3gw (compaction and the rarer calls) and a second one, offering ALPN
``h2``, the gRPC creates. The files are read once, when the
store opens; a missing or unreadable one is a ``ValueError`` naming the file. Failover between
endpoints is the same as on plain HTTP: a member that refuses the connection or the handshake is
skipped for the next one.

Compaction mapping: our ``compact(R)`` forgets revisions ≤ R; etcd's ``compact(C)`` forgets
revisions < C. So we compact etcd at R+1 (clamped to the current revision, which etcd requires).

Concurrency: the HTTP pools are thread-safe; every method may be called from any thread. Each
watch owns one streaming connection, read by its consumer inside ``next_batch`` (no thread).
A watch whose stream breaks (etcd restarted, connection lost) raises ``StoreError`` from
``next_batch``; the caller re-watches from its last revision.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import httpx
import orjson
import requests
import requests.adapters
from etcd3gw import exceptions as etcd_exc

from controlplane.storage.etcdgrpc import GrpcCreateWriter
from controlplane.storage.etcdhttp import GatewayConnection, StreamParser
from controlplane.storage.interface import (
    CompactedError,
    ConflictError,
    CreateDone,
    Event,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StoreError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)

_KVs = list[KeyValue]

#: Gateway calls made through ``_GatewayPool`` (the per-request ones); the rest use etcd3gw.
_FAST_PATHS = frozenset({"/kv/txn", "/kv/range"})

#: Keys per range request when listing (paging bounds each gateway response to ~10-20 MB).
PAGE = 10_000
MAX_BATCH = 10_000


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode("ascii")


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _key_b64(prefix: str) -> str:
    """The range start for a prefix (etcd rejects an empty key; "\\0" starts the key space)."""
    return _b64(prefix or "\0")


def _range_end_b64(prefix: str) -> str:
    """etcd's range_end for a prefix: the prefix with its last byte incremented (base64)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return base64.b64encode(bytes(raw)).decode("ascii")
        raw.pop()
    return _b64(b"\0")


def _kv(d: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(d["key"]).decode(),
        value=_unb64(d.get("value")),
        create_revision=int(d.get("create_revision", 0)),
        mod_revision=int(d.get("mod_revision", 0)),
    )


class _GatewayPool:
    """Keep-alive ``GatewayConnection``s to one gateway endpoint, HTTP or TLS (thread-safe).

    The hot calls (every write's ``Txn``, single-key reads) go through this instead of etcd3gw's
    ``requests`` session: the same request and the same answer, for about a fifth of the client
    CPU (``requests`` costs ~1 ms of Python per call, which on a 2-core machine is the API
    server's whole budget for a create). Errors map as etcd3gw's ``post`` maps them, so ``_call``
    treats both paths alike. A pooled connection the server closed while idle is noticed before
    reuse (it reads as ready) and replaced; a request is never sent twice.
    """

    def __init__(self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._tls = tls  # None: plain HTTP
        self._idle: list[GatewayConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self) -> GatewayConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return GatewayConnection(self._host, self._port, self._timeout, self._tls)
            if conn.idle_and_open():
                return conn
            # Closed by the server, or (TLS) a late record such as a session ticket: either way a
            # fresh connection is safe, and the request has not been sent yet.
            conn.close()

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        try:
            conn = self._connection()
            status, reason, data = conn.post(path, body)
        except TimeoutError as exc:
            raise etcd_exc.ConnectionTimeoutError(str(exc)) from exc
        except (OSError, ValueError) as exc:  # refused, reset, TLS handshake, not HTTP
            raise etcd_exc.ConnectionFailedError(str(exc) or repr(exc)) from exc
        if not conn.closed:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
        if status != 200:
            raise etcd_exc.Etcd3Exception(data.decode("utf-8", "replace"), reason)
        result: dict[str, Any] = orjson.loads(data) if data else {}
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _readable(what: str, path: str | Path) -> str:
    """``path`` as a string once it is known to be a readable file, else a ``ValueError`` naming it."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ValueError(f"etcd {what} {path}: {exc.strerror or exc}") from None
    return str(path)


def tls_context(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> ssl.SSLContext:
    """The client TLS context for ``https://`` endpoints: verify etcd against ``ca`` (the system's
    CAs if None) and present ``cert``/``key`` (both or neither). Bad files: ``ValueError`` naming them."""
    if (cert is None) != (key is None):
        raise ValueError("etcd client certificate and key go together (--etcd-certfile and --etcd-keyfile)")
    try:
        if ca is not None:
            ctx = ssl.create_default_context(cafile=_readable("CA file", ca))
        else:
            ctx = ssl.create_default_context()
    except ssl.SSLError as exc:
        raise ValueError(f"etcd CA file {ca}: not a PEM certificate ({exc.reason or exc})") from None
    if cert is not None and key is not None:
        certfile, keyfile = _readable("client certificate file", cert), _readable("client key file", key)
        try:
            ctx.load_cert_chain(certfile, keyfile)
        except ssl.SSLError as exc:
            raise ValueError(
                f"etcd client certificate {cert} with key {key}: cannot load them ({exc.reason or exc};"
                " PEM files of one key pair expected)"
            ) from None
    return ctx


class EtcdStore:
    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float = 30.0,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
    ) -> None:
        """``ca``/``cert``/``key``: PEM files for ``https://`` endpoints (kube-apiserver's
        ``--etcd-cafile``/``--etcd-certfile``/``--etcd-keyfile``); read and checked here."""
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint, like http://127.0.0.1:2379")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        for e in self._endpoints:
            parts = urlsplit(e)
            try:
                port = parts.port
            except ValueError:
                port = None
            if parts.scheme not in ("http", "https") or not parts.hostname or not port:
                raise ValueError(f"etcd endpoint must look like http://HOST:PORT, got {e!r}")
        self._timeout = timeout
        uses_tls = any(urlsplit(e).scheme == "https" for e in self._endpoints)
        #: One context for every TLS connection this store makes (the pool's and httpx's).
        # (Files given for plain-HTTP endpoints are still checked: a wrong flag fails at startup.)
        given = ca is not None or cert is not None or key is not None
        self._tls: ssl.SSLContext | None = tls_context(ca, cert, key) if uses_tls or given else None
        self._current = 0  # index of the endpoint in use; moves on connection failure
        self._lock = threading.Lock()
        # requests' default pool keeps 10 connections: with more concurrent callers it would open
        # and drop a connection per request. Size it for the API server's worker threads.
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=128)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # Not the environment's: REQUESTS_CA_BUNDLE would override ``verify`` below, and an
        # HTTP(S)_PROXY must not carry etcd traffic (httpx clients are made the same way).
        self._session.trust_env = False
        if ca is not None:
            self._session.verify = str(ca)
        if cert is not None and key is not None:
            self._session.cert = (str(cert), str(key))
        self._clients = [self._make_client(e) for e in self._endpoints]
        # The hot calls go through a cheaper pool (see ``_GatewayPool``), TLS or not.
        self._pools = [
            _GatewayPool(
                urlsplit(e).hostname or "127.0.0.1",
                urlsplit(e).port or 2379,
                timeout,
                self._tls if urlsplit(e).scheme == "https" else None,
            )
            for e in self._endpoints
        ]
        self._http = self.http_client(
            timeout=timeout, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )
        self._closed = False
        self._writers: GrpcCreateWriter | None = None  # create_nowait's writer, started on first use
        self._fallback: ThreadPoolExecutor | None = None  # creates the writer hands back (blocking path)
        #: The gRPC writer's TLS context: the same files, offering ALPN h2 (the gateway's is HTTP/1.1).
        self._tls_h2: ssl.SSLContext | None = None
        if self._tls is not None:
            self._tls_h2 = tls_context(ca, cert, key)
            self._tls_h2.set_alpn_protocols(["h2"])
        self._watches: set[EtcdWatch] = set()
        self._call("/kv/range", {"key": _b64("/"), "limit": 1, "keys_only": True})  # reachable?

    def _make_client(self, endpoint: str) -> etcd3gw.Etcd3Client:
        parts = urlsplit(endpoint)
        return etcd3gw.Etcd3Client(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 2379,
            protocol=parts.scheme,
            timeout=self._timeout,
            api_path="/v3/",  # etcd >= 3.4; skips a /version round trip per client
            session=self._session,
        )

    @property
    def endpoint(self) -> str:
        return self._endpoints[self._current]

    def connection_target(self) -> tuple[str, int, ssl.SSLContext | None]:
        """(host, port, TLS context or None) of the endpoint in use, for a connection of one's own."""
        parts = urlsplit(self.endpoint)
        tls = self._tls if parts.scheme == "https" else None
        return parts.hostname or "127.0.0.1", parts.port or 2379, tls

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx`` client that speaks to this store's endpoints (its TLS context, if any)."""
        if self._tls is not None:
            kwargs["verify"] = self._tls
        return httpx.Client(trust_env=False, **kwargs)

    # -- transport -------------------------------------------------------------------------

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one gateway call with etcd3gw, failing over to the next endpoint if unreachable."""
        if self._closed:
            raise RuntimeError("store is closed")
        last: Exception | None = None
        for _ in range(len(self._clients)):
            idx = self._current
            client = self._clients[idx]
            pool = self._pools[idx]
            try:
                if path in _FAST_PATHS:
                    return pool.post("/v3" + path, orjson.dumps(payload))
                if path == "/kv/txn":
                    res: dict[str, Any] = dict(client.transaction(payload))
                else:
                    res = client.post(client.get_url(path), json=payload)
                return res
            except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as exc:
                last = exc
                with self._lock:
                    if self._current == idx:
                        self._current = (idx + 1) % len(self._clients)
            except etcd_exc.Etcd3Exception as exc:
                raise _store_error(exc) from exc
        raise StoreUnavailableError(f"etcd unreachable at {', '.join(self._endpoints)}: {_detail(last)}")

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        res = self._call("/kv/range", {"key": _b64(key)})
        kvs = res.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[_KVs, int]:
        """Every key under ``prefix``, in pages, all read at the revision of the first page."""
        end = _range_end_b64(prefix)
        start = _key_b64(prefix)
        out: list[KeyValue] = []
        rev = 0
        while True:
            payload: dict[str, Any] = {"key": start, "range_end": end, "limit": PAGE}
            if rev:
                payload["revision"] = rev
            # Through the keep-alive pool (not httpx): admission lists small prefixes on every pod
            # create (LimitRanges, PriorityClasses, ResourceQuotas), and httpx's pool costs ~4× its
            # CPU per call and serialises callers on its lock (py-spy, issue 17); big pages parse
            # as fast either way (orjson).
            res = self._call("/kv/range", payload)
            if not rev:
                rev = int(res["header"]["revision"])
            kvs = res.get("kvs") or []
            out.extend(_kv(d) for d in kvs)
            if not res.get("more") or not kvs:
                return out, rev
            start = _b64(_unb64(kvs[-1]["key"]) + b"\0")

    def health(self, timeout: float = 2.0) -> str | None:
        """None when etcd serves a quorum read within ``timeout``, else why not (for /readyz).

        Kubernetes' etcd check does a linearizable Get: it needs a leader and a majority, so a
        member that is up but cut off from quorum is not healthy."""
        try:
            r = self._http.post(
                f"{self.endpoint}/v3/kv/range",
                content=orjson.dumps({"key": _b64("health")}),
                headers={"content-type": "application/json"},
                timeout=timeout,
            )
        except httpx.TimeoutException:
            return f"etcd did not answer a quorum read within {timeout:g}s: {QUORUM_LOST}"
        except httpx.HTTPError as exc:
            return f"etcd unreachable at {self.endpoint}: {exc}"
        if r.status_code != 200:
            return str(_store_error(etcd_exc.Etcd3Exception(r.text, r.reason_phrase)))
        return None

    def current_revision(self) -> int:
        res = self._call("/kv/range", {"key": _b64("\0"), "limit": 1, "keys_only": True})
        return int(res["header"]["revision"])

    # -- writes ----------------------------------------------------------------------------

    def create(self, key: str, value: bytes) -> int:
        _check_key(key)
        k = _b64(key)
        res = self._call(
            "/kv/txn",
            {
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
                "success": [{"request_put": {"key": k, "value": _b64(bytes(value))}}],
            },
        )
        if not res.get("succeeded"):
            raise KeyExistsError(key)
        return int(res["header"]["revision"])

    def create_nowait(self, key: str, value: bytes, done: CreateDone) -> None:
        """``create`` with the answer given to ``done`` on the writer's I/O thread (``NowaitCreates``).

        An etcd write is a network round trip: the API server hands it here and keeps its CPU
        work on its event loop, instead of running the whole request on a thread of its own. The
        writer sends it over etcd's native gRPC API (``etcdgrpc``: etcd spends half the CPU on it
        that the gateway does); what that cannot carry (a connection down, a value over one
        HTTP/2 frame) takes ``create`` on a fallback thread, with its failover.
        """
        _check_key(key)
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            if self._writers is None:
                self._writers = GrpcCreateWriter(self._grpc_target, self._timeout, self._hand_over, _message_error)
            writers = self._writers
        writers.submit(key, bytes(value), done)

    def _grpc_target(self) -> tuple[str, int, ssl.SSLContext | None]:
        host, port, tls = self.connection_target()
        return host, port, self._tls_h2 if tls is not None else None

    def _hand_over(self, key: str, value: bytes, done: CreateDone) -> None:
        with self._lock:
            if self._fallback is None:
                self._fallback = ThreadPoolExecutor(max_workers=4, thread_name_prefix="etcd-create")
            fallback = self._fallback
        fallback.submit(self._create_then, key, value, done)

    def _create_then(self, key: str, value: bytes, done: CreateDone) -> None:
        try:
            rev = self.create(key, value)
        except Exception as exc:
            done(None, exc)
            return
        done(rev, None)

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        _check_key(key)
        k = _b64(key)
        res = self._call(
            "/kv/txn",
            {
                "compare": [
                    {"key": k, "target": "CREATE", "result": "GREATER", "create_revision": 0},
                    {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected_revision},
                ],
                "success": [{"request_put": {"key": k, "value": _b64(bytes(value))}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if not res.get("succeeded"):
            raise self._cas_failure(key, expected_revision, res)
        return int(res["header"]["revision"])

    def delete(self, key: str, expected_revision: int | None = None) -> tuple[KeyValue, int]:
        _check_key(key)
        k = _b64(key)
        compare: list[dict[str, Any]] = [{"key": k, "target": "CREATE", "result": "GREATER", "create_revision": 0}]
        if expected_revision is not None:
            compare.append({"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected_revision})
        res = self._call(
            "/kv/txn",
            {
                "compare": compare,
                "success": [{"request_delete_range": {"key": k, "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if not res.get("succeeded"):
            raise self._cas_failure(key, expected_revision or 0, res)
        prev = res["responses"][0]["response_delete_range"].get("prev_kvs") or []
        if not prev:  # cannot happen: the compare said the key existed in this same txn
            raise StoreError(f"etcd deleted {key!r} without returning its previous value")
        return _kv(prev[0]), int(res["header"]["revision"])

    @staticmethod
    def _cas_failure(key: str, expected: int, res: dict[str, Any]) -> StoreError:
        kvs = (res.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return KeyNotFoundError(key)
        return ConflictError(key, expected, int(kvs[0].get("mod_revision", 0)))

    # -- history ---------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        current = self.current_revision()
        target = min(revision + 1, current)
        try:
            # physical=true: return once the compaction is applied, so a watch that starts
            # after compact() returns already sees it.
            self._call("/kv/compaction", {"revision": target, "physical": True})
        except CompactedError:
            pass  # already compacted at or past this point: nothing to do

    def watch(self, prefix: str, after_revision: int) -> EtcdWatch:
        if self._closed:
            raise RuntimeError("store is closed")
        # etcd accepts a watch on compacted history and only then cancels it; ask first, with a
        # cheap range at the first revision we need, so the caller gets CompactedError at once.
        try:
            self._call(
                "/kv/range",
                {"key": _key_b64(prefix), "limit": 1, "keys_only": True, "revision": after_revision + 1},
            )
        except CompactedError:
            raise CompactedError(after_revision, self._compaction_point(prefix, after_revision)) from None
        except StoreError as exc:
            if "future revision" not in str(exc):
                raise
        w = EtcdWatch(self, prefix, after_revision)
        with self._lock:
            self._watches.add(w)
        return w

    def _compaction_point(self, prefix: str, after_revision: int) -> int:
        """Our ``compacted`` (last forgotten revision): etcd names it when it cancels a watch."""
        w = EtcdWatch(self, prefix, after_revision)
        try:
            w.next_batch(timeout=2.0)
        except CompactedError as exc:
            return exc.compacted
        except StoreError:
            pass
        finally:
            w.close()
        return after_revision + 1

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            writers, self._writers = self._writers, None
        if writers is not None:
            writers.stop()  # queued creates finish (and call back) first
        if self._fallback is not None:
            self._fallback.shutdown(wait=True)
        self._closed = True
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.close()
        self._http.close()
        self._session.close()
        for pool in self._pools:
            pool.close()

    def _forget(self, w: EtcdWatch) -> None:
        with self._lock:
            self._watches.discard(w)


class EtcdWatch:
    """One ``/v3/watch`` stream, read by the caller of ``next_batch`` itself (no thread of its own).

    The connection is opened by the first ``next_batch`` (connect, the watch request, then the
    streamed answer); each call reads what etcd sent, with the caller's timeout, and parses it
    (``StreamParser``). Every event thus costs one wake-up of the consumer (the watch cache's pump),
    not a reader thread's and then the consumer's (issue 17: thread switches were a third of the
    API server's CPU per create on etcd). ``close`` from another thread shuts the socket down,
    which wakes a ``next_batch`` blocked in ``recv``; it then returns [].
    """

    def __init__(self, store: EtcdStore, prefix: str, after_revision: int) -> None:
        self._store = store
        self.prefix = prefix
        self.position = after_revision
        self._lock = threading.Lock()  # guards _closed and _conn against close() from another thread
        self._reading = threading.Lock()  # one next_batch at a time reads the stream
        self._events: deque[Event] = deque()
        self._error: StoreError | None = None
        self._closed = False
        self._conn: GatewayConnection | None = None
        self._parser = StreamParser()
        self._request = {
            "create_request": {
                "key": _key_b64(prefix),
                "range_end": _range_end_b64(prefix),
                "start_revision": after_revision + 1,
                "prev_kv": True,
            }
        }
        self._target = store.connection_target()

    def _open(self) -> GatewayConnection:
        host, port, tls = self._target
        conn = GatewayConnection(host, port, 10.0, tls)
        with self._lock:
            if self._closed:
                conn.close()
                raise _WatchClosed
            self._conn = conn
        conn.sock.sendall(
            b"POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, *_sized(orjson.dumps(self._request)))
        )
        return conn

    def _pull(self, deadline: float | None) -> None:
        """Read and parse until an event is queued or the deadline passes (raises on a broken stream)."""
        parser = self._parser
        conn = self._conn or self._open()
        while not self._events:
            for line in parser.messages():
                if line.strip():
                    self._handle(orjson.loads(line))
            if self._events:
                return
            if parser.status and parser.status != 200:
                raise StoreError(f"etcd watch failed: {parser.status} {parser.reason} {parser.rest()!r}")
            if parser.ended:
                raise StoreError("etcd closed the watch stream")
            if deadline is None:
                conn.sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                conn.sock.settimeout(remaining)
            try:
                data = conn.sock.recv(256 * 1024)
            except TimeoutError:
                return
            if self._closed:
                raise _WatchClosed
            if not data:
                raise StoreError("etcd closed the watch stream")
            parser.feed(data)

    def _handle(self, msg: dict[str, Any]) -> None:
        result = msg.get("result")
        if result is None:
            err = msg.get("error") or {}
            raise StoreError(f"etcd watch error: {err.get('message', msg)}")
        if result.get("canceled"):
            compact = int(result.get("compact_revision", 0))
            if compact:
                # etcd's compact_revision is the oldest revision it kept; ours is the last forgotten.
                raise CompactedError(self.position, compact - 1)
            raise StoreError(f"etcd canceled the watch: {result.get('cancel_reason', 'no reason given')}")
        raw_events = result.get("events")
        if not raw_events:
            return  # created / progress notifications
        batch: list[Event] = []
        for e in raw_events:
            kv = e["kv"]
            key = _unb64(kv["key"]).decode()
            rev = int(kv.get("mod_revision", 0))
            prev = e.get("prev_kv")
            prev_value = _unb64(prev.get("value")) if prev else None
            if e.get("type") == "DELETE":
                last = prev_value if prev_value is not None else b""
                batch.append(Event(EventType.DELETE, key, last, rev, prev_value))
            elif kv.get("version") == "1":
                batch.append(Event(EventType.CREATE, key, _unb64(kv.get("value")), rev, None))
            else:
                batch.append(Event(EventType.UPDATE, key, _unb64(kv.get("value")), rev, prev_value))
        self._events.extend(batch)

    def next_batch(self, timeout: float | None = None) -> list[Event]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._reading:
            try:
                return self._next(deadline)
            finally:
                if self._closed and self._conn is not None:
                    self._conn.close()  # closed while we read: the connection goes with it

    def _next(self, deadline: float | None) -> list[Event]:
        if self._closed:
            return []
        if not self._events:
            if self._error is not None:
                raise self._error
            try:
                self._pull(deadline)
            except _WatchClosed:
                return []
            except StoreError as exc:  # CompactedError too
                self._fail(exc)
            except Exception as exc:  # connection reset, socket shut down by close(), bad JSON …
                if self._closed:
                    return []
                self._fail(StoreError(f"etcd watch stream broke: {exc!r}"))
        if self._closed:
            return []
        if not self._events:
            if self._error is not None:
                raise self._error
            return []
        n = min(len(self._events), MAX_BATCH)
        out = [self._events.popleft() for _ in range(n)]
        self.position = out[-1].revision
        return out

    def _fail(self, exc: StoreError) -> None:
        if self._error is None:
            self._error = exc
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn = self._conn
        if conn is not None:
            conn.shutdown()  # wakes a next_batch blocked in recv(); it closes the connection
        if self._reading.acquire(blocking=False):  # nobody reading: close it here
            try:
                if self._conn is not None:
                    self._conn.close()
            finally:
                self._reading.release()
        self._store._forget(self)


class _WatchClosed(Exception):
    """``close`` was called while ``next_batch`` was opening or reading the stream."""


def _sized(body: bytes) -> tuple[int, bytes]:
    return len(body), body


def _detail(exc: BaseException | None) -> str:
    if isinstance(exc, etcd_exc.Etcd3Exception):
        return exc.detail_text or repr(exc)
    return repr(exc)


def _store_error(exc: etcd_exc.Etcd3Exception) -> StoreError:
    text = exc.detail_text or ""
    message = text
    with contextlib.suppress(Exception):
        message = orjson.loads(text).get("message", text)
    return _message_error(message or repr(exc))


def _message_error(message: str) -> StoreError:
    """The store's error for etcd's error message (the gateway's ``message``, gRPC's ``grpc-message``)."""
    if "required revision has been compacted" in message:
        return CompactedError(0, 0)
    if any(m in message for m in _NO_QUORUM):
        return StoreUnavailableError(f"{message}: {QUORUM_LOST}")
    return StoreError(f"etcd: {message}")


#: What etcd says when it cannot commit: no leader, or a proposal that no majority acknowledged in
#: time (etcd's request timeout), both the signs of a lost quorum (etcdserver/errors.go).
_NO_QUORUM = (
    "etcdserver: no leader",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "context deadline exceeded",
)
QUORUM_LOST = (
    "etcd has lost quorum (a majority of its members must be up to elect a leader and commit a write);"
    " writes are refused until enough members are back"
)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")
