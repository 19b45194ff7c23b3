"""Unit tests of ``controlplane.api.structural``: Go decoder messages, no false refusals, every schema compiles."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api import errors, registry, structural
from controlplane.api.openapi import schema_for_kind, schemas
from tests.helpers.schema_values import field_paths, set_path, valid_value

DEPLOY = registry.RESOURCES[[r.kind for r in registry.RESOURCES].index("Deployment")]
POD = registry.PODS
NS = registry.NAMESPACES
SECRET = registry.RESOURCES[[r.kind for r in registry.RESOURCES].index("Secret")]


def _pod_with(container: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "c", "image": "i", **container}]}}


@pytest.mark.parametrize(
    ("res", "obj", "message"),
    [
        (
            DEPLOY,
            {"spec": {"replicas": 2147483648}},
            "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            DEPLOY,
            {"spec": {"replicas": -2147483649}},
            "json: cannot unmarshal number -2147483649 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            DEPLOY,
            {"spec": {"replicas": 1.5}},
            "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            DEPLOY,
            {"spec": {"replicas": "3"}},
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            DEPLOY,
            {"spec": {"template": {"spec": {"containers": [{"env": [{"name": "a", "valueFrom": "x"}]}]}}}},
            "json: cannot unmarshal string into Go struct field EnvVar.spec.template.spec.containers.env.valueFrom "
            "of type v1.EnvVarSource",
        ),
        (
            NS,
            {"spec": "x"},
            "json: cannot unmarshal string into Go struct field Namespace.spec of type v1.NamespaceSpec",
        ),
        (
            POD,
            {"spec": {"containers": {"name": "c"}}},
            "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
        ),
        (
            POD,
            {"metadata": {"labels": {"a": True}}},
            "json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.labels of type string",
        ),
        (
            POD,
            {"metadata": {"labels": ["a"]}},
            "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string",
        ),
        (
            POD,
            _pod_with({"stdin": "yes"}),
            "json: cannot unmarshal string into Go struct field Container.spec.containers.stdin of type bool",
        ),
        (
            POD,
            _pod_with({"livenessProbe": {"httpGet": {"port": 1.5}}}),
            "json: cannot unmarshal number 1.5 into Go struct field HTTPGetAction.spec.containers.livenessProbe"
            ".httpGet.port of type int32",
        ),
        (
            POD,
            _pod_with({"resources": {"limits": {"cpu": "lots"}}}),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (POD, _pod_with({"resources": {"limits": {"cpu": "1mi"}}}), "unable to parse quantity's suffix"),
        (
            POD,
            _pod_with({"resources": {"limits": {"cpu": {"a": 1}}}}),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            POD,
            {"status": {"startTime": "yesterday"}},
            'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"',
        ),
        (
            POD,
            {"status": {"startTime": 5}},
            "json: cannot unmarshal number into Go struct field PodStatus.status.startTime of type string",
        ),
        (
            POD,
            {"spec": {"terminationGracePeriodSeconds": 2**63}},
            "json: cannot unmarshal number 9223372036854775808 into Go struct field "
            "PodSpec.spec.terminationGracePeriodSeconds of type int64",
        ),
        (
            SECRET,
            {"data": {"k": 1}},
            "json: cannot unmarshal number into Go struct field Secret.data of type []uint8",
        ),
    ],
)
def test_first_error_is_the_go_decoder_message(res: registry.Resource, obj: dict[str, Any], message: str) -> None:
    assert structural.first_error(res, obj) == message


@pytest.mark.parametrize(
    "obj",
    [
        {"spec": {"replicas": 2147483647, "revisionHistoryLimit": None}},
        {"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 2**40, "activeDeadlineSeconds": 2**62}}}},
        {"spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"cpu": 2, "memory": 1.5e9}}}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 80}], "livenessProbe": None}]}}}},
        {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}}},
        {"status": {"observedGeneration": 2**40, "conditions": [{"lastUpdateTime": "2024-01-01T00:00:00.5+01:00"}]}},
        {"spec": {"unknownField": {"anything": [1, "x"]}}, "extra": 1},
    ],
)
def test_well_typed_objects_pass(obj: dict[str, Any]) -> None:
    assert structural.first_error(DEPLOY, obj) is None


def test_first_error_in_document_order() -> None:
    obj = {"spec": {"replicas": "x", "minReadySeconds": "y"}}
    assert "DeploymentSpec.spec.replicas" in str(structural.first_error(DEPLOY, obj))


def test_check_raises_the_create_400_with_the_bodys_own_kind() -> None:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2**31}}
    with pytest.raises(structural.StructuralError) as e:
        structural.check(DEPLOY, body)
    status = e.value.to_status()
    assert status["code"] == 400 and status["reason"] == "BadRequest"
    assert status["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal number 2147483648 '
        "into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    with pytest.raises(structural.StructuralError) as e:
        structural.check(DEPLOY, {"spec": {"replicas": 2**31}})  # no kind in the body: summarised
    assert e.value.message.startswith("the object provided is unrecognized (must be of type Deployment): json: ")
    assert e.value.message.endswith('({"spec":{"replicas":2147483648 ...)')  # Go: data[:30] + " ..."


def test_patch_errors_are_422_on_field_patch() -> None:
    patched = {"kind": "Deployment", "spec": {"replicas": 2**31}}
    err = structural.patch_error(DEPLOY, patched, "application/merge-patch+json", b"{}")
    assert isinstance(err, errors.Invalid)
    assert err.causes[0].field == "patch"
    assert err.message.startswith('"" is invalid: patch: Invalid value: "{\\"kind\\":\\"Deployment\\"')
    smp = structural.patch_error(
        DEPLOY, patched, "application/strategic-merge-patch+json", b'{"spec":{"replicas":2147483648}}'
    )
    assert smp is not None and 'Invalid value: "map[spec:map[replicas:2147483648]]"' in smp.message
    apply = structural.patch_error(DEPLOY, patched, "application/apply-patch+yaml", b"")
    assert isinstance(apply, errors.BadRequest)
    assert structural.patch_error(DEPLOY, {"spec": {"replicas": 1}}, "application/merge-patch+json", b"{}") is None


def test_error_messages_stay_bounded_for_huge_and_deep_bodies() -> None:
    deep: Any = "x"
    for i in range(5000):
        deep = [deep] if i % 2 else {"a": deep}
    patched = {"spec": {"replicas": 2**31, "x": deep, "y": "z" * 1_000_000}}
    err = structural.patch_error(DEPLOY, patched, "application/merge-patch+json", b"{}")
    assert err is not None and len(err.message) < 2000
    big = structural.first_error(DEPLOY, {"spec": {"replicas": 10**3000}})
    assert big is not None and len(big) < 300


def test_every_served_schema_compiles() -> None:
    for name in schemas():
        assert callable(structural.compile_schema(name))
    for res in registry.RESOURCES:
        if schema_for_kind(res.group, res.kind) is not None:
            assert structural.first_error(res, {}) is None


_KINDS = sorted(r.kind for r in registry.RESOURCES if schema_for_kind(r.group, r.kind) is not None)
_BY_KIND = {r.kind: r for r in registry.RESOURCES}


@st.composite
def _well_typed(draw: st.DrawFn) -> tuple[registry.Resource, dict[str, Any]]:
    kind = draw(st.sampled_from(_KINDS))
    res = _BY_KIND[kind]
    obj: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        path, schema = draw(st.sampled_from(field_paths(res.group, kind)))
        obj = set_path(obj, path, draw(valid_value(schema)))
    return res, obj


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_well_typed())
def test_values_of_the_schema_types_are_never_refused(case: tuple[registry.Resource, dict[str, Any]]) -> None:
    res, obj = case
    assert structural.first_error(res, obj) is None, obj


def test_objects_stored_before_the_check_are_served_deletable_and_must_be_fixed_by_writes() -> None:
    """The module docstring's decision for ill-typed objects already in the store."""
    import orjson

    from controlplane.apiserver.admission import Admission
    from controlplane.apiserver.resources import ResourceOps
    from controlplane.storage.memory import MemoryStore

    store = MemoryStore()
    ops = ResourceOps(store, Admission(store))
    ops.create(registry.NAMESPACES, None, {"metadata": {"name": "default"}})
    legacy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "old", "namespace": "default", "uid": "u", "generation": 1},
        "spec": {
            "replicas": 2**31,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    store.create(DEPLOY.storage_key("old", "default"), orjson.dumps(legacy))  # written before the check existed
    assert ops.get(DEPLOY, "default", "old")["spec"]["replicas"] == 2**31  # served as stored
    stored = ops.get(DEPLOY, "default", "old")
    with pytest.raises(structural.StructuralError):  # a write must fix it
        ops.update(DEPLOY, "default", "old", {**stored, "metadata": {"name": "old", "labels": {"x": "y"}}})
    with pytest.raises(errors.Invalid):  # also a patch that leaves the bad field as it is
        ops.patch(DEPLOY, "default", "old", b'{"metadata":{"labels":{"x":"y"}}}', "application/merge-patch+json")
    fixed = {**stored, "spec": {**stored["spec"], "replicas": 3}}
    assert ops.update(DEPLOY, "default", "old", fixed)["spec"]["replicas"] == 3
    kv = store.get(DEPLOY.storage_key("old", "default"))
    assert kv is not None
    store.update(kv.key, orjson.dumps(legacy), kv.mod_revision)  # ill-typed again
    ops.delete(DEPLOY, "default", "old", {})  # deletes are never checked
    with pytest.raises(errors.NotFound):
        ops.get(DEPLOY, "default", "old")


def test_unquoted_yaml_timestamps_are_strings_as_in_kubernetes_json() -> None:
    import yaml

    body = yaml.safe_load(
        "metadata: {name: x, annotations: {a: 2024-01-01T00:00:00Z}}\n"
        "spec: {containers: [{name: c, image: i, args: [2024-01-01],"
        " ports: [{containerPort: 80, name: 2024-01-01}]}]}\n"
        "status: {startTime: 2024-01-01T00:00:00Z}\n"
    )
    assert structural.first_error(POD, body) is None
    assert structural.first_error(POD, yaml.safe_load("status: {startTime: 2024-01-01}")) == (
        'parsing time "2024-01-01" as "2006-01-02T15:04:05Z07:00": cannot parse "2024-01-01" as "2006"'
    )
