"""PodDisruptionBudget math, shared by the disruption controller and the eviction subresource.

Role: pure functions of Kubernetes' ``pkg/controller/disruption/disruption.go``
(``getExpectedPodCount``, ``countHealthyPods``, ``updatePdbStatus``) and of the eviction REST
handler ``pkg/registry/core/pod/storage/eviction.go`` (``checkAndDecrement``,
``canIgnorePDB``). No I/O; the callers read and write the objects.

Simplification (say so in the README): ``expectedPods`` is the number of matching, non-terminal
pods for every form of budget (Kubernetes uses the owning controller's scale for percentages and
``maxUnavailable``, which equals it once the controller has converged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from controlplane.api import errors
from controlplane.api.meta import parse_time
from controlplane.api.selectors import LabelSelector

Obj = Mapping[str, Any]

# DeletionTimeout: a pod evicted this long ago but still present counts as healthy again.
DELETION_TIMEOUT = timedelta(minutes=2)
EVICTION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


def selects(pdb: Obj, pod: Obj) -> bool:
    """policy/v1: a null selector selects no pods, an empty one every pod of the namespace."""
    if (pdb.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
        return False
    sel = (pdb.get("spec") or {}).get("selector")
    if sel is None:
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return LabelSelector.from_dict(sel).matches(labels)


def _time(ts: Any) -> datetime | None:
    try:
        return parse_time(ts) if isinstance(ts, str) else None
    except (ValueError, errors.ApiError):
        return None


def pod_ready(pod: Obj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds if isinstance(c, dict))


def _scaled(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString against ``total`` (``GetScaledValueFromIntOrPercent``)."""
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1] or 0)
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def compute_status(pdb: Obj, pods: Sequence[Obj], now: datetime) -> dict[str, Any]:
    """The PDB's ``status`` from the pods it selects (``pods`` may include others)."""
    spec = pdb.get("spec") or {}
    old = pdb.get("status") or {}
    mine = [p for p in pods if selects(pdb, p) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    expected = len(mine)
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, True))
    elif spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected, True)
    else:
        desired = 0
    # disruptedPods: evicted but not yet gone; they do not count as healthy (until the timeout)
    disrupted: dict[str, str] = {}
    for name, ts in (old.get("disruptedPods") or {}).items():
        at = _time(ts)
        pod = next((p for p in mine if (p.get("metadata") or {}).get("name") == name), None)
        gone = pod is None or (pod.get("metadata") or {}).get("deletionTimestamp")
        if at is not None and not gone and now - at < DELETION_TIMEOUT:
            disrupted[name] = ts
    healthy = sum(
        1
        for p in mine
        if pod_ready(p)
        and not (p.get("metadata") or {}).get("deletionTimestamp")
        and (p.get("metadata") or {}).get("name") not in disrupted
    )
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    status: dict[str, Any] = {
        "observedGeneration": int((pdb.get("metadata") or {}).get("generation") or 0),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [_condition(pdb, allowed > 0, now)],
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    return status


def _condition(pdb: Obj, allowed: bool, now: datetime) -> dict[str, Any]:
    old = pdb.get("status") or {}
    status = "True" if allowed else "False"
    prev = next((c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    since = (
        prev.get("lastTransitionTime")
        if prev is not None and prev.get("status") == status
        else now.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return {
        "type": "DisruptionAllowed",
        "status": status,
        "reason": "SufficientPods" if allowed else "InsufficientPods",
        "message": "",
        "observedGeneration": int((pdb.get("metadata") or {}).get("generation") or 0),
        "lastTransitionTime": since,
    }


def can_ignore_pdb(pod: Obj) -> bool:
    """canIgnorePDB: finished, pending or already-deleting pods are evicted without a budget."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def eviction_verdict(pdb: Obj, pod: Obj) -> tuple[str, str] | None:
    """What the budget says about evicting ``pod``: None to allow, else (kind, cause message).

    ``kind`` is ``"TooManyRequests"`` (429 with a DisruptionBudget cause) or ``"Forbidden"``.
    The caller decrements ``disruptionsAllowed`` (``decrement``) when the verdict is None and
    the pod is healthy."""
    name = str((pdb.get("metadata") or {}).get("name"))
    status = pdb.get("status") or {}
    generation = int((pdb.get("metadata") or {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return ("TooManyRequests", f"The disruption budget {name} is still being processed by the server.")
    current, desired = int(status.get("currentHealthy") or 0), int(status.get("desiredHealthy") or 0)
    if not pod_ready(pod):
        # unhealthyPodEvictionPolicy: an unready pod goes if the budget is met (or AlwaysAllow)
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy")
        if policy == "AlwaysAllow" or (current >= desired and desired > 0):
            return None
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        return ("Forbidden", "pdb disruptions allowed is negative")
    if allowed == 0:
        return (
            "TooManyRequests",
            f"The disruption budget {name} needs {desired} healthy pods and has {current} currently",
        )
    return None


def decrement(pdb: dict[str, Any], pod_name: str, now: datetime) -> None:
    """Record an allowed eviction in the budget's status (before the pod is deleted)."""
    status = pdb.setdefault("status", {})
    status["disruptionsAllowed"] = int(status.get("disruptionsAllowed") or 0) - 1
    status.setdefault("disruptedPods", {})[pod_name] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
