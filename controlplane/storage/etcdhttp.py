"""A minimal HTTP/1.1 client for etcd's gRPC gateway: one keep-alive connection, POST of JSON.

Role: the transport of ``EtcdStore``'s per-request calls (``_GatewayPool``) and of its watch
streams (creates go over gRPC, ``etcdgrpc``). Every pod create on etcd comes back as one watch
message, so the client's own CPU is part of the API server's per-create cost beyond SQLite (issue 17: py-spy showed
``http.client``'s header building and ``email.parser`` header parsing, and ``httpx``/``h11``'s
per-message stream layers, as the largest store-side costs). This speaks only what the gateway
answers: a status line, headers of which ``Content-Length``, ``Transfer-Encoding: chunked`` and
``Connection: close`` matter, and a body of either framing. Plain TCP or TLS (an ``ssl.SSLContext``
that verifies the server by the host name or IP address given and may carry a client certificate).

Invariants:
- A request is written in one ``sendall``; a response is read to its end before the next request,
  so a connection is either idle with nothing unread, or closed (``closed``).
- Errors: ``TimeoutError`` when the peer is silent past the timeout; ``ConnectionError`` (an
  ``OSError``) for a refused, reset or closed connection and for an answer that is not HTTP/1.x;
  ``ssl.SSLError`` (also an ``OSError``) for a failed handshake. The caller maps them.

Concurrency: a connection is used by one thread at a time (the pool hands it out); ``shutdown``
may be called from another thread to wake a reader blocked in ``recv`` (watch ``close``).
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterator

_RECV = 256 * 1024


class GatewayConnection:
    def __init__(self, host: str, port: int, timeout: float | None, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket = sock
        self._host = f"{host}:{port}".encode()
        self._buf = bytearray()
        self._pos = 0
        self.closed = False

    # -- requests -----------------------------------------------------------------------------

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        """POST ``body`` (JSON) to ``path``; (status, reason, response body). Closes on error."""
        try:
            self._send(path, body)
            status, reason, length, chunked, close = self._head()
            data = self._read_chunked() if chunked else self._read_exact(length) if length >= 0 else self._read_all()
        except BaseException:
            self.close()
            raise
        if close or (length < 0 and not chunked):
            self.close()
        return status, reason, data

    def stream(self, path: str, body: bytes) -> tuple[int, str, Iterator[bytes]]:
        """POST and return (status, reason, lines of the body as they arrive) — a watch stream.

        The iterator ends when the server ends the body; socket errors propagate from ``next``."""
        self._send(path, body)
        status, reason, length, chunked, _close = self._head()
        if chunked:
            return status, reason, self._lines(self._chunks())
        if length >= 0:
            return status, reason, iter(self._read_exact(length).splitlines())
        return status, reason, iter(self._read_all().splitlines())

    def idle_and_open(self) -> bool:
        """True when nothing is waiting to be read: the server has not closed it (EOF reads as ready)."""
        if self.closed:
            return False
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        return not select.select([sock], [], [], 0)[0]

    def shutdown(self) -> None:
        """Wake a thread blocked reading this connection (closing alone would not, on Linux)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # -- wire -----------------------------------------------------------------------------------

    def _send(self, path: str, body: bytes) -> None:
        head = b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            path.encode(),
            self._host,
            len(body),
        )
        self.sock.sendall(head + body)

    def _fill(self) -> None:
        """Read more into the buffer (dropping what was consumed); EOF is a ConnectionError."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        data = self.sock.recv(_RECV)
        if not data:
            raise ConnectionError("etcd closed the connection")
        self._buf += data

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 2
                return line
            if len(self._buf) - self._pos > 64 * 1024:
                raise ConnectionError("etcd sent a header line longer than 64 KiB")
            self._fill()

    def _head(self) -> tuple[int, str, int, bool, bool]:
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ConnectionError(f"etcd answered something that is not HTTP/1.x: {status_line[:80]!r}")
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        length, chunked, close = -1, False, parts[0] == b"HTTP/1.0"
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        return status, reason, length, chunked, close

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            self._fill()
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def _read_all(self) -> bytes:
        out = bytearray(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        while True:
            data = self.sock.recv(_RECV)
            if not data:
                return bytes(out)
            out += data

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size_line = self._line()
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._line():  # trailers, then the empty line
                    pass
                return
            data = self._read_exact(size)
            if self._line():
                raise ConnectionError("etcd sent a malformed chunk")
            yield data

    def _read_chunked(self) -> bytes:
        return b"".join(self._chunks())

    @staticmethod
    def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Newline-delimited messages, whatever the chunking (a message may span chunks)."""
        pending = b""
        for chunk in chunks:
            if pending:
                chunk = pending + chunk
            *complete, pending = chunk.split(b"\n")
            yield from complete
        if pending:
            yield pending


class StreamParser:
    """Incremental parse of one streamed response (a watch): feed bytes as they arrive, take messages.

    The head (status line and headers) first, then the body, chunked or not, split into
    newline-delimited messages. Needs no thread and no blocking read of its own: the caller reads
    the socket with whatever timeout it has and ``feed``s what came.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._body = bytearray()  # de-chunked body bytes not yet split into messages
        self.status = 0  # 0 until the head is in
        self.reason = ""
        self._chunked = False
        self._length = -1  # Content-Length, when the body is not chunked
        self.ended = False  # the server ended the body (last chunk, or Content-Length bytes)

    def feed(self, data: bytes) -> None:
        self._buf += data
        if not self.status:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > 64 * 1024:
                    raise ConnectionError("etcd sent a response head longer than 64 KiB")
                return
            head = bytes(self._buf[:end]).split(b"\r\n")
            del self._buf[: end + 4]
            parts = head[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise ConnectionError(f"etcd answered something that is not HTTP/1.x: {head[0][:80]!r}")
            self.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"transfer-encoding" and b"chunked" in value.lower():
                    self._chunked = True
                elif name == b"content-length":
                    self._length = int(value.strip())
            self.status = int(parts[1])
        if not self._chunked:
            self._body += self._buf
            self._buf.clear()
            if 0 <= self._length <= len(self._body):
                self.ended = True
            return
        buf, pos = self._buf, 0
        while not self.ended:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                self.ended = True
                pos = eol + 2
                break
            if len(buf) < eol + 2 + size + 2:
                break
            self._body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
        del buf[:pos]

    def messages(self) -> list[bytes]:
        """The complete newline-terminated messages received so far (without their newline)."""
        body = self._body
        end = body.rfind(b"\n")
        if end < 0:
            return []
        out = bytes(body[:end]).split(b"\n")
        del body[: end + 1]
        return out

    def rest(self) -> bytes:
        """What is left of the body (an error answer's text)."""
        return bytes(self._body)
