"""The proxier over the stateful fake backend: sync gating, partial vs full syncs, stale chains,
the canary, failures and retries, conntrack cleanup, metrics; plus the runner and the planner.

Addresses as in test_proxy_rules.py: cluster IPs 172.30.0.x, endpoints 10.180.0.x.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from proxy.backend.conntrack import FakeConntrack, StaleFlow
from proxy.backend.fake import FakeBackend
from proxy.backend.interface import make_plan, state_of
from proxy.proxier import Proxier
from proxy.rules import ProxyOptions, endpoint_chain, render, service_chain
from proxy.runner import BoundedFrequencyRunner
from tests.helpers.wait import wait_for
from tests.unit.proxy.test_proxy_rules import ep, eps, svc
from tests.unit.proxy.tracer import Tracer

OPTS = ProxyOptions(node_name="n1", cluster_cidr="10.0.0.0/8")


def make(**kw: Any) -> tuple[Proxier, FakeBackend, FakeConntrack]:
    backend, ct = FakeBackend(), FakeConntrack()
    p = Proxier(backend, OPTS, min_sync_period=0, sync_period=kw.pop("sync_period", 3600), conntrack=ct, **kw)
    p.expect_sources("services", "endpointslices")
    return p, backend, ct


def ready(p: Proxier) -> None:
    p.set_synced("services")
    p.set_synced("endpointslices")


def trace(backend: FakeBackend, dst: str, port: int = 80, proto: str = "tcp") -> str:
    return Tracer(backend.tables).trace("10.0.0.2", dst, port, proto).output


def test_no_sync_before_both_informers_synced() -> None:
    p, backend, _ = make()
    p.on_service(svc("ns", "a", "172.30.0.1"))
    p.set_synced("services")
    p.sync()
    assert backend.applies == 0
    p.set_synced("endpointslices")
    p.sync()
    assert backend.applies == 1 and backend.plans[-1].full


def test_partial_sync_rewrites_only_the_changed_service() -> None:
    p, backend, _ = make()
    for i in range(20):
        p.on_service(svc("ns", f"s{i}", f"172.30.0.{i + 1}"))
        p.on_endpoint_slice(eps("ns", f"s{i}", [ep(f"10.180.{i}.1")]))
    ready(p)
    p.sync()
    assert trace(backend, "172.30.0.4") == "10.180.3.1:80"
    p.on_endpoint_slice(eps("ns", "s3", [ep("10.180.3.1"), ep("10.180.3.2")]))
    p.sync()
    plan = backend.plans[-1]
    assert not plan.full
    nat = plan.tables["nat"]
    spn = "ns/s3:p80"
    assert set(nat.write) == {
        service_chain("KUBE-SVC-", spn, "tcp"),
        endpoint_chain(spn, "tcp", "10.180.3.2:80"),
    }
    assert not nat.delete and not nat.patch
    assert all(plan.tables[t].empty for t in ("filter", "mangle"))
    assert trace(backend, "172.30.0.4") == "10.180.3.1:80, 10.180.3.2:80"
    # Endpoint gone: its SEP chain is deleted (stale chain), the SVC chain rewritten.
    p.on_endpoint_slice(eps("ns", "s3", [ep("10.180.3.2")]))
    p.sync()
    nat = backend.plans[-1].tables["nat"]
    assert nat.delete == [endpoint_chain(spn, "tcp", "10.180.3.1:80")]
    assert endpoint_chain(spn, "tcp", "10.180.3.1:80") not in backend.tables["nat"]
    assert trace(backend, "172.30.0.4") == "10.180.3.2:80"


def test_service_losing_endpoints_is_patched_into_shared_chains() -> None:
    p, backend, _ = make()
    for i in range(20):
        p.on_service(svc("ns", f"s{i}", f"172.30.0.{i + 1}"))
        p.on_endpoint_slice(eps("ns", f"s{i}", [ep(f"10.180.{i}.1")]))
    ready(p)
    p.sync()
    p.on_endpoint_slice(eps("ns", "s5", []))
    p.sync()
    plan = backend.plans[-1]
    # KUBE-SERVICES is patched rule by rule, not rewritten; the filter REJECT is inserted.
    deletes, inserts = plan.tables["nat"].patch["KUBE-SERVICES"]
    assert len(deletes) == 1 and "172.30.0.6" in deletes[0] and inserts == []
    assert plan.tables["filter"].patch["KUBE-SERVICES"][1][0].endswith("--dport 80 -j REJECT")
    assert trace(backend, "172.30.0.6") == "REJECT"
    assert trace(backend, "172.30.0.7") == "10.180.6.1:80"
    assert backend.tables["nat"]["KUBE-SERVICES"][-1].endswith("-j KUBE-NODEPORTS")  # still last
    p.on_endpoint_slice(eps("ns", "s5", [ep("10.180.5.9")]))
    p.sync()
    assert trace(backend, "172.30.0.6") == "10.180.5.9:80"
    assert backend.tables["nat"]["KUBE-SERVICES"][-1].endswith("-j KUBE-NODEPORTS")


def test_deleted_service_chains_are_removed() -> None:
    p, backend, _ = make()
    s = svc("ns", "gone", "172.30.0.9")
    p.on_service(s)
    p.on_endpoint_slice(eps("ns", "gone", [ep("10.180.0.1")]))
    ready(p)
    p.sync()
    p.on_service(s, deleted=True)
    p.sync()
    assert not any(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in backend.tables["nat"])
    assert trace(backend, "172.30.0.9") == "ACCEPT"


def test_canary_gone_forces_full_resync() -> None:
    p, backend, _ = make()
    p.on_service(svc("ns", "a", "172.30.0.1"))
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.1")]))
    ready(p)
    p.sync()
    backend.flush()
    p.sync()  # nothing changed and nobody asked: no look at the kernel
    assert backend.applies == 1
    p.request_canary_check()
    p.sync()  # the monitor asked: the canary is gone
    assert backend.plans[-1].full
    assert trace(backend, "172.30.0.1") == "10.180.0.1:80"


def test_periodic_full_sync() -> None:
    now = [0.0]
    p, backend, _ = make(sync_period=30, clock=lambda: now[0])
    p.on_service(svc("ns", "a", "172.30.0.1"))
    ready(p)
    p.sync()
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.1")]))
    now[0] = 10
    p.sync()
    assert not backend.plans[-1].full
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.2")]))
    now[0] = 31
    p.sync()
    assert backend.plans[-1].full


def test_full_resync_reuses_fragments_of_unchanged_ports_and_writes_everything(monkeypatch: Any) -> None:
    import proxy.proxier as proxier_module

    rendered: list[str] = []
    real = proxier_module.render_service_port

    def counting(sp: Any, endpoints: Any, options: ProxyOptions) -> Any:
        rendered.append(str(sp.name))
        return real(sp, endpoints, options)

    monkeypatch.setattr(proxier_module, "render_service_port", counting)
    now = [0.0]
    p, backend, _ = make(sync_period=30, clock=lambda: now[0])
    for i in range(3):
        p.on_service(svc("ns", f"s{i}", f"172.30.0.{i + 1}"))
        p.on_endpoint_slice(eps("ns", f"s{i}", [ep(f"10.180.{i}.1")]))
    ready(p)
    p.sync()
    assert sorted(rendered) == ["ns/s0:p80", "ns/s1:p80", "ns/s2:p80"] and backend.streamed_groups == 3
    rendered.clear()
    p.on_endpoint_slice(eps("ns", "s1", [ep("10.180.1.9")]))
    p.on_service(svc("ns", "s2", "172.30.0.3"))  # the same Service again: equal, not re-rendered
    now[0] = 31
    p.sync()
    assert backend.plans[-1].full and rendered == ["ns/s1:p80"]
    services = [svc("ns", f"s{i}", f"172.30.0.{i + 1}") for i in range(3)]
    slices = [eps("ns", f"s{i}", [ep("10.180.1.9" if i == 1 else f"10.180.{i}.1")]) for i in range(3)]
    assert state_of(render(services, slices, options=OPTS)) == backend.applied  # everything, up to date
    assert trace(backend, "172.30.0.2") == "10.180.1.9:80"
    rendered.clear()
    p.options = ProxyOptions(node_name="n1", cluster_cidr="10.0.0.0/16")  # every fragment depends on it
    p.sync()
    assert len(rendered) == 3


def test_failure_keeps_previous_rules_reports_and_recovers() -> None:
    now = [0.0]
    p, backend, _ = make(sync_period=30, clock=lambda: now[0], wall_clock=lambda: 1e9 + now[0])
    p.on_service(svc("ns", "a", "172.30.0.1"))
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.1")]))
    ready(p)
    p.sync()
    before = {t: {c: list(r) for c, r in ch.items()} for t, ch in backend.tables.items()}
    backend.fail_next = 2
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.2")]))
    p.sync()
    assert backend.tables == before  # the failed batch changed nothing
    assert p.healthy()  # the change is pending, but not yet for 2 × the sync period
    now[0] = 59.9
    p.sync()
    assert p.healthy()
    now[0] = 60.0
    assert not p.healthy()
    code, body = p.health.healthz()
    assert code == 503 and "injected failure" in json.loads(body)["lastError"]
    text = p.debug_text()
    assert "# last failed" in text and "injected failure" in text and ">>" in text
    assert p.metrics.failures._value.get() == 2
    p.sync()  # retried: a full sync this time
    assert backend.plans[-1].full and p.healthy()
    assert trace(backend, "172.30.0.1") == "10.180.0.2:80"
    assert "# last applied" in p.debug_text()


def test_udp_endpoint_removal_clears_conntrack() -> None:
    p, _backend, ct = make()
    p.on_service(svc("ns", "dns", "172.30.0.10", protocol="UDP", port=53))
    p.on_endpoint_slice(eps("ns", "dns", [ep("10.180.0.1"), ep("10.180.0.2")], port=53, proto="UDP"))
    ready(p)
    p.sync()
    # First endpoints of a UDP service: flows recorded while it had none are cleared.
    assert ct.cleared == [StaleFlow("udp", dst="172.30.0.10")]
    p.on_endpoint_slice(eps("ns", "dns", [ep("10.180.0.2")], port=53, proto="UDP"))
    p.sync()
    assert ct.cleared[-1] == StaleFlow("udp", dst="172.30.0.10", endpoint="10.180.0.1")
    assert StaleFlow("udp", dst="172.30.0.10", endpoint="10.180.0.1").argv() == [
        "conntrack",
        "-D",
        "-p",
        "udp",
        "--orig-dst",
        "172.30.0.10",
        "--dst-nat",
        "10.180.0.1",
    ]


def test_network_programming_latency_from_trigger_time() -> None:
    p, _backend, _ = make(wall_clock=lambda: 1_700_000_002.5)
    p.on_service(svc("ns", "a", "172.30.0.1"))
    s = eps("ns", "a", [ep("10.180.0.1")])
    s["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": "2023-11-14T22:13:20Z"}
    p.on_endpoint_slice(s)
    ready(p)
    p.sync()
    h = p.metrics.network_programming
    assert h._sum.get() == 2.5  # 1_700_000_000 is 2023-11-14T22:13:20Z


def test_bad_objects_are_skipped_and_listed() -> None:
    p, backend, _ = make()
    p.on_service(svc("ns", "bad", "172.30.0.2", port=99999))
    p.on_service(svc("ns", "good", "172.30.0.1"))
    p.on_endpoint_slice(eps("ns", "good", [ep("10.180.0.1")]))
    ready(p)
    p.sync()
    assert trace(backend, "172.30.0.1") == "10.180.0.1:80"
    assert "99999" in p.debug_text()
    assert p.metrics.skipped._value.get() == 1


def test_incremental_result_matches_a_fresh_render() -> None:
    """After any sequence of partial syncs our chains hold exactly what a full render says."""
    p, backend, _ = make()
    services = [
        svc("ns", f"s{i}", f"172.30.0.{i + 1}", type="NodePort", port_extra={"nodePort": 30000 + i}) for i in range(12)
    ]
    for s in services:
        p.on_service(s)
    ready(p)
    p.sync()
    slices = {}
    for step in range(30):
        i = (step * 7) % 12
        slices[i] = eps("ns", f"s{i}", [ep(f"10.180.{i}.{k}") for k in range(1, 1 + step % 4)])
        p.on_endpoint_slice(slices[i])
        p.sync()
    want = render(services, list(slices.values()), options=OPTS)
    for table, chains in want.tables.items():
        for chain, rules in chains.items():
            assert sorted(backend.tables[table][chain]) == sorted(rules), chain
        owned = {c for c in backend.tables[table] if c.startswith("KUBE-")}
        assert owned == set(chains)


def test_plan_full_deletes_stale_owned_chains_only() -> None:
    rs = render([svc("ns", "a", "172.30.0.1")], [eps("ns", "a", [ep("10.180.0.1")])], options=OPTS)
    backend = FakeBackend()
    backend.tables["nat"]["KUBE-SVC-AAAAAAAAAAAAAAAA"] = []
    backend.tables["nat"]["CNI-foreign"] = ["-j ACCEPT"]
    plan = make_plan(rs, None, backend.observed(), full=True)
    assert plan.tables["nat"].delete == ["KUBE-SVC-AAAAAAAAAAAAAAAA"]
    assert len(plan.tables["nat"].jumps) == 3
    backend.apply(rs, full=True)
    assert backend.tables["nat"]["CNI-foreign"] == ["-j ACCEPT"]
    # A second full plan adds no duplicate hooks.
    assert make_plan(rs, state_of(rs), backend.observed(), full=True).tables["nat"].jumps == []
    backend.cleanup()
    assert set(backend.tables["nat"]) == {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "CNI-foreign"}
    assert all(r == [] for c, r in backend.tables["nat"].items() if c != "CNI-foreign")


def test_runner_coalesces_and_respects_min_interval() -> None:
    calls: list[float] = []
    runner = BoundedFrequencyRunner("t", lambda: calls.append(time.monotonic()), 0.3, 60)
    stop = threading.Event()
    t = threading.Thread(target=runner.loop, args=(stop,), daemon=True)
    t.start()
    try:
        runner.run()
        wait_for(lambda: len(calls) == 1, 2, message="first run")
        for _ in range(20):
            runner.run()
        wait_for(lambda: len(calls) == 2, 2, message="coalesced second run")
        assert calls[1] - calls[0] >= 0.29
        runner.retry_after(0.0)
        wait_for(lambda: len(calls) == 3, 2, message="retry")
    finally:
        stop.set()
        runner.wake()
        t.join(2)
    assert len(calls) == 3


def test_runner_periodic() -> None:
    calls: list[int] = []
    runner = BoundedFrequencyRunner("t", lambda: calls.append(1), 0, 0.1)
    stop = threading.Event()
    t = threading.Thread(target=runner.loop, args=(stop,), daemon=True)
    t.start()
    try:
        runner.run()
        wait_for(lambda: len(calls) >= 3, 2, message="periodic runs")
    finally:
        stop.set()
        runner.wake()
        t.join(2)
