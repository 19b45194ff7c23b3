"""Prometheus metrics of one API server (``GET /metrics``), in a registry of its own.

Names follow kube-apiserver's: ``apiserver_request_total{verb,resource,code}``,
``apiserver_request_duration_seconds{verb,resource}``, ``apiserver_registered_watchers{resource}``
(here: active watch streams), ``apiserver_longrunning_requests``.

Concurrency: prometheus-client metrics are thread-safe; one ``Metrics`` per app (no globals), so
several servers can live in one test process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    CONTENT_TYPE = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # (verb, resource, code) → (request counter child, latency histogram child)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "apiserver_request_total",
            "Requests by verb, resource and HTTP code.",
            ["verb", "resource", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watches: until the stream starts).",
            ["verb", "resource"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.watchers = Gauge(
            "apiserver_registered_watchers", "Open watch streams by resource.", ["resource"], registry=self.registry
        )
        self.longrunning = Gauge(
            "apiserver_longrunning_requests", "Open long-running requests (watch, log, exec).", registry=self.registry
        )

        self.compacted_revision = Gauge(
            "apiserver_storage_compacted_revision",
            "Store history at and below this revision has been compacted away (0: none yet).",
            registry=self.registry,
        )
        self.slow_watchers = Counter(
            "apiserver_watch_slow_watchers_closed_total",
            "Watch streams closed because the client did not keep up.",
            registry=self.registry,
        )

    def observe_request(self, verb: str, resource: str, code: int, seconds: float | None) -> None:
        """Count one request (and its latency unless None); label children are looked up once."""
        key = (verb, resource, code)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(verb, resource, str(code)), self.latency.labels(verb, resource))
            self._children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
