"""RBAC in the one-machine lab: a pod's own ServiceAccount token (read from its projected volume)
is refused (403, Kubernetes' wording) for the ``default`` ServiceAccount and allowed once a
RoleBinding grants ``view``. The token is sent from the host with kubectl: TLS from inside a
busybox container to the API server still fails in this lab ("got bad TLS record"; issue 16's
runtime item), which is not an authorization matter.

One worker, brought up with the real ``kubelab up`` under ``flock /tmp/kubelab-lab.lock`` and torn
down with ``kubelab down`` by the shared fixture, which also removes the pod and binding made here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.test_lab import kubectl, lab
from tests.helpers.wait import wait_for

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: rbac-probe}
spec:
  containers:
  - name: main
    image: 192.168.56.1:5000/library/busybox:latest
    command: ["sleep", "3600"]
"""
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.fixture(scope="module")
def lab1() -> Iterator[dict[str, str]]:
    yield from lab("--workers", "1")


def as_pod(token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "kubectl", "--kubeconfig", "/dev/null", "--server", "https://192.168.56.10:6443",
            "--certificate-authority", "/var/lib/kubelab/pki/ca.crt", "--token", token,
            "get", "pods", "-n", "default", "-o", "name",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_pod_token_is_forbidden_until_a_rolebinding_grants_view(lab1: dict[str, str]) -> None:
    kubectl("apply", "-f", "-", input_text=POD)
    try:
        kubectl("wait", "--for=condition=Ready", "pod/rbac-probe", "--timeout=90s")
        token = kubectl("exec", "rbac-probe", "--", "cat", TOKEN)
        r = as_pod(token)
        assert r.returncode != 0
        assert (
            'pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" '
            'in API group "" in the namespace "default"'
        ) in r.stderr
        kubectl("create", "rolebinding", "probe-view", "--clusterrole=view", "--serviceaccount=default:default")

        def allowed() -> str | None:
            r = as_pod(token)
            return r.stdout if r.returncode == 0 else None

        out = wait_for(allowed, 20, interval=0.5, message="the default ServiceAccount may list pods")
        assert "pod/rbac-probe" in out.split()
    finally:
        kubectl("delete", "rolebinding", "probe-view", "--ignore-not-found")
        kubectl("delete", "pod", "rbac-probe", "--grace-period=1", "--ignore-not-found")
