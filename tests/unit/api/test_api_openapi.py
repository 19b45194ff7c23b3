"""OpenAPI documents: what kubectl explain and client-side apply look up (kubectl-api.md §1.5)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from controlplane.api import openapi, registry
from controlplane.api.patch import STRATEGY
from controlplane.api.registry import Resource


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref") or (schema.get("allOf") or [{}])[0].get("$ref")
    if ref:
        return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _kind_schema(doc: dict[str, Any], group: str, kind: str) -> dict[str, Any]:
    found = [
        s
        for s in doc["components"]["schemas"].values()
        if {"group": group, "kind": kind, "version": "v1"} in s.get("x-kubernetes-group-version-kind", [])
    ]
    assert len(found) == 1, kind
    return found[0]


def test_v2_is_a_protobuf_document_with_a_go_parseable_type() -> None:
    assert openapi.v2_protobuf().startswith(b"\n\x032.0")  # field 1 (swagger) = "2.0"
    assert "@" not in openapi.V2_CONTENT_TYPE
    assert openapi.V2_CONTENT_TYPE == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def test_root_lists_every_group_version_with_its_hash() -> None:
    root = openapi.v3_root()
    assert set(root["paths"]) == {
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/coordination.k8s.io/v1",
        "apis/discovery.k8s.io/v1",
        "apis/networking.k8s.io/v1",
        "apis/rbac.authorization.k8s.io/v1",
        "apis/authorization.k8s.io/v1",
        "apis/authentication.k8s.io/v1",
        "apis/apiregistration.k8s.io/v1",
        "apis/policy/v1",
        "apis/scheduling.k8s.io/v1",
    }
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    path, _, query = url.partition("?")
    assert path == "/openapi/v3/apis/apps/v1"
    body = openapi.v3_document_bytes("apis/apps/v1")
    assert body is not None
    assert query == "hash=" + hashlib.sha512(body).hexdigest().upper()
    assert openapi.v3_document("apis/apps/v1?hash=whatever") == json.loads(body)


@pytest.mark.parametrize("path", ["api/v2", "apis/apps", "apis/extensions/v1beta1", "", "foo"])
def test_unknown_documents(path: str) -> None:
    assert openapi.v3_document(path) is None


@pytest.mark.parametrize(
    "resource", [r for r in registry.RESOURCES if "patch" in r.verbs], ids=lambda r: r.plural
)
def test_every_kind_has_a_patch_operation_kubectl_trusts(resource: Resource) -> None:
    doc = openapi.v3_document(resource.prefix.lstrip("/"))
    assert doc is not None
    assert doc["openapi"].startswith("3.")
    item = resource.item_path("{name}", "{namespace}" if resource.namespaced else None)
    patch = doc["paths"][item]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": resource.group, "kind": resource.kind, "version": "v1"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    # every $ref resolves inside the same document (documents are self-contained)
    refs: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if isinstance(v.get("$ref"), str):
                refs.add(v["$ref"].rsplit("/", 1)[1])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    assert refs <= set(doc["components"]["schemas"])
    _kind_schema(doc, resource.group, resource.kind)


def test_explain_pods_spec_containers_is_reachable_with_descriptions() -> None:
    doc = openapi.v3_document("api/v1")
    assert doc is not None
    pod = _kind_schema(doc, "", "Pod")
    assert "Pod is a collection of containers" in pod["description"]
    assert set(pod["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    spec = _resolve(doc, pod["properties"]["spec"])
    containers = spec["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert "containers" in spec["required"]
    container = _resolve(doc, containers["items"])
    assert container["required"] == ["name"]
    assert container["properties"]["image"]["type"] == "string"
    assert "Container image name" in container["properties"]["image"]["description"]
    ports = container["properties"]["ports"]
    assert (ports["x-kubernetes-patch-merge-key"], ports["x-kubernetes-patch-strategy"]) == ("containerPort", "merge")
    port = _resolve(doc, ports["items"])
    assert port["properties"]["containerPort"]["type"] == "integer"


def test_deployment_template_is_complete_for_client_side_apply() -> None:
    # kubectl's re-apply walks spec.template.spec.containers through the schema.
    doc = openapi.v3_document("apis/apps/v1")
    assert doc is not None
    dep = _kind_schema(doc, "apps", "Deployment")
    spec = _resolve(doc, dep["properties"]["spec"])
    assert spec["properties"]["strategy"]["x-kubernetes-patch-strategy"] == "retainKeys"
    template = _resolve(doc, spec["properties"]["template"])
    pod_spec = _resolve(doc, template["properties"]["spec"])
    assert pod_spec["properties"]["containers"]["x-kubernetes-patch-merge-key"] == "name"
    status = _resolve(doc, dep["properties"]["status"])
    assert status["properties"]["conditions"]["x-kubernetes-patch-merge-key"] == "type"
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale", "version": "v1"}


def test_service_target_port_is_int_or_string() -> None:
    doc = openapi.v3_document("api/v1")
    assert doc is not None
    svc_spec = _resolve(doc, _kind_schema(doc, "", "Service")["properties"]["spec"])
    assert svc_spec["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "port"
    port = _resolve(doc, svc_spec["properties"]["ports"]["items"])
    assert _resolve(doc, port["properties"]["targetPort"]) == {"type": "string", "format": "int-or-string"}


def test_schema_extensions_agree_with_the_server_patcher() -> None:
    # every merge list the server's SMP knows is published with the same key, so kubectl computes
    # patches the server merges the same way
    schemas = openapi._schemas()
    for go_type, fields in STRATEGY.items():
        candidates = [s for n, s in schemas.items() if n.rsplit(".", 1)[1] == go_type]
        for schema in candidates:
            for field, fs in fields.items():
                prop = schema["properties"].get(field)
                if prop is None or not fs.strategy:
                    continue
                assert prop.get("x-kubernetes-patch-strategy") == fs.strategy, (go_type, field)
                if fs.merge_key:
                    assert prop.get("x-kubernetes-patch-merge-key") == fs.merge_key, (go_type, field)


def test_committed_schemas_match_the_generator() -> None:
    # regenerate with `python -m controlplane.api.openapi_gen` after changing patch.STRATEGY or the generator
    from controlplane.api.openapi_gen import OUT, Generator

    fresh = json.dumps(Generator().run(), sort_keys=True, separators=(",", ":")) + "\n"
    assert OUT.read_text() == fresh


def _manifest() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "creationTimestamp": None,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
            "labels": {"app": "web"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {"limits": {"cpu": "1"}},
                            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        }
                    ]
                },
            },
        },
        "status": {},
    }


def test_valid_manifest_has_no_unknown_fields() -> None:
    assert openapi.unknown_fields(registry.DEPLOYMENTS, _manifest()) == []


@pytest.mark.parametrize(
    ("mutate", "paths"),
    [
        (lambda m: m["spec"].update(replica=3), ["spec.replica"]),
        (
            lambda m: m["spec"]["template"]["spec"]["containers"][0].update(imagex="x"),
            ["spec.template.spec.containers[0].imagex"],
        ),
        (lambda m: m["metadata"].update(label={"a": "b"}), ["metadata.label"]),
        (lambda m: m.update(extra=1, spec2={}), ["extra", "spec2"]),
        (
            lambda m: m["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(port=80),
            ["spec.template.spec.containers[0].ports[0].port"],
        ),
    ],
)
def test_unknown_fields_are_reported_with_paths(mutate: Any, paths: list[str]) -> None:
    m = _manifest()
    mutate(m)
    assert openapi.unknown_fields(registry.DEPLOYMENTS, m) == paths


def test_strict_decoding_error_wording() -> None:
    err = openapi.strict_decoding_error(registry.DEPLOYMENTS, ["spec.replica", "spec.x"])
    assert err.code == 400
    assert err.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.replica", unknown field "spec.x"'
    )


@pytest.mark.parametrize(
    ("resource", "obj"),
    [
        (
            registry.PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        ),
        (
            registry.SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 80, "targetPort": "http"}]},
            },
        ),
        (
            registry.CONFIGMAPS,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"any.key": "v"}},
        ),
        (
            registry.EVENTS,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "e"},
                "involvedObject": {"kind": "Pod"},
                "reason": "X",
                "count": 1,
            },
        ),
        (
            registry.CONTROLLERREVISIONS,
            {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {"name": "r"},
                "data": {"anything": {"goes": 1}},
                "revision": 1,
            },
        ),
    ],
)
def test_other_kinds_accept_their_fields(resource: Resource, obj: dict[str, Any]) -> None:
    assert openapi.unknown_fields(resource, obj) == []
