"""Server-side apply's pure functions: field sets, FieldsV1, set operations, apply and Update."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.api import managedfields as mf

CM: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}


def cm(**data: str) -> dict[str, Any]:
    return {**CM, "data": dict(data)}


DEPLOY: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "d", "labels": {"app": "n"}},
    "spec": {
        "selector": {"matchLabels": {"app": "n"}},
        "template": {
            "metadata": {"labels": {"app": "n"}},
            "spec": {
                "containers": [
                    {
                        "name": "nginx",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}],
                    }
                ]
            },
        },
    },
}


def test_field_set_of_an_applied_deployment_uses_list_map_keys() -> None:
    fs = mf.field_set(DEPLOY)
    containers = fs["f:spec"]["f:template"]["f:spec"]["f:containers"]
    nginx = containers['k:{"name":"nginx"}']
    assert nginx["."] == {} and nginx["f:image"] == {}
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in nginx["f:ports"]
    assert 'k:{"name":"A"}' in nginx["f:env"]
    assert fs["f:spec"]["f:selector"] == {}  # LabelSelector is atomic
    assert fs["f:metadata"]["f:labels"] == {"f:app": {}}  # appliers' maps carry no "."


def test_sets_list_finalizers_by_value() -> None:
    fs = mf.field_set({"metadata": {"finalizers": ["a/b"]}})
    assert fs == {"f:metadata": {"f:finalizers": {'v:"a/b"': {}}}}
    assert mf.path_strings(fs) == ['.metadata.finalizers[="a/b"]']


def test_fieldsv1_round_trip_and_canonical_order() -> None:
    entries = mf.record_update([], None, cm(b="1", a="2"), manager="kubectl-create", api_version="v1")
    encoded = mf.encode(entries)
    assert encoded[0]["fieldsV1"] == {"f:data": {".": {}, "f:a": {}, "f:b": {}}}
    assert list(encoded[0]["fieldsV1"]["f:data"]) == [".", "f:a", "f:b"]
    back = mf.decode(json.loads(json.dumps(encoded)))
    assert mf.encode(back) == encoded


@pytest.mark.parametrize(
    "raw",
    [
        "nope",
        [{"operation": "Delete"}],
        [{"operation": "Apply", "fieldsType": "FieldsV2"}],
        [{"operation": "Apply", "fieldsV1": {"x:y": {}}}],
        [{"operation": "Apply", "fieldsV1": {"f:a": {".": {"f:b": {}}}}}],
    ],
)
def test_decode_refuses_bad_entries(raw: Any) -> None:
    with pytest.raises(ValueError, match="managedFields"):
        mf.decode(raw)


def test_set_operations() -> None:
    a = {"f:data": {".": {}, "f:a": {}, "f:b": {}}}
    b = {"f:data": {"f:b": {}}}
    assert mf.difference(a, b) == {"f:data": {".": {}, "f:a": {}}}
    assert mf.intersection(a, b) == {"f:data": {"f:b": {}}}
    assert mf.union(b, {"f:data": {"f:c": {}}}) == {"f:data": {"f:b": {}, "f:c": {}}}
    assert mf.difference(a, a) == {}


def test_path_strings_print_as_structured_merge_diff() -> None:
    fs = mf.field_set(DEPLOY)
    paths = mf.path_strings(fs)
    assert '.spec.template.spec.containers[name="nginx"].image' in paths
    assert '.spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"]' in paths


def test_conflict_messages_match_kubernetes() -> None:
    assert mf.conflict_message([('"kubectl"', ".data.key")]) == (
        'Apply failed with 1 conflict: conflict with "kubectl": .data.key'
    )
    two = mf.conflict_message([('"kubectl"', ".data.a"), ('"kubectl"', ".data.b")])
    assert two == 'Apply failed with 2 conflicts: conflicts with "kubectl":\n- .data.a\n- .data.b'


def _apply(entries: list[mf.Entry], live: Any, config: Any, manager: str, force: bool = False) -> Any:
    return mf.apply(entries, live, config, manager=manager, api_version="v1", force=force)


def test_apply_conflicts_force_and_shared_ownership() -> None:
    obj, entries = _apply([], None, cm(key="a", other="b"), "kubectl")
    with pytest.raises(mf.ApplyConflict) as e:
        _apply(entries, obj, cm(key="z"), "other")
    assert str(e.value) == 'Apply failed with 1 conflict: conflict with "kubectl": .data.key'
    # the same value is no conflict: both own it
    _, shared = _apply(entries, obj, cm(key="a"), "other")
    assert {e.manager: e.fields for e in shared} == {
        "kubectl": {"f:data": {"f:key": {}, "f:other": {}}},
        "other": {"f:data": {"f:key": {}}},
    }
    obj, forced = _apply(entries, obj, cm(key="z"), "other", force=True)
    assert obj["data"] == {"key": "z", "other": "b"}
    assert {e.manager: e.fields for e in forced} == {
        "kubectl": {"f:data": {"f:other": {}}},
        "other": {"f:data": {"f:key": {}}},
    }


def test_update_owner_prints_with_its_version() -> None:
    entries = mf.record_update([], None, cm(key="a"), manager="kubectl-create", api_version="v1")
    with pytest.raises(mf.ApplyConflict, match=r'conflict with "kubectl-create" using v1: \.data\.key$'):
        _apply(entries, cm(key="a"), cm(key="b"), "kubectl")


def test_apply_removes_fields_the_applier_drops_unless_someone_else_owns_them() -> None:
    obj, entries = _apply([], None, cm(a="1", b="2", c="3"), "kubectl")
    obj, entries = _apply(entries, obj, cm(b="2"), "mine")  # shares b
    obj, entries = _apply(entries, obj, cm(a="1"), "kubectl")
    assert obj["data"] == {"a": "1", "b": "2"}  # c removed; b kept for "mine"
    obj, entries = _apply(entries, obj, {**CM, "metadata": {"name": "x", "labels": {"l": "v"}}}, "kubectl")
    assert "a" not in obj["data"] and obj["metadata"]["labels"] == {"l": "v"}


def test_apply_drops_a_container_by_key_and_merges_lists_by_key() -> None:
    obj, entries = _apply([], None, DEPLOY, "kubectl")
    sidecar = json.loads(json.dumps(DEPLOY))
    sidecar["spec"]["template"]["spec"]["containers"] = [{"name": "side", "image": "busybox"}]
    obj, entries = _apply(entries, obj, sidecar, "other")
    names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
    assert names == ["nginx", "side"]
    only_labels = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    obj, entries = _apply(entries, obj, only_labels, "kubectl")
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["side"]


def test_update_takes_changed_fields_and_removed_fields_leave_every_set() -> None:
    obj, entries = _apply([], None, cm(a="1", b="2"), "kubectl")
    edited = cm(a="9", b="2")
    entries = mf.record_update(entries, obj, edited, manager="kubectl-edit", api_version="v1")
    owners = {e.manager: e.fields for e in entries}
    assert owners == {"kubectl": {"f:data": {"f:b": {}}}, "kubectl-edit": {"f:data": {"f:a": {}}}}
    entries = mf.record_update(entries, edited, cm(a="9"), manager="kubectl-edit", api_version="v1")
    assert {e.manager for e in entries} == {"kubectl-edit"}


def test_nothing_changed_records_nothing_new() -> None:
    entries = mf.record_update([], None, cm(a="1"), manager="m", api_version="v1")
    again = mf.record_update(entries, cm(a="1"), cm(a="1"), manager="m", api_version="v1")
    assert mf.encode(again) == mf.encode(entries)
    assert mf.record_update([], cm(a="1"), cm(a="1"), manager="n", api_version="v1") == []


def test_create_entry_marks_new_maps_and_lists_not_go_structs() -> None:
    entries = mf.record_update([], None, DEPLOY, manager="kubectl-create", api_version="apps/v1")
    fs = entries[0].fields
    assert "." not in fs["f:spec"] and "." not in fs["f:spec"]["f:template"]
    assert "." in fs["f:metadata"]["f:labels"]
    containers = fs["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert "." not in containers  # containers has no omitempty: present in the zero object
    assert "." in containers['k:{"name":"nginx"}']["f:ports"]


def test_stripped_fields_are_never_tracked() -> None:
    obj = {**cm(a="1"), "metadata": {"name": "x", "uid": "u", "resourceVersion": "3", "labels": {"k": "v"}}}
    fs = mf.record_update([], None, obj, manager="m", api_version="v1")[0].fields
    assert fs == {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:k": {}}}}
    status = {**CM, "spec": {"x": 1}, "status": {"y": 2}}
    main = mf.record_update([], None, status, manager="m", api_version="v1", status_only=False)[0].fields
    assert "f:status" not in main
    only = mf.record_update([], None, status, manager="m", api_version="v1", status_only=True)[0].fields
    assert list(only) == ["f:status"]


def test_update_managers_are_capped_into_ancient_changes() -> None:
    entries: list[mf.Entry] = []
    live = cm()
    for i in range(12):
        new = cm(**live["data"], **{f"k{i}": "v"})
        entries = mf.record_update(entries, live, new, manager=f"m{i}", api_version="v1")
        for e in entries:  # distinct times, oldest first (the clock has second resolution)
            if e.manager == f"m{i}":
                e.time = f"2026-01-01T00:00:{i:02d}Z"
        live = new
    managers = [e.manager for e in entries]
    assert len(managers) == mf.MAX_UPDATE_MANAGERS and mf.ANCIENT in managers
    ancient = next(e for e in entries if e.manager == mf.ANCIENT)
    assert set(ancient.fields["f:data"]) >= {"f:k0", "f:k1", "f:k2"}
    assert "m0" not in managers and "m11" in managers


def test_manager_from_user_agent() -> None:
    assert mf.manager_from_user_agent("kubectl-edit/v1.33.0 (linux/amd64) kubernetes/abc") == "kubectl-edit"
    assert mf.manager_from_user_agent("kube-controller-manager/v1.30.0") == "kube-controller-manager"
