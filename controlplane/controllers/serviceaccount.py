"""ServiceAccounts controller: every active namespace has a ServiceAccount named ``default``.

Role: Kubernetes' serviceaccounts-controller. Keyed by namespace name; ``sync`` creates
``default`` when it is missing (AlreadyExists is success). Terminating namespaces are skipped: the
namespace controller is emptying them and a new object would only be deleted again.
"""

from __future__ import annotations

from controlplane.api import errors
from controlplane.api.registry import NAMESPACES, SERVICEACCOUNTS
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.util import Obj, is_deleting, name_of, namespace_of

DEFAULT_NAME = "default"


class ServiceAccountController(Controller):
    name = "serviceaccount"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ns_informer = ctx.informers.get(NAMESPACES)
        self.sa_informer = ctx.informers.get(SERVICEACCOUNTS)
        self.ns_informer.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.sa_informer.add_handler(on_delete=self._sa_deleted)

    def _sa_deleted(self, sa: Obj) -> None:
        if name_of(sa) == DEFAULT_NAME:
            self.queue.add(namespace_of(sa))

    def sync(self, key: str) -> None:
        ns = self.ns_informer.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.sa_informer.get(f"{key}/{DEFAULT_NAME}") is not None:
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_NAME, "namespace": key}}
        try:
            self.client.create(SERVICEACCOUNTS, body, namespace=key)
        except (errors.AlreadyExists, errors.NotFound, errors.Forbidden):
            pass  # exists already, or the namespace is going away
