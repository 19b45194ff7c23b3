"""TLS from inside a pod: a busybox container (the lab's image, as pods run it) reaches the API
server over HTTPS and gets an HTTP answer, not a TLS error (issue 16).

Why this can fail although the container's /dev, /proc and root are complete: busybox's ``wget``
runs ``openssl s_client`` when it finds one on its PATH (the host has it, the image does not) and
otherwise its own TLS 1.2 client, which sends no ``signature_algorithms`` extension. RFC 5246
§7.4.1.4.1 says a server must then assume SHA-1 signatures; Go's crypto/tls (kube-apiserver) does,
OpenSSL 3 at its default security level refuses ("handshake failure"). So a busybox pod talks TLS
to the real kube-apiserver, and must to ours.

Topology: the ``cluster`` fixture of test_noded_api (API server on 127.0.0.1 in the root namespace,
noded's node network in a throwaway namespace). Pods cannot route to the root namespace, so the
test relays one TCP port from the pod bridge's gateway address (10.244.9.1, in the node
namespace) to the API server: the TLS session is the container's with the real API server.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from noded.host import nsnet
from tests.privileged.noded.test_noded_api import Cluster, running_ready
from tests.privileged.noded.test_noded_api import cluster as cluster  # the fixture, re-exported

GATEWAY = "10.244.9.1"  # the bridge's address for the podCIDR the cluster fixture assigns


class _Relay:
    """Accept on ``listener``; pipe every connection to ``target`` both ways until both ends close."""

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self.listener, self.target = listener, target
        self.threads: list[threading.Thread] = []
        self.socks: list[socket.socket] = []
        self._spawn(self._accept)

    def _spawn(self, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)  # type: ignore[arg-type]
        self.threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            self.socks += [conn, upstream]
            self._spawn(self._pipe, conn, upstream)
            self._spawn(self._pipe, upstream, conn)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(10)
        for s in self.socks:
            s.close()


def test_busybox_in_a_pod_talks_tls_to_the_api_server(cluster: Cluster) -> None:
    cluster.create("tls", [{"name": "c", "image": cluster.image("busybox"), "command": ["sleep", "3600"]}])
    cluster.wait_pod("tls", running_ready)  # the bridge (and its gateway address) exist from here
    listener = nsnet.socket_in_netns(f"/run/netns/{cluster.node_ns}")
    relay: _Relay | None = None
    try:
        listener.bind((GATEWAY, 0))
        listener.listen(8)
        relay = _Relay(listener, ("127.0.0.1", cluster.api.port))
        port = listener.getsockname()[1]
        # The image has no openssl: wget uses busybox's own TLS client, as in any busybox pod.
        probe = cluster.kubectl("exec", "tls", "--", "sh", "-c", "command -v openssl || echo none")
        assert probe.stdout.strip() == "none"
        res = cluster.kubectl(
            "exec", "tls", "--", "wget", "-O-", "--no-check-certificate", f"https://{GATEWAY}:{port}/version",
            check=False,
        )  # fmt: skip
        out = res.stdout + res.stderr
        # An HTTP answer, whichever: 200 with the version document, or the server's 401/403.
        assert '"gitVersion"' in out or "server returned error: HTTP/1.1 " in out, out
        assert "TLS" not in out and "handshake" not in out, out
    finally:
        if relay is not None:
            relay.close()
        else:
            listener.close()
