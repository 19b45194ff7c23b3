"""RBAC in the one-machine lab: a pod's own ServiceAccount token (read from its projected volume)
is refused (403, Kubernetes' wording) for the ``default`` ServiceAccount and allowed once a
RoleBinding grants ``view`` — from inside the pod, as every in-cluster client talks to the API:
busybox's wget to ``https://kubernetes.default.svc`` (cluster DNS → the ``kubernetes`` Service's
VIP → the API server) with the token of its projected volume; and from the host with kubectl and
the same token, for Kubernetes' exact Forbidden message (busybox prints only the status line).

One worker, brought up with the real ``kubelab up`` under ``flock /tmp/kubelab-lab.lock`` and torn
down with ``kubelab down`` by the shared fixture, which also removes the pod and binding made here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.test_lab import KUBECONFIG, kubectl, lab
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


def in_pod() -> subprocess.CompletedProcess[str]:
    """GET the pods of ``default`` from inside the pod, with its own ServiceAccount token."""
    script = (
        f'wget -q -O- --no-check-certificate --header "Authorization: Bearer $(cat {TOKEN})" '
        "https://kubernetes.default.svc/api/v1/namespaces/default/pods"
    )
    return subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, "exec", "rbac-probe", "--", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_pod_token_is_forbidden_until_a_rolebinding_grants_view(lab1: dict[str, str]) -> None:
    kubectl("apply", "-f", "-", input_text=POD)
    try:
        kubectl("wait", "--for=condition=Ready", "pod/rbac-probe", "--timeout=90s")
        token = kubectl("exec", "rbac-probe", "--", "cat", TOKEN)
        r = in_pod()
        assert r.returncode != 0 and "403 Forbidden" in r.stderr, (r.returncode, r.stdout, r.stderr)
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
        # and from inside the pod, through DNS and the Service VIP, TLS by busybox's own client
        r = in_pod()
        assert r.returncode == 0, r.stderr
        assert '"name":"rbac-probe"' in r.stdout.replace(" ", "")
        kubectl("delete", "rolebinding", "probe-view")

        def refused() -> subprocess.CompletedProcess[str] | None:
            r = in_pod()
            return r if r.returncode != 0 else None

        r = wait_for(refused, 20, interval=0.5, message="the binding's removal takes effect")
        assert "403 Forbidden" in r.stderr, r.stderr
    finally:
        kubectl("delete", "rolebinding", "probe-view", "--ignore-not-found")
        kubectl("delete", "pod", "rbac-probe", "--grace-period=1", "--ignore-not-found")
