"""The dashboard's machine view: ``kubelab trace`` for a Service, a pod's namespace, a pod's log.

Role: answer the page's clicks with what the lab's own tools say, reusing them rather than
re-deriving: a Service's trace is ``lab.trace``'s ``resolve_target`` → ``collect`` → ``explain`` →
``render`` from the host (the same text ``kubelab trace --to svc/NAME:PORT`` prints); a pod's netns
name, veth and addresses come from ``lab.trace.Lab`` (``pod_spot``, ``veth_of``, ``pod_interface``: the
node's network agent's ``/debug/network``). The API
is read with the dashboard's own client (its identity, not the admin's), via ``ApiLab.get``.

Read-only: the nodes' debug endpoints (what ``kubelab trace`` reads) and GETs
(``pods/log`` with ``follow=true``); never a write.

Concurrency: ``trace``/``pod`` block (subprocesses) and run in the server's thread pool; ``logs`` is
an async generator over an ``httpx.AsyncClient`` stream, one per page that follows a log.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx

from controlplane.api import errors
from controlplane.client.rest import ApiClient
from lab import trace
from lab.dashboard.server import DashboardError

LOG_TAIL_LINES = 200


class ApiLab(trace.Lab):
    """``kubelab trace``'s view of the lab, reading the API through the dashboard's client."""

    def __init__(self, client: ApiClient) -> None:
        super().__init__(config=client.config)  # the nodes' debug endpoints: the dashboard's identity too
        self.client = client

    def get(self, path: str) -> dict[str, Any]:
        try:
            answer = self.client.request("GET", path, timeout=10)
        except errors.NotFound:
            raise KeyError(path) from None
        except (errors.ApiError, httpx.HTTPError, OSError) as exc:
            raise trace.TraceError(f"the API server answered {exc} for {path}") from exc
        return answer if isinstance(answer, dict) else {}


def pod_commands(netns: str, node: str, ip: str, veth: str) -> list[str]:
    """The commands to look for yourself (pure)."""
    cmds = [
        f"sudo ip netns exec {netns} ip addr",
        f"sudo ip netns exec {netns} ip route",
        f"sudo ip netns exec {node} bridge link show",
    ]
    if veth:
        cmds.append(f"sudo ip netns exec {node} ip link show {veth}")
    if ip:
        cmds.append(f"sudo ip netns exec {node} ip route get {ip}")
    return cmds


class LabInspector:
    #: How long one view of the nodes (their /debug/network answers) serves: pods come and go, but the
    #: pods table asks for every pod's veth at once and each answer costs the node an iptables-save.
    VIEW_TTL = 2.0

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._view: tuple[float, ApiLab] | None = None

    @property
    def lab(self) -> ApiLab:
        now = time.monotonic()
        if self._view is None or now - self._view[0] > self.VIEW_TTL:
            self._view = (now, ApiLab(self.client))
        return self._view[1]

    def veth_of(self, pod: dict[str, Any]) -> str:
        lab = self.lab
        try:
            spot = lab.pod_spot(pod)
            return lab.veth_of(spot.netns, spot.node)
        except trace.TraceError:
            return ""

    def trace(self, namespace: str, name: str, port: str) -> dict[str, Any]:
        lab = ApiLab(self.client)  # a fresh view: the trace reads the nodes now
        try:
            svc = lab.get(f"/api/v1/namespaces/{namespace}/services/{name}")
        except KeyError:
            raise DashboardError(404, f"no service {namespace}/{name}") from None
        except trace.TraceError as exc:
            raise DashboardError(503, str(exc)) from None
        ports = (svc.get("spec") or {}).get("ports") or []
        if not port and ports:
            port = str(ports[0].get("port"))  # the page shows one trace per Service: its first port
        command = f"kubelab trace --to svc/{name}:{port} -n {namespace}"
        try:
            src = trace.resolve_source(lab, "host", namespace)
            tgt = trace.resolve_target(lab, f"svc/{name}:{port}", namespace, None)
            text = trace.render(trace.explain(trace.collect(lab, src, tgt)))
        except trace.TraceError as exc:
            raise DashboardError(400, f"{command}: {exc}") from None
        return {"service": f"{namespace}/{name}", "port": port, "command": command, "text": text}

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        lab = ApiLab(self.client)  # a fresh view: this pod may be newer than the last one
        try:
            spot = lab.pod_spot(lab.pod(namespace, name))
        except trace.TraceError as exc:
            code = 404 if str(exc).startswith("no pod") else 400
            raise DashboardError(code, str(exc)) from None
        try:
            veth = lab.veth_of(spot.netns, spot.node)
            interfaces = lab.pod_interface(spot.netns, spot.node)
        except trace.TraceError as exc:
            veth, interfaces = "", str(exc)
        return {
            "pod": spot.name, "node": spot.node, "ip": spot.ip, "netns": spot.netns, "veth": veth,
            "interfaces": interfaces, "commands": pod_commands(spot.netns, spot.node, spot.ip, veth),
        }  # fmt: skip

    async def logs(self, namespace: str, name: str, container: str) -> AsyncIterator[str]:
        cfg = self.client.config
        headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
        params = {"follow": "true", "tailLines": str(LOG_TAIL_LINES)}
        if container:
            params["container"] = container
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods/{urllib.parse.quote(name)}/log"
        timeout = httpx.Timeout(10.0, read=None)  # a followed log may be silent for a long time
        verify = cfg.ssl_context()
        http = httpx.AsyncClient(base_url=self.client.server, verify=verify, headers=headers, timeout=timeout)
        async with http, http.stream("GET", path, params=params) as resp:
            if resp.status_code >= 400:
                body = (await resp.aread()).decode(errors="replace")
                raise DashboardError(resp.status_code, f"pods/log answered {resp.status_code}: {body[:300]}")
            async for line in resp.aiter_lines():
                yield line
