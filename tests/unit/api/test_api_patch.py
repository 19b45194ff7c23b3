"""PATCH semantics, driven by the exact bodies real kubectl sends (reference/kubectl-api.md §2)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controlplane.api import errors, registry
from controlplane.api.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_patch,
    json_merge_patch,
    strategic_merge_patch,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {LAST_APPLIED: "{}\n"},
            "finalizers": ["a.example.com/x"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
        "status": {"replicas": 2},
    }


def _smp(orig: dict[str, Any], patch: Any, resource: Any = registry.DEPLOYMENTS) -> dict[str, Any]:
    return apply_patch(resource, orig, json.dumps(patch).encode(), STRATEGIC_MERGE_PATCH)


def test_client_side_reapply_body_from_kubectl() -> None:
    orig = _deployment()
    body = {
        "metadata": {"annotations": {LAST_APPLIED: '{"apiVersion":"apps/v1","spec":{"replicas":3}}\n'}},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.26", "name": "nginx"}],
                }
            },
        },
    }
    out = _smp(orig, body)
    assert out["spec"]["replicas"] == 3
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "sidecar"]
    assert containers[0]["image"] == "nginx:1.26"
    # merged, not replaced: the rest of the container survives
    assert containers[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert containers[1] == {"name": "sidecar", "image": "busybox:1.36"}
    assert out["metadata"]["annotations"][LAST_APPLIED].endswith("\n")
    assert out["metadata"]["labels"] == {"app": "web"}
    assert orig == _deployment()  # the input is never mutated


def test_set_image_body_from_kubectl() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"image": "x", "name": "nginx"}],
                }
            }
        }
    }
    out = _smp(_deployment(), body)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("nginx", "x"), ("sidecar", "busybox:1.36")]


def test_rollout_restart_body_from_kubectl() -> None:
    ts = "2026-11-23T18:27:11Z"
    body = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": ts}}}}}
    out = _smp(_deployment(), body)
    tmeta = out["spec"]["template"]["metadata"]
    assert tmeta == {"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": ts}}


def test_scale_and_label_bodies_are_merge_patches() -> None:
    out = apply_patch(registry.DEPLOYMENTS, _deployment(), b'{"spec":{"replicas":3}}', MERGE_PATCH)
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"] == _deployment()["spec"]["template"]
    out = apply_patch(registry.DEPLOYMENTS, _deployment(), b'{"metadata":{"labels":{"tier":"be"}}}', MERGE_PATCH)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "be"}
    out = apply_patch(registry.DEPLOYMENTS, _deployment(), b'{"metadata":{"labels":{"app":null}}}', MERGE_PATCH)
    assert out["metadata"]["labels"] == {}


def test_cordon_body_from_kubectl() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.1.0/24"}}
    out = _smp(node, {"spec": {"unschedulable": True}}, registry.NODES)
    assert out["spec"] == {"podCIDR": "10.244.1.0/24", "unschedulable": True}


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        # null deletes a key
        (
            {"spec": {"template": {"metadata": {"labels": {"app": None}}}}},
            lambda o: o["spec"]["template"]["metadata"]["labels"] == {},
        ),
        # $patch: delete removes a list element by merge key
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
            lambda o: [c["name"] for c in o["spec"]["template"]["spec"]["containers"]] == ["nginx"],
        ),
        # a new container is appended
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}},
            lambda o: [c["name"] for c in o["spec"]["template"]["spec"]["containers"]] == ["nginx", "sidecar", "log"],
        ),
        # env merged by name, a null value inside an element deletes that key only
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "nginx", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
                            ]
                        }
                    }
                }
            },
            lambda o: (
                o["spec"]["template"]["spec"]["containers"][0]["env"]
                == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
            ),
        ),
        # container ports merged by containerPort
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "nginx",
                                    "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                                }
                            ]
                        }
                    }
                }
            },
            lambda o: (
                o["spec"]["template"]["spec"]["containers"][0]["ports"]
                == [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]
            ),
        ),
        # volumeMounts merged by mountPath
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "nginx", "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}
                            ]
                        }
                    }
                }
            },
            lambda o: (
                o["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                == [{"name": "data", "mountPath": "/data", "readOnly": True}]
            ),
        ),
        # $patch: replace on a list element replaces the whole list
        (
            {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}},
            lambda o: o["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "x"}],
        ),
        # $patch: replace on a map replaces the map
        (
            {"spec": {"selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}},
            lambda o: o["spec"]["selector"] == {"matchLabels": {"x": "y"}},
        ),
        # $patch: delete on a map removes it
        ({"spec": {"strategy": {"$patch": "delete"}}}, lambda o: "strategy" not in o["spec"]),
        # $retainKeys (kubectl apply switching the strategy type)
        (
            {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}},
            lambda o: o["spec"]["strategy"] == {"type": "Recreate"},
        ),
        # finalizers merge as a set; $deleteFromPrimitiveList removes
        (
            {"metadata": {"finalizers": ["b.example.com/y", "a.example.com/x"]}},
            lambda o: o["metadata"]["finalizers"] == ["a.example.com/x", "b.example.com/y"],
        ),
        (
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}},
            lambda o: o["metadata"]["finalizers"] == [],
        ),
        # lists without a merge strategy are replaced (tolerations, args)
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "nginx", "args": ["-g"]}],
                            "tolerations": [{"operator": "Exists"}],
                        }
                    }
                }
            },
            lambda o: (
                o["spec"]["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]
                and o["spec"]["template"]["spec"]["containers"][0]["args"] == ["-g"]
            ),
        ),
        # $setElementOrder reorders
        (
            {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]}}}},
            lambda o: [c["name"] for c in o["spec"]["template"]["spec"]["containers"]] == ["sidecar", "nginx"],
        ),
    ],
)
def test_strategic_merge_patch_table(patch: dict[str, Any], check: Any) -> None:
    assert check(_smp(_deployment(), patch))


def test_service_ports_merge_by_port() -> None:
    svc = {
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443}]},
    }
    out = _smp(svc, {"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}, registry.SERVICES)
    assert out["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
        {"port": 443},
    ]


def test_pod_status_conditions_merge_by_type() -> None:
    pod = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}
    out = _smp(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, registry.PODS)
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]


def test_new_list_with_directives_is_cleaned() -> None:
    out = _smp(
        {"spec": {}},
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "$patch": "delete"}]}}
            }
        },
    )
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "x"}]


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "does not contain declared merge key: name",
        ),
        ({"spec": {"$patch": "explode"}}, "unknown patch type"),
        ({"metadata": {"finalizers": [{"x": 1}]}}, "scalar"),
        (
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}},
            "does not list 'rollingUpdate'",
        ),
    ],
)
def test_strategic_merge_patch_rejects(patch: dict[str, Any], fragment: str) -> None:
    with pytest.raises(errors.BadRequest, match=fragment):
        _smp(_deployment(), patch)


def test_json_patch() -> None:
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/x", "value": "y"},
    ]
    out = apply_patch(registry.DEPLOYMENTS, _deployment(), json.dumps(ops).encode(), JSON_PATCH)
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "x": "y"}


@pytest.mark.parametrize(
    ("body", "exc"),
    [
        (b'{"op":"add"}', errors.BadRequest),
        (b"[{", errors.BadRequest),
        (b'[{"op":"frobnicate","path":"/x"}]', errors.BadRequest),
        (b'[{"op":"remove","path":"/spec/nothing"}]', errors.Invalid),
        (b'[{"op":"test","path":"/spec/replicas","value":9}]', errors.Invalid),
    ],
)
def test_json_patch_errors(body: bytes, exc: type[errors.ApiError]) -> None:
    with pytest.raises(exc):
        apply_patch(registry.DEPLOYMENTS, _deployment(), body, JSON_PATCH)


def test_server_side_apply_creates_and_merges() -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
    }
    created = apply_patch(registry.DEPLOYMENTS, {}, json.dumps(manifest).encode(), APPLY_PATCH)
    assert created == manifest
    # YAML body, merged onto the live object by merge keys
    out = apply_patch(registry.DEPLOYMENTS, _deployment(), yaml.safe_dump(manifest).encode(), APPLY_PATCH)
    assert out["spec"]["replicas"] == 4
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in cs] == [("nginx", "nginx:1.27"), ("sidecar", "busybox:1.36")]
    assert cs[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"- a\n- b\n", "must be an object"),
        (b'{"kind":"Deployment"}', "must set apiVersion and kind"),
        (b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}', "expected Deployment"),
        (b"a: [unclosed", "error decoding YAML"),
    ],
)
def test_apply_patch_rejects(body: bytes, fragment: str) -> None:
    with pytest.raises(errors.BadRequest, match=fragment):
        apply_patch(registry.DEPLOYMENTS, {}, body, APPLY_PATCH)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_unknown_content_type(content_type: str) -> None:
    with pytest.raises(errors.UnsupportedMediaType):
        apply_patch(registry.DEPLOYMENTS, _deployment(), b"{}", content_type)


def test_content_type_parameters_are_ignored() -> None:
    out = apply_patch(
        registry.DEPLOYMENTS, _deployment(), b'{"spec":{"replicas":1}}', "application/merge-patch+json; charset=utf-8"
    )
    assert out["spec"]["replicas"] == 1


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"{bad"])
def test_merge_patches_need_objects(body: bytes) -> None:
    for ct in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        with pytest.raises(errors.BadRequest):
            apply_patch(registry.DEPLOYMENTS, _deployment(), body, ct)


# --- properties ----------------------------------------------------------------------------

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=10,
)
_obj = st.dictionaries(st.text("abc", max_size=2), _json, max_size=4)


def _no_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _no_nulls(x) for k, x in v.items() if x is not None}
    return v


@given(_obj, _obj)
def test_merge_patch_properties(target: dict[str, Any], patch: dict[str, Any]) -> None:
    before = copy.deepcopy(target)
    out = json_merge_patch(target, patch)
    assert target == before  # inputs untouched
    # idempotent: applying the same patch twice changes nothing more
    assert json_merge_patch(out, patch) == out
    for k, v in patch.items():
        if v is None:
            assert k not in out
        elif not isinstance(v, dict):
            assert out[k] == v


@given(_obj, _obj)
def test_strategic_patch_equals_merge_patch_without_schema_lists(target: dict[str, Any], patch: dict[str, Any]) -> None:
    # For a kind/fields with no merge strategies and no directives, SMP *is* RFC 7386.
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if not k.startswith("$")}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    def drop_nulls(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: drop_nulls(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_nulls(x) for x in v]
        return v

    patch = clean(patch)
    target = drop_nulls(clean(target))
    expected = json_merge_patch(target, patch)
    got = strategic_merge_patch("configmaps", target, patch)
    # SMP also drops nulls inside replaced lists (they would mean nothing once stored)
    assert got == drop_nulls(expected)


def _pod_with(names: list[str]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": n, "image": f"{n}:1"} for n in names]}}


@pytest.mark.parametrize(
    ("live", "patch", "expected"),
    [
        # a new container lands where $setElementOrder puts it, not at the end
        (
            ["a", "b"],
            {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}, {"name": "b"}],
                "containers": [{"name": "c", "image": "c:1"}],
            },
            ["a", "c", "b"],
        ),
        # a server-only container (injected sidecar) keeps its place among the reordered ones
        (["a", "sidecar", "b"], {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}, ["sidecar", "b", "a"]),
        (["a", "b", "sidecar"], {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}, ["a", "b", "sidecar"]),
        # order entries for items that no longer exist are ignored
        (["a"], {"$setElementOrder/containers": [{"name": "zz"}, {"name": "a"}]}, ["a"]),
    ],
)
def test_set_element_order(live: list[str], patch: dict[str, Any], expected: list[str]) -> None:
    out = strategic_merge_patch(registry.PODS, _pod_with(live), {"spec": patch})
    assert [c["name"] for c in out["spec"]["containers"]] == expected


def test_set_element_order_on_a_primitive_list() -> None:
    obj = {"metadata": {"finalizers": ["x", "y"]}}
    out = strategic_merge_patch(
        registry.PODS, obj, {"metadata": {"$setElementOrder/finalizers": ["z", "y", "x"], "finalizers": ["z"]}}
    )
    assert out["metadata"]["finalizers"] == ["z", "y", "x"]


_cname = st.sampled_from(["a", "b", "c", "d"])
_container = st.fixed_dictionaries(
    {"name": _cname},
    optional={"image": st.sampled_from(["x:1", "y:2"]), "args": st.lists(st.text("ab", max_size=2), max_size=2)},
)


@given(
    st.lists(_container, max_size=4, unique_by=lambda c: c["name"]),
    st.lists(_container, max_size=4, unique_by=lambda c: c["name"]),
)
def test_container_merge_properties(live: list[dict[str, Any]], patch_items: list[dict[str, Any]]) -> None:
    orig = {"spec": {"containers": live}}
    patch = {"spec": {"containers": patch_items}}
    out = strategic_merge_patch(registry.PODS, orig, patch)
    names = [c["name"] for c in out["spec"]["containers"]]
    # nothing the patch does not mention is lost, nothing is duplicated, and patched fields win
    assert names == [c["name"] for c in live] + [
        c["name"] for c in patch_items if c["name"] not in {x["name"] for x in live}
    ]
    by_name = {c["name"]: c for c in out["spec"]["containers"]}
    for p in patch_items:
        for k, v in p.items():
            assert by_name[p["name"]][k] == v
    # idempotent
    assert strategic_merge_patch(registry.PODS, out, patch) == out


def test_reapply_that_removes_an_env_var_and_a_port() -> None:
    # the patch kubectl's three-way merge sends when a manifest drops env B and port 443
    live = _deployment()
    live["spec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": 443, "protocol": "TCP"})
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "A"}],
                            "$setElementOrder/ports": [{"containerPort": 80}],
                            "env": [{"$patch": "delete", "name": "B"}],
                            "name": "nginx",
                            "ports": [{"$patch": "delete", "containerPort": 443}],
                        }
                    ],
                }
            }
        }
    }
    out = _smp(live, body)
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert c["env"] == [{"name": "A", "value": "1"}]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
