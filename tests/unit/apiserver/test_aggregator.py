"""Aggregation layer pure parts: the Available condition's checks, condition updates, authorizer attributes, Table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.api import registry, tables
from controlplane.apiserver.aggregator import request_attributes, resolve, set_condition

APISVC: dict[str, Any] = {
    "metadata": {"name": "v1beta1.metrics.k8s.io", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {
        "group": "metrics.k8s.io",
        "version": "v1beta1",
        "service": {"namespace": "kube-system", "name": "ms", "port": 443},
    },
}
SVC = {"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 4443}]}}
EPS = {"subsets": [{"addresses": [{"ip": "192.168.56.10"}], "ports": [{"name": "https", "port": 4443}]}]}


def test_local_apiservice_is_always_available() -> None:
    cond, url = resolve({"spec": {"group": "apps", "version": "v1"}}, None, None)
    assert (cond["status"], cond["reason"], cond["message"], url) == (
        "True",
        "Local",
        "Local APIServices are always available",
        None,
    )


@pytest.mark.parametrize(
    ("svc", "eps", "reason", "message"),
    [
        (None, None, "ServiceNotFound", 'service/ms in "kube-system" is not present'),
        (
            {"spec": {"ports": [{"port": 80}]}},
            None,
            "ServicePortError",
            'service/ms in "kube-system" is not listening on port 443',
        ),
        (SVC, None, "EndpointsNotFound", 'cannot find endpoints for service/ms in "kube-system"'),
        (
            SVC,
            {"subsets": []},
            "MissingEndpoints",
            'endpoints for service/ms in "kube-system" have no addresses with port name "https"',
        ),
    ],
)
def test_unavailable_reasons(svc: Any, eps: Any, reason: str, message: str) -> None:
    cond, url = resolve(APISVC, svc, eps)
    assert (cond["status"], cond["reason"], cond["message"], url) == ("False", reason, message, None)


def test_endpoint_found() -> None:
    cond, url = resolve(APISVC, SVC, EPS)
    assert cond["reason"] == "Passed" and url == "https://192.168.56.10:4443"


def test_set_condition_keeps_transition_time_unless_status_flips() -> None:
    obj: dict[str, Any] = {"metadata": {}}
    assert set_condition(obj, {"type": "Available", "status": "False", "reason": "A", "message": "a"}, "t1")
    assert not set_condition(obj, {"type": "Available", "status": "False", "reason": "A", "message": "a"}, "t2")
    assert set_condition(obj, {"type": "Available", "status": "False", "reason": "B", "message": "b"}, "t3")
    assert obj["status"]["conditions"][0]["lastTransitionTime"] == "t1"
    assert set_condition(obj, {"type": "Available", "status": "True", "reason": "Passed", "message": "ok"}, "t4")
    assert obj["status"]["conditions"] == [
        {"type": "Available", "status": "True", "reason": "Passed", "message": "ok", "lastTransitionTime": "t4"}
    ]


def test_request_attributes() -> None:
    seg = ["apis", "metrics.k8s.io", "v1beta1", "namespaces", "default", "pods", "web"]
    a = request_attributes("GET", seg, {})
    assert (a.verb, a.group, a.resource, a.namespace, a.name) == ("get", "metrics.k8s.io", "pods", "default", "web")
    a = request_attributes("GET", ["apis", "metrics.k8s.io", "v1beta1", "nodes"], {"watch": ["true"]})
    assert (a.verb, a.resource, a.name) == ("watch", "nodes", "")
    a = request_attributes("GET", ["apis", "metrics.k8s.io", "v1beta1"], {})
    assert not a.resource_request and a.path == "/apis/metrics.k8s.io/v1beta1"


def test_table_columns_as_kubectl_shows() -> None:
    res = registry.APISERVICES
    obj = {
        **APISVC,
        "status": {"conditions": [{"type": "Available", "status": "False", "reason": "FailedDiscoveryCheck"}]},
    }
    local = {"metadata": {"name": "v1.apps", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}, "status": {
        "conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}}  # fmt: skip
    t = tables.to_table(res, [obj, local], list_rv="1", now=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Service", "Available", "Age"]
    assert [r["cells"] for r in t["rows"]] == [
        ["v1beta1.metrics.k8s.io", "kube-system/ms", "False (FailedDiscoveryCheck)", "5m"],
        ["v1.apps", "Local", "True", "5m"],
    ]


def _causes(obj: dict[str, Any]) -> list[tuple[str, str]]:
    from controlplane.api.validation import validate

    return [(c.field, c.message) for c in validate(registry.APISERVICES, obj)]


def test_validation_as_kube_aggregator() -> None:
    ok = {**APISVC, "spec": {**APISVC["spec"], "groupPriorityMinimum": 100, "versionPriority": 100}}
    assert _causes(ok) == []
    local = {
        "metadata": {"name": "v1."},
        "spec": {"group": "", "version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 15},
    }
    assert _causes(local) == []
    bad = {
        "metadata": {"name": "v1beta1.metrics"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "versionPriority": 100},
    }
    causes = _causes(bad)
    assert (
        "metadata.name",
        'Invalid value: "v1beta1.metrics": must be `spec.version+"."+spec.group`: "v1beta1.metrics.k8s.io"',
    ) in causes
    assert ("spec.groupPriorityMinimum", "Invalid value: 0: must be positive and less than 20000") in causes
    assert ("spec.service.namespace", "Required value") not in causes  # local: no service needed
