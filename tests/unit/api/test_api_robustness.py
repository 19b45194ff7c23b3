"""Bad input never crashes the API helpers: only ``ApiError`` (a 4xx Status) or a result.

The API server turns any other exception into a 500, which DESIGN.md forbids for bad input; so
random bodies and random objects of every kind go through patch, defaults, validation, tables
and field sets here.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.api import errors, fields, openapi, registry
from controlplane.api.defaults import apply_defaults
from controlplane.api.patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, apply_patch
from controlplane.api.tables import to_table
from controlplane.api.validation import validate

_keys = st.sampled_from(
    ["metadata", "spec", "status", "name", "containers", "ports", "image", "template", "selector", "$patch",
     "$retainKeys", "$setElementOrder/containers", "$deleteFromPrimitiveList/finalizers", "finalizers", "env",
     "labels", "replicas", "type", "nodePort", "port", "conditions", "x"]
)  # fmt: skip
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=4),
    st.sampled_from(["delete", "replace", "merge", "Always", "TCP", "ClusterIP", "NodePort"]),
)  # fmt: skip
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=15,
)
_objs = st.dictionaries(_keys, _json, max_size=5)
_resources = st.sampled_from(registry.RESOURCES)


def _ok_or_api_error(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except errors.ApiError:
        return None


@settings(max_examples=150, deadline=None)
@given(_resources, _objs, _objs, st.sampled_from([MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]))
def test_object_patches_never_crash(resource: Any, original: dict[str, Any], patch: dict[str, Any], ct: str) -> None:
    if ct == APPLY_PATCH:
        patch = {**patch, "apiVersion": resource.api_version, "kind": resource.kind}
    body = json.dumps(patch, default=str).encode()
    out = _ok_or_api_error(apply_patch, resource, original, body, ct)
    assert out is None or isinstance(out, dict)


@settings(max_examples=100, deadline=None)
@given(
    _objs, st.lists(st.dictionaries(st.sampled_from(["op", "path", "value", "from"]), _json, max_size=4), max_size=3)
)
def test_json_patches_never_crash(original: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    out = _ok_or_api_error(apply_patch, registry.PODS, original, json.dumps(ops, default=str).encode(), JSON_PATCH)
    assert out is None or isinstance(out, dict)


@settings(max_examples=200, deadline=None)
@given(_resources, _objs, st.one_of(st.none(), _objs))
def test_defaults_validation_tables_fields_never_crash(
    resource: Any, obj: dict[str, Any], old: dict[str, Any] | None
) -> None:
    apply_defaults(resource, obj)
    causes = validate(resource, obj, old)
    assert all(c.field is not None and c.message for c in causes)
    table = to_table(resource, [obj], list_rv="1")
    assert len(table["rows"]) == 1
    assert all(isinstance(v, str) for v in fields.field_set(resource, obj).values())
    assert isinstance(openapi.unknown_fields(resource, obj), list)


def test_service_port_of_the_wrong_type_is_a_cause_not_a_crash() -> None:
    svc = {
        "metadata": {"name": "s", "namespace": "d"},
        "spec": {"ports": [{"port": [], "protocol": ["TCP"], "nodePort": 30000}]},
    }
    causes = validate(registry.SERVICES, svc)
    assert "spec.ports[0].port" in [c.field for c in causes]
    row = to_table(registry.PODS, [{"metadata": True}], list_rv="1")["rows"][0]
    assert row["object"]["metadata"] == {}
