"""etcdhttp: the gateway's HTTP/1.1 framing (Content-Length, chunked, close) and the watch stream parser."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from controlplane.storage.etcdhttp import GatewayConnection, StreamParser


def test_stream_parser_splits_messages_across_chunks_and_feeds() -> None:
    p = StreamParser()
    wire = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'6\r\n{"a":1\r\n' + b'4\r\n}\n{"\r\n' + b'5\r\nb":2}\r\n' + b"1\r\n\n\r\n" + b"0\r\n\r\n"
    )
    got: list[bytes] = []
    for i in range(0, len(wire), 7):  # any split of the bytes gives the same messages
        p.feed(wire[i : i + 7])
        got += p.messages()
    assert p.status == 200 and p.ended
    assert got == [b'{"a":1}', b'{"b":2}']


def test_stream_parser_reports_the_status_and_keeps_the_error_text() -> None:
    p = StreamParser()
    p.feed(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 13\r\n\r\n{"error":"x"}')
    assert (p.status, p.reason) == (400, "Bad Request")
    assert p.rest() == b'{"error":"x"}'


def test_stream_parser_refuses_what_is_not_http() -> None:
    with pytest.raises(ConnectionError, match="not HTTP"):
        StreamParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes], list[bytes]]]:
    """A loopback server answering each request with the next canned answer (and recording requests)."""
    answers: list[bytes] = []
    requests: list[bytes] = []
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.settimeout(0.05)  # accept() is not woken by close() on Linux: poll a stop flag
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                buf = b""
                while answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    requests.append(head + b"\r\n\r\n" + rest[:length])
                    buf = rest[length:]
                    answer = answers.pop(0)
                    conn.sendall(answer)
                    if b"Connection: close" in answer:
                        break

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1], answers, requests
    finally:
        stop.set()
        t.join(5)
        lsock.close()


def test_post_reads_length_and_chunked_answers_on_one_connection(server: tuple[int, list[bytes], list[bytes]]) -> None:
    port, answers, requests = server
    answers += [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n',
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
    ]
    c = GatewayConnection("127.0.0.1", port, 5.0)
    assert c.post("/v3/kv/range", b'{"key":"YQ=="}') == (200, "OK", b"{}")
    assert c.post("/v3/kv/range", b"{}") == (200, "OK", b'{"a":1}')
    assert c.idle_and_open()
    assert c.post("/v3/kv/txn", b"{}") == (503, "Service Unavailable", b"busy")
    assert c.closed  # the server said close
    assert requests[0].startswith(b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:")
    assert requests[0].endswith(b'Content-Length: 14\r\n\r\n{"key":"YQ=="}')


def test_a_connection_the_server_closed_is_noticed(server: tuple[int, list[bytes], list[bytes]]) -> None:
    port, answers, _ = server
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    c = GatewayConnection("127.0.0.1", port, 5.0)
    assert c.post("/p", b"{}")[0] == 200

    # the canned answers are used up: the server closes the connection
    def closed_by_server() -> bool:
        return not c.idle_and_open()

    from tests.helpers.wait import wait_for

    wait_for(closed_by_server, timeout=5, message="the closed connection to read as ready")
    with pytest.raises(ConnectionError):
        c.post("/p", b"{}")
    assert c.closed
