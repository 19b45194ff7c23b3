"""The proxy's healthz (kube-proxy's ProxyHealthServer logic) with a fake clock, through the proxier:
staleness of pending changes, node eligibility, the last error in the body, and a missing tool as
one error line (no traceback) that heals without a restart."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from proxy.backend.exec import Completed, ToolMissing
from proxy.backend.interface import BackendError
from proxy.backend.restore import RestoreBackend
from proxy.healthz import ProxyHealth, go_time
from proxy.proxier import Proxier
from proxy.rules import ProxyOptions
from tests.unit.proxy.test_proxy_rules import ep, eps, svc


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pending_change_turns_unhealthy_after_the_timeout_and_updated_heals() -> None:
    clock = Clock()
    h = ProxyHealth(60.0, clock=clock, wall=lambda: 1_700_000_000.5)
    assert h.healthz()[0] == 200  # starting up: healthy
    h.queued_update()
    clock.now += 59.9
    assert h.healthz()[0] == 200
    h.queued_update()  # a later change does not move the oldest pending one
    clock.now += 0.1
    code, body = h.healthz()
    assert code == 503
    doc = json.loads(body)
    assert set(doc) == {"lastUpdated", "currentTime", "nodeEligible", "lastError"}
    assert doc["currentTime"] == "2023-11-14 22:13:20.5 +0000 UTC"
    h.updated()
    assert h.healthz()[0] == 200 and h.livez()[0] == 200


def test_failed_sync_counts_as_pending_and_carries_the_error() -> None:
    clock = Clock()
    h = ProxyHealth(4.0, clock=clock)
    h.failed('exec: "nft": executable file not found in $PATH (install the nftables package)')
    assert h.healthz()[0] == 200
    clock.now += 4
    code, body = h.healthz()
    assert code == 503 and "install the nftables package" in json.loads(body)["lastError"]
    h.updated()
    code, body = h.healthz()
    assert code == 200 and json.loads(body)["lastError"] == ""


def test_node_being_deleted_or_tainted_fails_healthz_not_livez() -> None:
    h = ProxyHealth(60.0)
    h.sync_node({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler"}]}})
    assert h.healthz()[0] == 503 and json.loads(h.healthz()[1])["nodeEligible"] is False
    assert h.livez()[0] == 200
    h.sync_node({"metadata": {"name": "n1"}, "spec": {}})
    assert h.healthz()[0] == 200
    h.sync_node({"metadata": {"name": "n1", "deletionTimestamp": "2026-01-01T00:00:00Z"}})
    assert h.healthz()[0] == 503


def test_go_time() -> None:
    assert go_time(None) == "0001-01-01 00:00:00 +0000 UTC"
    assert go_time(0) == "1970-01-01 00:00:00 +0000 UTC"


class ScriptedRunner:
    """A CommandRunner whose programs can be missing: answers iptables-save and restores."""

    def __init__(self) -> None:
        self.missing = {"nft", "iptables-nft-restore"}
        self.restores: list[str] = []

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 600) -> Completed:
        if argv[0] in self.missing:
            raise ToolMissing(argv)
        if argv[0] == "iptables-nft-restore":
            self.restores.append(input or "")
        return Completed(0, "", "")

    def start(self, argv: list[str], *, check: bool = True) -> Any:
        from proxy.backend.exec import BufferedFeed

        return BufferedFeed(self, argv, check=check)  # type: ignore[arg-type]


def test_missing_tool_is_one_error_line_503_and_heals_without_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    runner = ScriptedRunner()
    backend = RestoreBackend("nft", runner)  # type: ignore[arg-type]
    p = Proxier(backend, ProxyOptions(node_name="n1"), min_sync_period=0, sync_period=2, clock=clock, wall_clock=clock)
    p.expect_sources("services", "endpointslices")
    p.on_service(svc("ns", "a", "172.30.0.1"))
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.1")]))
    p.set_synced("services")
    p.set_synced("endpointslices")
    for _ in range(20):  # twenty failed syncs, as the runner's back-off would retry them
        p.sync()
        clock.now += 1
    assert p.consecutive_failures == 20 and not runner.restores
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is None
    assert 'exec: "nft": executable file not found in $PATH (install the nftables package)' in errors[0].getMessage()
    code, body = p.health.healthz()
    assert code == 503 and "nftables" in json.loads(body)["lastError"]
    # Programs installed: the next retry programs the rules, health recovers.
    runner.missing.clear()
    p.sync()
    assert runner.restores and "KUBE-SERVICES" in runner.restores[-1]
    assert p.health.healthz()[0] == 200
    assert any("sync recovered after 20 failed attempts" in r.getMessage() for r in caplog.records)


def test_backend_wraps_missing_tool_as_backend_error() -> None:
    runner = ScriptedRunner()
    runner.missing = {"iptables-nft-restore"}
    backend = RestoreBackend("nft", runner)  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="install the iptables package"):
        backend._restore("*nat\nCOMMIT\n")
    assert backend.canary_present() is True  # iptables-nft itself is there
    runner.missing.add("iptables-nft")
    assert backend.canary_present() is False
