"""StdlibTransport against a loopback HTTP/1.1 server: keep-alive reuse, streaming, retry of a
request on a connection the server closed while idle, error mapping."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from controlplane.client.transport import StdlibTransport


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int] = []  # one entry per accepted connection

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        Handler.connections.append(1)

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (read-timeout test) or dropped the connection

    def do_GET(self) -> None:
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for i in range(3):
                line = f'{{"n": {i}}}\n'.encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/slow"):
            time.sleep(1)
        if self.path.startswith("/close"):
            body = b"bye"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        body = f"ok {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        self.send_response(201)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Handler.connections = []
    yield srv
    srv.shutdown()
    srv.server_close()


def client_for(srv: ThreadingHTTPServer, **kw: object) -> httpx.Client:
    host, port = srv.server_address[:2]
    return httpx.Client(base_url=f"http://{host!s}:{port}", transport=StdlibTransport(), **kw)  # type: ignore[arg-type]


def test_keep_alive_connections_are_reused(server: ThreadingHTTPServer) -> None:
    with client_for(server) as c:
        for i in range(5):
            r = c.get(f"/x{i}", params={"q": "a b"})
            assert r.status_code == 200 and r.text == f"ok /x{i}?q=a+b"
        assert c.post("/p", content=b"hello").content == b"hello"
    assert len(Handler.connections) == 1


def test_connection_close_is_honoured(server: ThreadingHTTPServer) -> None:
    with client_for(server) as c:
        assert c.get("/close").text == "bye"
        assert c.get("/after").text == "ok /after"
    assert len(Handler.connections) == 2


def test_streaming_delivers_chunks_as_they_arrive(server: ThreadingHTTPServer) -> None:
    with client_for(server) as c, c.stream("GET", "/stream") as r:
        lines = []
        first_at = None
        t0 = time.monotonic()
        for line in r.iter_lines():
            if first_at is None:
                first_at = time.monotonic() - t0
            lines.append(line)
        assert lines == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
        assert first_at is not None and first_at < 0.1  # not buffered until the end (~0.15 s)
    with client_for(server) as c:
        assert c.get("/again").text == "ok /again"  # a fully read chunked response frees its connection


def test_idle_connection_closed_by_server_is_retried_once(server: ThreadingHTTPServer) -> None:
    transport = StdlibTransport()
    host, port = server.server_address[:2]
    with httpx.Client(base_url=f"http://{host!s}:{port}", transport=transport) as c:
        assert c.get("/one").status_code == 200
        # Simulate the server dropping the idle keep-alive connection.
        for idle in transport._idle.values():
            for conn, _ in idle:
                assert conn.sock is not None
                conn.sock.shutdown(socket.SHUT_RDWR)
        assert c.get("/two").text == "ok /two"


def test_errors_are_httpx_errors(server: ThreadingHTTPServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=StdlibTransport()) as c,
        pytest.raises(httpx.ConnectError),
    ):
        c.get("/")
    with client_for(server, timeout=httpx.Timeout(5.0, read=0.2)) as c, pytest.raises(httpx.ReadTimeout):
        c.get("/slow")
