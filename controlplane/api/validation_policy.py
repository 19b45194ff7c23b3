"""Validation of the policy kinds: PodDisruptionBudget, PriorityClass, Ingress, LimitRange, ResourceQuota.

Role: the checks of Kubernetes' ``pkg/apis/policy/validation`` (``ValidatePodDisruptionBudgetSpec``),
``pkg/apis/scheduling/validation`` (``ValidatePriorityClass``/``…Update``),
``pkg/apis/networking/validation`` (``ValidateIngressSpec``: pathType, absolute paths, a backend)
and ``pkg/apis/core/validation`` (``ValidateLimitRange``: supported types; ``ValidateResourceQuota``
and ``…Update``: resource names, quantities, scopes and the scope selector, immutable scopes; the
name sets are ``pkg/apis/core/helper``'s), with their field paths and wording. ``validation``
merges ``KINDS`` into its own table at import time (import ``validation``, not this module). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from controlplane.api import validation as _v
from controlplane.api.selectors import qualified_name_errors

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


# pkg/apis/core/helper/helpers.go
_STANDARD_RESOURCES = frozenset(
    {
        "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage",
        "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods", "resourcequotas", "services",
        "replicationcontrollers", "secrets", "configmaps", "persistentvolumeclaims", "storage",
        "requests.storage", "services.nodeports", "services.loadbalancers",
    }
)  # fmt: skip
_STANDARD_QUOTA_RESOURCES = _STANDARD_RESOURCES - {"storage"}
_INTEGER_RESOURCES = frozenset(
    {
        "pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "configmaps",
        "persistentvolumeclaims", "services.nodeports", "services.loadbalancers",
    }
)  # fmt: skip
_QUOTA_SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
                 "CrossNamespacePodAffinity")  # fmt: skip
_POD_QUOTA_RESOURCES = frozenset(
    {"pods", "cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"}
)
_CONFLICTING_SCOPES = (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating"))
_EXISTS_ONLY_SCOPES = ("BestEffort", "NotBestEffort", "Terminating", "NotTerminating")


def _hugepages(name: str) -> bool:
    return name.startswith(("hugepages-", "requests.hugepages-"))


def _standard_quota_resource(name: str) -> bool:
    return name in _STANDARD_QUOTA_RESOURCES or _hugepages(name)


def _extended_resource(name: str) -> bool:
    # IsExtendedResourceName: outside kubernetes.io, not "requests."-prefixed, a qualified name as quota uses it
    native = "/" not in name or "kubernetes.io/" in name
    return not native and not name.startswith("requests.") and not qualified_name_errors("requests." + name)


def _scope_valid_for(scope: str, resource: str) -> bool:
    # IsResourceQuotaScopeValidForResource
    if scope == "BestEffort":
        return resource == "pods"
    if scope in ("Terminating", "NotTerminating", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"):
        return resource in _POD_QUOTA_RESOURCES
    return True


def _quota_resources(e: _E, values: Mapping[str, Any], path: str) -> None:
    """ValidateResourceQuotaResourceName + ValidateResourceQuantityValue for each entry of a ResourceList."""
    for name, q in values.items():
        at = f"{path}[{name}]"
        msgs = qualified_name_errors(str(name))
        for msg in msgs:
            e.invalid(at, name, msg)
        if not msgs and "/" not in name:
            if name not in _STANDARD_RESOURCES and not _hugepages(name):
                e.invalid(at, name, "must be a standard resource type or fully qualified")
            if not _standard_quota_resource(name):
                e.invalid(at, name, "must be a standard resource for quota")
        amount = e.quantity(at, q)
        if amount is None:
            continue
        if (name in _INTEGER_RESOURCES or _extended_resource(str(name))) and (amount * 1000) % 1000:
            e.invalid(at, q, "must be an integer")


def _scopes(e: _E, scopes: list[Any], hard: Mapping[str, Any], path: str, value: Any) -> None:
    for scope in scopes:
        if scope not in _QUOTA_SCOPES:
            e.invalid(path, value, "unsupported scope")
        for k in sorted(hard):
            if _standard_quota_resource(k) and not _scope_valid_for(str(scope), k):
                e.invalid(path, value, "unsupported scope applied to resource")
    for pair in _CONFLICTING_SCOPES:
        if all(p in scopes for p in pair):
            e.invalid(path, value, "conflicting scopes")


def _resourcequota(e: _E, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = e.map_at(obj, "spec", "spec")
    hard = e.map_at(spec, "hard", "spec.hard")
    _quota_resources(e, hard, "spec.hard")
    scopes = e.list_at(spec, "scopes", "spec.scopes")
    if scopes:
        _scopes(e, scopes, hard, "spec.scopes", scopes)
    selector = spec.get("scopeSelector")
    if isinstance(selector, dict):
        at = "spec.scopeSelector.matchExpressions"
        names: list[Any] = []
        for req in e.list_at(selector, "matchExpressions", at):
            if not isinstance(req, dict):
                e.invalid(at, req, "must be an object")
                continue
            scope, op, values = req.get("scopeName"), req.get("operator"), req.get("values") or []
            if scope not in _QUOTA_SCOPES:
                e.invalid(f"{at}.scopeName", scope, "unsupported scope")
            for k in sorted(hard):
                if _standard_quota_resource(k) and not _scope_valid_for(str(scope), k):
                    e.invalid(at, selector, "unsupported scope applied to resource")
            if scope in _EXISTS_ONLY_SCOPES and op != "Exists":
                e.invalid(
                    f"{at}.operator",
                    op,
                    "must be 'Exist' only operator when scope is any of ResourceQuotaScopeTerminating, "
                    "ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort and "
                    "ResourceQuotaScopeNotBestEffort",
                )
            if op in ("In", "NotIn"):
                if not values:
                    e.required(
                        f"{at}.values",
                        "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                    )
            elif op in ("Exists", "DoesNotExist"):
                if values:
                    e.invalid(
                        f"{at}.values",
                        values,
                        "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                    )
            else:
                e.invalid(f"{at}.operator", op, "not a valid selector operator")
            names.append(scope)
        for pair in _CONFLICTING_SCOPES:
            if all(p in names for p in pair):
                e.invalid(at, scopes, "conflicting scopes")
    elif selector is not None:
        e.invalid("spec.scopeSelector", selector, "must be an object")
    status = e.map_at(obj, "status", "status")
    for key in ("hard", "used"):
        _quota_resources(e, e.map_at(status, key, f"status.{key}"), f"status.{key}")
    if old is not None:  # ValidateResourceQuotaUpdate: the scopes cannot change
        old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
        old_scopes = old_spec.get("scopes") if isinstance(old_spec, dict) else None
        if set(map(str, old_scopes or [])) != set(map(str, scopes)):
            e.immutable("spec.scopes", scopes)


KINDS: dict[str, Callable[[_E, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "poddisruptionbudgets": _pdb,
    "priorityclasses": _priorityclass,
    "ingresses": _ingress,
    "limitranges": _limitrange,
    "resourcequotas": _resourcequota,
}
