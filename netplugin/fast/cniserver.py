"""The CNI server behind the thin client (``thin.py``): the plugin, kept warm, one fork per request.

Role: listen on ``/run/kubelab/cni/<netns inode>.sock`` for the namespace it runs in (the node's),
and serve each request exactly as an exec of the plugin would: a forked child gets the request's
environment and stdin, runs ``skel.dispatch`` with the bridge's or the IPAM's handlers, and sends
back the exit status and stdout. Forking keeps the spec's process model (the child may ``setns``
into the pod's namespace, holds the IPAM flock, dies after one request; requests run in parallel
like execs do) while skipping the interpreter start and imports.

Must be single-threaded (forking a threaded process is unsafe), so ``kubelab netagent`` runs it
as its own child process (``python -m netplugin.fast.cniserver``) instead of in a thread.
The socket file is ours alone (mode 0600, root); a stale one from a dead server is replaced.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys

from netplugin import skel
from netplugin.bridge import HANDLERS as BRIDGE_HANDLERS
from netplugin.fast import thin
from netplugin.ipam.plugin import HANDLERS as IPAM_HANDLERS

# the handlers' signatures differ only in optional driver arguments
HANDLERS: dict[str, dict[str, object]] = {"kubelab-bridge": dict(BRIDGE_HANDLERS), "kubelab-ipam": dict(IPAM_HANDLERS)}


def _recv_all(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        b = conn.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def handle(conn: socket.socket) -> None:
    data = _recv_all(conn)
    if not data.startswith(thin.MAGIC):
        conn.sendall(b"\x01" + b'{"cniVersion": "1.1.0", "code": 100, "msg": "bad request to the CNI server"}')
        return
    rest = data[len(thin.MAGIC) :]
    plugin, _, rest = rest.partition(b"\n")
    n = int.from_bytes(rest[:4], "big")
    env_blob, stdin = rest[4 : 4 + n], rest[4 + n :]
    environ = {}
    for item in env_blob.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            environ[k.decode()] = v.decode()
    handlers = HANDLERS.get(plugin.decode())
    if handlers is None:
        conn.sendall(b"\x01" + b'{"cniVersion": "1.1.0", "code": 100, "msg": "unknown plugin"}')
        return
    os.environ.clear()  # the child acts as the exec'd plugin would, with the caller's environment
    os.environ.update(environ)
    out = io.StringIO()
    rc = skel.dispatch(handlers, prefix=plugin.decode(), environ=environ, stdin=stdin, stdout=out)  # type: ignore[arg-type]
    conn.sendall(bytes([rc & 0xFF]) + out.getvalue().encode())


def serve(path: str | None = None, parent: int | None = None) -> None:
    """Serve until SIGTERM, or until ``parent`` (the agent that started us) is gone: a server
    outliving a SIGKILLed agent would keep the node's namespace and socket alive."""
    path = path or thin.socket_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.unlink(path)  # a stale socket of a dead server
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    mine = os.stat(path).st_ino  # a successor may replace the file: remove only our own
    srv.listen(128)
    if parent is not None:
        srv.settimeout(1.0)  # wake up now and then to see whether the parent is still there
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            try:
                conn, _ = srv.accept()
            except (InterruptedError, TimeoutError):
                if parent is not None and os.getppid() != parent:
                    return
                continue
            conn.settimeout(None)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    # The server ignores SIGCHLD so the kernel reaps its forks; this child must not
                    # inherit that: it waits for the plugins it execs (IPAM), and with SIGCHLD ignored
                    # their exit status is discarded and waitpid fails with ECHILD.
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    srv.close()
                    handle(conn)
                except BaseException as exc:  # the client answers "try again" (code 11)
                    skel.log("ERROR", f"CNI server request failed: {type(exc).__name__}: {exc}")
                    code = 1
                finally:
                    conn.close()
                    os._exit(code)
            conn.close()
    finally:
        srv.close()
        try:
            if os.stat(path).st_ino == mine:
                os.unlink(path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    """``python -m netplugin.fast.cniserver [--parent-pid PID] [SOCKET_PATH]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parent = None
    if args[:1] == ["--parent-pid"]:
        parent = int(args[1])
        args = args[2:]
    serve(args[0] if args else None, parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
