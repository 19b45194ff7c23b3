"""Validation of batch/v1 CronJob and core/v1 ReplicationController (extends ``validation``).

Role: the per-kind checks ``validation._KINDS`` dispatches to for ``cronjobs`` and
``replicationcontrollers``, in kube-apiserver's field paths and wording:
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
from controlplane.api.validation import _Errors, _job, _validate_template

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


KINDS: dict[str, Callable[[_Errors, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "cronjobs": _cronjob,
    "replicationcontrollers": _replicationcontroller,
}
