"""The bad-input suite: each malformed request gets the right 4xx ``Status`` and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer

PODS = "/api/v1/namespaces/default/pods"
GOOD_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ok"},
    "spec": {"containers": [{"name": "c", "image": "i"}]},
}


def _pod(**over: Any) -> dict[str, Any]:
    p = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    p.update(over)
    return p


CASES: list[tuple[str, str, str, dict[str, Any], int, str, str]] = [
    # (id, method, path, request kwargs, code, reason, text the message must contain)
    (
        "malformed-json",
        "POST",
        PODS,
        {"content": b'{"metadata": {', "headers": {"Content-Type": "application/json"}},
        400,
        "BadRequest",
        "not valid JSON",
    ),
    (
        "malformed-yaml",
        "POST",
        PODS,
        {"content": b"metadata: [unclosed", "headers": {"Content-Type": "application/yaml"}},
        400,
        "BadRequest",
        "YAML",
    ),
    (
        "empty-body",
        "POST",
        PODS,
        {"content": b"", "headers": {"Content-Type": "application/json"}},
        400,
        "BadRequest",
        "empty",
    ),
    ("not-an-object", "POST", PODS, {"json": [1, 2]}, 400, "BadRequest", "must be a Pod object"),
    (
        "wrong-content-type",
        "POST",
        PODS,
        {"content": b"x", "headers": {"Content-Type": "text/plain"}},
        415,
        "UnsupportedMediaType",
        "text/plain",
    ),
    (
        "protobuf",
        "POST",
        PODS,
        {"content": b"k8s\x00", "headers": {"Content-Type": "application/vnd.kubernetes.protobuf"}},
        415,
        "UnsupportedMediaType",
        "protobuf",
    ),
    (
        "too-large",
        "POST",
        PODS,
        {"content": b"{" + b" " * (3 * 1024 * 1024 + 10) + b"}", "headers": {"Content-Type": "application/json"}},
        413,
        "RequestEntityTooLarge",
        "too large",
    ),
    ("kind-mismatch", "POST", PODS, {"json": _pod(kind="Service")}, 400, "BadRequest", "kind in the data (Service)"),
    (
        "apiversion-mismatch",
        "POST",
        PODS,
        {"json": _pod(apiVersion="apps/v1")},
        400,
        "BadRequest",
        "API version in the data (apps/v1)",
    ),
    (
        "namespace-mismatch",
        "POST",
        PODS,
        {"json": _pod(metadata={"name": "bad", "namespace": "kube-system"})},
        400,
        "BadRequest",
        "namespace",
    ),
    ("invalid-name", "POST", PODS, {"json": _pod(metadata={"name": "Bad_Name"})}, 422, "Invalid", "metadata.name"),
    ("no-name", "POST", PODS, {"json": _pod(metadata={})}, 422, "Invalid", "metadata.name"),
    ("missing-containers", "POST", PODS, {"json": _pod(spec={})}, 422, "Invalid", "spec.containers"),
    (
        "bad-labels",
        "POST",
        PODS,
        {"json": _pod(metadata={"name": "bad", "labels": {"a": 1}})},
        400,  # kube-apiserver's typed decode refuses it before validation
        "BadRequest",
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
    ),
    (
        "bad-port",
        "POST",
        "/api/v1/namespaces/default/services",
        {"json": {"metadata": {"name": "bad"}, "spec": {"ports": [{"port": 70000}]}}},
        422,
        "Invalid",
        "spec.ports[0].port",
    ),
    ("unknown-path", "GET", "/api/v1/namespaces/default/widgets", {}, 404, "NotFound", "could not find"),
    ("unknown-group", "GET", "/apis/example.com/v1/things", {}, 404, "NotFound", "could not find"),
    ("unknown-version", "GET", "/apis/apps/v9/deployments", {}, 404, "NotFound", "could not find"),
    ("put-collection", "PUT", PODS, {"json": GOOD_POD}, 405, "MethodNotAllowed", "does not allow this method"),
    ("post-item", "POST", f"{PODS}/ok", {"json": GOOD_POD}, 405, "MethodNotAllowed", "does not allow this method"),
    ("delete-version", "DELETE", "/version", {}, 405, "MethodNotAllowed", "does not allow this method"),
    ("bad-label-selector", "GET", PODS, {"params": {"labelSelector": "a in (b"}}, 400, "BadRequest", "a in (b"),
    ("bad-field-selector", "GET", PODS, {"params": {"fieldSelector": "spec.nope=x"}}, 400, "BadRequest", "spec.nope"),
    (
        "bad-timeout",
        "GET",
        PODS,
        {"params": {"watch": "1", "timeoutSeconds": "soon"}},
        400,
        "BadRequest",
        "timeoutSeconds",
    ),
    (
        "bad-patch-body",
        "PATCH",
        f"{PODS}/ok",
        {"content": b"{nope", "headers": {"Content-Type": "application/merge-patch+json"}},
        400,
        "BadRequest",
        "",
    ),
    (
        "bad-json-patch",
        "PATCH",
        f"{PODS}/ok",
        {"content": b'[{"op":"explode","path":"/x"}]', "headers": {"Content-Type": "application/json-patch+json"}},
        400,
        "BadRequest",
        "",
    ),
    (
        "patch-no-type",
        "PATCH",
        f"{PODS}/ok",
        {"content": b"{}", "headers": {"Content-Type": "application/json"}},
        415,
        "UnsupportedMediaType",
        "merge-patch",
    ),
    (
        "name-mismatch",
        "PUT",
        f"{PODS}/ok",
        {"json": _pod(metadata={"name": "other"})},
        400,
        "BadRequest",
        "does not match the name",
    ),
    (
        "update-missing",
        "PUT",
        f"{PODS}/ghost",
        {"json": _pod(metadata={"name": "ghost"})},
        404,
        "NotFound",
        'pods "ghost" not found',
    ),
    (
        "bad-grace",
        "DELETE",
        f"{PODS}/ok",
        {"params": {"gracePeriodSeconds": "x"}},
        400,
        "BadRequest",
        "gracePeriodSeconds",
    ),
    (
        "bad-propagation",
        "DELETE",
        f"{PODS}/ok",
        {"params": {"propagationPolicy": "Sometimes"}},
        400,
        "BadRequest",
        "propagationPolicy",
    ),
    (
        "immutable-pod-spec",
        "PUT",
        f"{PODS}/ok",
        {"json": {**GOOD_POD, "spec": {"containers": [{"name": "c", "image": "other"}], "restartPolicy": "Never"}}},
        422,
        "Invalid",
        "spec",
    ),
]


@pytest.fixture(scope="module")
def seeded(server: RunningApiServer, http: httpx.Client) -> httpx.Client:
    assert http.post(PODS, json=GOOD_POD).status_code == 201
    return http


@pytest.mark.parametrize(
    ("method", "path", "kw", "code", "reason", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    seeded: httpx.Client, method: str, path: str, kw: dict[str, Any], code: int, reason: str, text: str
) -> None:
    before = seeded.get("/api/v1/pods").json()["metadata"]["resourceVersion"]
    r = seeded.request(method, path, **kw)
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["reason"] == reason and body["code"] == code
    assert text in body["message"], body["message"]
    assert "Traceback" not in r.text
    if code == 422:
        assert body["details"]["causes"], body  # kubectl builds its message from the causes
    after = seeded.get("/api/v1/pods").json()["metadata"]["resourceVersion"]
    assert after == before, "a refused request changed the store"
    assert seeded.get("/readyz").status_code == 200


def test_invalid_message_is_kubectl_shaped(seeded: httpx.Client) -> None:
    r = seeded.post(PODS, json=_pod(spec={}))
    d = r.json()["details"]
    assert d["kind"] == "Pod" and d["name"] == "bad"
    assert any(c["field"] == "spec.containers" and c["reason"] == "FieldValueRequired" for c in d["causes"])
