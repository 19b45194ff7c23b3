"""Metrics server: parsing kubelet text, CPU-rate math, quantities, NodeMetrics/PodMetrics shapes, authn/authz."""

from __future__ import annotations

from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from controlplane import pki
from controlplane.api import errors
from controlplane.client.delegated import RequestHeader, UserInfo, user_from_request_headers
from controlplane.metricsserver.server import MetricsAPI, SarAuthorizer, parse_path
from controlplane.metricsserver.storage import (
    MetricsStore,
    NodeBatch,
    Point,
    cpu_quantity,
    memory_quantity,
    parse_resource_metrics,
    rate,
    window,
)

KUBELET_TEXT = """\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 10.5 1000000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 5.24288e+07 1000000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="default",pod="web"} 900
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 100 1000000
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1073741824 1000000
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
"""


def test_parse_kubelet_text_uses_sample_timestamps() -> None:
    b = parse_resource_metrics(KUBELET_TEXT, scrape_time=5.0)
    assert b.node == Point(1000.0, 100.0, 1073741824.0, 1000.0)
    assert b.containers == {("default", "web", "app"): Point(1000.0, 10.5, 52428800.0, 1000.0, 900.0)}


def test_rate_and_resets() -> None:
    assert rate(Point(10, 1.0, 0), Point(15, 6.0, 0)) == 1.0
    assert rate(Point(10, 1.0, 0), Point(15, 0.5, 0)) is None  # counter went down
    assert rate(Point(10, 1.0, 0), Point(10, 2.0, 0)) is None
    assert rate(Point(10, 1.0, 0, 0, 1), Point(15, 6.0, 0, 0, 2)) is None  # restarted container


@pytest.mark.parametrize(
    ("cores", "text"),
    [(1.0, "1"), (0.25, "250m"), (0.002410117, "2410117n"), (0.000012, "12u"), (0, "0"), (2.5, "2500m")],
)
def test_cpu_quantity(cores: float, text: str) -> None:
    assert cpu_quantity(cores) == text


@pytest.mark.parametrize(
    ("b", "text"), [(36921344, "36056Ki"), (50 << 20, "50Mi"), (1 << 30, "1Gi"), (1000, "1000"), (0, "0")]
)
def test_memory_quantity(b: int, text: str) -> None:
    assert memory_quantity(b) == text


def test_window() -> None:
    assert window(5.0) == "5s"
    assert window(4.997) == "4.997s"
    assert window(60.0) == "1m0s"


NODE = {"metadata": {"name": "kl-node1", "labels": {"kubernetes.io/hostname": "kl-node1"}}}
POD = {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}}
OTHER = {"metadata": {"name": "db", "namespace": "prod", "labels": {"app": "db"}}}


def _api(points: int = 2) -> MetricsAPI:
    store = MetricsStore()
    for i in range(points):
        t = 1000.0 + 5 * i
        store.store(
            "kl-node1",
            NodeBatch(
                Point(t, 100.0 + 10 * i, 1 << 30, t),  # 2 cores
                {
                    ("default", "web", "app"): Point(t, 10.0 + 5 * i, 50 << 20, t),  # 1 core
                    ("default", "web", "side"): Point(t, 1.0, 1 << 20, t),  # idle
                },
            ),
        )
    return MetricsAPI(store, lambda: [NODE], lambda: [POD, OTHER], clock=lambda: 2000.0)


def test_node_metrics_shape() -> None:
    m = _api().serve(parse_path("/apis/metrics.k8s.io/v1beta1/nodes/kl-node1") or pytest.fail(), {})
    assert m == {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": "kl-node1",
            "creationTimestamp": "1970-01-01T00:33:20Z",
            "labels": {"kubernetes.io/hostname": "kl-node1"},
        },
        "timestamp": "1970-01-01T00:16:45Z",
        "window": "5s",
        "usage": {"cpu": "2", "memory": "1Gi"},
    }


def test_pod_metrics_list_namespaced_and_selector() -> None:
    api = _api()
    lst = api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/pods") or pytest.fail(), {})
    assert lst["kind"] == "PodMetricsList" and [i["metadata"]["name"] for i in lst["items"]] == ["web"]
    web = lst["items"][0]
    assert web["containers"] == [
        {"name": "app", "usage": {"cpu": "1", "memory": "50Mi"}},
        {"name": "side", "usage": {"cpu": "0", "memory": "1Mi"}},
    ]
    assert web["metadata"]["labels"] == {"app": "web"} and web["window"] == "5s"
    ns = api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/prod/pods") or pytest.fail(), {})
    assert ns["items"] == []
    sel = api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/pods") or pytest.fail(), {"labelSelector": ["app=db"]})
    assert sel["items"] == []
    with pytest.raises(errors.NotFound, match=r'podmetrics\.metrics\.k8s\.io "db" not found'):
        api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/prod/pods/db") or pytest.fail(), {})
    with pytest.raises(errors.BadRequest):
        api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/pods") or pytest.fail(), {"labelSelector": ["a in (("]})


def test_one_point_is_not_served_yet() -> None:
    api = _api(points=1)
    assert api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/nodes") or pytest.fail(), {})["items"] == []
    with pytest.raises(errors.NotFound, match=r'nodemetrics\.metrics\.k8s\.io "kl-node1" not found'):
        api.serve(parse_path("/apis/metrics.k8s.io/v1beta1/nodes/kl-node1") or pytest.fail(), {})


def test_discovery_documents_and_paths() -> None:
    api = _api()
    rl = api.serve(parse_path("/apis/metrics.k8s.io/v1beta1") or pytest.fail(), {})
    assert {r["name"]: r["kind"] for r in rl["resources"]} == {"nodes": "NodeMetrics", "pods": "PodMetrics"}
    assert (
        api.serve(parse_path("/apis/metrics.k8s.io") or pytest.fail(), {})["preferredVersion"]["version"] == "v1beta1"
    )
    assert parse_path("/apis/metrics.k8s.io/v1/nodes") is None
    assert parse_path("/apis/apps/v1/deployments") is None
    assert parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/x/pods/y/z") is None


def test_containers_that_went_away_are_forgotten() -> None:
    store = MetricsStore()
    store.store("n", NodeBatch(None, {("d", "p", "a"): Point(1, 1, 1)}))
    store.store("n", NodeBatch(None, {}))
    assert store.pod_metrics({"metadata": {"name": "p", "namespace": "d"}}, 0) is None


def _headers(pairs: list[tuple[str, str]]) -> Message:
    m = Message()
    for k, v in pairs:
        m[k] = v
    return m


def test_request_headers() -> None:
    u = user_from_request_headers(
        _headers(
            [
                ("X-Remote-User", "alice"),
                ("X-Remote-Group", "dev"),
                ("X-Remote-Group", "system:authenticated"),
                ("X-Remote-Extra-Scopes%2Fa", "x"),
            ]
        )
    )
    assert u == UserInfo("alice", ("dev", "system:authenticated"), extra={"scopes/a": ["x"]})
    assert user_from_request_headers(_headers([])) is None


def _peer(pem: bytes) -> dict[str, Any]:
    """The certificate as ``ssl.SSLSocket.getpeercert()`` decodes it (subject/issuer RDN tuples)."""
    c = x509.load_pem_x509_certificate(pem)
    keys = {"CN": "commonName", "O": "organizationName"}

    def name(n: x509.Name) -> tuple[Any, ...]:
        return tuple(((keys[a.rfc4514_attribute_name], str(a.value)),) for a in n)

    return {"subject": name(c.subject), "issuer": name(c.issuer)}


def test_front_proxy_cert_uses_headers_cluster_cert_does_not(tmp_path: Path) -> None:
    pki.ensure_cluster_pki(tmp_path)
    a = pki.ensure_aggregator_pki(tmp_path)
    issuers = [_peer(a.front_proxy_ca_cert.read_bytes())["subject"]]
    hdrs = _headers([("X-Remote-User", "alice"), ("X-Remote-Group", "dev")])
    fp = _peer(a.front_proxy_client_cert.read_bytes())
    auth = RequestHeader(tuple(issuers))
    assert auth.user(fp, hdrs) == UserInfo("alice", ("dev", "system:authenticated"))
    # a front-proxy certificate whose CN is not an allowed name is refused
    assert RequestHeader(tuple(issuers), ("someone-else",)).user(fp, hdrs) is None
    # a cluster-CA certificate is its own identity: the headers are ignored (no impersonation)
    admin = _peer((tmp_path / "pki" / "admin.crt").read_bytes())
    assert auth.user(admin, hdrs) == UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
    assert auth.user(None, hdrs) is None
    assert auth.user({}, hdrs) is None  # no certificate presented
    # the issuers as the server reads them from the CA file are the ones TLS names
    assert RequestHeader.from_ca_file(a.front_proxy_ca_cert).issuers == tuple(issuers)


def test_sar_review_body_cache_and_denial() -> None:
    sent: list[dict[str, Any]] = []
    answer = {"allowed": False, "reason": "no RBAC rule"}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        sent.append(body)
        return {**body, "status": answer}

    now = [0.0]
    az = SarAuthorizer(post, clock=lambda: now[0])
    route = parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web")
    user = UserInfo("alice", ("dev",), extra={"k": ["v"]})
    assert az.authorize(user, "get", route, "/x") == (False, "no RBAC rule")
    assert sent[0]["spec"] == {
        "user": "alice",
        "groups": ["dev"],
        "extra": {"k": ["v"]},
        "resourceAttributes": {
            "verb": "get", "group": "metrics.k8s.io", "version": "v1beta1", "resource": "pods",
            "namespace": "default", "name": "web",
        },
    }  # fmt: skip
    answer = {"allowed": True}
    assert az.authorize(user, "get", route, "/x") == (False, "no RBAC rule")  # cached
    now[0] = 11.0
    assert az.authorize(user, "get", route, "/x") == (True, "")
    assert len(sent) == 2
    assert az.review(user, "get", parse_path("/apis/metrics.k8s.io/v1beta1"), "/apis/metrics.k8s.io/v1beta1")["spec"][
        "nonResourceAttributes"
    ] == {"path": "/apis/metrics.k8s.io/v1beta1", "verb": "get"}


def test_a_failed_review_is_a_denial_naming_the_cause_and_not_cached() -> None:
    calls = [0]

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 1:
            raise errors.NotFound("the server could not find the requested resource")
        return {**body, "status": {"allowed": True}}

    az = SarAuthorizer(post)
    allowed, reason = az.authorize(UserInfo("bob"), "list", None, "/apis")
    assert not allowed and "the authorizer could not be reached" in reason and "could not find" in reason
    assert az.authorize(UserInfo("bob"), "list", None, "/apis") == (True, "")  # asked again, not cached
    assert calls[0] == 2
