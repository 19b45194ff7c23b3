"""etcd's gRPC create path (``controlplane.storage.etcdgrpc``), without etcd.

The hand-encoded protobuf is held to etcd's own ``rpc.proto`` (the stubs ``aetcd`` generates), and
the HTTP/2 client to a small fake server speaking real frames and HPACK (the python-hyper encoder,
which indexes headers, so the client's decoder must stay in step). The real etcd runs the same path
in the contract tests (plain) and ``tests/integration/storage`` (TLS, 3 members, quorum loss).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import hpack
import pytest
from aetcd import rpc

from controlplane.storage.etcd import QUORUM_LOST, _message_error
from controlplane.storage.etcdgrpc import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    GrpcCreateWriter,
    create_txn,
    frame,
    outcome,
    txn_outcome,
)
from controlplane.storage.interface import CreateDone, KeyExistsError, StoreError, StoreUnavailableError
from tests.helpers.wait import wait_for

# -- the protobuf, against etcd's rpc.proto ----------------------------------------------------------


def test_create_txn_is_the_compare_and_put_etcd_reads() -> None:
    req = rpc.TxnRequest.FromString(create_txn(b"/registry/pods/default/web", b'{"kind":"Pod"}'))
    (cmp,) = req.compare
    assert (cmp.key, cmp.target, cmp.result) == (b"/registry/pods/default/web", rpc.Compare.CREATE, rpc.Compare.EQUAL)
    assert cmp.WhichOneof("target_union") == "create_revision" and cmp.create_revision == 0
    (op,) = req.success
    assert op.WhichOneof("request") == "request_put"
    assert (op.request_put.key, op.request_put.value) == (b"/registry/pods/default/web", b'{"kind":"Pod"}')
    assert not req.failure


def test_create_txn_carries_a_value_of_any_size() -> None:
    value = bytes(range(256)) * 700  # 179,200 bytes: multi-byte lengths
    req = rpc.TxnRequest.FromString(create_txn(b"k", value))
    assert req.success[0].request_put.value == value


def test_txn_outcome_reads_succeeded_and_the_revision() -> None:
    ok = rpc.TxnResponse(header=rpc.ResponseHeader(cluster_id=7, member_id=9, revision=123456789, raft_term=3))
    ok.succeeded = True
    ok.responses.add().response_put.header.revision = 123456789
    assert txn_outcome(ok.SerializeToString()) == (True, 123456789)
    lost = rpc.TxnResponse(header=rpc.ResponseHeader(revision=5), succeeded=False)
    assert txn_outcome(lost.SerializeToString()) == (False, 5)


def _answer(succeeded: bool, revision: int) -> bytes:
    return bytes(rpc.TxnResponse(header=rpc.ResponseHeader(revision=revision), succeeded=succeeded).SerializeToString())


def test_outcome_of_a_stream() -> None:
    ok = [(b":status", b"200"), (b"grpc-status", b"0")]
    assert outcome(_answer(True, 42), ok, _message_error, "/k") == (42, None)
    rev, err = outcome(_answer(False, 42), ok, _message_error, "/k") or (0, None)
    assert rev is None and isinstance(err, KeyExistsError) and err.key == "/k"
    # etcd's quorum errors read as they do through the gateway (grpc-message is percent-encoded)
    no_leader = [(b"grpc-status", b"14"), (b"grpc-message", b"etcdserver: no leader")]
    rev, err = outcome(None, no_leader, _message_error, "/k") or (0, None)
    assert rev is None and isinstance(err, StoreUnavailableError) and QUORUM_LOST in str(err)
    other = [(b"grpc-status", b"3"), (b"grpc-message", b"etcdserver: key is not provided%21")]
    rev, err = outcome(None, other, _message_error, "/k") or (0, None)
    assert isinstance(err, StoreError) and str(err) == "etcd: etcdserver: key is not provided!"
    # not a gRPC answer at all (no grpc-status): handed to the gateway path
    assert outcome(None, [(b":status", b"502")], _message_error, "/k") is None


# -- the HTTP/2 client, against a fake server -------------------------------------------------------

Action = str  # what the fake does with a request: ok, exists, rst, goaway, close, error, ping


class FakeEtcd:
    """Accepts HTTP/2 connections and answers each ``KV/Txn`` as ``plan(n)`` says (n counts from 0)."""

    def __init__(self, plan: Callable[[int], Action]) -> None:
        self.plan = plan
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.requests: list[tuple[str, bytes, bytes]] = []  # (path, key, value)
        self.connections = 0
        self.settings_acks = 0
        self.ping_acks = 0
        self.revision = 100
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for s in self._socks:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        enc, dec = hpack.Encoder(), hpack.Decoder()
        buf = b""
        try:
            while len(buf) < len(PREFACE):
                buf += sock.recv(65536)
            assert buf.startswith(PREFACE)
            buf = buf[len(PREFACE) :]
            sock.sendall(frame(SETTINGS, 0, 0, (3).to_bytes(2, "big") + (1000).to_bytes(4, "big")))
            paths: dict[int, str] = {}
            while True:
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                n = int.from_bytes(buf[:3], "big")
                kind, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big")
                payload, buf = buf[9 : 9 + n], buf[9 + n :]
                if kind == SETTINGS and flags & 1:
                    with self.lock:
                        self.settings_acks += 1
                elif kind == PING and flags & 1:
                    with self.lock:
                        self.ping_acks += 1
                elif kind == HEADERS:
                    paths[sid] = dict(dec.decode(payload))[":path"]
                elif kind == DATA and flags & END_STREAM:
                    req = rpc.TxnRequest.FromString(payload[5:])
                    put = req.success[0].request_put
                    with self.lock:
                        index = len(self.requests)
                        self.requests.append((paths[sid], put.key, put.value))
                    if not self._act(sock, enc, sid, self.plan(index)):
                        return
        except OSError:
            return
        finally:
            sock.close()

    def _act(self, sock: socket.socket, enc: hpack.Encoder, sid: int, action: Action) -> bool:
        head = [(":status", "200"), ("content-type", "application/grpc")]
        if action == "ping":
            sock.sendall(frame(PING, 0, 0, b"12345678"))
            action = "ok"
        if action in ("ok", "exists"):
            with self.lock:
                self.revision += 1
                rev = self.revision
            msg = _answer(action == "ok", rev)
            sock.sendall(
                frame(HEADERS, END_HEADERS, sid, enc.encode(head))
                + frame(DATA, 0, sid, b"\0" + len(msg).to_bytes(4, "big") + msg)
                + frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode([("grpc-status", "0")]))
            )
        elif action == "error":
            block = enc.encode([*head, ("grpc-status", "14"), ("grpc-message", "etcdserver: no leader")])
            sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
        elif action == "rst":
            sock.sendall(frame(RST_STREAM, 0, sid, (7).to_bytes(4, "big")))  # REFUSED_STREAM
        elif action == "goaway":  # this stream was never processed; then the connection ends
            sock.sendall(frame(GOAWAY, 0, 0, (sid - 2).to_bytes(4, "big") + (0).to_bytes(4, "big")))
            return False
        elif action == "close":
            return False
        return True


class Harness:
    def __init__(self, fake: FakeEtcd, timeout: float = 10.0) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.results: dict[str, list[tuple[int | None, BaseException | None]]] = {}
        self.handed: list[str] = []
        self.writer = GrpcCreateWriter(lambda: ("127.0.0.1", fake.port, None), timeout, self._hand_over, _message_error)

    def _hand_over(self, key: str, value: bytes, done: CreateDone) -> None:
        with self.lock:
            self.handed.append(key)

    def create(self, key: str, value: bytes = b"v") -> None:
        def done(rev: int | None, err: BaseException | None) -> None:
            with self.lock:
                self.results.setdefault(key, []).append((rev, err))

        self.writer.submit(key, value, done)

    def create_in_turn(self, prefix: str, n: int) -> None:
        """``n`` creates, each sent once the one before was answered (or handed over)."""
        for i in range(n):
            before = len(self.results) + len(self.handed)
            self.create(f"{prefix}{i}")
            wait_for(lambda b=before: self.settled(b + 1), timeout=5, message=f"an answer to {prefix}{i}")

    def settled(self, n: int) -> bool:
        with self.lock:
            return len(self.results) + len(self.handed) >= n


@pytest.fixture
def harness_for() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(plan: Callable[[int], Action], timeout: float = 10.0) -> Harness:
        h = Harness(FakeEtcd(plan), timeout)
        made.append(h)
        return h

    yield make
    for h in made:
        h.writer.stop()
        h.fake.close()


def test_creates_are_answered_once_each_and_control_frames_acknowledged(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "ping" if i % 10 == 0 else "exists" if i == 7 else "ok")
    for i in range(60):
        h.create(f"/k/{i}", f"value-{i}".encode())
    wait_for(lambda: h.settled(60), timeout=10, message="60 answers")
    assert h.handed == []
    assert all(len(v) == 1 for v in h.results.values()) and len(h.results) == 60
    assert isinstance(h.results["/k/7"][0][1], KeyExistsError)
    revs = [rev for v in h.results.values() for rev, err in v if rev is not None]
    assert len(revs) == 59 and len(set(revs)) == 59 and min(revs) > 100
    assert sorted(h.fake.requests) == sorted(
        ("/etcdserverpb.KV/Txn", f"/k/{i}".encode(), f"value-{i}".encode()) for i in range(60)
    )
    wait_for(
        lambda: h.fake.ping_acks == 6 and h.fake.settings_acks == 1, timeout=5, message="6 PING and 1 SETTINGS ack"
    )
    assert h.fake.connections == 1


def test_a_refused_stream_is_handed_to_the_gateway_path(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "rst" if i == 1 else "ok")
    h.create_in_turn("/r/", 3)
    assert h.handed == ["/r/1"] and sorted(h.results) == ["/r/0", "/r/2"]


def test_goaway_hands_over_what_etcd_never_processed_and_reconnects(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "goaway" if i == 2 else "ok")
    h.create_in_turn("/g/", 5)
    assert h.handed == ["/g/2"]
    assert sorted(h.results) == ["/g/0", "/g/1", "/g/3", "/g/4"]
    assert h.fake.connections == 2


def test_a_broken_connection_hands_over_every_open_create(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "close" if i == 3 else "ok")
    h.create_in_turn("/c/", 3)
    h.create("/c/3")
    wait_for(lambda: h.settled(4), timeout=5, message="the create on the closed connection handed over")
    assert h.handed == ["/c/3"]
    h.create("/c/4")  # a new connection
    wait_for(lambda: h.settled(5), timeout=5, message="a create after the break")
    assert "/c/4" in h.results and h.fake.connections == 2


def test_an_error_status_maps_like_the_gateways(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "error")
    h.create("/e/0")
    wait_for(lambda: h.settled(1), timeout=5, message="the error")
    ((rev, err),) = h.results["/e/0"]
    assert rev is None and isinstance(err, StoreUnavailableError)
    assert str(err) == f"etcdserver: no leader: {QUORUM_LOST}"


def test_a_value_over_one_frame_takes_the_gateway_path(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "ok")
    h.create("/small")
    wait_for(lambda: h.settled(1), timeout=5, message="the small create")
    h.create("/big", b"x" * 20_000)  # over HTTP/2's default 16 KiB frame
    wait_for(lambda: h.settled(2), timeout=5, message="the big create handed over")
    assert h.handed == ["/big"] and [p[1] for p in h.fake.requests] == [b"/small"]


def test_an_unanswered_create_is_handed_over_after_the_timeout(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "silent", timeout=1.0)
    h.create("/t/0")
    wait_for(lambda: h.settled(1), timeout=5, message="the silent create handed over")
    assert h.handed == ["/t/0"] and h.results == {}


def test_a_down_endpoint_hands_creates_over(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "ok")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    h.fake.port = probe.getsockname()[1]  # bound, not listening: the connection is refused
    h.create("/d/0")
    wait_for(lambda: h.settled(1), timeout=5, message="the create handed over")
    probe.close()
    assert h.handed == ["/d/0"] and h.fake.connections == 0


def test_a_connection_whose_stream_ids_ran_out_is_replaced(harness_for: Callable[..., Harness]) -> None:
    h = harness_for(lambda i: "ok")
    h.create("/s/0")
    wait_for(lambda: h.settled(1), timeout=5, message="the first create")
    conn = h.writer._conn
    assert conn is not None
    with conn.lock:
        conn._next_id = 2**31 - 1  # as after a billion creates
    h.create("/s/1")
    wait_for(lambda: h.settled(2), timeout=5, message="the create on a new connection")
    assert sorted(h.results) == ["/s/0", "/s/1"] and h.handed == [] and h.fake.connections == 2
