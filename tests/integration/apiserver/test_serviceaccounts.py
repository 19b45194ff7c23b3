"""ServiceAccounts end to end against a real ``kubelab controlplane`` (API server + controllers):
the default ServiceAccount and kube-root-ca.crt in every namespace, ServiceAccount admission,
TokenRequest (raw and through real kubectl 1.33 ``create token``), token authentication and its
end when the bound pod goes, issuer discovery, and a ``kubelab user add`` user."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import REPO, RunningApiServer, start_apiserver
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path_factory.mktemp("sa"), controlplane=True)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def http(cp: RunningApiServer) -> Iterator[httpx.Client]:
    with cp.http() as c:
        yield c


@pytest.fixture
def namespace(http: httpx.Client) -> Iterator[str]:
    ns = f"sa-{uuid.uuid4().hex[:8]}"
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
    try:
        yield ns
    finally:
        http.delete(f"/api/v1/namespaces/{ns}")


def bearer(cp: RunningApiServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=cp.url, verify=str(cp.ca_file), headers={"Authorization": f"Bearer {token}"})


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return result


POD = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_new_namespace_gets_default_sa_and_root_ca_and_pods_are_admitted(
    cp: RunningApiServer, http: httpx.Client, namespace: str
) -> None:
    # created right after its namespace: admission waits briefly for the default ServiceAccount
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json={**POD, "metadata": {"name": "early"}})
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    [vol] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert spec["containers"][0]["volumeMounts"] == [{"name": vol["name"], "readOnly": True, "mountPath": MOUNT}]
    cm = wait_for(
        lambda: (
            http.get(f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt").status_code == 200
            and http.get(f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt").json()
        ),
        timeout=10,
        message="kube-root-ca.crt",
    )
    assert cm["data"]["ca.crt"] == cp.ca_file.read_text()


def test_missing_service_account_is_forbidden(http: httpx.Client, namespace: str) -> None:
    body = {**POD, "metadata": {"name": "lost"}, "spec": {**POD["spec"], "serviceAccountName": "builder"}}
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json=body)
    assert r.status_code == 403
    st = r.json()
    assert st["reason"] == "Forbidden" and st["details"] == {"name": "lost", "kind": "pods"}
    assert st["message"] == (
        f'pods "lost" is forbidden: error looking up service account {namespace}/builder: '
        'serviceaccount "builder" not found'
    )
    assert http.get(f"/api/v1/namespaces/{namespace}/pods/lost").status_code == 404


def test_bound_token_authenticates_until_its_pod_is_gone(
    cp: RunningApiServer, http: httpx.Client, namespace: str
) -> None:
    wait_for(lambda: http.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status_code == 200)
    pod = http.post(f"/api/v1/namespaces/{namespace}/pods", json={**POD, "metadata": {"name": "p"}}).json()
    r = http.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/default/token",
        json={"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}},
    )
    assert r.status_code == 201, r.text
    token = r.json()["status"]["token"]
    c = claims_of(token)
    assert c["sub"] == f"system:serviceaccount:{namespace}:default"
    assert c["kubernetes.io"]["pod"] == {"name": "p", "uid": pod["metadata"]["uid"]}
    with bearer(cp, token) as b:
        assert b.get("/api").status_code == 200  # authenticated (discovery is open to every user)
        assert b.get("/api", headers={"Authorization": f"Bearer {token[:-3]}abc"}).status_code == 401
        http.delete(f"/api/v1/namespaces/{namespace}/pods/p?gracePeriodSeconds=0")
        # refused once the pod is gone (after at most the 10 s authentication cache)
        wait_for(lambda: b.get("/api").status_code == 401, timeout=20, message="the token to be refused")


def test_issuer_discovery_is_public(cp: RunningApiServer, http: httpx.Client, namespace: str) -> None:
    with httpx.Client(base_url=cp.url, verify=str(cp.ca_file)) as anon:
        cfg = anon.get("/.well-known/openid-configuration")
        assert cfg.status_code == 200
        assert cfg.json()["issuer"] == "https://kubernetes.default.svc.cluster.local"
        assert cfg.json()["jwks_uri"].endswith("/openid/v1/jwks")
        jwks = anon.get("/openid/v1/jwks")
        assert jwks.status_code == 200 and jwks.headers["content-type"] == "application/jwk-set+json"
        assert anon.post("/openid/v1/jwks").status_code == 405
    wait_for(lambda: http.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status_code == 200)
    token = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/default/token", json={}).json()["status"][
        "token"
    ]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] in [k["kid"] for k in jwks.json()["keys"]]


def test_kubectl_create_token(cp: RunningApiServer, http: httpx.Client, namespace: str, tmp_path: Path) -> None:
    wait_for(lambda: http.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status_code == 200)
    pod = http.post(f"/api/v1/namespaces/{namespace}/pods", json={**POD, "metadata": {"name": "web"}}).json()
    cache = str(tmp_path / "cache")
    base = [kubectl_binary("1.33"), "--kubeconfig", str(cp.kubeconfig), "--cache-dir", cache, "-n", namespace]
    r = subprocess.run(
        [*base, "create", "token", "default", "--duration", "20m", "--audience", "vault",
         "--bound-object-kind", "Pod", "--bound-object-name", "web"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    c = claims_of(r.stdout.strip())
    assert c["aud"] == ["vault"] and c["exp"] - c["iat"] == 1200
    assert c["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"]
    r = subprocess.run([*base, "create", "token", "nobody"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and 'serviceaccounts "nobody" not found' in r.stderr
    r = subprocess.run(
        [*base, "create", "token", "default", "--duration", "1m"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode != 0 and "may not specify a duration less than 10 minutes" in r.stderr


def _user_kubectl(cp: RunningApiServer, tmp_path: Path, name: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "lab", "user", "add", name, "--group", "learners", "--data-dir", str(cp.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert out.endswith(f"users/{name}.kubeconfig")
    return [kubectl_binary("1.33"), "--kubeconfig", out, "--cache-dir", str(tmp_path / "cache")]


def test_user_from_kubelab_user_add_authenticates(cp: RunningApiServer, tmp_path: Path) -> None:
    kubectl = _user_kubectl(cp, tmp_path, f"alice-{uuid.uuid4().hex[:6]}")
    r = subprocess.run([*kubectl, "get", "--raw", "/api"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "APIVersions"


def test_user_without_bindings_is_forbidden(cp: RunningApiServer, tmp_path: Path) -> None:
    """Meaningful once an authorizer is in place (the rbac branch); skipped under allow-all."""
    name = f"bob-{uuid.uuid4().hex[:6]}"
    kubectl = _user_kubectl(cp, tmp_path, name)
    r = subprocess.run([*kubectl, "get", "pods", "-n", "default"], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        pytest.skip("the API server's authorizer allows every authenticated user (no RBAC yet)")
    assert (
        f'pods is forbidden: User "{name}" cannot list resource "pods" in API group "" in the namespace "default"'
        in (r.stderr)
    )
