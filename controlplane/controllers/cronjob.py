"""CronJob controller: create Jobs on a schedule.

Role: Kubernetes' cronjob_controllerv2 (pkg/controller/cronjob/cronjob_controllerv2.go,
``syncCronJob``), level-triggered: every sync recomputes from the CronJob, the Jobs it controls
(the Job informer's owner index) and the clock, then requeues itself for the next schedule time.

``plan_cronjob`` (pure):
1. status.active: a finished Job leaves it (event SawCompletedJob); a reference whose Job is gone
   leaves it (MissingJob); a running Job we control but did not list is reported (UnexpectedJob)
   and, as in Kubernetes, not added; ``lastSuccessfulTime`` follows the newest completed Job;
2. history: finished Jobs beyond ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit`` are
   deleted, oldest first;
3. no new Job while the CronJob is being deleted or ``suspend`` is true, the time zone is unknown
   (UnknownTimeZone) or the schedule does not parse (UnparseableSchedule);
4. the most recent schedule time in (lastScheduleTime or creation, now] — bounded below by
   now − ``startingDeadlineSeconds`` — is the one to run; none → wait; past its deadline →
   MissSchedule; already run (same Job name in active, or equal to lastScheduleTime) → wait;
5. concurrencyPolicy: Forbid with active Jobs → JobAlreadyActive, wait; Replace → delete the
   active Jobs first; Allow → run alongside;
6. the Job: named ``<cronjob>-<scheduled minutes since the epoch>`` (so a repeated sync cannot make
   two), the template's labels/annotations plus ``batch.kubernetes.io/cronjob-scheduled-timestamp``,
   a controller ownerReference; it joins status.active and sets lastScheduleTime.

Concurrency: the informer handlers only enqueue; a key is synced by one worker at a time.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from controlplane.api import cron, errors
from controlplane.api.registry import CRONJOBS, JOBS
from controlplane.controllers.base import OWNER_INDEX, Controller, ControllerContext
from controlplane.controllers.job import is_finished
from controlplane.controllers.util import (
    Obj,
    controller_ref,
    creation_time,
    format_time,
    get_condition,
    is_deleting,
    name_of,
    namespace_of,
    new_controller_ref,
    parse_time,
    split_key,
    uid_of,
)

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# cronjob_controllerv2 requeues slightly after the schedule time so the time has surely passed
NEXT_SCHEDULE_DELTA = 0.1
TOO_MANY_MISSED = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
ALREADY_ACTIVE = "Not starting job because prior execution is running and concurrency policy is Forbid"


@dataclass
class CronJobPlan:
    status: dict[str, Any]
    create: Obj | None = None
    delete: list[Obj] = field(default_factory=list)  # Jobs to delete (history, Replace)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None


def _succeeded(job: Obj) -> bool:
    c = get_condition(job, "Complete")
    return c is not None and c.get("status") == "True"


def _finished_condition(job: Obj) -> str:
    return "Complete" if _succeeded(job) else "Failed"


def job_ref(job: Obj) -> dict[str, Any]:
    """The ObjectReference kept in status.active (as Kubernetes' ``ref.GetReference``)."""
    md = job.get("metadata") or {}
    ref = {"apiVersion": "batch/v1", "kind": "Job", "namespace": md.get("namespace"), "name": md.get("name")}
    ref["uid"] = md.get("uid")
    if md.get("resourceVersion"):
        ref["resourceVersion"] = md["resourceVersion"]
    return ref


def job_from_template(cj: Obj, scheduled: datetime, zone: tzinfo) -> Obj:
    """getJobFromTemplate2: the Job a CronJob runs for ``scheduled``."""
    tmpl = ((cj.get("spec") or {}).get("jobTemplate")) or {}
    tmeta = tmpl.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = scheduled.astimezone(zone).isoformat().replace("+00:00", "Z")
    md: dict[str, Any] = {
        "name": cron.job_name(name_of(cj), scheduled),
        "namespace": namespace_of(cj),
        "annotations": annotations,
        "ownerReferences": [new_controller_ref(cj)],
    }
    if tmeta.get("labels"):
        md["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": copy.deepcopy(tmpl.get("spec") or {})}


def _sync_active(cj: Obj, jobs: Sequence[Obj], status: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
    """Step 1: reconcile status.active and lastSuccessfulTime with the Jobs that exist."""
    active = [r for r in status.get("active") or [] if isinstance(r, dict)]
    by_uid = {uid_of(j): j for j in jobs}
    listed = {r.get("uid") for r in active}
    last_ok = parse_time(status.get("lastSuccessfulTime"))
    for j in jobs:
        found = uid_of(j) in listed
        if not found and not is_finished(j):
            events.append(
                ("Warning", "UnexpectedJob", f"Saw a job that the controller did not create or forgot: {name_of(j)}")
            )
        elif found and is_finished(j):
            active = [r for r in active if r.get("uid") != uid_of(j)]
            events.append(
                ("Normal", "SawCompletedJob", f"Saw completed job: {name_of(j)}, condition: {_finished_condition(j)}")
            )
        if is_finished(j) and _succeeded(j):
            done = parse_time((j.get("status") or {}).get("completionTime"))
            if done is not None and (last_ok is None or done > last_ok):
                last_ok = done
    for r in list(active):
        if r.get("uid") not in by_uid:
            active.remove(r)
            events.append(("Normal", "MissingJob", f"Active job went missing: {r.get('name')}"))
    if active:
        status["active"] = active
    else:
        status.pop("active", None)
    if last_ok is not None:
        status["lastSuccessfulTime"] = format_time(last_ok)


def _history_to_delete(spec: dict[str, Any], jobs: Sequence[Obj]) -> list[Obj]:
    """Step 2: finished Jobs past the history limits, oldest first (cleanupFinishedJobs)."""
    out: list[Obj] = []

    def start(j: Obj) -> datetime:
        return parse_time((j.get("status") or {}).get("startTime")) or creation_time(j)

    for limit_key, pick in (("successfulJobsHistoryLimit", True), ("failedJobsHistoryLimit", False)):
        limit = spec.get(limit_key)
        if not isinstance(limit, int):
            continue
        done = sorted((j for j in jobs if is_finished(j) and _succeeded(j) == pick and not is_deleting(j)), key=start)
        out.extend(done[: max(0, len(done) - limit)])
    return out


def plan_cronjob(cj: Obj, jobs: Sequence[Obj], now: datetime) -> CronJobPlan:
    """What one sync of ``cj`` does, given the Jobs it controls (see the module docstring)."""
    spec = cj.get("spec") or {}
    status = copy.deepcopy(cj.get("status") or {})
    plan = CronJobPlan(status=status)
    _sync_active(cj, jobs, status, plan.events)
    for j in _history_to_delete(spec, jobs):
        plan.delete.append(j)
        plan.events.append(("Normal", "SuccessfulDelete", f"Deleted job {name_of(j)}"))
    if is_deleting(cj) or spec.get("suspend") is True:
        return plan
    try:
        zone = cron.zone_of(spec.get("timeZone"))
    except (ValueError, KeyError):
        plan.events.append(("Warning", "UnknownTimeZone", f"invalid timeZone: {spec.get('timeZone')!r}"))
        return plan
    try:
        sched = cron.parse(str(spec.get("schedule") or ""))
    except cron.ScheduleError as e:
        plan.events.append(("Warning", "UnparseableSchedule", f"unparseable schedule: {spec.get('schedule')!r} : {e}"))
        return plan
    _plan_run(cj, sched, zone, now, plan)
    return plan


def _plan_run(cj: Obj, sched: cron.Schedule, zone: tzinfo, now: datetime, plan: CronJobPlan) -> None:
    """Steps 4–6: whether a Job is due now, and which; always sets the next requeue."""
    spec, status = cj.get("spec") or {}, plan.status
    earliest = parse_time(status.get("lastScheduleTime")) or creation_time(cj)
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int):
        earliest = max(earliest, now - timedelta(seconds=deadline))
    scheduled, missed = cron.missed_times(sched, earliest, now, zone) if earliest <= now else (None, 0)
    nxt = sched.next_after(max(now, scheduled or now), zone)
    if nxt is not None:
        plan.requeue_after = max(0.0, (nxt - now).total_seconds()) + NEXT_SCHEDULE_DELTA
    if missed > 100:
        plan.events.append(("Warning", "TooManyMissedTimes", TOO_MANY_MISSED))
    if scheduled is None:
        return
    if isinstance(deadline, int) and scheduled + timedelta(seconds=deadline) < now:
        plan.events.append(
            ("Warning", "MissSchedule", f"Missed scheduled time to start a job: {format_time(scheduled)}")
        )
        return
    name = cron.job_name(name_of(cj), scheduled)
    active = list(status.get("active") or [])
    if any(r.get("name") == name for r in active) or parse_time(status.get("lastScheduleTime")) == scheduled:
        return
    policy = spec.get("concurrencyPolicy") or "Allow"
    if policy == "Forbid" and active:
        plan.events.append(("Normal", "JobAlreadyActive", ALREADY_ACTIVE))
        return
    if policy == "Replace":
        for r in active:
            plan.delete.append(
                {"metadata": {"name": r.get("name"), "namespace": namespace_of(cj), "uid": r.get("uid")}}
            )
            plan.events.append(("Normal", "SuccessfulDelete", f"Deleted job {r.get('name')}"))
        status.pop("active", None)
    plan.create = job_from_template(cj, scheduled, zone)
    status["lastScheduleTime"] = format_time(scheduled)


class CronJobController(Controller):
    name = "cronjob"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cj_informer = ctx.informers.get(CRONJOBS)
        self.job_informer = ctx.informers.get(JOBS)
        self.cj_informer.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.job_informer.add_handler(
            on_add=self._job_changed, on_update=lambda _o, n: self._job_changed(n), on_delete=self._job_changed
        )

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{namespace_of(job)}/{ref.get('name')}")

    def _jobs_of(self, cj: Obj) -> list[Obj]:
        uid = uid_of(cj)
        jobs = [j for j in self.job_informer.by_index(OWNER_INDEX, uid) if (controller_ref(j) or {}).get("uid") == uid]
        known = {uid_of(j) for j in jobs}
        # An active Job the cache does not have yet may just be new: ask the server before
        # calling it missing (as syncCronJob does).
        for r in (cj.get("status") or {}).get("active") or []:
            if isinstance(r, dict) and r.get("uid") not in known:
                try:
                    j = self.client.get(JOBS, str(r.get("name")), namespace=namespace_of(cj))
                except errors.NotFound:
                    continue
                if uid_of(j) == r.get("uid"):
                    jobs.append(j)
        return jobs

    def sync(self, key: str) -> None:
        cj = self.cj_informer.get(key)
        if cj is None:
            return
        ns, _ = split_key(key)
        plan = plan_cronjob(cj, self._jobs_of(cj), self.ctx.clock.now())
        for j in plan.delete:
            try:
                self.client.delete(JOBS, name_of(j), namespace=ns, propagation_policy="Background")
            except errors.NotFound:
                pass
        if plan.create is not None:
            try:
                created = self.client.create(JOBS, plan.create, namespace=ns)
            except errors.AlreadyExists:
                # another actor made it (or our last status write was lost): the next sync sees it
                created = None
            except errors.ApiError as e:
                self.ctx.event(cj, "Warning", "FailedCreate", f"Error creating job: {e}")
                raise
            if created is not None:
                plan.status.setdefault("active", []).append(job_ref(created))
                self.ctx.event(cj, "Normal", "SuccessfulCreate", f"Created job {name_of(created)}")
        for type_, reason, message in plan.events:
            self.ctx.event(cj, type_, reason, message)
        if plan.status != (cj.get("status") or {}):
            new = dict(cj)
            new["status"] = plan.status
            try:
                self.client.update_status(CRONJOBS, new)
            except errors.NotFound:
                return
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)
