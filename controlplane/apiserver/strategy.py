"""The per-kind strategy: what the server decides about an object before and after a client's write.

Role: kube-apiserver's registry strategies (``pkg/registry/<group>/<kind>/strategy.go`` with the
generic ``k8s.io/apiserver/pkg/registry/rest`` hooks) in one place for every kind:
``check_body`` (typed decode: apiVersion/kind, struct-typed fields, unknown fields dropped),
``strict_check`` (``fieldValidation=Strict``), ``prepare_for_create`` (PrepareForCreate: namespace,
name or generateName, uid, creationTimestamp, generation, status reset), ``merge_server_fields``
(PrepareForUpdate: server-owned metadata and the status/main-resource split, generation bumped on
spec change), and ``mark_for_deletion`` (BeforeDelete / CheckGracefulDelete: finalizers from the
propagation policy, a pod's grace period, a Namespace's Terminating phase).

``resources.ResourceOps`` calls these around its store reads and writes; nothing here touches the store.

Invariants:
- Pure functions over JSON objects; the only inputs besides the arguments are the clock, the
  random generateName suffix and the kinds' OpenAPI schemas.
- Status is the system's to write: cleared on create, kept from the stored object by main-resource
  writes; a status write changes nothing else.

Concurrency: no state; safe from any thread.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from controlplane.api import errors, meta, registry, structural
from controlplane.api.registry import Resource

Obj = dict[str, Any]

# Random suffix alphabet of generateName (no vowels, no confusable characters), as Kubernetes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_META_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
_TOP_FIELDS_COMMON = {"apiVersion", "kind", "metadata"}
_TOP_FIELDS: dict[str, set[str]] = {
    "configmaps": {"data", "binaryData", "immutable"},
    "secrets": {"data", "stringData", "type", "immutable"},
    "endpoints": {"subsets"},
    "events": {
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "series",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    },
    "serviceaccounts": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "endpointslices": {"addressType", "endpoints", "ports"},
    "controllerrevisions": {"data", "revision"},
    "roles": {"rules"},
    "clusterroles": {"rules", "aggregationRule"},
    "rolebindings": {"roleRef", "subjects"},
    "clusterrolebindings": {"roleRef", "subjects"},
    "priorityclasses": {"value", "globalDefault", "description", "preemptionPolicy"},
}
_MAX_GRACE_SECONDS = 100 * 365 * 24 * 3600
_GO_JSON_TYPES = ((bool, "bool"), (str, "string"), (int, "number"), (float, "number"), (list, "array"))
_PATH_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def generate_name(base: str) -> str:
    """``base`` plus five random characters (metadata.generateName; a collision draws again)."""
    return base + "".join(random.choices(_NAME_ALPHABET, k=5))


def clone(obj: Obj) -> Obj:
    """A deep copy of a JSON object (an orjson round trip: ~10× faster than ``copy.deepcopy``)."""
    result: Obj = orjson.loads(orjson.dumps(obj))
    return result


def _has_status(res: Resource) -> bool:
    return "status" in res.subresources


def known_top_fields(res: Resource) -> set[str]:
    extra = _TOP_FIELDS.get(res.plural)
    if extra is not None:
        return _TOP_FIELDS_COMMON | extra
    return _TOP_FIELDS_COMMON | {"spec", "status"}


def spec_of(obj: Obj) -> Obj:
    """``obj.spec`` as a dict ({} when missing — or not an object, in data stored before that was refused)."""
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def check_body(res: Resource, body: Any) -> Obj:
    """The request body as an object of ``res``'s kind (apiVersion/kind filled in when missing)."""
    if not isinstance(body, dict):
        raise errors.BadRequest(f"the request body must be a {res.kind} object, got {type(body).__name__}")
    api_version = body.get("apiVersion")
    if api_version not in (None, "") and api_version != res.api_version:
        raise errors.BadRequest(
            f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})"
        )
    kind = body.get("kind")
    if kind not in (None, "") and kind != res.kind:
        raise errors.BadRequest(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
    md = body.get("metadata")
    if md is None:
        md = {}
    known = known_top_fields(res)
    for field, value in (("metadata", md), ("spec", body.get("spec")), ("status", body.get("status"))):
        if value is not None and not isinstance(value, dict) and field in known:
            raise _not_a_struct(res, field, value)
    # Unknown fields are dropped, as Kubernetes' typed decoding does (``fieldValidation=Strict``
    # refuses them earlier instead).
    obj = {k: v for k, v in body.items() if k in known}
    obj["apiVersion"] = res.api_version
    obj["kind"] = res.kind
    obj["metadata"] = {k: v for k, v in md.items() if k in _META_FIELDS}
    prune_unknown(res, obj)
    structural.check(res, obj, body)  # kube-apiserver's typed decode: wrong JSON types never get stored
    for field in ("labels", "annotations"):
        value = md.get(field)
        if value is not None and (not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())):
            raise errors.invalid(
                res.kind,
                str(md.get("name") or ""),
                [errors.Cause(f"metadata.{field}", "must be a map of string keys to string values")],
            )
    return obj


def _not_a_struct(res: Resource, field: str, value: Any) -> errors.BadRequest:
    """What kube-apiserver answers when a struct-typed top-level field holds another JSON type.

    Its typed decoder fails and ``transformDecodeError`` (k8s.io/apiserver/pkg/endpoints/handlers/
    rest.go) wraps encoding/json's ``UnmarshalTypeError``: ``Namespace in version "v1" cannot be
    handled as a Namespace: json: cannot unmarshal string into Go struct field Namespace.spec of
    type v1.NamespaceSpec``.
    """
    got = next((name for t, name in _GO_JSON_TYPES if isinstance(value, t)), "object")
    go_type = "v1.ObjectMeta" if field == "metadata" else f"v1.{res.kind}{field.capitalize()}"
    return errors.BadRequest(
        f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: json: cannot unmarshal '
        f"{got} into Go struct field {res.kind}.{field} of type {go_type}"
    )


def prune_unknown(res: Resource, obj: Obj) -> None:
    """Drop fields the kind's schema does not define, at any depth (Kubernetes' decoding does)."""
    from controlplane.api import openapi

    for path in openapi.unknown_fields(res, obj):
        steps: list[str | int] = []
        for m in _PATH_PART.finditer(path):
            steps.append(m.group(1))
            steps += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
        node: Any = obj
        try:
            for step in steps[:-1]:
                node = node[step]
            if isinstance(node, dict) and isinstance(steps[-1], str):
                node.pop(steps[-1], None)
        except (KeyError, IndexError, TypeError):
            continue  # a path we cannot follow (odd key names): leave it


def strict_check(res: Resource, obj: Obj) -> None:
    """``fieldValidation=Strict``: fields the kind's schema does not define → 400 naming each one.

    The OpenAPI schemas (``controlplane.api.openapi``) find unknown fields at any depth; the
    top-level and ``metadata`` check here also covers kinds without a schema.
    """
    from controlplane.api import openapi

    unknown = [k for k in obj if k not in known_top_fields(res)]
    md = obj.get("metadata")
    if isinstance(md, dict):
        unknown += [f"metadata.{k}" for k in md if k not in _META_FIELDS]
    for path in openapi.unknown_fields(res, obj):
        if path not in unknown:
            unknown.append(path)
    if unknown:
        raise openapi.strict_decoding_error(res, unknown)


def prepare_for_create(res: Resource, namespace: str | None, body: Any) -> Obj:
    """PrepareForCreate: the body checked, namespaced, named, with uid, timestamps and generation set."""
    obj = check_body(res, body)
    md = obj["metadata"]
    if res.namespaced:
        ns = md.get("namespace") or namespace
        if namespace and ns != namespace:
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if not ns:
            raise errors.BadRequest("a namespace is required for namespaced resources")
        md["namespace"] = ns
    else:
        md.pop("namespace", None)
    if not md.get("name"):
        gen = md.get("generateName")
        if not gen:
            raise errors.invalid(
                res.kind,
                "",
                [errors.Cause("metadata.name", "name or generateName is required", "FieldValueRequired")],
            )
        md["name"] = generate_name(str(gen))
    md["uid"] = meta.new_uid()
    md["creationTimestamp"] = meta.now_rfc3339()
    for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
        md.pop(k, None)
    if res.has_generation:
        md["generation"] = 1
    else:
        md.pop("generation", None)
    reset_status_on_create(res, obj)
    return obj


def reset_status_on_create(res: Resource, obj: Obj) -> None:
    """Status is the system's to write: clear what a client sent on create (PrepareForCreate)."""
    if res is registry.PODS:
        obj["status"] = {"phase": "Pending"}
    elif res is registry.NAMESPACES:
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict) and "finalizers" not in spec:
            spec["finalizers"] = ["kubernetes"]
    elif res is registry.SERVICES:
        obj["status"] = {"loadBalancer": {}}
    elif _has_status(res) and res is not registry.NODES:
        obj["status"] = {}


def merge_server_fields(res: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
    """What a write may change: fields the server owns come from the stored object."""
    if subresource == "status":
        obj = clone(old)
        if "status" in new:
            obj["status"] = new["status"]
        else:
            obj.pop("status", None)
        return obj
    obj = dict(new)
    md = dict(obj.get("metadata") or {})
    omd = old["metadata"]
    for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "name", "namespace"):
        if k in omd:
            md[k] = omd[k]
        else:
            md.pop(k, None)
    md.pop("managedFields", None)
    md.pop("selfLink", None)
    if "generateName" in omd:
        md["generateName"] = omd["generateName"]
    else:
        md.pop("generateName", None)
    obj["metadata"] = md
    if (_has_status(res) and res is not registry.NAMESPACES) or subresource == "scale":
        if "status" in old:
            obj["status"] = old["status"]
        else:
            obj.pop("status", None)
    elif res is registry.NAMESPACES:
        obj["status"] = old.get("status", {})
        # spec.finalizers of a namespace only changes through /finalize
        spec = dict(spec_of(obj))
        ospec = spec_of(old)
        if "finalizers" in ospec:
            spec["finalizers"] = ospec["finalizers"]
        else:
            spec.pop("finalizers", None)
        obj["spec"] = spec
    if md.get("deletionTimestamp"):
        # Once deletion started, finalizers may only be removed, never added (Kubernetes' rule).
        oldf = omd.get("finalizers") or []
        md["finalizers"] = [f for f in (md.get("finalizers") or []) if f in oldf]
        if not md["finalizers"]:
            md.pop("finalizers")
    set_generation(res, obj, old)
    return obj


def set_generation(res: Resource, obj: Obj, old: Obj) -> None:
    """metadata.generation: the stored one, plus one when the spec changed."""
    md = obj["metadata"]
    if res.has_generation:
        gen = int(old["metadata"].get("generation") or 1)
        if obj.get("spec") != old.get("spec"):
            gen += 1
        md["generation"] = gen
    else:
        md.pop("generation", None)


def mark_for_deletion(res: Resource, obj: Obj, options: Obj) -> Obj | None:
    """The object marked for graceful deletion, or None when it should go at once."""
    md = obj["metadata"]
    new = clone(obj)
    nmd = new["metadata"]
    finalizers = list(nmd.get("finalizers") or [])
    policy = options.get("propagationPolicy")
    if policy is None and options.get("orphanDependents") is True:
        policy = "Orphan"
    if not md.get("deletionTimestamp"):
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
    if finalizers:
        nmd["finalizers"] = finalizers
    now = datetime.now(UTC)

    if res is registry.NAMESPACES:
        nmd.setdefault("deletionTimestamp", meta.format_time(now))
        nmd.setdefault("deletionGracePeriodSeconds", 0)
        new.setdefault("status", {})["phase"] = "Terminating"
        if not spec_of(new).get("finalizers") and not finalizers:
            return None
        return new

    grace = options.get("gracePeriodSeconds")
    if res is registry.PODS:
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            grace = 0  # no kubelet has to stop anything: remove at once
        grace = max(int(grace), 0)
        existing = md.get("deletionGracePeriodSeconds")
        if grace > 0:
            if existing is not None and int(existing) <= grace:
                return new if finalizers != list(md.get("finalizers") or []) else obj
            # gracePeriodSeconds is any int64; the timestamp is capped where dates end (a grace
            # of centuries means "never" either way), so no OverflowError answers a 500.
            nmd["deletionTimestamp"] = meta.format_time(now + timedelta(seconds=min(grace, _MAX_GRACE_SECONDS)))
            nmd["deletionGracePeriodSeconds"] = grace
            return new
        # grace 0: gone now unless finalizers hold it
        if finalizers:
            nmd.setdefault("deletionTimestamp", meta.format_time(now))
            nmd["deletionGracePeriodSeconds"] = 0
            return new
        return None

    if finalizers:
        nmd.setdefault("deletionTimestamp", meta.format_time(now))
        nmd.setdefault("deletionGracePeriodSeconds", 0)
        return new
    return None


def finalizers_done(res: Resource, obj: Obj) -> bool:
    if res is registry.NAMESPACES:
        return not spec_of(obj).get("finalizers")
    if res is registry.PODS:
        # a pod being deleted gracefully goes when its node says so (grace 0), not on finalizer removal
        return not obj["metadata"].get("deletionGracePeriodSeconds")
    return True
