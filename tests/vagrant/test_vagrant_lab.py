"""The Vagrant lab, for real: plain ``vagrant up`` from nothing, the demo checks, then nothing left.

Opt-in (``sudo make test-vagrant``; ``tests/vagrant`` is in ``norecursedirs`` so ``make test`` never
collects it) and long: under QEMU software emulation the whole run takes 12-20 minutes, so every
wait is a poll with a generous deadline. One test, in order, because each step needs the previous
one. ``vagrant up`` alone does the host side (the Vagrantfile's triggers: offline box, libvirt and
networks, PKI and wheels, registry, route, Ready). At the end ``vagrant destroy -f`` alone must remove
what the triggers made on the host (registry, route, networks); then ``vagrant/lab.sh down --all``
(also run whatever happened) removes the box and the prepared files, and the end checks that nothing
of the lab is left (domains, volumes, networks, bridges, the route, the registry, the box).

With ``KUBELAB_CONTROL_PLANES=3`` (and optionally ``KUBELAB_ETCD=external``) in the environment
(``sudo KUBELAB_CONTROL_PLANES=3 make test-vagrant``) the same run brings up the HA control plane
(kl-lb, kl-cp1..3, kl-etcd1..3) and adds its checks: HAProxy active, three etcd members and one
leader, the ``kubernetes`` and ``kube-dns`` Endpoints listing every control plane, the Leases held
on control planes; then the etcd leader's VM cut off: writes through 192.168.56.10 resume, the
Leases move off it (stacked), the VIP keeps answering; restored: three healthy members again.

Network safety: the guests sit on libvirt networks with no ``<forward>`` (checked here), no DNS and
no router; the host's only lab route (the service network via kl-node1 on the lab bridge) is
removed by ``down``; the root namespace's safety routes are held for the whole run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import demo, safety
from tests.e2e.test_lab import NP_POLICIES  # the same policies as the one-machine lab's test
from tests.helpers.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
VDIR = ROOT / "vagrant"
LAB = VDIR / "lab.sh"
KUBECONFIG = VDIR / "admin.kubeconfig"
WORKERS = {"kl-node1": "192.168.56.11", "kl-node2": "192.168.56.12"}
ENV = {
    **os.environ,
    "VAGRANT_CHECKPOINT_DISABLE": "1",
    "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
    "KUBELAB_WORKERS": "2",
}
TIMES: dict[str, float] = {}
HA = int(os.environ.get("KUBELAB_CONTROL_PLANES", "1")) > 1
EXTERNAL_ETCD = os.environ.get("KUBELAB_ETCD", "stacked") == "external"
CPS = {"kl-cp1": "192.168.56.21", "kl-cp2": "192.168.56.22", "kl-cp3": "192.168.56.23"}
MEMBERS = (
    {"kl-etcd1": "192.168.56.31", "kl-etcd2": "192.168.56.32", "kl-etcd3": "192.168.56.33"} if EXTERNAL_ETCD else CPS
)
LEASES = ("kube-scheduler", "kube-controller-manager")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the Vagrant lab needs root (sudo make test-vagrant)"),
    pytest.mark.skipif(shutil.which("vagrant") is None or shutil.which("virsh") is None, reason="make vagrant-deps"),
]


def run(*argv: str, timeout: float, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def timed(name: str, *argv: str, timeout: float, cwd: Path = ROOT) -> str:
    t0 = time.monotonic()
    res = run(*argv, timeout=timeout, cwd=cwd)
    TIMES[name] = time.monotonic() - t0
    print(f"[vagrant lab] {name}: {TIMES[name]:.0f} s", flush=True)
    return res.stdout


def kubectl(*args: str, input_text: str | None = None, timeout: float = 120) -> str:
    res = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), "--request-timeout=60s", *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stderr}"
    return res.stdout


def ssh(node: str, command: str, timeout: float = 180) -> str:
    return run("vagrant", "ssh", node, "-c", command, timeout=timeout, cwd=VDIR).stdout


def http_get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode().strip())


def try_get(url: str) -> str | None:
    try:
        return http_get(url)
    except OSError:
        return None


def lab_leftovers() -> list[str]:
    """What of the Vagrant lab still exists on this host (empty when down did its job)."""
    left = []
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    left += [f"link {ln.split()[0]}" for ln in links.splitlines() if ln.startswith(("klvirbr1", "klvirbr2"))]
    routes = subprocess.run(["ip", "route", "show", "10.96.0.0/12"], capture_output=True, text=True).stdout
    left += [f"route {ln}" for ln in routes.splitlines() if "192.168.56.11" in ln]
    if (VDIR / ".prep" / "registry.pid").exists():
        left.append("registry pid file")
    virsh = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, text=True)
    if virsh.returncode == 0:
        left.append("libvirtd still answering")
    boxes = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True, env=ENV).stdout
    left += [f"box {ln}" for ln in boxes.splitlines() if "kubelab-bookworm" in ln]
    left += [f"image {p}" for p in Path("/var/lib/libvirt/images").glob("*kl-*")]
    left += [f"image {p}" for p in Path("/var/lib/libvirt/images").glob("*kubelab-bookworm*")]
    return left


def kvm_mode() -> str | None:
    """/dev/kvm's owner, group and mode (libvirt-networks.sh gives it udev's while the lab runs)."""
    try:
        st = os.stat("/dev/kvm")
    except FileNotFoundError:
        return None
    return f"{st.st_uid}:{st.st_gid} {stat.S_IMODE(st.st_mode):o}"


@pytest.fixture
def vagrant_lab() -> Iterator[None]:
    assert not lab_leftovers(), f"a Vagrant lab is already here: {lab_leftovers()} (sudo make vagrant-down)"
    kvm_before = kvm_mode()
    with safety.hold("vagrant-test"):
        try:
            yield
            # Plain `vagrant destroy -f`: its after-destroy trigger removes the host side.
            timed("destroy", "vagrant", "destroy", "-f", timeout=900, cwd=VDIR)
            after_destroy = [x for x in lab_leftovers() if not x.startswith(("box ", "image ")) and "libvirtd" not in x]
            assert not after_destroy, f"`vagrant destroy -f` left on the host: {after_destroy}"
        finally:
            t0 = time.monotonic()
            res = run(str(LAB), "down", "--all", timeout=900, check=False)
            TIMES["down"] = time.monotonic() - t0
            print(res.stdout, res.stderr, f"[vagrant lab] down: {TIMES['down']:.0f} s", sep="\n", flush=True)
            print("[vagrant lab] times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in TIMES.items()), flush=True)
    assert not lab_leftovers(), f"left behind: {lab_leftovers()}"
    assert kvm_mode() == kvm_before, f"/dev/kvm was {kvm_before}, is {kvm_mode()} after down"


NP_CLIENTS = """\
apiVersion: v1
kind: Pod
metadata: {name: np-ok, labels: {access: "true", np: ok}}
spec:
  containers: [{name: main, image: 192.168.56.1:5000/library/busybox:latest, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: np-no, labels: {np: "no"}}
spec:
  containers: [{name: main, image: 192.168.56.1:5000/library/busybox:latest, command: ["sleep", "3600"]}]
"""


def pods(selector: str = "app=hello") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]
    return items


def node_ready(name: str) -> bool:
    node = json.loads(kubectl("get", "node", name, "-o", "json"))
    conds = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


@pytest.mark.timeout(4 * 3600)
def test_vagrant_lab_end_to_end(vagrant_lab: None) -> None:
    # 1-2. Plain `vagrant up`: the triggers build the offline box (debootstrap from Debian's mirror on
    # the host; nothing from inside guests), start libvirt and the networks, prepare the host, start
    # the registry; then three VMs, the host route, and a wait until every node is Ready.
    assert not (VDIR / "admin.kubeconfig").exists() and not (VDIR / ".vagrant").exists(), "not a clean checkout"
    out = timed("vagrant up", "vagrant", "up", timeout=3600, cwd=VDIR)
    box_line = [ln for ln in out.splitlines() if "built and added in" in ln]
    print(f"[vagrant lab] {box_line}", flush=True)
    assert "kubelab vagrant: [3/4]" in out and "the lab is up" in out, out[-3000:]
    for net in ("kubelab-lab", "kubelab-mgmt"):
        xml = run("virsh", "-c", "qemu:///system", "net-dumpxml", net, timeout=30).stdout
        assert "<forward" not in xml and "<dns enable='no'/>" in xml, f"{net} must be isolated without DNS:\n{xml}"
    t0 = time.monotonic()

    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    ready_nodes = {n["metadata"]["name"] for n in nodes if any(
        c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}  # fmt: skip
    assert set(WORKERS) <= ready_nodes, f"nodes Ready: {ready_nodes}"
    for n in nodes:
        addrs = {a["address"] for a in n["status"].get("addresses", [])}
        if n["metadata"]["name"] in WORKERS:
            assert WORKERS[n["metadata"]["name"]] in addrs, (
                f"{n['metadata']['name']} is not on the private network: {addrs}"
            )

    # 3. The demo app with the real kubectl: pods Ready on both workers.
    kubectl("apply", "-f", "-", input_text=demo.MANIFEST)
    wait_for(
        lambda: (
            len([p for p in pods() if ready(p)]) == 3 and {p["spec"].get("nodeName") for p in pods()} == set(WORKERS)
        ),
        timeout=1500,
        interval=5,
        message="3 hello pods Ready on both workers",
    )
    svc = json.loads(kubectl("get", "service", "hello", "-o", "json"))
    vip = svc["spec"]["clusterIP"]
    pod_names = {p["metadata"]["name"] for p in pods()}

    # 4. The VIP from a worker (its own iptables DNAT, to pods on both nodes).
    answer = wait_for(
        lambda: ssh("kl-node1", f"curl -s --max-time 20 http://{vip}/"),
        timeout=300,
        interval=5,
        message="the VIP answering on kl-node1",
    )
    assert any(name in answer for name in pod_names), f"VIP from kl-node1: {answer!r}"

    # 5. The VIP from the host across the private network (route via kl-node1), reaching both nodes.
    answers = [a for a in (try_get(f"http://{vip}/") for _ in range(20)) if a]
    assert len(answers) >= 15, f"VIP from the host: {len(answers)}/20 answered: {answers}"
    assert {w for w in WORKERS if any(w in a for a in answers)} == set(WORKERS), answers

    # 6. The NodePort on each worker's private-network address, from the host.
    for node, ip in WORKERS.items():
        a = wait_for(
            lambda ip=ip: try_get(f"http://{ip}:{demo.NODE_PORT}/"),
            timeout=120,
            interval=2,
            message=f"NodePort on {node}",
        )
        assert any(name in a for name in pod_names), f"NodePort on {ip}: {a!r}"

    # 7. kube-proxy's chains for the service in a worker's nat table.
    rules = ssh("kl-node2", "sudo iptables -t nat -S")
    svc_chains = [ln for ln in rules.splitlines() if "KUBE-SVC-" in ln and "default/hello" in ln]
    sep_chains = {ln.split()[1] for ln in rules.splitlines() if ln.startswith("-N KUBE-SEP-")}
    assert svc_chains, rules
    assert len(sep_chains) >= 3, rules
    assert f"-d {vip}/32" in rules

    # 8. Cluster DNS: a pod's resolver (10.96.0.10, DNATed to kubelab-dns on the control plane VM)
    #    answers the service's name with its ClusterIP. busybox's nslookup walks the search path and
    #    may exit 1 on the misses, so read its output.
    client = sorted(pod_names)[0]

    def nslookup() -> str:
        argv = ["kubectl", "--kubeconfig", str(KUBECONFIG), "exec", client, "--"]
        res = subprocess.run(
            [*argv, "nslookup", "hello.default.svc.cluster.local"], capture_output=True, text=True, timeout=30
        )
        return res.stdout + res.stderr

    wait_for(lambda: f"Address: {vip}" in nslookup(), timeout=120, interval=2, message="cluster DNS from a pod")

    # 9. NetworkPolicy: the netagent on each VM drops the unlabelled client, admits the labelled one.
    kubectl("apply", "-f", "-", input_text=NP_CLIENTS)
    wait_for(
        lambda: all(ready(p) for p in pods("np in (ok,no)")) and len(pods("np in (ok,no)")) == 2,
        timeout=600,
        interval=5,
        message="np-ok and np-no Ready",
    )

    def attempt(client: str, url: str) -> bool | None:
        """True: answered; False: wget ran and got nothing (dropped); None: the exec itself broke.
        The marker line tells the last two apart: only a shell that ran to its end prints it."""
        res = subprocess.run(
            ["kubectl", "--kubeconfig", str(KUBECONFIG), "exec", client, "--",
             "sh", "-c", f"timeout 15 wget -q -O - {url}; echo wget-exit=$?"],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        if "Hello from" in res.stdout:
            return True
        # Under software emulation a busybox exec plus a connection through the DNAT can take
        # seconds (hence 15 s); every miss is printed so a failure names its cause.
        print(f"[vagrant lab] {client} → {url}: rc={res.returncode} {res.stdout.strip()[-80:]!r} "
              f"{res.stderr.strip()[-300:]!r}", flush=True)  # fmt: skip
        return False if "wget-exit=" in res.stdout else None

    def answered(client: str, url: str = f"http://{vip}/") -> bool | None:
        """``attempt``, tried again (up to 3 times) when the exec broke: that is not the network's answer."""
        for _ in range(3):
            got = attempt(client, url)
            if got is not None:
                return got
        return None

    wait_for(lambda: answered("np-no") is True, timeout=120, interval=2, message="np-no answered before any policy")
    kubectl("apply", "-f", "-", input_text=NP_POLICIES)
    # The two policies reach each node's network agent as two changes: for a moment the deny may be
    # in force without the allow (as on any cluster); wait for both, then check the allow holds.
    wait_for(
        lambda: answered("np-no") is False and answered("np-ok") is True,
        timeout=180,
        interval=2,
        message="np-no dropped and np-ok admitted by the policies",
    )
    # Admitted by every backend, on either worker (each pod's own address, then the VIP, which
    # picks one at random): a policy enforced on one node only would fail here.
    backends = {p["status"]["podIP"]: p["spec"]["nodeName"] for p in pods()}
    placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods("np in (ok,no)")}
    print(f"[vagrant lab] NetworkPolicy: clients on {placed}, backends on {backends}", flush=True)
    for ip, node in backends.items():
        assert answered("np-ok", f"http://{ip}:8080/") is True, f"np-ok not admitted by the backend {ip} on {node}"
    assert all(answered("np-ok") is True for _ in range(3))
    assert "KUBELAB-FIREWALL" in ssh("kl-node1", "sudo iptables -S FORWARD")
    kubectl("delete", "networkpolicy", "hello-deny-ingress", "hello-allow-access")
    wait_for(
        lambda: answered("np-no") is True, timeout=180, interval=2, message="np-no answered once the policy is gone"
    )

    # 10. `kubelab trace` on the VM lab: the DNAT chain and the routes read from the VMs over the
    #     node network (the network agents' authenticated /debug/network, lab/trace.py's Lab), not
    #     from network namespaces on this host; only --probe goes over SSH (lab/tracefetch.py).
    client_pod = pods()[0]
    source = f"pod/{client_pod['metadata']['name']}"
    python = str(ROOT / ".venv" / "bin" / "python")
    res = run(python, "-m", "lab", "trace", "--from", source, "--to", "svc/hello:80", "--probe", timeout=180)
    out = res.stdout
    print(out, flush=True)
    assert f"on node {client_pod['spec']['nodeName']}" in out and "nat PREROUTING" in out, out
    assert "KUBE-SVC-" in out and out.count("DNAT to ") >= 3, out
    assert "ip route get" in out and "probed endpoint:" in out, out
    assert ":9098/debug/network" in out, out

    TIMES["checks"] = time.monotonic() - t0
    print(f"[vagrant lab] checks: {TIMES['checks']:.0f} s", flush=True)
    if HA:
        t2 = time.monotonic()
        check_ha(python, vip)
        TIMES["HA checks"] = time.monotonic() - t2

    # 11. `kubelab node stop/start` on a VM: its lab-network link cut from the host, NotReady, back.
    t1 = time.monotonic()
    run(python, "-m", "lab", "status", timeout=180)
    run(python, "-m", "lab", "node", "stop", "kl-node2", timeout=60)
    try:
        wait_for(lambda: not node_ready("kl-node2"), timeout=600, interval=5, message="kl-node2 NotReady once cut off")
    finally:
        run(python, "-m", "lab", "node", "start", "kl-node2", timeout=60)
    wait_for(lambda: node_ready("kl-node2"), timeout=600, interval=5, message="kl-node2 Ready again")
    TIMES["node stop/start"] = time.monotonic() - t1

    # 12. `vagrant halt` then `vagrant up`: the triggers find everything in place, the cluster keeps
    #     its objects (the store is on kl-cp's disk) and the pods run again.
    timed("vagrant halt", "vagrant", "halt", timeout=900, cwd=VDIR)
    again = timed("vagrant up again", "vagrant", "up", timeout=3600, cwd=VDIR)
    assert f"box {os.environ.get('KUBELAB_BOX', 'local/kubelab-bookworm')} present" in again, again[-3000:]
    assert "the lab is up" in again, again[-3000:]
    assert kubectl("get", "deployment", "hello", "-o", "name").strip() == "deployment.apps/hello"
    wait_for(
        lambda: len([p for p in pods() if ready(p)]) == 3,
        timeout=900,
        interval=5,
        message="the hello pods Ready again after halt/up",
    )


# ---- the HA control plane (KUBELAB_CONTROL_PLANES=3) ---------------------------------------------


def etcdctl(node: str, args: str) -> str:
    """etcdctl on a member's VM against its own member, with the health-check client certificate.

    Its output is read whatever the exit code: ``endpoint status --cluster`` prints the members that
    answered and exits 1 when one did not — which is the point while a member's VM is cut off."""
    pki = "/var/lib/kubelab/pki/etcd"
    command = (f"sudo etcdctl --endpoints=https://127.0.0.1:2379 --cacert={pki}/ca.crt "
               f"--cert={pki}/healthcheck-client.crt --key={pki}/healthcheck-client.key {args}")  # fmt: skip
    return run("vagrant", "ssh", node, "-c", command, timeout=180, cwd=VDIR, check=False).stdout


def etcd_status(via: str) -> dict[str, bool]:
    """Each member (by node) that answers, and whether it leads."""
    by_ip = {ip: name for name, ip in MEMBERS.items()}
    out = json.loads(etcdctl(via, "endpoint status --cluster -w json"))
    return {by_ip[st["Endpoint"].split("//")[1].split(":")[0]]: st["Status"]["header"]["member_id"] ==
            st["Status"]["leader"] for st in out}  # fmt: skip


def endpoint_ips(namespace: str, name: str) -> set[str]:
    ep = json.loads(kubectl("get", "endpoints", "-n", namespace, name, "-o", "json"))
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def lease_holders() -> dict[str, str]:
    return {
        n: json.loads(kubectl("get", "lease", "-n", "kube-system", n, "-o", "json"))["spec"].get("holderIdentity", "")
        for n in LEASES
    }


def write_works(i: int) -> bool:
    res = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), "--request-timeout=10s", "create", "configmap", f"ha-write-{i}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return res.returncode == 0


def check_ha(python: str, vip: str) -> None:
    assert ssh("kl-lb", "systemctl is-active haproxy").strip() == "active"
    for cp in CPS:
        units = "kubelab-controlplane kubelab-dns" + ("" if EXTERNAL_ETCD else " kubelab-etcd")
        assert set(ssh(cp, f"systemctl is-active {units}").split()) == {"active"}, cp
    first = next(iter(MEMBERS))

    def one_leader() -> dict[str, bool] | None:
        st = etcd_status(first)
        return st if len(st) == 3 and sum(st.values()) == 1 else None

    status = wait_for(one_leader, timeout=300, interval=5, message="three etcd members, one leader")
    leader = next(n for n, leads in status.items() if leads)
    wait_for(lambda: endpoint_ips("default", "kubernetes") == set(CPS.values()), timeout=300, interval=5,
             message="default/kubernetes lists every API server")  # fmt: skip
    wait_for(lambda: endpoint_ips("kube-system", "kube-dns") == set(CPS.values()), timeout=300, interval=5,
             message="kube-dns lists every control plane's DNS server")  # fmt: skip
    holders = lease_holders()
    assert all(h.split("_")[0] in CPS for h in holders.values()), holders
    print(f"[vagrant lab] etcd leader {leader}, Leases {holders}", flush=True)

    # The etcd leader's VM cut off the lab network: a new leader among the others, HAProxy drops the
    # API server that lost its store, the Leases move if they were there, writes resume.
    run(python, "-m", "lab", "node", "stop", leader, timeout=60)
    try:
        t0 = time.monotonic()
        counter = iter(range(10**6))
        wait_for(lambda: write_works(next(counter)), timeout=300, interval=1, message=f"writes with {leader} cut off")
        print(f"[vagrant lab] first write {time.monotonic() - t0:.1f} s after cutting {leader}", flush=True)
        others = [n for n in MEMBERS if n != leader]
        wait_for(lambda: sum(etcd_status(others[0]).values()) == 1, timeout=120, interval=2,
                 message="a new etcd leader among the two left")  # fmt: skip
        if not EXTERNAL_ETCD:
            wait_for(lambda: all(not h.startswith(leader + "_") for h in lease_holders().values()),
                     timeout=180, interval=2, message=f"the Leases off {leader}")  # fmt: skip
        assert any(try_get(f"http://{vip}/") for _ in range(5)), "the VIP stopped answering"
    finally:
        run(python, "-m", "lab", "node", "start", leader, timeout=60)
    wait_for(lambda: len(etcd_status(leader)) == 3, timeout=300, interval=5, message=f"{leader}'s member back")
    kubectl("delete", "configmap", "--all", "-n", "default", "--ignore-not-found")
