"""The proxier: change trackers → bounded-frequency runner → render → one backend apply.

Role: kube-proxy's Proxier for the iptables mode. Informer handlers (or the file source) call
``on_service``/``on_endpoint_slice``/``on_node``, which feed the change trackers and ask the
runner for a sync. ``sync()``:

1. waits until every source has synced (``set_synced``) — no rules from a half-read cache;
2. decides full or partial: full on the first sync, every ``sync_period``, after a failure,
   when the node's addresses changed, or when the canary chain is gone (someone flushed);
3. folds the trackers' pending changes into its model and re-renders the fragments of the
   service ports that changed (on a full sync all of them, except those whose ServicePort and
   endpoints are the very ones, or equal ones, they were rendered from: a periodic resync
   reuses those fragments);
4. assembles the ruleset and hands it to the backend once (the backend's plan writes only
   chains that differ on a partial sync, everything on a full one, and removes stale chains).
   A full sync is *streamed* (``StreamedRuleset``): the backend gets each service port's
   chains as soon as they are rendered and can feed them to ``iptables-restore`` while the
   rest render, then the finished ruleset for the shared chains and the plan;
5. on success clears stale UDP conntrack entries and records network-programming latency;
   on failure keeps the ruleset as "last failed", forces the next sync to be full and asks the
   runner to retry with back-off. The error (with the offending lines) is logged once per
   distinct error and then at most once a minute with a count (``controlplane.client.failures``),
   never as a traceback; ``health`` (``proxy.healthz``, kube-proxy's healthz logic) turns 503 once
   a pending change is older than 2 × ``sync_period`` and carries the last error.

Concurrency: ``on_*`` from any thread; ``sync`` only on the runner's thread. ``debug_state``
and metrics are read by the HTTP server's threads (a lock guards the last-applied/failed).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.client.failures import FailureLog, describe
from proxy.backend.conntrack import StaleFlow
from proxy.backend.interface import Backend, BackendError, StreamedRuleset
from proxy.changes import EndpointsChangeTracker, ServiceChangeTracker
from proxy.healthz import ProxyHealth
from proxy.model import Endpoint, ServicePort, node_addresses
from proxy.rules import (
    Fragment,
    ProxyOptions,
    Ruleset,
    assemble,
    categorize,
    no_gc,
    port_key,
    render_service_port,
)
from proxy.runner import BoundedFrequencyRunner

log = logging.getLogger(__name__)


class Conntracker(Protocol):
    """What the proxier needs of conntrack cleanup (``backend.conntrack.Conntrack`` or a fake)."""

    def clear(self, flows: list[StaleFlow]) -> None: ...


@dataclass
class SyncRecord:
    when: float
    full: bool
    duration: float
    text: str
    error: str = ""
    chains_written: int = 0


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        buckets = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency", registry=r, buckets=buckets
        )
        self.full_duration = Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds", "full sync latency", registry=r, buckets=buckets
        )
        self.partial_duration = Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "partial sync latency",
            registry=r,
            buckets=buckets,
        )
        self.syncs = Counter("kubeproxy_sync_proxy_rules", "syncs by kind", ["kind"], registry=r)
        self.failures = Counter(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "syncs whose rules could not be applied",
            registry=r,
        )
        self.last_sync = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "last successful sync (unix time)", registry=r
        )
        self.network_programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "from an EndpointSlice change (last-change-trigger-time) to its rules in the kernel",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.skipped = Gauge(
            "kubeproxy_skipped_objects", "Services/EndpointSlices skipped as unprogrammable", registry=r
        )
        self.rules = Gauge("kubeproxy_sync_proxy_rules_iptables_total", "rules in the ruleset", ["table"], registry=r)


def _parse_time(value: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Proxier:
    def __init__(
        self,
        backend: Backend,
        options: ProxyOptions,
        *,
        min_sync_period: float = 1.0,
        sync_period: float = 30.0,
        conntrack: Conntracker | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.options = options
        self.sync_period = sync_period
        self.conntrack = conntrack
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.wall_clock = wall_clock
        self.services = ServiceChangeTracker()
        self.endpoint_slices = EndpointsChangeTracker()
        self.runner = BoundedFrequencyRunner("sync-proxy-rules", self.sync, min_sync_period, sync_period, clock)
        # kube-proxy: NewProxyHealthServer(addr, 2*syncPeriod); Updated() once at the start of
        # the sync loop "in case Sync() never succeeds".
        self.health = ProxyHealth(2 * sync_period, clock=clock, wall=wall_clock)
        self.health.updated()
        # Retries back off from 1 s up to the sync period (kube-proxy retries after syncPeriod).
        self.failures = FailureLog(log, "sync", cap=max(1.0, sync_period), clock=clock, wall=wall_clock)
        # The model, touched only by sync():
        self._ports: dict[str, dict[str, ServicePort]] = {}  # service key -> port key -> port
        self._endpoints: dict[str, dict[tuple[str, str], tuple[Endpoint, ...]]] = {}  # service key -> ...
        self._fragments: dict[str, tuple[str, Fragment]] = {}  # port key -> (spn, fragment)
        self._inputs: dict[str, tuple[ServicePort, tuple[Endpoint, ...]]] = {}  # what each was rendered from
        self._reachable: dict[str, frozenset[tuple[str, int]]] = {}  # port key -> endpoints in use
        self._port_service: dict[str, str] = {}  # port key -> service key (also just-deleted ports)
        self._order: list[str] | None = None
        self._service_chains: dict[str, list[str]] = {}  # every per-service nat chain, kept in step
        self._shared: Ruleset | None = None  # shared + fixed chains, rebuilt only when they change
        self._rendered_options: ProxyOptions | None = None
        self._node_ips: tuple[str, ...] | None = None
        self._pending_flows: list[StaleFlow] = []
        self._pending_triggers: list[str] = []
        self._needs_full = True
        self._last_full = float("-inf")
        self._canary_due = threading.Event()
        self._synced_sources: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.last_applied: SyncRecord | None = None
        self.last_failed: SyncRecord | None = None
        self.consecutive_failures = 0
        self.ruleset: Ruleset | None = None

    # --- event handlers (any thread) -------------------------------------------------------
    def on_service(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        self.services.update(obj, deleted=deleted)
        self._queue_sync()

    def on_endpoint_slice(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        self.endpoint_slices.update(obj, deleted=deleted)
        self._queue_sync()

    def on_node(self, obj: Mapping[str, Any] | None) -> None:
        ips = tuple(node_addresses(obj))
        with self._lock:
            self._node_ips = ips
        self.health.sync_node(obj)
        self._queue_sync()

    def _queue_sync(self) -> None:
        """kube-proxy's ``Sync()``: a change is pending (health) and a sync is asked for."""
        self.health.queued_update()
        self.runner.run()

    def request_canary_check(self) -> None:
        """Look for the canary chain at the next sync (called by the daemon's monitor thread)."""
        self._canary_due.set()
        self.runner.run()

    def set_synced(self, source: str, synced: bool = True) -> None:
        """Record that a source (informer) has its initial list; sync once all have."""
        with self._lock:
            self._synced_sources[source] = synced
        self._queue_sync()

    def expect_sources(self, *sources: str) -> None:
        with self._lock:
            for s in sources:
                self._synced_sources.setdefault(s, False)

    def all_synced(self) -> bool:
        with self._lock:
            return all(self._synced_sources.values())

    # --- sync (runner thread) --------------------------------------------------------------
    def _options(self) -> ProxyOptions:
        with self._lock:
            ips = self._node_ips
        if ips is not None and not self.options.node_ips and ips:
            return replace(self.options, node_ips=ips)
        return self.options

    def sync(self) -> None:
        with no_gc():
            self._sync()

    def _sync(self) -> None:
        if not self.all_synced():
            log.info("not syncing: waiting for the informers' initial lists")
            return
        start = self.clock()
        options = self._options()
        full = self._needs_full or start - self._last_full >= self.sync_period
        if options != self._rendered_options:
            full = True
        if self._canary_due.is_set():
            # Only when the monitor asks (kube-proxy's iptables.Monitor polls too): a canary
            # check costs a process per call, as much as a small restore, so not on every sync.
            self._canary_due.clear()
            if not full and self.ruleset is not None and not self.backend.canary_present():
                log.warning("canary chain KUBE-PROXY-CANARY is gone: the tables were flushed; full resync")
                full = True
        changed = self._fold_changes()
        if not full and not changed and self.ruleset is not None:
            return  # a wake-up with nothing to do (the canary monitor's, or coalesced events)
        if full:
            changed |= set(self._port_service)
            self._shared = None
        if options != self._rendered_options:
            self._inputs.clear()  # every fragment depends on the options
        touched: set[tuple[str, str]] = set()
        stream: StreamedRuleset | None = None
        try:
            if full:
                # Streamed: the backend starts writing the first service ports' chains while
                # the rest are still being rendered (sorted: the order render() gives too).
                # (A full sync writes every chain: no need to track which ones changed.)
                stream = StreamedRuleset(
                    self._render_groups(sorted(changed), options, None),
                    lambda: self._finish_ruleset(options, None),
                )
                plan = self.backend.apply_full(stream)
                ruleset = stream.finish()
            else:
                for key in changed:
                    self._render_port(key, options, touched)
                ruleset = self._finish_ruleset(options, touched)
                plan = self.backend.apply(ruleset, full=False, touched=touched)
        except (BackendError, OSError) as exc:  # OSError: a kernel call failed outside the backend's tools
            ruleset = stream.finish() if stream is not None else self._finish_ruleset(options, None)
            duration = self.clock() - start
            self.metrics.failures.inc()
            text = exc.text if isinstance(exc, BackendError) else ""
            with self._lock:
                self.last_failed = SyncRecord(self.wall_clock(), full, duration, text or ruleset.text(), describe(exc))
                self.consecutive_failures += 1
            self._needs_full = True
            self.health.failed(describe(exc).split("\n", 1)[0])
            # One line per distinct error (previous rules stay in place), then once a minute.
            self.runner.retry_after(self.failures.failure(exc))
            return
        duration = self.clock() - start
        if full:
            self._needs_full = False
            self._last_full = start
        self.ruleset = ruleset
        kind = "full" if full else "partial"
        self.metrics.syncs.labels(kind).inc()
        self.metrics.sync_duration.observe(duration)
        (self.metrics.full_duration if full else self.metrics.partial_duration).observe(duration)
        self.metrics.last_sync.set(self.wall_clock())
        if full:  # counting 170k rules costs as much as a small sync: only when all were written
            for table, chains in ruleset.tables.items():
                self.metrics.rules.labels(table).set(sum(map(len, chains.values())))
        now = self.wall_clock()
        for trigger in self._pending_triggers:
            t = _parse_time(trigger)
            if t is not None:
                self.metrics.network_programming.observe(max(0.0, now - t))
        self._pending_triggers = []
        flows, self._pending_flows = self._pending_flows, []
        if flows and self.conntrack is not None:
            self.conntrack.clear(flows)
        with self._lock:
            self.last_applied = SyncRecord(now, full, duration, "", chains_written=plan.chains_written())
            self.consecutive_failures = 0
        self.health.updated()
        self.failures.success()
        log.info(
            "synced proxy rules (%s): %d chains written, %d service ports, %.3fs",
            kind,
            plan.chains_written(),
            len(self._fragments),
            duration,
        )

    def _fold_changes(self) -> set[str]:
        """Apply the trackers' pending changes to the model; return the changed port keys."""
        changed: set[str] = set()
        for svc, ports in self.services.take().items():
            old = self._ports.get(svc, {})
            new = {port_key(p): p for p in ports}
            for key in set(old) | set(new):
                self._port_service[key] = svc
                if old.get(key) != new.get(key):
                    changed.add(key)
            if new:
                self._ports[svc] = new
            else:
                self._ports.pop(svc, None)
        update = self.endpoint_slices.take()
        for svc, eps in update.endpoints.items():
            if eps:
                self._endpoints[svc] = eps
            else:
                self._endpoints.pop(svc, None)
            changed.update(self._ports.get(svc, {}))
        for triggers in update.trigger_times.values():
            self._pending_triggers.extend(triggers)
        return changed

    def _render_groups(
        self, keys: list[str], options: ProxyOptions, touched: set[tuple[str, str]] | None
    ) -> Iterator[Mapping[str, list[str]]]:
        """Render each port in turn, yielding its nat chains (a full sync's stream)."""
        for key in keys:
            chains = self._render_port(key, options, touched)
            if chains:
                yield chains

    def _finish_ruleset(self, options: ProxyOptions, touched: set[tuple[str, str]] | None) -> Ruleset:
        """After every changed port is rendered: the whole ruleset, with what was skipped."""
        self._rendered_options = options
        ruleset = self._assemble(options, touched)
        ruleset.errors = [e for errs in self.services.errors.values() for e in errs] + [
            e for errs in self.endpoint_slices.errors.values() for e in errs
        ]
        self.metrics.skipped.set(len(ruleset.errors))
        return ruleset

    def _assemble(self, options: ProxyOptions, touched: set[tuple[str, str]] | None) -> Ruleset:
        """The whole ruleset, rebuilding the shared chains only when a fragment's lines for them
        changed (otherwise the previous lists are reused, identical objects the planner skips)."""
        if self._order is None:
            self._order = sorted(self._fragments)
        if self._shared is None:
            self._shared = assemble((self._fragments[k] for k in self._order), options, service_chains=False)
            if touched is not None:
                touched.update((t, c) for t, chains in self._shared.tables.items() for c in chains)
        shared = self._shared
        tables = dict(shared.tables)
        tables["nat"] = {**shared.tables["nat"], **self._service_chains}
        return Ruleset(tables=tables, jumps=shared.jumps)

    def _render_port(
        self, key: str, options: ProxyOptions, touched: set[tuple[str, str]] | None
    ) -> Mapping[str, list[str]] | None:
        """Bring one port's fragment up to date; its nat chains (``None`` once it is gone).

        ``touched`` collects the (table, chain) pairs that may have changed (partial syncs;
        ``None`` on a full sync, which writes everything anyway).

        A port whose inputs (the ServicePort and its endpoints, same objects or equal ones, under
        the same options) did not change keeps its fragment: a periodic full resync then costs
        writing the rules, not rendering them again.
        """
        sp = self._ports.get(self._port_service.get(key, ""), {}).get(key)
        old = self._fragments.get(key)
        eps: tuple[Endpoint, ...] = ()
        if sp is not None:
            eps = self._endpoints.get(sp.name.service, {}).get((sp.name.port, sp.protocol), ())
            prev = self._inputs.get(key)
            if old is not None and prev is not None and (prev[0] is sp or prev[0] == sp) and (
                prev[1] is eps or prev[1] == eps
            ):
                self._inputs[key] = (sp, eps)
                return old[1].chains
        old_reachable = self._reachable.get(key, frozenset())
        new: Fragment | None = None
        if sp is not None:
            new = render_service_port(sp, eps, options)
        # Keep the per-service chains and the shared-chain cache in step with the fragments.
        old_chains = old[1].chains if old else {}
        new_chains = new.chains if new else {}
        for chain in old_chains:
            if chain not in new_chains:
                self._service_chains.pop(chain, None)
        self._service_chains.update(new_chains)
        if touched is not None:
            touched.update(("nat", c) for c in (*old_chains, *new_chains))
        if old is None or new is None or _shared_lines(old[1]) != _shared_lines(new):
            self._shared = None
        if sp is None or new is None:
            if self._fragments.pop(key, None) is not None:
                self._order = None
            self._reachable.pop(key, None)
            self._port_service.pop(key, None)
            self._inputs.pop(key, None)
            return None
        if key not in self._fragments:
            self._order = None
        self._fragments[key] = (str(sp.name), new)
        self._inputs[key] = (sp, eps)
        if sp.protocol == "udp":
            _, _, reachable, _ = categorize(sp, eps, options.node_name)
            now = frozenset((e.ip, e.port) for e in reachable)
            self._reachable[key] = now
            self._pending_flows += stale_udp_flows(sp, old_reachable, now)
        return new_chains

    # --- introspection (HTTP threads) ------------------------------------------------------
    def healthy(self) -> bool:
        """kube-proxy's ``IsHealthy`` (ignoring the node): no pending change older than 2 × sync period."""
        return self.health.is_healthy()

    def debug_services(self) -> list[dict[str, Any]]:
        """The service → endpoints map the last sync rendered (``/debug/rules?format=json``).

        Read on an HTTP thread while sync() may change ``_inputs``: ``dict(...)`` of a plain dict
        is one C-level copy under the GIL in CPython, so the snapshot is consistent.
        """
        inputs = dict(self._inputs)
        out = []
        for sp, eps in sorted(inputs.values(), key=lambda v: (str(v[0].name), v[0].name.protocol)):
            out.append(
                {
                    "servicePort": str(sp.name),
                    "protocol": sp.name.protocol.upper(),
                    "clusterIP": sp.cluster_ip,
                    "port": sp.port,
                    "nodePort": sp.node_port,
                    "endpoints": [{"ip": e.ip, "port": e.port, "ready": e.ready, "nodeName": e.node_name} for e in eps],
                }
            )
        return out

    def debug_text(self) -> str:
        with self._lock:
            applied, failed = self.last_applied, self.last_failed
        ruleset = self.ruleset
        out = [f"# backend: {self.backend.name}"]
        if applied is None or ruleset is None:
            out.append("# no ruleset applied yet")
        else:
            out.append(
                f"# last applied: {_iso(applied.when)} ({'full' if applied.full else 'partial'} sync, "
                f"{applied.duration:.3f}s, {applied.chains_written} chains written)"
            )
            out += [f"# skipped: {e}" for e in ruleset.errors]
            out.append(ruleset.text().rstrip("\n"))
        if failed is not None:
            out.append(f"# last failed: {_iso(failed.when)} ({'full' if failed.full else 'partial'} sync)")
            out += ["# " + line for line in failed.error.splitlines()]
            out.append(failed.text.rstrip("\n"))
        return "\n".join(out) + "\n"


def _shared_lines(f: Fragment) -> tuple[tuple[str, ...], ...]:
    return (
        f.nat_services,
        f.nat_nodeports,
        f.filter_services,
        f.filter_external,
        f.filter_nodeports,
        f.filter_firewall,
    )


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


def stale_udp_flows(
    sp: ServicePort, before: frozenset[tuple[str, int]], after: frozenset[tuple[str, int]]
) -> list[StaleFlow]:
    """Conntrack entries to delete after a UDP service port's endpoints went from before to after."""
    ips = [sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips]
    flows: list[StaleFlow] = []
    gone = sorted({ip for ip, _ in before} - {ip for ip, _ in after})
    for ep in gone:
        flows += [StaleFlow("udp", dst=ip, endpoint=ep) for ip in ips]
        if sp.node_port:
            flows.append(StaleFlow("udp", dport=sp.node_port, endpoint=ep))
    if not before and after:
        flows += [StaleFlow("udp", dst=ip) for ip in ips]
        if sp.node_port:
            flows.append(StaleFlow("udp", dport=sp.node_port))
    return flows
