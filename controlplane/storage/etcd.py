"""``EtcdStore``: the ``Store`` interface on a real etcd v3, over etcd's native gRPC API.

Role: ``--store etcd``. Revisions are etcd's own, 1:1: our global revision is etcd's store
revision, a key's ``mod_revision``/``create_revision`` are etcd's, so a ``resourceVersion`` means
the same thing here as in Kubernetes on etcd.

Wire: etcd's gRPC services (``etcdserverpb.KV`` and ``Watch``), the API kube-apiserver's etcd3
store uses, through ``grpcio``'s asyncio client and the message classes and stubs generated from
etcd's ``rpc.proto`` that the ``aetcd`` library ships (``aetcd.rpc``; we use only its generated
code, not its client). Every write is one ``Txn`` whose compares give compare-and-swap exactly as
Kubernetes' etcd3 store does (k8s.io/apiserver/pkg/storage/etcd3/store.go):
- create:  ``create_revision(key) == 0`` → put
- update:  ``create_revision(key) > 0 AND mod_revision(key) == expected`` → put, else range
- delete:  ``create_revision(key) > 0 [AND mod_revision(key) == expected]`` → delete (prev_kv),
  else range; the failure branch's range tells ``KeyNotFoundError`` from ``ConflictError``.
Why gRPC and not the JSON gateway this store used first: issue 17 measured etcd itself spending
~530–650 µs of CPU per create through the gateway (JSON decoding, then a loopback gRPC call inside
etcd, then the watch event re-encoded as JSON) against ~250–330 µs natively, on the same 2 cores
the API server needs; the client side is cheaper too (protobuf in C, HTTP/2 multiplexing many calls
on one connection instead of one HTTP/1.1 connection per call in flight).

TLS (kube-apiserver's ``--etcd-cafile``/``--etcd-certfile``/``--etcd-keyfile``): ``https://``
endpoints are verified against the CA given (the system's roots if none) and shown the client
certificate. The files are read and checked once, when the store opens; a missing or unreadable
one is a ``ValueError`` naming the file.

Failover (clientv3's behaviour, in small): calls go to the endpoint in use; a call that could not
reach it (connection refused or lost, the connect attempt timed out: gRPC ``UNAVAILABLE`` or
``DEADLINE_EXCEEDED`` without an etcd message) moves the store to the next endpoint and is tried
there. A connect attempt gives up after ``CONNECT_TIMEOUT`` and a connection that stops answering
keepalive pings is dropped after ``KEEPALIVE_TIME + KEEPALIVE_TIMEOUT``, so a member whose wire was
cut costs seconds, not the call's whole deadline. An error etcd itself answered (``etcdserver: …``)
is never retried elsewhere: a write that timed out in Raft may still commit.

Compaction mapping: our ``compact(R)`` forgets revisions ≤ R; etcd's ``compact(C)`` forgets
revisions < C. So we compact etcd at R+1 (clamped to the current revision, which etcd requires).

Concurrency: every gRPC call runs on one process-wide I/O thread with its own asyncio loop
(``_IoLoop``); grpc's asyncio channels belong to the loop they were made on, and one loop serves
every store of the process. The store's methods may be called from any thread: a blocking method
hands its coroutine to the loop and waits for it; ``create_nowait`` hands it over and returns (the
loop is woken once for however many creates arrive before it runs); each watch is a task on the
loop that appends events to the watch's queue, which ``next_batch`` waits on. A watch whose stream
breaks raises ``StoreError`` from ``next_batch``; the caller re-watches from its last revision.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import ssl
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import grpc.aio
from aetcd import rpc

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

_T = TypeVar("_T")
_KVs = list[KeyValue]

#: Keys per range request when listing (bounds each response to ~10-20 MB).
PAGE = 10_000
MAX_BATCH = 10_000

#: Seconds a connect attempt may take before the call fails over (gRPC's default is 20 s).
CONNECT_TIMEOUT = 2.0
#: Keepalive pings on a connection with calls in flight, and how long an answer may take. etcd
#: refuses pings more often than every 5 s (``--grpc-keepalive-min-time``); kube-apiserver pings
#: every 30 s with a 10 s timeout — shorter here, because the lab's failures are practised.
KEEPALIVE_TIME = 10.0
KEEPALIVE_TIMEOUT = 3.0

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", -1),  # a page of PAGE large objects; etcd caps requests
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", int(KEEPALIVE_TIME * 1000)),
    ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT * 1000)),
    ("grpc.http2.max_pings_without_data", 0),
    # The connect timeout is the minimum reconnect backoff in gRPC core; reconnect soon after a
    # member comes back (the default backoff grows to 120 s).
    ("grpc.min_reconnect_backoff_ms", int(CONNECT_TIMEOUT * 1000)),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),  # failover is ours, and a write is never sent twice by gRPC
]

_CREATE = rpc.Compare.CREATE
_MOD = rpc.Compare.MOD
_EQUAL = rpc.Compare.EQUAL
_GREATER = rpc.Compare.GREATER
_DELETE = rpc.Event.DELETE


def _range_end(prefix: bytes) -> bytes:
    """etcd's range_end for a prefix: the prefix with its last byte incremented."""
    raw = bytearray(prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def _start(prefix: str) -> bytes:
    """The range start for a prefix (etcd rejects an empty key; "\\0" starts the key space)."""
    return prefix.encode() or b"\0"


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(), value=kv.value, create_revision=kv.create_revision, mod_revision=kv.mod_revision
    )


def _readable(what: str, path: str | Path) -> bytes:
    """The file's bytes, else a ``ValueError`` naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"etcd {what} {path}: {exc.strerror or exc}") from None


def tls_files(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(CA, client certificate, client key) as PEM bytes, each checked to be what it claims (the
    same checks Go's tls package makes at kube-apiserver's start); bad files: ``ValueError`` naming them."""
    if (cert is None) != (key is None):
        raise ValueError("etcd client certificate and key go together (--etcd-certfile and --etcd-keyfile)")
    ca_pem = cert_pem = key_pem = None
    if ca is not None:
        ca_pem = _readable("CA file", ca)
        try:
            ssl.create_default_context(cadata=ca_pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ValueError(f"etcd CA file {ca}: not a PEM certificate ({reason})") from None
    if cert is not None and key is not None:
        cert_pem = _readable("client certificate file", cert)
        key_pem = _readable("client key file", key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise ValueError(
                f"etcd client certificate {cert} with key {key}: cannot load them ({exc.reason or exc};"
                " PEM files of one key pair expected)"
            ) from None
    return ca_pem, cert_pem, key_pem


# -- the I/O loop -------------------------------------------------------------------------------


class _IoLoop:
    """One daemon thread running an asyncio loop: where every ``EtcdStore`` of the process calls etcd.

    ``run`` waits for a coroutine's result; ``spawn`` starts one and returns at once, and wakes the
    loop only when it is not already due to run what was spawned (so a burst of creates from the
    API server's event loop costs one wake-up, not one per create).
    """

    def __init__(self) -> None:
        # A plain selector loop: grpc's asyncio support is for asyncio's own loop, whatever event
        # loop policy (uvloop) the process set for itself.
        self.loop = asyncio.SelectorEventLoop()
        self._lock = threading.Lock()
        self._spawned: list[Coroutine[Any, Any, Any]] = []
        self._due = False
        self.thread = threading.Thread(target=self._run, name="etcd-grpc", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("EtcdStore's blocking calls cannot be made from its own I/O thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        with self._lock:
            self._spawned.append(coro)
            if self._due:
                return
            self._due = True
        self.loop.call_soon_threadsafe(self._start_spawned)

    def _start_spawned(self) -> None:
        with self._lock:
            coros, self._spawned = self._spawned, []
            self._due = False
        for coro in coros:
            self.loop.create_task(coro)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)


_io: _IoLoop | None = None
_io_lock = threading.Lock()
_open_stores: weakref.WeakSet[EtcdStore] = weakref.WeakSet()


def _io_loop() -> _IoLoop:
    global _io
    with _io_lock:
        if _io is None or not _io.thread.is_alive():
            if _io is None:
                atexit.register(_shut_down)
            _io = _IoLoop()
        return _io


def _shut_down() -> None:
    """At interpreter exit: close the stores still open (their channels and watches), then stop the
    loop, so grpc's poller does not run callbacks against a loop that is being torn down."""
    for store in list(_open_stores):
        with contextlib.suppress(Exception):
            store.close()
    io = _io
    if io is not None and io.thread.is_alive():
        io.loop.call_soon_threadsafe(io.loop.stop)
        io.thread.join(5)


# -- errors -------------------------------------------------------------------------------------


def _unreachable(exc: grpc.aio.AioRpcError) -> bool:
    """True when the call did not reach etcd (connect refused or timed out, connection lost):
    worth trying on the next endpoint. etcd's own answers carry an ``etcdserver:`` message."""
    details = exc.details() or ""
    if details.startswith("etcdserver:") or "mvcc:" in details:
        return False
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _store_error(exc: grpc.aio.AioRpcError) -> StoreError:
    message = exc.details() or str(exc.code())
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


def _call_back(done: CreateDone, rev: int | None, err: BaseException | None) -> None:
    try:
        done(rev, err)
    except Exception:
        log.exception("create_nowait callback failed")


# -- the store ----------------------------------------------------------------------------------


class _Stubs:
    """One endpoint's channel and stubs (made on the I/O loop: grpc's asyncio channels belong to it)."""

    def __init__(self, target: str, creds: grpc.ChannelCredentials | None) -> None:
        if creds is None:
            self.channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(target, creds, options=_CHANNEL_OPTIONS)
        self.kv = rpc.KVStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)


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
        self._targets: list[tuple[str, bool]] = []
        for e in self._endpoints:
            parts = urlsplit(e)
            try:
                port = parts.port
            except ValueError:
                port = None
            if parts.scheme not in ("http", "https") or not parts.hostname or not port:
                raise ValueError(f"etcd endpoint must look like http://HOST:PORT, got {e!r}")
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            self._targets.append((f"{host}:{port}", parts.scheme == "https"))
        self._timeout = timeout
        # (Files given for plain-HTTP endpoints are still checked: a wrong flag fails at startup.)
        ca_pem, cert_pem, key_pem = tls_files(ca, cert, key)
        self._creds: grpc.ChannelCredentials | None = None
        if any(tls for _, tls in self._targets):
            self._creds = grpc.ssl_channel_credentials(
                root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
            )
        self._current = 0  # index of the endpoint in use; moves when a call cannot reach it
        self._stubs: list[_Stubs | None] = [None] * len(self._endpoints)
        self._io = _io_loop()
        self._lock = threading.Lock()  # guards _closed, _inflight, _watches
        self._idle = threading.Condition(self._lock)  # notified when the last nowait create ends
        self._inflight = 0  # create_nowait calls not yet called back
        self._closed = False
        self._watches: set[EtcdWatch] = set()
        _open_stores.add(self)
        try:
            self.current_revision()  # reachable?
        except BaseException:
            self.close()
            raise

    @property
    def endpoint(self) -> str:
        return self._endpoints[self._current]

    # -- transport (I/O loop) ------------------------------------------------------------------

    def _stub(self, idx: int) -> _Stubs:
        stubs = self._stubs[idx]
        if stubs is None:
            target, tls = self._targets[idx]
            stubs = self._stubs[idx] = _Stubs(target, self._creds if tls else None)
        return stubs

    def _moved_on(self, idx: int) -> None:
        """The endpoint at ``idx`` could not be reached: use the next one (unless another call moved
        already)."""
        if self._current == idx:
            self._current = (idx + 1) % len(self._endpoints)

    async def _rpc(self, method: str, req: Any, timeout: float | None = None) -> Any:
        """One KV call, failing over to the next endpoint when this one cannot be reached."""
        last: grpc.aio.AioRpcError | None = None
        for _ in range(len(self._endpoints)):
            idx = self._current
            call = getattr(self._stub(idx).kv, method)
            try:
                return await call(req, timeout=timeout or self._timeout)
            except grpc.aio.AioRpcError as exc:
                if not _unreachable(exc):
                    raise _store_error(exc) from None
                last = exc
                self._moved_on(idx)
        detail = last.details() if last is not None else "no endpoint"
        raise StoreUnavailableError(f"etcd unreachable at {', '.join(self._endpoints)}: {detail}")

    def _call(self, method: str, req: Any, timeout: float | None = None) -> Any:
        if self._closed:
            raise RuntimeError("store is closed")
        return self._io.run(self._rpc(method, req, timeout))

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        res = self._call("Range", rpc.RangeRequest(key=key.encode()))
        return _kv(res.kvs[0]) if res.kvs else None

    def list(self, prefix: str) -> tuple[_KVs, int]:
        """Every key under ``prefix``, in pages, all read at the revision of the first page."""
        start, end = _start(prefix), _range_end(prefix.encode())
        out: list[KeyValue] = []
        rev = 0
        while True:
            res = self._call("Range", rpc.RangeRequest(key=start, range_end=end, limit=PAGE, revision=rev))
            if not rev:
                rev = res.header.revision
            kvs = res.kvs
            out.extend(map(_kv, kvs))
            if not res.more or not kvs:
                return out, rev
            start = kvs[-1].key + b"\0"

    def health(self, timeout: float = 2.0) -> str | None:
        """None when etcd serves a quorum read within ``timeout``, else why not (for /readyz).

        Kubernetes' etcd check does a linearizable Get: it needs a leader and a majority, so a
        member that is up but cut off from quorum is not healthy."""
        if self._closed:
            return "etcd store is closed"
        idx = self._current

        async def check() -> str | None:
            try:
                await self._stub(idx).kv.Range(rpc.RangeRequest(key=b"health"), timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return f"etcd did not answer a quorum read within {timeout:g}s: {QUORUM_LOST}"
                if _unreachable(exc):
                    self._moved_on(idx)  # the next call (and check) tries the next member
                    return f"etcd unreachable at {self._endpoints[idx]}: {exc.details()}"
                return str(_store_error(exc))
            return None

        return self._io.run(check())

    def current_revision(self) -> int:
        res = self._call("Range", rpc.RangeRequest(key=b"\0", limit=1, keys_only=True))
        return int(res.header.revision)

    # -- writes ----------------------------------------------------------------------------

    @staticmethod
    def _create_txn(key: str, value: bytes) -> Any:
        k = key.encode()
        return rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=_CREATE, result=_EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=bytes(value)))],
        )

    def create(self, key: str, value: bytes) -> int:
        _check_key(key)
        res = self._call("Txn", self._create_txn(key, value))
        if not res.succeeded:
            raise KeyExistsError(key)
        return int(res.header.revision)

    def create_nowait(self, key: str, value: bytes, done: CreateDone) -> None:
        """``create`` on the I/O loop, then ``done`` there (``NowaitCreates``).

        An etcd write is a network round trip: the API server hands it here and keeps its CPU
        work on its event loop, instead of running the whole request on a thread of its own; the
        I/O loop has every create in flight at once, multiplexed on one HTTP/2 connection.
        """
        _check_key(key)
        req = self._create_txn(key, value)
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            self._inflight += 1
        self._io.spawn(self._create_then(key, req, done))

    async def _create_then(self, key: str, req: Any, done: CreateDone) -> None:
        rev: int | None = None
        err: BaseException | None = None
        try:
            res = await self._rpc("Txn", req)
            if res.succeeded:
                rev = int(res.header.revision)
            else:
                err = KeyExistsError(key)
        except Exception as exc:
            err = exc
        _call_back(done, rev, err)
        with self._lock:
            self._inflight -= 1
            if not self._inflight:
                self._idle.notify_all()

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        _check_key(key)
        k = key.encode()
        res = self._call(
            "Txn",
            rpc.TxnRequest(
                compare=[
                    rpc.Compare(key=k, target=_CREATE, result=_GREATER, create_revision=0),
                    rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision),
                ],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=bytes(value)))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
            ),
        )
        if not res.succeeded:
            raise self._cas_failure(key, expected_revision, res)
        return int(res.header.revision)

    def delete(self, key: str, expected_revision: int | None = None) -> tuple[KeyValue, int]:
        _check_key(key)
        k = key.encode()
        compare = [rpc.Compare(key=k, target=_CREATE, result=_GREATER, create_revision=0)]
        if expected_revision is not None:
            compare.append(rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision))
        res = self._call(
            "Txn",
            rpc.TxnRequest(
                compare=compare,
                success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
            ),
        )
        if not res.succeeded:
            raise self._cas_failure(key, expected_revision or 0, res)
        prev = res.responses[0].response_delete_range.prev_kvs
        if not prev:  # cannot happen: the compare said the key existed in this same txn
            raise StoreError(f"etcd deleted {key!r} without returning its previous value")
        return _kv(prev[0]), int(res.header.revision)

    @staticmethod
    def _cas_failure(key: str, expected: int, res: Any) -> StoreError:
        kvs = res.responses[0].response_range.kvs if res.responses else []
        if not kvs:
            return KeyNotFoundError(key)
        return ConflictError(key, expected, int(kvs[0].mod_revision))

    # -- history ---------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        current = self.current_revision()
        target = min(revision + 1, current)
        try:
            # physical: return once the compaction is applied, so a watch that starts after
            # compact() returns already sees it.
            self._call("Compact", rpc.CompactionRequest(revision=target, physical=True))
        except CompactedError:
            pass  # already compacted at or past this point: nothing to do

    def watch(self, prefix: str, after_revision: int) -> EtcdWatch:
        if self._closed:
            raise RuntimeError("store is closed")
        # etcd accepts a watch on compacted history and only then cancels it; ask first, with a
        # cheap range at the first revision we need, so the caller gets CompactedError at once.
        try:
            self._call(
                "Range",
                rpc.RangeRequest(key=_start(prefix), limit=1, keys_only=True, revision=after_revision + 1),
            )
        except CompactedError:
            raise CompactedError(after_revision, self._compaction_point(prefix, after_revision)) from None
        except StoreError as exc:
            if "future revision" not in str(exc):
                raise
        w = EtcdWatch(self, prefix, after_revision)
        with self._lock:
            if self._closed:
                w.close()
                raise RuntimeError("store is closed")
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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # creates already handed over finish (and call back) first
            self._idle.wait_for(lambda: not self._inflight, timeout=self._timeout + 5)
            watches = list(self._watches)
        _open_stores.discard(self)
        for w in watches:
            w.close()
        stubs = [s for s in self._stubs if s is not None]
        self._stubs = [None] * len(self._endpoints)

        async def close_channels() -> None:
            for s in stubs:
                await s.channel.close()

        if stubs and threading.current_thread() is not self._io.thread:
            with contextlib.suppress(Exception):
                self._io.run(close_channels(), timeout=10)

    def _forget(self, w: EtcdWatch) -> None:
        with self._lock:
            self._watches.discard(w)


class EtcdWatch:
    """One etcd ``Watch`` stream: a task on the I/O loop reads it and queues the events; the
    consumer's ``next_batch`` waits on that queue (with its timeout). ``close`` from any thread
    cancels the stream and wakes a waiting ``next_batch``, which then returns []."""

    def __init__(self, store: EtcdStore, prefix: str, after_revision: int) -> None:
        self._store = store
        self.prefix = prefix
        self.position = after_revision
        self._cond = threading.Condition()  # guards _events, _error, _closed
        self._events: deque[Event] = deque()
        self._error: StoreError | None = None
        self._closed = False
        self._call: Any = None  # the stream, once open (I/O loop only)
        self._idx = store._current
        key = _start(prefix)
        self._request = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=key, range_end=_range_end(prefix.encode()), start_revision=after_revision + 1, prev_kv=True
            )
        )
        store._io.spawn(self._pump())

    async def _pump(self) -> None:
        try:
            if self._closed:
                return
            call = self._call = self._store._stub(self._idx).watch.Watch(iter((self._request,)))
            if self._closed:
                call.cancel()
                return
            async for resp in call:
                self._handle(resp)
            self._fail(StoreError("etcd closed the watch stream"))
        except asyncio.CancelledError:
            self._fail(StoreError("etcd watch was cancelled"))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._closed:
                return
            if _unreachable(exc):
                self._store._moved_on(self._idx)  # the re-watch goes to the next member
            self._fail(StoreError(f"etcd watch stream broke: {exc.code().name} {exc.details()}"))
        except StoreError as exc:  # CompactedError too
            self._fail(exc)
        except Exception as exc:  # a bug in parsing: the watch ends, the consumer re-watches
            log.exception("etcd watch on %s failed", self.prefix)
            self._fail(StoreError(f"etcd watch failed: {exc!r}"))
        finally:
            call, self._call = self._call, None
            if call is not None:
                call.cancel()

    def _handle(self, resp: Any) -> None:
        if resp.canceled:
            if resp.compact_revision:
                # etcd's compact_revision is the oldest revision it kept; ours is the last forgotten.
                raise CompactedError(self.position, resp.compact_revision - 1)
            raise StoreError(f"etcd canceled the watch: {resp.cancel_reason or 'no reason given'}")
        events = resp.events
        if not events:
            return  # created / progress notifications
        batch: list[Event] = []
        for e in events:
            kv = e.kv
            key = kv.key.decode()
            rev = kv.mod_revision
            prev_value = e.prev_kv.value if e.HasField("prev_kv") else None
            if e.type == _DELETE:
                batch.append(
                    Event(EventType.DELETE, key, prev_value if prev_value is not None else b"", rev, prev_value)
                )
            elif kv.version == 1:
                batch.append(Event(EventType.CREATE, key, kv.value, rev, None))
            else:
                batch.append(Event(EventType.UPDATE, key, kv.value, rev, prev_value))
        with self._cond:
            self._events.extend(batch)
            self._cond.notify_all()

    def _fail(self, exc: StoreError) -> None:
        with self._cond:
            if self._error is None and not self._closed:
                self._error = exc
            self._cond.notify_all()

    def next_batch(self, timeout: float | None = None) -> list[Event]:
        with self._cond:
            if not self._events and not self._closed and self._error is None:
                self._cond.wait_for(lambda: self._events or self._closed or self._error is not None, timeout)
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

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()

        def cancel() -> None:
            if self._call is not None:
                self._call.cancel()

        with contextlib.suppress(RuntimeError):  # the loop is gone (interpreter exit)
            self._store._io.call_soon(cancel)
        self._store._forget(self)
