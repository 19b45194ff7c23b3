"""Kubernetes object semantics through the real server: deletion, finalizers, namespaces,
subresources (binding, eviction, scale), patches, selectors, fieldValidation and dryRun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.apiserver import start_apiserver
from tests.helpers.wait import wait_for

PODS = "/api/v1/namespaces/default/pods"
CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def pod(name: str, node: str | None = None, **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            },
        },
    }


def test_graceful_delete_of_a_pod_on_a_node(http: httpx.Client) -> None:
    http.post(PODS, json=pod("grace-1", node="n1"))
    r = http.delete(f"{PODS}/grace-1")
    assert r.status_code == 200
    md = http.get(f"{PODS}/grace-1").json()["metadata"]
    assert md["deletionTimestamp"] and md["deletionGracePeriodSeconds"] == 30
    # a longer grace period does not extend it
    http.delete(f"{PODS}/grace-1", params={"gracePeriodSeconds": "60"})
    assert http.get(f"{PODS}/grace-1").json()["metadata"]["deletionGracePeriodSeconds"] == 30
    # the node confirms: grace 0 removes it
    assert http.request("DELETE", f"{PODS}/grace-1", json={"gracePeriodSeconds": 0}).status_code == 200
    assert http.get(f"{PODS}/grace-1").status_code == 404


def test_finalizers_hold_deletion_until_removed(http: httpx.Client) -> None:
    cm = {"metadata": {"name": "fin-1", "finalizers": ["example.com/hold"]}, "data": {"a": "b"}}
    http.post(CM, json=cm)
    assert http.delete(f"{CM}/fin-1").status_code == 200
    obj = http.get(f"{CM}/fin-1").json()
    assert obj["metadata"]["deletionTimestamp"]
    obj["metadata"]["finalizers"].append("example.com/late")  # cannot add once deleting
    obj = http.put(f"{CM}/fin-1", json=obj).json()
    assert obj["metadata"]["finalizers"] == ["example.com/hold"]
    obj["metadata"]["finalizers"] = []
    assert http.put(f"{CM}/fin-1", json=obj).status_code == 200
    assert http.get(f"{CM}/fin-1").status_code == 404


def test_foreground_propagation_adds_its_finalizer(http: httpx.Client) -> None:
    http.post(CM, json={"metadata": {"name": "fg-1"}})
    http.request("DELETE", f"{CM}/fg-1", json={"propagationPolicy": "Foreground"})
    md = http.get(f"{CM}/fg-1").json()["metadata"]
    assert md["finalizers"] == ["foregroundDeletion"] and md["deletionTimestamp"]
    r = http.request("DELETE", f"{CM}/fg-1", json={"propagationPolicy": "Sideways"})
    assert r.status_code == 400


def test_delete_preconditions(http: httpx.Client) -> None:
    created = http.post(CM, json={"metadata": {"name": "pre-1"}}).json()
    r = http.request("DELETE", f"{CM}/pre-1", json={"preconditions": {"uid": "not-the-uid"}})
    assert r.status_code == 409 and "Precondition failed" in r.json()["message"]
    r = http.request("DELETE", f"{CM}/pre-1", json={"preconditions": {"uid": created["metadata"]["uid"]}})
    assert r.status_code == 200
    assert http.get(f"{CM}/pre-1").status_code == 404


def test_namespace_lifecycle(http: httpx.Client) -> None:
    r = http.post("/api/v1/namespaces/missing-ns/configmaps", json={"metadata": {"name": "x"}})
    assert r.status_code == 404 and r.json()["message"] == 'namespaces "missing-ns" not found'
    ns = http.post("/api/v1/namespaces", json={"metadata": {"name": "lifecycle"}}).json()
    assert ns["status"]["phase"] == "Active" and ns["spec"]["finalizers"] == ["kubernetes"]
    assert http.post("/api/v1/namespaces/lifecycle/configmaps", json={"metadata": {"name": "x"}}).status_code == 201
    http.delete("/api/v1/namespaces/lifecycle")
    ns = http.get("/api/v1/namespaces/lifecycle").json()
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    r = http.post("/api/v1/namespaces/lifecycle/configmaps", json={"metadata": {"name": "y"}})
    assert r.status_code == 403 and "being terminated" in r.json()["message"]
    # what the namespace controller does once the namespace is empty
    ns["spec"]["finalizers"] = []
    assert http.put("/api/v1/namespaces/lifecycle/finalize", json=ns).status_code == 200
    assert http.get("/api/v1/namespaces/lifecycle").status_code == 404
    r = http.delete("/api/v1/namespaces/default")
    assert r.status_code == 403 and http.get("/api/v1/namespaces/default").json()["status"]["phase"] == "Active"


def test_binding_sets_node_once(http: httpx.Client) -> None:
    http.post(PODS, json=pod("bind-1"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "bind-1"},
        "target": {"kind": "Node", "name": "n7"},
    }
    r = http.post(f"{PODS}/bind-1/binding", json=binding)
    assert r.status_code == 201, r.text
    p = http.get(f"{PODS}/bind-1").json()
    assert p["spec"]["nodeName"] == "n7"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    r = http.post(f"{PODS}/bind-1/binding", json={**binding, "target": {"kind": "Node", "name": "n8"}})
    assert r.status_code == 409
    assert http.get(f"{PODS}/bind-1").json()["spec"]["nodeName"] == "n7"
    r = http.post(f"{PODS}/bind-1/binding", json={"target": {}})
    assert r.status_code == 422


def test_eviction_deletes_gracefully(http: httpx.Client) -> None:
    http.post(PODS, json=pod("evict-1", node="n1"))
    r = http.post(
        f"{PODS}/evict-1/eviction",
        json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "evict-1"}},
    )
    assert r.status_code == 201, r.text
    assert http.get(f"{PODS}/evict-1").json()["metadata"]["deletionTimestamp"]


def test_scale_subresource(http: httpx.Client) -> None:
    http.post(DEPLOY, json=deployment("scaled", 2))
    s = http.get(f"{DEPLOY}/scaled/scale").json()
    assert s["kind"] == "Scale" and s["apiVersion"] == "autoscaling/v1"
    assert s["spec"]["replicas"] == 2 and s["status"]["selector"] == "app=scaled"
    r = http.patch(
        f"{DEPLOY}/scaled/scale",
        content=b'{"spec":{"replicas":3}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 3
    r = http.patch(
        f"{DEPLOY}/scaled/scale",
        content=b'{"spec":{"replicas":4}}',
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert r.json()["spec"]["replicas"] == 4
    s = r.json()
    s["spec"]["replicas"] = 5
    assert http.put(f"{DEPLOY}/scaled/scale", json=s).json()["spec"]["replicas"] == 5
    d = http.get(f"{DEPLOY}/scaled").json()
    assert d["spec"]["replicas"] == 5 and d["metadata"]["generation"] == 4
    s["spec"]["replicas"] = 6  # stale resourceVersion
    assert http.put(f"{DEPLOY}/scaled/scale", json=s).status_code == 409
    s["spec"]["replicas"] = -1
    s["metadata"].pop("resourceVersion")
    assert http.put(f"{DEPLOY}/scaled/scale", json=s).status_code == 422


def test_patch_types(http: httpx.Client) -> None:
    http.post(DEPLOY, json=deployment("patched"))
    merge = http.patch(
        f"{DEPLOY}/patched",
        content=b'{"metadata":{"labels":{"tier":"be"}}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merge.status_code == 200 and merge.json()["metadata"]["labels"] == {"tier": "be"}
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}
    r = http.patch(
        f"{DEPLOY}/patched", content=json.dumps(smp), headers={"Content-Type": "application/strategic-merge-patch+json"}
    )
    c = r.json()["spec"]["template"]["spec"]["containers"]
    assert c[0]["image"] == "nginx:2" and c[0]["ports"][0]["containerPort"] == 80  # merged by name
    jp = [{"op": "replace", "path": "/spec/replicas", "value": 7}]
    r = http.patch(f"{DEPLOY}/patched", content=json.dumps(jp), headers={"Content-Type": "application/json-patch+json"})
    assert r.json()["spec"]["replicas"] == 7
    r = http.patch(f"{DEPLOY}/patched", content=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    # server-side apply creates a missing object (201), then merges (200)
    applied = deployment("ssa")
    r = http.patch(
        f"{DEPLOY}/ssa",
        params={"fieldManager": "kubectl", "force": "false"},
        content=json.dumps(applied),
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    assert r.status_code == 201, r.text
    applied["spec"]["replicas"] = 2
    r = http.patch(
        f"{DEPLOY}/ssa",
        params={"fieldManager": "kubectl"},
        content=json.dumps(applied),
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 2 and r.json()["metadata"]["generation"] == 2
    # a patch pinned to an old resourceVersion conflicts
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 9}}
    r = http.patch(f"{DEPLOY}/ssa", content=json.dumps(stale), headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409
    # status in a main-resource patch is ignored; a status patch works
    r = http.patch(
        f"{DEPLOY}/ssa", content=b'{"status":{"replicas":5}}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.json()["status"] == {}
    r = http.patch(
        f"{DEPLOY}/ssa/status",
        content=b'{"status":{"replicas":5}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.json()["status"] == {"replicas": 5}


def test_noop_update_does_not_write(http: httpx.Client) -> None:
    obj = http.post(CM, json={"metadata": {"name": "noop-1"}, "data": {"a": "1"}}).json()
    again = http.put(f"{CM}/noop-1", json=obj).json()
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_label_and_field_selectors_on_list(http: httpx.Client) -> None:
    for i, (app, node) in enumerate([("sel-a", "n1"), ("sel-a", "n2"), ("sel-b", "n1")]):
        http.post(PODS, json=pod(f"sel-{i}", node=node, app=app))
    names = lambda r: sorted(p["metadata"]["name"] for p in r.json()["items"])  # noqa: E731
    assert names(http.get(PODS, params={"labelSelector": "app=sel-a"})) == ["sel-0", "sel-1"]
    assert names(http.get(PODS, params={"labelSelector": "app in (sel-a,sel-b),app!=sel-a"})) == ["sel-2"]
    assert names(http.get(PODS, params={"labelSelector": "app=sel-a", "fieldSelector": "spec.nodeName=n1"})) == [
        "sel-0"
    ]
    assert names(
        http.get("/api/v1/pods", params={"fieldSelector": "metadata.name=sel-2,metadata.namespace=default"})
    ) == ["sel-2"]
    r = http.get(PODS, params={"fieldSelector": "spec.bogus=1"})
    assert r.status_code == 400 and "spec.bogus" in r.json()["message"]
    r = http.get(PODS, params={"labelSelector": "app in (a"})
    assert r.status_code == 400


def test_watch_with_selector_turns_relabel_into_deleted(http: httpx.Client) -> None:
    http.post(CM, json={"metadata": {"name": "wsel", "labels": {"team": "a"}}})
    rv = http.get(CM).json()["metadata"]["resourceVersion"]
    obj = http.get(f"{CM}/wsel").json()
    obj["metadata"]["labels"] = {"team": "b"}
    http.put(f"{CM}/wsel", json=obj)
    obj = http.get(f"{CM}/wsel").json()
    obj["metadata"]["labels"] = {"team": "a"}
    http.put(f"{CM}/wsel", json=obj)
    events = []
    with http.stream(
        "GET", CM, params={"watch": "1", "resourceVersion": rv, "labelSelector": "team=a", "timeoutSeconds": "1"}
    ) as r:
        for line in r.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    assert [e["type"] for e in events if e["type"] != "BOOKMARK"] == ["DELETED", "ADDED"]


def test_field_validation_strict_and_ignore(http: httpx.Client) -> None:
    body = {"metadata": {"name": "strict-1", "bogusMeta": 1}, "data": {}, "spec": {"x": 1}}
    r = http.post(CM, params={"fieldValidation": "Strict"}, json=body)
    assert r.status_code == 400
    msg = r.json()["message"]
    assert 'unknown field "spec"' in msg and 'unknown field "metadata.bogusMeta"' in msg
    assert http.get(f"{CM}/strict-1").status_code == 404
    r = http.post(CM, json=body)  # default: unknown fields dropped
    assert r.status_code == 201 and "spec" not in r.json() and "bogusMeta" not in r.json()["metadata"]
    assert http.post(CM, params={"fieldValidation": "Sometimes"}, json=body).status_code == 400


def test_field_validation_strict_nested(http: httpx.Client) -> None:
    p = pod("strict-pod")
    p["spec"]["containers"][0]["imagex"] = "typo"
    r = http.post(PODS, params={"fieldValidation": "Strict"}, json=p)
    assert r.status_code == 400
    assert 'unknown field "spec.containers[0].imagex"' in r.json()["message"]
    assert http.get(f"{PODS}/strict-pod").status_code == 404


def test_dry_run(http: httpx.Client) -> None:
    r = http.post(CM, params={"dryRun": "All"}, json={"metadata": {"name": "dry-1"}})
    assert r.status_code == 201 and r.json()["metadata"]["name"] == "dry-1"
    assert http.get(f"{CM}/dry-1").status_code == 404
    http.post(CM, json={"metadata": {"name": "dry-2"}})
    assert http.delete(f"{CM}/dry-2", params={"dryRun": "All"}).status_code == 200
    assert http.get(f"{CM}/dry-2").status_code == 200
    assert http.post(CM, params={"dryRun": "Some"}, json={"metadata": {"name": "dry-3"}}).status_code == 400


def test_deletecollection_with_selector(http: httpx.Client) -> None:
    for i in range(3):
        http.post(CM, json={"metadata": {"name": f"dc-{i}", "labels": {"dc": "yes" if i < 2 else "no"}}})
    r = http.delete(CM, params={"labelSelector": "dc=yes"})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    left = [c["metadata"]["name"] for c in http.get(CM, params={"labelSelector": "dc"}).json()["items"]]
    assert left == ["dc-2"]


def test_limit_and_continue(http: httpx.Client) -> None:
    http.post("/api/v1/namespaces", json={"metadata": {"name": "paging"}})
    for i in range(7):
        http.post("/api/v1/namespaces/paging/configmaps", json={"metadata": {"name": f"p-{i}"}})
    names: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    pages = 0
    first_rv = None
    while True:
        page = http.get("/api/v1/namespaces/paging/configmaps", params=params).json()
        pages += 1
        first_rv = first_rv or page["metadata"]["resourceVersion"]
        assert page["metadata"]["resourceVersion"] == first_rv
        names += [c["metadata"]["name"] for c in page["items"]]
        if not page["metadata"].get("continue"):
            break
        assert page["metadata"]["remainingItemCount"] == 7 - len(names)
        params = {"limit": "3", "continue": page["metadata"]["continue"]}
    assert pages == 3 and names == [f"p-{i}" for i in range(7)]
    r = http.get("/api/v1/namespaces/paging/configmaps", params={"limit": "3", "continue": "garbage!"})
    assert r.status_code == 400
    other = http.get("/api/v1/namespaces/paging/configmaps", params={"limit": "3"}).json()["metadata"]["continue"]
    r = http.get("/api/v1/namespaces/default/configmaps", params={"limit": "3", "continue": other})
    assert r.status_code == 400
    # resourceVersion=0 ignores the limit
    assert (
        len(
            http.get("/api/v1/namespaces/paging/configmaps", params={"limit": "3", "resourceVersion": "0"}).json()[
                "items"
            ]
        )
        == 7
    )


def test_events_expire_after_ttl(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path, store="memory", extra_args=["--event-ttl", "2s"])
    try:
        with srv.http() as c:
            ev = {
                "metadata": {"name": "old.1"},
                "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"},
                "reason": "Test",
                "lastTimestamp": "2020-01-01T00:00:00Z",
            }
            assert c.post("/api/v1/namespaces/default/events", json=ev).status_code == 201
            fresh = {**ev, "metadata": {"name": "fresh.1"}, "lastTimestamp": None}
            assert c.post("/api/v1/namespaces/default/events", json=fresh).status_code == 201
            wait_for(
                lambda: c.get("/api/v1/namespaces/default/events/old.1").status_code == 404,
                timeout=10,
                message="the old event to expire",
            )
            assert c.get("/api/v1/namespaces/default/events/fresh.1").status_code == 200
    finally:
        srv.stop()


def test_field_validation_warn_sends_warning_headers(http: httpx.Client) -> None:
    p = pod("warn-pod")
    p["spec"]["containers"][0]["imagex"] = "typo"
    r = http.post(PODS, params={"fieldValidation": "Warn"}, json=p)
    assert r.status_code == 201
    assert r.headers.get_list("warning") == ['299 - "unknown field \\"spec.containers[0].imagex\\""']
    assert "imagex" not in json.dumps(r.json())
