"""The metrics server's scraper: every node's kubelet ``/metrics/resource``, in parallel, every tick.

Role: the imperative shell around ``storage``: which address to scrape a node on (its
``InternalIP``, then ``Hostname``, as metrics-server's default ``--kubelet-preferred-address-types``
minus the cloud ones), one HTTPS GET per node with the metrics server's client certificate, the
body handed to ``storage.parse_resource_metrics`` and stored. A failed node is logged and skipped;
its old points stay until the node leaves the cluster (metrics-server behaves the same).

Concurrency: ``run(stop)`` is the scraper thread; each tick fans out to a small thread pool and
waits for it, so ticks never overlap (a tick longer than the resolution delays the next one).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPSConnection
from typing import Any

from controlplane.metricsserver.storage import MetricsStore, parse_resource_metrics

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Fetch = Callable[[str, int], str]  # (address, port) → /metrics/resource text; raises OSError


def node_address(node: Obj) -> str | None:
    addrs = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
    return addrs.get("InternalIP") or addrs.get("Hostname")


def kubelet_port(node: Obj, default: int = 10250) -> int:
    ep = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    return int(ep.get("Port") or default)


def https_fetcher(ctx: ssl.SSLContext, timeout: float = 10.0) -> Fetch:
    """GET ``/metrics/resource`` over TLS with ``ctx`` (client certificate loaded; server check as set)."""

    def fetch(address: str, port: int) -> str:
        conn = HTTPSConnection(address, port, context=ctx, timeout=timeout)
        try:
            conn.request("GET", "/metrics/resource", headers={"Accept": "text/plain"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(f"kubelet answered {resp.status}: {body[:200]!r}")
            return body.decode()
        finally:
            conn.close()

    return fetch


class Scraper:
    def __init__(
        self,
        store: MetricsStore,
        nodes: Callable[[], list[Obj]],
        fetch: Fetch,
        resolution: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.fetch = fetch
        self.resolution = resolution
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="scrape")
        self.last_duration = 0.0

    def scrape_once(self) -> int:
        """Scrape every node once; returns how many answered."""
        t0 = time.monotonic()
        nodes = self.nodes()
        self.store.forget_nodes_except({n["metadata"]["name"] for n in nodes})
        ok = sum(1 for good in self.pool.map(self._scrape_node, nodes) if good)
        self.last_duration = time.monotonic() - t0
        return ok

    def _scrape_node(self, node: Obj) -> bool:
        name = node["metadata"]["name"]
        addr = node_address(node)
        if addr is None:
            log.warning("node %s has no InternalIP or Hostname address: not scraped", name)
            return False
        try:
            text = self.fetch(addr, kubelet_port(node))
            self.store.store(name, parse_resource_metrics(text, self.clock()))
            return True
        except (OSError, ValueError, ssl.SSLError) as e:
            log.warning('failed to scrape node "%s" at %s: %s', name, addr, e)
            return False

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                n = self.scrape_once()
                log.debug("scraped %d node(s) in %.0f ms", n, self.last_duration * 1000)
            except Exception:
                log.exception("scrape cycle failed")
            stop.wait(max(0.0, self.resolution - (time.monotonic() - started)))
        self.pool.shutdown(wait=False)
