"""The highly available lab (issue 17): three control planes on a 3-member etcd behind HAProxy.

One lab (``kubelab up --control-planes 3 --workers 2``, etcd stacked) for the whole module, in the
order a learner would go: look at it (members, leader, Leases, the ``kubernetes`` Endpoints), run
the demo, then break it — stop the etcd leader's node (writes resume through the same endpoint, the
Leases move off it, no Deployment ever exceeds replicas + maxSurge, the VIP keeps answering), stop
a second one (quorum lost: writes refused with a message that says so, the VIP still answers),
start both (everything healthy, nothing lost). Then a backup taken while a member is down, and a
restore of it on the three members. ``--etcd external``: tests/e2e/test_lab_ha_external.py.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

from controlplane.api.registry import CONFIGMAPS
from controlplane.client.rest import ApiClient
from tests.e2e.test_lab import KUBECONFIG, http_get, kubectl, kubectl_json, kubelab, lab, pods, ready, sh
from tests.helpers.halab import CPS, etcd_leader
from tests.helpers.wait import wait_for

LEASES = ("kube-scheduler", "kube-controller-manager")


@pytest.fixture(scope="module")
def ha_lab() -> Iterator[dict[str, str]]:
    yield from lab("--control-planes", "3", "--workers", "2", "--no-dashboard")


def lease_holders() -> dict[str, str]:
    return {
        name: kubectl_json("get", "lease", "-n", "kube-system", name)["spec"].get("holderIdentity", "")
        for name in LEASES
    }


class Sampler:
    """A loop in a thread while the ``with`` block runs: ``step`` every ``period`` seconds."""

    period = 0.1

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.stop.is_set():
            self.step()
            self.stop.wait(self.period)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class Writer(Sampler):
    """Creates a ConfigMap every 50 ms through the API endpoint; remembers when each was acknowledged."""

    period = 0.05

    def __init__(self) -> None:
        super().__init__()
        self.acks: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.client = ApiClient.from_kubeconfig(KUBECONFIG, timeout=3)
        self.i = 0

    def step(self) -> None:
        self.i += 1
        body = {"metadata": {"name": f"ha-write-{self.i}"}, "data": {"i": str(self.i)}}
        try:
            self.client.create(CONFIGMAPS, body, "default")
            self.acks.append(time.monotonic())
        except Exception as exc:  # refused, timed out, connection cut: what the failover causes
            self.errors.append((time.monotonic(), str(exc)))

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.client.close()

    def gap_around(self, t: float) -> float:
        """The longest pause between acknowledged writes from just before ``t`` on."""
        window = [a for a in self.acks if a >= t - 0.5]
        assert len(window) >= 2, f"no write acknowledged around the stop ({len(self.acks)} acks)"
        return max(b - a for a, b in itertools.pairwise(window))


class PodCounter(Sampler):
    """The most pods the hello Deployment ever had at once (not terminating), sampled every 100 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.most = 0

    def step(self) -> None:
        try:
            self.most = max(self.most, len(pods()))
        except Exception:  # the API may be unreachable for a moment: that is what we cause
            pass


def hello_vip() -> str:
    return str(kubectl_json("get", "service", "hello")["spec"]["clusterIP"])


def vip_answers(vip: str) -> bool:
    """The Service's VIP answers from the host (read once while the API could: without quorum a GET
    fails too, as a consistent read from etcd does in Kubernetes)."""
    return "hello" in http_get(f"http://{vip}/")


def test_up_shows_three_members_a_leader_and_every_api_server(ha_lab: dict[str, str]) -> None:
    out = ha_lab["up_output"]
    assert "kl-cp1, kl-cp2, kl-cp3 behind HAProxy in kl-lb" in out, out
    nodes = kubectl_json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["kl-node1", "kl-node2"]
    assert all(ready(n) or any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
               for n in nodes)  # fmt: skip
    # the kubernetes Service lists every live API server (the lease endpoint reconciler)
    wait_for(
        lambda: sorted(a["ip"] for a in kubectl_json("get", "endpoints", "kubernetes")["subsets"][0]["addresses"])
        == sorted(CPS.values()),
        timeout=30, message="default/kubernetes listing the three API servers",
    )  # fmt: skip
    members = kubelab("etcd", "member", "list", "-w", "json")
    assert members.returncode == 0, members.stdout + members.stderr
    assert sorted(m["name"] for m in json.loads(members.stdout)["members"]) == sorted(CPS)
    assert etcd_leader(kubelab) in CPS
    status = kubelab("status")
    assert status.returncode == 0
    assert status.stdout.count(" leader ") == 1 and status.stdout.count(" follower ") == 2, status.stdout
    holders = lease_holders()
    assert all(h.split("_")[0] in CPS for h in holders.values()), holders
    rows = [line.split() for line in status.stdout.splitlines() if line.startswith(("host ", "kl-"))]
    health = {f"{r[0]}/{r[1]}": r[4] for r in rows if len(r) >= 6 and r[1] in (
        "etcd", "controlplane", "dns", "haproxy", "noded", "proxy", "netagent")}  # fmt: skip
    assert {"kl-lb/haproxy", "kl-cp2/etcd", "kl-cp3/controlplane", "kl-cp1/dns"} <= set(health), status.stdout
    assert set(health.values()) == {"healthy"}, status.stdout
    # node namespaces have no default route
    for node in ("kl-lb", *CPS):
        assert "default" not in sh("ip", "-n", node, "route")


def test_every_control_plane_answers_cluster_dns(ha_lab: dict[str, str]) -> None:
    """kube-dns lists the three DNS servers (all publish the same list), and each one answers a pod."""
    eps = kubectl_json("get", "endpoints", "kube-dns", "-n", "kube-system")
    assert sorted(a["ip"] for a in eps["subsets"][0]["addresses"]) == sorted(CPS.values())
    kubectl("run", "dnsclient", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    try:
        kubectl("wait", "--for=condition=Ready", "pod/dnsclient", "--timeout=90s")
        for server in [*CPS.values(), "10.96.0.10"]:
            res = subprocess.run(
                ["kubectl", "--kubeconfig", KUBECONFIG, "exec", "dnsclient", "--", "nslookup",
                 "kubernetes.default.svc.cluster.local", server],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert "Address: 10.96.0.1" in res.stdout, (server, res.stdout, res.stderr)
    finally:
        kubectl("delete", "pod", "dnsclient", "--grace-period=1", "--wait=false")


def test_bad_input_even_control_planes_refused() -> None:
    res = kubelab("up", "--control-planes", "2")
    assert res.returncode == 1
    assert "even count gives no extra fault tolerance" in res.stdout, res.stdout
    res = kubelab("up", "--control-planes", "3", "--store", "sqlite")
    assert res.returncode == 1 and "needs --store etcd" in res.stdout, res.stdout


def test_losing_the_etcd_leader_then_quorum_then_getting_both_back(ha_lab: dict[str, str], tmp_path: Path) -> None:
    res = kubelab("demo", timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    vip = hello_vip()
    wait_for(lambda: vip_answers(vip), timeout=30, message="the demo VIP answering")
    first = etcd_leader(kubelab)
    second = next(n for n in CPS if n != first)
    holders_before = lease_holders()
    with Writer() as writer, PodCounter() as counter:
        wait_for(lambda: len(writer.acks) >= 5, timeout=30, message="writes flowing")
        stopped_at = time.monotonic()
        assert kubelab("node", "stop", first).returncode == 0
        cut = time.monotonic()  # the wire is cut and the processes are gone by now
        wait_for(lambda: etcd_leader(kubelab) != first, timeout=30, message="a new etcd leader")
        # writes resume through the same endpoint (HAProxy drops the dead API server, etcd elects anew)
        wait_for(lambda: len([a for a in writer.acks if a > cut]) >= 10, timeout=30, message="writes again")
        gap = writer.gap_around(stopped_at)
        assert gap < 10, f"writes stopped for {gap:.1f}s"
        # the Leases move off the stopped control plane if they were held there (leaseDuration 15 s)
        wait_for(
            lambda: all(not h.startswith(first + "_") for h in lease_holders().values()),
            timeout=45, message=f"the Leases off {first} (were {holders_before})",
        )  # fmt: skip
        assert vip_answers(vip)
        # a second control plane: quorum lost — writes refused, saying so; running pods still serve
        assert kubelab("node", "stop", second).returncode == 0
        answers: list[str] = []

        def refused_naming_quorum() -> bool:
            # (a request in flight while HAProxy notices that no API server is ready any more may be
            # cut — EOF — and is answered by the next attempt)
            res = subprocess.run(
                ["kubectl", "--kubeconfig", KUBECONFIG, "create", "configmap", "during-no-quorum",
                 "--request-timeout=20s"], capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert res.returncode != 0, "a write was accepted without quorum"
            answers.append(res.stderr.strip())
            return "quorum" in res.stderr

        wait_for(refused_naming_quorum, timeout=60, interval=1, message="a write refused, naming the lost quorum")
        assert "etcd has lost quorum" in answers[-1], answers  # the API server's own words, not the balancer's
        assert vip_answers(vip)
        # back: both nodes started, everything healthy, nothing lost
        assert kubelab("node", "start", second).returncode == 0
        assert kubelab("node", "start", first).returncode == 0
        wait_for(lambda: kubectl("create", "configmap", "after-quorum", "--from-literal=a=1"), timeout=60,
                 message="writes accepted again")  # fmt: skip
    assert counter.most <= 3 + 1, f"the hello Deployment had {counter.most} pods at once (replicas 3 + maxSurge 1)"
    acked = len(writer.acks)
    names = {c["metadata"]["name"] for c in kubectl_json("get", "configmaps")["items"]}
    assert sum(1 for n in names if n.startswith("ha-write-")) >= acked  # every acknowledged write is there

    def healthy() -> bool:
        out = kubelab("status").stdout
        rows = [ln.split() for ln in out.splitlines() if ln.startswith("kl-")]
        return all(r[4] == "healthy" for r in rows if len(r) >= 6 and r[1] in ("etcd", "controlplane", "haproxy"))

    wait_for(healthy, timeout=90, interval=1, message="every control-plane component healthy again")
    assert kubelab("etcd", "endpoint", "health").returncode == 0


def test_backup_with_a_member_down_and_restore_on_three_members(ha_lab: dict[str, str], tmp_path: Path) -> None:
    kubectl("create", "configmap", "ha-before-backup", "--from-literal=a=1")
    assert kubelab("node", "stop", "kl-cp3").returncode == 0
    try:
        file = tmp_path / "ha.backup"
        res = kubelab("backup", "save", str(file))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "revision" in res.stdout
    finally:
        assert kubelab("node", "start", "kl-cp3").returncode == 0
    wait_for(lambda: kubelab("etcd", "endpoint", "health").returncode == 0, timeout=60, interval=1,
             message="three healthy members")  # fmt: skip
    kubectl("delete", "configmap", "ha-before-backup")
    kubectl("create", "configmap", "ha-after-backup", "--from-literal=b=2")
    res = kubelab("backup", "restore", str(file), timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 new data dir(s)" in res.stdout

    def names() -> set[str]:
        return {c["metadata"]["name"] for c in kubectl_json("get", "configmaps")["items"]}

    wait_for(lambda: "ha-before-backup" in names(), timeout=90, message="the deleted ConfigMap back")
    assert "ha-after-backup" not in names()
    members = json.loads(kubelab("etcd", "endpoint", "status", "-w", "json").stdout)
    assert len(members) == 3 and len({m["Status"]["leader"] for m in members}) == 1
