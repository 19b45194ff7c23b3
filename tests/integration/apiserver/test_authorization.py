"""The authorization table: who may do what, as Kubernetes (Node,RBAC + NodeRestriction) answers.

Identities (client certificates issued by the cluster CA with ``controlplane.pki``): the admin
(``system:masters``), a fresh user with no bindings, a user with ``view`` in one namespace, a node
(``system:node:tbl-node1`` in ``system:nodes``) and the scheduler (``system:kube-scheduler``).
Requests: list pods, get a Secret used by a pod on *another* node, patch another Node, create a
ClusterRoleBinding to ``cluster-admin``, and impersonate. Writes use ``dryRun=All`` so only
authorization and admission are exercised; everything the test makes is deleted at the end.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane import pki
from tests.helpers.apiserver import RunningApiServer
from tests.helpers.wait import wait_for

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _client(server: RunningApiServer, tmp: Path, cn: str, orgs: tuple[str, ...] = ()) -> httpx.Client:
    ca = pki.CertificateAuthority(server.ca_file.read_bytes(), (server.data_dir / "pki" / "ca.key").read_bytes())
    cert, key = pki.issue_cert(ca, cn, orgs)
    safe = cn.replace(":", "_")
    (tmp / f"{safe}.crt").write_bytes(cert)
    (tmp / f"{safe}.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    ctx.load_cert_chain(str(tmp / f"{safe}.crt"), str(tmp / f"{safe}.key"))
    return httpx.Client(base_url=server.url, verify=ctx, timeout=10.0)


@pytest.fixture(scope="module")
def world(server: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("authz")
    suffix = uuid.uuid4().hex[:6]
    ns, node1, node2 = f"authz-{suffix}", f"tbl-node1-{suffix}", f"tbl-node2-{suffix}"
    fresh, viewer = f"fresh-{suffix}", f"viewer-{suffix}"
    admin = server.http()
    clients = {
        "admin": admin,
        "fresh": _client(server, tmp, fresh),
        "view": _client(server, tmp, viewer),
        "node": _client(server, tmp, f"system:node:{node1}", ("system:nodes",)),
        "node2": _client(server, tmp, f"system:node:{node2}", ("system:nodes",)),
        "scheduler": _client(server, tmp, "system:kube-scheduler"),
    }
    try:
        assert admin.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        for n in (node1, node2):
            assert admin.post("/api/v1/nodes", json={"metadata": {"name": n}}).status_code == 201
        secret = {"metadata": {"name": "db"}, "stringData": {"password": "x"}}
        assert admin.post(f"/api/v1/namespaces/{ns}/secrets", json=secret).status_code == 201
        pod = {
            "metadata": {"name": "web"},
            "spec": {
                "nodeName": node2,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "s", "secret": {"secretName": "db"}}],
            },
        }
        assert admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod).status_code == 201
        rb = {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": viewer}],
        }
        assert admin.post(f"{RBAC}/namespaces/{ns}/rolebindings", json=rb).status_code == 201
        # the graph and the policy index follow the watch cache: wait until both have caught up
        wait_for(lambda: clients["node2"].get(f"/api/v1/namespaces/{ns}/secrets/db").status_code == 200, 10)
        wait_for(lambda: clients["view"].get(f"/api/v1/namespaces/{ns}/pods").status_code == 200, 10)
        yield {"ns": ns, "node1": node1, "node2": node2, "clients": clients, "viewer": viewer}
    finally:
        admin.delete(f"/api/v1/namespaces/{ns}/pods/web", params={"gracePeriodSeconds": "0"})
        admin.delete(f"/api/v1/namespaces/{ns}")
        for n in (node1, node2):
            admin.delete(f"/api/v1/nodes/{n}")
        for c in clients.values():
            c.close()


CRB = {
    "metadata": {"name": "authz-table-escalate"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
    "subjects": [{"kind": "User", "name": "mallory"}],
}

# identity → (list pods, get other node's secret, patch other node, bind cluster-admin, impersonate)
TABLE = {
    "admin": (200, 200, 200, 201, 200),
    "fresh": (403, 403, 403, 403, 403),
    "view": (200, 403, 403, 403, 403),
    "node": (200, 403, 403, 403, 403),
    "scheduler": (200, 403, 403, 403, 403),
}


@pytest.mark.parametrize("who", list(TABLE))
def test_authorization_table(world: dict[str, object], who: str) -> None:
    ns, node2 = world["ns"], world["node2"]
    c = world["clients"][who]  # type: ignore[index]
    dry = {"dryRun": "All"}
    got = (
        c.get(f"/api/v1/namespaces/{ns}/pods").status_code,
        c.get(f"/api/v1/namespaces/{ns}/secrets/db").status_code,
        c.patch(
            f"/api/v1/nodes/{node2}",
            params=dry,
            content=b'{"metadata":{"labels":{"x":"y"}}}',
            headers={"Content-Type": "application/merge-patch+json"},
        ).status_code,
        c.post(f"{RBAC}/clusterrolebindings", params=dry, json=CRB).status_code,
        c.get(
            f"/api/v1/namespaces/{ns}/pods",
            headers={"Impersonate-User": "someone-else", "Impersonate-Group": "system:masters"},
        ).status_code,
    )
    assert got == TABLE[who]


def test_forbidden_wording_matches_kubernetes(world: dict[str, object]) -> None:
    clients = world["clients"]
    ns, node1, node2 = world["ns"], world["node1"], world["node2"]
    fresh = clients["fresh"]  # type: ignore[index]
    r = fresh.get("/api/v1/namespaces/default/pods")
    body = r.json()
    assert r.status_code == 403 and body["reason"] == "Forbidden" and body["kind"] == "Status"
    name = body["message"].split('"')[1]
    assert body["message"] == (
        f'pods is forbidden: User "{name}" cannot list resource "pods" in API group "" in the namespace "default"'
    )
    assert body["details"] == {"kind": "pods"}
    r = fresh.get("/apis/apps/v1/deployments")
    assert r.json()["message"] == (
        f'deployments.apps is forbidden: User "{name}" cannot list resource "deployments" in API group "apps" '
        "at the cluster scope"
    )
    assert r.json()["details"] == {"group": "apps", "kind": "deployments"}
    node = clients["node"]  # type: ignore[index]
    r = node.get(f"/api/v1/namespaces/{ns}/secrets/db")
    assert r.json()["message"] == (
        f'secrets "db" is forbidden: User "system:node:{node1}" cannot get resource "secrets" in API group "" '
        f"in the namespace \"{ns}\": no relationship found between node '{node1}' and this object"
    )
    r = node.patch(
        f"/api/v1/nodes/{node2}",
        content=b'{"metadata":{"labels":{"x":"y"}}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 403
    assert (
        r.json()["message"] == f'nodes "{node2}" is forbidden: node "{node1}" is not allowed to modify node "{node2}"'
    )
    # anonymous: /healthz and /version are public, the API is not
    with httpx.Client(base_url=str(fresh.base_url), verify=False, timeout=10.0) as anon:
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/version").status_code == 200
        assert anon.get("/api/v1/pods").status_code == 401


def test_escalation_needs_the_permissions_or_bind(server: RunningApiServer, world: dict[str, object]) -> None:
    """A user allowed to create bindings still may not bind cluster-admin without holding it (or ``bind``)."""
    admin = world["clients"]["admin"]  # type: ignore[index]
    viewer = str(world["viewer"])
    ns = world["ns"]
    binder_role = {
        "metadata": {"name": f"binder-{ns}"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["*"], "verbs": ["create"]}],
    }
    binding = {
        "metadata": {"name": f"binder-{ns}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"binder-{ns}"},
        "subjects": [{"kind": "User", "name": viewer}],
    }
    try:
        assert admin.post(f"{RBAC}/clusterroles", json=binder_role).status_code == 201
        assert admin.post(f"{RBAC}/clusterrolebindings", json=binding).status_code == 201
        v = world["clients"]["view"]  # type: ignore[index]

        def refused_for_escalation() -> bool:
            r = v.post(f"{RBAC}/clusterrolebindings", params={"dryRun": "All"}, json=CRB)
            return r.status_code == 403 and "attempting to grant RBAC permissions not currently held" in r.text

        wait_for(refused_for_escalation, 10)
        # a Role with only what the user holds (view in ns) is fine; one with more is not
        ok_role = {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
        assert v.post(f"{RBAC}/namespaces/{ns}/roles", params={"dryRun": "All"}, json=ok_role).status_code == 201
        bad_role = {
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        }
        r = v.post(f"{RBAC}/namespaces/{ns}/roles", params={"dryRun": "All"}, json=bad_role)
        assert r.status_code == 403, r.text
        assert r.json()["message"].endswith('{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}')
    finally:
        admin.delete(f"{RBAC}/clusterrolebindings/binder-{ns}")
        admin.delete(f"{RBAC}/clusterroles/binder-{ns}")


def test_reviews_and_impersonation(world: dict[str, object]) -> None:
    admin = world["clients"]["admin"]  # type: ignore[index]
    ns, viewer = world["ns"], str(world["viewer"])
    sar = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": viewer, "resourceAttributes": {"namespace": ns, "verb": "list", "resource": "pods"}},
    }
    r = admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar)
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True
    sar["spec"]["resourceAttributes"]["resource"] = "secrets"  # type: ignore[index]
    assert admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar).json()["status"] == {
        "allowed": False
    }
    # the admin may impersonate; as the viewer, secrets are forbidden and pods allowed
    as_viewer = {"Impersonate-User": viewer, "Impersonate-Group": "team"}
    assert admin.get(f"/api/v1/namespaces/{ns}/pods", headers=as_viewer).status_code == 200
    r = admin.get(f"/api/v1/namespaces/{ns}/secrets", headers=as_viewer)
    assert r.status_code == 403 and f'User "{viewer}"' in r.json()["message"]
    who = admin.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers=as_viewer,
    ).json()
    assert who["status"]["userInfo"] == {"username": viewer, "groups": ["team", "system:authenticated"]}
    r = world["clients"]["fresh"].get(  # type: ignore[index]
        "/api/v1/pods", headers={"Impersonate-User": "system:admin"}
    )
    assert r.status_code == 403
    assert r.json()["message"].startswith('users "system:admin" is forbidden: User "fresh-')
    assert admin.get("/api/v1/pods", headers={"Impersonate-Group": "x"}).status_code == 400


def test_token_review_and_local_review(world: dict[str, object]) -> None:
    admin = world["clients"]["admin"]  # type: ignore[index]
    ns, viewer = world["ns"], str(world["viewer"])
    url = "/apis/authentication.k8s.io/v1/tokenreviews"
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "secret-token"}}
    status = admin.post(url, json=review).json()["status"]
    assert status == {
        "authenticated": True,
        "user": {"username": "alice", "uid": "uid-alice", "groups": ["devs", "ops", "system:authenticated"]},
    }
    review["spec"] = {"token": "not-a-token"}
    assert admin.post(url, json=review).json()["status"] == {"user": {}, "error": "invalid bearer token"}
    review["spec"] = {}
    r = admin.post(url, json=review)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.token"
    # the fresh user may not review tokens
    assert world["clients"]["fresh"].post(url, json=review).status_code == 403  # type: ignore[index]
    lsar = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "spec": {"user": viewer, "resourceAttributes": {"verb": "get", "resource": "pods"}},
    }
    r = admin.post(f"/apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews", json=lsar)
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True
    assert r.json()["metadata"]["namespace"] == ns
    lsar["spec"]["resourceAttributes"]["namespace"] = "elsewhere"  # type: ignore[index]
    r = admin.post(f"/apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews", json=lsar)
    assert r.status_code == 422
    # rules review: what the viewer may do in the namespace (as kubectl auth can-i --list shows it)
    ssrr = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": ns}}
    status = (
        world["clients"]["view"]
        .post(  # type: ignore[index]
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", json=ssrr
        )
        .json()["status"]
    )
    assert status["incomplete"] is False
    assert any("pods" in r["resources"] and "list" in r["verbs"] for r in status["resourceRules"])
    assert not any("secrets" in r["resources"] for r in status["resourceRules"])
    assert any("/version" in r["nonResourceURLs"] for r in status["nonResourceRules"])
