"""A lean httpx transport over the standard library's ``http.client``, with a connection pool.

Why: every component talks to the API server through ``ApiClient`` (an ``httpx.Client``), and the
scheduler, controllers and node agents make one request per object they touch. Measured here,
httpx's default transport (httpcore) spends about twice the CPU per keep-alive HTTPS request of a
plain ``http.client`` connection (≈ 0.7 ms vs ≈ 0.3 ms on a busy 2-core machine) — CPU the API
server on the same machine then lacks. The httpx ``Client`` API (and ``MockTransport`` for tests)
stays; only the bottom layer changes. ``ApiClient.request`` goes one step further and calls
``simple_request`` directly (httpx's URL parsing and models cost as much again); watches stream
through the ordinary httpx path. Set ``KUBELAB_CLIENT_TRANSPORT=httpcore`` to use httpx's
default instead.

Behaviour:
- HTTP/1.1 keep-alive connections, pooled per (scheme, host, port); a connection goes back to
  the pool only when its response was read to the end and the server did not ask to close it.
- Responses stream (``read1``), so watches deliver events as they arrive. The socket is exposed as
  ``response.extensions["network_stream"].get_extra_info("socket")`` like httpcore does, which
  ``WatchStream.close`` uses to end a watch from another thread.
- An idle connection is not reused after ``max_idle_seconds`` (below uvicorn's 5 s keep-alive
  timeout) or once the server has closed it (the socket polls readable). A request that still
  fails before any response on a *reused* connection is retried once on a fresh one; nothing else
  is retried.
- Errors are httpx's: ``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``ReadError``,
  ``RemoteProtocolError``, so callers catch ``httpx.HTTPError`` whichever transport runs.

Concurrency: thread-safe; the pool is guarded by a lock, a connection is used by one request at a
time.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _readable(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection with something to read has been closed by the server."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        r, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r)


class _NetworkStream:
    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._conn.sock
        return None


class _ResponseStream(httpx.SyncByteStream):
    def __init__(
        self,
        pool: StdlibTransport,
        key: tuple[str, str, int],
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self._resp = resp
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self._resp.read1(65536)
                if not chunk:
                    return
                yield chunk
        except TimeoutError as e:
            raise httpx.ReadTimeout(str(e) or "read timed out") from e
        except http.client.IncompleteRead as e:
            raise httpx.RemoteProtocolError(f"incomplete response body: {e}") from e
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
            # ValueError/AttributeError: the socket was shut down or closed under us.
            raise httpx.ReadError(str(e) or type(e).__name__) from e

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        resp = self._resp
        # Complete when http.client closed it (chunked end, or EOF) or a Content-Length body has
        # been read to its last byte (read1 does not close the response by itself then).
        complete = resp.isclosed() or (not resp.chunked and resp.length == 0)
        if complete and not resp.will_close:
            resp.close()  # releases the makefile, not the socket; the connection can send again
            self._pool._release(self._key, self._conn)
        else:
            self._resp.close()
            self._conn.close()


class StdlibTransport(httpx.BaseTransport):
    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_idle_per_host: int = 64,
        max_idle_seconds: float = 4.0,
    ) -> None:
        self._ctx = ssl_context
        self._max_idle = max_idle_per_host
        self._idle: dict[tuple[str, str, int], list[tuple[http.client.HTTPConnection, float]]] = {}
        self._max_idle_seconds = max_idle_seconds
        self._lock = threading.Lock()
        self._closed = False

    def _acquire(
        self, key: tuple[str, str, int], connect_timeout: float | None
    ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                old, since = idle.pop()
                if time.monotonic() - since < self._max_idle_seconds and not _readable(old):
                    return old, True
                # Idle too long (the server's keep-alive timeout is near: uvicorn's is 5 s) or
                # already closed by the server (readable = EOF pending): do not reuse.
                old.close()
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            ctx = self._ctx or ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            conn.connect()
        except TimeoutError as e:
            conn.close()
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from e
        except (OSError, ssl.SSLError) as e:
            conn.close()
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {e}") from e
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _release(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append((conn, time.monotonic()))
                    return
        conn.close()

    def _exchange(
        self,
        key: tuple[str, str, int],
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request and read the response head; the caller owns the connection after."""
        where = f"{method} {key[0]}://{key[1]}:{key[2]}{target.split('?', 1)[0]}"
        for attempt in (0, 1):
            conn, reused = self._acquire(key, connect_timeout)
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(read_timeout)
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body or None)
                return conn, conn.getresponse()
            except TimeoutError as e:
                conn.close()
                raise httpx.ReadTimeout(f"{where}: timed out") from e
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                ssl.SSLEOFError,
                ssl.SSLZeroReturnError,
            ) as e:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed the idle connection: once more on a new one
                raise httpx.RemoteProtocolError(f"{where}: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise httpx.ReadError(f"{where}: {e}") from e
        raise AssertionError("unreachable")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        key = (scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 80))
        timeouts = request.extensions.get("timeout") or {}
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        conn, resp = self._exchange(
            key,
            request.method,
            url.raw_path.decode("ascii"),
            headers,
            request.read(),
            timeouts.get("connect"),
            timeouts.get("read"),
        )
        return httpx.Response(
            status_code=resp.status,
            headers=resp.getheaders(),
            stream=_ResponseStream(self, key, conn, resp),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (resp.reason or "").encode("latin-1"),
                "network_stream": _NetworkStream(conn),
            },
        )

    def simple_request(
        self,
        key: tuple[str, str, int],
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[int, str, bytes]:
        """One whole request without building httpx objects (the client's hot path: URL parsing
        and model building in httpx cost as much CPU as the request itself). Returns
        (status, content type, body)."""
        conn, resp = self._exchange(key, method, target, headers, body, timeout, timeout)
        try:
            data = resp.read()
        except TimeoutError as e:
            conn.close()
            raise httpx.ReadTimeout(f"{method} {target}: timed out") from e
        except http.client.IncompleteRead as e:
            conn.close()
            raise httpx.RemoteProtocolError(f"{method} {target}: incomplete response body") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise httpx.ReadError(f"{method} {target}: {e}") from e
        if resp.will_close:
            conn.close()
        else:
            self._release(key, conn)
        return resp.status, resp.getheader("content-type") or "", data

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c, _ in idle]
            self._idle.clear()
        for c in conns:
            c.close()
