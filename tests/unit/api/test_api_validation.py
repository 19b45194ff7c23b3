"""Validation: field paths, reasons and messages as kube-apiserver reports them.

Each case defaults the object first, as the API server does, then validates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from controlplane.api import errors, registry
from controlplane.api.defaults import apply_defaults
from controlplane.api.quantity import parse_quantity
from controlplane.api.registry import Resource
from controlplane.api.validation import validate, validate_or_raise

Mutator = Callable[[dict[str, Any]], None]


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "ports": [{"containerPort": 80, "name": "http"}]}]
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod()["spec"]},
        },
    }


def statefulset() -> dict[str, Any]:
    d = deployment()
    d["kind"] = "StatefulSet"
    d["spec"]["serviceName"] = "web"
    return d


def job() -> dict[str, Any]:
    t = pod()["spec"]
    t["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555"},
        "spec": {"template": {"spec": t}},
    }


def _defaulted(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    apply_defaults(resource, obj)
    return obj


def _set(path: str, value: Any) -> Mutator:
    def m(o: dict[str, Any]) -> None:
        cur: Any = o
        parts = path.split(".")
        for p in parts[:-1]:
            cur = cur[int(p)] if p.isdigit() else cur[p]
        last = parts[-1]
        if value is _DEL:
            del cur[int(last) if last.isdigit() else last]
        elif last.isdigit():
            cur[int(last)] = value
        else:
            cur[last] = value

    return m


_DEL = object()


@pytest.mark.parametrize(
    ("resource", "make"),
    [
        (registry.PODS, pod),
        (registry.SERVICES, service),
        (registry.DEPLOYMENTS, deployment),
        (registry.STATEFULSETS, statefulset),
        (registry.JOBS, job),
        (registry.NAMESPACES, lambda: {"metadata": {"name": "team-a"}}),
        (registry.NODES, lambda: {"metadata": {"name": "kl-node1"}, "spec": {"podCIDR": "10.244.1.0/24"}}),
        (registry.CONFIGMAPS, lambda: {"metadata": {"name": "cfg", "namespace": "d"}, "data": {"a.conf": "x"}}),
        (registry.SECRETS, lambda: {"metadata": {"name": "s", "namespace": "d"}, "data": {"k": "aGk="}}),
        (
            registry.ENDPOINTSLICES,
            lambda: {
                "metadata": {"name": "web-abc", "namespace": "d"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.1.5"]}],
                "ports": [{"port": 8080}],
            },
        ),
        (
            registry.LEASES,
            lambda: {
                "metadata": {"name": "kl-node1", "namespace": "kube-node-lease"},
                "spec": {"leaseDurationSeconds": 40},
            },
        ),
    ],
)
def test_valid_objects_pass(resource: Resource, make: Callable[[], dict[str, Any]]) -> None:
    assert validate(resource, _defaulted(resource, make())) == []


@pytest.mark.parametrize(
    ("resource", "make", "mutate", "field", "reason", "message"),
    [
        # names
        (
            registry.PODS,
            pod,
            _set("metadata.name", "Web_1"),
            "metadata.name",
            "FieldValueInvalid",
            'Invalid value: "Web_1": a lowercase RFC 1123 subdomain',
        ),
        (
            registry.PODS,
            pod,
            _set("metadata.name", _DEL),
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        ),
        (
            registry.PODS,
            pod,
            _set("metadata.name", "a" * 254),
            "metadata.name",
            "FieldValueInvalid",
            "must be no more than 253 characters",
        ),
        (
            registry.SERVICES,
            service,
            _set("metadata.name", "1web"),
            "metadata.name",
            "FieldValueInvalid",
            "a DNS-1035 label",
        ),
        (
            registry.SERVICES,
            service,
            _set("metadata.name", "web.x"),
            "metadata.name",
            "FieldValueInvalid",
            "a DNS-1035 label",
        ),
        (
            registry.NAMESPACES,
            lambda: {"metadata": {"name": "a.b"}},
            lambda o: None,
            "metadata.name",
            "FieldValueInvalid",
            "a lowercase RFC 1123 label",
        ),
        (
            registry.PODS,
            pod,
            _set("metadata.namespace", _DEL),
            "metadata.namespace",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.NODES,
            lambda: {"metadata": {"name": "n", "namespace": "x"}},
            lambda o: None,
            "metadata.namespace",
            "FieldValueForbidden",
            "Forbidden: not allowed on this type",
        ),
        # labels and annotations
        (
            registry.PODS,
            pod,
            _set("metadata.labels", {"bad key": "x"}),
            "metadata.labels",
            "FieldValueInvalid",
            'Invalid value: "bad key": name part must consist of',
        ),
        (
            registry.PODS,
            pod,
            _set("metadata.labels", {"app": "-x"}),
            "metadata.labels",
            "FieldValueInvalid",
            'Invalid value: "-x": a valid label must be',
        ),
        (
            registry.PODS,
            pod,
            _set("metadata.annotations", {"a": "x" * 262145}),
            "metadata.annotations",
            "FieldValueTooLong",
            "Too long: must have at most 262144 bytes",
        ),
        # pod spec
        (registry.PODS, pod, _set("spec.containers", []), "spec.containers", "FieldValueRequired", "Required value"),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.image", _DEL),
            "spec.containers[0].image",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.name", _DEL),
            "spec.containers[0].name",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.PODS,
            pod,
            lambda o: o["spec"]["containers"].append({"name": "main", "image": "x"}),
            "spec.containers[1].name",
            "FieldValueDuplicate",
            'Duplicate value: "main"',
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.ports.0.containerPort", 0),
            "spec.containers[0].ports[0].containerPort",
            "FieldValueInvalid",
            "Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.ports.0.containerPort", 70000),
            "spec.containers[0].ports[0].containerPort",
            "FieldValueInvalid",
            "must be between 1 and 65535",
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.ports.0.protocol", "HTTP"),
            "spec.containers[0].ports[0].protocol",
            "FieldValueNotSupported",
            'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        ),
        (
            registry.PODS,
            pod,
            _set("spec.restartPolicy", "Sometimes"),
            "spec.restartPolicy",
            "FieldValueNotSupported",
            'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.imagePullPolicy", "Maybe"),
            "spec.containers[0].imagePullPolicy",
            "FieldValueNotSupported",
            "Unsupported value",
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.volumeMounts", [{"name": "data", "mountPath": "/d"}]),
            "spec.containers[0].volumeMounts[0].name",
            "FieldValueNotFound",
            'Not found: "data"',
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.env", [{"name": "1X", "value": "v"}]),
            "spec.containers[0].env[0].name",
            "FieldValueInvalid",
            "a valid environment variable name",
        ),
        (registry.PODS, pod, _set("spec.containers", "nope"), "spec.containers", "FieldValueInvalid", "must be a list"),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.resources", {"requests": {"cpu": "lots"}}),
            "spec.containers[0].resources.requests[cpu]",
            "FieldValueInvalid",
            "quantities must match the regular expression",
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            "spec.containers[0].resources.requests",
            "FieldValueInvalid",
            'Invalid value: "2": must be less than or equal to cpu limit of 1',
        ),
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.resources", {"limits": {"memory": "-1Mi"}}),
            "spec.containers[0].resources.limits[memory]",
            "FieldValueInvalid",
            "must be greater than or equal to 0",
        ),
        (
            registry.PODS,
            pod,
            _set("spec.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
            "spec.tolerations[0].operator",
            "FieldValueInvalid",
            "value must be empty",
        ),
        # services
        (registry.SERVICES, service, _set("spec.ports", []), "spec.ports", "FieldValueRequired", "Required value"),
        (
            registry.SERVICES,
            service,
            _set("spec.type", "Magic"),
            "spec.type",
            "FieldValueNotSupported",
            'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.ports.0.port", 0),
            "spec.ports[0].port",
            "FieldValueInvalid",
            "must be between 1 and 65535, inclusive",
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.ports.0.targetPort", 0),
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
            "must be between 1 and 65535, inclusive",
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.ports.0.targetPort", "Bad_Name"),
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
            "alpha-numeric",
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.ports.0.nodePort", 30080),
            "spec.ports[0].nodePort",
            "FieldValueForbidden",
            "may not be used when `type` is 'ClusterIP'",
        ),
        (
            registry.SERVICES,
            lambda: {**service(), "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}},
            lambda o: None,
            "spec.ports[0].nodePort",
            "FieldValueInvalid",
            "The range of valid ports is 30000-32767",
        ),
        (
            registry.SERVICES,
            service,
            lambda o: o["spec"]["ports"].append({"port": 80, "name": "b"}),
            "spec.ports[0].name",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.ports", [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
            "spec.ports[1]",
            "FieldValueDuplicate",
            "Duplicate value",
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.clusterIP", "10.96.0.x"),
            "spec.clusterIP",
            "FieldValueInvalid",
            "must be a valid IP address",
        ),
        (
            registry.SERVICES,
            service,
            _set("spec.selector", {"app": "a b"}),
            "spec.selector",
            "FieldValueInvalid",
            "a valid label must be",
        ),
        # workloads
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.selector", _DEL),
            "spec.selector",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.selector", {}),
            "spec.selector",
            "FieldValueInvalid",
            "empty selector is invalid for deployment",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.template.metadata.labels", {"app": "db"}),
            "spec.template.metadata.labels",
            "FieldValueInvalid",
            "`selector` does not match template `labels`",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.replicas", -1),
            "spec.replicas",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.replicas", "3"),
            "spec.replicas",
            "FieldValueInvalid",
            "must be an integer",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.template.spec.restartPolicy", "Never"),
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            'Unsupported value: "Never": supported values: "Always"',
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.template.spec.containers.0.image", ""),
            "spec.template.spec.containers[0].image",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.strategy", {"type": "Recreate", "rollingUpdate": {}}),
            "spec.strategy.rollingUpdate",
            "FieldValueForbidden",
            "may not be specified",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
            "spec.strategy.rollingUpdate.maxUnavailable",
            "FieldValueInvalid",
            "may not be 0 when `maxSurge` is 0",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "150%"}}),
            "spec.strategy.rollingUpdate.maxSurge",
            "FieldValueInvalid",
            "must not be greater than 100%",
        ),
        (
            registry.STATEFULSETS,
            statefulset,
            _set("spec.serviceName", _DEL),
            "spec.serviceName",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.STATEFULSETS,
            statefulset,
            _set("spec.podManagementPolicy", "Random"),
            "spec.podManagementPolicy",
            "FieldValueNotSupported",
            "Unsupported value",
        ),
        (
            registry.REPLICASETS,
            deployment,
            _set("spec.selector", {"matchExpressions": [{"key": "app", "operator": "Is"}]}),
            "spec.selector",
            "FieldValueInvalid",
            "not a valid label selector operator",
        ),
        # jobs
        (
            registry.JOBS,
            job,
            _set("spec.template.spec.restartPolicy", _DEL),
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            'Unsupported value: "Always": supported values: "OnFailure", "Never"',
        ),
        (
            registry.JOBS,
            job,
            _set("spec.backoffLimit", -1),
            "spec.backoffLimit",
            "FieldValueInvalid",
            "must be greater than or equal to 0",
        ),
        # other kinds
        (
            registry.CONFIGMAPS,
            lambda: {"metadata": {"name": "c", "namespace": "d"}, "data": {"bad key": "x"}},
            lambda o: None,
            "data[bad key]",
            "FieldValueInvalid",
            "a valid config key",
        ),
        (
            registry.SECRETS,
            lambda: {"metadata": {"name": "s", "namespace": "d"}, "data": {"k": "not base64!"}},
            lambda o: None,
            "data[k]",
            "FieldValueInvalid",
            "must be base64-encoded",
        ),
        (
            registry.NODES,
            lambda: {"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.1/24"}},
            lambda o: None,
            "spec.podCIDRs[0]",
            "FieldValueInvalid",
            "must be a valid CIDR",
        ),
        (
            registry.NODES,
            lambda: {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Never"}]}},
            lambda o: None,
            "spec.taints[0].effect",
            "FieldValueNotSupported",
            "Unsupported value",
        ),
        (
            registry.ENDPOINTSLICES,
            lambda: {"metadata": {"name": "e", "namespace": "d"}, "endpoints": []},
            lambda o: None,
            "addressType",
            "FieldValueRequired",
            "Required value",
        ),
        (
            registry.ENDPOINTSLICES,
            lambda: {
                "metadata": {"name": "e", "namespace": "d"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["fd00::1"]}],
            },
            lambda o: None,
            "endpoints[0].addresses[0]",
            "FieldValueInvalid",
            "must be a valid IPv4 address",
        ),
        (
            registry.LEASES,
            lambda: {"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}},
            lambda o: None,
            "spec.leaseDurationSeconds",
            "FieldValueInvalid",
            "must be greater than 0",
        ),
    ],
)
def test_invalid_objects(
    resource: Resource, make: Callable[[], dict[str, Any]], mutate: Mutator, field: str, reason: str, message: str
) -> None:
    obj = make()
    mutate(obj)
    apply_defaults(resource, obj)
    causes = validate(resource, obj)
    matching = [c for c in causes if c.field == field]
    assert matching, f"no cause for {field}; got {causes}"
    assert any(c.reason == reason and message in c.message for c in matching), causes


def test_selector_mismatch_message_matches_kube_apiserver() -> None:
    d = deployment()
    d["spec"]["template"]["metadata"]["labels"] = {"tier": "fe", "app": "db"}
    causes = validate(registry.DEPLOYMENTS, _defaulted(registry.DEPLOYMENTS, d))
    assert [c.message for c in causes] == [
        'Invalid value: map[string]string{"app":"db", "tier":"fe"}: `selector` does not match template `labels`'
    ]


def test_generate_name_is_validated_as_a_prefix() -> None:
    obj = pod()
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "web-"
    assert validate(registry.PODS, _defaulted(registry.PODS, obj)) == []
    obj["metadata"]["generateName"] = "Web-"
    assert [c.field for c in validate(registry.PODS, obj)] == ["metadata.generateName"]


def test_validate_or_raise_formats_like_kubectl() -> None:
    obj = pod()
    obj["metadata"]["name"] = "bad"
    obj["spec"]["containers"] = []
    with pytest.raises(errors.Invalid) as ei:
        validate_or_raise(registry.PODS, obj)
    status = ei.value.to_status()
    assert status["code"] == 422
    assert status["details"]["kind"] == "Pod"
    assert status["details"]["name"] == "bad"
    assert status["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]
    assert status["message"] == 'Pod "bad" is invalid: spec.containers: Required value'


@pytest.mark.parametrize(
    "garbage", [{"spec": 5}, {"metadata": "x"}, {"metadata": {"name": 5}, "spec": {"containers": [None, 3, "x"]}}]
)
def test_garbage_never_raises(garbage: dict[str, Any]) -> None:
    for r in registry.RESOURCES:
        causes = validate(r, copy.deepcopy(garbage))
        assert causes, r.plural


# --- updates -------------------------------------------------------------------------------


def _update(resource: Resource, make: Callable[[], dict[str, Any]], mutate: Mutator) -> list[Any]:
    old = _defaulted(resource, make())
    old["metadata"].setdefault("uid", "u-1")
    old["metadata"]["creationTimestamp"] = "2026-11-23T18:27:11Z"
    new = copy.deepcopy(old)
    mutate(new)
    return validate(resource, new, old)


@pytest.mark.parametrize(
    ("resource", "make", "mutate"),
    [
        (registry.PODS, pod, _set("spec.containers.0.image", "busybox:1.37")),
        (registry.PODS, pod, _set("spec.activeDeadlineSeconds", 30)),
        (registry.PODS, pod, lambda o: o["spec"]["tolerations"].append({"key": "x", "operator": "Exists"})),
        (registry.PODS, pod, _set("metadata.labels", {"app": "web", "x": "y"})),
        (registry.PODS, pod, _set("metadata.deletionTimestamp", "2026-11-23T18:30:00Z")),
        (registry.SERVICES, service, _set("spec.ports.0.targetPort", 9090)),
        (registry.DEPLOYMENTS, deployment, _set("spec.replicas", 5)),
        (registry.DEPLOYMENTS, deployment, _set("spec.template.spec.containers.0.image", "x:2")),
        (registry.STATEFULSETS, statefulset, _set("spec.replicas", 5)),
        (registry.JOBS, job, _set("spec.parallelism", 3)),
    ],
)
def test_allowed_updates(resource: Resource, make: Callable[[], dict[str, Any]], mutate: Mutator) -> None:
    assert _update(resource, make, mutate) == []


@pytest.mark.parametrize(
    ("resource", "make", "mutate", "field", "message"),
    [
        (
            registry.PODS,
            pod,
            _set("spec.containers.0.command", ["sh"]),
            "spec",
            "Forbidden: pod updates may not change fields other than",
        ),
        (registry.PODS, pod, _set("spec.restartPolicy", "Never"), "spec", "Forbidden: pod updates"),
        (
            registry.PODS,
            pod,
            _set("spec.tolerations", []),
            "spec.tolerations",
            "existing toleration can not be modified",
        ),
        (registry.PODS, pod, _set("metadata.uid", "u-2"), "metadata.uid", 'Invalid value: "u-2": field is immutable'),
        (
            registry.PODS,
            pod,
            _set("metadata.creationTimestamp", "2020-01-01T00:00:00Z"),
            "metadata.creationTimestamp",
            "field is immutable",
        ),
        (
            registry.SERVICES,
            lambda: {**service(), "spec": {**service()["spec"], "clusterIP": "10.96.0.20"}},
            _set("spec.clusterIP", "10.96.0.21"),
            "spec.clusterIP",
            "field is immutable",
        ),
        (
            registry.DEPLOYMENTS,
            deployment,
            _set("spec.selector", {"matchLabels": {"app": "web", "v": "2"}}),
            "spec.selector",
            "field is immutable",
        ),
        (
            registry.JOBS,
            job,
            _set("spec.template.spec.containers.0.image", "x:2"),
            "spec.template",
            "field is immutable",
        ),
        (registry.JOBS, job, _set("spec.completions", 5), "spec.completions", "field is immutable"),
        (
            registry.STATEFULSETS,
            statefulset,
            _set("spec.serviceName", "other"),
            "spec",
            "updates to statefulset spec for fields other than",
        ),
        (
            registry.NODES,
            lambda: {"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24"}},
            _set("spec.podCIDR", "10.244.2.0/24"),
            "spec.podCIDR",
            "may not change podCIDR",
        ),
        (
            registry.SECRETS,
            lambda: {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"},
            _set("type", "kubernetes.io/tls"),
            "type",
            "field is immutable",
        ),
        (
            registry.CONFIGMAPS,
            lambda: {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": True},
            _set("data", {"a": "2"}),
            "data",
            "field is immutable when `immutable` is set",
        ),
    ],
)
def test_forbidden_updates(
    resource: Resource, make: Callable[[], dict[str, Any]], mutate: Mutator, field: str, message: str
) -> None:
    causes = _update(resource, make, mutate)
    assert any(c.field == field and message in c.message for c in causes), causes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("1.5", Decimal("1.5")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
        (2, Decimal(2)),
    ],
)
def test_parse_quantity(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Qi", "1..2.", "1e"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity(text)
