"""ResourceQuota admission: refuse a create that would take a namespace over one of its quotas.

Role: Kubernetes' ``plugin/pkg/admission/resourcequota`` (``controller.go`` ``checkRequest``) with
the evaluators of ``pkg/quota/v1/evaluator/core`` (``pods.go``, ``services.go``) and the generic
object-count evaluator (``count/<resource>.<group>``). The pure part is ``usage`` (what one object
charges) and ``check`` (the verdict for one create against the namespace's quotas and current
usage); ``Quota`` is the small driver that reads the quotas and the namespace's objects.

Refusal, as kube-apiserver words it (403 Forbidden)::

    pods "p" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2

Scopes (``spec.scopes`` and ``spec.scopeSelector``; ``pods.go`` ``podMatchesScopeFunc``): a quota
with scopes counts only the pods that match every one — ``Terminating`` (``activeDeadlineSeconds``
≥ 0) / ``NotTerminating``, ``BestEffort`` (no container states cpu or memory requests or limits) /
``NotBestEffort``, ``PriorityClass`` (``In``/``NotIn`` on ``priorityClassName``, ``Exists``: has one)
and ``CrossNamespacePodAffinity`` — and never matches other kinds (the generic evaluator's
``MatchesNoScopeFunc``). Admission and the controller both filter by ``matches``.

Updates (``checkRequest``): pods and services are evaluated on update too (the services
evaluator handles updates; pods under in-place resize), charging only what grows — the usage
of the new object minus the old one's, negative parts dropped — so turning a ClusterIP Service into
a NodePort counts its ports against ``services.nodeports``, and a pod whose requests grow is
checked against ``requests.cpu``.

Invariants: ``used`` is computed from the stored objects of the namespace at admission time (not
from ``status.used``, which the quota controller keeps for display), so a quota holds even before
its controller has caught up; terminal pods (Succeeded/Failed) and pods being deleted are not
charged, as in ``pods.go`` ``QuotaV1Pod``.

Shared by the API server's admission chain (``apiserver/admission.py``) and the resourcequota
controller (``controllers/resourcequota.py``), hence its place in ``controlplane.api``.

Concurrency: called from the store threads; two creates racing in the same namespace can both be
admitted (Kubernetes serialises them through the quota's resourceVersion — a known gap here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from controlplane.api import errors, registry
from controlplane.api.quantity import parse_quantity
from controlplane.api.registry import Resource

Obj = Mapping[str, Any]
Usage = dict[str, Decimal]

_COMPUTE = ("cpu", "memory")
_BINARY = ((1024**4, "Ti"), (1024**3, "Gi"), (1024**2, "Mi"), (1024, "Ki"))


def format_quantity(name: str, value: Decimal) -> str:
    """A Quantity's canonical text as ``resource.Quantity.String()`` prints the common cases."""
    if value == value.to_integral_value():
        n = int(value)
        if name.endswith("memory") and n:
            for factor, suffix in _BINARY:
                if n % factor == 0:
                    return f"{n // factor}{suffix}"
        return str(n)
    milli = value * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    return str(value.normalize())


def _q(v: Any) -> Decimal:
    try:
        return parse_quantity(v)
    except (ValueError, TypeError):
        return Decimal(0)


def count_name(res: Resource) -> str:
    """``count/pods`` for the core group, ``count/deployments.apps`` otherwise."""
    return f"count/{res.plural}" if not res.group else f"count/{res.plural}.{res.group}"


def pod_charged(pod: Obj) -> bool:
    """Whether a stored pod counts against quota (QuotaV1Pod: not terminal, not being deleted)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def pod_compute(pod: Obj, kind: str) -> Usage:
    """A pod's effective ``requests``/``limits`` (``kind``): the sum over containers, at least the
    largest init container's (``PodRequests`` in ``k8s.io/component-helpers/resource``)."""
    spec = pod.get("spec") or {}
    total: Usage = {}
    for c in spec.get("containers") or []:
        for name, v in ((c.get("resources") or {}).get(kind) or {}).items():
            total[name] = total.get(name, Decimal(0)) + _q(v)
    for c in spec.get("initContainers") or []:
        for name, v in ((c.get("resources") or {}).get(kind) or {}).items():
            total[name] = max(total.get(name, Decimal(0)), _q(v))
    return total


def usage(res: Resource, obj: Obj) -> Usage:
    """What creating ``obj`` charges: its object counts and, for pods, its compute resources."""
    out: Usage = {count_name(res): Decimal(1)}
    if res is registry.PODS:
        if not pod_charged(obj):
            return {}
        out["pods"] = Decimal(1)
        requests, limits = pod_compute(obj, "requests"), pod_compute(obj, "limits")
        for name in _COMPUTE:
            if name in requests:
                out[f"requests.{name}"] = out[name] = requests[name]
            if name in limits:
                out[f"limits.{name}"] = limits[name]
    elif res is registry.SERVICES:
        out["services"] = Decimal(1)
        stype = (obj.get("spec") or {}).get("type")
        if stype in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = Decimal(len((obj.get("spec") or {}).get("ports") or []))
        if stype == "LoadBalancer":
            out["services.loadbalancers"] = Decimal(1)
    elif res in (registry.CONFIGMAPS, registry.SECRETS, registry.RESOURCEQUOTAS):
        out[res.plural] = Decimal(1)
    return out


SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity")


def scope_selectors(quota: Obj) -> list[Mapping[str, Any]]:
    """``spec.scopes`` (each as an ``Exists`` requirement) and ``spec.scopeSelector.matchExpressions``
    (``getScopeSelectorsFromQuota``)."""
    spec = quota.get("spec") or {}
    out: list[Mapping[str, Any]] = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    selector = spec.get("scopeSelector") or {}
    out.extend(e for e in selector.get("matchExpressions") or [] if isinstance(e, Mapping))
    return out


def is_best_effort(pod: Obj) -> bool:
    """QoS class BestEffort (``qos.GetPodQOS``): no container, init container or the pod itself
    states a non-zero cpu or memory request or limit."""
    spec = pod.get("spec") or {}
    holders = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    resources = [c.get("resources") or {} for c in holders if isinstance(c, Mapping)]
    resources.append(spec.get("resources") or {})
    for r in resources:
        for kind in ("requests", "limits"):
            for name, v in (r.get(kind) or {}).items():
                if name in _COMPUTE and _q(v) != 0:
                    return False
    return True


def _cross_namespace_affinity(pod: Obj) -> bool:
    """``usesCrossNamespacePodAffinity``: an affinity term naming namespaces or a namespace selector."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        a = affinity.get(kind) or {}
        terms = list(a.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [
            w.get("podAffinityTerm") or {} for w in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        ]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms if isinstance(t, Mapping)):
            return True
    return False


def _pod_matches(pod: Obj, selector: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    scope = selector.get("scopeName")
    if scope in ("Terminating", "NotTerminating"):
        deadline = spec.get("activeDeadlineSeconds")
        terminating = isinstance(deadline, int) and deadline >= 0
        return terminating if scope == "Terminating" else not terminating
    if scope in ("BestEffort", "NotBestEffort"):
        return is_best_effort(pod) if scope == "BestEffort" else not is_best_effort(pod)
    if scope == "PriorityClass":
        value = str(spec.get("priorityClassName") or "")
        op, values = selector.get("operator"), list(selector.get("values") or [])
        if op == "Exists":
            return bool(value)
        if op == "In":
            return value in values
        if op == "NotIn":
            return value not in values
        return False  # DoesNotExist: the evaluator's label set always holds the key
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(pod)
    return False


def matches(res: Resource, quota: Obj, obj: Obj) -> bool:
    """Whether ``quota``'s scopes select ``obj`` (no scopes: everything; scopes: only matching pods)."""
    selectors = scope_selectors(quota)
    if not selectors:
        return True
    return res is registry.PODS and all(_pod_matches(obj, s) for s in selectors)


def _missing(res: Resource, obj: Obj, hard: Iterable[str]) -> str | None:
    """pods.go Constraints: a quota on cpu/memory requests or limits needs every container to
    state them ("must specify requests.cpu for: c1,c2; limits.memory for: c1"), or None."""
    if res is not registry.PODS:
        return None
    containers = [c for c in (obj.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    parts: list[str] = []
    for key in sorted(hard):
        kind, _, name = key.partition(".")
        if key in _COMPUTE:
            kind, name = "requests", key
        if kind not in ("requests", "limits") or name not in _COMPUTE:
            continue
        names = sorted(
            str(c.get("name")) for c in containers if name not in ((c.get("resources") or {}).get(kind) or {})
        )
        if names:
            parts.append(f"{key} for: {','.join(names)}")
    return "must specify " + "; ".join(parts) if parts else None


def _pretty(values: Mapping[str, Decimal]) -> str:
    return ",".join(f"{k}={format_quantity(k, values[k])}" for k in sorted(values))


UsedOf = Callable[[Iterable[str], Obj], Usage]


def requested_usage(res: Resource, obj: Obj, old: Obj | None = None) -> Usage:
    """What a write charges: the usage of ``obj``, less the usage of ``old`` on an update
    (``SubtractWithNonNegativeResult``), zeros removed."""
    requested = usage(res, obj)
    if old is not None:
        before = usage(res, old)
        requested = {k: v - before.get(k, Decimal(0)) for k, v in requested.items()}
    return {k: v for k, v in requested.items() if v > 0}


def check(res: Resource, obj: Obj, quotas: Sequence[Obj], used_of: UsedOf, old: Obj | None = None) -> str | None:
    """Why creating (or, with ``old``, updating) ``obj`` is refused (the message after
    ``… is forbidden: ``), or None.

    ``quotas`` are the namespace's ResourceQuotas; ``used_of(names, quota)`` is the namespace's
    current usage of those resource names by the objects ``quota`` selects (``matches``)."""
    requested = requested_usage(res, obj, old)
    if not requested:
        return None
    for quota in sorted(quotas, key=lambda q: str((q.get("metadata") or {}).get("name"))):
        if not matches(res, quota, obj):
            continue
        qname = str((quota.get("metadata") or {}).get("name"))
        hard = {k: _q(v) for k, v in ((quota.get("spec") or {}).get("hard") or {}).items()}
        missing = _missing(res, obj, hard)
        if missing:
            return f"failed quota: {qname}: {missing}"
        matched = sorted(set(hard) & set(requested))
        if not matched:
            continue
        used = used_of(matched, quota)
        over = [k for k in matched if used.get(k, Decimal(0)) + requested[k] > hard[k]]
        if over:
            return (
                f"exceeded quota: {qname}, requested: {_pretty({k: requested[k] for k in over})}, "
                f"used: {_pretty({k: used.get(k, Decimal(0)) for k in over})}, "
                f"limited: {_pretty({k: hard[k] for k in over})}"
            )
    return None


def namespace_usage(res: Resource, objs: Iterable[Obj], names: Iterable[str], quota: Obj | None = None) -> Usage:
    """The summed usage of ``names`` over ``objs`` (the namespace's stored objects of ``res``),
    counting only the objects ``quota``'s scopes select when a quota is given."""
    wanted = set(names)
    total: Usage = {n: Decimal(0) for n in wanted}
    for o in objs:
        if quota is not None and not matches(res, quota, o):
            continue
        for k, v in usage(res, o).items():
            if k in wanted:
                total[k] += v
    return total


def forbidden(res: Resource, obj: Obj, reason: str) -> errors.Forbidden:
    """``admission.NewForbidden``: named by ``name`` or, before generation, ``generateName``."""
    md = obj.get("metadata") or {}
    name = str(md.get("name") or md.get("generateName") or "Unknown")
    resource = f"{res.plural}.{res.group}" if res.group else res.plural  # a GroupResource
    return errors.Forbidden(f'{resource} "{name}" is forbidden: {reason}', kind=res.plural, group=res.group, name=name)


class Quota:
    """The driver: reads quotas and the namespace's objects through ``list_objects(res, ns)``."""

    def __init__(self, list_objects: Callable[[Resource, str], list[dict[str, Any]]]) -> None:
        self._list = list_objects

    def admit_create(self, res: Resource, obj: Obj) -> None:
        self._admit(res, obj, None)

    def admit_update(self, res: Resource, obj: Obj, old: Obj) -> None:
        """An update of a pod or service (the evaluators that handle updates), charged by its growth."""
        if res is registry.PODS or res is registry.SERVICES:
            self._admit(res, obj, old)

    def _admit(self, res: Resource, obj: Obj, old: Obj | None) -> None:
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        if not res.namespaced or not namespace:
            return
        # The quotas first: with none in the namespace (the common case) there is nothing to compute
        # (a pod's usage is most of this step's cost on every pod create).
        quotas = self._list(registry.RESOURCEQUOTAS, namespace)
        if not quotas or not requested_usage(res, obj, old):
            return  # no quota, or nothing grows: no quota can refuse it
        listed: list[list[dict[str, Any]]] = []

        def used_of(names: Iterable[str], quota: Obj) -> Usage:
            if not listed:
                objs = self._list(res, namespace)
                listed.append([p for p in objs if pod_charged(p)] if res is registry.PODS else objs)
            return namespace_usage(res, listed[0], names, quota)

        reason = check(res, obj, quotas, used_of, old)
        if reason is not None:
            raise forbidden(res, obj, reason)
