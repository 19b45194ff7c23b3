"""Every served kind, as the server returns it after a create, passes the official Python client's
typed models (``ApiClient.deserialize``, whose pydantic models refuse a missing required field
such as a DaemonSet's ``status.currentNumberScheduled``).

A kind added to the registry without a sample here fails ``test_every_kind_has_a_sample``: add a
minimal manifest for it below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient

from controlplane.api import registry
from tests.helpers.apiserver import RunningApiServer

NS = "pymodels"
LABELS = {"app": "pymodels"}
POD_SPEC = {"containers": [{"name": "c", "image": "busybox"}]}
TEMPLATE = {"metadata": {"labels": LABELS}, "spec": POD_SPEC}
JOB_SPEC = {"template": {"metadata": {"labels": LABELS}, "spec": {**POD_SPEC, "restartPolicy": "Never"}}}
SELECTOR = {"matchLabels": LABELS}

# plural → the object's body besides apiVersion/kind/metadata.name (None: read-only, list only)
VIEW = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
ALICE = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
SAMPLES: dict[str, dict[str, Any] | None] = {
    "namespaces": {},
    "pods": {"spec": POD_SPEC},
    "services": {"spec": {"selector": LABELS, "ports": [{"port": 80}]}},
    "endpoints": {},
    "nodes": {},
    "events": {"involvedObject": {"kind": "Pod", "name": "p", "namespace": NS}, "reason": "Test", "message": "m"},
    "configmaps": {"data": {"k": "v"}},
    "secrets": {"stringData": {"k": "v"}},
    "serviceaccounts": {},
    "replicationcontrollers": {"spec": {"replicas": 0, "template": TEMPLATE}},
    "componentstatuses": None,
    "deployments": {"spec": {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}},
    "replicasets": {"spec": {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}},
    "daemonsets": {"spec": {"selector": SELECTOR, "template": TEMPLATE}},
    "statefulsets": {"spec": {"replicas": 0, "serviceName": "s", "selector": SELECTOR, "template": TEMPLATE}},
    "controllerrevisions": {"revision": 1, "data": {}},
    "jobs": {"spec": {**JOB_SPEC, "suspend": True}},
    "cronjobs": {"spec": {"schedule": "@yearly", "suspend": True, "jobTemplate": {"spec": JOB_SPEC}}},
    "leases": {"spec": {}},
    "endpointslices": {"addressType": "IPv4", "endpoints": []},
    "networkpolicies": {"spec": {"podSelector": {}}},
    "roles": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    "clusterroles": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    "rolebindings": {"roleRef": VIEW, "subjects": [ALICE]},
    "clusterrolebindings": {"roleRef": VIEW, "subjects": [ALICE]},
    # create-only reviews: what the server answers is what a client decodes
    "selfsubjectaccessreviews": {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": NS}}},
    "selfsubjectrulesreviews": {"spec": {"namespace": NS}},
    "subjectaccessreviews": {"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods"}}},
    "localsubjectaccessreviews": {
        "spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": NS}}
    },
    "selfsubjectreviews": {},
    "tokenreviews": {"spec": {"token": "not-a-token"}},
    "apiservices": None,  # the server's own Local APIServices (v1., v1.apps, …)
    "resourcequotas": {"spec": {"hard": {"pods": "10"}}},
    "limitranges": {"spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]}},
    "poddisruptionbudgets": {"spec": {"minAvailable": 1, "selector": SELECTOR}},
    "priorityclasses": {"value": 1000},
    "ingresses": {"spec": {"defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}}},
    "ingressclasses": {"spec": {"controller": "example.com/ingress"}},
}


def model_name(res: registry.Resource) -> str:
    """The client's class: ``V1Pod``, ``V1CronJob``; core Events are ``CoreV1Event``."""
    prefix = "CoreV1" if (res.group, res.kind) == ("", "Event") else "V1"
    return f"{prefix}{res.kind}"


@pytest.fixture(scope="module")
def client(server: RunningApiServer) -> Iterator[httpx.Client]:
    with server.http() as c:
        c.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        try:
            yield c
        finally:
            c.delete(f"/api/v1/namespaces/{NS}")


def test_every_kind_has_a_sample() -> None:
    missing = [r.plural for r in registry.RESOURCES if r.plural not in SAMPLES]
    assert missing == [], f"add a minimal manifest to SAMPLES for: {', '.join(missing)}"


@pytest.mark.parametrize("res", registry.RESOURCES, ids=lambda r: r.plural)
def test_created_object_deserializes(client: httpx.Client, res: registry.Resource) -> None:
    sample = SAMPLES.get(res.plural)
    api = ApiClient()
    if sample is None:
        r = client.get(res.collection_path())
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert items, f"{res.plural}: nothing listed"
        for item in items:
            api.deserialize(json.dumps(item), model_name(res), "application/json")
        return
    name = f"pymodels-{res.singular}"
    ns = NS if res.namespaced else None
    body = {"apiVersion": res.api_version, "kind": res.kind, "metadata": {"name": name}, **sample}
    created = client.post(res.collection_path(ns), json=body)
    if "get" not in res.verbs:  # a review: the answer to the create is the object
        assert created.status_code == 201, created.text
        api.deserialize(created.text, model_name(res), "application/json")
        return
    try:
        assert created.status_code == 201, created.text
        api.deserialize(created.text, model_name(res), "application/json")  # the create's answer
        got = client.get(res.item_path(name, ns))
        assert got.status_code == 200
        obj = api.deserialize(got.text, model_name(res), "application/json")
        assert obj.metadata.name == name
        # and as a list (``V1PodList``; core Events are ``CoreV1EventList``), as list_* calls decode it
        listed = client.get(res.collection_path(ns))
        assert listed.status_code == 200, listed.text
        items = api.deserialize(listed.text, model_name(res) + "List", "application/json").items
        assert name in [i.metadata.name for i in items]
    finally:
        client.delete(res.item_path(name, ns))
