"""``kubectl port-forward`` end to end: real kubectl (1.33, and 1.31) → the API server's
``pods/portforward`` (SPDY/3.1 inside a WebSocket) → noded's kubelet ``/portForward`` → a port bound
to the pod's own 127.0.0.1, reached inside the pod's network namespace.

Reuses the ``cluster`` fixture of test_noded_api (API server, registry, noded, all torn down by it);
kubectl processes are ended by pid, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from controlplane.api.registry import PODS, SERVICES
from noded.host import nsnet
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for
from tests.privileged.noded.test_noded_api import Cluster, running_ready
from tests.privileged.noded.test_noded_api import cluster as cluster

# ≥1.31: SPDY/3.1 inside a WebSocket; ≤1.30: raw SPDY after an HTTP upgrade (spdy_upgrade).
# Each transport at both ends of its range (1.28, 1.29 and 1.32 passed too; kept out for time).
KUBECTLS = ("1.33", "1.31", "1.30", "1.27")

# httpd only on the pod's loopback (unreachable from outside the pod), and an echo server
# (``cat`` per connection: answers only once the client half-closes, so half-close is tested).
SERVER = (
    "mkdir -p /www && echo hello-from-the-pod > /www/index.html && seq 1 600000 > /www/big && "
    "httpd -p 127.0.0.1:8080 -h /www && exec nc -ll -p 9090 -e cat"
)


class PortForward:
    """A running ``kubectl port-forward`` with its output collected."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._lock = threading.Lock()
        for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True).start()

    def _collect(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                sink.append(line)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    def local_ports(self, count: int) -> list[int]:
        """The local ports kubectl chose (``Forwarding from 127.0.0.1:P -> R``), in order."""

        def ports() -> list[int] | None:
            found = [int(p) for p in re.findall(r"Forwarding from 127\.0\.0\.1:(\d+) ->", self.stdout)]
            if self.proc.poll() is not None:
                raise AssertionError(f"kubectl exited {self.proc.returncode}: {self.stderr}")
            return found if len(found) >= count else None

        return wait_for(ports, 20, interval=0.05, message=f"kubectl listening; stderr: {self.stderr!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@contextlib.contextmanager
def port_forward(cluster: Cluster, kubectl: str, *args: str) -> Iterator[PortForward]:
    pf = PortForward([kubectl, "--kubeconfig", str(cluster.api.kubeconfig), "port-forward", *args])
    try:
        yield pf
    finally:
        pf.stop()


def http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        return read_all(s)


def echo(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


@pytest.fixture
def server_pod(cluster: Cluster) -> str:
    # Ready only once both servers listen (writing the big file takes a moment before that).
    listening = "netstat -tln | grep -q 127.0.0.1:8080 && netstat -tln | grep -q :9090"
    ready = {"exec": {"command": ["sh", "-c", listening]}, "periodSeconds": 1}
    container = {"name": "c", "image": cluster.image("busybox"), "command": ["sh", "-c", SERVER]}
    cluster.create("pf", [{**container, "readinessProbe": ready}])
    cluster.wait_pod("pf", running_ready)
    return "pf"


@pytest.mark.parametrize("version", sorted(KUBECTLS))
def test_kubectl_port_forward_reaches_the_pods_loopback(cluster: Cluster, server_pod: str, version: str) -> None:
    kubectl = kubectl_binary(version)
    # The web server listens on the pod's 127.0.0.1 only: nothing outside the pod can reach it.
    pod_ip = cluster.pod(server_pod)["status"]["podIP"]
    with pytest.raises(ConnectionRefusedError):
        nsnet.connect(pod_ip, 8080, 5.0, f"/var/run/netns/{cluster.node_ns}").close()
    with port_forward(cluster, kubectl, f"pod/{server_pod}", "0:8080", "0:9090", "0:9999") as pf:
        web, echo_port, nothing = pf.local_ports(3)
        # Several connections at once share kubectl's one session.
        with ThreadPoolExecutor(8) as pool:
            pages = list(pool.map(lambda _: http_get(web), range(8)))
            payloads = [os.urandom(200_000) if i == 0 else f"echo {i}\n".encode() for i in range(6)]
            echoes = list(pool.map(lambda p: echo(echo_port, p), payloads))
        for page in pages:
            assert page.startswith(b"HTTP/1.") and page.endswith(b"hello-from-the-pod\n"), page[:200]
        assert echoes == payloads
        # Nothing listens on 9999: the pod side's error reaches kubectl on the error stream and it
        # prints it. client-go (since 1.23, kubernetes/kubernetes#103526; see kubectl#1169) then
        # closes its whole session on purpose ("lost connection to pod", exit 1) — what it does
        # against a real kubelet too.
        with socket.create_connection(("127.0.0.1", nothing), timeout=15) as s:
            assert read_all(s) == b""
        wait_for(lambda: pf.proc.poll() is not None, 20, message=f"kubectl exit; stderr: {pf.stderr!r}")
        wait_for(lambda: "lost connection to pod" in pf.stderr, 5, message=f"stderr complete: {pf.stderr!r}")
        assert pf.proc.returncode == 1
        assert (
            "an error occurred forwarding" in pf.stderr
            and "error forwarding port 9999 to pod pf" in pf.stderr
            and "connect: connection refused" in pf.stderr
        ), pf.stderr


def test_big_download_and_kubectl_going_away_closes_the_pod_side(cluster: Cluster, server_pod: str) -> None:
    big = "".join(f"{i}\n" for i in range(1, 600001)).encode()  # what ``seq`` wrote in the pod (~4 MB)
    with port_forward(cluster, kubectl_binary("1.33"), f"pod/{server_pod}", "0:8080", "0:9090") as pf:
        web, echo_port = pf.local_ports(2)
        with socket.create_connection(("127.0.0.1", web), timeout=30) as s:
            s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
            head, _, body = read_all(s).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and body == big
        # A connection left open (the pod's ``cat`` answers each line at once) ...
        held = socket.create_connection(("127.0.0.1", echo_port), timeout=15)
        try:
            held.sendall(b"still here\n")
            assert held.recv(100) == b"still here\n"
            assert established_on(cluster, server_pod, 9090) == 1
            # ... is closed inside the pod when kubectl goes away (session → kubelet → pod socket).
            pf.stop()
            wait_for(lambda: established_on(cluster, server_pod, 9090) == 0, 20, message="pod-side connection closed")
            assert held.recv(100) == b""
        finally:
            held.close()


def established_on(cluster: Cluster, pod: str, port: int) -> int:
    out = cluster.kubectl("exec", pod, "--", "netstat", "-tn").stdout
    # Columns: proto recv-q send-q local foreign state; count the pod's server ends only (the
    # pod-side client end, noded's socket in the pod's netns, is listed too).
    rows = [line.split() for line in out.splitlines()]
    return sum(1 for r in rows if len(r) >= 6 and r[3].endswith(f":{port}") and r[5] == "ESTABLISHED")


def test_port_forward_to_a_service_resolves_its_pod_and_target_port(cluster: Cluster, server_pod: str) -> None:
    """``svc/…``: kubectl finds a pod by the selector and maps the service port to the
    container's named port, then forwards to that pod like any other."""
    cluster.client.patch(PODS, server_pod, {"metadata": {"labels": {"app": "pf"}}}, "default")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pf-svc", "namespace": "default"},
        "spec": {"selector": {"app": "pf"}, "ports": [{"name": "web", "port": 80, "targetPort": 8080}]},
    }
    cluster.client.create(SERVICES, svc, "default")
    with port_forward(cluster, kubectl_binary("1.33"), "svc/pf-svc", "0:80") as pf:
        (web,) = pf.local_ports(1)
        assert "-> 8080" in pf.stdout
        assert http_get(web).endswith(b"hello-from-the-pod\n")
