"""Table printers for the workload kinds: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
CronJob, ReplicationController and ComponentStatus.

Role: the columns and cells of Kubernetes' ``pkg/printers/internalversion/printers.go``
(``printDeployment``, ``printReplicaSet``, ``printDaemonSet``, ``printStatefulSet``, ``printJob``,
``printCronJob``, ``printReplicationController``, ``printComponentStatus``), kept apart from
``tables.py`` to keep modules small. ``tables`` merges ``PRINTERS`` into its own table at import
time (so import ``tables``, not this).

Pure; a malformed object prints zero values and never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from controlplane.api import errors
from controlplane.api.meta import parse_time
from controlplane.api.tables import (
    _AGE,
    _NAME,
    Cell,
    Column,
    Obj,
    _age,
    _c,
    _containers_images,
    _format_labels,
    _get,
    _has_condition,
    _int,
    _maps,
    _name,
    _selector_string,
    _since,
    _str,
    human_duration,
)

_CONTAINERS = _c("Containers", "Names of each container in the template.", priority=1)
_IMAGES = _c("Images", "Images referenced by each container in the template.", priority=1)
_SELECTOR = _c("Selector", "Label selector for pods.", priority=1)


def _deployment_row(d: Obj, now: datetime) -> list[Cell]:
    spec, status = _get(d, "spec") or {}, _get(d, "status") or {}
    containers, images = _containers_images(_get(spec, "template", "spec"))
    return [
        _name(d),
        f"{_int(_get(status, 'readyReplicas'))}/{_int(_get(spec, 'replicas'))}",
        _int(_get(status, "updatedReplicas")),
        _int(_get(status, "availableReplicas")),
        _age(d, now),
        containers,
        images,
        _selector_string(_get(spec, "selector")),
    ]


def _replicaset_row(rs: Obj, now: datetime) -> list[Cell]:
    spec, status = _get(rs, "spec") or {}, _get(rs, "status") or {}
    containers, images = _containers_images(_get(spec, "template", "spec"))
    return [
        _name(rs),
        _int(_get(spec, "replicas")),
        _int(_get(status, "replicas")),
        _int(_get(status, "readyReplicas")),
        _age(rs, now),
        containers,
        images,
        _selector_string(_get(spec, "selector")),
    ]


def _daemonset_row(ds: Obj, now: datetime) -> list[Cell]:
    spec, status = _get(ds, "spec") or {}, _get(ds, "status") or {}
    containers, images = _containers_images(_get(spec, "template", "spec"))
    return [
        _name(ds),
        _int(_get(status, "desiredNumberScheduled")),
        _int(_get(status, "currentNumberScheduled")),
        _int(_get(status, "numberReady")),
        _int(_get(status, "updatedNumberScheduled")),
        _int(_get(status, "numberAvailable")),
        _format_labels(_get(spec, "template", "spec", "nodeSelector")),
        _age(ds, now),
        containers,
        images,
        _selector_string(_get(spec, "selector")),
    ]


def _statefulset_row(sts: Obj, now: datetime) -> list[Cell]:
    spec, status = _get(sts, "spec") or {}, _get(sts, "status") or {}
    containers, images = _containers_images(_get(spec, "template", "spec"))
    return [
        _name(sts),
        f"{_int(_get(status, 'readyReplicas'))}/{_int(_get(spec, 'replicas'))}",
        _age(sts, now),
        containers,
        images,
    ]


def _cronjob_row(cj: Obj, now: datetime) -> list[Cell]:
    # printers.go printCronJob: <none> for no time zone / no schedule yet, printBoolPtr for suspend
    spec, status = _get(cj, "spec") or {}, _get(cj, "status") or {}
    suspend = _get(spec, "suspend")
    last = _get(status, "lastScheduleTime")
    active = _get(status, "active")
    jspec = _get(spec, "jobTemplate", "spec")
    containers, images = _containers_images(_get(jspec, "template", "spec"))
    return [
        _name(cj),
        _str(_get(spec, "schedule")),
        _str(_get(spec, "timeZone")) or "<none>",
        ("True" if suspend else "False") if isinstance(suspend, bool) else "<unset>",
        len(active) if isinstance(active, list) else 0,
        _since(last, now) if last else "<none>",
        _age(cj, now),
        containers,
        images,
        _selector_string(_get(jspec, "selector")),
    ]


def _replicationcontroller_row(rc: Obj, now: datetime) -> list[Cell]:
    # printers.go printReplicationController: the selector is a plain label map
    spec, status = _get(rc, "spec") or {}, _get(rc, "status") or {}
    containers, images = _containers_images(_get(spec, "template", "spec"))
    return [
        _name(rc),
        _int(_get(spec, "replicas")),
        _int(_get(status, "replicas")),
        _int(_get(status, "readyReplicas")),
        _age(rc, now),
        containers,
        images,
        _format_labels(_get(spec, "selector")),
    ]


def _componentstatus_row(cs: Obj, now: datetime) -> list[Cell]:
    # printers.go printComponentStatus: the Healthy condition's status, message and error
    status, message, error = "Unknown", "", ""
    for c in _maps(_get(cs, "conditions")):
        if c.get("type") == "Healthy":
            status = {"True": "Healthy", "False": "Unhealthy"}.get(_str(c.get("status")), "Unknown")
            message, error = _str(c.get("message")), _str(c.get("error"))
    return [_name(cs), status, message, error]


def _job_row(job: Obj, now: datetime) -> list[Cell]:
    spec, status = _get(job, "spec") or {}, _get(job, "status") or {}
    succeeded = _int(_get(status, "succeeded"))
    if isinstance(_get(spec, "completions"), int):
        completions = f"{succeeded}/{_get(spec, 'completions')}"
    elif _int(_get(spec, "parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(_get(spec, 'parallelism'))}"
    else:
        completions = f"{succeeded}/1"
    start, end = _get(status, "startTime"), _get(status, "completionTime")
    duration = ""
    try:
        if isinstance(start, str) and start:
            t0 = parse_time(start)
            t1 = parse_time(end) if isinstance(end, str) and end else now
            duration = human_duration((t1 - t0).total_seconds())
    except errors.BadRequest:
        duration = ""
    conds = _get(status, "conditions")
    if _has_condition(conds, "Complete"):
        state = "Complete"
    elif _has_condition(conds, "Failed"):
        state = "Failed"
    elif _get(job, "metadata", "deletionTimestamp"):
        state = "Terminating"
    elif _has_condition(conds, "Suspended"):
        state = "Suspended"
    elif _has_condition(conds, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    containers, images = _containers_images(_get(spec, "template", "spec"))
    return [
        _name(job),
        state,
        completions,
        duration,
        _age(job, now),
        containers,
        images,
        _selector_string(_get(spec, "selector")),
    ]


PRINTERS: dict[str, tuple[list[Column], Callable[[Obj, datetime], list[Cell]]]] = {
    "deployments": (
        [
            _NAME,
            _c("Ready", "Number of the pod with ready state"),
            _c(
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                type_="integer",
            ),
            _c(
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                type_="integer",
            ),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _SELECTOR,
        ],
        _deployment_row,
    ),
    "replicasets": (
        [
            _NAME,
            _c("Desired", "Replicas is the number of desired replicas.", type_="integer"),
            _c("Current", "Replicas is the most recently observed number of replicas.", type_="integer"),
            _c(
                "Ready",
                "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
                type_="integer",
            ),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _SELECTOR,
        ],
        _replicaset_row,
    ),
    "daemonsets": (
        [
            _NAME,
            _c("Desired", "The total number of nodes that should be running the daemon pod.", type_="integer"),
            _c("Current", "The number of nodes that are running at least 1 daemon pod.", type_="integer"),
            _c(
                "Ready",
                "numberReady is the number of nodes that should be running the daemon pod and have one or more "
                "of the daemon pod running with a Ready Condition.",
                type_="integer",
            ),
            _c("Up-to-date", "The total number of nodes that are running updated daemon pod", type_="integer"),
            _c(
                "Available",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon "
                "pod running and available.",
                type_="integer",
            ),
            _c("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node."),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _SELECTOR,
        ],
        _daemonset_row,
    ),
    "statefulsets": (
        [_NAME, _c("Ready", "Number of the pod with ready state"), _AGE, _CONTAINERS, _IMAGES],
        _statefulset_row,
    ),
    "jobs": (
        [
            _NAME,
            _c("Status", "Status of the job."),
            _c("Completions", "The desired number of successfully finished pods the job should be run with."),
            _c("Duration", "Time required to complete the job."),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _SELECTOR,
        ],
        _job_row,
    ),
    "cronjobs": (
        [
            _NAME,
            _c("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            _c(
                "Timezone",
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            ),
            _c("Suspend", "This flag tells the controller to suspend subsequent executions.", type_="boolean"),
            _c("Active", "A list of pointers to currently running jobs.", type_="integer"),
            _c("Last Schedule", "Information when was the last time the job was successfully scheduled."),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _SELECTOR,
        ],
        _cronjob_row,
    ),
    "componentstatuses": (
        [
            _NAME,
            _c("Status", "Status of the component conditions"),
            _c("Message", "Message of the component conditions"),
            _c("Error", "Error of the component conditions"),
        ],
        _componentstatus_row,
    ),
    "replicationcontrollers": (
        [
            _NAME,
            _c("Desired", "Replicas is the number of desired replicas.", type_="integer"),
            _c("Current", "Replicas is the most recently observed number of replicas.", type_="integer"),
            _c("Ready", "The number of ready replicas for this replication controller.", type_="integer"),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _SELECTOR,
        ],
        _replicationcontroller_row,
    ),
}
