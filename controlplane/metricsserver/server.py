"""``kubelab metrics-server``: scrape every kubelet's ``/metrics/resource``, serve ``metrics.k8s.io/v1beta1``.

Role: the cluster's resource metrics pipeline, shaped like ``sigs.k8s.io/metrics-server``:
- a scraper thread lists Nodes (an informer), and every ``resolution`` seconds fetches each node's
  ``https://<InternalIP>:10250/metrics/resource`` in parallel with its client certificate, and
  keeps the latest two points per node and container (``storage.MetricsStore``). The lab scrapes
  every 5 s; Kubernetes' metrics-server defaults to ``--metric-resolution=60s`` (and recommends no
  less than 15 s), which is why ``kubectl top`` there lags a minute behind;
- an HTTPS server answers ``/apis/metrics.k8s.io/v1beta1/nodes[/NAME]``,
  ``…/pods``, ``…/namespaces/NS/pods[/NAME]`` (``labelSelector`` honoured), and the group's
  discovery documents, behind the API server's aggregation layer.

Authentication is delegated as in every aggregated API server (k8s.io/apiserver's
``DelegatingAuthenticationOptions``): a client certificate signed by the *requestheader* CA
(the front-proxy CA) whose CN is an allowed name (``front-proxy-client``) makes the request
carry its user in ``X-Remote-User``, groups in ``X-Remote-Group`` and extras in
``X-Remote-Extra-<key>``; a certificate from the cluster CA authenticates as its CN/O; anything
else is 401 (``controlplane.client.delegated.RequestHeader``, the one home of that rule; every
authenticated user is also in ``system:authenticated``, as k8s.io/apiserver's group adder makes
it). Authorization is a ``SubjectAccessReview`` POSTed to the API server, decided and cached by
``controlplane.client.delegated.SarDecisions`` (10 s, the delegating authorizer's allow/deny TTLs),
the one home it shares with the node components' debug endpoints; a review that fails (API server
unreachable or not serving the API) is a 403 naming the cause, not cached.

Concurrency: ``ThreadingHTTPServer`` (a thread per connection) reads the store under its lock; the
scraper thread writes it. Standard library HTTP on purpose: the process stays small.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controlplane.api import errors
from controlplane.api.selectors import LabelSelector
from controlplane.client.delegated import Post, RequestHeader, SarDecisions, UserInfo, subject_access_review
from controlplane.metricsserver.storage import MetricsStore

log = logging.getLogger(__name__)

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GV = f"{GROUP}/{VERSION}"
DEFAULT_RESOLUTION = 5.0  # the lab's; metrics-server's default is 60 s
Obj = dict[str, Any]


def resource_list() -> Obj:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GV,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    }


def api_group() -> Obj:
    gv = {"groupVersion": GV, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


@dataclass(frozen=True)
class Route:
    resource: str  # "nodes" | "pods" | "" (discovery)
    namespace: str | None = None
    name: str | None = None


def parse_path(path: str) -> Route | None:
    """``/apis/metrics.k8s.io/v1beta1/…`` → what is asked; None: not ours."""
    seg = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]
    if seg[:2] != ["apis", GROUP]:
        return None
    if len(seg) == 2:
        return Route("group")
    if seg[2] != VERSION:
        return None
    rest = seg[3:]
    if not rest:
        return Route("")
    if rest[0] == "nodes" and len(rest) <= 2:
        return Route("nodes", None, rest[1] if len(rest) == 2 else None)
    if rest[0] == "pods" and len(rest) == 1:
        return Route("pods")
    if rest[0] == "namespaces" and len(rest) in (3, 4) and rest[2] == "pods":
        return Route("pods", rest[1], rest[3] if len(rest) == 4 else None)
    return None


class MetricsAPI:
    """The read side: NodeMetrics and PodMetrics from the store and the node/pod caches."""

    def __init__(
        self,
        store: MetricsStore,
        nodes: Callable[[], list[Obj]],
        pods: Callable[[], list[Obj]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.pods = pods
        self.clock = clock

    def serve(self, route: Route, query: dict[str, list[str]]) -> Obj:
        """The response object, or raises ``errors.ApiError`` (NotFound, BadRequest)."""
        if route.resource == "group":
            return api_group()
        if route.resource == "":
            return resource_list()
        sel = LabelSelector.parse(query.get("labelSelector", [""])[0])
        now = self.clock()
        if route.resource == "nodes":
            nodes = [n for n in self.nodes() if route.name in (None, n["metadata"]["name"])]
            items = [
                m
                for n in nodes
                if sel.matches(n["metadata"].get("labels"))
                for m in [self.store.node_metrics(n, now)]
                if m
            ]
            if route.name is not None:
                if not items:
                    raise errors.NotFound(
                        f'nodemetrics.metrics.k8s.io "{route.name}" not found',
                        group=GROUP,
                        kind="nodes",
                        name=route.name,
                    )
                return items[0]
            items.sort(key=lambda m: m["metadata"]["name"])
            return {"kind": "NodeMetricsList", "apiVersion": GV, "metadata": {}, "items": items}
        pods = [
            p
            for p in self.pods()
            if route.namespace in (None, p["metadata"].get("namespace")) and route.name in (None, p["metadata"]["name"])
        ]
        items = [
            m for p in pods if sel.matches(p["metadata"].get("labels")) for m in [self.store.pod_metrics(p, now)] if m
        ]
        if route.name is not None:
            if not items:
                raise errors.NotFound(
                    f'podmetrics.metrics.k8s.io "{route.name}" not found', group=GROUP, kind="pods", name=route.name
                )
            return items[0]
        items.sort(key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))
        return {"kind": "PodMetricsList", "apiVersion": GV, "metadata": {}, "items": items}


class SarAuthorizer:
    """Delegated authorization for ``metrics.k8s.io``: the ``SubjectAccessReview`` a request asks
    (resource attributes for nodes and pods, the path for discovery), decided and cached by
    ``controlplane.client.delegated.SarDecisions`` — the same cache and failure rule as the node
    components' debug endpoints: a review that fails is a denial, not cached.

    ``post(path, body)`` sends a review to the API server (``delegated.client_poster``).
    """

    def __init__(self, post: Post, clock: Callable[[], float] = time.monotonic) -> None:
        self._sar = SarDecisions(post, clock=clock)

    @staticmethod
    def review(user: UserInfo, verb: str, route: Route | None, path: str) -> Obj:
        if route is None or route.resource not in ("nodes", "pods"):
            return subject_access_review(user, "nonResourceAttributes", {"path": path, "verb": verb})
        attrs: Obj = {"verb": verb, "group": GROUP, "version": VERSION, "resource": route.resource}
        if route.namespace:
            attrs["namespace"] = route.namespace
        if route.name:
            attrs["name"] = route.name
        return subject_access_review(user, "resourceAttributes", attrs)

    def authorize(self, user: UserInfo, verb: str, route: Route | None, path: str) -> tuple[bool, str]:
        return self._sar.decide(self.review(user, verb, route, path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics api: " + format, *args)

    def _send(self, code: int, obj: Obj | bytes, ctype: str = "application/json") -> None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/healthz", "/livez", "/readyz"):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        s = self.server
        try:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            user = s.requestheader.user(peer, self.headers)
            if user is None:
                raise errors.Unauthorized("Unauthorized")
            route = parse_path(url.path)
            allowed, reason = s.authorizer.authorize(
                user, "list" if route and not route.name else "get", route, url.path
            )
            if not allowed:
                what = route.resource if route and route.resource not in ("", "group") else url.path
                raise errors.Forbidden(
                    f'{what}.{GROUP} is forbidden: User "{user.name}" cannot get resource "{what}" in API group '
                    f'"{GROUP}"' + (f": {reason}" if reason else "")
                )
            if route is None:
                raise errors.NotFound("the server could not find the requested resource")
            self._send(200, s.api.serve(route, urllib.parse.parse_qs(url.query)))
        except errors.ApiError as e:
            self._send(e.code, e.to_status())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("serving %s", self.path)
            self._send(500, errors.ApiError("an internal error occurred").to_status())

    def do_POST(self) -> None:
        self._send(
            405, errors.MethodNotAllowed("the server does not allow this method on the requested resource").to_status()
        )

    do_PUT = do_PATCH = do_DELETE = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: MetricsAPI
    authorizer: SarAuthorizer
    requestheader: RequestHeader


def serve_https(
    api: MetricsAPI,
    authorizer: SarAuthorizer,
    *,
    cert: Path,
    key: Path,
    client_ca: Path,
    requestheader_ca: Path,
    allowed_names: tuple[str, ...] = ("front-proxy-client",),
    host: str = "0.0.0.0",
    port: int = 4443,
) -> _Server:
    """Bind the HTTPS server (not yet serving: call ``serve_forever``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # health checks come without a certificate
    ctx.load_verify_locations(str(client_ca))
    ctx.load_verify_locations(str(requestheader_ca))
    httpd = _Server((host, port), _Handler, bind_and_activate=False)
    httpd.allow_reuse_address = True
    httpd.server_bind()
    httpd.server_activate()
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.api = api
    httpd.authorizer = authorizer
    httpd.requestheader = RequestHeader.from_ca_file(requestheader_ca, allowed_names)
    return httpd


def client_context(ca: Path, cert: Path, key: Path, verify: bool) -> ssl.SSLContext:
    """TLS towards the kubelets: our client certificate; their serving certificate checked if ``verify``."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    if not verify:  # metrics-server's --kubelet-insecure-tls: kubelets' self-signed serving certs
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
