"""The proxy's HTTP endpoints.

On ``--metrics-bind`` (127.0.0.1:10249): ``/debug/rules``, ``/metrics``, ``/healthz``.
On ``--healthz-bind-address`` (0.0.0.0:10256, kube-proxy's healthz server): ``/healthz``, ``/livez``.
On ``--debug-bind-address`` (0.0.0.0:10253, HTTPS, on the node's address so ``kubelab trace`` can
read it from anywhere): ``/debug/rules`` again, behind delegated authentication and authorization
(``controlplane.client.delegated``: a client certificate from the cluster CA or a bearer token, then
a SubjectAccessReview for ``get`` on the path; 401/403 otherwise). 10253 is free in Kubernetes'
node range (kubelet 10250/10248, kube-proxy 10249/10256, kubelet read-only 10255, controllers
10257–10259). Served only when the proxy has a serving certificate (``--tls-cert-file``).

- ``GET /debug/rules``: the last ruleset applied (iptables-save form, with when and how), then
  the last one that failed with its error and offending lines (kubernetes#74677).
  ``?format=json`` gives the same as JSON with the service → endpoints map the last sync rendered:
  ``{"backend", "lastApplied", "lastFailed", "rules", "services": [{"servicePort", "protocol",
  "clusterIP", "port", "nodePort", "endpoints": [{"ip", "port", "ready", "nodeName"}]}]}``.
- ``GET /metrics``: Prometheus text (sync durations, full/partial counts, failures,
  network programming latency).
- ``GET /healthz`` / ``/livez``: kube-proxy's answers (``proxy.healthz``): 200, or 503 once a
  change has waited for a successful sync longer than 2 × the sync period; JSON with
  ``lastUpdated``, ``currentTime``, ``nodeEligible`` and the ``lastError``.

A healthz address that cannot be bound is logged and retried every 5 s, as kube-proxy does; the
proxy keeps syncing meanwhile.

Concurrency: ``ThreadingHTTPServer`` in daemon threads; they only read the proxier's state.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane.api import errors
from controlplane.client import delegated
from controlplane.client.failures import FailureLog
from proxy.proxier import Proxier

log = logging.getLogger(__name__)


def _handler(proxier: Proxier, *, debug: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if debug and path == "/debug/rules":
                query = urllib.parse.parse_qs(self.path.partition("?")[2])
                self._send(200, *debug_rules(proxier, query)[1:])
            elif debug and path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(proxier.metrics.registry))
            elif path in ("/healthz", "/livez"):
                code, body = proxier.health.healthz() if path == "/healthz" else proxier.health.livez()
                self._send(code, "application/json", body)
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            delegated.send(self, code, ctype, body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: no access log
            return

    return Handler


def debug_rules(proxier: Proxier, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
    """``/debug/rules``: the text form, or JSON with ``?format=json``."""
    if query.get("format", [""])[0] != "json":
        return 200, "text/plain; charset=utf-8", proxier.debug_text().encode()
    applied, failed = proxier.last_applied, proxier.last_failed
    ruleset = proxier.ruleset
    body = {
        "backend": proxier.backend.name,
        "lastApplied": None if applied is None else {"time": applied.when, "full": applied.full},
        "lastFailed": None if failed is None else {"time": failed.when, "full": failed.full, "error": failed.error},
        "rules": ruleset.text() if ruleset is not None and applied is not None else "",
        "services": proxier.debug_services(),
    }
    return 200, "application/json", json.dumps(body).encode()


def secure_route(proxier: Proxier) -> Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]:
    """What the authenticated debug server answers (``controlplane.client.delegated``)."""

    def route(path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if path == "/debug/rules":
            return debug_rules(proxier, query)
        if path in ("/healthz", "/livez"):
            code, body = proxier.health.healthz() if path == "/healthz" else proxier.health.livez()
            return code, "application/json", body
        raise errors.NotFound("the server could not find the requested resource")

    return route


def _start(server: ThreadingHTTPServer, name: str) -> ThreadingHTTPServer:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def serve(proxier: Proxier, bind: str) -> ThreadingHTTPServer:
    """Start serving on ``host:port`` (port 0 picks one: read ``server.server_address``)."""
    host, _, port = bind.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 10249)), _handler(proxier, debug=True))
    return _start(server, "proxy-http")


class HealthzServer:
    """kube-proxy's healthz server on ``bind``; binding is retried every ``retry`` seconds."""

    def __init__(self, proxier: Proxier, bind: str, stop: threading.Event, retry: float = 5.0) -> None:
        host, _, port = bind.rpartition(":")
        self.addr = (host or "0.0.0.0", int(port or 10256))
        self.proxier = proxier
        self.stop = stop
        self.retry = retry
        self.server: ThreadingHTTPServer | None = None
        self.bound = threading.Event()
        self._failures = FailureLog(log, f"starting the healthz server on {bind}", initial=retry, cap=retry)
        threading.Thread(target=self._run, name="proxy-healthz", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                server = ThreadingHTTPServer(self.addr, _handler(self.proxier, debug=False))
            except OSError as exc:
                self.stop.wait(self._failures.failure(exc))
                continue
            self._failures.success()
            self.server = _start(server, "proxy-healthz-http")
            self.bound.set()
            return

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
