"""Root CA publisher: every namespace has a ConfigMap ``kube-root-ca.crt`` holding the cluster CA.

Role: Kubernetes' root-ca-cert-publisher (``pkg/controller/certificates/rootcacertpublisher``).
Pods read the CA from it (the ``ca.crt`` of their ``kube-api-access-*`` volume) to verify the API
server at ``https://kubernetes.default.svc``. Keyed by namespace name; ``sync`` creates the
ConfigMap when it is missing and puts ``ca.crt`` back when someone changed or removed it (other
keys are dropped, as Kubernetes does; the description annotation is restored too).

Invariants: level-triggered; terminating namespaces are skipped (the namespace controller is
emptying them, and the API server refuses new content there).
"""

from __future__ import annotations

from typing import Any

from controlplane.api import errors
from controlplane.api.registry import CONFIGMAPS, NAMESPACES
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.util import Obj, is_deleting, name_of, namespace_of

CONFIGMAP_NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)


def desired_data(root_ca: str) -> dict[str, str]:
    return {"ca.crt": root_ca}


def needs_update(cm: Obj, root_ca: str) -> bool:
    annotations = (cm.get("metadata") or {}).get("annotations") or {}
    return cm.get("data") != desired_data(root_ca) or annotations.get(DESCRIPTION_ANNOTATION) != DESCRIPTION


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    workers = 1

    def __init__(self, ctx: ControllerContext, root_ca: bytes) -> None:
        super().__init__(ctx)
        self.root_ca = root_ca.decode()
        self.ns_informer = ctx.informers.get(NAMESPACES)
        self.cm_informer = ctx.informers.get(CONFIGMAPS)
        self.ns_informer.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.cm_informer.add_handler(on_update=lambda _o, n: self._cm_changed(n), on_delete=self._cm_changed)

    def _cm_changed(self, cm: Obj) -> None:
        if name_of(cm) == CONFIGMAP_NAME:
            self.queue.add(namespace_of(cm))

    def sync(self, key: str) -> None:
        ns = self.ns_informer.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        cm = self.cm_informer.get(f"{key}/{CONFIGMAP_NAME}")
        if cm is None:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": CONFIGMAP_NAME,
                    "namespace": key,
                    "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                },
                "data": desired_data(self.root_ca),
            }
            try:
                self.client.create(CONFIGMAPS, body, namespace=key)
            except (errors.AlreadyExists, errors.NotFound, errors.Forbidden):
                pass  # exists already (the informer will tell), or the namespace is going away
            return
        if not needs_update(cm, self.root_ca):
            return
        updated = dict(cm)
        md = dict(cm.get("metadata") or {})
        md["annotations"] = {**(md.get("annotations") or {}), DESCRIPTION_ANNOTATION: DESCRIPTION}
        updated["metadata"] = md
        updated["data"] = desired_data(self.root_ca)
        updated.pop("binaryData", None)
        try:
            self.client.update(CONFIGMAPS, updated)
        except (errors.Conflict, errors.NotFound):
            self.queue.add(key)  # changed or deleted meanwhile: look again with the newer cache
