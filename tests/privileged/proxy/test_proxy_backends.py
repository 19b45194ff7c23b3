"""The real backends against each other and against the renderer, in throwaway namespaces.

Each backend writes the golden ruleset of test_proxy_rules.py (kube-proxy's TestOverallIPTablesRules
objects) into a fresh namespace, then a partial change; the kernel's tables (read back with
iptables-save) must hold the same chains and rules, in the same order, whichever backend wrote
them, and the packet tracer must find the same answers in what the kernel holds. The nf_tables
"fresh restore" path (large full syncs) must keep rules it does not own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from proxy.backend.exec import CommandRunner
from proxy.backend.interface import BackendError, StreamedRuleset, parse_save
from proxy.backend.restore import RestoreBackend
from proxy.rules import render
from tests.helpers.netns import NetnsFactory, sh
from tests.unit.proxy.test_proxy_rules import NODE_IP, OPTS, OVERALL_SERVICES, OVERALL_SLICES, ep, eps
from tests.unit.proxy.tracer import Tracer

CHANGED = [*OVERALL_SLICES[:2], eps("ns3", "svc3", [ep("10.180.0.3"), ep("10.180.0.9")]), *OVERALL_SLICES[3:]]

APPLY = """
import json, sys
from proxy.backend.iptc_backend import IptcBackend
from proxy.rules import render, ProxyOptions
objs = json.load(open(sys.argv[1]))
opts = ProxyOptions(node_name="test-hostname", cluster_cidr="10.0.0.0/8", node_ips=("192.168.0.2",))
b = IptcBackend(full_via_restore=False)
b.apply(render(objs["services"], objs["slices"], options=opts), full=True)
b.apply(render(objs["services"], objs["changed"], options=opts), full=False)
"""


def kernel_tables(ns: str, mode: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for table in ("filter", "nat", "mangle"):
        obs = parse_save(sh(f"iptables-{mode}-save", "-t", table, netns=ns)).get(table)
        if obs is not None:
            out[table] = {c: obs.rules.get(c, []) for c in obs.chains}
    return out


@pytest.mark.parametrize(
    "writer", ["restore-nft", "restore-legacy", "restore-nft-streamed", "restore-legacy-streamed", "python-iptables"]
)
def test_backends_hold_the_same_rules(writer: str, netns: NetnsFactory, tmp_path: Path) -> None:
    ns = netns("be")
    mode = "nft" if writer.startswith("restore-nft") else "legacy"
    if writer == "python-iptables":
        f = tmp_path / "objs.json"
        f.write_text(json.dumps({"services": OVERALL_SERVICES, "slices": OVERALL_SLICES, "changed": CHANGED}))
        sh(sys.executable, "-c", APPLY, str(f), netns=ns)
    else:
        # Streamed full syncs; on nf_tables with the fresh (whole-table) restore of nat.
        b = RestoreBackend(mode, CommandRunner(netns=ns), fresh_threshold=7 if writer.endswith("streamed") else 1000)
        rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=OPTS)
        if writer.endswith("streamed"):
            b.apply_full(StreamedRuleset.of(rs))
            b.apply_full(StreamedRuleset.of(rs))  # a full resync over our own chains
        else:
            b.apply(rs, full=True)
        plan = b.apply(render(OVERALL_SERVICES, CHANGED, options=OPTS), full=False)
        assert not plan.full and plan.chains_written() <= 4
    got = kernel_tables(ns, mode)
    want = render(OVERALL_SERVICES, CHANGED, options=OPTS)
    # Same chains; every chain holds as many rules as rendered (iptables-save canonicalises
    # the rule text, so the tracer below checks meaning).
    for table, chains in want.tables.items():
        for chain, rules in chains.items():
            assert len(got[table][chain]) == len(rules), (table, chain)
        owned = {c for c in got[table] if c.startswith("KUBE-")}
        assert owned == set(chains), table
    t = Tracer(got, (NODE_IP,))
    assert t.trace("10.0.0.2", "172.30.0.41", 80).output == "10.180.0.1:80"
    assert t.trace("10.0.0.2", "172.30.0.43", 80).output == "10.180.0.3:80, 10.180.0.9:80"
    assert t.trace("203.0.113.2", NODE_IP, 3003).masq is True
    assert t.trace("10.0.0.2", "172.30.0.46", 80).output == "REJECT"


def test_fresh_nft_restore_keeps_foreign_rules(netns: NetnsFactory) -> None:
    ns = netns("fresh")
    for args in (
        ["-t", "nat", "-N", "CNI-FOREIGN"],
        ["-t", "nat", "-A", "CNI-FOREIGN", "-d", "10.244.0.0/16", "-j", "ACCEPT"],
        ["-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.0/24", "-j", "CNI-FOREIGN"],
        ["-t", "filter", "-P", "FORWARD", "DROP"],
    ):
        sh("iptables-nft", "-w", *args, netns=ns)
    b = RestoreBackend("nft", CommandRunner(netns=ns), fresh_threshold=0)  # always the fresh path
    rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=OPTS)
    b.apply(rs, full=True)  # into empty chains,
    b.apply_full(StreamedRuleset.of(rs))  # then over our own, streamed
    b.apply(rs, full=True)  # and the plain way over the streamed one
    save = sh("iptables-nft-save", netns=ns)
    assert "-A CNI-FOREIGN -d 10.244.0.0/16 -j ACCEPT" in save
    assert "-A POSTROUTING -s 10.244.1.0/24 -j CNI-FOREIGN" in save
    assert ":FORWARD DROP" in save
    assert save.count("-j KUBE-POSTROUTING") == 1  # hooks not duplicated
    got = kernel_tables(ns, "nft")
    assert Tracer(got, (NODE_IP,)).trace("10.0.0.2", "172.30.0.41", 80).output == "10.180.0.1:80"


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_failed_streamed_full_sync_keeps_the_previous_rules(mode: str, netns: NetnsFactory) -> None:
    ns = netns("fail")
    b = RestoreBackend(mode, CommandRunner(netns=ns), fresh_threshold=7)
    rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=OPTS)
    b.apply_full(StreamedRuleset.of(rs))
    before = sh(f"iptables-{mode}-save", netns=ns)
    changed = render(OVERALL_SERVICES, CHANGED, options=OPTS)
    bad_chain = next(c for c in changed.tables["nat"] if c.startswith("KUBE-SEP-"))
    changed.tables["nat"][bad_chain] = ["-m no-such-match -j ACCEPT"]  # the tool rejects this line
    with pytest.raises(BackendError) as err:
        b.apply_full(StreamedRuleset.of(changed))
    culprit = err.value.context.splitlines()[2]
    assert culprit.startswith(">>") and culprit.endswith(f"-A {bad_chain} -m no-such-match -j ACCEPT")
    assert b.applied is None
    strip = [line for line in before.splitlines() if not line.startswith("#")]
    assert [line for line in sh(f"iptables-{mode}-save", netns=ns).splitlines() if not line.startswith("#")] == strip
