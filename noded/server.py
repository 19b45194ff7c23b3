"""The kubelet API on :10250 (HTTPS, client certificates from the cluster CA only).

Endpoints (the real kubelet's paths, which the API server's pods/log and pods/exec proxy to):
- ``GET /healthz`` → ``ok``; ``GET /pods`` → a PodList of this node's pods; ``GET /metrics``;
- ``GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&limitBytes=``
  reads the CRI log file (``<ts> <stream> <P|F> <text>``) and returns the text (with the timestamp
  when asked), chunked; ``follow`` streams until the container exits and the file is drained;
- ``GET /exec/{ns}/{pod}/{container}?command=…&stdin=&stdout=&stderr=&tty=`` and ``/attach/…``: a
  WebSocket with subprotocol ``v5.channel.k8s.io`` (or ``v4``). Every binary message starts with its
  channel: 0 stdin, 1 stdout, 2 stderr, 3 status (a ``Status`` JSON with the exit code), 4 resize
  (``{"Width":…,"Height":…}``), 255 close-stdin (v5).
  ``exec`` with ``tty=true`` runs the command on a real pseudo-terminal (the runtime holds its
  master): channel 0 is typed into it, its output comes back on channel 1 and every resize
  message sets its size; without a tty stdout and stderr stay apart (channels 1 and 2). The
  final message is channel 3: ``Success``, or ``NonZeroExitCode`` with the code as the
  ``ExitCode`` cause (kubectl exits with that code). A client that goes away hangs the terminal up.
  ``attach`` streams the container's own output from now on and, when the container was created
  with ``stdin: true``, writes channel 0 to its stdin (pipe or terminal, both owned by the
  container's shim, so they survive noded restarts); resize works when it has a terminal. The
  session ends when the client goes or the container exits. Containers without an attach socket
  (started by an older shim) get the output-only fallback: the log file followed from now on.

- ``GET /portForward/{ns}/{pod}?port=N``: a WebSocket (subprotocol ``portforward.kubelab.io``) for ONE
  forwarded connection — the API server opens one per connection kubectl accepts (it runs kubectl's
  SPDY session itself). noded connects to ``127.0.0.1:N`` *inside the pod's network namespace*
  (a socket made by a helper thread that ``setns`` into the sandbox's netns, ``noded.host.nsnet``;
  host-network pods: the node's), so ports bound to the pod's loopback work as in Kubernetes, and
  relays. Binary messages carry a channel byte: ``0`` data (both ways), ``1`` error text (noded →
  API server, then close; e.g. connection refused), ``255 0`` "my sending side is done" (the
  client's half-closes the pod socket; noded sends it when the pod closed, then closes).

Built on the standard library (``ThreadingHTTPServer`` + ``ssl``; one thread per connection, which
also runs the TLS handshake, within ``HANDSHAKE_TIMEOUT``) with a minimal RFC 6455 framer: noded may
not import the API server's framework.

TLS 1.3 session tickets: none are sent (``num_tickets = 0``). OpenSSL sends them as records right
after the handshake, i.e. while a WebSocket client is already writing its upgrade request. A
client that reads on one thread and writes on another — websockets' sync client, whose reader
thread is already in ``SSL_read`` when the request goes out — then drives one OpenSSL object
from two threads at once, which OpenSSL does not support: under load the request was lost, the
handler waited for it and the client for the 101, both forever (issue 18 §5; seen as "the
attach handshake never completed"). Nobody resumes sessions with the kubelet API, so the
tickets bought nothing; without them nothing reaches a client before it has spoken.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from noded import stats
from noded.host import nsnet
from noded.runtime.interface import AttachUnavailable, ContainerState, ContainerStatus, SandboxState

if TYPE_CHECKING:
    from noded.runtime.interface import AttachSession, ContainerRuntime, ExecSession

log = logging.getLogger(__name__)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORTFORWARD_SUBPROTOCOL = "portforward.kubelab.io"
HANDSHAKE_TIMEOUT = 10.0  # seconds a client has to complete the TLS handshake


class PodLister(Protocol):
    """The node's pods as the API has them (noded's pod informer): by ``namespace/name`` key."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def list(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class KubeletHost:
    """What the kubelet API serves from: the node's pods, its runtime and a few figures.

    The server depends on this small interface, not on the agent (``noded.agent.Noded`` builds
    one), so it can be tested with a fake runtime and a dict of pods.
    """

    node_name: str
    pods: PodLister
    runtime: ContainerRuntime
    node_netns_path: str = ""  # host-network pods' port-forward target
    queue_depth: Callable[[], int] = lambda: 0  # pods waiting to be synced (for /metrics)


def parse_cri_line(line: str) -> tuple[str, str, str, str] | None:
    """``<ts> <stream> <tag> <text>`` → (ts, stream, tag, text); None if malformed."""
    parts = line.split(" ", 3)
    if len(parts) < 3:
        return None
    ts, stream, tag = parts[0], parts[1], parts[2]
    return ts, stream, tag, parts[3] if len(parts) == 4 else ""


def render_log(lines: list[str], timestamps: bool) -> bytes:
    out = []
    for line in lines:
        p = parse_cri_line(line)
        if p is None:
            continue
        ts, _stream, tag, text = p
        out.append((f"{ts} " if timestamps else "") + text + ("\n" if tag == "F" else ""))
    return "".join(out).encode()


def _since_cutoff(q: dict[str, list[str]]) -> str:
    """``sinceSeconds`` / ``sinceTime`` as a CRI timestamp prefix to compare lines against."""
    from datetime import UTC, datetime, timedelta

    when: datetime | None = None
    if "sinceSeconds" in q:
        when = datetime.now(UTC) - timedelta(seconds=int(q["sinceSeconds"][0]))
    elif "sinceTime" in q:
        when = datetime.fromisoformat(q["sinceTime"][0].replace("Z", "+00:00")).astimezone(UTC)
    if when is None:
        return ""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}000Z"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet api: " + format, *args)

    def setup(self) -> None:
        # The TLS handshake runs here, on the connection's own thread and with a deadline, not in
        # the accept loop: there a client that connects and never says hello blocked every
        # later connection (and the accept loop) for as long as it stayed.
        conn = self.request
        conn.settimeout(HANDSHAKE_TIMEOUT)
        conn.do_handshake()
        conn.settimeout(None)
        super().setup()
        # Small writes (WebSocket frames; the 101 right after TLS 1.3's session tickets) must not
        # wait for the peer's delayed ACK (Nagle): that cost ~40 ms per exchange, twice per
        # forwarded connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- plumbing --------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code: int, reason: str, message: str) -> None:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        self._send(code, json.dumps(body).encode(), "application/json")

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _upgrade(self, subprotocol: str) -> _WebSocket:
        """Answer the WebSocket handshake (101 with the chosen subprotocol) and take the stream over."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", subprotocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        return _WebSocket(self.rfile, self.wfile)

    def _find(self, ns: str, pod: str, container: str, previous: bool = False) -> ContainerStatus | None:
        host = self.server.host
        obj = host.pods.get(f"{ns}/{pod}")
        if obj is None:
            return None
        uid = obj["metadata"]["uid"]
        sids = {s.id for s in host.runtime.list_pod_sandboxes(uid)}
        cs = sorted(
            (c for c in host.runtime.list_containers() if c.sandbox_id in sids and c.name == container),
            key=lambda c: (c.attempt, c.created_at),
        )
        if previous:
            return cs[-2] if len(cs) >= 2 else None
        return cs[-1] if cs else None

    # ---- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = {k: v for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            if url.path == "/healthz":
                self._send(200, b"ok")
            elif url.path == "/pods":
                items = self.server.host.pods.list()
                self._send(
                    200,
                    json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}).encode(),
                    "application/json",
                )
            elif url.path == "/metrics":
                self._send(200, self._metrics(), "text/plain; version=0.0.4")
            elif url.path in stats.ROUTES:  # /stats/summary, /metrics/resource (noded/stats.py)
                self._send(*stats.serve(self.server.host, url.path))
            elif len(parts) == 4 and parts[0] == "containerLogs":
                self._logs(parts[1], parts[2], parts[3], q)
            elif len(parts) == 4 and parts[0] in ("exec", "attach"):
                self._stream(parts[0], parts[1], parts[2], parts[3], q)
            elif len(parts) == 3 and parts[0] == "portForward":
                self._port_forward(parts[1], parts[2], q)
            else:
                self._status(404, "NotFound", f"no such kubelet endpoint: {url.path}")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    do_POST = do_GET

    def _metrics(self) -> bytes:
        host = self.server.host
        containers = host.runtime.list_containers()
        running = sum(1 for c in containers if c.state == ContainerState.RUNNING)
        lines = [
            "# HELP kubelet_running_pods Number of pods that have a running pod sandbox",
            "# TYPE kubelet_running_pods gauge",
            f"kubelet_running_pods {len(host.runtime.list_pod_sandboxes())}",
            "# HELP kubelet_running_containers Number of containers currently running",
            "# TYPE kubelet_running_containers gauge",
            f'kubelet_running_containers{{container_state="running"}} {running}',
            f'kubelet_running_containers{{container_state="exited"}} {len(containers) - running}',
            "# HELP kubelet_pod_worker_queue_depth Pods waiting to be synced",
            "# TYPE kubelet_pod_worker_queue_depth gauge",
            f"kubelet_pod_worker_queue_depth {host.queue_depth()}",
        ]
        return ("\n".join(lines) + "\n").encode()

    def _logs(self, ns: str, pod: str, container: str, q: dict[str, list[str]]) -> None:
        def flag(name: str) -> bool:
            return q.get(name, ["false"])[0].lower() in ("true", "1")

        c = self._find(ns, pod, container, previous=flag("previous"))
        if c is None:
            what = "previous terminated container" if flag("previous") else "container"
            self._status(404, "NotFound", f'{what} "{container}" in pod "{pod}" not found')
            return
        path = Path(c.log_path)
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        cutoff = _since_cutoff(q)
        if cutoff:
            # CRI timestamps are fixed-width UTC RFC3339Nano, so text order is time order.
            lines = [ln for ln in lines if ln[:30] >= cutoff]
        if "tailLines" in q:
            n = int(q["tailLines"][0])
            lines = lines[-n:] if n > 0 else []
        body = render_log(lines, flag("timestamps"))
        if "limitBytes" in q:
            body = body[: int(q["limitBytes"][0])]
        if not flag("follow"):
            self._send(200, body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(body)
        pos = path.stat().st_size if path.exists() else 0
        pending = b""
        while not self.server.stopping.is_set():
            try:
                size = path.stat().st_size
            except OSError:
                break
            if size > pos:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read(size - pos)
                pos = size
                data = pending + data
                complete, _, pending = data.rpartition(b"\n")
                if complete:
                    self._chunk(render_log(complete.decode(errors="replace").split("\n"), flag("timestamps")))
                continue
            try:
                st = self.server.host.runtime.container_status(c.id)
            except Exception:
                break
            if st.state == ContainerState.EXITED:
                break
            time.sleep(0.1)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- WebSocket exec / attach -----------------------------------------------------------

    def _stream(self, kind: str, ns: str, pod: str, container: str, q: dict[str, list[str]]) -> None:
        if self.headers.get("Upgrade", "").lower() != "websocket":
            self._status(
                400,
                "BadRequest",
                "exec/attach need a WebSocket upgrade (v5.channel.k8s.io); SPDY is not supported by kubelab",
            )
            return
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        proto = next((p for p in SUBPROTOCOLS if p in offered), None)
        if proto is None:
            self._status(400, "BadRequest", f"unsupported stream protocols {offered}; use {list(SUBPROTOCOLS)}")
            return
        c = self._find(ns, pod, container)
        if c is None or c.state != ContainerState.RUNNING:
            self._status(404, "NotFound", f'container "{container}" in pod "{pod}" is not running')
            return
        ws = self._upgrade(proto)
        if kind == "exec":
            self._exec(ws, c.id, q)
        else:
            self._attach(ws, c, q)

    def _exec(self, ws: _WebSocket, cid: str, q: dict[str, list[str]]) -> None:
        argv = q.get("command", [])
        want_stdin, tty = _flag(q, "stdin"), _flag(q, "tty")
        if not argv:
            ws.send_status(1, "you must specify at least one command for the container")
            ws.close()
            return
        try:
            session = self.server.host.runtime.exec(cid, argv, want_stdin, tty=tty)
        except Exception as exc:
            ws.send_status(1, f"exec failed: {exc}")
            ws.close()
            return
        if want_stdin or tty:
            threading.Thread(
                target=_pump_client, args=(ws, session, session.kill if tty else None), daemon=True, name="exec-in"
            ).start()
        # Without a stderr stream (a terminal has one output) stderr is folded into stdout.
        want_stderr = _flag(q, "stderr")
        for ch, data in session.output():
            ws.send(bytes([ch if want_stderr else 1]) + data)
        code = session.wait()
        if code == 0:
            ws.send(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
        else:
            ws.send_status(code, f"command terminated with non-zero exit code: exit status {code}")
        ws.close()

    def _attach(self, ws: _WebSocket, c: ContainerStatus, q: dict[str, list[str]]) -> None:
        try:
            session = self.server.host.runtime.attach(c.id, _flag(q, "stdin"), _flag(q, "tty"))
        except AttachUnavailable as exc:
            log.debug("attach to %s: %s; following its log instead", c.id, exc)
            self._attach_log(ws, c)
            return
        want = {1: _flag(q, "stdout"), 2: _flag(q, "stderr")}
        try:
            threading.Thread(
                target=_pump_client, args=(ws, session, session.detach), daemon=True, name="attach-in"
            ).start()
            for ch, data in session.output():
                if want.get(ch):
                    ws.send(bytes([ch]) + data)
        finally:
            session.close()
        ws.send(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
        ws.close()

    def _attach_log(self, ws: _WebSocket, c: ContainerStatus) -> None:
        """Output-only attach for containers whose shim serves no attach socket: follow the log."""
        path = Path(c.log_path)
        pos = path.stat().st_size if path.exists() else 0
        pending = b""
        while not self.server.stopping.is_set():
            size = path.stat().st_size if path.exists() else pos
            if size > pos:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read(size - pos)
                pos = size
                complete, _, pending = (pending + data).rpartition(b"\n")
                for line in complete.decode(errors="replace").split("\n"):
                    p = parse_cri_line(line)
                    if p:
                        ws.send(bytes([1 if p[1] == "stdout" else 2]) + (p[3] + ("\n" if p[2] == "F" else "")).encode())
                continue
            st = self.server.host.runtime.container_status(c.id)
            if st.state == ContainerState.EXITED:
                break
            time.sleep(0.1)
        ws.send(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
        ws.close()

    # ---- port-forward ----------------------------------------------------------------------

    def _pod_netns(self, ns: str, pod: str) -> str | None:
        """The network namespace of the pod's ready sandbox (the node's for host-network pods)."""
        host = self.server.host
        obj = host.pods.get(f"{ns}/{pod}")
        if obj is None:
            return None
        ready = [s for s in host.runtime.list_pod_sandboxes(obj["metadata"]["uid"]) if s.state == SandboxState.READY]
        if not ready:
            return None
        sandbox = max(ready, key=lambda s: s.attempt)
        return sandbox.netns_path or host.node_netns_path

    def _port_forward(self, ns: str, pod: str, q: dict[str, list[str]]) -> None:
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if self.headers.get("Upgrade", "").lower() != "websocket" or PORTFORWARD_SUBPROTOCOL not in offered:
            self._status(400, "BadRequest", f"portForward needs a WebSocket upgrade ({PORTFORWARD_SUBPROTOCOL})")
            return
        raw = q.get("port", [""])[0]
        port = int(raw) if raw.isdigit() else 0
        if not 0 < port < 65536:
            self._status(400, "BadRequest", f'invalid port "{raw}": a port-forward needs ?port=1..65535')
            return
        netns = self._pod_netns(ns, pod)
        if netns is None:
            self._status(404, "NotFound", f'pod "{pod}" in namespace "{ns}" has no running sandbox on this node')
            return
        ws = self._upgrade(PORTFORWARD_SUBPROTOCOL)
        try:
            sock = nsnet.connect("127.0.0.1", port, 5.0, netns)
        except OSError as exc:
            # kubelet's wording, so what kubectl prints reads the same.
            reason = (exc.strerror or str(exc)).lower()  # Go's wording: "connect: connection refused"
            ws.send(
                b"\x01"
                + f"error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} "
                f"inside the pod's network namespace: dial tcp4 127.0.0.1:{port}: connect: {reason}".encode()
            )
            ws.close()
            return
        sock.settimeout(None)
        _relay_port(ws, sock, f"{ns}/{pod}:{port}")


def _relay_port(ws: _WebSocket, sock: socket.socket, what: str) -> None:
    """Relay one forwarded connection until both sides are done (see the module docstring)."""

    def pod_to_client() -> None:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                ws.send(b"\x00" + data)
        except OSError as exc:
            log.debug("port-forward %s: %s", what, exc)
            ws.send(b"\x01" + f"error forwarding {what}: {exc.strerror or exc}".encode())
        ws.send(b"\xff\x00")
        ws.close()

    out = threading.Thread(target=pod_to_client, daemon=True, name="portforward-out")
    out.start()
    try:
        while True:
            msg = ws.recv()
            if msg is None:
                break
            if msg[:1] == b"\x00":
                sock.sendall(msg[1:])
            elif msg[:2] == b"\xff\x00":
                sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        log.debug("port-forward %s: %s", what, exc)
    finally:
        # The API server left (or the pod side ended): wake the reader, then let go of the socket.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        out.join(10)
        sock.close()


def _flag(q: dict[str, list[str]], name: str) -> bool:
    return q.get(name, ["false"])[0].lower() in ("true", "1")


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """A channel-4 message ``{"Width":W,"Height":H}`` → (W, H); None if malformed or 0×0 (what a
    client sends when it does not know its size: applying it would only shrink the terminal)."""
    try:
        doc = json.loads(data)
        width, height = int(doc.get("Width", 0)), int(doc.get("Height", 0))
    except (ValueError, TypeError, AttributeError):
        return None
    if not (0 <= width <= 0xFFFF and 0 <= height <= 0xFFFF) or (width, height) == (0, 0):
        return None
    return width, height


def _pump_client(ws: _WebSocket, session: ExecSession | AttachSession, on_close: Callable[[], None] | None) -> None:
    """The client's messages: stdin (0), resize (4), stdin EOF (255 0, v5); ``on_close`` when
    the client goes away (hang up an exec terminal, detach an attach)."""
    while True:
        msg = ws.recv()
        if msg is None:
            if on_close is not None:
                on_close()
            else:
                session.close_stdin()
            return
        if not msg:
            continue
        ch, data = msg[0], msg[1:]
        if ch == 0:
            session.write_stdin(data)
        elif ch == 4:
            size = parse_resize(data)
            if size is not None:
                session.resize(*size)
        elif ch == 255 and data[:1] == b"\x00":  # v5: the client's stdin reached EOF
            session.close_stdin()


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte client mask, as one big-integer operation (a per-byte loop made
    port-forward uploads crawl at a few MB/s)."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class _WebSocket:
    """Server side of RFC 6455: unmasked binary frames out, masked frames in."""

    def __init__(self, rfile: Any, wfile: Any) -> None:
        self.rfile, self.wfile = rfile, wfile
        self._lock = threading.Lock()
        self.closed = False

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self._lock:
            if self.closed:
                return
            with contextlib.suppress(OSError, ValueError):
                self.wfile.write(head + payload)
                self.wfile.flush()

    def send(self, data: bytes) -> None:
        self._frame(0x2, data)

    def send_status(self, code: int, message: str) -> None:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "NonZeroExitCode" if code else "InternalError",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
        self.send(b"\x03" + json.dumps(status).encode())

    def close(self) -> None:
        self._frame(0x8, struct.pack("!H", 1000))
        with self._lock:
            self.closed = True

    def recv(self) -> bytes | None:
        """The next data message (binary or text), None once closed."""
        data = b""
        while True:
            try:
                h = self.rfile.read(2)
                if len(h) < 2:
                    return None
                fin, opcode = h[0] & 0x80, h[0] & 0x0F
                masked, n = h[1] & 0x80, h[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self.rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if masked else b""
                payload = self.rfile.read(n)
            except (OSError, ValueError, struct.error):
                return None
            if mask:
                payload = _unmask(payload, mask)
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            data += payload
            if fin:
                return bytes(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    host: KubeletHost
    stopping: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake or a connection reset is the client's business: one debug line,
        no traceback on stderr (socketserver's default)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # ssl.SSLError, TimeoutError and resets are OSErrors
            log.debug("kubelet api: connection from %s: %s", client_address, exc)
            return
        log.exception("kubelet api: connection from %s failed", client_address)


class KubeletServer:
    def __init__(
        self, node: KubeletHost, cert: Path, key: Path, client_ca: Path, host: str = "0.0.0.0", port: int = 10250
    ) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.verify_mode = ssl.CERT_REQUIRED  # only clients with a certificate from the cluster CA
        ctx.load_verify_locations(str(client_ca))
        # No TLS 1.3 session tickets (see "TLS 1.3 session tickets" in the module docstring).
        ctx.num_tickets = 0
        self.httpd = _Server((host, port), _Handler, bind_and_activate=False)
        self.httpd.allow_reuse_address = True
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.httpd.host = node
        self.httpd.stopping = threading.Event()
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="kubelet-api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("kubelet API listening on %s:%s", *self.httpd.server_address[:2])

    def stop(self) -> None:
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


__all__ = ["KubeletHost", "KubeletServer", "PodLister", "parse_cri_line", "parse_resize", "render_log"]
