"""Table printers for the policy kinds: ResourceQuota, LimitRange, PodDisruptionBudget,
PriorityClass, Ingress and IngressClass.

Role: the columns and cells of Kubernetes' ``pkg/printers/internalversion/printers.go``
(``printResourceQuota``, ``printLimitRange``, ``printPodDisruptionBudget``, ``printPriorityClass``,
``printIngress``, ``printIngressClass``), kept apart from ``tables.py`` to keep modules small.
``tables`` merges ``PRINTERS`` into its own table at import time (so import ``tables``, not this).

Pure; a malformed object prints zero values and never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from controlplane.api import errors
from controlplane.api import tables as _t
from controlplane.api.meta import parse_time

Obj = _t.Obj
Cell = _t.Cell


def _intstr(v: Any) -> str:
    return str(v) if isinstance(v, int | str) and not isinstance(v, bool) else "N/A"


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _quota_row(q: Obj, now: datetime) -> list[Cell]:
    # printResourceQuota: "pods: 1/2" per resource, limits.* under LIMIT, the rest under REQUEST
    hard = _dict(_t._get(q, "status", "hard")) or _dict(_t._get(q, "spec", "hard"))
    used = _dict(_t._get(q, "status", "used"))
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard, key=str):
        text = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limits if name.startswith("limits.") else requests).append(text)
    return [_t._name(q), _t._age(q, now), ", ".join(requests), ", ".join(limits)]


def _limitrange_row(lr: Obj, now: datetime) -> list[Cell]:
    raw = _t._get(lr, "metadata", "creationTimestamp")
    try:
        ts = parse_time(raw) if isinstance(raw, str) else None
    except (ValueError, errors.ApiError):
        ts = None
    return [_t._name(lr), ts.strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None else "<unknown>"]


def _pdb_row(pdb: Obj, now: datetime) -> list[Cell]:
    spec = _dict(pdb.get("spec"))
    return [
        _t._name(pdb),
        _intstr(spec.get("minAvailable")),
        _intstr(spec.get("maxUnavailable")),
        _t._int(_t._get(pdb, "status", "disruptionsAllowed")),
        _t._age(pdb, now),
    ]


def _priorityclass_row(pc: Obj, now: datetime) -> list[Cell]:
    return [
        _t._name(pc),
        _t._int(pc.get("value")),
        "true" if pc.get("globalDefault") is True else "false",
        _t._age(pc, now),
        _t._str(pc.get("preemptionPolicy")),
    ]


def _ingress_hosts(ing: Obj) -> str:
    # formatHosts: every rule's host ("*" for none), three at most then "+ N more..."
    hosts = [_t._str(r.get("host")) or "*" for r in _t._maps(_t._get(ing, "spec", "rules"))]
    if not hosts:
        return "*"
    if len(hosts) > 3:
        return ",".join(hosts[:3]) + f" + {len(hosts) - 3} more..."
    return ",".join(hosts)


def _ingress_row(ing: Obj, now: datetime) -> list[Cell]:
    spec = _dict(ing.get("spec"))
    cls = _t._str(spec.get("ingressClassName")) or "<none>"
    lbs = _t._maps(_t._get(ing, "status", "loadBalancer", "ingress"))
    address = ",".join(_t._str(lb.get("ip")) or _t._str(lb.get("hostname")) for lb in lbs)
    ports = "80, 443" if _t._list(spec.get("tls")) else "80"
    return [_t._name(ing), str(cls), _ingress_hosts(ing), address, ports, _t._age(ing, now)]


def _ingressclass_row(ic: Obj, now: datetime) -> list[Cell]:
    spec = _dict(ic.get("spec"))
    params = spec.get("parameters")
    text = "<none>"
    if isinstance(params, dict):
        text = f"{params.get('kind', '')}/{params.get('name', '')}"
        if params.get("apiGroup"):
            text = f"{params['apiGroup']}/{text}"
    return [_t._name(ic), _t._str(spec.get("controller")), text, _t._age(ic, now)]


_c = _t._c

PRINTERS: dict[str, tuple[list[_t.Column], Callable[[Obj, datetime], list[Cell]]]] = {
    "resourcequotas": (
        [
            _t._NAME,
            _t._AGE,
            _c("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
            _c("Limit", "Limits control the maximum amount of cpu/memory that a container may use independently."),
        ],
        _quota_row,
    ),
    "limitranges": (
        [_t._NAME, _c("Created At", "Creation timestamp of the LimitRange")],
        _limitrange_row,
    ),
    "poddisruptionbudgets": (
        [
            _t._NAME,
            _c("Min Available", "The minimum number of pods that must be available."),
            _c("Max Unavailable", "The maximum number of pods that may be unavailable."),
            _c("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", type_="integer"),
            _t._AGE,
        ],
        _pdb_row,
    ),
    "priorityclasses": (
        [
            _t._NAME,
            _c("Value", "The value of this priority class.", type_="integer"),
            _c(
                "Global-Default",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
                type_="boolean",
            ),
            _t._AGE,
            _c("PreemptionPolicy", "PreemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        _priorityclass_row,
    ),
    "ingresses": (
        [
            _t._NAME,
            _c("Class", "The name of the IngressClass resource that should be used for ingress."),
            _c("Hosts", "Hosts that incoming requests are matched against before the IngressRule is applied"),
            _c("Address", "Address is a list containing ingress points for the load-balancer"),
            _c("Ports", "Ports of TLS configurations that open"),
            _t._AGE,
        ],
        _ingress_row,
    ),
    "ingressclasses": (
        [
            _t._NAME,
            _c("Controller", "Controller that is responsible for handling this class"),
            _c("Parameters", "A reference to a resource with additional parameters"),
            _t._AGE,
        ],
        _ingressclass_row,
    ),
}
