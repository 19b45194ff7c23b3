"""Pod garbage collector: pods on nodes that no longer exist, and too many finished pods.

Role: Kubernetes' podgc controller. Keyed by pod key:
- a pod bound to a node that is absent from the cache *and* from a live GET (the cache may just
  not have caught up) is force-deleted (grace period 0): no kubelet will ever finish it;
- terminated pods (Succeeded/Failed) beyond ``terminated_threshold`` are deleted oldest first
  (checked on a timer, like Kubernetes' gcc period; key ``""``).
"""

from __future__ import annotations

import logging

from controlplane.api import errors
from controlplane.api.registry import NODES, PODS
from controlplane.controllers.base import NODE_INDEX, Controller, ControllerContext
from controlplane.controllers.util import Obj, creation_time, name_of, namespace_of, node_name_of, pod_phase

log = logging.getLogger(__name__)

TERMINATED_CHECK = "__terminated__"


def terminated_to_delete(pods: list[Obj], threshold: int) -> list[Obj]:
    """The oldest finished pods beyond ``threshold`` (0 disables, as in Kubernetes)."""
    done = [p for p in pods if pod_phase(p) in ("Succeeded", "Failed")]
    if threshold <= 0 or len(done) <= threshold:
        return []
    done.sort(key=lambda p: (creation_time(p), name_of(p)))
    return done[: len(done) - threshold]


class PodGCController(Controller):
    name = "podgc"
    workers = 1

    def __init__(self, ctx: ControllerContext, terminated_threshold: int = 12500, period: float = 20.0) -> None:
        super().__init__(ctx)
        self.threshold = terminated_threshold
        self.period = period
        self.pod_informer = ctx.informers.get(PODS)
        self.node_informer = ctx.informers.get(NODES)
        self.pod_informer.add_handler(on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n))
        self.node_informer.add_handler(on_delete=self._node_deleted)
        self.queue.add(TERMINATED_CHECK)

    def _pod_event(self, pod: Obj) -> None:
        node = node_name_of(pod)
        if node and self.node_informer.get(node) is None:
            self.enqueue(pod)

    def _node_deleted(self, node: Obj) -> None:
        for pod in self.pod_informer.by_index(NODE_INDEX, name_of(node)):
            self.enqueue(pod)

    def sync(self, key: str) -> None:
        if key == TERMINATED_CHECK:
            for p in terminated_to_delete(self.pod_informer.list(), self.threshold):
                self._delete(p)
            self.queue.add_after(TERMINATED_CHECK, self.period)
            return
        pod = self.pod_informer.get(key)
        if pod is None:
            return
        node = node_name_of(pod)
        if not node or self.node_informer.get(node) is not None:
            return
        try:
            self.client.get(NODES, node)
            return  # the cache is behind; the node exists
        except errors.NotFound:
            pass
        log.info("pod %s is bound to missing node %s: deleting", key, node)
        self._delete(pod)

    def _delete(self, pod: Obj) -> None:
        try:
            self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod), grace_period_seconds=0)
        except errors.NotFound:
            pass
