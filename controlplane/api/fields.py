"""The selectable fields of each kind: what ``?fieldSelector=`` may name, and their values.

Role: Kubernetes does not let a field selector name any JSON path; every kind publishes a small
set of fields (``ToSelectableFields`` in each registry strategy, plus the field-label conversion
functions). This module is that table. The API server calls ``check_field_selector`` once per
request (unknown field → 400 ``field label not supported: X``) and ``field_set`` per object
when filtering lists and watch events.

Examples of who relies on which field:
- ``kubectl describe node N``: pods ``spec.nodeName=N,status.phase!=Succeeded,status.phase!=Failed``;
- ``kubectl describe``: events ``involvedObject.name/namespace/uid/kind``;
- ``kubectl delete``/``rollout status``/``wait``: ``metadata.name`` on every kind;
- noded: pods ``spec.nodeName=<me>``; the scheduler: pods ``spec.nodeName=`` (unscheduled).

Invariants: every kind supports ``metadata.name`` and ``metadata.namespace`` (empty for
cluster-scoped objects); values are strings exactly as Kubernetes renders them (booleans as
``"true"``/``"false"``, integers in decimal, a missing field as ``""``). Pure; thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import Resource
from controlplane.api.selectors import FieldSelector

__all__ = ["check_field_selector", "field_set", "matcher", "supported_fields"]

Getter = Callable[[Mapping[str, Any]], str]


def _path(*keys: str) -> Getter:
    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for k in keys:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(k)
        return _render(cur)

    return get


def _render(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _bool_path(*keys: str) -> Getter:
    """A boolean field that reads ``"false"`` when unset (Go's zero value), as Kubernetes renders it."""
    inner = _path(*keys)

    def get(obj: Mapping[str, Any]) -> str:
        return inner(obj) or "false"

    return get


def _int_path(*keys: str) -> Getter:
    """An integer field that reads ``"0"`` when unset (Go's zero value)."""
    inner = _path(*keys)

    def get(obj: Mapping[str, Any]) -> str:
        return inner(obj) or "0"

    return get


def _event_source(obj: Mapping[str, Any]) -> str:
    # Kubernetes: source.component, falling back to reportingComponent for events.k8s.io-style events
    return _path("source", "component")(obj) or _path("reportingComponent")(obj)


_META: dict[str, Getter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

# Per plural; the group is not needed because plurals are unique across the kinds we serve.
_FIELDS: dict[str, dict[str, Getter]] = {
    "pods": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "events": {
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _event_source,
        "type": _path("type"),
    },
    "nodes": {"spec.unschedulable": _bool_path("spec", "unschedulable")},
    "secrets": {"type": _path("type")},
    "namespaces": {"status.phase": _path("status", "phase")},
    "replicasets": {"status.replicas": _int_path("status", "replicas")},
    "jobs": {"status.successful": _int_path("status", "successful")},
    "services": {"spec.clusterIP": _path("spec", "clusterIP"), "spec.type": _path("spec", "type")},
}


def _getters(resource: Resource) -> dict[str, Getter]:
    return {**_META, **_FIELDS.get(resource.plural, {})}


def supported_fields(resource: Resource) -> list[str]:
    """The field names a selector may use for this resource, sorted."""
    return sorted(_getters(resource))


def field_set(resource: Resource, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` with their string values (missing fields are ``""``)."""
    return {name: get(obj) for name, get in _getters(resource).items()}


def matcher(resource: Resource, sel: FieldSelector) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for ``sel`` on objects of this kind that reads only the fields ``sel`` names.

    Equivalent to ``sel.matches(field_set(resource, obj))`` but cheaper per object, which matters
    when filtering large lists and every watch event. Unknown fields raise like
    ``check_field_selector``.
    """
    check_field_selector(resource, sel)
    if sel.empty:
        return lambda obj: True
    getters = _getters(resource)
    terms = [(getters[r.field], r.operator == "=", r.value) for r in sel.requirements]

    def match(obj: Mapping[str, Any]) -> bool:
        return all((get(obj) == value) == equal for get, equal, value in terms)

    return match


def check_field_selector(resource: Resource, sel: FieldSelector) -> None:
    """Raise ``BadRequest("field label not supported: X")`` for a field this kind does not publish."""
    known = _getters(resource)
    for req in sel.requirements:
        if req.field not in known:
            raise errors.BadRequest(f"field label not supported: {req.field}")
