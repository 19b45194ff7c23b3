"""The eviction subresource's PodDisruptionBudget check (``POST …/pods/{name}/eviction``).

Role: Kubernetes' ``pkg/registry/core/pod/storage/eviction.go``: before the pod is deleted, the
one budget selecting it must allow a disruption; the allowed eviction is recorded in the budget's
status (``disruptionsAllowed`` − 1, the pod in ``disruptedPods``) with a compare-and-swap update,
retried on conflict, so two concurrent evictions cannot both spend the last disruption. Refusals::

    429 TooManyRequests  Cannot evict pod as it would violate the pod's disruption budget.
                         (details.causes: [{reason: DisruptionBudget, message: "The disruption
                         budget web needs 2 healthy pods and has 2 currently"}])
    500 InternalError    This pod has more than one PodDisruptionBudget, which the eviction
                         subresource does not support.

Concurrency: runs on a store thread; the budget update is the serialisation point.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.api import disruption, errors, registry


def check_budget(ops: Any, namespace: str, name: str, dry_run: bool) -> None:
    """Raise unless evicting pod ``namespace/name`` is allowed; spend a disruption if so."""
    for _ in range(5):
        pod = ops.get(registry.PODS, namespace, name)
        if disruption.can_ignore_pdb(pod):
            return
        pdbs = [b for b in ops.list(registry.PODDISRUPTIONBUDGETS, namespace)[0] if disruption.selects(b, pod)]
        if not pdbs:
            return
        if len(pdbs) > 1:
            raise errors.ApiError(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            )
        pdb = pdbs[0]
        verdict = disruption.eviction_verdict(pdb, pod)
        if verdict is not None:
            kind, message = verdict
            if kind == "Forbidden":
                raise errors.Forbidden(message)
            raise errors.TooManyRequests(
                disruption.EVICTION_MESSAGE, causes=[errors.Cause("", message, reason="DisruptionBudget")]
            )
        if not disruption.pod_ready(pod):
            return  # an unhealthy pod allowed through costs no disruption
        disruption.decrement(pdb, name, datetime.now(UTC))
        try:
            ops.update(
                registry.PODDISRUPTIONBUDGETS,
                namespace,
                pdb["metadata"]["name"],
                pdb,
                subresource="status",
                dry_run=dry_run,
            )
            return
        except errors.Conflict:
            continue
    raise errors.TooManyRequests(disruption.EVICTION_MESSAGE, retry_after=1)
