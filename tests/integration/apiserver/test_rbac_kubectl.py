"""Acceptance: real kubectl (1.33 and 1.27) with RBAC, and the Python client's RBAC e2e test.

``kubectl auth can-i`` (also ``--list`` and ``--as``), ``kubectl auth whoami``, ``kubectl create
role/rolebinding/clusterrole/clusterrolebinding``, ``kubectl describe rolebinding``, ``kubectl get``
tables; and ``kubernetes.utils.create_from_yaml`` creating a Role as the client's own
``test_create_rbac_role_from_yaml`` does. Each test removes what it made.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apiserver import RunningApiServer
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for

KUBECTLS = ("1.33", "1.27")


class Kubectl:
    def __init__(self, binary: str, server: RunningApiServer, cache: Path) -> None:
        self.base = [binary, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(cache)]

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=60, input=input)
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)} failed: {r.stderr}"
        return r


@pytest.fixture(params=list(KUBECTLS))
def kubectl(request: pytest.FixtureRequest, server: RunningApiServer, tmp_path: Path) -> Kubectl:
    binary = kubectl_binary(request.param)
    return Kubectl(binary, server, tmp_path / "cache")


@pytest.fixture
def namespace(server: RunningApiServer) -> Iterator[str]:
    ns = f"rbac-{uuid.uuid4().hex[:6]}"
    with server.http() as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        try:
            yield ns
        finally:
            c.delete(f"/api/v1/namespaces/{ns}")


def test_can_i_list_and_as(kubectl: Kubectl, namespace: str) -> None:
    assert kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    listed = kubectl("auth", "can-i", "--list", "-n", namespace).stdout
    assert "*.*" in listed and "[*]" in listed
    r = kubectl("auth", "can-i", "list", "pods", "-n", namespace, "--as", "alice", ok=False)
    assert r.returncode == 1 and r.stdout.strip() == "no"
    kubectl("create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice", "-n", namespace)

    def alice_may() -> bool:
        r = kubectl("auth", "can-i", "list", "pods", "-n", namespace, "--as", "alice", ok=False)
        return r.stdout.strip() == "yes"

    wait_for(alice_may, 10)
    r = kubectl("auth", "can-i", "get", "secrets", "-n", namespace, "--as", "alice", ok=False)
    assert r.stdout.strip() == "no"
    r = kubectl("get", "pods", "-n", namespace, "--as", "bob", ok=False)
    assert r.returncode != 0
    assert (
        f'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "{namespace}"'
        in r.stderr
    )
    listed = kubectl("auth", "can-i", "--list", "-n", namespace, "--as", "alice").stdout
    assert "pods " in listed and "selfsubjectaccessreviews.authorization.k8s.io" in listed


def test_create_and_describe_rbac_objects(kubectl: Kubectl, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    cr, crb = f"node-reader-{suffix}", f"read-nodes-{suffix}"
    try:
        kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace)
        kubectl(
            "create", "rolebinding", "read-pods", "--role=pod-reader", "--user=alice", "--group=team", "-n", namespace
        )
        kubectl("create", "clusterrole", cr, "--verb=get", "--resource=nodes")
        kubectl("create", "clusterrolebinding", crb, f"--clusterrole={cr}", "--user=bob")
        out = kubectl("get", "rolebinding", "read-pods", "-n", namespace, "-o", "wide").stdout
        assert out.split("\n")[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        assert "Role/pod-reader" in out and "alice" in out and "team" in out
        out = kubectl("get", "clusterrole", cr).stdout
        assert out.split("\n")[0].split() == ["NAME", "CREATED", "AT"]
        desc = kubectl("describe", "rolebinding", "read-pods", "-n", namespace).stdout
        assert "Role:" in desc and "pod-reader" in desc
        assert "User   alice" in desc and "Group  team" in desc
        desc = kubectl("describe", "clusterrole", cr).stdout
        assert "nodes" in desc and "[get]" in desc
        # a bad verb list is refused by the server with Kubernetes' field path
        bad = '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"bad"},"rules":[{}]}'
        r = kubectl("create", "-n", namespace, "-f", "-", input=bad, ok=False)
        assert r.returncode != 0 and "rules[0].verbs: Required value" in r.stderr
    finally:
        kubectl("delete", "clusterrolebinding", crb, "--ignore-not-found")
        kubectl("delete", "clusterrole", cr, "--ignore-not-found")


def test_whoami(server: RunningApiServer, tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_binary("1.33"), server, tmp_path / "cache")
    out = kubectl("auth", "whoami").stdout
    assert "kubernetes-admin" in out and "system:masters" in out and "system:authenticated" in out
    out = kubectl("auth", "whoami", "--as", "alice", "--as-group", "team").stdout
    assert "alice" in out and "team" in out


ROLE_YAML = """\
kind: Role
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: pod-reader
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "watch", "list"]
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_python_client_create_rbac_role_from_yaml(
    server: RunningApiServer, namespace: str, tmp_path: Path, verbose: bool
) -> None:
    """The client's e2e ``test_create_rbac_role_from_yaml`` (and ``…_with_verbose_enabled``)."""
    from kubernetes import client, config, utils

    path = tmp_path / "rbac-role.yaml"
    path.write_text(ROLE_YAML)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        utils.create_from_yaml(api, str(path), namespace=namespace, verbose=verbose)
        rbac_api = client.RbacAuthorizationV1Api(api)
        role = rbac_api.read_namespaced_role(name="pod-reader", namespace=namespace)
        assert role is not None and role.rules[0].verbs == ["get", "watch", "list"]
        rbac_api.delete_namespaced_role(name="pod-reader", namespace=namespace, body={})


def test_explain_and_bootstrap_roles(server: RunningApiServer, tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_binary("1.33"), server, tmp_path / "cache")
    out = kubectl("explain", "clusterrole.aggregationRule").stdout
    assert "clusterRoleSelectors" in out
    names = kubectl("get", "clusterroles", "-o", "name").stdout.split()
    for role in ("cluster-admin", "admin", "edit", "view", "system:node", "system:kube-scheduler"):
        assert f"clusterrole.rbac.authorization.k8s.io/{role}" in names
    out = kubectl("get", "clusterrolebinding", "cluster-admin", "-o", "wide").stdout
    assert "ClusterRole/cluster-admin" in out and "system:masters" in out
