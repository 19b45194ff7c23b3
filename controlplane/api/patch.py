"""PATCH bodies: JSON patch, JSON merge patch, strategic merge patch and server-side apply.

Role: ``apply_patch(resource, original, body, content_type)`` returns the patched object (a new
dict; ``original`` is never mutated). The API server then defaults, validates and stores it as
it would an update.

- ``application/json-patch+json`` — RFC 6902, via the ``jsonpatch`` library.
- ``application/merge-patch+json`` — RFC 7386: objects merge recursively, ``null`` deletes, any
  other value (lists included) replaces.
- ``application/strategic-merge-patch+json`` — Kubernetes' strategic merge patch (SMP), written
  here. Like a merge patch, except that lists tagged ``patchStrategy:"merge"`` in Kubernetes'
  Go types are merged: lists of objects by their ``patchMergeKey`` (containers by ``name``,
  container ports by ``containerPort``, service ports by ``port``, volumeMounts by
  ``mountPath`` …) and lists of scalars (finalizers) as sets. Directives:
  ``{"$patch": "replace"|"delete"|"merge"}`` in a map or as a list element,
  ``$setElementOrder/<list>``, ``$retainKeys``, ``$deleteFromPrimitiveList/<list>``.
- ``application/apply-patch+yaml`` — server-side apply. ``decode_apply`` checks the body (YAML or
  JSON: the user's full intent, of this resource's kind, no directives). Main-resource applies
  are merged with field ownership by ``controlplane.api.managedfields`` (driven by
  ``apiserver/fieldmanager.py``); ``apply_patch`` still merges an apply onto a subresource with
  SMP semantics (no ownership). An empty ``original`` means the object does not exist yet.

The SMP schema is ``STRATEGY``: per Go type, the fields whose patch strategy is not the
default, plus the struct-valued fields needed to reach them. Fields not listed merge as in a
JSON merge patch (maps recursively, lists replaced). ``openapi.py`` reads the same table to
publish ``x-kubernetes-patch-strategy``/``x-kubernetes-patch-merge-key``, so kubectl's client
-side apply computes the patches this module expects.

Errors: a body that is not valid JSON/YAML or not the right shape → ``BadRequest``; a JSON
patch that cannot apply (missing path, failed ``test``) → ``Invalid``; an unknown content type →
``UnsupportedMediaType``. Pure; thread-safe.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import orjson
import yaml

from controlplane.api import errors, limits
from controlplane.api.registry import Resource

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "PATCH_CONTENT_TYPES",
    "ROOT_TYPES",
    "STRATEGIC_MERGE_PATCH",
    "STRATEGY",
    "FieldStrategy",
    "apply_patch",
    "decode_apply",
    "json_merge_patch",
    "media_type",
    "strategic_merge_patch",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)


@dataclass(frozen=True)
class FieldStrategy:
    """How one field patches. ``type`` names the (element) type in ``STRATEGY`` to recurse into."""

    type: str = ""
    strategy: str = ""  # "", "merge", "retainKeys", "merge,retainKeys"
    merge_key: str = ""

    @property
    def merges(self) -> bool:
        return "merge" in self.strategy.split(",")

    @property
    def retains_keys(self) -> bool:
        return "retainKeys" in self.strategy.split(",")


def _f(type_: str = "", strategy: str = "", key: str = "") -> FieldStrategy:
    return FieldStrategy(type_, strategy, key)


_CONDITIONS = _f("", "merge", "type")

# Go struct → {jsonField: FieldStrategy}, after the patchStrategy/patchMergeKey tags of
# k8s.io/api core/v1, apps/v1, batch/v1, meta/v1. Only the paths that lead to tagged fields
# are listed.
STRATEGY: dict[str, dict[str, FieldStrategy]] = {
    "ObjectMeta": {
        "finalizers": _f("", "merge"),
        "ownerReferences": _f("", "merge", "uid"),
    },
    "PodTemplateSpec": {"metadata": _f("ObjectMeta"), "spec": _f("PodSpec")},
    "PodSpec": {
        "volumes": _f("Volume", "merge,retainKeys", "name"),
        "initContainers": _f("Container", "merge", "name"),
        "containers": _f("Container", "merge", "name"),
        "ephemeralContainers": _f("Container", "merge", "name"),
        "imagePullSecrets": _f("", "merge", "name"),
        "hostAliases": _f("", "merge", "ip"),
        "topologySpreadConstraints": _f("", "merge", "topologyKey"),
        "schedulingGates": _f("", "merge", "name"),
        "resourceClaims": _f("", "merge,retainKeys", "name"),
    },
    "Volume": {},
    "Container": {
        "ports": _f("", "merge", "containerPort"),
        "env": _f("", "merge", "name"),
        "volumeMounts": _f("", "merge", "mountPath"),
        "volumeDevices": _f("", "merge", "devicePath"),
    },
    "PodStatus": {
        "conditions": _CONDITIONS,
        "podIPs": _f("", "merge", "ip"),
        "hostIPs": _f("", "merge", "ip"),
    },
    "Pod": {"metadata": _f("ObjectMeta"), "spec": _f("PodSpec"), "status": _f("PodStatus")},
    "ServiceSpec": {"ports": _f("", "merge", "port")},
    "ServiceStatus": {"conditions": _CONDITIONS},
    "Service": {"metadata": _f("ObjectMeta"), "spec": _f("ServiceSpec"), "status": _f("ServiceStatus")},
    "NodeSpec": {"podCIDRs": _f("", "merge")},
    "NodeStatus": {"conditions": _CONDITIONS, "addresses": _f("", "merge", "type")},
    "Node": {"metadata": _f("ObjectMeta"), "spec": _f("NodeSpec"), "status": _f("NodeStatus")},
    "NamespaceStatus": {"conditions": _CONDITIONS},
    "Namespace": {"metadata": _f("ObjectMeta"), "status": _f("NamespaceStatus")},
    "ConditionsStatus": {"conditions": _CONDITIONS},
    "DeploymentSpec": {"template": _f("PodTemplateSpec"), "strategy": _f("", "retainKeys")},
    "Deployment": {"metadata": _f("ObjectMeta"), "spec": _f("DeploymentSpec"), "status": _f("ConditionsStatus")},
    "TemplateSpec": {"template": _f("PodTemplateSpec")},
    "ReplicaSet": {"metadata": _f("ObjectMeta"), "spec": _f("TemplateSpec"), "status": _f("ConditionsStatus")},
    "DaemonSet": {"metadata": _f("ObjectMeta"), "spec": _f("TemplateSpec"), "status": _f("ConditionsStatus")},
    "StatefulSet": {"metadata": _f("ObjectMeta"), "spec": _f("TemplateSpec"), "status": _f("ConditionsStatus")},
    "Job": {"metadata": _f("ObjectMeta"), "spec": _f("TemplateSpec"), "status": _f("ConditionsStatus")},
    "Object": {"metadata": _f("ObjectMeta")},
}

# plural → root type in STRATEGY (everything else patches as a plain object with ObjectMeta)
ROOT_TYPES: dict[str, str] = {
    "pods": "Pod",
    "services": "Service",
    "nodes": "Node",
    "namespaces": "Namespace",
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "daemonsets": "DaemonSet",
    "statefulsets": "StatefulSet",
    "jobs": "Job",
}

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def _bad(message: str) -> errors.BadRequest:
    return errors.BadRequest(message)


# --- JSON merge patch (RFC 7386) -----------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 ``MergePatch(target, patch)``; returns a new value, never mutates its inputs."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


# --- strategic merge patch -----------------------------------------------------------------


def _fields(type_name: str) -> Mapping[str, FieldStrategy]:
    return STRATEGY.get(type_name, {})


def _strip(value: Any) -> Any:
    """A patch value placed where nothing existed: drop directives, ``null``s and deleted items.

    Returns ``None`` for a map that deletes itself (``{"$patch": "delete"}``).
    """
    if isinstance(value, dict):
        if value.get(_DIRECTIVE) == "delete":
            return None
        out = {}
        for k, v in value.items():
            if k in (_DIRECTIVE, _RETAIN_KEYS) or k.startswith((_SET_ORDER, _DELETE_PRIMITIVE)) or v is None:
                continue
            s = _strip(v)
            if s is not None:
                out[k] = s
        return out
    if isinstance(value, list):
        return [_strip(x) for x in value if not (isinstance(x, dict) and x.get(_DIRECTIVE) in ("delete", "replace"))]
    return value


def _merge_map(original: dict[str, Any], patch: Mapping[str, Any], type_name: str, path: str) -> dict[str, Any] | None:
    """Merge ``patch`` into a copy of ``original``; ``None`` means "delete this map"."""
    directive = patch.get(_DIRECTIVE)
    if directive is not None:
        if directive == "replace":
            stripped = _strip({k: v for k, v in patch.items() if k != _DIRECTIVE})
            return stripped if isinstance(stripped, dict) else {}
        if directive == "delete":
            return None
        if directive != "merge":
            raise _bad(f"unknown patch type: {directive!r} at {path or '<root>'} (want replace, delete or merge)")
    result = copy.deepcopy(original)
    fields = _fields(type_name)

    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise _bad(f"invalid $retainKeys at {path or '<root>'}: must be a list of field names")
        for k in patch:
            if not k.startswith("$") and patch[k] is not None and k not in retain:
                raise _bad(f"$retainKeys at {path or '<root>'} does not list {k!r}, which the patch sets")
        for k in list(result):
            if k not in retain:
                del result[k]

    # $deleteFromPrimitiveList/<field>: remove scalars from a primitive list
    for k, v in patch.items():
        if k.startswith(_DELETE_PRIMITIVE):
            name = k[len(_DELETE_PRIMITIVE) :]
            if not isinstance(v, list):
                raise _bad(f"invalid {k} at {path or '<root>'}: must be a list")
            cur = result.get(name)
            if isinstance(cur, list):
                result[name] = [x for x in cur if x not in v]

    for k, v in patch.items():
        if k.startswith("$"):
            continue
        sub = f"{path}.{k}" if path else k
        fs = fields.get(k, FieldStrategy())
        if v is None:
            result.pop(k, None)
            continue
        cur = result.get(k)
        if isinstance(v, dict):
            merged = _merge_map(cur if isinstance(cur, dict) else {}, v, fs.type, sub)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _merge_list(cur if isinstance(cur, list) else [], v, fs, sub)
        else:
            result[k] = copy.deepcopy(v)

    # $setElementOrder/<field>: reorder the merged list; items it does not name keep their place after
    for k, order in patch.items():
        if not k.startswith(_SET_ORDER):
            continue
        name = k[len(_SET_ORDER) :]
        if not isinstance(order, list):
            raise _bad(f"invalid {k} at {path or '<root>'}: must be a list")
        lst = result.get(name)
        if isinstance(lst, list):
            live = original.get(name)
            result[name] = _reorder(
                lst, order, live if isinstance(live, list) else [], fields.get(name, FieldStrategy()).merge_key
            )
    return result


def _key_of(item: Any, merge_key: str) -> Any:
    return item.get(merge_key) if isinstance(item, dict) else item


def _reorder(merged: list[Any], order: list[Any], original: list[Any], merge_key: str) -> list[Any]:
    """Apply ``$setElementOrder`` as Kubernetes' ``normalizeElementOrder`` does.

    Items named by the order list follow it; items only on the server keep their live order; the
    two sequences are then interleaved by the items' positions in the live list, so a server-side
    addition (an injected sidecar) stays next to its neighbours instead of moving to the end.
    """

    def key(x: Any) -> str:
        return json.dumps(_key_of(x, merge_key) if merge_key else x, sort_keys=True, default=str)

    order_keys = [key(o) for o in order]
    order_index = {k: i for i, k in reversed(list(enumerate(order_keys)))}
    server_index = {key(x): i for i, x in reversed(list(enumerate(original)))}
    patch_items = sorted((x for x in merged if key(x) in order_index), key=lambda x: order_index[key(x)])
    server_only = [x for x in merged if key(x) not in order_index]
    server_only.sort(key=lambda x: server_index.get(key(x), len(original)))

    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            li = server_index.get(key(server_only[i]), -1)
            ri = server_index.get(key(patch_items[j]), -1)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _merge_list(original: list[Any], patch: list[Any], fs: FieldStrategy, path: str) -> list[Any]:
    # {"$patch": "replace"} anywhere in the list: the rest of the list replaces the original.
    if any(isinstance(x, dict) and x.get(_DIRECTIVE) == "replace" for x in patch):
        kept = [x for x in patch if not (isinstance(x, dict) and x.get(_DIRECTIVE) == "replace")]
        stripped = _strip(kept)
        return stripped if isinstance(stripped, list) else []
    if not fs.merges:
        stripped = _strip(patch)
        return stripped if isinstance(stripped, list) else []
    if not fs.merge_key:
        # a primitive list merged as a set (finalizers, podCIDRs): original order, then new values
        result = copy.deepcopy(original)
        for x in patch:
            if isinstance(x, dict | list):
                raise _bad(f"{path}: a list merged as a set may only hold scalar values")
            if x not in result:
                result.append(x)
        return result
    result = copy.deepcopy(original)
    for i, item in enumerate(patch):
        if not isinstance(item, dict):
            raise _bad(f"{path}[{i}]: expected an object with merge key {fs.merge_key!r}, got {item!r}")
        if fs.merge_key not in item:
            raise _bad(f"{path}[{i}]: map does not contain declared merge key: {fs.merge_key}")
        key = item[fs.merge_key]
        idx = next((j for j, o in enumerate(result) if isinstance(o, dict) and o.get(fs.merge_key) == key), None)
        directive = item.get(_DIRECTIVE)
        if directive == "delete":
            result = [o for o in result if not (isinstance(o, dict) and o.get(fs.merge_key) == key)]
            continue
        if idx is None:
            stripped = _strip(item)
            result.append(stripped)
        else:
            merged = _merge_map(result[idx], item, fs.type, f"{path}[{fs.merge_key}={key}]")
            if merged is None:
                del result[idx]
            else:
                result[idx] = merged
    return result


def strategic_merge_patch(
    resource: Resource | str, original: Mapping[str, Any], patch: Mapping[str, Any]
) -> dict[str, Any]:
    """Apply a strategic merge patch to ``original`` (not mutated) for the given kind."""
    plural = resource if isinstance(resource, str) else resource.plural
    root = ROOT_TYPES.get(plural, "Object")
    merged = _merge_map(dict(original), patch, root, "")
    return merged if merged is not None else {}


# --- entry point ---------------------------------------------------------------------------


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _decode_json(body: bytes, what: str) -> Any:
    """A patch document, within ``limits`` (depth): the merges below recurse on its nesting."""
    try:
        return limits.json_loads(body)
    except limits.LimitExceeded as e:
        raise _bad(f"error decoding {what}: json: {e}") from None
    except orjson.JSONDecodeError as e:
        raise _bad(f"error decoding {what}: {e}") from None


def _decode_apply(body: bytes) -> Any:
    try:
        return limits.json_loads(body)
    except limits.LimitExceeded as e:
        raise _bad(f"error decoding YAML apply patch: json: {e}") from None
    except orjson.JSONDecodeError:
        pass
    try:
        return limits.yaml_load(body)
    except yaml.YAMLError as e:
        raise _bad(f"error decoding YAML apply patch: {e}") from None


def _apply_json_patch(ops: list[Any], doc: Any) -> Any:
    """RFC 6902 ops applied in order; a failed ``test`` answers as Kubernetes' JSON patch does.

    evanphx/json-patch (what kube-apiserver applies JSON patches with) reports a failed test as
    ``testing value <path> failed: test failed``; the ``jsonpatch`` library's own message would
    show Python type names. Ops are applied one by one so the failing op's path is known.
    """
    for op in ops:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            path = op.get("path") if isinstance(op, dict) else None
            raise jsonpatch.JsonPatchTestFailed(f"testing value {limits.echo(str(path))} failed: test failed") from None
    return doc


def apply_patch(resource: Resource, original: dict[str, Any], body: bytes, content_type: str) -> dict[str, Any]:
    """Patch ``original`` with ``body`` of ``content_type``; returns the new object."""
    media = media_type(content_type)
    if media == JSON_PATCH:
        ops = _decode_json(body, "json patch")
        if not isinstance(ops, list):
            raise _bad("json patch must be a JSON array of operations")
        try:
            result = _apply_json_patch(ops, copy.deepcopy(original))
        except jsonpatch.InvalidJsonPatch as e:
            raise _bad(f"invalid json patch: {e}") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise errors.Invalid(f"the server rejected our request due to an error in our request: {e}") from None
        except (TypeError, KeyError, ValueError, IndexError) as e:
            raise _bad(f"invalid json patch: {e}") from None
        if not isinstance(result, dict):
            raise _bad("json patch must leave an object")
        return result
    if media == MERGE_PATCH:
        doc = _decode_json(body, "merge patch")
        if not isinstance(doc, dict):
            raise _bad("merge patch must be a JSON object")
        merged = json_merge_patch(original, doc)
        assert isinstance(merged, dict)
        return merged
    if media == STRATEGIC_MERGE_PATCH:
        doc = _decode_json(body, "strategic merge patch")
        if not isinstance(doc, dict):
            raise _bad("strategic merge patch must be a JSON object")
        return strategic_merge_patch(resource, original, doc)
    if media == APPLY_PATCH:
        return strategic_merge_patch(resource, original, decode_apply(resource, body))
    raise errors.UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(PATCH_CONTENT_TYPES)}"
    )


def decode_apply(resource: Resource, body: bytes) -> dict[str, Any]:
    """The configuration of an apply patch, checked: an object of ``resource``'s kind, no directives."""
    doc = _decode_apply(body)
    if not isinstance(doc, dict):
        raise _bad("apply patch must be an object (the full manifest)")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not api_version or not kind:
        raise _bad("apply patch must set apiVersion and kind")
    if api_version != resource.api_version or kind != resource.kind:
        raise _bad(
            f"apply patch for {kind} ({api_version}) sent to {resource.plural}: "
            f"expected {resource.kind} ({resource.api_version})"
        )
    for k in _walk_keys(doc):
        if k.startswith("$"):
            raise _bad(f"apply patch may not contain patch directives ({k})")
    return doc


def _walk_keys(value: Any) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(str(k))
            out.extend(_walk_keys(v))
    elif isinstance(value, list):
        for x in value:
            out.extend(_walk_keys(x))
    return out
