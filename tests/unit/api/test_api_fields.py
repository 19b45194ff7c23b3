"""Selectable fields per kind, checked with the selectors real clients send."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api import errors, registry
from controlplane.api.fields import check_field_selector, field_set, matcher, supported_fields
from controlplane.api.registry import Resource
from controlplane.api.selectors import FieldSelector

POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "kl-node1", "restartPolicy": "Always", "schedulerName": "default-scheduler"},
    "status": {"phase": "Running", "podIP": "10.244.1.5"},
}
EVENT: dict[str, Any] = {
    "metadata": {"name": "web-1.abc", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"},
    "reason": "Scheduled",
    "type": "Normal",
    "source": {"component": "default-scheduler"},
}


@pytest.mark.parametrize(
    ("resource", "obj", "selector", "expected"),
    [
        # describe node
        (registry.PODS, POD, "spec.nodeName=kl-node1,status.phase!=Succeeded,status.phase!=Failed", True),
        (
            registry.PODS,
            {**POD, "status": {"phase": "Succeeded"}},
            "spec.nodeName=kl-node1,status.phase!=Succeeded",
            False,
        ),
        # noded and the scheduler
        (registry.PODS, POD, "spec.nodeName=kl-node2", False),
        (registry.PODS, {**POD, "spec": {}}, "spec.nodeName=", True),
        (registry.PODS, POD, "spec.hostNetwork=false", True),
        (registry.PODS, POD, "status.podIP=10.244.1.5", True),
        # kubectl delete / wait
        (registry.PODS, POD, "metadata.name=web-1", True),
        (registry.PODS, POD, "metadata.namespace=default", True),
        # describe's events query
        (
            registry.EVENTS,
            EVENT,
            "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.uid=u-1",
            True,
        ),
        (registry.EVENTS, EVENT, "involvedObject.kind=Deployment", False),
        (registry.EVENTS, EVENT, "source=default-scheduler,type=Normal,reason=Scheduled", True),
        (registry.NODES, {"metadata": {"name": "n"}, "spec": {}}, "spec.unschedulable=false", True),
        (registry.NODES, {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}, "spec.unschedulable=true", True),
        (registry.SECRETS, {"metadata": {"name": "s"}, "type": "Opaque"}, "type=Opaque", True),
        (registry.NAMESPACES, {"metadata": {"name": "x"}, "status": {"phase": "Active"}}, "status.phase=Active", True),
        (registry.REPLICASETS, {"metadata": {"name": "r"}, "status": {}}, "status.replicas=0", True),
        (registry.JOBS, {"metadata": {"name": "j"}, "status": {"successful": 2}}, "status.successful=2", True),
        (registry.SERVICES, {"metadata": {"name": "s"}, "spec": {"type": "NodePort"}}, "spec.type=NodePort", True),
    ],
)
def test_field_selector_on_kind(resource: Resource, obj: dict[str, Any], selector: str, expected: bool) -> None:
    sel = FieldSelector.parse(selector)
    check_field_selector(resource, sel)
    assert sel.matches(field_set(resource, obj)) is expected


@pytest.mark.parametrize(
    ("resource", "selector", "bad"),
    [
        (registry.PODS, "spec.containers=x", "spec.containers"),
        (registry.DEPLOYMENTS, "spec.nodeName=x", "spec.nodeName"),
        (registry.NODES, "status.phase=Ready", "status.phase"),
        (registry.EVENTS, "metadata.name=x,message=hi", "message"),
    ],
)
def test_unsupported_field_is_bad_request(resource: Resource, selector: str, bad: str) -> None:
    with pytest.raises(errors.BadRequest) as ei:
        check_field_selector(resource, FieldSelector.parse(selector))
    assert ei.value.message == f"field label not supported: {bad}"


@pytest.mark.parametrize("resource", registry.RESOURCES, ids=lambda r: r.plural)
def test_every_kind_supports_metadata_fields(resource: Resource) -> None:
    assert {"metadata.name", "metadata.namespace"} <= set(supported_fields(resource))
    fs = field_set(resource, {"metadata": {"name": "x"}})
    assert fs["metadata.name"] == "x"
    assert fs["metadata.namespace"] == ""


@pytest.mark.parametrize(
    "selector",
    [
        "",
        "spec.nodeName=kl-node1",
        "spec.nodeName!=kl-node1",
        "status.phase!=Succeeded,status.phase!=Failed",
        "metadata.name=web-2",
    ],
)
def test_matcher_agrees_with_field_set(selector: str) -> None:
    sel = FieldSelector.parse(selector)
    match = matcher(registry.PODS, sel)
    for obj in (POD, {**POD, "status": {"phase": "Failed"}}, {"metadata": {"name": "web-2"}}, {}):
        assert match(obj) == sel.matches(field_set(registry.PODS, obj))


def test_matcher_rejects_unknown_fields() -> None:
    with pytest.raises(errors.BadRequest, match=r"field label not supported: spec\.image"):
        matcher(registry.PODS, FieldSelector.parse("spec.image=x"))
