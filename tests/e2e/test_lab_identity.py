"""Identities in the one-machine lab: components run with their own credentials, a pod gets its
ServiceAccount volume (AtomicWriter layout, a token bound to it, the cluster CA, its namespace),
and a ``kubelab user add`` user reaches the API with its own kubeconfig.

One worker, brought up with the real ``kubelab up`` (as root, under ``flock /tmp/kubelab-lab.lock``
like every lab test) and torn down with ``kubelab down`` (the shared fixture checks the machine is
left as it was).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_lab import KUBECONFIG, kubectl, kubelab, lab

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: whoami}
spec:
  containers:
  - name: main
    image: 192.168.56.1:5000/library/busybox:latest
    command: ["sleep", "3600"]
"""


@pytest.fixture(scope="module")
def lab1() -> Iterator[dict[str, str]]:
    yield from lab("--workers", "1")


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return result


def test_no_component_runs_with_the_admin_credentials(lab1: dict[str, str]) -> None:
    plan = json.loads(Path("/run/kubelab/lab/lab.json").read_text())
    kubeconfigs = {
        c["name"]: c["argv"][c["argv"].index("--kubeconfig") + 1]
        for c in plan["components"]
        if "--kubeconfig" in c["argv"]
    }
    assert set(kubeconfigs) == {"dns", "noded", "proxy", "netagent", "dashboard"}
    assert KUBECONFIG not in kubeconfigs.values()
    assert len(set(kubeconfigs.values())) == 5
    # the control plane and the metrics server find their own kubeconfigs in their data dir
    for c in plan["components"]:
        assert KUBECONFIG not in c["argv"], c["name"]


def test_pod_gets_its_service_account_volume(lab1: dict[str, str]) -> None:
    kubectl("apply", "-f", "-", input_text=POD)
    try:
        kubectl("wait", "--for=condition=Ready", "pod/whoami", "--timeout=90s")
        pod = json.loads(kubectl("get", "pod", "whoami", "-o", "json"))
        assert pod["spec"]["serviceAccountName"] == "default"
        assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"])
        assert kubectl("exec", "whoami", "--", "cat", f"{MOUNT}/namespace") == "default"
        listing = kubectl("exec", "whoami", "--", "ls", "-a", MOUNT).split()
        assert {"..data", "token", "ca.crt", "namespace"} <= set(listing)
        assert any(n.startswith("..20") for n in listing)  # the timestamped payload ..data points at
        ca = kubectl("exec", "whoami", "--", "cat", f"{MOUNT}/ca.crt")
        assert ca == Path("/var/lib/kubelab/pki/ca.crt").read_text()
        token = kubectl("exec", "whoami", "--", "cat", f"{MOUNT}/token")
        c = claims_of(token)
        assert c["sub"] == "system:serviceaccount:default:default"
        assert c["kubernetes.io"]["pod"] == {"name": "whoami", "uid": pod["metadata"]["uid"]}
        assert c["kubernetes.io"]["node"]["name"] == pod["spec"]["nodeName"]
        assert c["exp"] - c["iat"] == 3607
        # the token alone authenticates (no client certificate: discovery is open to every user)
        token_only = [
            "kubectl", "--kubeconfig", "/dev/null", "--server", "https://192.168.56.10:6443",
            "--certificate-authority", "/var/lib/kubelab/pki/ca.crt", "get", "--raw", "/api",
        ]  # fmt: skip
        r = subprocess.run([*token_only, "--token", token], capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([*token_only, "--token", token[:-4] + "AAAA"], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "Unauthorized" in r.stderr
    finally:
        kubectl("delete", "pod", "whoami", "--grace-period=1", "--ignore-not-found")


def test_user_add_gives_a_working_kubeconfig(lab1: dict[str, str]) -> None:
    res = kubelab("user", "add", "alice", "--group", "learners")
    assert res.returncode == 0, res.stderr
    path = res.stdout.strip()
    assert path == "/var/lib/kubelab/users/alice.kubeconfig"
    r = subprocess.run(
        ["kubectl", "--kubeconfig", path, "get", "--raw", "/api"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    listed = kubelab("user", "list").stdout
    assert "alice" in listed and "learners" in listed
    r = subprocess.run(["kubectl", "--kubeconfig", path, "get", "pods"], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        pytest.skip("the API server's authorizer allows every authenticated user (no RBAC yet)")
    assert 'pods is forbidden: User "alice" cannot list resource "pods"' in r.stderr
