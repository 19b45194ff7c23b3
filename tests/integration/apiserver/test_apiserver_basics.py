"""The API server's basics against the real process: auth, version, discovery, CRUD semantics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def assert_status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    assert body["reason"] == reason, body
    assert body["code"] == code
    return body


def test_no_credentials_is_401_status(server: RunningApiServer) -> None:
    with server.http(auth=False) as anon:
        assert_status(anon.get(PODS), 401, "Unauthorized")
        assert_status(anon.get(PODS, headers={"Authorization": "Bearer wrong"}), 401, "Unauthorized")
        # health endpoints stay open (probes)
        assert anon.get("/readyz").status_code == 200


def test_bearer_token_from_token_file(server: RunningApiServer) -> None:
    with server.http(auth=False) as c:
        r = c.get(PODS, headers={"Authorization": "Bearer masters-token"})
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "PodList"
        # alice's token authenticates too; with no RBAC binding she is refused by name (403, not 401)
        r = c.get(PODS, headers={"Authorization": "Bearer secret-token"})
        assert r.status_code == 403 and 'User "alice"' in r.json()["message"], r.text


def test_version_reports_minor_33(http: httpx.Client) -> None:
    v = http.get("/version").json()
    assert v["major"] == "1" and v["minor"] == "33"
    assert v["gitVersion"].startswith("v1.33")


def test_discovery_aggregated_and_legacy(http: httpx.Client) -> None:
    agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    r = http.get("/apis", headers={"Accept": agg})
    assert r.headers["content-type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {item["metadata"]["name"] for item in r.json()["items"]}
    assert {"apps", "batch", "coordination.k8s.io", "discovery.k8s.io"} <= groups
    old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    r = http.get("/api", headers={"Accept": old})
    assert r.headers["content-type"].endswith("v=v2beta1;as=APIGroupDiscoveryList")
    pods = next(x for x in r.json()["items"][0]["versions"][0]["resources"] if x["resource"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["scope"] == "Namespaced"
    assert http.get("/api").json()["kind"] == "APIVersions"
    assert http.get("/apis").json()["kind"] == "APIGroupList"
    rl = http.get("/apis/apps/v1").json()
    names = {x["name"] for x in rl["resources"]}
    assert {"deployments", "deployments/scale", "deployments/status"} <= names
    assert http.get("/api/v1").json()["groupVersion"] == "v1"
    assert_status(http.get("/apis/nope.example.com/v1"), 404, "NotFound")


def test_openapi_v2_is_protobuf_when_asked(http: httpx.Client) -> None:
    # kubectl's Accept; without one (or with */*) the answer is the JSON document, as in kube-apiserver
    r = http.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert r.content.startswith(b"\n\x032.0")  # gnostic Document field 1 (swagger) = "2.0"
    assert http.get("/openapi/v2").json()["swagger"] == "2.0"


def test_health_endpoints(http: httpx.Client) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        r = http.get(path)
        assert r.status_code == 200 and r.text == "ok"


def test_system_namespaces_exist(http: httpx.Client) -> None:
    names = {n["metadata"]["name"] for n in http.get("/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_create_sets_server_fields_and_duplicate_is_409(http: httpx.Client) -> None:
    r = http.post(PODS, json=pod("basic-1", app="x"))
    assert r.status_code == 201, r.text
    obj = r.json()
    md = obj["metadata"]
    assert md["uid"] and md["creationTimestamp"].endswith("Z") and int(md["resourceVersion"]) > 0
    assert md["namespace"] == "default"
    assert obj["kind"] == "Pod" and obj["apiVersion"] == "v1"
    got = http.get(f"{PODS}/basic-1").json()
    assert got["metadata"]["uid"] == md["uid"]
    assert got["metadata"]["resourceVersion"] == md["resourceVersion"]
    body = assert_status(http.post(PODS, json=pod("basic-1")), 409, "AlreadyExists")
    assert body["message"] == 'pods "basic-1" already exists'


def test_generate_name(http: httpx.Client) -> None:
    p = pod("")
    p["metadata"] = {"generateName": "gen-"}
    r = http.post(PODS, json=p)
    assert r.status_code == 201, r.text
    name = r.json()["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5


def test_get_missing_is_404_with_kubectl_wording(http: httpx.Client) -> None:
    body = assert_status(http.get(f"{PODS}/nope"), 404, "NotFound")
    assert body["message"] == 'pods "nope" not found'


def test_stale_update_is_409_conflict(http: httpx.Client) -> None:
    created = http.post(PODS, json=pod("conflict-1")).json()
    fresh = dict(created)
    fresh["metadata"] = {**created["metadata"], "labels": {"v": "2"}}
    r = http.put(f"{PODS}/conflict-1", json=fresh)
    assert r.status_code == 200, r.text
    assert int(r.json()["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    stale = dict(created)
    stale["metadata"] = {**created["metadata"], "labels": {"v": "3"}}
    assert_status(http.put(f"{PODS}/conflict-1", json=stale), 409, "Conflict")
    assert http.get(f"{PODS}/conflict-1").json()["metadata"]["labels"] == {"v": "2"}


def test_status_subresource_split(http: httpx.Client) -> None:
    created = http.post(PODS, json=pod("status-1")).json()
    assert created["status"]["phase"] == "Pending"
    # status in a main-resource write is ignored
    obj = http.get(f"{PODS}/status-1").json()
    obj["status"] = {"phase": "Running"}
    obj["metadata"]["labels"] = {"changed": "yes"}
    after = http.put(f"{PODS}/status-1", json=obj).json()
    assert after["status"]["phase"] == "Pending" and after["metadata"]["labels"] == {"changed": "yes"}
    # spec/metadata in a status write are ignored
    after["status"] = {"phase": "Running", "podIP": "10.244.1.5"}
    after["spec"]["containers"][0]["image"] = "other"
    after["metadata"]["labels"] = {"changed": "no"}
    st = http.put(f"{PODS}/status-1/status", json=after).json()
    assert st["status"]["phase"] == "Running" and st["spec"]["containers"][0]["image"] == "busybox"
    assert st["metadata"]["labels"] == {"changed": "yes"}
    assert http.get(f"{PODS}/status-1/status").json()["status"]["podIP"] == "10.244.1.5"


def test_generation_bumps_only_on_spec_change(http: httpx.Client) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gen-dep"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "g"}},
            "template": {"metadata": {"labels": {"app": "g"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    path = "/apis/apps/v1/namespaces/default/deployments"
    d = http.post(path, json=dep).json()
    assert d["metadata"]["generation"] == 1
    d["metadata"]["labels"] = {"x": "y"}
    d = http.put(f"{path}/gen-dep", json=d).json()
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 3
    d = http.put(f"{path}/gen-dep", json=d).json()
    assert d["metadata"]["generation"] == 2
    d["status"] = {"replicas": 3}
    d = http.put(f"{path}/gen-dep/status", json=d).json()
    assert d["metadata"]["generation"] == 2 and d["status"] == {"replicas": 3}
    # what `kubectl apply` of the unchanged manifest sends: the list again, without the fields the
    # server defaulted (imagePullPolicy, terminationMessagePath …); specs compare after defaulting
    same = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    merge = {"Content-Type": "application/merge-patch+json"}
    d = http.patch(f"{path}/gen-dep", json=same, headers=merge).json()
    assert d["metadata"]["generation"] == 2, d["metadata"]
    changed = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "j"}]}}}}
    d = http.patch(f"{path}/gen-dep", json=changed, headers=merge).json()
    assert d["metadata"]["generation"] == 3


def test_cluster_scoped_and_namespaced_paths(http: httpx.Client) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "2"}}}
    r = http.post("/api/v1/nodes", json=node)
    assert r.status_code == 201, r.text
    assert "namespace" not in r.json()["metadata"]
    assert r.json()["status"]["capacity"] == {"cpu": "2"}  # nodes register with their status
    assert http.get("/api/v1/nodes/n1").status_code == 200
    assert_status(http.get("/api/v1/namespaces/default/nodes/n1"), 404, "NotFound")
    assert_status(http.get("/api/v1/pods/basic-1"), 404, "NotFound")
    all_pods = http.get("/api/v1/pods").json()
    assert all_pods["kind"] == "PodList" and int(all_pods["metadata"]["resourceVersion"]) > 0
    assert_status(http.post("/api/v1/pods", json=pod("x")), 405, "MethodNotAllowed")


def test_delete_unscheduled_pod_is_immediate(http: httpx.Client) -> None:
    http.post(PODS, json=pod("del-1"))
    r = http.request("DELETE", f"{PODS}/del-1", json={"propagationPolicy": "Background"})
    assert r.status_code == 200, r.text
    assert_status(http.get(f"{PODS}/del-1"), 404, "NotFound")
    assert_status(http.delete(f"{PODS}/del-1"), 404, "NotFound")


@pytest.mark.parametrize(
    "path",
    ["/api/v2/pods", "/api/v1/widgets", "/apis/apps/v1/namespaces/default/deployments/x/nope", "/nothing"],
)
def test_unknown_paths_are_404_status(http: httpx.Client, path: str) -> None:
    assert_status(http.get(path), 404, "NotFound")


def test_metrics_count_requests_by_verb_and_resource(http: httpx.Client, server: RunningApiServer) -> None:
    http.get("/api/v1/namespaces/default/configmaps")
    text = http.get("/metrics").text
    assert 'apiserver_request_total{code="200",resource="configmaps",verb="list"}' in text
    assert 'apiserver_request_duration_seconds_bucket{le="0.001",resource="configmaps",verb="list"}' in text
    assert "apiserver_registered_watchers" in text
    with server.http(auth=False) as anon:
        assert anon.get("/metrics").status_code == 401
