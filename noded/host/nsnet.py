"""Sockets in another network namespace, without moving noded's threads.

When noded runs outside the node's namespace (``--node-netns``, used by tests where the "node" is a
throwaway netns), probes must still connect to pod IPs from the node's namespace, as kubelet does
from the host. A socket keeps the namespace it was created in, so a short-lived helper thread
enters the namespace (``setns`` only changes the calling thread), creates the socket and exits;
the socket is then used normally from any thread. No long-lived thread ever changes namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(netns_path: str, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM) -> socket.socket:
    result: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns_path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, type_))
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=make, name="netns-socket")
    t.start()
    t.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    return got


def connect(host: str, port: int, timeout: float, netns_path: str = "") -> socket.socket:
    """A connected TCP socket, created in ``netns_path`` when given."""
    if not netns_path:
        return socket.create_connection((host, port), timeout)
    s = socket_in_netns(netns_path, socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s
