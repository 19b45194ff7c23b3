"""The proxy's health: kube-proxy's ``ProxyHealthServer`` (pkg/proxy/healthcheck/proxy_health.go).

Role: decide ``/healthz`` and ``/livez`` on ``--healthz-bind-address`` (0.0.0.0:10256, kube-proxy's
default) the way kube-proxy does:

- ``queued_update()`` when a change arrives that needs the rules updated (a Service, an
  EndpointSlice, the Node); only the *oldest* pending one counts;
- ``updated()`` when a sync succeeded: nothing is pending any more;
- healthy while nothing is pending, or the oldest pending change is younger than
  ``health_timeout`` (kube-proxy passes 2 × ``--sync-period``); so a proxy whose syncs keep
  failing turns unhealthy once the change it could not program is older than that;
- ``/healthz`` also needs the node to be eligible: not being deleted and not tainted
  ``ToBeDeletedByClusterAutoscaler``; ``/livez`` ignores the node.

One addition to kube-proxy's behaviour: a failed sync counts as a pending change too (kube-proxy
only counts informer events), so a proxy that never manages to write its rules — a missing
``iptables-restore`` or ``nft`` — is reported unhealthy even when no object changes meanwhile.

The body is kube-proxy's JSON (``lastUpdated``, ``currentTime`` as Go prints a ``time.Time``,
``nodeEligible``), plus ``lastError``: the last sync error ("" once a sync succeeded), so the
reason is visible where the status is. As in kube-proxy, a healthy answer reports
``lastUpdated`` = ``currentTime``.

Concurrency: every method is thread-safe (one lock); the HTTP server's threads only read.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"


def go_time(t: float | None) -> str:
    """A Unix time as Go's ``time.Time.String()`` prints it in UTC (zero time for ``None``)."""
    if t is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    frac = f"{d.microsecond:06d}".rstrip("0")
    return d.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


class ProxyHealth:
    def __init__(
        self,
        health_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.health_timeout = health_timeout
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._oldest_pending: float | None = None  # monotonic
        self._last_updated: float | None = None  # wall clock
        self._node_eligible = True  # eligible while starting, until a Node says otherwise
        self._last_error = ""

    def queued_update(self) -> None:
        with self._lock:
            if self._oldest_pending is None:
                self._oldest_pending = self.clock()

    def updated(self) -> None:
        with self._lock:
            self._oldest_pending = None
            self._last_updated = self.wall()
            self._last_error = ""

    def failed(self, error: str) -> None:
        """A sync failed: its work is still pending (see the module docstring)."""
        with self._lock:
            self._last_error = error
            if self._oldest_pending is None:
                self._oldest_pending = self.clock()

    def sync_node(self, node: Mapping[str, Any] | None) -> None:
        if node is None:
            return
        deleting = bool((node.get("metadata") or {}).get("deletionTimestamp"))
        taints = (node.get("spec") or {}).get("taints") or []
        tainted = any(isinstance(t, Mapping) and t.get("key") == TO_BE_DELETED_TAINT for t in taints)
        with self._lock:
            self._node_eligible = not (deleting or tainted)

    def is_healthy(self) -> bool:
        """The proxier's own health (ignoring the node), as ``/livez`` reports it."""
        with self._lock:
            return self._healthy()

    def _healthy(self) -> bool:
        if self._oldest_pending is None:
            return True
        return self.clock() - self._oldest_pending < self.health_timeout

    def last_error(self) -> str:
        with self._lock:
            return self._last_error

    def healthz(self) -> tuple[int, bytes]:
        """(status code, JSON body) of ``GET /healthz``."""
        return self._answer(with_node=True)

    def livez(self) -> tuple[int, bytes]:
        return self._answer(with_node=False)

    def _answer(self, *, with_node: bool) -> tuple[int, bytes]:
        with self._lock:
            healthy = self._healthy()
            eligible = self._node_eligible
            now = self.wall()
            last = self._last_updated
            error = self._last_error
        if with_node:
            healthy = healthy and eligible
        if healthy:
            last = now  # kube-proxy: a healthy answer's lastUpdated is "recent"
        body: dict[str, Any] = {"lastUpdated": go_time(last), "currentTime": go_time(now)}
        if with_node:
            body["nodeEligible"] = eligible
        body["lastError"] = error
        return (200 if healthy else 503), json.dumps(body).encode()
