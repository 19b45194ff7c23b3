"""The ReplicationController controller: the ReplicaSet controller on core/v1 ReplicationControllers.

Role: Kubernetes' pkg/controller/replication, which wraps the ReplicaSet manager with a
conversion. Here the adapter is smaller: ``ReplicaSetController`` is parameterized by the
resource it watches, the owner kind its pods' controller references name, and how to read the
selector — an RC's ``spec.selector`` is an equality map (``{app: web}``), read as the
``matchLabels`` of a LabelSelector. Everything else (claims, burst creates, deletion ranking,
expectations, status) is the ReplicaSet controller's.

Concurrency: as ``ReplicaSetController`` (handlers enqueue; workers sync, one per key at a time).
"""

from __future__ import annotations

from typing import Any

from controlplane.api.registry import REPLICATIONCONTROLLERS, Resource
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.controllers.util import Obj


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    resource: Resource = REPLICATIONCONTROLLERS
    owner_kind = "ReplicationController"

    @staticmethod
    def selector_of(owner: Obj) -> dict[str, Any] | None:
        sel = (owner.get("spec") or {}).get("selector")
        if not isinstance(sel, dict) or not sel:
            return None  # an empty RC selector selects nothing (validation refuses it anyway)
        return {"matchLabels": dict(sel)}
