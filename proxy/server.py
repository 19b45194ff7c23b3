"""The proxy's HTTP endpoint on ``--metrics-bind``: ``/debug/rules``, ``/metrics``, ``/healthz``.

- ``GET /debug/rules``: the last ruleset applied (iptables-save form, with when and how), then
  the last one that failed with its error and offending lines (kubernetes#74677).
- ``GET /metrics``: Prometheus text (sync durations, full/partial counts, failures,
  network programming latency).
- ``GET /healthz``: 200 while syncs succeed, 503 once they keep failing.

Concurrency: ``ThreadingHTTPServer`` in a daemon thread; it only reads the proxier's state.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.proxier import Proxier


def serve(proxier: Proxier, bind: str) -> ThreadingHTTPServer:
    """Start serving on ``host:port`` (port 0 picks one: read ``server.server_address``)."""
    host, _, port = bind.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/debug/rules":
                self._send(200, "text/plain; charset=utf-8", proxier.debug_text().encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(proxier.metrics.registry))
            elif path in ("/healthz", "/livez"):
                if proxier.healthy():
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(503, "text/plain", f"syncs failing ({proxier.consecutive_failures})\n".encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: no access log
            return

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 10249)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="proxy-http", daemon=True).start()
    return server
