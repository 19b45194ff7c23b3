"""Issue 11 case 4: objects a typed client cannot decode are refused, exactly as kube-apiserver does.

Each write carries a value of the wrong Go type (``replicas`` beyond int32, a string where
``EnvVarSource`` belongs, a string ``spec`` on a Namespace); the answer is kube-apiserver's decode
error (400 ``BadRequest``, ``<Kind> in version "v1" cannot be handled as a <Kind>: json: cannot
unmarshal …``; 422 on field ``patch`` for json/merge/strategic patches), nothing is stored (the
list's items and resourceVersions are the same before and after) and the server still answers.
The real kubectl then still describes the valid objects of those kinds.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer

NS = "structural"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
PODS = f"/api/v1/namespaces/{NS}/pods"
NAMESPACES = "/api/v1/namespaces"

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "typed"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "typed"}},
        "template": {
            "metadata": {"labels": {"app": "typed"}},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}]},
        },
    },
}

REPLICAS_MSG = (
    'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal number 2147483648 '
    "into Go struct field DeploymentSpec.spec.replicas of type int32"
)
VALUE_FROM_MSG = (
    'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct '
    "field EnvVar.spec.template.spec.containers.env.valueFrom of type v1.EnvVarSource"
)
NS_SPEC_MSG = (
    'Namespace in version "v1" cannot be handled as a Namespace: json: cannot unmarshal string into Go struct '
    "field Namespace.spec of type v1.NamespaceSpec"
)


def kubectl_binary() -> str | None:
    for candidate in ("/usr/lib/google-cloud-sdk/bin/kubectl.1.33", shutil.which("kubectl")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _snapshot(http: httpx.Client, path: str) -> list[tuple[str, str]]:
    r = http.get(path)
    assert r.status_code == 200, r.text
    return sorted((o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in r.json()["items"])


def _assert_status(r: httpx.Response, code: int, reason: str, message: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body: dict[str, Any] = r.json()
    assert body["kind"] == "Status" and body["code"] == code and body["reason"] == reason, body
    assert body["message"] == message, body["message"]
    return body


def _alive(http: httpx.Client) -> None:
    assert http.get("/readyz").status_code == 200
    assert http.get(f"{NAMESPACES}/{NS}").status_code == 200


@pytest.fixture(scope="module")
def ns(http: httpx.Client) -> Iterator[str]:
    r = http.post(NAMESPACES, json={"metadata": {"name": NS}})
    assert r.status_code == 201, r.text
    try:
        yield NS
    finally:
        for path in (DEPLOYMENTS, PODS):
            for item in http.get(path).json()["items"]:
                http.delete(f"{path}/{item['metadata']['name']}", params={"gracePeriodSeconds": "0"})
        http.delete(f"{NAMESPACES}/{NS}")
        ns_obj = http.get(f"{NAMESPACES}/{NS}")
        if ns_obj.status_code == 200:  # no namespace controller here: finish the deletion ourselves
            body = ns_obj.json()
            body["spec"]["finalizers"] = []
            http.put(f"{NAMESPACES}/{NS}/finalize", json=body)


@pytest.fixture
def stored(http: httpx.Client, ns: str) -> Iterator[dict[str, Any]]:
    """A valid Deployment ``typed`` (removed afterwards)."""
    r = http.post(DEPLOYMENTS, json=DEPLOYMENT)
    assert r.status_code == 201, r.text
    try:
        yield r.json()
    finally:
        http.delete(f"{DEPLOYMENTS}/typed")


def _bad_replicas() -> dict[str, Any]:
    d = copy.deepcopy(DEPLOYMENT)
    d["metadata"]["name"] = "bad-replicas"
    d["spec"]["replicas"] = 2147483648
    return d


def _bad_value_from() -> dict[str, Any]:
    d = copy.deepcopy(DEPLOYMENT)
    d["metadata"]["name"] = "bad-valuefrom"
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "valueFrom": "x"}]
    return d


@pytest.mark.parametrize(("body", "message"), [(_bad_replicas(), REPLICAS_MSG), (_bad_value_from(), VALUE_FROM_MSG)])
def test_create_of_undecodable_deployment_is_refused(
    http: httpx.Client, ns: str, body: dict[str, Any], message: str
) -> None:
    before = _snapshot(http, DEPLOYMENTS)
    _assert_status(http.post(DEPLOYMENTS, json=body), 400, "BadRequest", message)
    assert _snapshot(http, DEPLOYMENTS) == before
    assert http.get(f"{DEPLOYMENTS}/{body['metadata']['name']}").status_code == 404
    _alive(http)


def test_create_of_pod_with_string_value_from_is_refused(http: httpx.Client, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad-env"},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "valueFrom": "x"}]}]},
    }
    before = _snapshot(http, PODS)
    _assert_status(
        http.post(PODS, json=pod),
        400,
        "BadRequest",
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field '
        "EnvVar.spec.containers.env.valueFrom of type v1.EnvVarSource",
    )
    assert _snapshot(http, PODS) == before
    _alive(http)


def test_namespace_with_string_spec_is_refused(http: httpx.Client, ns: str) -> None:
    before = _snapshot(http, NAMESPACES)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bad-spec"}, "spec": "x"}
    _assert_status(http.post(NAMESPACES, json=body), 400, "BadRequest", NS_SPEC_MSG)
    assert http.get(f"{NAMESPACES}/bad-spec").status_code == 404
    # and on an existing namespace: PUT 400, merge patch 422 on field "patch"; nothing changes
    current = http.get(f"{NAMESPACES}/{NS}").json()
    _assert_status(http.put(f"{NAMESPACES}/{NS}", json={**current, "spec": "x"}), 400, "BadRequest", NS_SPEC_MSG)
    r = http.patch(
        f"{NAMESPACES}/{NS}", content=b'{"spec": "x"}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "patch"
    assert r.json()["message"].endswith(
        ": json: cannot unmarshal string into Go struct field Namespace.spec of type v1.NamespaceSpec"
    )
    assert _snapshot(http, NAMESPACES) == before
    _alive(http)


def test_update_with_wrong_types_changes_nothing(http: httpx.Client, stored: dict[str, Any]) -> None:
    before = _snapshot(http, DEPLOYMENTS)
    bad = copy.deepcopy(stored)
    bad["spec"]["replicas"] = 2147483648
    _assert_status(http.put(f"{DEPLOYMENTS}/typed", json=bad), 400, "BadRequest", REPLICAS_MSG)
    bad = copy.deepcopy(stored)
    bad["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "valueFrom": "x"}]
    _assert_status(http.put(f"{DEPLOYMENTS}/typed", json=bad), 400, "BadRequest", VALUE_FROM_MSG)
    assert _snapshot(http, DEPLOYMENTS) == before
    _alive(http)


DECODE_REPLICAS = (
    "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32"
)


@pytest.mark.parametrize(
    ("ctype", "patch"),
    [
        ("application/merge-patch+json", {"spec": {"replicas": 2147483648}}),
        ("application/strategic-merge-patch+json", {"spec": {"replicas": 2147483648}}),
        ("application/json-patch+json", [{"op": "replace", "path": "/spec/replicas", "value": 2147483648}]),
    ],
    ids=["merge", "strategic", "json"],
)
def test_patch_to_wrong_type_is_invalid(http: httpx.Client, stored: dict[str, Any], ctype: str, patch: Any) -> None:
    before = _snapshot(http, DEPLOYMENTS)
    r = http.patch(f"{DEPLOYMENTS}/typed", content=json.dumps(patch).encode(), headers={"Content-Type": ctype})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "Invalid" and body["code"] == 422
    assert body["message"].startswith('"" is invalid: patch: Invalid value: "')
    assert body["message"].endswith(": " + DECODE_REPLICAS)
    assert body["details"]["causes"][0]["field"] == "patch"
    if ctype == "application/strategic-merge-patch+json":
        assert '"map[spec:map[replicas:2147483648]]"' in body["message"]  # Go's %+v of the patch map
    assert _snapshot(http, DEPLOYMENTS) == before
    _alive(http)


def test_apply_to_wrong_type_is_bad_request(http: httpx.Client, stored: dict[str, Any]) -> None:
    before = _snapshot(http, DEPLOYMENTS)
    manifest = _bad_replicas()
    manifest["metadata"]["name"] = "typed"
    r = http.patch(
        f"{DEPLOYMENTS}/typed",
        params={"fieldManager": "test"},
        content=json.dumps(manifest).encode(),
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    _assert_status(r, 400, "BadRequest", REPLICAS_MSG)
    assert _snapshot(http, DEPLOYMENTS) == before


def test_status_and_scale_writes_are_checked(http: httpx.Client, stored: dict[str, Any]) -> None:
    before = _snapshot(http, DEPLOYMENTS)
    bad = copy.deepcopy(stored)
    bad["status"] = {"observedGeneration": "one"}
    _assert_status(
        http.put(f"{DEPLOYMENTS}/typed/status", json=bad),
        400,
        "BadRequest",
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go '
        "struct field DeploymentStatus.status.observedGeneration of type int64",
    )
    scale = http.get(f"{DEPLOYMENTS}/typed/scale").json()
    scale["spec"]["replicas"] = 2147483648
    r = http.put(f"{DEPLOYMENTS}/typed/scale", json=scale)
    assert r.status_code == 400, r.text
    assert r.json()["kind"] == "Status" and r.json()["reason"] == "BadRequest"
    assert DECODE_REPLICAS in r.json()["message"]
    assert _snapshot(http, DEPLOYMENTS) == before
    _alive(http)


def test_well_typed_edges_are_accepted(http: httpx.Client, ns: str) -> None:
    """No false refusals: int64 beyond int32, quantities as numbers, int-or-string both ways, null."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "edges", "annotations": None},
        "spec": {
            "terminationGracePeriodSeconds": 2**40,
            "activeDeadlineSeconds": 2**40,
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "resources": {"limits": {"cpu": 1, "memory": "64Mi"}, "requests": {"cpu": 0.5}},
                    "livenessProbe": {"httpGet": {"port": "http"}},
                    "readinessProbe": {"httpGet": {"port": 8080}},
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "securityContext": {"runAsUser": 2**33},
                }
            ],
        },
    }
    r = http.post(PODS, json=pod)
    assert r.status_code == 201, r.text
    http.delete(f"{PODS}/edges", params={"gracePeriodSeconds": "0"})


def test_kubectl_describes_valid_objects(
    server: RunningApiServer, http: httpx.Client, stored: dict[str, Any], tmp_path: Path
) -> None:
    kubectl = kubectl_binary()
    if kubectl is None:
        pytest.skip("no kubectl on this machine")
    # the refused writes first, so the describe below sees whatever they might have left behind
    http.post(DEPLOYMENTS, json=_bad_replicas())
    http.post(DEPLOYMENTS, json=_bad_value_from())
    http.post(NAMESPACES, json={"metadata": {"name": "bad-spec"}, "spec": "x"})
    base = [kubectl, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp_path / "cache")]
    for args in (["-n", NS, "describe", "deployments"], ["describe", "namespace", NS], ["get", "namespaces"]):
        r = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        assert "cannot unmarshal" not in r.stderr
    r = subprocess.run([*base, "-n", NS, "describe", "deployment", "typed"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Replicas:" in r.stdout, r.stderr
