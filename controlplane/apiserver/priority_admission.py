"""Priority admission: resolve a pod's ``priorityClassName`` into ``spec.priority``.

Role: Kubernetes' ``plugin/pkg/admission/priority/admission.go``: a pod naming a class gets the
class's value and ``preemptionPolicy``; a pod naming none gets the ``globalDefault`` class (the
lowest-valued if several) or priority 0; an unknown class is refused (403)::

    pods "p" is forbidden: no PriorityClass with name gold was found

Also the two system classes kube-apiserver creates at start (``SystemPriorityClasses`` in
``pkg/apis/scheduling/types.go``).

Pure: ``admit_pod`` takes a lookup for classes by name and the list of all classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Obj = Mapping[str, Any]

SYSTEM_CLUSTER_CRITICAL = 2000000000
SYSTEM_NODE_CRITICAL = SYSTEM_CLUSTER_CRITICAL + 1000
# HighestUserDefinablePriority: classes not named system-* may not go above it.
HIGHEST_USER_DEFINABLE = 1000000000


def system_classes() -> list[dict[str, Any]]:
    """The PriorityClasses kube-apiserver ensures at start."""
    return [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": desc,
            "preemptionPolicy": "PreemptLowerPriority",
        }
        for name, value, desc in (
            (
                "system-node-critical",
                SYSTEM_NODE_CRITICAL,
                "Used for system critical pods that must not be moved from their current node.",
            ),
            (
                "system-cluster-critical",
                SYSTEM_CLUSTER_CRITICAL,
                "Used for system critical pods that must run in "
                "the cluster, but can be moved to another node if necessary.",
            ),
        )
    ]


def admit_pod(
    pod: dict[str, Any],
    get_class: Callable[[str], Obj | None],
    all_classes: Callable[[], Sequence[Obj]],
) -> str | None:
    """Set ``spec.priority``/``preemptionPolicy``; the refusal text (after ``is forbidden: ``) or None."""
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName")
    cls: Obj | None
    if name:
        cls = get_class(str(name))
        if cls is None:
            return f"no PriorityClass with name {name} was found"
    else:
        defaults = [c for c in all_classes() if c.get("globalDefault") is True]
        cls = min(defaults, key=lambda c: int(c.get("value") or 0)) if defaults else None
        if cls is not None:
            spec["priorityClassName"] = (cls.get("metadata") or {}).get("name")
    value = int(cls.get("value") or 0) if cls is not None else 0
    given = spec.get("priority")
    if given is not None and given != value:
        return (
            f"the integer value of priority ({given}) must not be provided in pod spec; "
            f"priority admission controller computed {value} from the given PriorityClass name"
        )
    spec["priority"] = value
    if cls is not None and cls.get("preemptionPolicy"):
        spec.setdefault("preemptionPolicy", cls["preemptionPolicy"])
    elif cls is None:
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    return None
