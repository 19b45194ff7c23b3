"""Wire decoding of the REST client against httpx.MockTransport (no server)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controlplane.api import errors
from controlplane.api.registry import LEASES, NODES, PODS
from controlplane.client.kubeconfig import KubeconfigError, load_kubeconfig
from controlplane.client.rest import ApiClient


def client_for(handler: Any) -> ApiClient:
    return ApiClient("http://api.test", transport=httpx.MockTransport(handler))


def test_paths_methods_and_bodies() -> None:
    seen: list[tuple[str, str, str, bytes]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.url.path, req.headers.get("content-type", ""), req.content))
        return httpx.Response(200, json={"kind": "Pod", "metadata": {"name": "p"}})

    c = client_for(handler)
    pod = {"metadata": {"name": "p", "namespace": "ns1"}}
    c.get(PODS, "p", "ns1")
    c.get(NODES, "n1")
    c.create(PODS, pod)
    c.update(PODS, pod)
    c.update_status(PODS, pod)
    c.patch(PODS, "p", {"metadata": {"labels": {"a": "b"}}}, namespace="ns1")
    c.patch(PODS, "p", [{"op": "add", "path": "/x", "value": 1}], namespace="ns1", patch_type="json")
    c.post_subresource(PODS, "p", "binding", {"target": {"name": "n1"}}, namespace="ns1")
    c.delete(LEASES, "l", "kube-system", grace_period_seconds=0, propagation_policy="Foreground")
    assert [(m, p, ct) for m, p, ct, _ in seen] == [
        ("GET", "/api/v1/namespaces/ns1/pods/p", ""),
        ("GET", "/api/v1/nodes/n1", ""),
        ("POST", "/api/v1/namespaces/ns1/pods", "application/json"),
        ("PUT", "/api/v1/namespaces/ns1/pods/p", "application/json"),
        ("PUT", "/api/v1/namespaces/ns1/pods/p/status", "application/json"),
        ("PATCH", "/api/v1/namespaces/ns1/pods/p", "application/merge-patch+json"),
        ("PATCH", "/api/v1/namespaces/ns1/pods/p", "application/json-patch+json"),
        ("POST", "/api/v1/namespaces/ns1/pods/p/binding", "application/json"),
        ("DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l", "application/json"),
    ]
    assert orjson.loads(seen[-1][3]) == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
    }


def test_list_sends_selectors_and_omits_empty_params() -> None:
    urls: list[httpx.URL] = []

    def handler(req: httpx.Request) -> httpx.Response:
        urls.append(req.url)
        return httpx.Response(200, json={"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": []})

    c = client_for(handler)
    out = c.list(PODS, "default", label_selector="app=web", field_selector="spec.nodeName=")
    assert out["metadata"]["resourceVersion"] == "7"
    assert urls[0].path == "/api/v1/namespaces/default/pods"
    assert dict(urls[0].params) == {"labelSelector": "app=web", "fieldSelector": "spec.nodeName="}
    c.list(PODS)
    assert urls[1].path == "/api/v1/pods" and dict(urls[1].params) == {}


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (404, "NotFound", errors.NotFound),
        (409, "Conflict", errors.Conflict),
        (409, "AlreadyExists", errors.AlreadyExists),
        (410, "Expired", errors.Gone),
        (422, "Invalid", errors.Invalid),
        (500, "InternalError", errors.ApiError),
    ],
)
def test_errors_become_api_errors(code: int, reason: str, cls: type[errors.ApiError]) -> None:
    status = {"kind": "Status", "status": "Failure", "message": f"it is {reason}", "reason": reason, "code": code}
    c = client_for(lambda req: httpx.Response(code, json=status))
    with pytest.raises(cls) as ei:
        c.get(PODS, "x", "default")
    assert type(ei.value) is cls
    assert ei.value.message == f"it is {reason}"


def test_non_json_error_body_keeps_the_text() -> None:
    c = client_for(lambda req: httpx.Response(503, text="upstream down"))
    with pytest.raises(errors.ServiceUnavailable, match="upstream down"):
        c.get(PODS, "x", "default")


def test_watch_decodes_lines_across_chunks_and_raises_error_events() -> None:
    events = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}},
        {"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "7"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}},
    ]
    body = b"".join(orjson.dumps(e) + b"\n" for e in events)
    # Split at awkward places: inside an object and right at the newline.
    chunks = [body[:7], body[7:60], body[60:61], body[61:]]
    params: list[dict[str, str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        params.append(dict(req.url.params))
        return httpx.Response(200, stream=httpx.ByteStream(b"".join(chunks)))

    c = client_for(handler)
    got = []
    with pytest.raises(errors.Gone, match="too old"):
        for ev in c.watch(PODS, "default", resource_version="4", timeout_seconds=30):
            got.append((ev.type, ev.object["metadata"]["resourceVersion"]))
    assert got == [("ADDED", "5"), ("BOOKMARK", "6"), ("DELETED", "7")]
    assert params[0] == {
        "watch": "true",
        "resourceVersion": "4",
        "timeoutSeconds": "30",
        "allowWatchBookmarks": "true",
    }


def test_watch_http_error_is_raised_at_open() -> None:
    c = client_for(lambda req: httpx.Response(403, json={"reason": "Forbidden", "message": "no", "code": 403}))
    with pytest.raises(errors.Forbidden):
        c.watch(PODS)


def test_token_is_sent_as_bearer() -> None:
    auth: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        auth.append(req.headers.get("authorization", ""))
        return httpx.Response(200, json={})

    c = ApiClient("http://api.test", token="s3cret", transport=httpx.MockTransport(handler))
    c.get(NODES, "n")
    assert auth == ["Bearer s3cret"]


def test_kubeconfig_inline_data_and_relative_files(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("CA")
    kc = tmp_path / "kc.yaml"
    kc.write_text(
        f"""
apiVersion: v1
kind: Config
current-context: lab
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: ca.crt
users:
- name: u
  user:
    client-certificate-data: {base64.b64encode(b"CERT").decode()}
    client-key-data: {base64.b64encode(b"KEY").decode()}
    token: tok
contexts:
- name: lab
  context: {{cluster: c, user: u, namespace: team}}
"""
    )
    cfg = load_kubeconfig(kc)
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.ca_file == str(tmp_path / "ca.crt")
    assert (cfg.cert_data, cfg.key_data, cfg.token, cfg.namespace) == (b"CERT", b"KEY", "tok", "team")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list", "not a mapping"),
        ("current-context: x\ncontexts: []\nclusters: []", "no context named 'x'"),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: []",
            "no cluster named 'c'",
        ),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
            "clusters: [{name: c, cluster: {server: 'https://h', certificate-authority-data: '!!'}}]",
            "certificate-authority-data is not valid base64",
        ),
    ],
)
def test_kubeconfig_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    kc = tmp_path / "kc"
    kc.write_text(text)
    with pytest.raises(KubeconfigError, match=message):
        load_kubeconfig(kc)


def test_kubeconfig_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="No such file"):
        load_kubeconfig(tmp_path / "nope")
