"""Validation of the workload controllers' kinds (extends ``validation``): Deployment, ReplicaSet,
DaemonSet, StatefulSet, CronJob and ReplicationController (Job's spec check stays in ``validation``,
where Pods' are, since CronJob templates reuse it).

Role: the per-kind checks ``validation._KINDS`` dispatches to, in kube-apiserver's field paths and
wording:
- Deployment, ReplicaSet, DaemonSet, StatefulSet (pkg/apis/apps/validation): replicas ≥ 0, a
  selector matching the template's labels, the template checked as a Pod spec, and a Deployment's
  strategy (maxSurge/maxUnavailable not both zero);
- CronJob (pkg/apis/batch/validation/validation.go ``ValidateCronJobCreate``/``ValidateCronJobSpec``):
  name ≤ 52 characters (the controller appends ``-<11 digits>`` for its Jobs), ``schedule``
  required and parseable by ``cron.ParseStandard`` with no ``TZ=`` on create, ``timeZone`` an IANA
  name, ``concurrencyPolicy`` one of Allow/Forbid/Replace, non-negative deadlines and history
  limits, and the job template checked as a Job spec (paths under ``spec.jobTemplate.spec``).
- ReplicationController (pkg/apis/core/validation ``ValidateReplicationControllerSpec``): a
  non-empty equality selector matching the template's labels, replicas ≥ 0, restartPolicy Always.

Imported at the bottom of ``validation`` (it reuses that module's helpers). Pure; thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controlplane.api import cron
from controlplane.api.errors import Cause
from controlplane.api.selectors import LabelSelector
from controlplane.api.validation import _Errors, _int_or_percent, _job, _selector, _validate_template

CRONJOB_NAME_MAX = 52  # DNS1035LabelMaxLength (63) − 11


def _cronjob(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    md = obj.get("metadata")
    name = md.get("name") if isinstance(md, dict) else None
    if old is None and isinstance(name, str) and len(name) > CRONJOB_NAME_MAX:
        e.invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        e.required("spec")
        return
    schedule = e.str_at(spec, "schedule", "spec.schedule")
    if not schedule:
        e.required("spec.schedule")
    else:
        ospec = (old or {}).get("spec") or {}
        old_schedule = ospec.get("schedule") if isinstance(ospec, dict) else None
        allow_tz = isinstance(old_schedule, str) and "TZ" in old_schedule
        for detail in cron.schedule_errors(schedule, allow_tz=allow_tz):
            e.invalid("spec.schedule", schedule, detail)
    tz = spec.get("timeZone")
    if tz is not None:
        if not isinstance(tz, str):
            e.invalid("spec.timeZone", tz, "must be a string")
        else:
            tz_detail = cron.time_zone_error(tz)
            if tz_detail:
                e.invalid("spec.timeZone", tz, tz_detail)
    policy = spec.get("concurrencyPolicy")
    if not policy:
        e.required("spec.concurrencyPolicy")
    elif policy not in ("Allow", "Forbid", "Replace"):
        e.not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace"))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        e.nonnegative(spec, key, f"spec.{key}")
    jt = e.map_at(spec, "jobTemplate", "spec.jobTemplate")
    _nested_job(e, jt.get("spec"))


def _nested_job(e: _Errors, jspec: Any) -> None:
    """The job template checked as a Job (ValidateJobTemplateSpec), its paths under the template.

    A template may change freely (it only shapes future Jobs), so no immutability checks."""
    sub = _Errors()
    _job(sub, {"spec": jspec if jspec is not None else {}}, None)
    for c in sub.causes:
        field = "spec.jobTemplate." + c.field if c.field.startswith("spec") else c.field
        e.causes.append(Cause(field, c.message, c.reason))


def _replicationcontroller(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        e.required("spec")
        return
    e.nonnegative(spec, "replicas", "spec.replicas")
    e.nonnegative(spec, "minReadySeconds", "spec.minReadySeconds")
    raw = spec.get("selector")
    sel: LabelSelector | None = None
    if not raw:
        e.required("spec.selector")
    elif not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        e.invalid("spec.selector", raw, "must be a map of label keys to values")
    else:
        sel = LabelSelector.from_dict({"matchLabels": raw})
    _validate_template(e, spec, "spec", sel, ("Always",))


def _workload(
    kind: str, restart: tuple[str, ...] = ("Always",)
) -> Callable[[_Errors, Mapping[str, Any], Mapping[str, Any] | None], None]:
    def check(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            e.required("spec")
            return
        e.nonnegative(spec, "replicas", "spec.replicas")
        e.nonnegative(spec, "minReadySeconds", "spec.minReadySeconds")
        e.nonnegative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit")
        sel = _selector(e, spec, "spec", kind.lower())
        _validate_template(e, spec, "spec", sel, restart)
        if kind == "Deployment":
            _deployment_strategy(e, spec)
        elif kind == "DaemonSet":
            us = e.map_at(spec, "updateStrategy", "spec.updateStrategy")
            e.enum(us, "type", "spec.updateStrategy.type", ("OnDelete", "RollingUpdate"))
        elif kind == "StatefulSet":
            if not spec.get("serviceName"):
                e.required("spec.serviceName")
            e.enum(spec, "podManagementPolicy", "spec.podManagementPolicy", ("OrderedReady", "Parallel"))
            us = e.map_at(spec, "updateStrategy", "spec.updateStrategy")
            e.enum(us, "type", "spec.updateStrategy.type", ("OnDelete", "RollingUpdate"))
            ru = e.map_at(us, "rollingUpdate", "spec.updateStrategy.rollingUpdate")
            e.nonnegative(ru, "partition", "spec.updateStrategy.rollingUpdate.partition")
        if old is not None and isinstance(old.get("spec"), dict):
            ospec = old["spec"]
            if ospec.get("selector") is not None and spec.get("selector") != ospec.get("selector"):
                e.immutable("spec.selector", spec.get("selector"))
            if kind == "StatefulSet":
                mutable = (
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                )
                if {k: v for k, v in spec.items() if k not in mutable} != {
                    k: v for k, v in ospec.items() if k not in mutable
                }:
                    e.forbidden(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    )

    return check


def _deployment_strategy(e: _Errors, spec: Mapping[str, Any]) -> None:
    strategy = e.map_at(spec, "strategy", "spec.strategy")
    stype = strategy.get("type")
    if stype is not None and stype not in ("Recreate", "RollingUpdate"):
        e.not_supported("spec.strategy.type", stype, ("Recreate", "RollingUpdate"))
    ru = strategy.get("rollingUpdate")
    if stype == "Recreate" and ru is not None:
        e.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    elif isinstance(ru, dict):
        surge = _int_or_percent(e, ru, "maxSurge", "spec.strategy.rollingUpdate.maxSurge")
        unavailable = _int_or_percent(e, ru, "maxUnavailable", "spec.strategy.rollingUpdate.maxUnavailable")
        if surge == 0 and unavailable == 0:
            e.invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                ru.get("maxUnavailable"),
                "may not be 0 when `maxSurge` is 0",
            )
    pds = e.int_at(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds")
    mrs = spec.get("minReadySeconds") or 0
    if pds is not None and isinstance(mrs, int) and pds <= mrs:
        e.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")


KINDS: dict[str, Callable[[_Errors, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "deployments": _workload("Deployment"),
    "replicasets": _workload("ReplicaSet"),
    "daemonsets": _workload("DaemonSet"),
    "statefulsets": _workload("StatefulSet"),
    "cronjobs": _cronjob,
    "replicationcontrollers": _replicationcontroller,
}
