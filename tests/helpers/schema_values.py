"""Hypothesis strategies driven by the OpenAPI schemas the server serves (``/openapi/v3``).

Used by the fuzz test of the API server and the unit tests of ``controlplane.api.structural``:
- ``field_paths(group, kind)``: the field paths of a kind's schema down to a bounded depth
  (``("spec", "template", "spec", "containers", 0, "env", 0, "valueFrom")``), lists entered at
  index 0, each with the schema found there;
- ``valid_value(schema)``: values of the field's Go type (int32/int64 in range, quantities,
  RFC 3339 times, int-or-string both ways, nested structs with a few of their fields);
- ``hostile_value()``: what a hostile client sends instead — every wrong JSON type, integers
  beyond int32/int64, floats, deep nesting, odd unicode, long strings;
- ``set_path(obj, path, value)``: a copy of ``obj`` with the value placed there (intermediate
  objects and lists made as needed).

Pure; the schema walk is cached per kind.
"""

from __future__ import annotations

import copy
import itertools
from functools import cache
from typing import Any

from hypothesis import strategies as st

from controlplane.api.openapi import schema_for_kind, schemas

Path = tuple[str | int, ...]
_REF = "#/components/schemas/"


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    all_of = schema.get("allOf")
    if ref is None and isinstance(all_of, list) and all_of and isinstance(all_of[0], dict):
        ref = all_of[0].get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        return schemas().get(ref[len(_REF) :], {})
    return schema


@cache
def field_paths(group: str, kind: str, max_depth: int = 9) -> tuple[tuple[Path, dict[str, Any]], ...]:
    root = schema_for_kind(group, kind)
    if root is None:
        return ()
    out: list[tuple[Path, dict[str, Any]]] = []

    def walk(schema: dict[str, Any], path: Path, depth: int) -> None:
        schema = resolve(schema)
        if depth > max_depth or len(out) > 4000:
            return
        props = schema.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                if key in ("apiVersion", "kind") and not path:
                    continue
                out.append(((*path, key), sub))
                walk(sub, (*path, key), depth + 1)
        elif schema.get("type") == "array" and isinstance(schema.get("items"), dict):
            out.append(((*path, 0), schema["items"]))
            walk(schema["items"], (*path, 0), depth + 1)
        elif isinstance(schema.get("additionalProperties"), dict):
            out.append(((*path, "k"), schema["additionalProperties"]))

    walk(root, (), 0)
    return tuple(out)


_TIMES = st.sampled_from(["2024-01-02T03:04:05Z", "2024-02-29T23:59:59.123456+02:00", "1970-01-01T00:00:00Z"])
_QUANTITIES = st.sampled_from(["1", "100m", "1.5", "64Mi", "2Gi", "1e3", "0"]) | st.integers(0, 10**6)
_ODD_TEXT = st.sampled_from(
    ["", "\u202eevil", "😀" * 3, "a\u0000b", "\ufeff", "\u00e9t\u00e9", "x" * 2000, "ǅ", "\U0010ffff", "1", "true"]
)


def valid_value(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the Go type the schema describes (well-typed; not necessarily valid semantically)."""
    schema = resolve(schema)
    t, fmt = schema.get("type"), schema.get("format")
    if fmt == "int-or-string":
        return st.integers(-(2**31), 2**31 - 1) | st.text(max_size=8)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=2)
    if t == "integer":
        bits = 31 if fmt == "int32" else 63
        return st.integers(-(2**bits), 2**bits - 1)
    if t == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40)
    if t == "boolean":
        return st.booleans()
    if t == "string":
        if fmt == "quantity":
            return _QUANTITIES
        if fmt == "date-time":
            return _TIMES
        if isinstance(schema.get("enum"), list):
            return st.sampled_from(schema["enum"])
        return st.text(max_size=12) | _ODD_TEXT
    if depth >= 3:
        return st.none()
    if t == "array" and isinstance(schema.get("items"), dict):
        return st.lists(valid_value(schema["items"], depth + 1), max_size=2)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return st.dictionaries(st.text(min_size=1, max_size=6), valid_value(extra, depth + 1), max_size=2)
    props = schema.get("properties")
    if isinstance(props, dict) and props:
        keys = sorted(props)
        return st.lists(st.sampled_from(keys), max_size=3, unique=True).flatmap(
            lambda chosen: st.fixed_dictionaries({k: valid_value(props[k], depth + 1) for k in chosen})
        )
    return st.just({})


def _nest(depth: int, leaf: Any) -> Any:
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 else {"a": v}
    return v


def hostile_value() -> st.SearchStrategy[Any]:
    """Values of the wrong type, out of range, deeply nested or oddly encoded."""
    return st.one_of(
        st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30, 2**64 + 1, 1.5, -0.0, 1e300, 1e-300]),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        st.text(max_size=16),
        _ODD_TEXT,
        st.just({}),
        st.just([]),
        st.just({"x": "y"}),
        st.just(["x", 1, None]),
        st.integers(20, 120).map(lambda d: _nest(d, "deep")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=6),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=10,
        ),
    )


def set_path(obj: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of ``obj`` with ``value`` at ``path`` (made where missing; non-containers replaced)."""
    out = copy.deepcopy(obj)
    node: Any = out
    for step, nxt in itertools.pairwise(path):
        empty: Any = [] if isinstance(nxt, int) else {}
        if isinstance(step, int):
            if not node:
                node.append(empty)
            if not isinstance(node[0], list | dict) or isinstance(node[0], list) != isinstance(empty, list):
                node[0] = empty
            node = node[0]
        else:
            child = node.get(step)
            if not isinstance(child, list | dict) or isinstance(child, list) != isinstance(empty, list):
                node[step] = empty
            node = node[step]
    last = path[-1]
    if isinstance(last, int):
        if node:
            node[0] = value
        else:
            node.append(value)
    else:
        node[last] = value
    return out


def json_pointer(path: Path) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def merge_patch(path: Path, value: Any) -> Any:
    """A merge patch setting ``path`` (lists become whole one-element lists, as merge patch replaces them)."""
    v = value
    for step in reversed(path):
        v = [v] if isinstance(step, int) else {step: v}
    return v
