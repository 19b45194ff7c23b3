"""ResourceQuota controller: keeps ``status.hard`` and ``status.used`` of every quota.

Role: Kubernetes' ``pkg/controller/resourcequota`` (``syncResourceQuota``): ``status.hard`` is
``spec.hard``; ``status.used`` is the namespace's current usage of each hard resource, computed by
the same evaluators the admission plugin uses (``quota_admission.usage``). Keyed by quota; any
event on a counted kind (pods, services, configmaps, secrets) re-syncs the quotas of its
namespace, and a full resync runs every ``period`` seconds for ``count/*`` of other kinds.

Concurrency: one worker; reads informer caches and LISTs (for kinds without an informer).
"""

from __future__ import annotations

from typing import Any

from controlplane.api import registry
from controlplane.api.quota import format_quantity, namespace_usage, pod_charged
from controlplane.api.registry import CONFIGMAPS, PODS, RESOURCEQUOTAS, SECRETS, SERVICES
from controlplane.controllers.base import Controller, ControllerContext, ignore_not_found
from controlplane.controllers.util import Obj, namespace_of

_WATCHED = (PODS, SERVICES, CONFIGMAPS, SECRETS)


def resource_for(name: str) -> registry.Resource | None:
    """The kind a quota resource name counts (``pods``, ``requests.cpu`` → pods; ``count/x.g``)."""
    if name.startswith("count/"):
        plural, _, group = name[len("count/") :].partition(".")
        return registry.lookup(group, "v1", plural)
    if name in ("pods", "cpu", "memory") or name.startswith(("requests.", "limits.")):
        return PODS
    if name.startswith("services"):
        return SERVICES
    return {"configmaps": CONFIGMAPS, "secrets": SECRETS, "resourcequotas": RESOURCEQUOTAS}.get(name)


def quota_status(quota: Obj, objects: dict[registry.Resource, list[Obj]]) -> dict[str, Any]:
    """``status`` of ``quota`` given the namespace's objects per kind (pure)."""
    hard = dict((quota.get("spec") or {}).get("hard") or {})
    used: dict[str, str] = {}
    for name in hard:
        res = resource_for(name)
        if res is None:
            continue
        objs = objects.get(res, [])
        if res is PODS:
            objs = [p for p in objs if pod_charged(p)]
        used[name] = format_quantity(name, namespace_usage(res, objs, [name], quota)[name])  # scoped
    return {"hard": hard, "used": used}


class ResourceQuotaController(Controller):
    name = "resourcequota"
    workers = 1

    def __init__(self, ctx: ControllerContext, period: float = 30.0) -> None:
        super().__init__(ctx)
        self.period = period
        self.quotas = ctx.informers.get(RESOURCEQUOTAS)
        self.quotas.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.informers = {res: ctx.informers.get(res) for res in _WATCHED}
        for inf in self.informers.values():
            inf.add_handler(on_add=self._changed, on_update=lambda _o, n: self._changed(n), on_delete=self._changed)

    def _changed(self, obj: Obj) -> None:
        ns = namespace_of(obj)
        for q in self.quotas.list():
            if namespace_of(q) == ns:
                self.enqueue(q)

    def _objects(self, ns: str, quota: Obj) -> dict[registry.Resource, list[Obj]]:
        out: dict[registry.Resource, list[Obj]] = {}
        for name in (quota.get("spec") or {}).get("hard") or {}:
            res = resource_for(name)
            if res is None or res in out:
                continue
            if res in self.informers:
                out[res] = [o for o in self.informers[res].list() if namespace_of(o) == ns]
            else:
                out[res] = list(self.client.list(res, namespace=ns).get("items") or [])
        return out

    def sync(self, key: str) -> None:
        quota = self.quotas.get(key)
        if quota is None:
            return
        self.queue.add_after(key, self.period)
        status = quota_status(quota, self._objects(namespace_of(quota), quota))
        if (quota.get("status") or {}) == status:
            return
        new: dict[str, Any] = dict(quota)
        new["status"] = status
        ignore_not_found(lambda: self.client.update_status(RESOURCEQUOTAS, new))
