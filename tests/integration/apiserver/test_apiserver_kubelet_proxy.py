"""pods/log and pods/exec through the API server to a (fake) kubelet, with the real kubectl.

The fake kubelet serves the real kubelet's paths over TLS and *requires* a client certificate
signed by the cluster CA, so a successful call also proves the server presents its
apiserver-kubelet-client certificate.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import pki
from tests.helpers.apiserver import RunningApiServer, free_port
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for

FAKE = Path(__file__).with_name("fake_kubelet.py")


@pytest.fixture(scope="module")
def kubelet(server: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    d: Path = tmp_path_factory.mktemp("kubelet")
    ca = pki.CertificateAuthority(server.ca_file.read_bytes(), (server.data_dir / "pki" / "ca.key").read_bytes())
    cert, key = pki.issue_cert(ca, "kl-fake", ips=["127.0.0.1"], client=False, server=True)
    (d / "k.crt").write_bytes(cert)
    (d / "k.key").write_bytes(key)
    port = free_port()
    log = open(d / "kubelet.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), str(port), str(d / "k.crt"), str(d / "k.key"), str(server.ca_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for(lambda: _listening(port), timeout=15, message="fake kubelet")
        with server.http() as c:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "kl-fake"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                },
            }
            assert c.post("/api/v1/nodes", json=node).status_code == 201
            for name, containers in (("solo", ["main"]), ("duo", ["a", "b"])):
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {
                        "nodeName": "kl-fake",
                        "containers": [{"name": n, "image": "busybox"} for n in containers],
                    },
                }
                assert c.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
            unscheduled = {"metadata": {"name": "nowhere"}, "spec": {"containers": [{"name": "x", "image": "y"}]}}
            assert c.post("/api/v1/namespaces/default/pods", json=unscheduled).status_code == 201
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def kubectl(
    server: RunningApiServer, tmp: Path, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp / "cache"), *args],
        capture_output=True,
        input=input,
        timeout=60,
    )


def test_logs_through_the_proxy(server: RunningApiServer, kubelet: int, tmp_path: Path) -> None:
    r = kubectl(server, tmp_path, "logs", "solo", "--tail=2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"log of default/solo/main tail=2\n"
    r = kubectl(server, tmp_path, "logs", "-f", "solo")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["log of default/solo/main tail=", "follow 0", "follow 1", "follow 2"]


def test_logs_errors_are_status(server: RunningApiServer, kubelet: int) -> None:
    with server.http() as c:
        r = c.get("/api/v1/namespaces/default/pods/duo/log")
        assert r.status_code == 400 and "choose one of: [a b]" in r.json()["message"]
        r = c.get("/api/v1/namespaces/default/pods/duo/log", params={"container": "zzz"})
        assert r.status_code == 400 and "container zzz is not valid" in r.json()["message"]
        r = c.get("/api/v1/namespaces/default/pods/nowhere/log")
        assert r.status_code == 400 and "not scheduled" in r.json()["message"]
        assert c.get("/api/v1/namespaces/default/pods/duo/log", params={"container": "b"}).text.startswith(
            "log of default/duo/b"
        )


def test_exec_websocket_relay_with_kubectl(server: RunningApiServer, kubelet: int, tmp_path: Path) -> None:
    r = kubectl(server, tmp_path, "exec", "solo", "--", "echo", "hello", "world")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"echo hello world\n"
    r = kubectl(server, tmp_path, "exec", "-i", "solo", "--", "cat", input=b"some input\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"cat\nSOME INPUT\n"
    r = kubectl(server, tmp_path, "exec", "solo", "--", "fail")
    assert r.returncode == 3, (r.returncode, r.stderr)


@pytest.mark.parametrize("version", ["1.27", "1.29"])
def test_exec_over_raw_spdy_with_old_kubectl(
    server: RunningApiServer, kubelet: int, tmp_path: Path, version: str
) -> None:
    old = kubectl_binary(version)
    base = [old, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp_path / "cache")]
    r = subprocess.run([*base, "exec", "solo", "--", "echo", "hello"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"echo hello\n"
    r = subprocess.run(
        [*base, "exec", "-i", "solo", "--", "cat"], input=b"some input\n", capture_output=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"cat\nSOME INPUT\n"
    r = subprocess.run([*base, "exec", "solo", "--", "fail"], capture_output=True, timeout=60)
    assert r.returncode == 3, (r.returncode, r.stderr)


def test_spdy_exec_gets_a_clear_400(server: RunningApiServer, kubelet: int) -> None:
    # Only v4 (and v5) channel protocols are bridged from raw SPDY; older ones get a clear 400.
    with server.http() as c:
        r = c.post(
            "/api/v1/namespaces/default/pods/solo/exec",
            params={"command": "ls"},
            headers={"Upgrade": "SPDY/3.1", "Connection": "Upgrade", "X-Stream-Protocol-Version": "v3.channel.k8s.io"},
        )
        assert r.status_code == 400
        assert "older SPDY is not supported" in r.json()["message"]


@pytest.mark.parametrize("version", ["1.33", "1.30"])
def test_port_forward_through_the_proxy(server: RunningApiServer, kubelet: int, tmp_path: Path, version: str) -> None:
    """kubectl ≥1.31 sends SPDY inside a WebSocket, ≤1.30 raw SPDY after an HTTP upgrade; both
    reach the kubelet's /portForward (the fake upper-cases what it gets)."""
    with server.http() as c:
        p = c.get("/api/v1/namespaces/default/pods/solo").json()
        p["status"] = {"phase": "Running"}
        assert c.put("/api/v1/namespaces/default/pods/solo/status", json=p).status_code == 200
    binary = kubectl_binary(version)
    port = free_port()
    args = ["port-forward", "pod/solo", f"{port}:80"]
    proc = subprocess.Popen(
        [binary, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _listening(port) or proc.poll() is not None, timeout=20, message="kubectl listening")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        for word in (b"hello", b"again"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(word)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(1024):
                    got += chunk
            assert got == word.upper()
    finally:
        proc.kill()
        proc.wait(10)


def test_python_client_exec_and_logs(server: RunningApiServer, kubelet: int) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        v1 = client.CoreV1Api(api)
        out = stream(
            v1.connect_get_namespaced_pod_exec,
            "solo",
            "default",
            command=["echo", "from", "python"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        assert out == "echo from python\n"
        assert v1.read_namespaced_pod_log("solo", "default", tail_lines=2) == "log of default/solo/main tail=2\n"


def test_python_client_port_forward(server: RunningApiServer, kubelet: int) -> None:
    """The Python client's port-forward: Kubernetes' WebSocket channel protocol (v4.channel.k8s.io)."""
    from kubernetes import client, config
    from kubernetes.stream import portforward

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        v1 = client.CoreV1Api(api)
        pf = portforward(v1.connect_get_namespaced_pod_portforward, "solo", "default", ports="8080,9090")
        assert pf.connected
        for port in (8080, 9090):
            sock = pf.socket(port)
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(b"through port %d" % port)
            got = b""
            while got != b"THROUGH PORT %d" % port:
                data = sock.recv(1024)
                assert data, "the forwarded connection closed early"
                got += data
            assert pf.error(port) is None
        for port in (8080, 9090):
            pf.socket(port).close()
        wait_for(lambda: not pf.connected, timeout=10, message="the client to close the session")
