"""Namespace controller: empty a Terminating namespace, then let it go.

Role: Kubernetes' namespace controller. Keyed by namespace name. When a namespace has a
``deletionTimestamp`` (the API server set ``status.phase: Terminating``):

1. list every namespaced kind in the namespace (live, not from a cache: nothing may be missed);
2. delete what is not already being deleted (background propagation, normal grace);
3. if anything is left (pods still terminating, finalizers pending) → try again shortly;
4. otherwise remove the ``kubernetes`` finalizer through ``PUT namespaces/{name}/finalize``; the
   API server removes the namespace once ``spec.finalizers`` is empty.

Idempotent: each step checks the current state; a crash between steps only repeats a list.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import NAMESPACES, RESOURCES, Resource
from controlplane.client.controller import TemporaryError
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.util import Obj, is_deleting, name_of

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"


def namespaced_kinds() -> list[Resource]:
    return [r for r in RESOURCES if r.namespaced and "delete" in r.verbs and "list" in r.verbs]


def is_terminating(ns: Obj) -> bool:
    return is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating"


def finalized(ns: Obj) -> Obj:
    """The namespace with our finalizer removed from ``spec.finalizers`` (for the finalize PUT)."""
    new = copy.deepcopy(ns)
    fins = [f for f in (new.get("spec") or {}).get("finalizers") or [] if f != FINALIZER]
    new.setdefault("spec", {})["finalizers"] = fins
    return new


class NamespaceController(Controller):
    name = "namespace"
    workers = 2

    def __init__(self, ctx: ControllerContext, retry: float = 0.5) -> None:
        super().__init__(ctx)
        self.retry = retry
        self.ns_informer = ctx.informers.get(NAMESPACES)
        self.ns_informer.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))

    def sync(self, key: str) -> None:
        ns = self.ns_informer.get(key)
        if ns is None or not is_terminating(ns):
            return
        remaining = 0
        for res in namespaced_kinds():
            try:
                items = self.client.list(res, namespace=key).get("items") or []
            except errors.NotFound:
                continue
            for item in items:
                remaining += 1
                if is_deleting(item):
                    continue
                try:
                    self.client.delete(res, name_of(item), namespace=key, propagation_policy="Background")
                except errors.NotFound:
                    remaining -= 1
                except errors.Conflict:
                    pass
        if remaining:
            raise TemporaryError(self.retry, f"namespace {key}: {remaining} object(s) still being deleted")
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        self._finalize(finalized(ns))
        log.info("namespace %s: emptied and finalized", key)

    def _finalize(self, body: Obj) -> None:
        request: Any = getattr(self.client, "request", None)
        try:
            if request is not None:
                request("PUT", NAMESPACES.item_path(name_of(body), subresource="finalize"), body=body)
            else:  # fakes without raw requests
                self.client.post_subresource(NAMESPACES, name_of(body), "finalize", body)
        except errors.NotFound:
            return
        except errors.Conflict:
            raise TemporaryError(0.05, "namespace changed; retry") from None
