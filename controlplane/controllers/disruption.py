"""Disruption controller: keeps every PodDisruptionBudget's ``status`` true to its pods.

Role: Kubernetes' ``pkg/controller/disruption``: keyed by budget (``ns/name``); a pod event
enqueues the budgets of its namespace that select it; ``sync`` recomputes the status with
``controlplane.api.disruption.compute_status`` and writes it through ``/status`` when it changed.
A budget with ``disruptedPods`` is re-checked after the deletion timeout so a pod the eviction
subresource recorded but that never went away counts as healthy again.

Concurrency: workers share informer caches (read only); a stale write is a 409 and retried by the
base class.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.api import disruption
from controlplane.api.registry import PODDISRUPTIONBUDGETS, PODS
from controlplane.controllers.base import Controller, ControllerContext, ignore_not_found
from controlplane.controllers.util import Obj, namespace_of


class DisruptionController(Controller):
    name = "disruption"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pdbs = ctx.informers.get(PODDISRUPTIONBUDGETS)
        self.pods = ctx.informers.get(PODS)
        self.pdbs.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.pods.add_handler(
            on_add=self._pod_event,
            on_update=self._pod_update,
            on_delete=self._pod_event,
        )

    def _pod_update(self, old: Obj, new: Obj) -> None:
        self._pod_event(old)  # labels may have changed: the old budgets and the new ones
        self._pod_event(new)

    def _pod_event(self, pod: Obj) -> None:
        ns = namespace_of(pod)
        for pdb in self.pdbs.list():
            if namespace_of(pdb) == ns and disruption.selects(pdb, pod):
                self.enqueue(pdb)

    def sync(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return
        ns = namespace_of(pdb)
        pods = [p for p in self.pods.list() if namespace_of(p) == ns]
        status = disruption.compute_status(pdb, pods, datetime.now(UTC))
        if status.get("disruptedPods"):
            self.queue.add_after(key, disruption.DELETION_TIMEOUT.total_seconds())
        if _same(pdb.get("status") or {}, status):
            return
        new: dict[str, Any] = dict(pdb)
        new["status"] = status
        ignore_not_found(lambda: self.client.update_status(PODDISRUPTIONBUDGETS, new))


def _same(old: Obj, new: Obj) -> bool:
    # lastTransitionTime is carried over by compute_status, so plain equality is the right test
    return dict(old) == dict(new)
