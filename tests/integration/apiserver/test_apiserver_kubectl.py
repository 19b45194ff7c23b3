"""Acceptance: the real kubectl (1.33) against the real server."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.apiserver import RunningApiServer
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"""


class Kubectl:
    def __init__(self, server: RunningApiServer, cache: Path) -> None:
        self.base = [kubectl_binary("1.33"), "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(cache)]

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*self.base, *args], capture_output=True, text=True, input=input, timeout=60)
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)} failed: {r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def k(server: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(server, tmp_path_factory.mktemp("kcache"))


def test_version_and_api_resources(k: Kubectl) -> None:
    out = k("version").stdout
    assert "Client Version: v1.33" in out and "Server Version: v1.33" in out
    res = k("api-resources").stdout
    lines = {line.split()[0]: line for line in res.splitlines()[1:]}
    assert "deploy" in lines["deployments"] and "apps/v1" in lines["deployments"]
    assert "po" in lines["pods"].split() and "true" in lines["pods"].split()
    assert "false" in lines["nodes"].split()


def test_explain(k: Kubectl) -> None:
    out = k("explain", "pods").stdout
    assert "KIND:" in out and "Pod" in out and "spec" in out
    out = k("explain", "deployments.spec.replicas").stdout
    assert "replicas" in out and "integer" in out


def test_apply_with_a_typo_is_refused_by_the_server(k: Kubectl, tmp_path: Path) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndatta:\n  a: b\n")
    r = k("apply", "-f", str(f), ok=False)
    assert r.returncode != 0 and 'unknown field "datta"' in r.stderr
    assert k("get", "cm", "typo", ok=False).returncode != 0


def test_apply_reapply_get_describe_scale_label_patch_delete(k: Kubectl, tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(MANIFEST)
    out = k("apply", "-f", str(f)).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    f.write_text(MANIFEST.replace("replicas: 2", "replicas: 3").replace("nginx:1.25", "nginx:1.26"))
    out = k("apply", "-f", str(f)).stdout
    assert "deployment.apps/web configured" in out and "service/web unchanged" in out
    assert "deployment.apps/web unchanged" in k("apply", "-f", str(f)).stdout
    d = k.json("get", "deploy", "web")
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert d["metadata"]["generation"] == 2

    table = k("get", "deploy", "web").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[0] == "web"
    wide = k("get", "deploy", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    svc = k("get", "svc", "web").stdout.splitlines()
    assert svc[0].split()[:4] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP"]
    assert "NodePort" in svc[1] and "80:3" in svc[1]
    y = yaml.safe_load(k("get", "svc", "web", "-o", "yaml").stdout)
    assert y["spec"]["clusterIP"].startswith("10.") and y["spec"]["ports"][0]["protocol"] == "TCP"
    all_out = k("get", "all").stdout
    assert "deployment.apps/web" in all_out and "service/web" in all_out

    desc = k("describe", "deploy", "web").stdout
    assert "Replicas:" in desc and "nginx:1.26" in desc and "Port:          80/TCP" in desc

    assert "scaled" in k("scale", "deploy", "web", "--replicas=5").stdout
    assert k.json("get", "deploy", "web")["spec"]["replicas"] == 5
    assert "labeled" in k("label", "deploy", "web", "tier=fe").stdout
    assert k.json("get", "deploy", "web")["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert "patched" in k("patch", "deploy", "web", "-p", '{"spec":{"replicas":1}}').stdout
    k("patch", "deploy", "web", "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":4}]')
    k("set", "image", "deploy/web", "nginx=nginx:1.27")
    d = k.json("get", "deploy", "web")
    assert d["spec"]["replicas"] == 4 and d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    # The fields kubectl patch/set image changed are theirs now (server-side apply): Kubernetes refuses.
    r = k("apply", "--server-side", "-f", str(f), ok=False)
    assert r.returncode == 1 and r.stderr.startswith(
        'error: Apply failed with 2 conflicts: conflicts with "kubectl-patch" using apps/v1:\n- .spec.replicas\n'
        'conflicts with "kubectl-set" using apps/v1:\n- .spec.template.spec.containers[name="nginx"].image\n'
    ), r.stderr
    assert "serverside-applied" in k("apply", "--server-side", "--force-conflicts", "-f", str(f)).stdout

    out = k("delete", "-f", str(f)).stdout
    assert 'deployment.apps "web" deleted' in out and 'service "web" deleted' in out
    r = k("get", "deploy", "web", ok=False)
    assert r.returncode != 0 and 'deployments.apps "web" not found' in r.stderr


def test_create_generators_send_protobuf(k: Kubectl) -> None:
    # kubectl's typed clients POST application/vnd.kubernetes.protobuf for these
    k("create", "namespace", "pb-ns")
    k("create", "deployment", "pb-dep", "--image=nginx", "--port=80", "--replicas=2", "-n", "pb-ns")
    k("create", "configmap", "pb-cm", "--from-literal=a=b", "-n", "pb-ns")
    k("create", "secret", "generic", "pb-sec", "--from-literal=x=y", "-n", "pb-ns")
    k("create", "service", "nodeport", "pb-svc", "--tcp=80:8080", "-n", "pb-ns")
    d = k.json("get", "deploy", "pb-dep", "-n", "pb-ns")
    assert (
        d["spec"]["replicas"] == 2 and d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    )
    assert k.json("get", "cm", "pb-cm", "-n", "pb-ns")["data"] == {"a": "b"}
    assert k.json("get", "secret", "pb-sec", "-n", "pb-ns")["data"] == {"x": "eQ=="}
    k("create", "configmap", "pb-cm2", "-n", "pb-ns")
    k("create", "configmap", "pb-cm3", "-n", "pb-ns")
    rows = k("get", "configmaps", "-n", "pb-ns", "--chunk-size=1").stdout.splitlines()  # paged with limit/continue
    assert [r.split()[0] for r in rows] == ["NAME", "pb-cm", "pb-cm2", "pb-cm3"]
    svc = k.json("get", "svc", "pb-svc", "-n", "pb-ns")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["targetPort"] == 8080


def test_get_watch_streams_changes(k: Kubectl) -> None:
    k("create", "configmap", "watched-0")
    proc = subprocess.Popen([*k.base, "get", "configmaps", "-w"], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        wait_for(lambda: any(line.startswith("watched-0") for line in lines), timeout=20, message="initial list")
        k("create", "configmap", "watched-1")
        wait_for(lambda: any(line.startswith("watched-1") for line in lines), timeout=20, message="watch event")
        assert lines[0].split()[:2] == ["NAME", "DATA"]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_get_pod_wide_and_describe(k: Kubectl, server: RunningApiServer) -> None:
    k("run", "solo2", "--image=busybox", "--labels=app=solo2")
    with server.http() as c:
        p = c.get("/api/v1/namespaces/default/pods/solo2").json()
        p["status"] = {"phase": "Running", "podIP": "10.244.1.7", "hostIP": "192.168.56.11"}
        c.put("/api/v1/namespaces/default/pods/solo2/status", json=p)
    head, row = k("get", "pods", "solo2", "-o", "wide").stdout.splitlines()[:2]
    assert head.split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert row.split()[2] == "Running" and "10.244.1.7" in row
    shown = k("get", "pods", "-A", "--show-labels").stdout
    assert "default" in shown and "app=solo2" in shown
    desc = k("describe", "pod", "solo2").stdout
    assert "Status:           Running" in desc and "10.244.1.7" in desc
    k("delete", "pod", "solo2")


def test_get_events(k: Kubectl, server: RunningApiServer) -> None:
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Scheduled",
        "message": "Successfully assigned default/web to kl-node1",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "default-scheduler"},
    }
    with server.http() as c:
        assert c.post("/api/v1/namespaces/default/events", json=ev).status_code == 201
    out = k("get", "events").stdout
    assert "Scheduled" in out and "pod/web" in out and "Successfully assigned" in out


def test_errors_are_printed_like_kubernetes(k: Kubectl, tmp_path: Path) -> None:
    r = k("get", "pod", "nope", ok=False)
    assert 'Error from server (NotFound): pods "nope" not found' in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec: {}\n")
    r = k("create", "-f", str(bad), "--validate=false", ok=False)
    assert 'The Pod "bad" is invalid' in r.stderr and "spec.containers" in r.stderr
    k("create", "configmap", "dup")
    r = k("create", "configmap", "dup", ok=False)
    assert 'configmaps "dup" already exists' in r.stderr  # (kubectl create sends protobuf for this one)
    dup = tmp_path / "dup.yaml"
    dup.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n")
    r = k("create", "-f", str(dup), ok=False)
    assert 'Error from server (AlreadyExists): error when creating "' in r.stderr
    assert 'configmaps "dup" already exists' in r.stderr
