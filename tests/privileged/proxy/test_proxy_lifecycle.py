"""The proxy's life around the rules, for each backend: ``cleanup`` leaves the tables exactly as
before, a failed apply keeps the previous rules and is retried, a flush is noticed and repaired,
and the HTTP endpoints tell what happened. Topology and addresses: conftest.py.
"""

from __future__ import annotations

import re
import sys

from proxy.rules import endpoint_chain
from tests.helpers.netns import sh
from tests.helpers.wait import wait_for
from tests.privileged.proxy.conftest import Lab, service, slice_
from tests.privileged.proxy.test_proxy_traffic import start


def normalized(lab: Lab, node: str) -> str:
    """filter, nat and mangle as iptables-save prints them, minus comments and counters."""
    out = []
    for table in ("filter", "nat", "mangle"):
        text = lab.save(node, table)
        out += [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(out)


def ipt(lab: Lab, node: str, *args: str) -> None:
    sh(f"iptables-{lab.mode}", "-w", *args, netns=lab.nodes[node])


def http(lab: Lab, node: str, path: str) -> str:
    return sh("curl", "-s", "-w", "\n%{http_code}", f"http://127.0.0.1:10249{path}", netns=lab.nodes[node])


def test_cleanup_leaves_tables_exactly_as_before(lab: Lab) -> None:
    # Someone else's rules, present before the proxy starts and after it is gone.
    ipt(lab, "node1", "-t", "nat", "-N", "CNI-TEST")
    ipt(lab, "node1", "-t", "nat", "-A", "CNI-TEST", "-d", "10.244.0.0/16", "-j", "ACCEPT")
    ipt(lab, "node1", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.0/24", "-j", "CNI-TEST")
    ipt(lab, "node1", "-t", "filter", "-A", "FORWARD", "-s", "10.244.0.0/16", "-j", "ACCEPT")
    ipt(lab, "node1", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--dport", "9", "-j", "ACCEPT")
    before = normalized(lab, "node1")
    lab.server("p1a")
    start(
        lab,
        [
            service("web", "10.96.0.20", type="NodePort", node_port=30090),
            slice_("web", [("10.244.1.2", "node1", True)]),
            service("none", "10.96.0.21"),
            slice_("none", []),
        ],
    )
    assert lab.tcp("p1b", "10.96.0.20", 80) == ["p1a"]
    during = normalized(lab, "node1")
    assert "KUBE-PROXY-CANARY" in during and "CNI-TEST" in during
    lab.stop()  # the proxy leaves its rules behind when it stops, as kube-proxy does
    assert "KUBE-SERVICES" in normalized(lab, "node1")
    sh(sys.executable, "-m", "proxy", "cleanup", netns=lab.nodes["node1"])
    assert normalized(lab, "node1") == before
    sh(sys.executable, "-m", "proxy", "cleanup", netns=lab.nodes["node1"])  # idempotent
    assert normalized(lab, "node1") == before


def test_failed_apply_keeps_previous_rules_logs_and_retries(lab: Lab) -> None:
    lab.server("p1a")
    lab.server("p2a")
    eps = [("10.244.1.2", "node1", True), ("10.244.2.2", "node2", True)]
    lab.write_objects([service("web", "10.96.0.22"), slice_("web", eps)])
    # kube-proxy's healthz turns 503 once a change waits 2 x the sync period: 4 s here.
    lab.start_proxy("node1", "--sync-period", "2s")
    wait_for(lambda: "KUBE-SVC-" in lab.save("node1"), 15, message="proxy rules on node1")
    sep_b = endpoint_chain("default/web:p", "tcp", "10.244.2.2:8080")
    # Another program jumps to one of our endpoint chains: deleting it will fail in the kernel.
    ipt(lab, "node1", "-t", "nat", "-N", "FOREIGN")
    ipt(lab, "node1", "-t", "nat", "-A", "FOREIGN", "-j", sep_b)
    lab.write_objects([service("web", "10.96.0.22"), slice_("web", eps[:1])])
    wait_for(lambda: "# last failed" in http(lab, "node1", "/debug/rules"), 10, message="a failed sync")
    log = lab.proxy_log("node1")
    assert "sync failed" in log and f"-X {sep_b}" in log, log[-3000:]  # the offending line
    assert "Traceback" not in log
    debug = http(lab, "node1", "/debug/rules")
    assert f"-X {sep_b}" in debug
    # The previous rules stay in place: both endpoints still serve.
    assert sep_b in lab.save("node1")
    assert set(lab.tcp("p1b", "10.96.0.22", 80, 20)) == {"p1a", "p2a"}
    wait_for(lambda: http(lab, "node1", "/healthz").endswith("503"), 10, message="healthz failing")
    assert "kubeproxy_sync_proxy_rules_iptables_restore_failures_total" in http(lab, "node1", "/metrics")
    # Retried until it works once the foreign reference is gone.
    ipt(lab, "node1", "-t", "nat", "-F", "FOREIGN")
    ipt(lab, "node1", "-t", "nat", "-X", "FOREIGN")
    wait_for(lambda: sep_b not in lab.save("node1"), 15, message="retried sync")
    assert set(lab.tcp("p1b", "10.96.0.22", 80, 10)) == {"p1a"}
    wait_for(lambda: http(lab, "node1", "/healthz").endswith("200"), 5, message="healthy again")
    assert "# last applied" in http(lab, "node1", "/debug/rules")


def test_flushed_tables_are_noticed_and_repaired(lab: Lab) -> None:
    lab.server("p1a")
    start(lab, [service("web", "10.96.0.23"), slice_("web", [("10.244.1.2", "node1", True)])])
    for table in ("nat", "filter", "mangle"):
        ipt(lab, "node1", "-t", table, "-F")
        ipt(lab, "node1", "-t", table, "-X")
    assert "KUBE-SERVICES" not in lab.save("node1")
    wait_for(lambda: "KUBE-PROXY-CANARY" in lab.save("node1", "mangle"), 10, message="canary back")
    assert lab.tcp("p1b", "10.96.0.23", 80) == ["p1a"]
    assert "canary" in lab.proxy_log("node1")


def test_unprogrammable_service_is_skipped_others_work(lab: Lab) -> None:
    lab.server("p1a")
    bad = service("bad", "10.96.0.25", 70000)
    start(lab, [bad, service("web", "10.96.0.24"), slice_("web", [("10.244.1.2", "node1", True)])])
    assert lab.tcp("p1b", "10.96.0.24", 80) == ["p1a"]
    assert "70000" in lab.proxy_log("node1")
    assert "70000" in http(lab, "node1", "/debug/rules")
