"""pods/log and pods/exec through the API server to a (fake) kubelet, with the real kubectl.

The fake kubelet serves the real kubelet's paths over TLS and *requires* a client certificate
signed by the cluster CA, so a successful call also proves the server presents its
apiserver-kubelet-client certificate.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from controlplane import pki
from tests.helpers.apiserver import RunningApiServer, free_port
from tests.helpers.wait import wait_for

KUBECTL = "/usr/bin/kubectl"


async def container_logs(request: Request) -> Any:
    p = request.path_params
    q = request.query_params
    head = f"log of {p['ns']}/{p['pod']}/{p['container']} tail={q.get('tailLines', '')}\n"
    if q.get("follow") != "true":
        return PlainTextResponse(head)

    async def lines() -> AsyncIterator[bytes]:
        yield head.encode()
        for i in range(3):
            await asyncio.sleep(0.01)
            yield f"follow {i}\n".encode()

    return StreamingResponse(lines(), media_type="text/plain")


async def exec_ws(ws: WebSocket) -> None:
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=offered[0] if offered else None)
    command = ws.query_params.getlist("command")
    await ws.send_bytes(b"\x01" + (" ".join(command) + "\n").encode())
    if ws.query_params.get("stdin") == "true":
        while True:
            msg = await ws.receive_bytes()
            if msg[:1] == b"\xff" or (msg[:1] == b"\x00" and len(msg) == 1):
                break
            if msg[:1] == b"\x00":
                await ws.send_bytes(b"\x01" + msg[1:].upper())
                if msg.endswith(b"\n"):
                    break
    if command and command[0] == "fail":
        status = {
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: 3",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
        }
    else:
        status = {"metadata": {}, "status": "Success"}
    await ws.send_bytes(b"\x03" + orjson.dumps(status))
    await ws.close()


@pytest.fixture(scope="module")
def kubelet(server: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    d: Path = tmp_path_factory.mktemp("kubelet")
    ca = pki.CertificateAuthority(server.ca_file.read_bytes(), (server.data_dir / "pki" / "ca.key").read_bytes())
    cert, key = pki.issue_cert(ca, "kl-fake", ips=["127.0.0.1"], client=False, server=True)
    (d / "k.crt").write_bytes(cert)
    (d / "k.key").write_bytes(key)
    app = Starlette(
        routes=[
            Route("/containerLogs/{ns}/{pod}/{container}", container_logs),
            WebSocketRoute("/exec/{ns}/{pod}/{container}", exec_ws),
        ]
    )
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(d / "k.crt"),
        ssl_keyfile=str(d / "k.key"),
        ssl_ca_certs=str(server.ca_file),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        ws="wsproto",
        log_level="warning",
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    wait_for(lambda: srv.started, timeout=10, message="fake kubelet")
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
                "spec": {"nodeName": "kl-fake", "containers": [{"name": n, "image": "busybox"} for n in containers]},
            }
            assert c.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
        unscheduled = {"metadata": {"name": "nowhere"}, "spec": {"containers": [{"name": "x", "image": "y"}]}}
        assert c.post("/api/v1/namespaces/default/pods", json=unscheduled).status_code == 201
    try:
        yield port
    finally:
        srv.should_exit = True
        t.join(timeout=10)


def kubectl(
    server: RunningApiServer, tmp: Path, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp / "cache"), *args],
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


def test_spdy_exec_gets_a_clear_400(server: RunningApiServer, kubelet: int) -> None:
    with server.http() as c:
        r = c.post(
            "/api/v1/namespaces/default/pods/solo/exec",
            params={"command": "ls"},
            headers={"Upgrade": "SPDY/3.1", "Connection": "Upgrade", "X-Stream-Protocol-Version": "v4.channel.k8s.io"},
        )
        assert r.status_code == 400
        assert "SPDY is not supported" in r.json()["message"]
