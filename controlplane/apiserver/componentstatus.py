"""``/api/v1/componentstatuses`` (``kubectl get cs``): the health of the control plane's parts.

Role: kube-apiserver's legacy, read-only componentstatus REST (pkg/registry/core/componentstatus):
a list computed on every request, never stored, of ``scheduler``, ``controller-manager`` and the
store, each with one ``Healthy`` condition (``message`` on success, ``error`` on failure).
Kubernetes probes each component's ``/healthz``; kubelab's scheduler and controller-manager may
run in other processes with no known address, so their health is their leader Lease's freshness
(``kube-system/kube-scheduler``, ``kube-system/kube-controller-manager``): healthy while
``renewTime + leaseDurationSeconds`` is in the future — which is what their own healthz reports
too (a leader that stopped renewing is unhealthy). The store's entry is named ``etcd-0`` for
etcd (as in Kubernetes) and after its backend otherwise (``sqlite``, ``memory``), healthy when a
read succeeds, with etcd's health body as the message.

Every answer carries kube-apiserver's deprecation warning. Only ``get`` and ``list`` are served
(the registry entry has only those verbs); a Table is served for ``kubectl get``.

Concurrency: ``component_statuses`` is pure; ``read_inputs`` does blocking store reads and runs on
the server's worker threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from controlplane.api import errors

WARNING = "v1 ComponentStatus is deprecated in v1.19+"
LEASES = (("scheduler", "kube-scheduler"), ("controller-manager", "kube-controller-manager"))
LEASE_NAMESPACE = "kube-system"
ETCD_HEALTHY = '{"health":"true","reason":""}'

Obj = dict[str, Any]


def _parse(ts: Any) -> datetime | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def lease_health(lease_name: str, lease: Mapping[str, Any] | None, now: datetime) -> tuple[bool, str]:
    """(healthy, message-or-error) for a component from its leader Lease."""
    if lease is None:
        return False, f"no leader: lease {LEASE_NAMESPACE}/{lease_name} not found"
    spec = lease.get("spec") or {}
    renewed = _parse(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int):
        return False, f"no leader: lease {LEASE_NAMESPACE}/{lease_name} has no renewTime"
    expires = renewed + timedelta(seconds=duration)
    if expires < now:
        holder = spec.get("holderIdentity") or "<none>"
        return False, f"leader {holder} stopped renewing lease {LEASE_NAMESPACE}/{lease_name} at {spec['renewTime']}"
    return True, "ok"


def _item(name: str, healthy: bool, text: str) -> Obj:
    cond: Obj = {"type": "Healthy", "status": "True" if healthy else "False"}
    cond["message" if healthy else "error"] = text
    return {"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name}, "conditions": [cond]}


def component_statuses(
    leases: Mapping[str, Mapping[str, Any] | None], store_name: str, store_error: str | None, now: datetime
) -> list[Obj]:
    """The list kube-apiserver would answer: scheduler, controller-manager, then the store."""
    items = []
    for name, lease_name in LEASES:
        healthy, text = lease_health(lease_name, leases.get(lease_name), now)
        items.append(_item(name, healthy, text))
    items.append(_item(store_name, store_error is None, store_error or ETCD_HEALTHY))
    return items


def store_name(store: Any) -> str:
    """``etcd-0`` for etcd, as Kubernetes names it; the backend's name otherwise."""
    kind = type(store).__name__.lower().removesuffix("store")
    return "etcd-0" if kind == "etcd" else kind or "store"


def read_inputs(
    get_lease: Callable[[str], Obj], probe_store: Callable[[], object]
) -> tuple[dict[str, Obj | None], str | None]:
    """The Leases (None when missing) and the store's error (None when a read succeeded)."""
    leases: dict[str, Obj | None] = {}
    for _, lease_name in LEASES:
        try:
            leases[lease_name] = get_lease(lease_name)
        except Exception:  # missing (NotFound) or unreadable: the store's own line says which
            leases[lease_name] = None
    try:
        probe_store()
        store_error = None
    except Exception as e:
        store_error = f"store read failed: {e}"
    return leases, store_error


def lookup(items: list[Obj], name: str) -> Obj:
    for item in items:
        if item["metadata"]["name"] == name:
            return item
    raise errors.NotFound(f'componentstatuses "{name}" not found', kind="componentstatuses", name=name)


def as_list(items: list[Obj]) -> Obj:
    return {"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items}
