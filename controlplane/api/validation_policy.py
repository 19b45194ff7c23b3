"""Validation of the policy kinds: PodDisruptionBudget, PriorityClass, Ingress, LimitRange.

Role: the checks of Kubernetes' ``pkg/apis/policy/validation`` (``ValidatePodDisruptionBudgetSpec``),
``pkg/apis/scheduling/validation`` (``ValidatePriorityClass``/``…Update``),
``pkg/apis/networking/validation`` (``ValidateIngressSpec``: pathType, absolute paths, a backend)
and ``pkg/apis/core/validation`` (``ValidateLimitRange``: supported types), with their field paths
and wording. ``validation`` merges ``KINDS`` into its own table at import time (import
``validation``, not this module). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from controlplane.api import validation as _v

_E = _v._Errors
_PERCENT = re.compile(r"^[0-9]+%$")
SYSTEM_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
HIGHEST_USER_DEFINABLE = 1000000000
_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")


def _positive_int_or_percent(e: _E, value: Any, path: str) -> None:
    # ValidatePositiveIntOrPercent + IsNotMoreThan100Percent
    if isinstance(value, str):
        if not _PERCENT.match(value):
            e.invalid(path, value, "must be an integer or percentage (e.g '5%')")
        elif int(value[:-1]) > 100:
            e.invalid(path, value, "must not be greater than 100%")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            e.invalid(path, value, "must be greater than or equal to 0")
    elif value is not None:
        e.invalid(path, value, "must be an integer or percentage (e.g '5%')")


def _pdb(e: _E, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = e.map_at(obj, "spec", "spec")
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        e.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")
    for key in ("minAvailable", "maxUnavailable"):
        _positive_int_or_percent(e, spec.get(key), f"spec.{key}")
    if spec.get("selector") is not None:
        _v._label_selector(e, spec["selector"], "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        e.not_supported("spec.unhealthyPodEvictionPolicy", policy, ("AlwaysAllow", "IfHealthyBudget"))


def _priorityclass(e: _E, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    meta = obj.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
    value = e.int_at(obj, "value", "value")
    if value is None and "value" not in obj:
        value = 0
    if name.startswith("system-"):
        if SYSTEM_CLASSES.get(name) != value:
            e.forbidden("metadata.name", "priority class names with 'system-' prefix are reserved for system use only")
    elif value is not None and value > HIGHEST_USER_DEFINABLE:
        e.forbidden("value", f"maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}")
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in ("Never", "PreemptLowerPriority"):
        e.not_supported("preemptionPolicy", policy, ("Never", "PreemptLowerPriority"))
    if old is not None:
        if old.get("value") != obj.get("value"):
            e.forbidden("value", "may not be changed in an update.")
        if old.get("preemptionPolicy") != obj.get("preemptionPolicy"):
            e.immutable("preemptionPolicy", obj.get("preemptionPolicy"))


def _ingress_backend(e: _E, backend: Any, path: str) -> None:
    if not isinstance(backend, dict):
        e.invalid(path, backend, "must be an object")
        return
    has_service, has_resource = backend.get("service") is not None, backend.get("resource") is not None
    if has_service and has_resource:
        e.invalid(path, "", "cannot set both resource and service backends")
    elif not has_service and not has_resource:
        e.invalid(path, "", "resource or service backend is required")


def _ingress(e: _E, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = e.map_at(obj, "spec", "spec")
    rules = e.list_at(spec, "rules", "spec.rules")
    if spec.get("defaultBackend") is not None:
        _ingress_backend(e, spec["defaultBackend"], "spec.defaultBackend")
    elif not rules:
        e.invalid("spec", "", "either `defaultBackend` or `rules` must be specified")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            e.invalid(f"spec.rules[{i}]", rule, "must be an object")
            continue
        http = rule.get("http")
        paths = e.list_at(http, "paths", f"spec.rules[{i}].http.paths") if isinstance(http, dict) else []
        for j, p in enumerate(paths):
            at = f"spec.rules[{i}].http.paths[{j}]"
            if not isinstance(p, dict):
                e.invalid(at, p, "must be an object")
                continue
            ptype = p.get("pathType")
            if ptype is None:
                e.required(f"{at}.pathType", "pathType must be specified")
            elif ptype not in _PATH_TYPES:
                e.not_supported(f"{at}.pathType", ptype, _PATH_TYPES)
            path = p.get("path")
            if ptype in ("Exact", "Prefix") and not (isinstance(path, str) and path.startswith("/")):
                e.invalid(f"{at}.path", path if path is not None else "", "must be an absolute path")
            _ingress_backend(e, p.get("backend"), f"{at}.backend")


def _limitrange(e: _E, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = e.map_at(obj, "spec", "spec")
    for i, item in enumerate(e.list_at(spec, "limits", "spec.limits")):
        if not isinstance(item, dict):
            e.invalid(f"spec.limits[{i}]", item, "must be an object")
            continue
        t = item.get("type")
        if t not in ("Container", "Pod", "PersistentVolumeClaim"):
            e.not_supported(f"spec.limits[{i}].type", t, ("Container", "PersistentVolumeClaim", "Pod"))
        if t == "Pod" and (item.get("default") or item.get("defaultRequest")):
            path = "default" if item.get("default") else "defaultRequest"
            e.forbidden(f"spec.limits[{i}].{path}", f"may not be specified when `type` is '{t}'")


KINDS: dict[str, Callable[[_E, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "poddisruptionbudgets": _pdb,
    "priorityclasses": _priorityclass,
    "ingresses": _ingress,
    "limitranges": _limitrange,
}
