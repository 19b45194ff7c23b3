"""LimitRanger admission: default a pod's container requests/limits from the namespace's
LimitRanges, then enforce their min/max/maxLimitRequestRatio.

Role: Kubernetes' ``plugin/pkg/admission/limitranger/admission.go`` (``defaultContainerResourceRequirements``,
``mergePodResourceRequirements``, ``PodValidateLimitFunc``, ``minConstraint``/``maxConstraint``/
``limitRequestRatioConstraint``) for the ``Container`` and ``Pod`` limit types. ``default_pod`` and
``validate_pod`` are pure; the admission driver passes in the namespace's LimitRanges.

Wording (403 Forbidden, one error bare, several as ``[a, b]`` like ``utilerrors.NewAggregate``)::

    pods "p" is forbidden: minimum cpu usage per Container is 100m, but request is 50m
    pods "p" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 2Gi

Invariants: defaulting only fills resources a container does not name; the pod is annotated
``kubernetes.io/limit-ranger`` listing what was set, as Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from controlplane.api.quantity import parse_quantity
from controlplane.api.quota import format_quantity

Obj = Mapping[str, Any]
ANNOTATION = "kubernetes.io/limit-ranger"


def _items(limit_ranges: Sequence[Obj], type_: str) -> Sequence[Obj]:
    return [
        item
        for lr in limit_ranges
        for item in ((lr.get("spec") or {}).get("limits") or [])
        if isinstance(item, dict) and item.get("type") == type_
    ]


def default_limit_range(lr: dict[str, Any]) -> None:
    """SetDefaults_LimitRangeItem (Container type): default ← max, defaultRequest ← default ← min."""
    for item in (lr.get("spec") or {}).get("limits") or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = item.setdefault("default", {}) if item.get("max") else item.get("default")
        for k, v in (item.get("max") or {}).items():
            assert default is not None
            default.setdefault(k, v)
        if item.get("default") == {}:
            del item["default"]
        sources = [item.get("default") or {}, item.get("min") or {}]
        if any(sources):
            req = item.setdefault("defaultRequest", {})
            for src in sources:
                for k, v in src.items():
                    req.setdefault(k, v)


def default_pod(pod: dict[str, Any], limit_ranges: Sequence[Obj]) -> None:
    """Fill unset container requests/limits from Container-type ``defaultRequest``/``default``."""
    notes: list[str] = []
    for item in _items(limit_ranges, "Container"):
        for c in (pod.get("spec") or {}).get("containers") or []:
            resources = c.setdefault("resources", {})
            for kind, src, label in (("limits", "default", "limit"), ("requests", "defaultRequest", "request")):
                for name, value in (item.get(src) or {}).items():
                    current = resources.get(kind) or {}
                    if name not in current:
                        resources.setdefault(kind, {})[name] = value
                        notes.append(f"{name} {label} for container {c.get('name')}")
    if notes:
        md = pod.setdefault("metadata", {})
        md.setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _q(v: Any) -> Decimal:
    try:
        return parse_quantity(v)
    except (ValueError, TypeError):
        return Decimal(0)


def _check(type_: str, item: Obj, requests: Mapping[str, Any], limits: Mapping[str, Any], errs: list[str]) -> None:
    for name, enforced in sorted((item.get("min") or {}).items()):
        if name not in requests:
            errs.append(f"minimum {name} usage per {type_} is {enforced}.  No request is specified")
        elif _q(requests[name]) < _q(enforced):
            errs.append(f"minimum {name} usage per {type_} is {enforced}, but request is {requests[name]}")
    for name, enforced in sorted((item.get("max") or {}).items()):
        if name not in limits:
            errs.append(f"maximum {name} usage per {type_} is {enforced}.  No limit is specified")
        elif _q(limits[name]) > _q(enforced):
            errs.append(f"maximum {name} usage per {type_} is {enforced}, but limit is {limits[name]}")
    for name, enforced in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        req, lim = _q(requests.get(name, 0)), _q(limits.get(name, 0))
        if name not in limits:
            continue
        if req == 0:
            errs.append(
                f"{name} max limit to request ratio per {type_} is {enforced}, "
                "but no request is specified or request is 0"
            )
        elif lim / req > _q(enforced):
            errs.append(
                f"{name} max limit to request ratio per {type_} is {enforced}, "
                f"but provided ratio is {float(lim / req):f}"
            )


def _pod_totals(pod: Obj, kind: str) -> dict[str, str]:
    total: dict[str, Decimal] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        for name, v in ((c.get("resources") or {}).get(kind) or {}).items():
            total[name] = total.get(name, Decimal(0)) + _q(v)
    return {k: format_quantity(k, v) for k, v in total.items()}


def validate_pod(pod: Obj, limit_ranges: Sequence[Obj]) -> str | None:
    """Why the (defaulted) pod breaks a LimitRange (the text after ``is forbidden: ``), or None."""
    errs: list[str] = []
    containers = (pod.get("spec") or {}).get("containers") or []
    for item in _items(limit_ranges, "Container"):
        for c in containers:
            res = c.get("resources") or {}
            _check("Container", item, res.get("requests") or {}, res.get("limits") or {}, errs)
    for item in _items(limit_ranges, "Pod"):
        _check("Pod", item, _pod_totals(pod, "requests"), _pod_totals(pod, "limits"), errs)
    if not errs:
        return None
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
