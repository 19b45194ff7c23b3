"""noded end to end: the real ``kubelab noded`` process against a real API server, real runc, a real
registry and the reference CNI plugins (or ours), with real kubectl for logs and exec.

Topology: the API server listens on 127.0.0.1 (root namespace); noded runs in the root namespace too
(so it reaches the API server and the API server reaches its kubelet API on 127.0.0.1), but its
node network lives in a throwaway namespace (``--node-netns``): CNI plugins run there, the bridge
and veths are there, probes connect from there. Pod netns names carry a per-test prefix; noded's
root dir, runc root and log dir are temporary. Teardown: noded SIGTERM, ``kubelab noded cleanup``,
API server stop — nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.api.registry import EVENTS, LEASES, NODES, PODS
from controlplane.pki import CertificateAuthority, issue_cert
from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.netns import NetnsFactory, sh
from tests.helpers.registry import Registry, free_port
from tests.helpers.wait import wait_for

REPO = Path(__file__).resolve().parents[3]
NODE = "kt-node1"


class Cluster:
    def __init__(self, tmp: Path, api: RunningApiServer, node_ns: str, registry_: Registry, cni: str) -> None:
        self.tmp, self.api, self.node_ns, self.registry = tmp, api, node_ns, registry_
        self.client = api.client()
        self.prefix = f"kt{uuid.uuid4().hex[:6]}-"
        self.root = tmp / "noded"
        self.log_root = tmp / "pods-logs"
        self.cni_conf = tmp / "cni"
        self.manifests = tmp / "manifests"
        self.manifests.mkdir()
        self.cni = cni
        ca = CertificateAuthority(
            (api.data_dir / "pki" / "ca.crt").read_bytes(), (api.data_dir / "pki" / "ca.key").read_bytes()
        )
        cert, key = issue_cert(ca, f"system:node:{NODE}", ["system:nodes"], ips=["127.0.0.1"], client=True, server=True)
        (tmp / "kubelet.crt").write_bytes(cert)
        (tmp / "kubelet.key").write_bytes(key)
        self.kubelet_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []

    def start_noded(self) -> None:
        cni_bins = ["--cni-bin-dir", "/usr/lib/cni"]
        if self.cni == "kubelab":
            cni_bins = ["--cni-bin-dir", str(Path(sys.executable).parent)]
        cmd = [
            sys.executable, "-m", "lab", "-v", "noded", "--node-name", NODE, "--kubeconfig", str(self.api.kubeconfig),
            "--node-ip", "127.0.0.1", "--root-dir", str(self.root), "--log-root", str(self.log_root),
            *cni_bins, "--cni-conf-dir", str(self.cni_conf), "--cni", self.cni,
            "--node-netns", self.node_ns, "--netns-prefix", self.prefix, "--manifests-dir", str(self.manifests),
            "--tls-cert-file", str(self.tmp / "kubelet.crt"), "--tls-private-key-file", str(self.tmp / "kubelet.key"),
            "--client-ca-file", str(self.api.data_dir / "pki" / "ca.crt"), "--kubelet-port", str(self.kubelet_port),
            "--insecure-registry", self.registry.address, "--backoff-base", "0.5",
            "--lease-period", "1", "--status-period", "1", *self.extra_args,
        ]  # fmt: skip
        log = open(self.tmp / "noded.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop_noded(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def image(self, name: str) -> str:
        return f"{self.registry.address}/kubelab/{name}:latest"

    def pod(self, name: str) -> dict[str, Any]:
        return self.client.get(PODS, name, "default")

    def create(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": containers, "terminationGracePeriodSeconds": 2, **spec},
        }
        return self.client.create(PODS, obj, "default")

    def wait_pod(self, name: str, cond: Any, timeout: float = 30) -> dict[str, Any]:
        def check() -> Any:
            p = self.pod(name)
            return p if cond(p) else None

        try:
            return wait_for(check, timeout, interval=0.1, message=f"pod {name}")
        except AssertionError:
            raise AssertionError(
                f"pod {name}: {json.dumps(self.pod(name).get('status'))[:1500]}\nnoded log tail:\n"
                f"{(self.tmp / 'noded.log').read_text()[-3000:]}"
            ) from None

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.api.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {res.stderr}")
        return res

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.client.list(EVENTS, "default")["items"]
        return [e for e in items if e["involvedObject"].get("name") == name]


def running_ready(p: dict[str, Any]) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and all(c.get("ready") for c in st.get("containerStatuses") or [{}])


@pytest.fixture(params=["reference"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, netns: NetnsFactory, registry: Registry
) -> Iterator[Cluster]:
    api = start_apiserver(tmp_path)
    c = Cluster(tmp_path, api, netns("node"), registry, request.param)
    try:
        c.start_noded()
        try:
            node = wait_for(lambda: c.client.get(NODES, NODE), 30, message="node registered")
            assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == c.kubelet_port
            # The node IPAM controller's job: give the node its pod CIDR.
            c.client.patch(NODES, NODE, {"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}})
            wait_for(lambda: (c.cni_conf / "10-kubelab.conflist").exists(), 30, message="CNI config written")
        except AssertionError as exc:
            log = (
                (tmp_path / "noded.log").read_text(errors="replace")[-3000:]
                if (tmp_path / "noded.log").exists()
                else ""
            )
            raise AssertionError(f"{exc}\nnoded log tail:\n{log}") from None
        yield c
    finally:
        c.stop_noded()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lab",
                "noded",
                "cleanup",
                "--root-dir",
                str(c.root),
                "--log-root",
                str(c.log_root),
                "--node-netns",
                c.node_ns,
                "--cni-conf-dir",
                str(c.cni_conf),
                "--cni-bin-dir",
                "/usr/lib/cni",
            ],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        c.client.close()
        api.stop()


def test_node_registration_and_lease(cluster: Cluster) -> None:
    node = cluster.client.get(NODES, NODE)
    st = node["status"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert st["capacity"]["pods"] == "110" and int(st["capacity"]["cpu"]) >= 1
    assert st["nodeInfo"]["containerRuntimeVersion"].startswith("runc://1.")
    conds = wait_for(
        lambda: (
            {c["type"]: c["status"] for c in cluster.client.get(NODES, NODE)["status"]["conditions"]}
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in cluster.client.get(NODES, NODE)["status"]["conditions"]
            )
            else None
        ),
        10,
    )
    assert conds["Ready"] == "True" and conds["NetworkUnavailable"] == "False" and conds["MemoryPressure"] == "False"
    lease = cluster.client.get(LEASES, NODE, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == NODE
    first = lease["spec"]["renewTime"]
    wait_for(lambda: cluster.client.get(LEASES, NODE, "kube-node-lease")["spec"]["renewTime"] != first, 10)


@pytest.mark.parametrize("cluster", ["reference", "kubelab"], indirect=True)
def test_pod_localhost_reachability_logs_exec_and_graceful_delete(cluster: Cluster) -> None:
    cluster.create(
        "duo",
        [
            {
                "name": "web",
                "image": cluster.image("hello"),
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                ],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            },
            {
                "name": "client",
                "image": cluster.image("busybox"),
                "command": ["sh", "-c", "until wget -qO- http://localhost:8080/; do sleep 0.2; done; sleep 3600"],
            },
        ],
    )
    pod = cluster.wait_pod("duo", running_ready)
    ip = pod["status"]["podIP"]
    assert ip.startswith("10.244.9.") and pod["status"]["hostIP"] == "127.0.0.1"
    assert all(c["containerID"].startswith("runc://") for c in pod["status"]["containerStatuses"])
    assert sh("wget", "-qO-", f"http://{ip}:8080/", netns=cluster.node_ns).strip() == f"Hello from duo on {NODE}"
    # The netns name says which pod it is.
    assert any(n.startswith(f"{cluster.prefix}default_duo_") for n in sh("ip", "netns", "list").split())
    # Logs and exec through the API server with the real kubectl.
    out = wait_for(lambda: (r := cluster.kubectl("logs", "duo", "-c", "client")).stdout.strip() and r.stdout, 15)
    assert f"Hello from duo on {NODE}" in out
    res = cluster.kubectl("exec", "duo", "-c", "client", "--", "sh", "-c", "echo in-$(hostname); exit 3", check=False)
    assert res.stdout.strip() == "in-duo" and res.returncode == 3
    piped = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "exec", "-i", "duo", "-c", "client", "--", "cat"],
        input="some input\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert piped.returncode == 0 and piped.stdout == "some input\n"
    reasons = {e["reason"] for e in cluster.events("duo")}
    assert {"Pulling", "Pulled", "Created", "Started"} <= reasons
    # Graceful deletion: the object goes only after the pod's containers and network are gone.
    cluster.client.delete(PODS, "duo", "default")
    wait_for(lambda: _gone(cluster, "duo"), 30, message="pod object deleted")
    assert not any(n.startswith(cluster.prefix) for n in sh("ip", "netns", "list").split())
    assert "veth" not in sh("ip", "-br", "link", netns=cluster.node_ns)


def _gone(cluster: Cluster, name: str) -> bool:
    try:
        cluster.pod(name)
    except errors.NotFound:
        return True
    return False


def test_restart_policies_backoff_and_probes(cluster: Cluster) -> None:
    bb = cluster.image("busybox")
    cluster.create("crash", [{"name": "c", "image": bb, "command": ["sh", "-c", "echo boom; exit 2"]}])
    cluster.create(
        "once",
        [{"name": "c", "image": bb, "command": ["sh", "-c", "exit 1"]}],
        restartPolicy="OnFailure",
        initContainers=[{"name": "init", "image": bb, "command": ["true"]}],
    )
    cluster.create("done", [{"name": "c", "image": bb, "command": ["true"]}], restartPolicy="Never")
    cluster.create(
        "live",
        [
            {
                "name": "c",
                "image": bb,
                "command": ["sleep", "3600"],
                "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
                "startupProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 100},
            }
        ],
    )
    cluster.create(
        "sick",
        [
            {
                "name": "c",
                "image": bb,
                "command": ["sleep", "3600"],
                "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
            }
        ],
        terminationGracePeriodSeconds=0,
    )
    p = cluster.wait_pod(
        "crash",
        lambda p: (
            (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 2
            and "waiting" in p["status"]["containerStatuses"][0]["state"]
        ),
    )
    cs = p["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["lastState"]["terminated"]["reason"] == "Error"
    assert "BackOff" in {e["reason"] for e in cluster.events("crash")}
    cluster.wait_pod("once", lambda p: (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1)
    p = cluster.wait_pod("done", lambda p: p["status"].get("phase") == "Succeeded")
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    # A failing exec liveness probe gets the container killed and restarted, with an event.
    cluster.wait_pod("sick", lambda p: (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1)
    assert any(e["reason"] == "Unhealthy" and "Liveness" in e["message"] for e in cluster.events("sick"))
    # The startup probe (nothing listens on :9) holds liveness off: not started, never killed.
    p = cluster.wait_pod("live", lambda p: p["status"].get("phase") == "Running")
    assert p["status"]["containerStatuses"][0]["started"] is False
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0


def test_bad_image_bad_command_and_static_pods(cluster: Cluster) -> None:
    (cluster.manifests / "good.yaml").write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: static\nspec:\n  containers:\n"
        f"  - name: c\n    image: {cluster.image('busybox')}\n    command: [sleep, '3600']\n"
    )
    (cluster.manifests / "bad.yaml").write_text("kind: Pod\nmetadata: {}\nspec: [not, a, spec\n")
    cluster.create("noimage", [{"name": "c", "image": cluster.image("missing")}])
    cluster.create(
        "nocmd", [{"name": "c", "image": cluster.image("busybox"), "command": ["/no/such"]}], restartPolicy="Never"
    )
    p = cluster.wait_pod(
        "noimage",
        lambda p: (
            (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason")
            == "ImagePullBackOff"
        ),
    )
    assert "manifest unknown" in p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    p = cluster.wait_pod("nocmd", lambda p: p["status"].get("phase") == "Failed")
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError" and "/no/such" in term["message"]
    mirror = cluster.wait_pod(f"static-{NODE}", running_ready)
    assert mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    assert "bad.yaml is invalid, skipped" in (cluster.tmp / "noded.log").read_text()
    # The static pod runs from its file: deleting the mirror only brings the mirror back.
    cid = mirror["status"]["containerStatuses"][0]["containerID"]
    cluster.client.delete(PODS, f"static-{NODE}", "default")
    back = cluster.wait_pod(
        f"static-{NODE}", lambda p: p["metadata"]["uid"] != mirror["metadata"]["uid"] and running_ready(p)
    )
    assert back["status"]["containerStatuses"][0]["containerID"] == cid
    # Removing the manifest removes the static pod and its mirror.
    (cluster.manifests / "good.yaml").unlink()
    wait_for(lambda: _gone(cluster, f"static-{NODE}"), 20, message="mirror pod removed")
    wait_for(
        lambda: not any(n.startswith(f"{cluster.prefix}default_static") for n in sh("ip", "netns", "list").split()),
        20,
        message="static pod's netns removed",
    )


def test_noded_sigkill_restart_disturbs_nothing(cluster: Cluster) -> None:
    import threading

    cluster.create(
        "steady",
        [
            {
                "name": "c",
                "image": cluster.image("hello"),
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            }
        ],
    )
    before = cluster.wait_pod("steady", running_ready)
    sandboxes = sorted(os.listdir(cluster.root / "runc"))
    seen: list[dict[str, Any]] = []
    stream = cluster.client.watch(
        PODS, "default", resource_version=before["metadata"]["resourceVersion"], field_selector="metadata.name=steady"
    )
    t = threading.Thread(target=lambda: seen.extend(ev.object for ev in stream), daemon=True)
    t.start()
    cluster.stop_noded(signal.SIGKILL)
    cluster.start_noded()
    # Once a new pod runs, the restarted noded has synced (and probed) the old one too.
    cluster.create("after", [{"name": "c", "image": cluster.image("busybox"), "command": ["sleep", "3600"]}])
    cluster.wait_pod("after", running_ready)
    stream.close()
    t.join(5)
    now = cluster.pod("steady")["status"]["containerStatuses"][0]
    cs0 = before["status"]["containerStatuses"][0]
    assert now["state"]["running"]["startedAt"] == cs0["state"]["running"]["startedAt"]
    assert now["restartCount"] == 0 and now["containerID"] == cs0["containerID"] and now["ready"]
    # Readiness never flapped across the restart (no endpoint churn).
    assert all(running_ready(p) for p in seen), [p["status"]["conditions"] for p in seen]
    assert set(sandboxes) <= set(os.listdir(cluster.root / "runc"))
    assert len(os.listdir(cluster.root / "runc")) == len(sandboxes) + 2  # only "after"'s sandbox + container


def test_host_reboot_recreates_pods(cluster: Cluster) -> None:
    cluster.create("phoenix", [{"name": "c", "image": cluster.image("busybox"), "command": ["sleep", "3600"]}])
    before = cluster.wait_pod("phoenix", running_ready)["status"]
    cluster.stop_noded(signal.SIGKILL)
    # "Reboot": every container process dies, mounts and pod network namespaces vanish; noded's
    # files on disk (runc state, records, CNI cache) stay, as they would on a real disk.
    runc = ["runc", "--root", str(cluster.root / "runc")]
    for c in json.loads(sh(*runc, "list", "--format", "json") or "null") or []:
        sh(*runc, "kill", c["id"], "KILL", check=False)
    wait_for(
        lambda: all(
            c["status"] == "stopped" for c in json.loads(sh(*runc, "list", "--format", "json") or "null") or []
        ),
        10,
    )
    for line in sh("mount").splitlines():
        if str(cluster.root) in line and " type overlay " in line:
            sh("umount", line.split(" on ", 1)[1].split(" type ", 1)[0])
    for n in sh("ip", "netns", "list").split():
        if n.startswith(cluster.prefix):
            sh("ip", "netns", "del", n)
    cluster.start_noded()
    after = cluster.wait_pod(
        "phoenix", lambda p: running_ready(p) and p["status"]["containerStatuses"][0]["restartCount"] >= 1
    )["status"]
    assert after["containerStatuses"][0]["containerID"] != before["containerStatuses"][0]["containerID"]
    assert after["podIP"].startswith("10.244.9.")
    # The new sandbox's network works: the node reaches the pod.
    assert "1 packets received" in sh("busybox", "ping", "-c", "1", "-W", "2", after["podIP"], netns=cluster.node_ns)


def test_kubelet_api_needs_cluster_client_cert_and_serves_logs(cluster: Cluster) -> None:
    import ssl

    import httpx

    cluster.create(
        "talker",
        [
            {
                "name": "c",
                "image": cluster.image("busybox"),
                "command": ["sh", "-c", "echo line1; echo line2; echo line3; exit 1"],
            }
        ],
    )
    cluster.wait_pod("talker", lambda p: (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1)
    pki = cluster.api.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key"))
    base = f"https://127.0.0.1:{cluster.kubelet_port}"
    with httpx.Client(base_url=base, verify=ctx, timeout=10) as http:
        assert http.get("/healthz").text == "ok"
        assert "talker" in {p["metadata"]["name"] for p in http.get("/pods").json()["items"]}
        assert "kubelet_running_pods" in http.get("/metrics").text
        logs = wait_for(
            lambda: (r := http.get("/containerLogs/default/talker/c", params={"tailLines": "2"})).text and r.text, 10
        )
        assert logs == "line2\nline3\n"
        stamped = http.get("/containerLogs/default/talker/c", params={"timestamps": "true"}).text.splitlines()
        assert [ln.split(" ", 1)[1] for ln in stamped] == ["line1", "line2", "line3"]
        assert stamped[0][:4].isdigit() and stamped[0].split(" ", 1)[0].endswith("Z")
        assert http.get("/containerLogs/default/talker/c", params={"sinceTime": "2999-01-01T00:00:00Z"}).text == ""
        assert http.get("/containerLogs/default/talker/c", params={"sinceSeconds": "3600"}).text.count("line") == 3
        prev = http.get("/containerLogs/default/talker/c", params={"previous": "true"})
        assert prev.status_code == 200 and prev.text == "line1\nline2\nline3\n"
        missing = http.get("/containerLogs/default/talker/nope")
        assert missing.status_code == 404 and missing.json()["reason"] == "NotFound"
    anon = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    anon.check_hostname = False
    with pytest.raises(httpx.HTTPError), httpx.Client(base_url=base, verify=anon, timeout=5) as http:
        http.get("/healthz")


def test_kubelet_exec_v4_and_attach(cluster: Cluster) -> None:
    import ssl

    from websockets.sync.client import connect

    cluster.create(
        "chatty",
        [
            {
                "name": "c",
                "image": cluster.image("busybox"),
                "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
            }
        ],
    )
    cluster.wait_pod("chatty", running_ready)
    pki = cluster.api.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key"))
    base = f"wss://127.0.0.1:{cluster.kubelet_port}"
    q = "command=sh&command=-c&command=echo%20hi%3B%20echo%20oops%20%3E%262%3B%20exit%202&stdout=true&stderr=true"
    with connect(f"{base}/exec/default/chatty/c?{q}", ssl=ctx, subprotocols=["v4.channel.k8s.io"]) as ws:
        assert ws.subprotocol == "v4.channel.k8s.io"
        frames = []
        with contextlib.suppress(Exception):
            while True:
                frames.append(ws.recv(timeout=10))
    out = b"".join(f[1:] for f in frames if f[0] == 1)
    err = b"".join(f[1:] for f in frames if f[0] == 2)
    status = json.loads(next(f[1:] for f in frames if f[0] == 3))
    assert (out, err) == (b"hi\n", b"oops\n")
    assert status["status"] == "Failure" and status["details"]["causes"][0]["message"] == "2"
    with connect(f"{base}/attach/default/chatty/c?stdout=true", ssl=ctx, subprotocols=["v5.channel.k8s.io"]) as ws:
        first = ws.recv(timeout=10)
        assert first[0] == 1 and b"tick" in first


def test_cleanup_removes_everything_of_its_own_and_nothing_else(cluster: Cluster, netns: NetnsFactory) -> None:
    decoy = netns("decoy")  # not noded's: must survive
    cluster.create("a", [{"name": "c", "image": cluster.image("busybox"), "command": ["sleep", "3600"]}])
    cluster.create("b", [{"name": "c", "image": cluster.image("hello")}])
    cluster.wait_pod("a", running_ready)
    cluster.wait_pod("b", running_ready)
    cluster.stop_noded(signal.SIGKILL)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "noded",
            "cleanup",
            "--root-dir",
            str(cluster.root),
            "--log-root",
            str(cluster.log_root),
            "--node-netns",
            cluster.node_ns,
            "--cni-conf-dir",
            str(cluster.cni_conf),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert not cluster.root.exists()
    netns_now = sh("ip", "netns", "list")
    assert not any(n.startswith(cluster.prefix) for n in netns_now.split()) and decoy in netns_now
    assert str(cluster.root) not in sh("mount")
    assert str(cluster.root) not in sh("ps", "-eo", "args")
    assert "veth" not in sh("ip", "-br", "link", netns=cluster.node_ns)
    assert not any(cluster.log_root.iterdir()) if cluster.log_root.exists() else True


def test_graceful_deletion_runs_prestop_then_sigterm(cluster: Cluster, tmp_path: Path) -> None:
    import time

    out = tmp_path / "out"
    cluster.create(
        "polite",
        [
            {
                "name": "c",
                "image": cluster.image("busybox"),
                "command": ["sh", "-c", "trap 'echo term >> /out/log; exit 0' TERM; while true; do sleep 0.1; done"],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/log"]}}},
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }
        ],
        volumes=[{"name": "out", "hostPath": {"path": str(out), "type": "DirectoryOrCreate"}}],
        terminationGracePeriodSeconds=20,
    )
    cluster.wait_pod("polite", running_ready)
    t0 = time.monotonic()
    cluster.client.delete(PODS, "polite", "default")
    wait_for(lambda: _gone(cluster, "polite"), 20, message="pod object deleted")
    # preStop ran first, then SIGTERM; the container exited on it, well inside the 20 s grace.
    assert (out / "log").read_text().split() == ["prestop", "term"]
    assert time.monotonic() - t0 < 10
