"""Property-based fuzzing of writes (issue 11): never a 5xx, always a ``Status``, nothing undecodable stored.

For the core kinds, hypothesis takes a valid object, picks a field path from the kind's own
OpenAPI schema (what ``/openapi/v3`` serves) and puts there either a well-typed value of that
field's Go type or a hostile one (wrong JSON type, integers beyond int32/int64, floats, deep
nesting, odd unicode, long strings); then it sends it as a create, an update, a ``status`` or
``scale`` subresource write, or one of the four patch types (json, merge, strategic-merge, apply)
to the real ``kubelab apiserver`` subprocess on loopback. Properties, per request:
- the answer is never a 5xx;
- an error answer is a JSON ``Status`` with ``kind: Status`` and ``code`` equal to the HTTP status;
- whatever was stored decodes as its kind's Go type (``structural.first_error`` finds nothing in
  the object read back), so no typed client can be broken by it;
and after the run the server still answers.

Bounded for ``make test``: derandomized (the same examples on every run, so CI is stable),
``max_examples`` per test, a per-example deadline; the whole file runs in well under two minutes
here. Objects are created in namespace ``fuzz`` with names of their own and removed after each
example; the namespace and the base objects are removed at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controlplane.api import registry, structural
from controlplane.api.registry import Resource
from tests.helpers.schema_values import (
    field_paths,
    hostile_value,
    json_pointer,
    merge_patch,
    set_path,
    valid_value,
)

NS = "fuzz"
_POD_SPEC = {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}
_TEMPLATE = {"metadata": {"labels": {"app": "fz"}}, "spec": _POD_SPEC}
_SELECTOR = {"matchLabels": {"app": "fz"}}

BASES: dict[str, dict[str, Any]] = {
    "Pod": {"spec": _POD_SPEC},
    "Service": {"spec": {"selector": {"app": "fz"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    "ConfigMap": {"data": {"a": "b"}},
    "Secret": {"stringData": {"a": "b"}},
    "Namespace": {},
    "ServiceAccount": {},
    "Deployment": {"spec": {"replicas": 1, "selector": _SELECTOR, "template": _TEMPLATE}},
    "ReplicaSet": {"spec": {"replicas": 1, "selector": _SELECTOR, "template": _TEMPLATE}},
    "DaemonSet": {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
    "StatefulSet": {"spec": {"serviceName": "fz", "selector": _SELECTOR, "template": _TEMPLATE}},
    "Job": {
        "spec": {"template": {"metadata": {"labels": {"app": "fz"}}, "spec": {**_POD_SPEC, "restartPolicy": "Never"}}}
    },
    "Lease": {"spec": {"holderIdentity": "fz", "leaseDurationSeconds": 10}},
    "NetworkPolicy": {"spec": {"podSelector": {}}},
}
KINDS = sorted(BASES)
BY_KIND: dict[str, Resource] = {r.kind: r for r in registry.RESOURCES if r.kind in BASES}
OPS = ("create", "update", "status", "scale", "json", "merge", "strategic", "apply")
PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


def collection(res: Resource) -> str:
    return f"{res.prefix}/namespaces/{NS}/{res.plural}" if res.namespaced else f"{res.prefix}/{res.plural}"


def base_object(kind: str, name: str) -> dict[str, Any]:
    res = BY_KIND[kind]
    obj = {
        "apiVersion": res.api_version,
        "kind": kind,
        "metadata": {"name": name},
        **json.loads(json.dumps(BASES[kind])),
    }
    if res.namespaced:
        obj["metadata"]["namespace"] = NS
    return obj


def base_name(kind: str) -> str:
    return f"fz-base-{kind.lower()}"


def remove(http: httpx.Client, res: Resource, name: str) -> None:
    http.delete(f"{collection(res)}/{name}", params={"gracePeriodSeconds": "0"})
    if res is registry.NAMESPACES:  # no namespace controller on this server: finish the deletion
        r = http.get(f"/api/v1/namespaces/{name}")
        if r.status_code == 200:
            body = r.json()
            if isinstance(body.get("spec"), dict):
                body["spec"]["finalizers"] = []
            http.put(f"/api/v1/namespaces/{name}/finalize", json=body)


@pytest.fixture(scope="module")
def fuzz_ns(http: httpx.Client) -> Iterator[str]:
    r = http.post("/api/v1/namespaces", json={"metadata": {"name": NS}})
    assert r.status_code in (201, 409), r.text
    try:
        for kind in KINDS:
            r = http.post(collection(BY_KIND[kind]), json=base_object(kind, base_name(kind)))
            assert r.status_code in (201, 409), r.text
        yield NS
    finally:
        for kind in KINDS:
            res = BY_KIND[kind]
            for item in http.get(collection(res)).json().get("items", []):
                name = item["metadata"]["name"]
                if name.startswith("fz-"):
                    remove(http, res, name)
        remove(http, registry.NAMESPACES, NS)


def assert_answer(r: httpx.Response, what: Any) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:2000])
    if r.status_code >= 400:
        body = r.json()
        assert body.get("kind") == "Status" and body.get("code") == r.status_code, (what, r.text[:2000])
        assert body.get("status") == "Failure" and isinstance(body.get("message"), str), (what, r.text[:2000])


def assert_stored_decodes(http: httpx.Client, res: Resource, name: str) -> None:
    r = http.get(f"{collection(res)}/{name}")
    if r.status_code == 200:
        problem = structural.first_error(res, r.json())
        assert problem is None, (name, problem, r.text[:2000])


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, tuple[str | int, ...], Any]:
    kind = draw(st.sampled_from(KINDS))
    res = BY_KIND[kind]
    paths = field_paths(res.group, kind)
    path, schema = draw(st.sampled_from(paths))
    if path and path[0] == "metadata" and (len(path) < 2 or path[1] in ("name", "namespace")):
        path = ("metadata", "labels", "fz")  # keep the object addressable; labels are a fine target too
        schema = {"type": "string"}
    value = draw(st.one_of(valid_value(schema), hostile_value()))
    op = draw(st.sampled_from(OPS))
    return kind, op, path, value


FUZZ = settings(
    max_examples=800,
    derandomize=True,
    deadline=timedelta(seconds=10),
    suppress_health_check=list(HealthCheck),
    database=None,
)


@FUZZ
@given(m=mutations(), n=st.integers(0, 10**6))
def test_writes_never_5xx_and_store_only_decodable_objects(
    http: httpx.Client, fuzz_ns: str, m: tuple[str, str, tuple[str | int, ...], Any], n: int
) -> None:
    kind, op, path, value = m
    res = BY_KIND[kind]
    base = collection(res)
    what = (kind, op, path, value if len(repr(value)) < 500 else repr(value)[:500])
    if op == "create":
        name = f"fz-{kind.lower()}-{n}"
        body = set_path(base_object(kind, name), path, value)
        r = http.post(base, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        event(f"{op} -> {r.status_code}")
        assert_answer(r, what)
        assert_stored_decodes(http, res, name)
        remove(http, res, name)
        return
    name = base_name(kind)
    url = f"{base}/{name}"
    if op in ("update", "status"):
        if op == "status" and "status" not in res.subresources:
            op, path = "update", ("metadata", "labels", "fz")
        current = http.get(url).json()
        body = set_path(current, path, value)
        target = f"{url}/status" if op == "status" else url
        r = http.put(target, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    elif op == "scale":
        if "scale" not in res.subresources:
            return
        scale = http.get(f"{url}/scale").json()
        body = set_path(scale, ("spec", "replicas"), value)
        r = http.put(f"{url}/scale", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    elif op == "json":
        patch: Any = [{"op": "add", "path": json_pointer(path), "value": value}]
        r = http.patch(url, content=json.dumps(patch).encode(), headers={"Content-Type": PATCH_TYPES[op]})
    elif op == "apply":
        manifest = set_path(base_object(kind, name), path, value)
        r = http.patch(
            url,
            params={"fieldManager": "fuzz", "force": "true"},
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": PATCH_TYPES[op]},
        )
    else:
        patch = merge_patch(path, value)
        r = http.patch(url, content=json.dumps(patch).encode(), headers={"Content-Type": PATCH_TYPES[op]})
    event(f"{op} -> {r.status_code}")  # (--hypothesis-show-statistics prints the mix of answers)
    assert_answer(r, what)
    assert_stored_decodes(http, res, name)


@settings(max_examples=120, derandomize=True, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(
    kind=st.sampled_from(KINDS),
    ctype=st.sampled_from(sorted(PATCH_TYPES.values())),
    body=st.one_of(hostile_value(), st.binary(max_size=64)),
)
def test_arbitrary_patch_bodies_never_5xx(http: httpx.Client, fuzz_ns: str, kind: str, ctype: str, body: Any) -> None:
    res = BY_KIND[kind]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = http.patch(f"{collection(res)}/{base_name(kind)}", content=content, headers={"Content-Type": ctype})
    assert_answer(r, (kind, ctype, content[:300]))
    assert_stored_decodes(http, res, base_name(kind))


def _nested(depth: int) -> Any:
    v: Any = "x"
    for i in range(depth):
        v = [v] if i % 2 else {"a": v}
    return v


_DEEP = [
    (depth, op)
    for depth in (300, 500, 1100)
    for op in ("create", "merge", "strategic", "json", "apply")
]


@pytest.mark.parametrize(("depth", "op"), _DEEP)
def test_deeply_nested_writes_never_5xx(http: httpx.Client, fuzz_ns: str, depth: int, op: str) -> None:
    """Nesting far beyond what the generated examples reach, through every write path."""
    res = BY_KIND["ConfigMap"]
    url = f"{collection(res)}/{base_name('ConfigMap')}"
    deep = _nested(depth)
    if op == "create":
        body: Any = {**base_object("ConfigMap", "fz-deep"), "data": deep}
        r = http.post(collection(res), content=_dumps(body), headers={"Content-Type": "application/json"})
        remove(http, res, "fz-deep")
    elif op == "json":
        body = [{"op": "add", "path": "/data", "value": deep}]
        r = http.patch(url, content=_dumps(body), headers={"Content-Type": PATCH_TYPES[op]})
    elif op == "apply":
        body = {**base_object("ConfigMap", base_name("ConfigMap")), "data": deep}
        r = http.patch(
            url, params={"fieldManager": "fuzz"}, content=_dumps(body), headers={"Content-Type": PATCH_TYPES[op]}
        )
    else:
        r = http.patch(url, content=_dumps({"data": deep}), headers={"Content-Type": PATCH_TYPES[op]})
    assert_answer(r, (depth, op))
    assert r.status_code >= 400, r.text[:500]
    assert_stored_decodes(http, res, base_name("ConfigMap"))
    assert http.get("/readyz").status_code == 200


def _dumps(value: Any) -> bytes:
    """JSON text of any depth (the stdlib encoder recurses; this one does not)."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        x = stack.pop()
        if isinstance(x, _Raw):
            out.append(x.text)
        elif isinstance(x, dict):
            out.append("{")
            parts: list[Any] = []
            for i, (k, v) in enumerate(x.items()):
                parts += [_Raw(("," if i else "") + json.dumps(k) + ":"), v]
            stack += [_Raw("}"), *reversed(parts)]
        elif isinstance(x, list):
            out.append("[")
            parts = []
            for i, v in enumerate(x):
                parts += [_Raw("," if i else ""), v]
            stack += [_Raw("]"), *reversed(parts)]
        else:
            out.append(json.dumps(x))
    return "".join(out).encode()


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def test_server_alive_after_fuzzing(http: httpx.Client, fuzz_ns: str) -> None:
    assert http.get("/readyz").status_code == 200
    r = http.get(f"/api/v1/namespaces/{NS}/configmaps")
    assert r.status_code == 200 and r.json()["kind"] == "ConfigMapList"
