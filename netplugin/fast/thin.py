"""The thin CNI client in Python (design (b), the "thick plugin"): hand the exec to a warm server.

``thinclient.c`` is the same client compiled (design (c), the default where ``cc`` exists); it
execs the Python launcher (which runs this module) when no server answers.

Role: what the ``kubelab-bridge``/``kubelab-ipam`` launchers run first. A plugin exec costs an
interpreter start (~8 ms, unavoidable) plus importing the plugin (~3-5 ms on a quiet machine,
~10 ms on a loaded one) plus the work (~4 ms of kernel time). A CNI server (``cniserver.py``,
started by ``kubelab netagent`` in the node's namespace) keeps the plugin imported and forks a
child per request, so this client needs only the builtin ``posix`` and ``_socket`` modules.

Protocol over a unix stream socket (one request per connection):
  client → ``KLCNI1\\n<plugin>\\n<u32 env length><env: NUL-separated K=V><stdin bytes>``, then
  shuts down its write side; server → ``<1 byte exit status><stdout bytes>``, then closes.

Which server: the one serving *this* network namespace, found at
``/run/kubelab/cni/<inode of /proc/self/ns/net>.sock`` — plugins of different nodes of the
one-machine lab (one namespace each, one file system) never talk to another node's server.

Fallback: when no server answers the connect (none running, stale socket) the plugin runs
in-process here (design (a)), so the agent is an accelerator, never a dependency. Once the request
was sent, the server's answer is final (a failure is not retried in-process: ADD is not
idempotent); a server dying mid-request gives the spec's "try again later" (code 11).
"""

from __future__ import annotations

import _socket
import posix
import sys

SOCKET_DIR = "/run/kubelab/cni"
MAGIC = b"KLCNI1\n"
PLUGINS = ("kubelab-bridge", "kubelab-ipam")
_ENV_PREFIXES = (b"CNI_", b"KUBELAB_")  # and PATH itself (below)


def forwarded_env(environ: dict[bytes, bytes]) -> bytes:
    """The part of our environment the server's child runs with: the CNI_* and KUBELAB_* variables
    and PATH (the plugin execs iptables and the IPAM plugin; without PATH it would not find them)."""
    return b"\0".join(k + b"=" + v for k, v in environ.items() if k.startswith(_ENV_PREFIXES) or k == b"PATH")


def socket_path() -> str:
    return f"{SOCKET_DIR}/{posix.stat('/proc/self/ns/net').st_ino}.sock"


def _fallback(plugin: str) -> int:
    if plugin == "kubelab-bridge":
        from netplugin.bridge import main as bridge_main

        return bridge_main()
    from netplugin.ipam.plugin import main as ipam_main

    return ipam_main()


def run(plugin: str) -> int:
    if posix.environ.get(b"KUBELAB_CNI_NO_SERVER") == b"1":
        return _fallback(plugin)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(socket_path())
    except OSError:
        s.close()
        return _fallback(plugin)
    env = forwarded_env(posix.environ)
    stdin = sys.stdin.buffer.read()
    try:
        s.sendall(MAGIC + plugin.encode() + b"\n" + len(env).to_bytes(4, "big") + env + stdin)
        s.shutdown(_socket.SHUT_WR)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except OSError as exc:
        chunks = [b""]
        err: OSError | None = exc
    else:
        err = None
    finally:
        s.close()
    reply = b"".join(chunks)
    if not reply:
        msg = f"CNI server {socket_path()} gave no answer{': ' + str(err) if err else ''}; try again"
        sys.stdout.write('{"cniVersion": "1.0.0", "code": 11, "msg": "' + msg.replace('"', "'") + '"}')
        return 1
    sys.stdout.buffer.write(reply[1:])
    sys.stdout.flush()
    return reply[0]


def main_bridge() -> int:
    return run("kubelab-bridge")


def main_ipam() -> int:
    return run("kubelab-ipam")
