"""etcd's native gRPC ``KV.Txn`` for ``create_nowait``: one HTTP/2 connection, many creates in flight.

Role: the hot path of pod creates on etcd (issue 17). Through the JSON gateway etcd itself spends
~570 µs of CPU on one create ``Txn`` plus its watch event; through gRPC ~270 µs (measured on one
member, same load: the gateway decodes the JSON with ``jsonpb``, re-scanning the base64 value at
every nesting level, then calls its own gRPC server over loopback). grpcio's Python client was
tried and costs more than it saves (~150-190 µs of Python per call and a poller thread); and the
``h2`` library costs ~170 µs per call in its state machine. What a create needs of HTTP/2 is small,
so this speaks it directly:

- requests: one HEADERS frame (a constant header block, encoded once per connection with
  never-indexed literals, so etcd's HPACK table never changes on our account) and one DATA frame
  (the gRPC message: a hand-encoded ``TxnRequest``, the same compare-and-put as
  ``EtcdStore.create``). A request larger than one frame or than the peer's stream window is not
  sent here (``fits``): the caller takes the gateway path for it.
- answers: frames parsed incrementally; header blocks decoded with ``hpack`` (the python-hyper
  library; every block, in order, so the dynamic table stays in step); ``grpc-status`` from the
  trailers; the ``TxnResponse``'s ``succeeded`` and ``header.revision`` read by a tiny decoder.
- flow control: we announce the largest windows (streams never need an update from us; the
  connection's is topped up after 1 GiB); our sends respect the connection window etcd grants and
  its ``MAX_CONCURRENT_STREAMS``; SETTINGS and PING are acknowledged; GOAWAY drains the connection.

Outcomes, per create: ``done(revision, None)``; ``done(None, KeyExistsError)`` when the compare
failed; ``done(None, error(message))`` for a gRPC error status (mapped by the store, so quorum loss
reads as it does on the gateway). A create whose connection broke, or that etcd refused or never
processed (RST_STREAM, GOAWAY past it), or that got no answer within the timeout, is handed over
(``hand_over``) to the store's blocking gateway path, which fails over to the next endpoint, exactly
as the HTTP/1.1 writer before this one did.

Concurrency: ``submit`` runs on any thread (the API server's event loop): when the connection can
take the request it is written there and then, without waking the I/O thread; otherwise it is
queued and the I/O thread is woken only if it has something to do about it. One I/O thread owns
the selector, reads and parses every answer and calls back (callbacks must only hand the outcome
on). ``H2Connection.lock`` guards the socket (an ``SSLSocket`` must not be used by two threads at
once), the stream table, the send window and the unsent bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote

import hpack

from controlplane.api.protowire import field, fields
from controlplane.storage.interface import CreateDone, KeyExistsError

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
#: SETTINGS identifiers (RFC 9113 §6.5.2)
_ENABLE_PUSH, _MAX_CONCURRENT_STREAMS, _INITIAL_WINDOW_SIZE, _MAX_FRAME_SIZE = 0x2, 0x3, 0x4, 0x5
_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65_535
_DEFAULT_FRAME = 16_384
_REFILL = 2**30  # received bytes after which the connection window is topped up
_RECV = 256 * 1024
TXN_PATH = "/etcdserverpb.KV/Txn"


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


# -- the protobuf of a create Txn (etcd's rpc.proto), by hand (``protowire``): three messages, two fields read


def create_txn(key: bytes, value: bytes) -> bytes:
    """``TxnRequest{compare: [create_revision(key) == 0], success: [put(key, value)]}``, encoded.

    Compare: target (2) = CREATE (1), key (3), create_revision (5) = 0 (set, so the oneof is
    present; result (1) = EQUAL is the default 0). RequestOp.request_put (2) = PutRequest{key (1),
    value (2)}. TxnRequest: compare (1), success (2)."""
    compare = b"\x10\x01" + field(3, key) + b"\x28\x00"
    put = field(1, key) + field(2, value)
    return field(1, compare) + field(2, field(2, put))


def txn_outcome(msg: bytes) -> tuple[bool, int]:
    """(succeeded, header.revision) of an encoded ``TxnResponse``."""
    succeeded, revision = False, 0
    for number, _wire, v in fields(msg):
        if number == 1 and isinstance(v, bytes):  # header: ResponseHeader{..., revision (3)}
            for n2, _wire2, v2 in fields(v):
                if n2 == 3 and isinstance(v2, int):
                    revision = v2
        elif number == 2 and isinstance(v, int):
            succeeded = bool(v)
    return succeeded, revision


# -- one HTTP/2 connection ---------------------------------------------------------------------------


class Pending:
    """One create: its request and, once sent, its stream's answer so far."""

    __slots__ = ("data", "done", "headers", "key", "message", "since", "value")

    def __init__(self, key: str, value: bytes, message: bytes, done: CreateDone) -> None:
        self.key = key
        self.value = value
        self.message = message  # the gRPC message: 5-byte prefix + TxnRequest
        self.done = done
        self.since = 0.0
        self.data = bytearray()
        self.headers: list[tuple[bytes, bytes]] = []


class H2Connection:
    """HTTP/2 to one etcd endpoint, prior knowledge over TCP or ALPN ``h2`` over TLS."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, timeout: float) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
                if sock.selected_alpn_protocol() != "h2":
                    raise ConnectionError(f"etcd at {host}:{port} did not agree to HTTP/2 (ALPN h2)")
            settings = b"".join(
                k.to_bytes(2, "big") + v.to_bytes(4, "big")
                for k, v in ((_ENABLE_PUSH, 0), (_INITIAL_WINDOW_SIZE, _MAX_WINDOW))
            )
            sock.sendall(
                PREFACE
                + frame(SETTINGS, 0, 0, settings)
                + frame(WINDOW_UPDATE, 0, 0, (_MAX_WINDOW - _DEFAULT_WINDOW).to_bytes(4, "big"))
            )
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self._tls = tls is not None
        self.lock = threading.Lock()
        scheme = "https" if tls is not None else "http"
        # Never-indexed literals: the same bytes for every request, and etcd's table untouched.
        self._block = hpack.Encoder().encode(
            [
                hpack.NeverIndexedHeaderTuple(n, v)
                for n, v in (
                    (":method", "POST"),
                    (":scheme", scheme),
                    (":path", TXN_PATH),
                    (":authority", f"{host}:{port}"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                )
            ]
        )
        self._decoder = hpack.Decoder()
        # guarded by lock
        self.streams: dict[int, Pending] = {}
        self._next_id = 1
        self._send_window = _DEFAULT_WINDOW
        self._peer_stream_window = _DEFAULT_WINDOW
        self._max_frame = _DEFAULT_FRAME
        self._max_streams = 2**31
        self.unsent = bytearray()  # bytes the socket did not take yet (the I/O thread flushes them)
        self.batch = bytearray()  # requests of this event-loop turn, sent together at its end
        self.flush_scheduled = False  # a loop callback will send ``batch``
        self.draining = False  # GOAWAY came, or the connection broke: no new streams
        self.mask = selectors.EVENT_READ  # what the I/O thread's selector waits for (I/O thread)
        # I/O thread only
        self._inbuf = bytearray()
        self._received = 0
        self._fragment: tuple[int, int, bytearray] | None = None  # a header block awaiting CONTINUATION

    # -- sending (under lock) ---------------------------------------------------------------------

    def fits(self, req: Pending) -> bool:
        """The request goes in one DATA frame, within a fresh stream's window."""
        n = len(req.message)
        return n <= self._max_frame and n <= self._peer_stream_window

    def can_send(self, req: Pending) -> bool:
        if self._next_id >= _MAX_WINDOW:
            self.draining = True  # its stream ids are used up: the next create opens a new connection
        return not self.draining and len(self.streams) < self._max_streams and len(req.message) <= self._send_window

    def send(self, req: Pending, defer: bool = False) -> None:
        """Open a stream for ``req`` and write it, or with ``defer`` add it to ``batch`` for the
        caller's ``write`` later (caller holds ``lock`` and checked ``can_send``)."""
        sid = self._next_id
        self._next_id += 2
        self._send_window -= len(req.message)
        req.since = time.monotonic()
        self.streams[sid] = req
        frames = frame(HEADERS, END_HEADERS, sid, self._block) + frame(DATA, END_STREAM, sid, req.message)
        if defer:
            self.batch += frames
        else:
            self.write(frames)

    def write(self, data: bytes) -> None:
        """Send ``batch`` and ``data`` now, as much as the socket takes; keep the rest in ``unsent``
        (caller holds ``lock``). Stream ids reach etcd in the order they were opened."""
        self.unsent += self.batch
        self.unsent += data
        self.batch.clear()
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes of ``unsent`` (caller holds ``lock``). OSError when the
        connection broke."""
        if not self.unsent:
            return
        try:
            sent = self.sock.send(self.unsent)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        del self.unsent[:sent]

    # -- receiving (I/O thread) ---------------------------------------------------------------------

    def receive(self) -> tuple[list[tuple[Pending, bytes | None, list[tuple[bytes, bytes]]]], list[Pending]]:
        """Read and parse what arrived: (finished streams as (request, message or None, headers),
        requests to hand over). OSError when the connection broke or etcd broke the protocol."""
        while True:
            try:
                if self._tls:
                    with self.lock:
                        data = self.sock.recv(_RECV)
                else:
                    data = self.sock.recv(_RECV)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            if not data:
                raise ConnectionError("etcd closed the connection")
            self._inbuf += data
        finished: list[tuple[Pending, bytes | None, list[tuple[bytes, bytes]]]] = []
        handed: list[Pending] = []
        buf = self._inbuf
        pos, end = 0, len(buf)
        reply = bytearray()
        while end - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if end - pos < 9 + length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9 : pos + 9 + length])
            pos += 9 + length
            if self._fragment is not None and kind != CONTINUATION:
                raise ConnectionError("etcd interrupted a header block")
            if kind == DATA:
                self._received += length
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                req = self.streams.get(sid)
                if req is not None:
                    req.data += payload
                    if flags & END_STREAM:
                        self._finish(sid, finished)
            elif kind in (HEADERS, CONTINUATION):
                if kind == HEADERS:
                    if flags & PADDED:
                        payload = payload[1 : len(payload) - payload[0]]
                    if flags & PRIORITY_FLAG:
                        payload = payload[5:]
                    self._fragment = (sid, flags, bytearray(payload))
                else:
                    if self._fragment is None or self._fragment[0] != sid:
                        raise ConnectionError("etcd sent a CONTINUATION out of place")
                    self._fragment[2].extend(payload)
                    flags = self._fragment[1] | (flags & END_HEADERS)
                if flags & END_HEADERS:
                    assert self._fragment is not None
                    sid, first, block = self._fragment
                    self._fragment = None
                    try:
                        headers = self._decoder.decode(bytes(block), raw=True)
                    except hpack.HPACKError as exc:
                        raise ConnectionError(f"etcd sent a header block we cannot decode: {exc}") from exc
                    req = self.streams.get(sid)
                    if req is not None:
                        req.headers.extend((bytes(n), bytes(v)) for n, v in headers)
                        if first & END_STREAM:
                            self._finish(sid, finished)
            elif kind == RST_STREAM:
                req = self.streams.pop(sid, None)
                if req is not None:
                    handed.append(req)
            elif kind == SETTINGS:
                if not flags & ACK:
                    self._settings(payload)
                    reply += frame(SETTINGS, ACK, 0, b"")
            elif kind == PING:
                if not flags & ACK:
                    reply += frame(PING, ACK, 0, payload)
            elif kind == GOAWAY:
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                with self.lock:
                    self.draining = True
                    never = [s for s in self.streams if s > last]
                    handed.extend(self.streams.pop(s) for s in never)
            elif kind == WINDOW_UPDATE:
                if sid == 0:
                    with self.lock:
                        self._send_window += int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            elif kind == PUSH_PROMISE:
                raise ConnectionError("etcd sent PUSH_PROMISE, which we disabled")
            # PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5)
        del buf[:pos]
        if self._received >= _REFILL:
            reply += frame(WINDOW_UPDATE, 0, 0, self._received.to_bytes(4, "big"))
            self._received = 0
        if reply:
            with self.lock:
                self.write(bytes(reply))
        return finished, handed

    def _settings(self, payload: bytes) -> None:
        with self.lock:
            for i in range(0, len(payload) - 5, 6):
                ident = int.from_bytes(payload[i : i + 2], "big")
                value = int.from_bytes(payload[i + 2 : i + 6], "big")
                if ident == _MAX_CONCURRENT_STREAMS:
                    self._max_streams = value
                elif ident == _INITIAL_WINDOW_SIZE:
                    self._peer_stream_window = value
                elif ident == _MAX_FRAME_SIZE:
                    self._max_frame = value

    def _finish(self, sid: int, finished: list[tuple[Pending, bytes | None, list[tuple[bytes, bytes]]]]) -> None:
        req = self.streams.pop(sid, None)
        if req is None:
            return
        data = bytes(req.data)
        message = data[5 : 5 + int.from_bytes(data[1:5], "big")] if len(data) >= 5 and data[0] == 0 else None
        finished.append((req, message, req.headers))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# -- the writer: submit from any thread, one I/O thread ----------------------------------------------


def outcome(
    message: bytes | None, headers: list[tuple[bytes, bytes]], error: Callable[[str], BaseException], key: str
) -> tuple[int | None, BaseException | None] | None:
    """A finished stream's (revision, error), or None when it must be handed over (no gRPC answer)."""
    fields = dict(headers)
    status = fields.get(b"grpc-status")
    if status is None:
        return None  # not a gRPC answer (an HTTP error from a proxy, say): the gateway path decides
    if status != b"0":
        text = unquote(fields.get(b"grpc-message", b"").decode("utf-8", "replace"))
        return None, error(text or f"gRPC status {status.decode('ascii', 'replace')}")
    if message is None:
        return None
    succeeded, revision = txn_outcome(message)
    if not succeeded:
        return None, KeyExistsError(key)
    return revision, None


class GrpcCreateWriter:
    """``create_nowait`` over gRPC: see the module docstring.

    ``target()``: (host, port, TLS context with ALPN h2 or None) of the endpoint in use.
    ``hand_over(key, value, done)``: the blocking gateway create, run on a fallback thread.
    ``error(message)``: the store's exception for a gRPC error message.
    """

    def __init__(
        self,
        target: Callable[[], tuple[str, int, ssl.SSLContext | None]],
        timeout: float,
        hand_over: Callable[[str, bytes, CreateDone], None],
        error: Callable[[str], BaseException],
    ) -> None:
        self._target = target
        self._timeout = timeout
        self._hand_over_fn = hand_over
        self._error = error
        self._lock = threading.Lock()  # guards _queue, _conn, _sleeping, _stopping, _want_write
        self._queue: deque[Pending] = deque()
        self._conn: H2Connection | None = None
        self._old: list[H2Connection] = []  # draining connections with streams still open (I/O thread)
        self._sleeping = False
        self._stopping = False
        self._want_write = False
        self._next_check = 0.0  # I/O thread: when _expire looks next
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="etcd-grpc", daemon=True)
        self._thread.start()

    def submit(self, key: str, value: bytes, done: CreateDone) -> None:
        msg = create_txn(key.encode(), value)
        req = Pending(key, value, b"\0" + len(msg).to_bytes(4, "big") + msg, done)
        # On an event loop (the API server's), the creates of one loop turn leave in one send at
        # its end: a system call per create was a tenth of the loop's time, and each one let the
        # other threads take the interpreter lock.
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        # The fast path takes only the connection's lock (never the writer's across a system call:
        # the I/O thread would queue behind it): a connection that is dropped or draining refuses
        # under that lock, and the request goes to the queue below.
        conn = self._conn
        if conn is not None and not self._queue:
            sent = stuck = schedule = big = False
            with conn.lock:
                if not conn.fits(req):
                    big = True  # more than one frame: the gateway path takes it
                elif conn.can_send(req):
                    sent = True
                    try:
                        conn.send(req, defer=loop is not None)
                    except OSError:  # broken: the I/O thread drops it and hands its streams over
                        conn.draining = True
                    if loop is not None and not conn.flush_scheduled:
                        conn.flush_scheduled = schedule = True
                    stuck = bool(conn.unsent) or conn.draining
            if big:
                self._hand_over(req)
                return
            if schedule:
                assert loop is not None
                loop.call_soon(self._flush, conn)
            if stuck:
                self._look(conn)
            if sent:
                return
        with self._lock:
            if self._stopping:
                raise RuntimeError("store is closed")
            self._queue.append(req)
            conn = self._conn
            # Wake the I/O thread only if it can act now: open a connection, or send on one with
            # room. Otherwise the next answer (or WINDOW_UPDATE) wakes it, and it sends the queue.
            wake = self._sleeping and (conn is None or conn.draining or self._room(conn, req))
            if wake:
                self._sleeping = False
        if wake:
            self._wake()

    def _flush(self, conn: H2Connection) -> None:
        """Send the loop turn's batch (an event-loop callback)."""
        with conn.lock:
            conn.flush_scheduled = False
            try:
                conn.write(b"")
            except OSError:
                conn.draining = True
            stuck = bool(conn.unsent) or conn.draining
        if stuck:
            self._look(conn)

    def _look(self, conn: H2Connection) -> None:
        """Unsent bytes or a broken socket: wake the I/O thread to flush or drop ``conn``."""
        with self._lock:
            self._want_write = True
            wake, self._sleeping = self._sleeping, False
        if wake:
            self._wake()

    @staticmethod
    def _room(conn: H2Connection, req: Pending) -> bool:
        with conn.lock:
            return conn.can_send(req)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def _hand_over(self, req: Pending) -> None:
        self._hand_over_fn(req.key, req.value, req.done)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            wake, self._sleeping = self._sleeping, False
        if wake:
            self._wake()
        self._thread.join()

    # -- the I/O thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._dispatch()
                with self._lock:
                    conn = self._conn
                    busy = [c for c in (conn, *self._old) if c is not None and c.streams]
                    if self._stopping and not self._queue and not busy:
                        return
                    if self._queue and (conn is None or conn.draining or self._room(conn, self._queue[0])):
                        continue  # queued while we dispatched: act on it now, do not sleep
                    want_write, self._want_write = self._want_write, False
                    self._sleeping = True
                if conn is not None:
                    mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write or conn.unsent else 0)
                    if mask != conn.mask:
                        with contextlib.suppress(KeyError, ValueError):
                            self._sel.modify(conn.sock, mask, conn)
                            conn.mask = mask
                events = self._sel.select(1.0 if busy else None)
                with self._lock:
                    self._sleeping = False
                for sk, mask in events:
                    if sk.data is None:
                        with contextlib.suppress(BlockingIOError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    self._service(sk.data, mask)
                self._expire()
        finally:
            with self._lock:
                conns = [c for c in (self._conn, *self._old) if c is not None]
                self._conn, self._old = None, []
            for c in conns:
                self._drop(c)
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _dispatch(self) -> None:
        """Send queued creates; open a connection when there is none (or the one left is draining)."""
        with self._lock:
            if not self._queue:
                return
            conn = self._conn
            if conn is not None and conn.draining:
                self._retire(conn)
                conn = None
        if conn is None:
            host, port, tls = self._target()
            try:
                conn = H2Connection(host, port, tls, self._timeout)
            except (OSError, ValueError):
                with self._lock:  # the endpoint is down: the blocking path fails over
                    reqs = list(self._queue)
                    self._queue.clear()
                for r in reqs:
                    self._hand_over(r)
                return
            self._sel.register(conn.sock, selectors.EVENT_READ, conn)
            with self._lock:
                self._conn = conn
        big: list[Pending] = []
        with self._lock, conn.lock:
            while self._queue:
                req = self._queue[0]
                if not conn.fits(req):
                    big.append(self._queue.popleft())
                    continue
                if not conn.can_send(req):
                    break  # a window or stream limit: an answer or WINDOW_UPDATE frees it
                self._queue.popleft()
                try:
                    conn.send(req)
                except OSError:
                    conn.draining = True
                    break
        for r in big:
            self._hand_over(r)

    def _retire(self, conn: H2Connection) -> None:
        """(under _lock) Stop using ``conn`` for new streams; close it once its streams are answered."""
        self._conn = None
        if conn.streams:
            self._old.append(conn)
        else:
            self._close(conn)

    def _close(self, conn: H2Connection) -> None:
        """Take ``conn`` off the selector and close it (I/O thread)."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        conn.close()

    def _service(self, conn: H2Connection, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                with conn.lock:
                    conn.flush()
            finished, handed = conn.receive() if mask & selectors.EVENT_READ else ([], [])
        except (OSError, ValueError) as exc:
            log.debug("etcd gRPC connection broke: %s", exc)
            self._drop(conn)
            return
        for req, message, headers in finished:
            try:
                result = outcome(message, headers, self._error, req.key)
            except Exception as exc:  # a malformed answer: not ours to guess at
                result = None, exc
            if result is None:
                self._hand_over(req)
                continue
            try:
                req.done(*result)
            except Exception:
                log.exception("create_nowait callback failed")
        for req in handed:
            self._hand_over(req)
        if not self._old:
            return
        with self._lock:
            if conn in self._old and not conn.streams:
                self._old.remove(conn)
                self._close(conn)

    def _expire(self) -> None:
        """A connection with a create unanswered past the timeout is dead to us: drop it.

        Checked at most once a second (the select wakes at least that often while creates are open)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 1.0
        with self._lock:
            conns = [c for c in (self._conn, *self._old) if c is not None]
        for c in conns:
            with c.lock:
                late = any(now - r.since > self._timeout for r in c.streams.values())
            if late:
                log.warning("etcd answered no create within %.0f s; reconnecting", self._timeout)
                self._drop(c)

    def _drop(self, conn: H2Connection) -> None:
        """Forget ``conn`` and hand every create still open on it to the blocking path."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
            if conn in self._old:
                self._old.remove(conn)
            with conn.lock:
                conn.draining = True
                reqs = list(conn.streams.values())
                conn.streams.clear()
        self._close(conn)
        for r in reqs:
            self._hand_over(r)
